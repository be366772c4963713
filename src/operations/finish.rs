//! Finishing what a script answered: the resource checked against the schema, its `schemas`,
//! `meta` (location, version) and references filled in, ready to be projected.

use rhai::Dynamic;
use serde_json::{Map, Value};

use super::conditional::version_hash;
use super::{Call, bad_return};
use crate::error::Error;
use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind, ResourceSchema};
use crate::scim::validate::{has_never_returned, without_never_returned};
use crate::script::ScriptEngine;

/// Turns a script's answer into a finished SCIM resource; `()` means "no such resource".
pub(super) fn finish(
    call: &Call<'_>,
    kind: ResourceKind,
    function: &str,
    value: Dynamic,
) -> Result<Option<Value>, Error> {
    if value.is_unit() {
        return Ok(None);
    }
    let json = ScriptEngine::resource_to_json(&value).map_err(|e| bad_return(function, &e))?;
    finish_value(call, kind, function, json).map(Some)
}

/// Adds what the proxy owns to a resource the script returned: `schemas`, `meta`, the
/// version; drops what is never returned; remembers it in the ID cache.
pub(super) fn finish_value(call: &Call<'_>, kind: ResourceKind, function: &str, value: Value) -> Result<Value, Error> {
    finish_value_unsealed(call, kind, function, value, true)
}

/// [`finish_value`], leaving out `meta.location` and `meta.version` when `seal` is false and
/// leaving them out changes nothing else: a listing finishes every resource the script listed
/// for its filter, but only the page it answers needs them ([`seal`] adds them then).
///
/// A resource holding attributes that are never returned is sealed at once all the same: its
/// version is a hash of the resource as the script gave it, those attributes included.
pub(super) fn finish_value_unsealed(
    call: &Call<'_>,
    kind: ResourceKind,
    function: &str,
    value: Value,
    seal_now: bool,
) -> Result<Value, Error> {
    let rs = call.app.resource(kind)?;
    let Value::Object(mut object) = value else {
        return Err(bad_return(function, "a value that is not a map").into());
    };
    let identity = identify(kind, function, &object)?;
    object.insert("id".into(), Value::String(identity.id.clone()));
    object.insert("schemas".into(), Value::Array(schemas_of(rs, &object)));
    fill_references(rs, &mut object, &call.base_url);
    let mut meta = match object.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("resourceType".into(), Value::String(rs.name.clone()));
    let never_returned = has_never_returned(rs, &object);
    let seal_now = seal_now || never_returned;
    if seal_now {
        seal_meta(call, kind, &identity.id, &object, &mut meta);
    } else {
        // No `location` marks the resource for [`seal`], which writes it over the script's anyway.
        meta.remove("location");
    }
    object.insert("meta".into(), Value::Object(meta));
    let mut resource = Value::Object(object);
    if never_returned {
        without_never_returned(rs, &mut resource);
    }
    remember(call, kind, &rs.name, &identity);
    Ok(resource)
}

/// What names a resource a script answered: its id (a number is taken as its text), its
/// `userName` or `displayName`, its `externalId`.
pub(super) struct Identity {
    id: String,
    name: String,
    external_id: Option<String>,
}

/// The [`Identity`] of a resource a script answered (its members), or the script's fault
/// when it has no id or no name.
pub(super) fn identify(kind: ResourceKind, function: &str, object: &Map<String, Value>) -> Result<Identity, Error> {
    let id = match object.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(bad_return(function, "a resource without an id").into()),
    };
    let name = match object.get(kind.name_attribute()) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad_return(function, &format!("a resource without a {}", kind.name_attribute())).into()),
    };
    let external_id = object.get("externalId").and_then(Value::as_str).map(str::to_owned);
    Ok(Identity { id, name, external_id })
}

/// Keeps what a script answered about a resource in the ID cache, as every answer is kept.
pub(super) fn remember(call: &Call<'_>, kind: ResourceKind, resource_type: &str, identity: &Identity) {
    Keeper::of(call).keep(kind, resource_type, identity);
}

/// Where what a request's script answers about resources is kept: the app's ID cache, unless
/// the request is a dry run, whose answers are made up.
pub(super) struct Keeper<'a> {
    pub ids: &'a crate::cache::IdCache,
    /// The app's name, for the log.
    pub app: &'a str,
    pub dry_run: bool,
}

impl<'a> Keeper<'a> {
    pub(super) fn of(call: &'a Call<'_>) -> Self {
        let dry_run = call.scope.journal.as_ref().is_some_and(|j| j.is_dry_run());
        Self { ids: &call.app.ids, app: call.app.name(), dry_run }
    }

    pub(super) fn keep(&self, kind: ResourceKind, resource_type: &str, identity: &Identity) {
        let Identity { id, name, external_id } = identity;
        if !self.dry_run
            && self.ids.observe(kind, id, Some(name), external_id.as_deref()) == crate::cache::Observed::SharedId
        {
            // Clients keep resources by id alone (a member's `value`, a Bulk `location`):
            // a shared id makes one resource stand for the other (RFC 7643 §3.1).
            tracing::warn!(
                app = self.app,
                id = %id,
                resource_type,
                "a user and a group share an id: give each resource type ids of its own"
            );
        }
    }
}

/// Adds `meta.location` and `meta.version` to a resource [`finish_value_unsealed`] left
/// without them; a resource that has them is left as it is. The version is the one
/// [`finish_value`] would have given it.
pub(super) fn seal(call: &Call<'_>, kind: ResourceKind, resource: &mut Value) {
    let Some(object) = resource.as_object_mut() else { return };
    let Some(Value::Object(mut meta)) = object.remove("meta") else { return };
    if !meta.contains_key("location") {
        let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        seal_meta(call, kind, &id, object, &mut meta);
    }
    object.insert("meta".into(), Value::Object(meta));
}

/// `meta.location`, and `meta.version`: the script's, quoted as a weak ETag, or a hash of
/// the resource (`object`, whose own `meta` is not read, and `meta`).
fn seal_meta(
    call: &Call<'_>,
    kind: ResourceKind,
    id: &str,
    object: &Map<String, Value>,
    meta: &mut Map<String, Value>,
) {
    let location = resource_url(&call.base_url, kind.endpoint(), id);
    meta.insert("location".into(), Value::String(location));
    let version = match meta.remove("version").and_then(|v| v.as_str().map(str::to_owned)) {
        Some(v) if v.starts_with("W/\"") || v.starts_with('"') => v,
        Some(v) => format!("W/\"{v}\""),
        None => weak_etag(version_hash(object, meta)),
    };
    meta.insert("version".into(), Value::String(version));
}

/// The URL of a resource: `{base_url}/{endpoint}/{id}`, the id encoded as a path segment.
pub(super) fn resource_url(base_url: &str, endpoint: &str, id: &str) -> String {
    [base_url, "/", endpoint, "/", &crate::legacy::path::encode_segment(id)].concat()
}

/// `W/"…"` around a version hash written as 16 lower-case hex digits (as `{:016x}` writes
/// it, without the formatting machinery: every resource answered has one).
fn weak_etag(hash: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(20);
    text.push_str("W/\"");
    for shift in (0..16).rev() {
        text.push(char::from(HEX[((hash >> (shift * 4)) & 0xf) as usize]));
    }
    text.push('"');
    text
}

/// Adds the absolute `$ref` of references the script gave by `value` only — a group's
/// `members`, a user's `groups`, the enterprise `manager` — where the app publishes `$ref`.
pub(super) fn fill_references(rs: &ResourceSchema, object: &mut Map<String, Value>, base_url: &str) {
    let reference = |value: &Map<String, Value>, default_endpoint: &str| -> Option<String> {
        let id = value.get("value")?.as_str()?;
        let endpoint = match value.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("Group") => "Groups",
            Some(t) if t.eq_ignore_ascii_case("User") => "Users",
            _ => default_endpoint,
        };
        Some(resource_url(base_url, endpoint, id))
    };
    let publishes_ref =
        |attribute: Option<&crate::scim::schema::Attribute>| attribute.and_then(|a| a.sub_attribute("$ref")).is_some();
    for (name, endpoint) in [("members", "Users"), ("groups", "Groups")] {
        if !publishes_ref(rs.core.attribute(name)) {
            continue;
        }
        let key = object.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
        if let Some(Value::Array(items)) = key.and_then(|k| object.get_mut(&k)) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                if !item.contains_key("$ref") {
                    if let Some(link) = reference(item, endpoint) {
                        item.insert("$ref".into(), Value::String(link));
                    }
                }
            }
        }
    }
    let Some(enterprise) = rs.extension(ENTERPRISE_USER_SCHEMA) else { return };
    if !publishes_ref(enterprise.attribute("manager")) {
        return;
    }
    let manager = object.get_mut(&enterprise.id).and_then(|e| e.get_mut("manager")).and_then(Value::as_object_mut);
    if let Some(manager) = manager {
        if !manager.contains_key("$ref") {
            if let Some(link) = reference(manager, "Users") {
                manager.insert("$ref".into(), Value::String(link));
            }
        }
    }
}

/// `schemas`: the core URN and each extension the resource carries data for.
pub(super) fn schemas_of(rs: &ResourceSchema, object: &Map<String, Value>) -> Vec<Value> {
    let mut schemas = vec![Value::String(rs.core.id.clone())];
    for (extension, _) in &rs.extensions {
        if object.get(&extension.id).is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
            schemas.push(Value::String(extension.id.clone()));
        }
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weak_etag_is_the_hash_in_sixteen_hex_digits() {
        for hash in [0, 1, 0xabc, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(weak_etag(hash), format!("W/\"{hash:016x}\""));
        }
    }

    #[test]
    fn a_resource_url_encodes_its_id_as_one_segment() {
        assert_eq!(resource_url("https://x/scim/v2", "Users", "2819c223"), "https://x/scim/v2/Users/2819c223");
        assert_eq!(resource_url("https://x", "Groups", "a/b c"), "https://x/Groups/a%2Fb%20c");
    }
}
