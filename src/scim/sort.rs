//! Sorting a list of SCIM resources by `sortBy` and `sortOrder` (RFC 7644 §3.4.2.3).

use std::cmp::Ordering;

use serde_json::Value;

use super::error::ScimError;
use super::path::AttrPath;
use super::schema::{AttrType, Attribute, ResourceSchema};
use super::value::{TypedValue, compare_typed, get_key};

/// Sorts `resources` in place by the value at `sort_by`, as the attribute's type orders it
/// (strings ignoring case unless caseExact, numbers numerically, dateTimes as instants).
///
/// Runs when the mapping script did not sort. A multi-valued attribute sorts by its primary
/// value, else its first; a complex attribute without sub-attribute by its `value`
/// (`sortBy=emails` is the primary email address). Resources without a value, or with one
/// that does not read as the attribute's type, come last in ascending order and first in
/// descending order, as the RFC says. Ties keep their input order. An unknown or complex
/// `sort_by` is `ScimError::InvalidPath`.
pub fn sort_resources(
    resources: &mut [Value],
    sort_by: &AttrPath,
    descending: bool,
    schema: &ResourceSchema,
) -> Result<(), ScimError> {
    let key = SortKey::new(sort_by, schema)?;
    let mut keyed: Vec<(Option<TypedValue>, Value)> =
        resources.iter_mut().map(|resource| (key.read(resource), std::mem::take(resource))).collect();
    // a stable sort, and descending is the exact reverse, so ties stay in input order
    keyed.sort_by(|(a, _), (b, _)| order(a.as_ref(), b.as_ref(), descending));
    for (slot, (_, resource)) in resources.iter_mut().zip(keyed) {
        *slot = resource;
    }
    Ok(())
}

/// The order of two sort values ([`SortKey::read`]) in a listing sorted by them: a resource
/// without one comes last ascending, first descending; equal values are ties.
///
/// A total order, as Rust's sorts require (they may panic on one that is not): numbers that
/// do not both fit one integer type are ordered by their `f64` values, and where those are
/// equal, a decimal before an integer and integers by their exact values. (Compared exactly
/// where they can be and through `f64` where not, 2^53 + 1 would be above 2^53 yet equal to
/// 9007199254740992.0, as 2^53 is.)
pub(crate) fn order(a: Option<&TypedValue>, b: Option<&TypedValue>, descending: bool) -> Ordering {
    let ascending = match (a, b) {
        (Some(TypedValue::Number(a)), Some(TypedValue::Number(b))) => {
            let exact = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
            let float = |n: &serde_json::Number| n.as_f64().unwrap_or(f64::NAN);
            match (exact(a), exact(b)) {
                (Some(a), Some(b)) => a.cmp(&b),
                (exact_a, exact_b) => float(a).total_cmp(&float(b)).then(exact_a.cmp(&exact_b)),
            }
        }
        (Some(a), Some(b)) => compare_typed(a, b).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    if descending { ascending.reverse() } else { ascending }
}

/// Where the sort value of a resource is, and how to read it.
pub(crate) struct SortKey<'s> {
    extension: Option<&'s str>,
    name: &'s str,
    sub: Option<&'s str>,
    attr: &'s Attribute,
}

impl<'s> SortKey<'s> {
    /// The key of `sort_by`; `ScimError::InvalidPath` for an unknown or complex one.
    pub(crate) fn new(sort_by: &AttrPath, schema: &'s ResourceSchema) -> Result<Self, ScimError> {
        let resolved = schema
            .resolve(sort_by)
            .ok_or_else(|| ScimError::invalid_path(sort_by.to_string(), "unknown attribute for sortBy"))?;
        let (sub, attr) = match resolved.sub {
            Some(sub) => (Some(sub), sub),
            None if resolved.attribute.kind == AttrType::Complex => match resolved.attribute.sub_attribute("value") {
                Some(value) => (Some(value), value),
                None => {
                    return Err(ScimError::invalid_path(
                        sort_by.to_string(),
                        format!(
                            "a complex attribute; sort by one of its sub-attributes, e.g. {sort_by}.{}",
                            first_sub(resolved.attribute)
                        ),
                    ));
                }
            },
            None => (None, resolved.attribute),
        };
        Ok(Self {
            extension: resolved.in_extension.then_some(resolved.schema.id.as_str()),
            name: resolved.attribute.name.as_str(),
            sub: sub.map(|sub| sub.name.as_str()),
            attr,
        })
    }

    /// The extension URN the attribute is in, if any, and its name: the member of a resource
    /// the sort value is read from.
    pub(crate) fn member(&self) -> (Option<&'s str>, &'s str) {
        (self.extension, self.name)
    }

    /// The sort value of `resource`; `None` when it has none.
    pub(crate) fn read(&self, resource: &Value) -> Option<TypedValue> {
        let base = match self.extension {
            Some(urn) => get_key(resource, urn)?,
            None => resource,
        };
        let mut value = get_key(base, self.name)?;
        if let Value::Array(items) = value {
            value = items.iter().find(|item| is_primary(item)).or_else(|| items.iter().find(|item| !item.is_null()))?;
        }
        if let Some(sub) = self.sub {
            value = get_key(value, sub)?;
        }
        if let Value::Array(items) = value {
            value = items.first()?;
        }
        TypedValue::read(value, self.attr)
    }
}

fn is_primary(item: &Value) -> bool {
    match get_key(item, "primary") {
        Some(Value::Bool(primary)) => *primary,
        Some(Value::String(primary)) => primary.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn first_sub(attr: &Attribute) -> &str {
    attr.sub_attributes.first().map_or("value", |sub| sub.name.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::evaluate::tests::user_schema;
    use crate::scim::schema::ENTERPRISE_USER_SCHEMA;

    /// Sorts resources `{"id": …, …}` and returns their ids in the new order.
    fn sorted(resources: Vec<Value>, sort_by: &str, descending: bool) -> Vec<String> {
        let mut resources = resources;
        sort_resources(&mut resources, &AttrPath::parse(sort_by).unwrap(), descending, &user_schema()).unwrap();
        resources.iter().map(|r| r["id"].as_str().unwrap_or("?").to_owned()).collect()
    }

    /// Integers past 2^53 beside decimals that `f64` cannot tell from them: the order is
    /// still total (every pair compared both ways agrees, and it is transitive), so sorting
    /// cannot panic, and integers keep their exact order.
    #[test]
    fn the_order_of_numbers_is_total() {
        let numbers: Vec<TypedValue> =
            ["9007199254740993", "9007199254740992.0", "9007199254740992", "-1", "1.5", "18446744073709551615"]
                .iter()
                .map(|n| TypedValue::Number(serde_json::from_str(n).unwrap()))
                .collect();
        for a in &numbers {
            for b in &numbers {
                assert_eq!(order(Some(a), Some(b), false), order(Some(b), Some(a), false).reverse(), "{a:?} {b:?}");
                for c in &numbers {
                    if order(Some(a), Some(b), false).is_le() && order(Some(b), Some(c), false).is_le() {
                        assert!(order(Some(a), Some(c), false).is_le(), "{a:?} <= {b:?} <= {c:?}");
                    }
                }
            }
        }
        let mut sorted = numbers.clone();
        sorted.sort_by(|a, b| order(Some(a), Some(b), false));
        let text: Vec<String> = sorted
            .iter()
            .map(|n| match n {
                TypedValue::Number(n) => n.to_string(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(
            text,
            ["-1", "1.5", "9007199254740992.0", "9007199254740992", "9007199254740993", "18446744073709551615"]
        );
    }

    #[test]
    fn sorts_by_the_typed_value() {
        let users = || {
            vec![
                json!({"id": "1", "userName": "bob", "loginCount": 10, "meta": {"created": "2011-05-13T06:42:34+02:00"}}),
                json!({"id": "2", "userName": "Alice", "loginCount": 9.5, "meta": {"created": "2011-05-13T04:42:35Z"}}),
                json!({"id": "3", "userName": "carol", "loginCount": -3, "meta": {"created": "2011-05-13T03:00:00-03:00"}}),
                json!({"id": "4", "userName": "Bob", "loginCount": "100", "meta": {"created": "2011-05-13T04:42:33Z"}}),
            ]
        };
        let cases = [
            ("userName", false, ["2", "1", "4", "3"]),
            ("userName", true, ["3", "1", "4", "2"]),
            ("loginCount", false, ["3", "2", "1", "4"]),
            ("loginCount", true, ["4", "1", "2", "3"]),
            ("meta.created", false, ["4", "1", "2", "3"]),
            ("META.CREATED", true, ["3", "2", "1", "4"]),
        ];
        for (sort_by, descending, ids) in cases {
            assert_eq!(sorted(users(), sort_by, descending), ids, "{sort_by} descending={descending}");
        }
    }

    #[test]
    fn case_exact_strings_sort_by_code_point() {
        let users = vec![json!({"id": "b"}), json!({"id": "B"}), json!({"id": "a"}), json!({"id": "A"})];
        assert_eq!(sorted(users, "id", false), ["A", "B", "a", "b"]);
    }

    #[test]
    fn missing_values_come_last_ascending_and_first_descending() {
        let users = || {
            vec![
                json!({"id": "1", "title": "b"}),
                json!({"id": "2"}),
                json!({"id": "3", "title": "a"}),
                json!({"id": "4", "title": null}),
                json!({"id": "5", "title": "B"}),
            ]
        };
        assert_eq!(sorted(users(), "title", false), ["3", "1", "5", "2", "4"]);
        assert_eq!(sorted(users(), "title", true), ["2", "4", "1", "5", "3"]);
        let dates = vec![
            json!({"id": "1", "meta": {"created": "not a date"}}),
            json!({"id": "2", "meta": {"created": "2020-01-01T00:00:00Z"}}),
        ];
        assert_eq!(sorted(dates, "meta.created", false), ["2", "1"]);
    }

    #[test]
    fn multi_valued_attributes_sort_by_the_primary_value_else_the_first() {
        let users = || {
            vec![
                json!({"id": "1", "emails": [{"value": "z@x.com", "type": "work"}, {"value": "a@x.com", "primary": true}]}),
                json!({"id": "2", "emails": [{"value": "m@x.com", "type": "home"}, {"value": "b@x.com"}]}),
                json!({"id": "3", "emails": []}),
                json!({"id": "4", "emails": [{"value": "c@x.com", "type": "other", "primary": "true"}]}),
                json!({"id": "5", "nicknames": ["Zed", "Al"]}),
                json!({"id": "6", "nicknames": ["bo"]}),
            ]
        };
        assert_eq!(sorted(users(), "emails", false), ["1", "4", "2", "3", "5", "6"]);
        assert_eq!(sorted(users(), "emails.value", false), ["1", "4", "2", "3", "5", "6"]);
        assert_eq!(sorted(users(), "emails.type", false), ["2", "4", "1", "3", "5", "6"]);
        assert_eq!(sorted(users(), "nicknames", false), ["6", "5", "1", "2", "3", "4"]);
    }

    #[test]
    fn extension_attributes_sort_from_under_their_urn() {
        let users = vec![
            json!({"id": "1", ENTERPRISE_USER_SCHEMA: {"department": "sales", "manager": {"value": "b"}}}),
            json!({"id": "2", ENTERPRISE_USER_SCHEMA: {"department": "Engineering", "manager": {"value": "a"}}}),
            json!({"id": "3", "department": "aaa"}),
        ];
        assert_eq!(sorted(users.clone(), "department", false), ["2", "1", "3"]);
        assert_eq!(sorted(users, &format!("{ENTERPRISE_USER_SCHEMA}:manager.value"), false), ["2", "1", "3"]);
    }

    #[test]
    fn ties_keep_their_input_order() {
        let users = || (0..20).map(|i| json!({"id": i.to_string(), "active": i % 3 == 0})).collect::<Vec<_>>();
        let ascending = sorted(users(), "active", false);
        assert_eq!(ascending[..6], ["1", "2", "4", "5", "7", "8"]);
        assert_eq!(ascending[13..], ["0", "3", "6", "9", "12", "15", "18"]);
        let descending = sorted(users(), "active", true);
        assert_eq!(descending[..7], ["0", "3", "6", "9", "12", "15", "18"]);
    }

    #[test]
    fn unknown_or_complex_sort_by_is_invalid_path() {
        let mut users = vec![json!({"id": "1"})];
        for sort_by in ["nickName", "name.middle", "name", "meta", "urn:example:Ext:department"] {
            let result = sort_resources(&mut users, &AttrPath::parse(sort_by).unwrap(), false, &user_schema());
            match result {
                Err(ScimError::InvalidPath { path, detail }) => {
                    assert_eq!(path, sort_by);
                    assert!(!detail.is_empty() && !detail.ends_with('.'), "{detail}");
                }
                other => panic!("{sort_by}: {other:?}"),
            }
        }
    }
}
