//! Checking operations against the resource type and putting them in normal form: one operation
//! per attribute, a canonical path each, values in the schema's names, types and shapes.

use crate::scim::value::kind_of;
use std::collections::HashSet;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::multi_valued::is_primary;
use super::operation::{PatchKind, PatchOp, PatchPath};
use super::resource::{as_items, is_assigned};
use super::target::{Slot, Target, parse_patch_path, resolve_patch_path, resolve_target};
use crate::scim::error::ScimError;
use crate::scim::schema::{AttrType, Attribute, Mutability, ResourceSchema, Schema};
use crate::scim::unpublished::{Unpublished, UnsupportedAttributes};
use crate::scim::value::get_key;

/// Checks one operation against the resource type and pushes its normal form (zero or more
/// operations, each with a canonical path and a normalised value) onto `out`.
pub(super) fn prepare(
    rs: &ResourceSchema,
    kind: PatchKind,
    path: Option<&PatchPath>,
    value: Option<&Value>,
    out: &mut Vec<PatchOp>,
    unpublished: &mut Unpublished,
) -> Result<(), ScimError> {
    let Some(path) = path else {
        return prepare_pathless(rs, kind, value, out, unpublished);
    };
    // reading the printed path back checks hand-built paths exactly like parsed ones
    let path = parse_patch_path(&path.to_string(), rs)?;
    match resolve_target(rs, &path)? {
        Target::Extension(ext, required) => prepare_extension(rs, kind, (ext, required), path, value, out, unpublished),
        Target::Attribute(slot) => prepare_attribute(kind, slot, path, value, out, unpublished),
    }
}

/// A pathless add or replace: one operation per key of the value object (RFC 7644
/// §3.5.2.1, §3.5.2.3), keys read as paths.
fn prepare_pathless(
    rs: &ResourceSchema,
    kind: PatchKind,
    value: Option<&Value>,
    out: &mut Vec<PatchOp>,
    unpublished: &mut Unpublished,
) -> Result<(), ScimError> {
    if kind == PatchKind::Remove {
        return Err(ScimError::NoTarget { path: String::new() });
    }
    let Some(value) = value else {
        return Err(ScimError::invalid_value("value", format!("{kind} without a path needs a value")));
    };
    let Some(object) = value.as_object() else {
        return Err(ScimError::invalid_value(
            "value",
            format!("{kind} without a path takes an object of attributes, got {}", kind_of(value)),
        ));
    };
    reject_duplicate_keys(object, "")?;
    for (key, value) in object {
        // IdPs echo what they read (Okta sends the group's id); the service provider keeps these
        if ["schemas", "id", "meta"].iter().any(|ignored| key.eq_ignore_ascii_case(ignored)) {
            continue;
        }
        if value.is_null() && kind == PatchKind::Add {
            continue;
        }
        let Some(path) = parse_key(key, rs, unpublished)? else { continue };
        prepare(rs, kind, Some(&path), Some(value), out, unpublished)?;
    }
    Ok(())
}

/// A key of a pathless value read as a path; a key naming nothing is `invalidValue`, as in a
/// POST body, or `None` when `unpublished` ignores it.
fn parse_key(key: &str, rs: &ResourceSchema, unpublished: &mut Unpublished) -> Result<Option<PatchPath>, ScimError> {
    if key.contains(['[', ']']) {
        return Err(ScimError::invalid_value(key, "a [ ] filter goes in an operation's path, not in a value"));
    }
    resolve_patch_path(key, rs, unpublished).map_err(|error| match error {
        ScimError::InvalidPath { detail, .. } => ScimError::invalid_value(key, detail),
        other => other,
    })
}

/// An operation on a whole extension object: add and replace become one operation per
/// attribute; a removal stays whole. `extension` is the schema and whether it is required.
fn prepare_extension(
    rs: &ResourceSchema,
    kind: PatchKind,
    (ext, required): (&Schema, bool),
    path: PatchPath,
    value: Option<&Value>,
    out: &mut Vec<PatchOp>,
    unpublished: &mut Unpublished,
) -> Result<(), ScimError> {
    let value = match (kind, value) {
        (PatchKind::Remove, _) | (PatchKind::Replace, Some(Value::Null)) => {
            if required || ext.attributes.iter().any(|a| a.required) {
                return Err(ScimError::Mutability {
                    attribute: ext.id.clone(),
                    detail: "removing it would leave a required attribute unassigned".to_owned(),
                });
            }
            out.push(PatchOp { kind: PatchKind::Remove, path: Some(path), value: None });
            return Ok(());
        }
        (_, None | Some(Value::Null)) => {
            return Err(ScimError::invalid_value(&ext.id, format!("{kind} needs a value: an object of attributes")));
        }
        (_, Some(value)) => value,
    };
    let Some(object) = value.as_object() else {
        return Err(ScimError::invalid_value(
            &ext.id,
            format!("extension data must be an object, got {}", kind_of(value)),
        ));
    };
    reject_duplicate_keys(object, &format!("{}:", ext.id))?;
    for (key, value) in object {
        if value.is_null() && kind == PatchKind::Add {
            continue;
        }
        // Clients serialising an extension model include its `schemas`; it is not data.
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let Some(path) = parse_key(&format!("{}:{key}", ext.id), rs, unpublished)? else { continue };
        prepare(rs, kind, Some(&path), Some(value), out, unpublished)?;
    }
    Ok(())
}

/// An operation on an attribute: mutability and required checks, then the value normalised
/// to the shape the target takes.
fn prepare_attribute(
    kind: PatchKind,
    slot: Slot<'_>,
    path: PatchPath,
    value: Option<&Value>,
    out: &mut Vec<PatchOp>,
    unpublished: &mut Unpublished,
) -> Result<(), ScimError> {
    let label = path.to_string();
    let target = slot.sub.unwrap_or(slot.attribute);
    if slot.attribute.mutability == Mutability::ReadOnly || target.mutability == Mutability::ReadOnly {
        return Err(ScimError::Mutability {
            attribute: label,
            detail: "read-only: the service provider maintains it".to_owned(),
        });
    }
    let (multi, complex) = (slot.attribute.multi_valued, slot.attribute.kind == AttrType::Complex);
    // a removal carries no value, so nothing in it can be unpublished
    let unassign = |out: &mut Vec<PatchOp>| {
        let mut none = Unpublished::new(UnsupportedAttributes::Refuse);
        prepare_attribute(PatchKind::Remove, slot, path.clone(), None, out, &mut none)
    };
    if kind == PatchKind::Remove {
        let required = match (&path.filter, slot.sub) {
            (None, None) => slot.attribute.required,
            (_, Some(sub)) => sub.required,
            (Some(_), None) => false,
        };
        if required {
            return Err(ScimError::Mutability {
                attribute: label,
                detail: "required: it cannot be removed".to_owned(),
            });
        }
        let given = match value {
            Some(value) if multi && path.filter.is_none() && slot.sub.is_none() && !value.is_null() => {
                let items = normalise_values(slot.attribute, value, &label, unpublished)?;
                if as_items(&items).is_empty() {
                    return Ok(());
                }
                Some(items)
            }
            _ => None,
        };
        out.push(PatchOp { kind, path: Some(path), value: given });
        return Ok(());
    }
    let value = match value {
        None => return Err(ScimError::invalid_value(label, format!("{kind} needs a value"))),
        Some(Value::Null) if kind == PatchKind::Replace => return unassign(out),
        Some(Value::Null) => return Err(ScimError::invalid_value(label, "add needs a value, not null")),
        Some(value) => value,
    };
    let normalised = match (&path.filter, slot.sub) {
        (None, None) if multi => {
            let items = normalise_values(slot.attribute, value, &label, unpublished)?;
            check_one_primary(as_items(&items), &label)?;
            match (kind, as_items(&items).is_empty()) {
                (PatchKind::Replace, true) => return unassign(out),
                (_, true) => return Ok(()),
                _ => items,
            }
        }
        (None, Some(_)) if multi => {
            return Err(ScimError::invalid_path(
                label,
                format!("select the values to change with a filter, e.g. {}[type eq \"work\"]", slot.attribute.name),
            ));
        }
        (None, None) if complex && clears(slot.attribute, value) => return unassign(out),
        (None, None) => {
            // Entra sends the manager as a bare id
            let value = match (value, slot.attribute.sub_attribute("value")) {
                (Value::String(_) | Value::Number(_) | Value::Bool(_), Some(sub)) if complex => {
                    json!({ sub.name.as_str(): value })
                }
                _ => value.clone(),
            };
            let value = normalise_single(slot.attribute, &value, &label, unpublished)?;
            if value.as_object().is_some_and(Map::is_empty) {
                return Ok(());
            }
            value
        }
        (_, Some(sub)) => normalise_single(sub, value, &label, unpublished)?,
        (Some(_), None) if !complex && kind == PatchKind::Add => {
            return Err(ScimError::invalid_path(
                label,
                "add values of this attribute with its plain path, without a filter",
            ));
        }
        (Some(_), None) => {
            // one object where the selected values get replaced or merged; [object] is accepted too
            let single = match value {
                Value::Array(items) if items.len() == 1 => items.first().unwrap_or(value),
                other => other,
            };
            if complex && !single.is_object() {
                return Err(ScimError::invalid_value(label, format!("expected an object, got {}", kind_of(single))));
            }
            let value = normalise_single(slot.attribute, single, &label, unpublished)?;
            if value.as_object().is_some_and(Map::is_empty) {
                return Err(ScimError::invalid_value(label, "the value has no sub-attribute that can be written"));
            }
            value
        }
    };
    out.push(PatchOp { kind, path: Some(path), value: Some(normalised) });
    Ok(())
}

/// True when a value for a singular complex attribute with a `value` sub-attribute asks to
/// clear it: `""`, or an object whose `value` is `""` or null (how Entra removes a manager).
fn clears(attribute: &Attribute, value: &Value) -> bool {
    if attribute.sub_attribute("value").is_none() {
        return false;
    }
    match value {
        Value::String(s) => s.is_empty(),
        Value::Object(_) => get_key(value, "value").is_some_and(|v| v.is_null() || v.as_str() == Some("")),
        _ => false,
    }
}

/// Normalises a value for a multi-valued attribute into an array: a single value is wrapped,
/// null and empty elements are dropped. Values of a complex attribute must be objects.
fn normalise_values(
    attribute: &Attribute,
    value: &Value,
    label: &str,
    unpublished: &mut Unpublished,
) -> Result<Value, ScimError> {
    let mut out = Vec::new();
    for (index, item) in as_items(value).iter().enumerate() {
        let label = format!("{label}[{index}]");
        if item.is_null() {
            continue;
        }
        if attribute.kind == AttrType::Complex && !item.is_object() {
            return Err(ScimError::invalid_value(label, format!("expected an object, got {}", kind_of(item))));
        }
        let item = normalise_single(attribute, item, &label, unpublished)?;
        if is_assigned(&item) {
            out.push(item);
        }
    }
    Ok(Value::Array(out))
}

/// Checks one value (of a singular attribute, or one element of a multi-valued one) against
/// its definition and returns it in canonical form: names in the schema's spelling,
/// `"True"`/`"False"` as booleans, null and readOnly sub-attributes dropped, and
/// sub-attributes the schema does not publish given to `unpublished`.
pub(super) fn normalise_single(
    def: &Attribute,
    value: &Value,
    label: &str,
    unpublished: &mut Unpublished,
) -> Result<Value, ScimError> {
    let wrong =
        |expected: &str| Err(ScimError::invalid_value(label, format!("expected {expected}, got {}", kind_of(value))));
    match (def.kind, value) {
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(_)) => Ok(value.clone()),
        (AttrType::String, _) => wrong("a string"),
        (AttrType::Reference, _) => wrong("a reference (URI string)"),
        (AttrType::Binary, _) => wrong("base64-encoded binary as a string"),
        (AttrType::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (AttrType::Boolean, Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        (AttrType::Boolean, Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        (AttrType::Boolean, _) => wrong("a boolean"),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
        (AttrType::Integer, _) => wrong("an integer"),
        (AttrType::Decimal, Value::Number(_)) => Ok(value.clone()),
        (AttrType::Decimal, _) => wrong("a decimal number"),
        (AttrType::DateTime, Value::String(s)) if OffsetDateTime::parse(s, &Rfc3339).is_ok() => Ok(value.clone()),
        (AttrType::DateTime, _) => wrong("a date and time such as 2015-09-30T12:00:00Z"),
        (AttrType::Complex, Value::Object(object)) => {
            reject_duplicate_keys(object, &format!("{label}."))?;
            let mut out = Map::new();
            for (key, member) in object {
                let Some(sub) = def.sub_attribute(key) else {
                    let at = format!("{label}.{key}");
                    let refusal =
                        ScimError::invalid_value(at.as_str(), format!("no such sub-attribute of {}", def.name));
                    unpublished.skip(at, refusal)?;
                    continue;
                };
                if member.is_null() || sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                let member = normalise_single(sub, member, &format!("{label}.{}", sub.name), unpublished)?;
                out.insert(sub.name.clone(), member);
            }
            Ok(Value::Object(out))
        }
        (AttrType::Complex, _) => wrong("an object"),
    }
}

/// At most one value of a multi-valued attribute may be primary (RFC 7643 §2.4).
fn check_one_primary(items: &[Value], label: &str) -> Result<(), ScimError> {
    let primaries = items.iter().filter(|item| is_primary(item)).count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(
            label,
            format!("{primaries} values are marked primary; at most one may be"),
        ));
    }
    Ok(())
}

/// Fails when two keys of one object differ only in case: names are case-insensitive.
fn reject_duplicate_keys(object: &Map<String, Value>, prefix: &str) -> Result<(), ScimError> {
    let mut seen = HashSet::with_capacity(object.len());
    for key in object.keys() {
        if !seen.insert(key.to_ascii_lowercase()) {
            return Err(ScimError::invalid_value(
                format!("{prefix}{key}"),
                "given more than once (names are case-insensitive)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::patch::fixtures::{ENTERPRISE, bjensen, body, groups, refuse, scim_type, users};
    use crate::scim::patch::{apply_patch, parse_patch};
    use crate::scim::path::AttrPath;

    #[test]
    fn operations_on_unpublished_attributes_are_left_out_or_refused() {
        let mut rs = users();
        rs.core = crate::scim::definitions::restrict(
            &crate::scim::definitions::user_schema(),
            &["name.givenName".to_owned(), "active".to_owned(), "emails".to_owned()],
        )
        .unwrap();
        let ops = json!([
            {"op": "Replace", "path": "preferredLanguage", "value": "en-GB"},
            {"op": "Add", "path": "name.formatted", "value": "Ada L"},
            {"op": "Replace", "path": "urn:example:unknown:2.0:User:badge", "value": "7"},
            {"op": "replace", "value": {"locale": "en-GB", "active": "False", "name": {"formatted": "A", "givenName": "Ada"}}},
            {"op": "Add", "path": "emails", "value": [{"value": "a@example.com", "type": "work", "label": "x"}]}
        ]);
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        let parsed = parse_patch(&body(ops.clone()), &rs, &mut ignore).unwrap();
        let kept: Vec<String> = parsed.iter().map(|op| format!("{} {}", op.kind, op.path.as_ref().unwrap())).collect();
        assert_eq!(kept, ["replace active", "replace name", "add emails"]);
        assert_eq!(parsed[1].value, Some(json!({"givenName": "Ada"})));
        assert_eq!(parsed[2].value, Some(json!([{"value": "a@example.com", "type": "work"}])));
        assert_eq!(
            ignore.ignored(),
            ["preferredLanguage", "name.formatted", "urn:example:unknown:2.0:User:badge", "locale", "emails.label"]
        );
        let err = parse_patch(&body(ops), &rs, &mut refuse()).unwrap_err();
        assert!(matches!(&err, ScimError::InvalidPath { .. }), "{err}");
        assert!(err.to_string().contains("Operations[0]"), "{err}");
        // Only unpublished operations: nothing left to do, which is not an error.
        let only = json!([{"op": "remove", "path": "nickName"}]);
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        assert!(parse_patch(&body(only), &rs, &mut ignore).unwrap().is_empty());
        // A path that does not parse is refused under either policy.
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        let err = parse_patch(&body(json!([{"op": "remove", "path": "name..x"}])), &rs, &mut ignore).unwrap_err();
        assert!(matches!(&err, ScimError::InvalidPath { .. }), "{err}");
    }

    #[test]
    fn operations_come_back_in_normal_form() {
        let ops = parse_patch(
            &body(json!([
                { "Op": "Replace", "PATH": "EMAILS[TYPE EQ \"work\"].VALUE", "Value": "b@example.com" },
                { "op": "replace", "value": {
                    "id": "ignored",
                    "active": "False",
                    format!("{ENTERPRISE}:manager"): "26118915",
                    "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName": "Barbara"
                } },
                { "op": "Replace", "path": "manager", "value": { "value": "" } },
                { "op": "remove", "path": "members", "value": [{ "value": "1" }] },
                { "op": "add", "path": "emails", "value": { "value": "c@example.com", "Primary": "TRUE" } },
                { "op": "add", "path": "", "value": { ENTERPRISE: { "costcenter": "42" } } },
            ])),
            &users(),
            &mut refuse(),
        );
        // members is no User attribute
        assert!(matches!(ops, Err(ScimError::InvalidPath { .. })));
        let ops = parse_patch(
            &body(json!([
                { "Op": "Replace", "PATH": "EMAILS[TYPE EQ \"work\"].VALUE", "Value": "b@example.com" },
                // keys whose sorted order is their written order, whichever order serde_json keeps
                { "op": "replace", "value": {
                    "active": "False",
                    "id": "ignored",
                    "name.GIVENNAME": "Barbara",
                    format!("{ENTERPRISE}:manager"): "26118915"
                } },
                { "op": "Replace", "path": "manager", "value": { "value": "" } },
                { "op": "add", "path": "emails", "value": { "value": "c@example.com", "Primary": "TRUE" } },
                { "op": "add", "path": "", "value": { ENTERPRISE: { "costcenter": "42" } } },
            ])),
            &users(),
            &mut refuse(),
        )
        .unwrap();
        let printed: Vec<Value> = ops.iter().map(PatchOp::to_json).collect();
        let manager = format!("{ENTERPRISE}:manager");
        assert_eq!(
            printed,
            vec![
                json!({ "op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@example.com" }),
                json!({ "op": "replace", "path": "active", "value": false }),
                json!({ "op": "replace", "path": "name.givenName", "value": "Barbara" }),
                json!({ "op": "replace", "path": manager, "value": { "value": "26118915" } }),
                json!({ "op": "remove", "path": manager, "value": null }),
                json!({ "op": "add", "path": "emails", "value": [{ "value": "c@example.com", "primary": true }] }),
                json!({ "op": "add", "path": format!("{ENTERPRISE}:costCenter"), "value": "42" }),
            ]
        );
        let ops = parse_patch(
            &body(json!([{ "op": "remove", "path": "members", "value": { "value": "1" } }])),
            &groups(),
            &mut refuse(),
        )
        .unwrap();
        assert_eq!(ops[0].to_json(), json!({ "op": "remove", "path": "members", "value": [{ "value": "1" }] }));
    }

    #[test]
    fn hand_built_operations_are_checked_like_parsed_ones() {
        let op = |path: AttrPath, value: Value| PatchOp {
            kind: PatchKind::Replace,
            path: Some(PatchPath { attr: path, filter: None, sub: None }),
            value: Some(value),
        };
        let result = apply_patch(&users(), &bjensen(), &[op(AttrPath::simple("NICKNAME"), json!("Bee"))]).unwrap();
        assert_eq!(result["nickName"], "Bee");
        let error = apply_patch(&users(), &bjensen(), &[op(AttrPath::simple("active"), json!("yes"))]).unwrap_err();
        assert_eq!(scim_type(&error), "invalidValue");
        let error = apply_patch(&users(), &bjensen(), &[op(AttrPath::simple("id"), json!("1"))]).unwrap_err();
        assert_eq!(scim_type(&error), "mutability");
        let weird = AttrPath { urn: None, name: "emails[".into(), sub: None };
        let error = apply_patch(&users(), &bjensen(), &[op(weird, json!("x"))]).unwrap_err();
        assert_eq!(scim_type(&error), "invalidPath");
        let error = apply_patch(&users(), &json!("not a user"), &[]).unwrap_err();
        assert_eq!(scim_type(&error), "invalidSyntax");
    }
}
