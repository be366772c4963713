//! Runs of consecutive operations done in one pass (removals by id, adds and removals of whole
//! values), so that a PATCH of a thousand operations on a large group takes linear time.

use serde_json::{Map, Value};

use super::apply::op_value;
use super::multi_valued::{IndexedValues, settle_primary_in};
use super::operation::{PatchKind, PatchOp, PatchPath};
use super::resource::{as_items, into_items, put_attr, take_attr};
use super::select::{Selector, eq_texts};
use super::target::{Target, resolve_target};
use crate::scim::error::ScimError;
use crate::scim::path::AttrPath;
use crate::scim::schema::{Mutability, ResourceSchema};

/// How many operations from the start of `ops` are removals of values selected by
/// `field eq "text"` filters on the same attribute and field, with the selector that does
/// them in one pass; `(1, None)` when the first operation is not such a removal. Removing
/// the union at once equals removing each set in turn, as a removal that selects nothing
/// changes nothing.
pub(super) fn removal_run<'p>(rs: &ResourceSchema, ops: &'p [PatchOp]) -> (usize, Option<Selector<'p>>) {
    let eligible = |op: &'p PatchOp| match &op.path {
        Some(path @ PatchPath { filter: Some(filter), sub: None, .. }) if op.kind == PatchKind::Remove => {
            Some((path, filter))
        }
        _ => None,
    };
    let Some((first, filter)) = ops.first().and_then(eligible) else { return (1, None) };
    let Ok(Target::Attribute(slot)) = resolve_target(rs, first) else { return (1, None) };
    let Some((field, mut texts)) = eq_texts(filter, slot.attribute) else { return (1, None) };
    let mut count = 1;
    for op in ops.iter().skip(1) {
        let Some((path, filter)) = eligible(op) else { break };
        match eq_texts(filter, slot.attribute) {
            Some((other, more)) if path.attr == first.attr && other == field => texts.extend(more),
            _ => break,
        }
        count += 1;
    }
    (count, Some(Selector::Texts { field, texts }))
}

/// How many operations at the start of `rest` add or remove whole values (no filter, no
/// sub-attribute) of the multi-valued attribute that `first`, such an operation too, changed;
/// 0 when `first` is not one. Immutable attributes are left to one operation at a time, as
/// each operation checks its change against the value the one before left.
pub(super) fn value_run(rs: &ResourceSchema, first: &PatchOp, rest: &[PatchOp]) -> usize {
    let whole_values = |op: &PatchOp| -> Option<AttrPath> {
        let path = op.path.as_ref().filter(|p| p.filter.is_none() && p.sub.is_none() && p.attr.sub.is_none())?;
        let changes_values = match op.kind {
            PatchKind::Add | PatchKind::Remove => op.value.is_some(),
            PatchKind::Replace => false,
        };
        let Ok(Target::Attribute(slot)) = resolve_target(rs, path) else { return None };
        let eligible =
            changes_values && slot.attribute.multi_valued && slot.attribute.mutability != Mutability::Immutable;
        eligible.then(|| path.attr.clone())
    };
    let Some(attr) = whole_values(first) else { return 0 };
    rest.iter().take_while(|op| whole_values(op).is_some_and(|other| other == attr)).count()
}

/// Applies a run found by [`value_run`] with one index kept across it: each operation costs
/// what it adds or removes, not what the attribute holds. The result, and the first error,
/// are those of applying the operations one at a time: the operation before the run left the
/// attribute pruned, and each operation here prunes the values it wrote.
pub(super) fn execute_value_run(
    rs: &ResourceSchema,
    doc: &mut Map<String, Value>,
    ops: &[PatchOp],
) -> Result<(), ScimError> {
    let Some(path) = ops.first().and_then(|op| op.path.as_ref()) else { return Ok(()) };
    let Target::Attribute(slot) = resolve_target(rs, path)? else { return Ok(()) };
    let label = path.to_string();
    let old = take_attr(doc, slot.ext, &slot.attribute.name);
    let mut values = IndexedValues::new(slot.attribute, into_items(old));
    for op in ops {
        let had = values.live > 0;
        let given = as_items(op_value(op, &label)?);
        if op.kind == PatchKind::Add {
            let touched = values.add(given);
            values.prune_at(&touched);
            settle_primary_in(&mut values.items, touched, &label, |slot| slot.as_mut())?;
        } else {
            values.remove(given);
        }
        if slot.attribute.required && had && values.live == 0 {
            return Err(ScimError::Mutability {
                attribute: label,
                detail: "required: it cannot be removed".to_owned(),
            });
        }
    }
    let items = values.into_items();
    put_attr(doc, slot.ext, &slot.attribute.name, (!items.is_empty()).then_some(Value::Array(items)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::scim::definitions::{custom_schema_from_json, user_resource};
    use crate::scim::patch::fixtures::{
        ACME, Rng, body, groups, member, minimal_user, patch, refuse, scim_type, users, with,
    };
    use crate::scim::patch::{MAX_OPERATIONS, apply_patch, parse_patch};
    use crate::scim::schema::GROUP_SCHEMA;

    #[test]
    fn a_run_of_removals_equals_removing_one_at_a_time() {
        let rs = groups();
        let mut rng = Rng(0x1405_7B7E_F767_814F);
        for _ in 0..300 {
            let ids: Vec<String> = (0..rng.below(12)).map(|i| format!("m{i}-{}", rng.word())).collect();
            let members: Vec<Value> = ids.iter().map(|id| json!({ "value": id })).collect();
            let group = json!({ "schemas": [GROUP_SCHEMA], "id": "g", "displayName": "G", "members": members });
            let ops: Vec<Value> = (0..1 + rng.below(6))
                .map(|_| {
                    let id = if ids.is_empty() || rng.chance(20) { "stranger".to_owned() } else { rng.pick(&ids) };
                    let id = if rng.chance(30) { id.to_uppercase() } else { id };
                    match rng.below(4) {
                        0 => json!({ "op": "remove", "path": format!("members[value eq \"{id}\" or value eq \"x\"]") }),
                        1 => json!({ "op": "remove", "path": format!("members[display eq \"{id}\"]") }),
                        2 => json!({ "op": "remove", "path": format!("members[value sw \"{id}\"]") }),
                        _ => json!({ "op": "remove", "path": format!("members[value eq \"{id}\"]") }),
                    }
                })
                .collect();
            let at_once = patch(&rs, &group, Value::Array(ops.clone())).unwrap();
            let mut one_by_one = group.clone();
            for op in ops {
                one_by_one = patch(&rs, &one_by_one, json!([op])).unwrap();
            }
            assert_eq!(at_once, one_by_one);
        }
    }

    #[test]
    fn a_run_of_value_adds_and_removals_equals_doing_them_one_at_a_time() {
        let rs = users();
        let mut rng = Rng(0x5EED_0FAD_0500_u64);
        let types = ["work", "home", "other"];
        for _ in 0..300 {
            let addresses: Vec<String> =
                (0..1 + rng.below(6)).map(|i| format!("a{i}@{}.example", rng.word())).collect();
            let email = |rng: &mut Rng| {
                let address = rng.pick(&addresses);
                let address = if rng.chance(30) { address.to_uppercase() } else { address };
                let mut value = json!({ "value": address });
                if rng.chance(60) {
                    value["type"] = json!(rng.pick(&types));
                }
                if rng.chance(15) {
                    value["primary"] = json!(true);
                }
                if rng.chance(20) {
                    value["display"] = json!(rng.word());
                }
                value
            };
            let stored: Vec<Value> = (0..rng.below(4)).map(|_| email(&mut rng)).collect();
            let user = with(minimal_user(), |u| {
                u["emails"] = Value::Array(
                    stored
                        .into_iter()
                        .map(|mut e| {
                            e["primary"] = json!(false);
                            e
                        })
                        .collect(),
                );
                u[ACME] = json!({ "tags": ["x", "Y"] });
            });
            let ops: Vec<Value> = (0..2 + rng.below(8))
                .map(|_| {
                    if rng.chance(20) {
                        let tags: Vec<Value> =
                            (0..1 + rng.below(3)).map(|_| json!(rng.pick(&["x", "y", "Z"]))).collect();
                        let kind = if rng.chance(50) { "add" } else { "remove" };
                        return json!({ "op": kind, "path": format!("{ACME}:tags"), "value": tags });
                    }
                    let values: Vec<Value> = (0..1 + rng.below(3)).map(|_| email(&mut rng)).collect();
                    let kind = if rng.chance(60) { "add" } else { "remove" };
                    json!({ "op": kind, "path": "emails", "value": values })
                })
                .collect();
            let at_once = patch(&rs, &user, Value::Array(ops.clone()));
            let mut one_by_one = Ok(user.clone());
            for op in &ops {
                one_by_one = one_by_one.and_then(|resource| patch(&rs, &resource, json!([op])));
            }
            match (at_once, one_by_one) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{ops:#?}"),
                (Err(a), Err(b)) => assert_eq!(scim_type(&a), scim_type(&b), "{a} but one at a time {b}: {ops:#?}"),
                (a, b) => panic!("{a:?} but one at a time {b:?}: {ops:#?}"),
            }
        }
        // a required multi-valued attribute emptied in the middle of a run fails as it would alone
        let required = custom_schema_from_json(&json!({
            "id": "urn:example:scim:req:1.0:User",
            "attributes": [{ "name": "codes", "multiValued": true, "required": true }]
        }))
        .unwrap();
        let rs = user_resource(vec![(required, false)]);
        let path = "urn:example:scim:req:1.0:User:codes";
        let user = with(minimal_user(), |u| u["urn:example:scim:req:1.0:User"] = json!({ "codes": ["a"] }));
        let error = patch(
            &rs,
            &user,
            json!([
                { "op": "add", "path": path, "value": ["b"] },
                { "op": "remove", "path": path, "value": ["a"] },
                { "op": "remove", "path": path, "value": ["B"] },
                { "op": "add", "path": path, "value": ["c"] },
            ]),
        )
        .unwrap_err();
        assert_eq!(scim_type(&error), "mutability", "{error}");
    }

    #[test]
    fn a_thousand_operations_adding_members_take_linear_time() {
        // 1000 operations of 45 members each: rebuilding the index of the members for every
        // operation took two minutes (debug build); one index kept across the run takes well
        // under a second.
        let ops: Vec<Value> = (0..MAX_OPERATIONS)
            .map(|o| {
                let members: Vec<Value> = (0..45).map(|m| member(&format!("u{o}-{m}"), "someone")).collect();
                json!({ "op": "add", "path": "members", "value": members })
            })
            .collect();
        let group = json!({ "schemas": [GROUP_SCHEMA], "id": "g", "displayName": "G" });
        let ops = parse_patch(&body(Value::Array(ops)), &groups(), &mut refuse()).unwrap();
        let started = std::time::Instant::now();
        let patched = apply_patch(&groups(), &group, &ops).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(patched["members"].as_array().unwrap().len(), 45_000);
        assert!(elapsed < std::time::Duration::from_secs(10), "apply took {elapsed:?}");
        // a removal in the middle of the run, and members added again, come out as one at a time would
        let again = json!([
            { "op": "add", "path": "members", "value": [member("u1", "one")] },
            { "op": "remove", "path": "members", "value": [{ "value": "u0-0" }, { "value": "u1" }] },
            { "op": "add", "path": "members", "value": [member("u0-0", "back"), member("u2", "two")] },
        ]);
        let patched = patch(&groups(), &patched, again).unwrap();
        let members = patched["members"].as_array().unwrap();
        assert_eq!(members.len(), 45_001);
        assert_eq!(members.last().unwrap()["value"], "u2");
        assert_eq!(members[members.len() - 2]["display"], "back");
        assert!(!members.iter().any(|m| m["value"] == "u1"));
    }
}
