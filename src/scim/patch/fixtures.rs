//! What the unit tests of the PATCH engine share: the resource types and resources they patch,
//! a PATCH body around operations, and a seeded generator for random cases.

use serde_json::{Value, json};

use super::{PATCH_OP_SCHEMA, apply_patch, parse_patch};
use crate::scim::definitions::{
    custom_schema_from_json, enterprise_user_schema, group_resource, rfc_examples, user_resource,
};
use crate::scim::error::ScimError;
use crate::scim::schema::{ResourceSchema, Schema};
use crate::scim::unpublished::{Unpublished, UnsupportedAttributes};

pub(super) const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(super) const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(super) const ACME: &str = "urn:example:scim:acme:1.0:User";
pub(super) const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
pub(super) const MANDY: &str = "902c246b-6245-4190-8e05-00816be7344a";
pub(super) const JAMES: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

pub(super) fn acme() -> Schema {
    custom_schema_from_json(&json!({
        "id": ACME,
        "attributes": [
            { "name": "badge", "mutability": "immutable" },
            { "name": "level", "type": "integer" },
            { "name": "tags", "multiValued": true },
        ]
    }))
    .unwrap()
}

pub(super) fn users() -> ResourceSchema {
    user_resource(vec![(enterprise_user_schema(), false), (acme(), false)])
}

pub(super) fn groups() -> ResourceSchema {
    group_resource(vec![])
}

pub(super) fn body(ops: Value) -> Value {
    json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": ops })
}

pub(super) fn refuse() -> Unpublished {
    Unpublished::new(UnsupportedAttributes::Refuse)
}

pub(super) fn patch(rs: &ResourceSchema, resource: &Value, ops: Value) -> Result<Value, ScimError> {
    let ops = parse_patch(&body(ops), rs, &mut refuse())?;
    apply_patch(rs, resource, &ops)
}

pub(super) fn member(id: &str, display: &str) -> Value {
    json!({ "display": display, "$ref": format!("https://example.com/v2/Users/{id}"), "value": id })
}

/// The §8.2 user with the §8.3 enterprise data.
pub(super) fn bjensen() -> Value {
    rfc_examples::enterprise_user()
}

pub(super) fn minimal_user() -> Value {
    json!({ "schemas": [CORE], "id": "42", "userName": "bjensen", "meta": { "resourceType": "User" } })
}

pub(super) fn with(mut resource: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut resource);
    resource
}

pub(super) fn scim_type(error: &ScimError) -> &'static str {
    match error {
        ScimError::InvalidFilter { .. } => "invalidFilter",
        ScimError::InvalidPath { .. } => "invalidPath",
        ScimError::InvalidSyntax { .. } => "invalidSyntax",
        ScimError::InvalidValue { .. } => "invalidValue",
        ScimError::Mutability { .. } => "mutability",
        ScimError::NoTarget { .. } => "noTarget",
        _ => "other",
    }
}

/// xorshift64: a seeded generator, so a failing case can be replayed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(super) fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    pub(super) fn word(&mut self) -> String {
        let len = 1 + self.below(8);
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
}

pub(super) const PLURALS: [&str; 5] = ["emails", "phoneNumbers", "ims", "roles", "entitlements"];

pub(super) fn random_user(rng: &mut Rng, n: usize) -> Value {
    let mut user = json!({
        "schemas": [CORE],
        "id": format!("id-{n}"),
        "userName": rng.word(),
        "meta": { "resourceType": "User", "version": format!("W/\"{n}\"") },
    });
    if rng.chance(50) {
        user["name"] = json!({ "givenName": rng.word(), "familyName": rng.word() });
    }
    if rng.chance(50) {
        user["active"] = json!(rng.chance(50));
    }
    if rng.chance(30) {
        user["title"] = json!(rng.word());
    }
    for plural in PLURALS {
        let count = rng.below(4);
        if count == 0 {
            continue;
        }
        let primary = rng.below(count + 1);
        let values: Vec<Value> = (0..count)
            .map(|i| {
                let mut value = json!({ "value": format!("{plural}-{i}-{}", rng.word()) });
                if rng.chance(50) {
                    value["type"] = json!(rng.pick(&["work", "home", "other"]));
                }
                if i == primary {
                    value["primary"] = json!(true);
                }
                value
            })
            .collect();
        user[plural] = Value::Array(values);
    }
    if rng.chance(40) {
        user["schemas"] = json!([CORE, ENTERPRISE]);
        user[ENTERPRISE] =
            json!({ "department": rng.word(), "manager": { "value": rng.word(), "displayName": "Boss" } });
    }
    user
}
