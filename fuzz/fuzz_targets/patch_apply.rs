//! Fuzz target: a PATCH body read by `parse_patch` and applied by `apply_patch` to a stored user and group.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_proxy::scim::patch::{PatchOp, apply_patch, member_changes, parse_patch};
use scim_proxy::scim::schema::ResourceSchema;
use scim_proxy::scim::unpublished::{Unpublished, UnsupportedAttributes};
use serde_json::Value;

static USERS: LazyLock<ResourceSchema> = LazyLock::new(scim_proxy_fuzz::user_type);
static GROUPS: LazyLock<ResourceSchema> = LazyLock::new(scim_proxy_fuzz::group_type);
static USER: LazyLock<Value> = LazyLock::new(scim_proxy_fuzz::sample_user);
static GROUP: LazyLock<Value> = LazyLock::new(scim_proxy_fuzz::sample_group);

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    patch(&USERS, &USER, &body);
    if let Some(ops) = patch(&GROUPS, &GROUP, &body) {
        // The group hooks read the operations once apply_patch has accepted them.
        let _ = member_changes(&ops);
    }
});

/// Parses `body` and applies it to `stored`; the operations when both succeed.
///
/// A successful PATCH gives an object that keeps the readOnly `id`, `meta` and `groups` as they
/// were (apply_patch's contract); printing the operations for scripts must not panic.
fn patch(rs: &ResourceSchema, stored: &Value, body: &Value) -> Option<Vec<PatchOp>> {
    let ops = parse_patch(body, rs, &mut Unpublished::new(UnsupportedAttributes::Ignore)).ok()?;
    ops.iter().for_each(|op| drop(op.to_json()));
    let patched = apply_patch(rs, stored, &ops).ok()?;
    assert!(patched.is_object(), "{}: apply_patch returned a non-object: {patched}", rs.name);
    for read_only in ["id", "meta", "groups"] {
        assert_eq!(patched.get(read_only), stored.get(read_only), "{}: PATCH {body} changed {read_only}", rs.name);
    }
    Some(ops)
}
