//! The resource JSON a PATCH edits: attributes taken and put back in any case of their names,
//! unassigned values pruned, and the patched resource in final form.

use serde_json::{Map, Value};

use crate::scim::error::ScimError;
use crate::scim::schema::ResourceSchema;
use crate::scim::unpublished::{Unpublished, UnsupportedAttributes};
use crate::scim::validate::{WriteMode, validate_resource};

/// How deep pruning looks into a resource: extension object, attribute, value, sub-attribute.
pub(super) const PRUNE_DEPTH: usize = 4;

/// Removes an attribute from the resource (in any case of its name) and returns its value.
pub(super) fn take_attr(doc: &mut Map<String, Value>, ext: Option<&str>, name: &str) -> Option<Value> {
    let Some(urn) = ext else { return take_key(doc, name) };
    let mut data = take_key(doc, urn)?;
    let value = data.as_object_mut().and_then(|object| take_key(object, name));
    doc.insert(urn.to_owned(), data);
    value
}

/// Puts an attribute back under its schema name; nothing for an unassigned value.
pub(super) fn put_attr(doc: &mut Map<String, Value>, ext: Option<&str>, name: &str, value: Option<Value>) {
    let Some(value) = value else { return };
    let object = match ext {
        None => doc,
        Some(urn) => {
            let data = doc.entry(urn.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !data.is_object() {
                *data = Value::Object(Map::new());
            }
            match data.as_object_mut() {
                Some(object) => object,
                None => return,
            }
        }
    };
    object.insert(name.to_owned(), value);
}

/// Removes every member whose key is `name` in any case; returns the one spelled exactly so,
/// else the first found.
pub(super) fn take_key(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = object.keys().filter(|key| key.eq_ignore_ascii_case(name)).cloned().collect();
    let (mut exact, mut other) = (None, None);
    for key in keys {
        let value = object.remove(&key);
        if key == name {
            exact = value;
        } else if other.is_none() {
            other = value;
        }
    }
    exact.or(other)
}

/// The member `name` of an object, in any case.
pub(super) fn get_key_in<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).or_else(|| object.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A stored complex value as an object to write into; anything else starts empty.
pub(super) fn into_object(value: Option<Value>) -> Map<String, Value> {
    match value {
        Some(Value::Object(object)) => object,
        _ => Map::new(),
    }
}

/// A stored multi-valued attribute as its values; a lone value counts as one.
pub(super) fn into_items(value: Option<Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
    }
}

/// The elements of an array, or the value itself as the only one.
pub(super) fn as_items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        single => std::slice::from_ref(single),
    }
}

/// Not null, and not an empty array or object (RFC 7643 §2.5: all three are unassigned).
pub(super) fn is_assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(members) => !members.is_empty(),
        _ => true,
    }
}

/// Removes unassigned values, `depth` levels deep.
pub(super) fn prune(value: &mut Value, depth: usize) {
    if depth == 0 {
        return;
    }
    match value {
        Value::Object(members) => {
            members.values_mut().for_each(|member| prune(member, depth - 1));
            members.retain(|_, member| is_assigned(member));
        }
        Value::Array(items) => {
            items.iter_mut().for_each(|item| prune(item, depth - 1));
            items.retain(is_assigned);
        }
        _ => {}
    }
}

/// The patched resource in final form: pruned, extension keys and `schemas` in the schema's
/// spelling, and checked against the schema as a PUT body would be.
pub(super) fn finish(rs: &ResourceSchema, mut doc: Map<String, Value>) -> Result<Value, ScimError> {
    doc.values_mut().for_each(|value| prune(value, PRUNE_DEPTH));
    doc.retain(|_, value| is_assigned(value));
    let mut schemas = vec![Value::from(rs.core.id.as_str())];
    for (ext, _) in &rs.extensions {
        if let Some(data) = take_key(&mut doc, &ext.id) {
            schemas.push(Value::from(ext.id.as_str()));
            doc.insert(ext.id.clone(), data);
        }
    }
    take_key(&mut doc, "schemas");
    doc.insert("schemas".to_owned(), Value::Array(schemas));
    let doc = Value::Object(doc);
    // operations in normal form name only published attributes
    validate_resource(rs, &doc, WriteMode::Replace, &mut Unpublished::new(UnsupportedAttributes::Refuse))?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use crate::scim::definitions::rfc_examples;
    use crate::scim::patch::apply_patch;
    use crate::scim::patch::fixtures::{bjensen, groups, users};

    #[test]
    fn the_rfc_examples_resources_are_already_in_final_form() {
        assert_eq!(apply_patch(&users(), &bjensen(), &[]).unwrap(), bjensen());
        assert_eq!(apply_patch(&groups(), &rfc_examples::group(), &[]).unwrap(), rfc_examples::group());
    }
}
