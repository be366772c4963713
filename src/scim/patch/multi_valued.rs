//! The values of a multi-valued attribute: when two are the same value, adding without repeating
//! one, removing given values, and keeping at most one primary.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::Value;

use super::resource::{PRUNE_DEPTH, get_key_in, is_assigned, prune, take_key};
use crate::scim::error::ScimError;
use crate::scim::schema::{AttrType, Attribute, Mutability};
use crate::scim::value::{TypedValue, compare_values, get_key};

/// Adds values to a multi-valued attribute, merging each into an existing value with the
/// same identity instead of repeating it (RFC 7644 §3.5.2.1). Returns the indices written.
pub(super) fn add_values(attribute: &Attribute, items: &mut Vec<Value>, new: &[Value]) -> Vec<usize> {
    let mut values = IndexedValues::new(attribute, std::mem::take(items));
    let touched = values.add(new);
    // adding leaves no holes, so the indices written are those of the compacted values
    *items = values.into_items();
    touched
}

/// The values of a multi-valued attribute, bucketed by identity key so that finding the value
/// a new one repeats is not a scan (adding to a large group would be quadratic). Removed
/// values leave holes until [`IndexedValues::into_items`], so indices stay valid.
pub(super) struct IndexedValues<'a> {
    attribute: &'a Attribute,
    pub(super) items: Vec<Option<Value>>,
    index: HashMap<String, Vec<usize>>,
    /// Values that are not holes.
    pub(super) live: usize,
}

impl<'a> IndexedValues<'a> {
    pub(super) fn new(attribute: &'a Attribute, items: Vec<Value>) -> Self {
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            index.entry(identity_key(attribute, item)).or_default().push(i);
        }
        let live = items.len();
        Self { attribute, items: items.into_iter().map(Some).collect(), index, live }
    }

    /// Adds values as [`add_values`] does; returns the indices written.
    pub(super) fn add(&mut self, new: &[Value]) -> Vec<usize> {
        let attribute = self.attribute;
        let mut touched = Vec::with_capacity(new.len());
        for value in new {
            let key = identity_key(attribute, value);
            let items = &self.items;
            let existing = self.index.get(&key).and_then(|candidates| {
                candidates.iter().copied().find(|&i| {
                    items.get(i).and_then(Option::as_ref).is_some_and(|item| same_identity(attribute, item, value))
                })
            });
            match existing.and_then(|i| self.items.get_mut(i).and_then(Option::as_mut).map(|item| (i, item))) {
                Some((i, item)) => {
                    merge_repeated(attribute, item, value);
                    touched.push(i);
                }
                None => {
                    self.index.entry(key).or_default().push(self.items.len());
                    touched.push(self.items.len());
                    self.items.push(Some(value.clone()));
                    self.live += 1;
                }
            }
        }
        touched
    }

    /// Removes the values with the same identity as one of `given`, as [`remove_given`] does.
    pub(super) fn remove(&mut self, given: &[Value]) {
        for value in given {
            let Some(candidates) = self.index.get(&identity_key(self.attribute, value)) else { continue };
            for &i in candidates {
                let Some(slot) = self.items.get_mut(i) else { continue };
                if slot.as_ref().is_some_and(|item| same_identity(self.attribute, item, value)) {
                    *slot = None;
                    self.live -= 1;
                }
            }
        }
    }

    /// Prunes the values at `indices` as pruning the whole attribute would; one left
    /// unassigned becomes a hole, as pruning would drop it.
    pub(super) fn prune_at(&mut self, indices: &[usize]) {
        for &i in indices {
            let Some(slot) = self.items.get_mut(i) else { continue };
            if let Some(item) = slot {
                prune(item, PRUNE_DEPTH - 1);
                if !is_assigned(item) {
                    *slot = None;
                    self.live -= 1;
                }
            }
        }
    }

    /// The values left, in order.
    pub(super) fn into_items(self) -> Vec<Value> {
        self.items.into_iter().flatten().collect()
    }
}

/// Merges a repeated value into the existing one; immutable sub-attributes already set stay.
fn merge_repeated(attribute: &Attribute, existing: &mut Value, value: &Value) {
    let (Some(object), Some(members)) = (existing.as_object_mut(), value.as_object()) else { return };
    for (key, member) in members {
        let Some(sub) = attribute.sub_attribute(key) else { continue };
        let keep = sub.mutability == Mutability::Immutable && get_key_in(object, &sub.name).is_some_and(is_assigned);
        if !keep {
            take_key(object, &sub.name);
            object.insert(sub.name.clone(), member.clone());
        }
    }
}

/// Removes the values with the same identity as one of `given` (Entra's member removal).
pub(super) fn remove_given(attribute: &Attribute, items: &mut Vec<Value>, given: &[Value]) {
    let mut index: HashMap<String, Vec<&Value>> = HashMap::new();
    for value in given {
        index.entry(identity_key(attribute, value)).or_default().push(value);
    }
    items.retain(|item| {
        let candidates = index.get(&identity_key(attribute, item));
        !candidates.is_some_and(|candidates| candidates.iter().any(|value| same_identity(attribute, item, value)))
    });
}

/// Makes the one value an operation marked primary the only primary one (RFC 7644 §3.5.2);
/// more than one is `invalidValue`.
pub(super) fn settle_primary(items: &mut [Value], touched: Vec<usize>, label: &str) -> Result<(), ScimError> {
    settle_primary_in(items, touched, label, |item| Some(item))
}

/// [`settle_primary`] over slots that `value` opens (holes of [`IndexedValues`] open to nothing).
pub(super) fn settle_primary_in<T>(
    items: &mut [T],
    mut touched: Vec<usize>,
    label: &str,
    value: impl Fn(&mut T) -> Option<&mut Value>,
) -> Result<(), ScimError> {
    touched.sort_unstable();
    touched.dedup();
    let primaries: Vec<usize> = touched
        .into_iter()
        .filter(|&i| items.get_mut(i).and_then(&value).is_some_and(|item| is_primary(item)))
        .collect();
    match primaries.as_slice() {
        [] => Ok(()),
        [keep] => {
            for (i, item) in items.iter_mut().enumerate() {
                let Some(item) = value(item) else { continue };
                if i != *keep && is_primary(item) {
                    if let Some(object) = item.as_object_mut() {
                        take_key(object, "primary");
                        object.insert("primary".to_owned(), Value::Bool(false));
                    }
                }
            }
            Ok(())
        }
        many => Err(ScimError::invalid_value(
            label,
            format!("{} values are marked primary; at most one may be", many.len()),
        )),
    }
}

pub(super) fn is_primary(item: &Value) -> bool {
    get_key(item, "primary") == Some(&Value::Bool(true))
}

/// Whether two values of a multi-valued attribute are the same value (see the module notes).
fn same_identity(attribute: &Attribute, a: &Value, b: &Value) -> bool {
    if attribute.kind != AttrType::Complex {
        return same_value(attribute, a, b);
    }
    let Some(value_def) = attribute.sub_attribute("value") else { return a == b };
    match (get_key(a, "value"), get_key(b, "value")) {
        (Some(x), Some(y)) => {
            let types_agree = match (attribute.sub_attribute("type"), get_key(a, "type"), get_key(b, "type")) {
                (Some(def), Some(x), Some(y)) => same_value(def, x, y),
                _ => true,
            };
            same_value(value_def, x, y) && types_agree
        }
        _ => a == b,
    }
}

/// A key that values with the same identity share (values that share it may still differ).
fn identity_key(attribute: &Attribute, item: &Value) -> String {
    let (def, value) = if attribute.kind == AttrType::Complex {
        match attribute.sub_attribute("value") {
            Some(def) => (def, get_key(item, "value")),
            None => return String::new(),
        }
    } else {
        (attribute, Some(item))
    };
    match value.and_then(|value| TypedValue::read(value, def)) {
        Some(TypedValue::Text(text)) => text,
        Some(TypedValue::Number(n)) => n.as_f64().map(|f| f.to_string()).unwrap_or_default(),
        Some(TypedValue::Boolean(b)) => b.to_string(),
        Some(TypedValue::DateTime(t)) => t.to_string(),
        None => String::new(),
    }
}

/// Equal as the attribute's type compares them (case-insensitive strings unless caseExact).
pub(super) fn same_value(def: &Attribute, a: &Value, b: &Value) -> bool {
    a == b || (!def.multi_valued && compare_values(a, b, def) == Some(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::scim::patch::apply_patch;
    use crate::scim::patch::fixtures::{PLURALS, Rng, patch, random_user, users};

    #[test]
    fn adding_then_removing_a_value_gives_back_the_resource() {
        let rs = users();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for n in 0..1500 {
            let user = apply_patch(&rs, &random_user(&mut rng, n), &[]).unwrap();
            let plural = rng.pick(&PLURALS);
            let mut value = json!({ "value": format!("new-{}", rng.word()) });
            if rng.chance(50) {
                value["type"] = json!(rng.pick(&["work", "home", "other"]));
            }
            let literal = serde_json::to_string(&value["value"]).unwrap();
            let add = if rng.chance(50) { value.clone() } else { json!([value.clone()]) };
            let remove = if rng.chance(70) {
                json!({ "op": "remove", "path": format!("{plural}[value eq {literal}]") })
            } else {
                json!({ "op": "Remove", "path": plural, "value": [{ "value": value["value"] }] })
            };
            let added = patch(&rs, &user, json!([{ "op": "add", "path": plural, "value": add }])).unwrap();
            assert_ne!(added, user, "{plural} {value}");
            let back = patch(&rs, &added, json!([remove.clone()])).unwrap();
            assert_eq!(back, user, "seed case {n}: {plural} {value}");
            let both = patch(&rs, &user, json!([{ "op": "add", "path": plural, "value": add }, remove])).unwrap();
            assert_eq!(both, user, "seed case {n}, one request: {plural} {value}");
        }
    }
}
