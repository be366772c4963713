//! The SCIM PATCH engine (RFC 7644 §3.5.2): a PatchOp message to checked operations, and operations to a new resource.
//!
//! [`parse_patch`] reads and checks the message against the resource type and returns the
//! operations in a normal form; [`apply_patch`] applies operations to a copy of a resource,
//! all or none. Everything static (paths, value types, readOnly, required) fails in
//! [`parse_patch`]; what depends on the stored resource (immutable values already set, a
//! filter that matches nothing) fails in [`apply_patch`].
//!
//! Decisions where the RFC leaves room, or where real IdPs need leniency:
//! - Message errors (no PatchOp URN in `schemas`, no or empty `Operations`, an operation that
//!   is not an object, an unknown `op`) are `invalidSyntax` ("the request body message
//!   structure was invalid", §3.12). `Operations`, `op`, `path` and `value` are found in any
//!   case, and `op` is read in any case (Entra sends `Add`, `Replace`, `Remove`).
//! - More than [`MAX_OPERATIONS`] operations is `invalidValue` on `Operations`: `tooMany` is
//!   defined for filters that yield too many results, not for request size.
//! - A path that does not parse, or names nothing in the resource type, is `invalidPath`; a
//!   `[ ]` filter that does not parse or names something its attribute does not have is
//!   `invalidFilter` (§3.12 lists "PATCH (Path Filter)" for it). In a pathless value, a key
//!   naming nothing is `invalidValue`, as in a POST body.
//! - A missing `value` for add or replace is `invalidValue` ("a required value was missing").
//!   `replace` with `null` (or `[]` for a multi-valued attribute) unassigns the target, as
//!   RFC 7643 §2.5 makes them equivalent; `add` with `null` is `invalidValue`.
//! - `remove` without a path is `noTarget` (§3.5.2.2). A `remove` whose filter matches nothing
//!   succeeds without change: §3.5.2.2 says of its example "If the user was not a member of
//!   this group, no changes should be made to the resource, and a success response should be
//!   returned". A `replace` whose filter matches nothing is `noTarget` (§3.5.2.3).
//! - `add` with a filter that matches nothing (§3.5.2.1 is silent; Entra sends
//!   `emails[type eq "work"].value` for a user without a work email) adds a new value built
//!   from the filter's `eq` terms when the filter is an `and` of them; otherwise `noTarget`.
//! - Removing or unassigning a required or readOnly attribute, writing a readOnly one, or
//!   changing an immutable value that is already set is `mutability` (§3.5.2, §3.5.2.2).
//!   `id`, `meta` and `schemas` inside a pathless value are ignored, as IdPs echo them
//!   (Okta sends the group `id`); `schemas` is recomputed from the extensions present.
//!   readOnly sub-attributes inside a value object are ignored, as in a POST body (§3.3).
//! - `add` to a multi-valued attribute does not add a value that is already there (§3.5.2.1):
//!   two values are the same when their `value` sub-attributes are equal (as the schema
//!   compares them) and their `type`s are equal or one is absent; attributes without `value`
//!   compare whole. A repeated value is merged into the existing one, keeping immutable
//!   sub-attributes already set (so re-adding a member never fails over its `display`).
//! - A value marked `primary` by an operation makes the others lose `primary` (§3.5.2); one
//!   operation marking two values primary is `invalidValue`.
//! - `attr.sub` on a multi-valued attribute without a filter is accepted for `remove` (from
//!   every value) and refused for add and replace (`invalidPath`): which values are meant is
//!   unclear, and a filter says it.
//! - `remove` of a multi-valued attribute with a `value` removes only the values given (the
//!   form Entra sends to remove group members), matched as for duplicates above.
//! - Pathless add and replace are expanded into one operation per attribute, so every
//!   operation [`parse_patch`] returns has a path. Keys may be dotted (`name.givenName`),
//!   URN-qualified (`urn:…:User:department`) or a bare extension URN holding an object.
//! - Values are read leniently: `"True"`/`"False"` for booleans, any case for attribute
//!   names, a single value where an array is expected, a bare string for a singular complex
//!   attribute with a `value` sub-attribute (Entra's `manager`), and `""` or a `value` of
//!   `""`/null for such an attribute meaning "remove it".

mod members;
mod message;
mod multi_valued;
mod operation;
mod prepare;
mod resource;
mod target;

#[cfg(test)]
mod fixtures;

pub use members::{MemberChanges, member_changes};
pub use message::{MAX_OPERATIONS, PATCH_OP_SCHEMA, parse_patch};
pub use operation::{PatchKind, PatchOp, PatchPath};
pub use target::parse_patch_path;

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::evaluate::Matcher;
use super::filter::{CompareOp, Filter};
use super::path::AttrPath;
use super::schema::{AttrType, Attribute, Mutability, ResourceSchema};
use super::unpublished::{Unpublished, UnsupportedAttributes};
use super::value::{TypedValue, get_key};

use multi_valued::{IndexedValues, add_values, remove_given, same_value, settle_primary, settle_primary_in};
use prepare::{kind_of, normalise_single, prepare};
use resource::{
    PRUNE_DEPTH, as_items, finish, into_items, into_object, is_assigned, prune, put_attr, take_attr, take_key,
};
use target::{Slot, Target, element_schema, resolve_target};

/// Applies operations in order to a copy of `resource` and returns the new resource, or the
/// first error; `resource` is never changed, so a failed PATCH leaves nothing half-done
/// (RFC 7644 §3.5.2: "SHALL be treated as atomic").
///
/// Accepts the output of [`parse_patch`] or hand-built operations (which are checked the same
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

// ---------------------------------------------------------------- applying operations

/// Applies one operation in normal form to the resource being built; `selector`, when given,
/// replaces the operation's own filter (see [`removal_run`]).
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
fn op_value<'o>(op: &'o PatchOp, label: &str) -> Result<&'o Value, ScimError> {
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

/// How the values a filtered operation works on are chosen.
enum Selector<'f> {
    /// Through the filter evaluator, for any filter.
    Filter(&'f Filter),
    /// `field eq "text"` terms, perhaps of several operations: values whose `field` reads as
    /// one of `texts` (as the evaluator reads it: case-folded unless caseExact) are selected.
    Texts { field: &'f str, texts: HashSet<String> },
}

impl Selector<'_> {
    /// For each value of a multi-valued attribute, whether it is selected.
    fn select(&self, attribute: &Attribute, items: &[Value]) -> Result<Vec<bool>, ScimError> {
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
fn eq_texts<'f>(filter: &'f Filter, attribute: &Attribute) -> Option<(&'f str, HashSet<String>)> {
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

/// How many operations from the start of `ops` are removals of values selected by
/// `field eq "text"` filters on the same attribute and field, with the selector that does
/// them in one pass; `(1, None)` when the first operation is not such a removal. Removing
/// the union at once equals removing each set in turn, as a removal that selects nothing
/// changes nothing.
fn removal_run<'p>(rs: &ResourceSchema, ops: &'p [PatchOp]) -> (usize, Option<Selector<'p>>) {
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
fn value_run(rs: &ResourceSchema, first: &PatchOp, rest: &[PatchOp]) -> usize {
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
fn execute_value_run(rs: &ResourceSchema, doc: &mut Map<String, Value>, ops: &[PatchOp]) -> Result<(), ScimError> {
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

    use super::super::schema::GROUP_SCHEMA;
    use super::fixtures::{
        ACME, BABS, CORE, ENTERPRISE, JAMES, MANDY, Rng, bjensen, body, groups, member, minimal_user, patch,
        random_user, refuse, scim_type, users, with,
    };
    use super::*;
    use crate::scim::definitions::{custom_schema_from_json, rfc_examples, user_resource};

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
