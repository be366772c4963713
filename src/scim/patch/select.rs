//! Which values of a multi-valued attribute a `[ ]` filter selects: through the filter evaluator,
//! or for `field eq "text"` terms by a set lookup that selects the same values.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::resource::as_items;
use super::target::element_schema;
use crate::scim::error::ScimError;
use crate::scim::evaluate::Matcher;
use crate::scim::filter::{CompareOp, Filter};
use crate::scim::schema::{AttrType, Attribute};
use crate::scim::value::{TypedValue, get_key};

/// How the values a filtered operation works on are chosen.
pub(super) enum Selector<'f> {
    /// Through the filter evaluator, for any filter.
    Filter(&'f Filter),
    /// `field eq "text"` terms, perhaps of several operations: values whose `field` reads as
    /// one of `texts` (as the evaluator reads it: case-folded unless caseExact) are selected.
    Texts { field: &'f str, texts: HashSet<String> },
}

impl Selector<'_> {
    /// For each value of a multi-valued attribute, whether it is selected.
    pub(super) fn select(&self, attribute: &Attribute, items: &[Value]) -> Result<Vec<bool>, ScimError> {
        let simple = attribute.kind != AttrType::Complex;
        match self {
            Self::Filter(filter) => {
                let schema = element_schema(attribute);
                let matcher = Matcher::new(filter, &schema)?;
                Ok(items
                    .iter()
                    .map(|item| if simple { matcher.matches(&json!({ "value": item })) } else { matcher.matches(item) })
                    .collect())
            }
            Self::Texts { field, texts } => {
                let def = field_definition(attribute, field);
                let read = |value: &Value| match def.and_then(|def| TypedValue::read(value, def)) {
                    Some(TypedValue::Text(text)) => texts.contains(&text),
                    _ => false,
                };
                Ok(items
                    .iter()
                    .map(|item| {
                        let values = if simple { Some(item) } else { get_key(item, field) };
                        values.is_some_and(|values| as_items(values).iter().any(read))
                    })
                    .collect())
            }
        }
    }
}

/// The definition a `[ ]` filter on `attribute` reads `field` with.
fn field_definition<'a>(attribute: &'a Attribute, field: &str) -> Option<&'a Attribute> {
    if attribute.kind == AttrType::Complex {
        attribute.sub_attribute(field)
    } else {
        field.eq_ignore_ascii_case("value").then_some(attribute)
    }
}

/// The field and the texts of a filter that is `field eq "text"` or an `or` of such terms on
/// one field, read as the evaluator reads them; `None` for any other filter.
pub(super) fn eq_texts<'f>(filter: &'f Filter, attribute: &Attribute) -> Option<(&'f str, HashSet<String>)> {
    let mut field: Option<&str> = None;
    let mut texts = HashSet::new();
    for term in filter.disjuncts() {
        let Filter::Compare { path, op: CompareOp::Eq, value } = term else { return None };
        if field.is_some_and(|field| field != path.name) {
            return None;
        }
        field = Some(&path.name);
        let Some(TypedValue::Text(text)) = TypedValue::read(value, field_definition(attribute, &path.name)?) else {
            return None;
        };
        texts.insert(text);
    }
    Some((field?, texts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::patch::fixtures::{Rng, users};
    use crate::scim::patch::target::{Target, parse_patch_path, resolve_target};

    #[test]
    fn the_set_lookup_selects_what_the_filter_evaluator_selects() {
        let rs = users();
        let mut rng = Rng(0x5851_F42D_4C95_7F2D);
        let texts =
            [json!("a"), json!("A"), json!("ÉLODIE"), json!("élodie"), json!("b"), json!(5), json!("5"), json!(true)];
        for attribute in ["emails", "roles", "urn:example:scim:acme:1.0:User:tags"] {
            let Target::Attribute(slot) = resolve_target(&rs, &parse_patch_path(attribute, &rs).unwrap()).unwrap()
            else {
                panic!("{attribute}")
            };
            let simple = slot.attribute.kind != AttrType::Complex;
            for _ in 0..500 {
                let items: Vec<Value> = (0..rng.below(6))
                    .map(|_| {
                        let value = match rng.below(5) {
                            0 => json!([rng.pick(&texts), rng.pick(&texts)]),
                            1 => Value::Null,
                            _ => rng.pick(&texts),
                        };
                        match (simple, rng.below(6)) {
                            (true, _) => value,
                            (false, 0) => json!({ "type": "work" }),
                            (false, 1) => json!("not an object"),
                            (false, _) => json!({ "value": value, "type": "home" }),
                        }
                    })
                    .collect();
                let terms: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| format!("value eq {}", serde_json::to_string(&rng.pick(&texts)).unwrap()))
                    .collect();
                let path = parse_patch_path(&format!("{attribute}[{}]", terms.join(" or ")), &rs).unwrap();
                let filter = path.filter.as_ref().unwrap();
                let Some((field, texts)) = eq_texts(filter, slot.attribute) else { continue };
                let fast = Selector::Texts { field, texts }.select(slot.attribute, &items).unwrap();
                let slow = Selector::Filter(filter).select(slot.attribute, &items).unwrap();
                assert_eq!(fast, slow, "{path} on {items:?}");
            }
        }
    }
}
