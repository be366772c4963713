//! Typed attribute values: reading JSON as its attribute's type and ordering two of them (RFC 7643 §2.3).
//!
//! Filters and sorting both compare through [`TypedValue`], so `eq`, `gt` and `sortBy` agree.

use std::cmp::Ordering;

use serde_json::{Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::schema::{AttrType, Attribute};

/// The JSON type of a value, for error messages: `a string`, `an array`, `null`…
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value read as the type its attribute declares, ready to compare.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TypedValue {
    /// A string, reference or binary value; Unicode-lowercased when the attribute is not caseExact.
    Text(String),
    /// An integer or decimal; the two compare numerically.
    Number(Number),
    Boolean(bool),
    /// A dateTime as nanoseconds since the Unix epoch, so values with different offsets compare as instants.
    DateTime(i128),
}

impl TypedValue {
    /// Reads `value` as `attr`'s type. `None` for null, for complex attributes and for values
    /// that do not convert (a dateTime that is not RFC 3339, a boolean `"yes"`).
    ///
    /// Lenient where IdPs and scripts are: `"true"`/`"false"` strings for booleans, numeric
    /// strings for numbers, and numbers or booleans for strings (read as their JSON text).
    pub(crate) fn read(value: &Value, attr: &Attribute) -> Option<Self> {
        match attr.kind {
            AttrType::String | AttrType::Reference | AttrType::Binary => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                // binary is base64, where case carries meaning
                let fold = !attr.case_exact && attr.kind != AttrType::Binary;
                Some(Self::Text(if fold { text.to_lowercase() } else { text }))
            }
            AttrType::Boolean => match value {
                Value::Bool(b) => Some(Self::Boolean(*b)),
                Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(Self::Boolean(true)),
                Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(Self::Boolean(false)),
                _ => None,
            },
            AttrType::Integer | AttrType::Decimal => match value {
                Value::Number(n) => Some(Self::Number(n.clone())),
                Value::String(s) => parse_number(s.trim()).map(Self::Number),
                _ => None,
            },
            AttrType::DateTime => match value {
                Value::String(s) => {
                    OffsetDateTime::parse(s.trim(), &Rfc3339).ok().map(|t| Self::DateTime(t.unix_timestamp_nanos()))
                }
                _ => None,
            },
            AttrType::Complex => None,
        }
    }
}

fn parse_number(text: &str) -> Option<Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(Number::from(u));
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

/// Orders two typed values: strings by code point (already case-folded when the attribute
/// is not caseExact), numbers numerically across integer and decimal, dateTimes as
/// instants, `false` before `true`. `None` when the two are of different kinds.
pub(crate) fn compare_typed(a: &TypedValue, b: &TypedValue) -> Option<Ordering> {
    match (a, b) {
        (TypedValue::Text(a), TypedValue::Text(b)) => Some(a.cmp(b)),
        (TypedValue::Number(a), TypedValue::Number(b)) => compare_numbers(a, b),
        (TypedValue::Boolean(a), TypedValue::Boolean(b)) => Some(a.cmp(b)),
        (TypedValue::DateTime(a), TypedValue::DateTime(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Orders two JSON values as `attr`'s type says (see [`TypedValue::read`] and
/// [`compare_typed`]); `None` when either does not read as that type.
pub(crate) fn compare_values(a: &Value, b: &Value, attr: &Attribute) -> Option<Ordering> {
    compare_typed(&TypedValue::read(a, attr)?, &TypedValue::read(b, attr)?)
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    // exact where both fit one integer type; through f64 otherwise
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// The member `key` of a JSON object, matched exactly first and then ignoring ASCII case
/// (attribute names are case-insensitive, and scripts write `username` as often as `userName`).
pub(crate) fn get_key<'v>(object: &'v Value, key: &str) -> Option<&'v Value> {
    let map = object.as_object()?;
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// Whether a value counts as present for `pr`: not null, not an empty string, and for arrays
/// and objects at least one present member.
pub(crate) fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// The lowercase RFC 7643 name of a data type, for messages.
pub(crate) fn type_name(kind: AttrType) -> &'static str {
    match kind {
        AttrType::String => "string",
        AttrType::Boolean => "boolean",
        AttrType::Decimal => "decimal",
        AttrType::Integer => "integer",
        AttrType::DateTime => "dateTime",
        AttrType::Binary => "binary",
        AttrType::Reference => "reference",
        AttrType::Complex => "complex",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::schema::{Mutability, Returned, Uniqueness};

    fn attr(kind: AttrType, case_exact: bool) -> Attribute {
        Attribute {
            name: "a".into(),
            kind,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: vec![],
            reference_types: vec![],
            sub_attributes: vec![],
        }
    }

    #[test]
    fn compares_by_the_attribute_type() {
        use Ordering::{Equal, Greater, Less};
        let cases: [(AttrType, bool, Value, Value, Option<Ordering>); 19] = [
            (AttrType::String, false, json!("Bjensen"), json!("bJENSEN"), Some(Equal)),
            (AttrType::String, true, json!("Bjensen"), json!("bjensen"), Some(Less)),
            (AttrType::String, false, json!("ÉLODIE"), json!("élodie"), Some(Equal)),
            (AttrType::String, false, json!("b"), json!("A"), Some(Greater)),
            (AttrType::String, false, json!(12), json!("12"), Some(Equal)),
            (AttrType::Integer, false, json!(10), json!(9), Some(Greater)),
            (AttrType::Integer, false, json!(10), json!(10.0), Some(Equal)),
            (AttrType::Decimal, false, json!(1.5), json!(2), Some(Less)),
            (AttrType::Integer, false, json!(u64::MAX), json!(-1), Some(Greater)),
            (AttrType::Integer, false, json!("42"), json!(42), Some(Equal)),
            (AttrType::Integer, false, json!("forty"), json!(42), None),
            (AttrType::Boolean, false, json!(true), json!("TRUE"), Some(Equal)),
            (AttrType::Boolean, false, json!(false), json!(true), Some(Less)),
            (AttrType::Boolean, false, json!("yes"), json!(true), None),
            (AttrType::DateTime, false, json!("2011-05-13T04:42:34Z"), json!("2011-05-13T06:42:34+02:00"), Some(Equal)),
            (AttrType::DateTime, false, json!("2011-05-13T04:42:34.5Z"), json!("2011-05-13T04:42:34Z"), Some(Greater)),
            (AttrType::DateTime, false, json!("2011-05-13T05:00:00+02:00"), json!("2011-05-13T04:00:00Z"), Some(Less)),
            (AttrType::DateTime, false, json!("yesterday"), json!("2011-05-13T04:42:34Z"), None),
            (AttrType::Complex, false, json!({"value": 1}), json!({"value": 1}), None),
        ];
        for (kind, exact, a, b, expected) in cases {
            assert_eq!(compare_values(&a, &b, &attr(kind, exact)), expected, "{kind:?} {a} {b}");
        }
    }

    #[test]
    fn keys_match_ignoring_case_and_presence_needs_content() {
        let user = json!({"username": "b", "Title": "t", "title": "exact"});
        assert_eq!(get_key(&user, "userName"), Some(&json!("b")));
        assert_eq!(get_key(&user, "title"), Some(&json!("exact")));
        assert_eq!(get_key(&json!("x"), "a"), None);
        for (value, present) in [
            (json!(null), false),
            (json!(""), false),
            (json!([]), false),
            (json!({}), false),
            (json!([{"value": null}]), false),
            (json!(false), true),
            (json!(0), true),
            (json!([{"value": "x"}]), true),
        ] {
            assert_eq!(is_present(&value), present, "{value}");
        }
    }
}
