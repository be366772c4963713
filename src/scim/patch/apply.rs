//! Applying operations in normal form to a copy of a resource, all or none: each operation's
//! edit of a singular attribute, of all values or of the values a filter selects.

use serde_json::{Map, Value};

use super::multi_valued::{add_values, remove_given, same_value, settle_primary};
use super::operation::{PatchKind, PatchOp};
use super::prepare::{normalise_single, prepare};
use super::resource::{
    PRUNE_DEPTH, as_items, finish, into_items, into_object, is_assigned, prune, put_attr, take_attr, take_key,
};
use super::runs::{execute_value_run, removal_run, value_run};
use super::select::Selector;
use super::target::{Slot, Target, resolve_target};
use crate::scim::error::ScimError;
use crate::scim::filter::{CompareOp, Filter};
use crate::scim::schema::{AttrType, Attribute, Mutability, ResourceSchema};
use crate::scim::unpublished::{Unpublished, UnsupportedAttributes};
use crate::scim::value::kind_of;

/// Applies operations in order to a copy of `resource` and returns the new resource, or the
/// first error; `resource` is never changed, so a failed PATCH leaves nothing half-done
/// (RFC 7644 §3.5.2: "SHALL be treated as atomic").
///
/// Accepts the output of [`parse_patch`](super::parse_patch) or hand-built operations (which are checked the same
/// way). The result has unassigned values (null, `[]`, `{}`) removed, `schemas` listing the
/// core schema and the extensions that hold data, and passes `validate_resource`; readOnly
/// attributes (`id`, `meta`, `groups`, `manager.displayName`) are kept as they were.
pub fn apply_patch(rs: &ResourceSchema, resource: &Value, ops: &[PatchOp]) -> Result<Value, ScimError> {
    let Some(original) = resource.as_object() else {
        return Err(ScimError::invalid_syntax(format!("a {} must be a JSON object", rs.name)));
    };
    let mut prepared = Vec::with_capacity(ops.len());
    for op in ops {
        let mut refuse = Unpublished::new(UnsupportedAttributes::Refuse);
        prepare(rs, op.kind, op.path.as_ref(), op.value.as_ref(), &mut prepared, &mut refuse)?;
    }
    let mut doc = original.clone();
    let mut rest = prepared.as_slice();
    while let Some(op) = rest.first() {
        // consecutive removals by id (how Okta removes members) are done in one pass over the
        // values: one pass per operation would be quadratic for a large group
        let (count, selector) = removal_run(rs, rest);
        execute(rs, &mut doc, op, selector)?;
        rest = rest.get(count.max(1)..).unwrap_or_default();
        // so are the adds and removals of whole values that follow on the same attribute (a
        // thousand operations each adding a few members): they share one index of the values
        let following = value_run(rs, op, rest);
        if following > 0 {
            execute_value_run(rs, &mut doc, rest.get(..following).unwrap_or_default())?;
            rest = rest.get(following..).unwrap_or_default();
        }
    }
    finish(rs, doc)
}

/// Applies one operation in normal form to the resource being built; `selector`, when given,
/// replaces the operation's own filter (see [`removal_run`](super::runs::removal_run)).
fn execute(
    rs: &ResourceSchema,
    doc: &mut Map<String, Value>,
    op: &PatchOp,
    selector: Option<Selector<'_>>,
) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        return Err(ScimError::NoTarget { path: String::new() });
    };
    let label = path.to_string();
    let slot = match resolve_target(rs, path)? {
        Target::Extension(ext, _) if op.kind == PatchKind::Remove => {
            take_key(doc, &ext.id);
            return Ok(());
        }
        Target::Extension(..) => {
            return Err(ScimError::invalid_path(label, "an extension URN path is only removed whole"));
        }
        Target::Attribute(slot) => slot,
    };
    let old = take_attr(doc, slot.ext, &slot.attribute.name);
    let had = old.as_ref().is_some_and(is_assigned);
    let before = (slot.attribute.mutability == Mutability::Immutable).then(|| old.clone()).flatten();
    let mut new = match (&path.filter, slot.attribute.multi_valued) {
        (Some(filter), _) => {
            let selector = selector.unwrap_or(Selector::Filter(filter));
            edit_selected(op, slot, &selector, filter, old, &label)?
        }
        (None, true) => edit_all(op, slot, old, &label)?,
        (None, false) => edit_single(op, slot, old, &label)?,
    };
    if let Some(value) = &mut new {
        prune(value, PRUNE_DEPTH);
    }
    let new = new.filter(is_assigned);
    check_change(slot.attribute, &label, before.as_ref(), new.as_ref())?;
    if slot.attribute.required && had && new.is_none() {
        return Err(ScimError::Mutability { attribute: label, detail: "required: it cannot be removed".to_owned() });
    }
    put_attr(doc, slot.ext, &slot.attribute.name, new);
    Ok(())
}

/// The normalised value of an add or replace.
pub(super) fn op_value<'o>(op: &'o PatchOp, label: &str) -> Result<&'o Value, ScimError> {
    op.value.as_ref().ok_or_else(|| ScimError::invalid_value(label, format!("{} needs a value", op.kind)))
}

/// A singular attribute, or a sub-attribute of a singular complex one.
fn edit_single(op: &PatchOp, slot: Slot<'_>, old: Option<Value>, label: &str) -> Result<Option<Value>, ScimError> {
    match (op.kind, slot.sub) {
        (PatchKind::Remove, None) => Ok(None),
        (PatchKind::Remove, Some(sub)) => {
            let Some(Value::Object(mut object)) = old else { return Ok(old) };
            let removed = take_key(&mut object, &sub.name);
            check_change(sub, label, removed.as_ref(), None)?;
            Ok(Some(Value::Object(object)))
        }
        (_, None) if slot.attribute.kind == AttrType::Complex => {
            let mut object = into_object(old);
            merge(slot.attribute, &mut object, op_value(op, label)?, label)?;
            Ok(Some(Value::Object(object)))
        }
        (_, None) => Ok(Some(op_value(op, label)?.clone())),
        (_, Some(sub)) => {
            let mut object = into_object(old);
            set_sub(sub, &mut object, op_value(op, label)?, label)?;
            Ok(Some(Value::Object(object)))
        }
    }
}

/// A multi-valued attribute without a filter: all its values.
fn edit_all(op: &PatchOp, slot: Slot<'_>, old: Option<Value>, label: &str) -> Result<Option<Value>, ScimError> {
    let mut items = into_items(old);
    match (op.kind, slot.sub) {
        (PatchKind::Remove, None) => match &op.value {
            None => return Ok(None),
            Some(given) => remove_given(slot.attribute, &mut items, as_items(given)),
        },
        (PatchKind::Remove, Some(sub)) => {
            for object in items.iter_mut().filter_map(Value::as_object_mut) {
                let removed = take_key(object, &sub.name);
                check_change(sub, label, removed.as_ref(), None)?;
            }
        }
        (PatchKind::Add, None) => {
            let touched = add_values(slot.attribute, &mut items, as_items(op_value(op, label)?));
            settle_primary(&mut items, touched, label)?;
        }
        (PatchKind::Replace, None) => {
            items.clear();
            let touched = add_values(slot.attribute, &mut items, as_items(op_value(op, label)?));
            settle_primary(&mut items, touched, label)?;
        }
        (_, Some(_)) => return Err(ScimError::invalid_path(label, "select the values to change with a filter")),
    }
    Ok(Some(Value::Array(items)))
}

/// A multi-valued attribute with a `[ ]` filter: the values it selects (RFC 7644 §3.5.2.1–3).
fn edit_selected(
    op: &PatchOp,
    slot: Slot<'_>,
    selector: &Selector<'_>,
    filter: &Filter,
    old: Option<Value>,
    label: &str,
) -> Result<Option<Value>, ScimError> {
    let mut items = into_items(old);
    let selected = selector.select(slot.attribute, &items)?;
    let matched: Vec<usize> = selected.iter().enumerate().filter(|(_, hit)| **hit).map(|(i, _)| i).collect();
    if op.kind == PatchKind::Remove {
        match slot.sub {
            None => {
                let mut hits = selected.iter();
                items.retain(|_| !hits.next().copied().unwrap_or(false));
            }
            Some(sub) => {
                for index in &matched {
                    if let Some(object) = items.get_mut(*index).and_then(Value::as_object_mut) {
                        let removed = take_key(object, &sub.name);
                        check_change(sub, label, removed.as_ref(), None)?;
                    }
                }
            }
        }
        return Ok(Some(Value::Array(items)));
    }
    let value = op_value(op, label)?;
    let touched = if matched.is_empty() {
        if op.kind == PatchKind::Replace {
            return Err(ScimError::NoTarget { path: label.to_owned() });
        }
        let Some(mut seed) = seed_from_filter(filter, slot.attribute) else {
            return Err(ScimError::NoTarget { path: label.to_owned() });
        };
        match slot.sub {
            Some(sub) => {
                seed.insert(sub.name.clone(), value.clone());
            }
            None => merge(slot.attribute, &mut seed, value, label)?,
        }
        add_values(slot.attribute, &mut items, &[Value::Object(seed)])
    } else {
        for index in &matched {
            let Some(item) = items.get_mut(*index) else { continue };
            match (op.kind, slot.sub) {
                (_, Some(sub)) => {
                    let mut object = into_object(Some(item.take()));
                    let result = set_sub(sub, &mut object, value, label);
                    *item = Value::Object(object);
                    result?;
                }
                (PatchKind::Add, None) => {
                    let mut object = into_object(Some(item.take()));
                    let result = merge(slot.attribute, &mut object, value, label);
                    *item = Value::Object(object);
                    result?;
                }
                (_, None) => *item = value.clone(),
            }
        }
        matched
    };
    settle_primary(&mut items, touched, label)?;
    Ok(Some(Value::Array(items)))
}

/// The value an `add` creates when its filter selects nothing: the filter's `eq` terms as
/// sub-attributes (`type eq "work"` gives `{"type": "work"}`, leaving out readOnly ones the
/// app assigns); `None` unless the filter is an `and` of distinct `eq` terms with non-null
/// literals of the right type.
fn seed_from_filter(filter: &Filter, attribute: &Attribute) -> Option<Map<String, Value>> {
    if attribute.kind != AttrType::Complex {
        return None;
    }
    let mut seed = Map::new();
    for term in filter.conjuncts() {
        let Filter::Compare { path, op: CompareOp::Eq, value } = term else { return None };
        let sub = attribute.sub_attribute(&path.name)?;
        if value.is_null() {
            return None;
        }
        // A readOnly term (an app that assigns `type` itself) selects; it is not the client's to set.
        if sub.mutability == Mutability::ReadOnly {
            continue;
        }
        let value =
            normalise_single(sub, value, &sub.name, &mut Unpublished::new(UnsupportedAttributes::Refuse)).ok()?;
        if seed.insert(sub.name.clone(), value).is_some() {
            return None;
        }
    }
    Some(seed)
}

/// Writes the sub-attributes of `value` into a complex value, checking immutable ones.
fn merge(def: &Attribute, object: &mut Map<String, Value>, value: &Value, label: &str) -> Result<(), ScimError> {
    let Some(members) = value.as_object() else {
        return Err(ScimError::invalid_value(label, format!("expected an object, got {}", kind_of(value))));
    };
    for (key, member) in members {
        let Some(sub) = def.sub_attribute(key) else {
            return Err(ScimError::invalid_value(
                format!("{label}.{key}"),
                format!("no such sub-attribute of {}", def.name),
            ));
        };
        set_sub(sub, object, member, label)?;
    }
    Ok(())
}

/// Sets one sub-attribute of a complex value, checking it if it is immutable.
fn set_sub(sub: &Attribute, object: &mut Map<String, Value>, value: &Value, label: &str) -> Result<(), ScimError> {
    let previous = take_key(object, &sub.name);
    let checked = check_change(sub, &format!("{label}.{}", sub.name), previous.as_ref(), Some(value));
    object.insert(sub.name.clone(), value.clone());
    checked
}

/// Fails when an immutable attribute that already has a value would get another or none
/// (RFC 7644 §3.5.2: "a client MAY 'add' a value to an 'immutable' attribute if the
/// attribute had no previous value").
fn check_change(def: &Attribute, label: &str, old: Option<&Value>, new: Option<&Value>) -> Result<(), ScimError> {
    if def.mutability != Mutability::Immutable {
        return Ok(());
    }
    match old.filter(|old| is_assigned(old)) {
        None => Ok(()),
        Some(old) if new.is_some_and(|new| same_value(def, old, new)) => Ok(()),
        Some(_) => Err(ScimError::Mutability {
            attribute: label.to_owned(),
            detail: "immutable: it can be set once and already has a value".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::definitions::rfc_examples;
    use crate::scim::patch::fixtures::{
        ACME, BABS, CORE, ENTERPRISE, JAMES, MANDY, Rng, bjensen, body, groups, member, minimal_user, patch,
        random_user, refuse, users, with,
    };
    use crate::scim::patch::parse_patch;

    #[test]
    fn the_rfc_7644_patch_examples_apply_as_the_rfc_describes() {
        let group = rfc_examples::group();
        let user = rfc_examples::full_user();
        let work_address = json!({
            "type": "work",
            "streetAddress": "911 Universal City Plaza",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "US",
            "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
            "primary": true
        });
        let cases: Vec<(&str, bool, Value, Value, Value)> = vec![
            (
                "§3.5.2.1 add a member who already is one: no change",
                false,
                group.clone(),
                json!([{ "op": "add", "path": "members", "value": [member(BABS, "Babs Jensen")] }]),
                group.clone(),
            ),
            (
                "§3.5.2.1 add a member",
                false,
                group.clone(),
                json!([{ "op": "add", "path": "members", "value": [member(JAMES, "James Smith")] }]),
                with(group.clone(), |g| g["members"].as_array_mut().unwrap().push(member(JAMES, "James Smith"))),
            ),
            (
                "§3.5.2.1 add without a path, to a user who has both values: no change",
                true,
                user.clone(),
                json!([{ "op": "add", "value": {
                    "emails": [{ "value": "babs@jensen.org", "type": "home" }],
                    "nickname": "Babs"
                } }]),
                user.clone(),
            ),
            (
                "§3.5.2.1 add without a path, to a user who has neither",
                true,
                minimal_user(),
                json!([{ "op": "add", "value": {
                    "emails": [{ "value": "babs@jensen.org", "type": "home" }],
                    "nickname": "Babs"
                } }]),
                with(minimal_user(), |u| {
                    u["emails"] = json!([{ "value": "babs@jensen.org", "type": "home" }]);
                    u["nickName"] = json!("Babs");
                }),
            ),
            (
                "§3.5.2.2 remove a single member",
                false,
                group.clone(),
                json!([{ "op": "remove", "path": format!("members[value eq \"{BABS}\"]") }]),
                with(group.clone(), |g| g["members"].as_array_mut().unwrap().remove(0).as_null().unwrap_or(())),
            ),
            (
                "§3.5.2.2 remove all members",
                false,
                group.clone(),
                json!([{ "op": "remove", "path": "members" }]),
                with(group.clone(), |g| drop(g.as_object_mut().unwrap().remove("members"))),
            ),
            (
                "§3.5.2.2 remove a value from a complex multi-valued attribute",
                true,
                user.clone(),
                json!([{ "op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]" }]),
                with(user.clone(), |u| u["emails"] = json!([{ "value": "babs@jensen.org", "type": "home" }])),
            ),
            (
                "§3.5.2.2 remove several members with an or filter",
                false,
                group.clone(),
                json!([{ "op": "remove", "path": format!("members[value eq \"{BABS}\" or value eq \"{MANDY}\"]") }]),
                with(group.clone(), |g| drop(g.as_object_mut().unwrap().remove("members"))),
            ),
            (
                "§3.5.2.2 remove one member and add another",
                false,
                group.clone(),
                json!([
                    { "op": "remove", "path": format!("members[value eq \"{BABS}\"]") },
                    { "op": "add", "path": "members", "value": [member(JAMES, "James Smith")] }
                ]),
                with(group.clone(), |g| {
                    g["members"] = json!([group["members"][1].clone(), member(JAMES, "James Smith")]);
                }),
            ),
            (
                "§3.5.2.2 replace all members with a remove and an add",
                false,
                group.clone(),
                json!([
                    { "op": "remove", "path": "members" },
                    { "op": "add", "path": "members", "value": [member(BABS, "Babs Jensen"), member(JAMES, "James Smith")] }
                ]),
                with(group.clone(), |g| {
                    g["members"] = json!([member(BABS, "Babs Jensen"), member(JAMES, "James Smith")])
                }),
            ),
            (
                "§3.5.2.3 replace all members in one operation",
                false,
                group.clone(),
                json!([{ "op": "replace", "path": "members", "value": [member(BABS, "Babs Jensen"), member(JAMES, "James Smith")] }]),
                with(group.clone(), |g| {
                    g["members"] = json!([member(BABS, "Babs Jensen"), member(JAMES, "James Smith")])
                }),
            ),
            (
                "§3.5.2.3 replace the work address",
                true,
                user.clone(),
                json!([{ "op": "replace", "path": "addresses[type eq \"work\"]", "value": work_address.clone() }]),
                with(user.clone(), |u| u["addresses"][0] = work_address.clone()),
            ),
            (
                "§3.5.2.3 replace the street of the work address",
                true,
                user.clone(),
                json!([{ "op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave" }]),
                with(user.clone(), |u| u["addresses"][0]["streetAddress"] = json!("1010 Broadway Ave")),
            ),
            (
                "§3.5.2.3 replace several attributes without a path",
                true,
                with(user.clone(), |u| {
                    u["nickName"] = json!("Barb");
                    u["emails"] = json!([{ "value": "old@example.com", "type": "other" }]);
                }),
                json!([{ "op": "replace", "value": {
                    "emails": [
                        { "value": "bjensen@example.com", "type": "work", "primary": true },
                        { "value": "babs@jensen.org", "type": "home" }
                    ],
                    "nickname": "Babs"
                } }]),
                user.clone(),
            ),
        ];
        for (name, is_user, resource, ops, expected) in cases {
            let rs = if is_user { users() } else { groups() };
            let result = patch(&rs, &resource, ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(result, expected, "{name}");
        }
    }

    #[test]
    fn what_idps_send_is_understood() {
        let manager = "26118915-6090-4610-87e4-49d8ca9f808d";
        let cases: Vec<(&str, Value, Value, Value)> = vec![
            (
                "Entra: capitalised op and a \"False\" string",
                bjensen(),
                json!([{ "op": "Replace", "path": "active", "value": "False" }]),
                with(bjensen(), |u| u["active"] = json!(false)),
            ),
            (
                "Entra: update a multi-valued property by filter",
                bjensen(),
                json!([
                    { "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com" },
                    { "op": "Replace", "path": "name.familyName", "value": "updatedFamilyName" }
                ]),
                with(bjensen(), |u| {
                    u["emails"][0]["value"] = json!("updatedEmail@microsoft.com");
                    u["name"]["familyName"] = json!("updatedFamilyName");
                }),
            ),
            (
                "Entra: add through a filter that matches nothing creates the value",
                minimal_user(),
                json!([{ "op": "Add", "path": "emails[type eq \"work\"].value", "value": "b@example.com" }]),
                with(minimal_user(), |u| u["emails"] = json!([{ "type": "work", "value": "b@example.com" }])),
            ),
            (
                "Entra: pathless replace with dotted and URN keys, manager as a bare id",
                minimal_user(),
                json!([{ "op": "Replace", "value": {
                    "name.givenName": "Barbara",
                    "name.familyName": "Jensen",
                    "active": "True",
                    format!("{ENTERPRISE}:department"): "Sales",
                    format!("{ENTERPRISE}:manager"): manager
                } }]),
                with(minimal_user(), |u| {
                    u["schemas"] = json!([CORE, ENTERPRISE]);
                    u["name"] = json!({ "givenName": "Barbara", "familyName": "Jensen" });
                    u["active"] = json!(true);
                    u[ENTERPRISE] = json!({ "department": "Sales", "manager": { "value": manager } });
                }),
            ),
            (
                "Entra: manager replaced by a bare id keeps its read-only displayName",
                bjensen(),
                json!([{ "op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": "new-boss" }]),
                with(bjensen(), |u| u[ENTERPRISE]["manager"]["value"] = json!("new-boss")),
            ),
            (
                "Entra: manager with an empty value is removed",
                bjensen(),
                json!([{ "op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": { "value": "" } }]),
                with(bjensen(), |u| drop(u[ENTERPRISE].as_object_mut().unwrap().remove("manager"))),
            ),
            (
                "manager replaced by null is removed",
                bjensen(),
                json!([{ "op": "replace", "path": "manager", "value": null }]),
                with(bjensen(), |u| drop(u[ENTERPRISE].as_object_mut().unwrap().remove("manager"))),
            ),
            (
                "Okta: deactivate with a pathless replace",
                bjensen(),
                json!([{ "op": "replace", "value": { "active": false } }]),
                with(bjensen(), |u| u["active"] = json!(false)),
            ),
            (
                "read-only id, meta and schemas in a pathless value are ignored",
                bjensen(),
                json!([{ "op": "replace", "value": {
                    "id": "something-else", "meta": { "version": "W/\"x\"" }, "schemas": [CORE], "title": "Boss"
                } }]),
                with(bjensen(), |u| u["title"] = json!("Boss")),
            ),
            (
                "names in any case",
                bjensen(),
                json!([
                    { "op": "replace", "path": "NAME.GIVENNAME", "value": "Babs" },
                    { "op": "replace", "path": "EMAILS[TYPE EQ \"home\"].DISPLAY", "value": "Home" },
                    { "op": "add", "path": ENTERPRISE.to_uppercase() , "value": { "COSTCENTER": "42" } }
                ]),
                with(bjensen(), |u| {
                    u["name"]["givenName"] = json!("Babs");
                    u["emails"][1]["display"] = json!("Home");
                    u[ENTERPRISE]["costCenter"] = json!("42");
                }),
            ),
            (
                "a single object where an array is expected",
                minimal_user(),
                json!([{ "op": "add", "path": "emails", "value": { "value": "b@example.com", "type": "other" } }]),
                with(minimal_user(), |u| u["emails"] = json!([{ "value": "b@example.com", "type": "other" }])),
            ),
            (
                "an extension object in a pathless add",
                minimal_user(),
                json!([{ "op": "add", "value": { ENTERPRISE: { "department": "Sales" } } }]),
                with(minimal_user(), |u| {
                    u["schemas"] = json!([CORE, ENTERPRISE]);
                    u[ENTERPRISE] = json!({ "department": "Sales" });
                }),
            ),
            (
                "removing the whole extension",
                bjensen(),
                json!([{ "op": "remove", "path": ENTERPRISE }]),
                rfc_examples::full_user(),
            ),
            (
                "a new primary value takes primary from the old one",
                bjensen(),
                json!([{ "op": "add", "path": "emails", "value": [{ "value": "b@new.org", "type": "other", "primary": true }] }]),
                with(bjensen(), |u| {
                    u["emails"][0]["primary"] = json!(false);
                    u["emails"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({ "value": "b@new.org", "type": "other", "primary": true }));
                }),
            ),
            (
                "re-adding a value with primary marks the existing one",
                bjensen(),
                json!([{ "op": "add", "path": "emails", "value": [{ "value": "BABS@jensen.org", "primary": "true" }] }]),
                with(bjensen(), |u| {
                    u["emails"][0]["primary"] = json!(false);
                    u["emails"][1]["value"] = json!("BABS@jensen.org");
                    u["emails"][1]["primary"] = json!(true);
                }),
            ),
            (
                "a removal whose filter matches nothing changes nothing",
                bjensen(),
                json!([{ "op": "remove", "path": "emails[type eq \"other\"]" }]),
                bjensen(),
            ),
            (
                "remove a sub-attribute of the selected values, then the last sub-attribute of a complex one",
                bjensen(),
                json!([
                    { "op": "remove", "path": "addresses[type eq \"work\"].formatted" },
                    { "op": "remove", "path": "name.givenName" },
                ]),
                with(bjensen(), |u| {
                    u["addresses"][0].as_object_mut().unwrap().remove("formatted");
                    u["name"].as_object_mut().unwrap().remove("givenName");
                }),
            ),
            (
                "an immutable attribute may be set once",
                minimal_user(),
                json!([{ "op": "add", "path": format!("{ACME}:badge"), "value": "B-7" }]),
                with(minimal_user(), |u| {
                    u["schemas"] = json!([CORE, ACME]);
                    u[ACME] = json!({ "badge": "B-7" });
                }),
            ),
            (
                "values of a multi-valued string attribute",
                minimal_user(),
                json!([
                    { "op": "add", "path": "tags", "value": ["a", "b", "c", "a"] },
                    { "op": "remove", "path": "tags[value eq \"b\"]" },
                    { "op": "replace", "path": "tags[value eq \"c\"]", "value": "d" }
                ]),
                with(minimal_user(), |u| {
                    u["schemas"] = json!([CORE, ACME]);
                    u[ACME] = json!({ "tags": ["a", "d"] });
                }),
            ),
        ];
        for (name, resource, ops, expected) in cases {
            let result = patch(&users(), &resource, ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(result, expected, "{name}");
        }
    }

    #[test]
    fn what_idps_send_to_groups_is_understood() {
        let group = rfc_examples::group();
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "Entra: remove members given as a value array removes exactly those",
                json!([{ "op": "Remove", "path": "members", "value": [{ "value": BABS }] }]),
                with(group.clone(), |g| drop(g["members"].as_array_mut().unwrap().remove(0))),
            ),
            (
                "Entra: removing someone who is not a member changes nothing",
                json!([{ "op": "Remove", "path": "members", "value": [{ "value": "not-a-member" }] }]),
                group.clone(),
            ),
            (
                "Entra: add members with a capitalised op",
                json!([{ "op": "Add", "path": "members", "value": [{ "value": JAMES }] }]),
                with(group.clone(), |g| g["members"].as_array_mut().unwrap().push(json!({ "value": JAMES }))),
            ),
            (
                "Okta: rename with the group id echoed in a pathless replace",
                json!([{ "op": "replace", "value": { "id": "e9e30dba-f08f-4109-8486-d5c6a331660a", "displayName": "Guides" } }]),
                with(group.clone(), |g| g["displayName"] = json!("Guides")),
            ),
            (
                "an immutable member display may be set when it has none",
                json!([
                    { "op": "add", "path": "members", "value": [{ "value": JAMES }] },
                    { "op": "add", "path": format!("members[value eq \"{JAMES}\"].display"), "value": "James Smith" }
                ]),
                with(group.clone(), |g| {
                    g["members"].as_array_mut().unwrap().push(json!({ "value": JAMES, "display": "James Smith" }));
                }),
            ),
            (
                "re-adding a member with another display keeps the member as it is",
                json!([{ "op": "add", "path": "members", "value": [{ "value": BABS, "display": "Barbara" }] }]),
                group.clone(),
            ),
        ];
        for (name, ops, expected) in cases {
            let result = patch(&groups(), &group, ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(result, expected, "{name}");
        }
    }

    #[test]
    fn a_failing_operation_leaves_nothing_half_done() {
        let user = bjensen();
        let before = user.clone();
        let ops = parse_patch(
            &body(json!([
                { "op": "replace", "path": "displayName", "value": "Barbara" },
                { "op": "add", "path": "emails", "value": [{ "value": "new@example.com" }] },
                { "op": "replace", "path": "phoneNumbers[type eq \"pager\"].value", "value": "555" },
            ])),
            &users(),
            &mut refuse(),
        )
        .unwrap();
        let error = apply_patch(&users(), &user, &ops).unwrap_err();
        assert!(matches!(&error, ScimError::NoTarget { path } if path == "phoneNumbers[type eq \"pager\"].value"));
        assert_eq!(user, before);
        // the first two alone succeed, so the failure is what stopped them
        let done = apply_patch(&users(), &user, &ops[..2]).unwrap();
        assert_eq!(done["displayName"], "Barbara");
    }

    /// Paths and values that are valid, nearly valid and wrong, for random operations.
    fn path_pool() -> Vec<Value> {
        let mut paths: Vec<Value> = [
            "title",
            "active",
            "userName",
            "name",
            "name.givenName",
            "emails",
            "emails[type eq \"work\"]",
            "emails[type eq \"work\"].value",
            "emails[value pr].primary",
            "emails.type",
            "phoneNumbers[type eq \"mobile\"]",
            "roles[value sw \"r\"]",
            "addresses[type eq \"home\"].locality",
            "manager",
            "manager.value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "id",
            "meta",
            "groups",
            "schemas",
            "x509Certificates",
            "urn:example:scim:acme:1.0:User:badge",
            "urn:example:scim:acme:1.0:User:tags",
            "tags[value eq \"a\"]",
            "nope",
            "emails[",
            "emails[type eq]",
            "",
            "emails[type eq \"work\"].nope",
        ]
        .iter()
        .map(|p| json!(p))
        .collect();
        paths.push(Value::Null);
        paths.push(json!(3));
        paths
    }

    fn value_pool() -> Vec<Value> {
        vec![
            json!("x"),
            json!("True"),
            json!(""),
            json!(7),
            json!(1.5),
            json!(true),
            json!(null),
            json!([]),
            json!({}),
            json!(["a", "b"]),
            json!({ "value": "v", "type": "work", "primary": true }),
            json!([{ "value": "v1" }, { "value": "v2", "primary": "true" }]),
            json!({ "givenName": "B", "familyName": null }),
            json!({ "title": "t", "name.givenName": "g", "emails": { "value": "e" } }),
            json!({ "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "d" } }),
            json!({ "value": "" }),
            json!({ "id": "other", "active": "False" }),
        ]
    }

    #[test]
    fn random_operations_never_panic_and_never_touch_read_only_data() {
        let rs = users();
        let (paths, values) = (path_pool(), value_pool());
        let kinds = ["add", "remove", "replace", "Add", "REPLACE", "copy"];
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut applied = 0;
        for n in 0..3000 {
            let user = apply_patch(&rs, &random_user(&mut rng, n), &[]).unwrap();
            let ops: Vec<Value> = (0..1 + rng.below(4))
                .map(|_| {
                    let mut op = json!({ "op": rng.pick(&kinds) });
                    if rng.chance(85) {
                        op["path"] = rng.pick(&paths);
                    }
                    if rng.chance(85) {
                        op["value"] = rng.pick(&values);
                    }
                    op
                })
                .collect();
            let Ok(ops) = parse_patch(&body(Value::Array(ops)), &rs, &mut refuse()) else { continue };
            if let Ok(result) = apply_patch(&rs, &user, &ops) {
                applied += 1;
                for read_only in ["id", "meta", "groups"] {
                    assert_eq!(result.get(read_only), user.get(read_only), "{read_only} after {ops:?}");
                }
                assert_eq!(apply_patch(&rs, &result, &[]).unwrap(), result, "the result is in final form");
            }
        }
        assert!(applied > 100, "only {applied} random patches applied");
    }
}
