//! The membership changes of a group PATCH, for the optional `add_members`/`remove_members`
//! script hooks: which member ids are added and removed, or the whole new list.

use serde_json::Value;

use super::operation::{PatchKind, PatchOp};
use super::resource::as_items;
use crate::scim::filter::{CompareOp, Filter};
use crate::scim::schema::GROUP_SCHEMA;
use crate::scim::value::get_key;

/// The membership changes of a PATCH that only touches a group's `members` (and perhaps its
/// `displayName`), for the optional `add_members`/`remove_members` script hooks.
///
/// Ids are the members' `value`s, each listed once, in the order first sent. When
/// `replace_all` is false the new member list is the old one minus `remove` plus `add`; when
/// it is true (a `replace` of `members`, or a `remove` of all of them) it is exactly `add`,
/// and `remove` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChanges {
    /// Member ids to add.
    pub add: Vec<String>,
    /// Member ids to remove.
    pub remove: Vec<String>,
    /// True when the operations set the whole member list rather than edit it.
    pub replace_all: bool,
    /// The new `displayName`, when an operation sets it.
    pub display_name: Option<String>,
}

/// Builds [`MemberChanges`] in time linear in the number of ids: sets answer "is it listed"
/// and the lists keep the order ids were first sent; an id moved from one list to the other
/// is dropped from the first when the lists are read out.
#[derive(Default)]
struct MemberTally {
    add: Vec<String>,
    remove: Vec<String>,
    adding: std::collections::HashSet<String>,
    removing: std::collections::HashSet<String>,
    replace_all: bool,
    display_name: Option<String>,
}

impl MemberTally {
    fn add_member(&mut self, id: String) {
        self.removing.remove(&id);
        if self.adding.insert(id.clone()) {
            self.add.push(id);
        }
    }

    fn remove_member(&mut self, id: String) {
        self.adding.remove(&id);
        if !self.replace_all && self.removing.insert(id.clone()) {
            self.remove.push(id);
        }
    }

    fn reset(&mut self) {
        self.replace_all = true;
        self.add.clear();
        self.remove.clear();
        self.adding.clear();
        self.removing.clear();
    }

    fn finish(self) -> MemberChanges {
        let (adding, removing) = (self.adding, self.removing);
        let mut add: Vec<String> = self.add.into_iter().filter(|id| adding.contains(id)).collect();
        let mut remove: Vec<String> = self.remove.into_iter().filter(|id| removing.contains(id)).collect();
        // An id removed, added back and removed again is listed twice in the raw order.
        let mut seen = std::collections::HashSet::new();
        add.retain(|id| seen.insert(id.clone()));
        seen.clear();
        remove.retain(|id| seen.insert(id.clone()));
        MemberChanges { add, remove, replace_all: self.replace_all, display_name: self.display_name }
    }
}

/// The membership changes of a group PATCH, when its operations (as [`parse_patch`](super::parse_patch) returns
/// them) only add, remove or replace `members` by id and perhaps set `displayName`; `None`
/// when any operation does something else, such as selecting members by another filter than
/// `value eq "…"` (or an `or` of them) or changing a member's sub-attribute.
///
/// The caller still runs [`apply_patch`](super::apply_patch) first, so a PATCH that fails there fails the same
/// way whether or not the hooks are used.
pub fn member_changes(ops: &[PatchOp]) -> Option<MemberChanges> {
    let mut changes = MemberTally::default();
    for op in ops {
        let path = op.path.as_ref()?;
        let core = path.attr.urn.as_ref().is_none_or(|urn| urn.eq_ignore_ascii_case(GROUP_SCHEMA));
        if !core || path.attr.sub.is_some() || path.sub.is_some() {
            return None;
        }
        if path.attr.name.eq_ignore_ascii_case("displayName") && path.filter.is_none() {
            match (op.kind, op.value.as_ref().and_then(Value::as_str)) {
                (PatchKind::Add | PatchKind::Replace, Some(name)) => changes.display_name = Some(name.to_owned()),
                _ => return None,
            }
            continue;
        }
        if !path.attr.name.eq_ignore_ascii_case("members") {
            return None;
        }
        match (op.kind, &path.filter, &op.value) {
            (PatchKind::Add, None, Some(value)) => member_ids(value)?.into_iter().for_each(|id| changes.add_member(id)),
            (PatchKind::Replace, None, Some(value)) => {
                let ids = member_ids(value)?;
                changes.reset();
                ids.into_iter().for_each(|id| changes.add_member(id));
            }
            (PatchKind::Remove, None, None) => changes.reset(),
            (PatchKind::Remove, None, Some(value)) => {
                member_ids(value)?.into_iter().for_each(|id| changes.remove_member(id));
            }
            (PatchKind::Remove, Some(filter), _) => {
                filter_ids(filter)?.into_iter().for_each(|id| changes.remove_member(id));
            }
            _ => return None,
        }
    }
    Some(changes.finish())
}

/// The `value` of each member object in a `members` value; `None` if one has no string `value`.
fn member_ids(value: &Value) -> Option<Vec<String>> {
    as_items(value).iter().map(|member| get_key(member, "value").and_then(Value::as_str).map(str::to_owned)).collect()
}

/// The ids of `value eq "…"` (or an `or` of them); `None` for any other filter.
fn filter_ids(filter: &Filter) -> Option<Vec<String>> {
    filter
        .disjuncts()
        .into_iter()
        .map(|term| match term {
            Filter::Compare { path, op: CompareOp::Eq, value: Value::String(id) }
                if path.name.eq_ignore_ascii_case("value") && path.urn.is_none() && path.sub.is_none() =>
            {
                Some(id.clone())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::scim::definitions::group_resource;
    use crate::scim::patch::fixtures::{body, groups, refuse};
    use crate::scim::patch::{PATCH_OP_SCHEMA, parse_patch};

    #[test]
    fn member_changes_of_fifty_thousand_ids_in_one_operation() {
        // One add of 50,000 members, half of them removed again: linear bookkeeping, exact result.
        let members: Vec<Value> = (0..50_000).map(|i| json!({ "value": format!("u{i}") })).collect();
        let removed: Vec<Value> = (0..25_000).map(|i| json!({ "value": format!("u{}", i * 2) })).collect();
        let body = json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": [
            { "op": "add", "path": "members", "value": members },
            { "op": "remove", "path": "members", "value": removed },
        ]});
        let ops = parse_patch(&body, &group_resource(vec![]), &mut refuse()).unwrap();
        let changes = member_changes(&ops).unwrap();
        assert_eq!(changes.add.len(), 25_000);
        assert_eq!(changes.add[0], "u1");
        assert_eq!(changes.remove.len(), 25_000);
        assert_eq!(changes.remove[0], "u0");
    }

    #[test]
    fn member_changes_are_found_only_for_member_edits() {
        let ids = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
        let cases: Vec<(Value, Option<MemberChanges>)> = vec![
            (
                json!([{ "op": "Add", "path": "members", "value": [{ "value": "a" }, { "value": "b" }] }]),
                Some(MemberChanges { add: ids(&["a", "b"]), ..MemberChanges::default() }),
            ),
            (
                json!([
                    { "op": "remove", "path": "members[value eq \"a\" or value eq \"b\"]" },
                    { "op": "Remove", "path": "members", "value": [{ "value": "c" }] },
                    { "op": "add", "path": "members", "value": { "value": "b" } },
                ]),
                Some(MemberChanges { add: ids(&["b"]), remove: ids(&["a", "c"]), ..MemberChanges::default() }),
            ),
            (
                json!([
                    { "op": "replace", "path": "members", "value": [{ "value": "a" }] },
                    { "op": "replace", "path": "displayName", "value": "Guides" },
                ]),
                Some(MemberChanges {
                    add: ids(&["a"]),
                    replace_all: true,
                    display_name: Some("Guides".into()),
                    ..MemberChanges::default()
                }),
            ),
            (
                json!([
                    { "op": "remove", "path": "members" },
                    { "op": "add", "path": "members", "value": [{ "value": "a" }, { "value": "b" }] },
                    { "op": "remove", "path": "members[value eq \"b\"]" },
                ]),
                Some(MemberChanges { add: ids(&["a"]), replace_all: true, ..MemberChanges::default() }),
            ),
            (
                json!([{ "op": "replace", "value": { "id": "g", "displayName": "Guides" } }]),
                Some(MemberChanges { display_name: Some("Guides".into()), ..MemberChanges::default() }),
            ),
            (json!([{ "op": "remove", "path": "members[display eq \"Babs\"]" }]), None),
            (json!([{ "op": "remove", "path": "members[value eq \"a\" and type eq \"User\"]" }]), None),
            (json!([{ "op": "add", "path": "members[value eq \"a\"].display", "value": "A" }]), None),
            (json!([{ "op": "replace", "path": "externalId", "value": "x" }]), None),
        ];
        for (ops, expected) in cases {
            let parsed =
                parse_patch(&body(ops.clone()), &groups(), &mut refuse()).unwrap_or_else(|e| panic!("{ops}: {e}"));
            assert_eq!(member_changes(&parsed), expected, "{ops}");
        }
    }
}
