//! Writes: create, replace, patch and delete, each holding its resource's lock, checking the
//! client's preconditions and the schema, and reporting only what the legacy app did.

use http::StatusCode;
use rhai::Dynamic;
use serde_json::{Map, Value, json};

use super::conditional::check_if_match;
use super::finish::finish;
use super::list::{find_by_name, same_name};
use super::read::{Wanted, fetch};
use super::{Call, Reply, bad_return, body, functions, projection, trim_args};
use crate::app::App;
use crate::error::{Error, RequestError};
use crate::scim::ScimError;
use crate::scim::patch::{MemberChanges, PatchOp, apply_patch, member_changes, parse_patch};
use crate::scim::projection::Projection;
use crate::scim::schema::{ResourceKind, ResourceSchema};
use crate::scim::unpublished::{MAX_NOTED, Unpublished};
use crate::scim::validate::{WriteMode, check_canonical, check_immutable, validate_resource};
use crate::script::ScriptEngine;

pub(super) async fn create(call: &Call<'_>, kind: ResourceKind) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = projection(call, rs)?;
    let given = body(call, kind)?;
    let defaulted = with_defaults(call.app, kind, given);
    let mut unpublished = call.app.unpublished();
    let resource = validate_resource(rs, defaulted.as_ref().unwrap_or(given), WriteMode::Create, &mut unpublished)?;
    note_ignored(call, kind, unpublished);
    check_canonical(rs, &resource, &call.app.canonical)?;
    // Identical creates run one at a time; the later ones then find the account the first
    // made (through the ID cache and one read) and answer 409 instead of making another,
    // even when the legacy app itself would accept a duplicate.
    let given = resource.get(kind.name_attribute()).and_then(Value::as_str).unwrap_or_default();
    let name = given.to_lowercase();
    let create_key = format!("{}:{name}", kind.name());
    let _one_at_a_time = hold_key(call, &call.app.creates, create_key.clone()).await?;
    // RFC 7643: userName is unique, displayName is not. A dry run or a recording does not
    // consult the cache (a recording must replay the same from a cold one).
    let unique_names =
        kind == ResourceKind::User && !call.scope.journal.as_ref().is_some_and(|j| j.is_dry_run() || j.is_recording());
    let exists = |id: &str| {
        Error::from(ScimError::Uniqueness {
            detail: format!("{} {given:?} exists already (id {id})", kind.name_attribute()),
        })
    };
    if let Some(id) = call.app.ids.id_for_name(kind, &name).filter(|_| unique_names) {
        if fetch(call, kind, &id, &Wanted::writable(rs)).await.is_ok_and(|existing| same_name(kind, &existing, &name)) {
            return Err(exists(&id));
        }
    }
    // An earlier create of this name ended without an answer (its deadline passed, or the
    // legacy app timed out): it may have made the account. Look for it before making another,
    // whether or not the legacy app would refuse a duplicate.
    // Creates of one name run one at a time (`_one_at_a_time`): nothing marks this name
    // uncertain or clears it until this create ends.
    let uncertain = call.app.uncertain_creates.contains_key(&create_key);
    if unique_names && uncertain {
        if let Some(id) = find_by_name(call, kind, rs, given).await? {
            return Err(exists(&id));
        }
    }
    let function = functions(kind).create;
    let writes_before = call.scope.stats.writes.load(std::sync::atomic::Ordering::Relaxed);
    let created = match call.app.script.call(function, vec![ScriptEngine::to_dynamic(&resource)], &call.scope).await {
        Ok(created) => created,
        Err(error) => {
            let wrote = call.scope.stats.writes.load(std::sync::atomic::Ordering::Relaxed) > writes_before;
            if wrote && crate::error::answer(&Error::from(error.clone())).status.is_server_error() {
                call.app.uncertain_creates.insert(create_key, ());
            }
            return Err(error.into());
        }
    };
    if uncertain {
        call.app.uncertain_creates.invalidate(&create_key);
    }
    let created = finish(call, kind, function, created)?
        .ok_or_else(|| bad_return(function, "() instead of the created resource"))?;
    Ok(Reply::resource(StatusCode::CREATED, created, &projection, rs))
}

/// A create's body with the app's defaults (`schema.overrides.*.default`) for the attributes
/// it leaves out; `None` when it leaves none out (the body is used as it is).
pub(super) fn with_defaults(app: &App, kind: ResourceKind, body: &Value) -> Option<Value> {
    let has = |object: Option<&Map<String, Value>>, name: &str| {
        object.is_some_and(|o| o.iter().any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_null()))
    };
    let mut out: Option<Value> = None;
    for default in app.create_defaults.iter().filter(|d| d.kind == kind) {
        let current = out.as_ref().unwrap_or(body).as_object();
        let container = match &default.extension {
            None => current,
            Some(urn) => current
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(urn)))
                .and_then(|(_, v)| v.as_object()),
        };
        if has(container, &default.name) {
            continue;
        }
        let object = out.get_or_insert_with(|| body.clone()).as_object_mut()?;
        let target = match &default.extension {
            None => object,
            Some(urn) => {
                let key = object.keys().find(|k| k.eq_ignore_ascii_case(urn)).cloned().unwrap_or_else(|| urn.clone());
                // a malformed extension value is left as sent: validation says what is wrong
                let Some(inner) = object.entry(key).or_insert_with(|| Value::Object(Map::new())).as_object_mut() else {
                    continue;
                };
                inner
            }
        };
        target.insert(default.name.clone(), default.value.clone());
    }
    out
}

pub(super) async fn replace(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = projection(call, rs)?;
    let mut unpublished = call.app.unpublished();
    let checked = body(call, kind).and_then(|body| {
        let resource = validate_resource(rs, body, WriteMode::Replace, &mut unpublished)?;
        check_canonical(rs, &resource, &call.app.canonical)?;
        Ok(resource)
    });
    let mut resource = match checked {
        Ok(resource) => resource,
        Err(error) => return Err(refused_body(call, kind, id, error).await),
    };
    note_ignored(call, kind, unpublished);
    let _held = hold(call, kind, id).await?;
    let before = fetch(call, kind, id, &Wanted::writable(rs)).await?;
    check_if_match(call.headers, &before)?;
    check_immutable(rs, &before, &resource)?;
    if let Some(object) = resource.as_object_mut() {
        object.insert("id".into(), Value::String(id.to_owned()));
    }
    let replaced = write(call, kind, id, &before, &resource).await?;
    Ok(Reply::resource(StatusCode::OK, replaced, &projection, rs))
}

pub(super) async fn patch(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = projection(call, rs)?;
    let mut unpublished = call.app.unpublished();
    let operations = match body(call, kind).and_then(|body| parse_patch(body, rs, &mut unpublished)) {
        Ok(operations) => operations,
        Err(error) => return Err(refused_body(call, kind, id, error).await),
    };
    note_ignored(call, kind, unpublished);
    let _held = hold(call, kind, id).await?;
    if operations.is_empty() {
        // Every operation named attributes the app does not publish: nothing to write.
        let before = fetch(call, kind, id, &Wanted::by(rs, &projection, None)).await?;
        check_if_match(call.headers, &before)?;
        return Ok(Reply::resource(StatusCode::OK, before, &projection, rs));
    }
    if kind == ResourceKind::Group {
        if let Some(changes) = member_changes(&operations) {
            if let Some(reply) = patch_members(call, rs, id, &operations, changes).await? {
                return Ok(reply);
            }
        }
    }
    let before = fetch(call, kind, id, &Wanted::writable(rs)).await?;
    check_if_match(call.headers, &before)?;
    // What the script returned beyond the app's schema is not the client's to patch.
    let shown = Projection::everything().apply(rs, &before);
    let mut after = apply_patch(rs, &shown, &operations)?;
    check_canonical(rs, &after, &call.app.canonical)?;
    if let Some(object) = after.as_object_mut() {
        object.remove("meta");
    }
    let function = functions(kind).patch;
    let patched = if call.app.script.arity(function).is_some() {
        let ops: Vec<Value> = operations.iter().map(|op| op.to_json()).collect();
        let args = vec![
            Dynamic::from(id.to_owned()),
            ScriptEngine::to_dynamic(&Value::Array(ops)),
            ScriptEngine::to_dynamic(&before),
            ScriptEngine::to_dynamic(&after),
        ];
        let patched = call.app.script.call(function, args, &call.scope).await?;
        finish(call, kind, function, patched)?
            .ok_or_else(|| bad_return(function, "() instead of the patched resource"))?
    } else if unchanged(&shown, &after) {
        // Nothing to write: the legacy app is not called for a PATCH that changes nothing.
        before
    } else {
        write(call, kind, id, &before, &after).await?
    };
    Ok(Reply::resource(StatusCode::OK, patched, &projection, rs))
}

/// A PATCH that only changes a group's members (and perhaps its name), done through the
/// script's `add_members` / `remove_members` hooks without reading the member list.
///
/// `None` when the script lacks a hook the operations need: the caller then reads, applies
/// and replaces. The group is read without members (one legacy call), so an unknown group is
/// a 404 before anything is written; a failure after a first write says what was done.
pub(super) async fn patch_members(
    call: &Call<'_>,
    rs: &ResourceSchema,
    id: &str,
    operations: &[PatchOp],
    changes: MemberChanges,
) -> Result<Option<Reply>, Error> {
    let script = &call.app.script;
    let adds = !changes.add.is_empty() && !changes.replace_all;
    let removes = !changes.remove.is_empty();
    let rewrites = changes.replace_all || changes.display_name.is_some();
    if (adds && script.arity("add_members").is_none())
        || (removes && script.arity("remove_members").is_none())
        || (rewrites && script.arity("replace_group") != Some(4))
    {
        return Ok(None);
    }
    let kind = ResourceKind::Group;
    let before = fetch(call, kind, id, &Wanted::writable_except(rs, "members")).await?;
    check_if_match(call.headers, &before)?;
    // The operations must apply to the stored group exactly as they would without the hooks,
    // canonical values included.
    let after = apply_patch(rs, &Projection::everything().apply(rs, &before), operations)?;
    check_canonical(rs, &after, &call.app.canonical)?;
    let ids = |list: &[String]| ScriptEngine::to_dynamic(&json!(list));
    let mut done: Vec<String> = Vec::new();
    let steps_failed = |error: Error, done: &[String]| -> Error {
        if done.is_empty() { error } else { Error::Partial { error: Box::new(error), done: done.to_vec() } }
    };
    if removes {
        let args = vec![Dynamic::from(id.to_owned()), ids(&changes.remove)];
        let _ = script.call("remove_members", args, &call.scope).await.map_err(|e| steps_failed(e.into(), &done))?;
        done.push(format!("removed {} member(s)", changes.remove.len()));
    }
    if adds {
        let args = vec![Dynamic::from(id.to_owned()), ids(&changes.add)];
        let _ = script.call("add_members", args, &call.scope).await.map_err(|e| steps_failed(e.into(), &done))?;
        done.push(format!("added {} member(s)", changes.add.len()));
    }
    // Okta sends the group's name with every member change: the same name is no rename.
    let rename =
        changes.display_name.as_ref().filter(|name| before.get("displayName").and_then(Value::as_str) != Some(name));
    if changes.replace_all || rename.is_some() {
        let mut group = before.clone();
        let mut changed = Vec::new();
        if let Some(object) = group.as_object_mut() {
            object.remove("meta");
            if let Some(name) = rename {
                object.insert("displayName".into(), Value::String(name.clone()));
                changed.push(Value::String("displayName".into()));
            }
            if changes.replace_all {
                let members: Vec<Value> = changes.add.iter().map(|m| json!({"value": m})).collect();
                object.insert("members".into(), Value::Array(members));
                changed.push(Value::String("members".into()));
            }
        }
        let args = vec![
            Dynamic::from(id.to_owned()),
            ScriptEngine::to_dynamic(&group),
            ScriptEngine::to_dynamic(&before),
            ScriptEngine::to_dynamic(&Value::Array(changed)),
        ];
        let replaced =
            script.call("replace_group", args, &call.scope).await.map_err(|e| steps_failed(e.into(), &done))?;
        finish(call, kind, "replace_group", replaced)?;
    }
    if call
        .query
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("attributes") || k.eq_ignore_ascii_case("excludedAttributes"))
    {
        let projection = projection(call, rs)?;
        let after = fetch(call, kind, id, &Wanted::by(rs, &projection, None)).await?;
        return Ok(Some(Reply::resource(StatusCode::OK, after, &projection, rs)));
    }
    // RFC 7644 §3.5.2 allows 204: answering with the whole group would mean reading every member.
    Ok(Some(Reply::no_content()))
}

/// Holds the resource `id` against the other writes of this replica until dropped, so that a
/// read–modify–write (and the `If-Match` check inside it) is not interleaved with another.
/// Waits at most until the request's deadline; past it nothing was done, so the answer is a
/// plain `504`.
pub(super) async fn hold<'c>(
    call: &Call<'c>,
    kind: ResourceKind,
    id: &str,
) -> Result<crate::app::flight::Held<'c>, Error> {
    hold_key(call, &call.app.writes, format!("{}:{id}", kind.name())).await
}

/// Holds `key` of `locks` until dropped, waiting at most until the request's deadline.
pub(super) async fn hold_key<'c>(
    call: &Call<'c>,
    locks: &'c crate::app::flight::KeyedLocks,
    key: String,
) -> Result<crate::app::flight::Held<'c>, Error> {
    tokio::time::timeout_at(call.scope.deadline.into(), locks.lock(key)).await.map_err(|_| {
        let millis = call.app.config.request_timeout.as_millis();
        Error::from(RequestError::Deadline { millis })
    })
}

/// The answer to a write of `id` whose body was refused: `404` when no resource has that id,
/// the body's own error otherwise. Identity providers treat a `404` on an update as "gone"
/// and move on, while a `400` counts towards quarantining the whole connection (Entra ID);
/// the read costs one legacy call, and only on the refused path.
pub(super) async fn refused_body(call: &Call<'_>, kind: ResourceKind, id: &str, error: ScimError) -> Error {
    let rs = match call.app.resource(kind) {
        Ok(rs) => rs,
        Err(other) => return other.into(),
    };
    match fetch(call, kind, id, &Wanted::nothing(rs)).await {
        Err(missing @ Error::Request(RequestError::NotFound { .. })) => missing,
        _ => error.into(),
    }
}

/// Records the attributes a request named that the app does not publish and that were
/// ignored: on the request (its audit record), in the metric, and in a warning the first time
/// the app sees each.
pub(super) fn note_ignored(call: &Call<'_>, kind: ResourceKind, unpublished: Unpublished) {
    let (ignored, more) = unpublished.into_ignored();
    if ignored.is_empty() {
        return;
    }
    let app = call.app.name();
    for path in &ignored {
        let label = call.app.ignored_label(kind, path);
        call.scope.metrics.ignored_attributes(app, kind.name(), &label, 1);
        if call.app.first_time_ignored(kind, path) {
            tracing::warn!(
                app,
                resource = kind.name(),
                attribute = %path,
                request_id = %call.scope.request_id,
                "attribute ignored: the app does not publish it; to keep it, publish it under schema (user_attributes, enterprise_user, user_extensions) and map it in the script; otherwise remove it from the identity provider's attribute mapping, or set schema.unsupported_attributes: refuse to have such requests refused"
            );
        }
    }
    // Past the paths named, a request's further ones count as `other` (a body of made-up
    // names), without a warning each.
    if more > 0 {
        call.scope.metrics.ignored_attributes(app, kind.name(), crate::app::OTHER_ATTRIBUTE, more as u64);
        call.scope.stats.ignored_more.fetch_add(more, std::sync::atomic::Ordering::Relaxed);
    }
    let mut noted = match call.scope.stats.ignored.lock() {
        Ok(noted) => noted,
        Err(poisoned) => poisoned.into_inner(),
    };
    for path in ignored {
        if noted.len() < MAX_NOTED && !noted.contains(&path) {
            noted.push(path);
        }
    }
}

/// Calls `replace_*(id, resource, before, changed)` with as many arguments as the script takes.
pub(super) async fn write(
    call: &Call<'_>,
    kind: ResourceKind,
    id: &str,
    before: &Value,
    after: &Value,
) -> Result<Value, Error> {
    let function = functions(kind).replace;
    let changed: Vec<Value> = changed_attributes(before, after).into_iter().map(Value::String).collect();
    let args = vec![
        Dynamic::from(id.to_owned()),
        ScriptEngine::to_dynamic(after),
        ScriptEngine::to_dynamic(before),
        ScriptEngine::to_dynamic(&Value::Array(changed)),
    ];
    let args = trim_args(call.app, function, args);
    let replaced = call.app.script.call(function, args, &call.scope).await?;
    match finish(call, kind, function, replaced)? {
        Some(resource) if resource.get("id").and_then(Value::as_str) == Some(id) => Ok(resource),
        Some(_) => Err(bad_return(function, "a resource with another id than the one replaced").into()),
        None => Err(bad_return(function, "() instead of the resource").into()),
    }
}

pub(super) async fn delete(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
    let app = call.app;
    let rs = app.resource(kind)?;
    let _held = hold(call, kind, id).await?;
    if kind == ResourceKind::User && app.config.user_delete == crate::config::UserDelete::Deactivate {
        let before = fetch(call, kind, id, &Wanted::writable(rs)).await?;
        check_if_match(call.headers, &before)?;
        let mut after = before.clone();
        if let Some(object) = after.as_object_mut() {
            object.insert("active".into(), Value::Bool(false));
            object.remove("meta");
        }
        write(call, kind, id, &before, &after).await?;
        return Ok(Reply::no_content());
    }
    if call.headers.contains_key(http::header::IF_MATCH) {
        let before = fetch(call, kind, id, &Wanted::writable(rs)).await?;
        check_if_match(call.headers, &before)?;
    }
    let function = functions(kind).delete;
    let result = app.script.call(function, vec![Dynamic::from(id.to_owned())], &call.scope).await?;
    let deleted =
        result.as_bool().map_err(|_| bad_return(function, "neither true (deleted) nor false (no such resource)"))?;
    app.ids.forget(kind, id);
    if deleted {
        Ok(Reply::no_content())
    } else {
        Err(RequestError::NotFound { resource: kind.name(), id: id.to_owned() }.into())
    }
}

/// Top-level attributes (and extension attributes, as `urn:…:name`) whose values differ.
pub(super) fn changed_attributes(before: &Value, after: &Value) -> Vec<String> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    let ignored = |key: &str| matches!(key, "meta" | "schemas" | "id");
    let mut changed = Vec::new();
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        if ignored(key) {
            continue;
        }
        match (before.get(key), after.get(key)) {
            (Some(Value::Object(old)), Some(Value::Object(new))) if key.starts_with("urn:") => {
                let sub: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
                changed.extend(sub.into_iter().filter(|k| old.get(*k) != new.get(*k)).map(|k| format!("{key}:{k}")));
            }
            // A null and an absent value are the same absence.
            (old, new) if old.filter(|v| !v.is_null()) != new.filter(|v| !v.is_null()) => changed.push(key.clone()),
            _ => {}
        }
    }
    changed
}

/// True when a PATCH result equals what was stored, ignoring what the proxy owns.
pub(super) fn unchanged(before: &Value, after: &Value) -> bool {
    changed_attributes(before, after).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_attributes_name_what_differs() {
        let before = json!({"id": "1", "userName": "a", "title": "x", "meta": {"version": "1"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "A", "employeeNumber": "1"}});
        let after = json!({"id": "1", "userName": "a", "displayName": "A",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "B", "employeeNumber": "1"}});
        assert_eq!(
            changed_attributes(&before, &after),
            vec![
                "displayName".to_owned(),
                "title".to_owned(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".to_owned()
            ]
        );
        assert_eq!(
            changed_attributes(&json!({"userName": "a", "title": null}), &json!({"userName": "a"})),
            Vec::<String>::new(),
            "null and absent are the same absence"
        );
        assert!(unchanged(&before, &before));
    }
}
