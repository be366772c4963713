//! SCIM operations on an app: plan what the script must do, call it, and finish its answer per RFC 7644.

use http::{HeaderMap, StatusCode};
use rhai::Dynamic;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::error::{Error, RequestError};
use crate::request::{self, ListParams};
use crate::routing::{ListSource, Operation};
use crate::scim::ScimError;
use crate::scim::discovery;
use crate::scim::evaluate::Matcher;
use crate::scim::filter::{Filter, parse_filter};
use crate::scim::patch::{MemberChanges, PatchOp, apply_patch, member_changes, parse_patch};
use crate::scim::path::AttrPath;
use crate::scim::projection::Projection;
use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind, ResourceSchema};
use crate::scim::sort;
use crate::scim::unpublished::{MAX_NOTED, Unpublished};
use crate::scim::validate::{WriteMode, check_canonical, check_immutable, validate_resource, without_never_returned};
use crate::script::{CallScope, ScriptEngine, ScriptError};

/// What an operation answers; turned into an HTTP response by the server.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub etag: Option<String>,
    pub location: Option<String>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body: Some(body), etag: None, location: None }
    }

    fn no_content() -> Self {
        Self { status: StatusCode::NO_CONTENT, body: None, etag: None, location: None }
    }

    /// A resource as the client asked to see it, with its version as the `ETag` header.
    fn resource(status: StatusCode, resource: Value, projection: &Projection, rs: &ResourceSchema) -> Self {
        let location = (status == StatusCode::CREATED).then(|| text_at(&resource, "/meta/location")).flatten();
        let etag = text_at(&resource, "/meta/version");
        Self { status, body: Some(projection.apply_owned(rs, resource)), etag, location }
    }
}

/// The parts of a request an operation reads.
#[derive(Debug)]
pub struct Call<'a> {
    pub app: &'a App,
    /// The app's absolute base URL as the client sees it.
    pub base_url: String,
    pub headers: &'a HeaderMap,
    /// Who the request was authenticated as (for audit records).
    pub principal: std::sync::Arc<str>,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Size of the request body as received, for limits on the whole payload.
    pub body_bytes: usize,
    pub scope: CallScope,
}

/// The script functions of one resource type.
struct Functions {
    create: &'static str,
    get: &'static str,
    list: &'static str,
    replace: &'static str,
    patch: &'static str,
    delete: &'static str,
}

fn functions(kind: ResourceKind) -> Functions {
    match kind {
        ResourceKind::User => Functions {
            create: "create_user",
            get: "get_user",
            list: "list_users",
            replace: "replace_user",
            patch: "patch_user",
            delete: "delete_user",
        },
        ResourceKind::Group => Functions {
            create: "create_group",
            get: "get_group",
            list: "list_groups",
            replace: "replace_group",
            patch: "patch_group",
            delete: "delete_group",
        },
    }
}

/// Performs one SCIM operation.
pub async fn perform(operation: &Operation, call: &Call<'_>) -> Result<Reply, Error> {
    let writes_before = call.scope.stats.writes.load(std::sync::atomic::Ordering::Relaxed);
    let result = perform_unaudited(operation, call).await;
    let writes = call.scope.stats.writes.load(std::sync::atomic::Ordering::Relaxed) - writes_before;
    crate::audit::record(call, operation, &result, writes);
    result
}

async fn perform_unaudited(operation: &Operation, call: &Call<'_>) -> Result<Reply, Error> {
    let app = call.app;
    match operation {
        Operation::ServiceProviderConfig => {
            Ok(Reply::ok(discovery::service_provider_config(&app.capabilities, &call.base_url)))
        }
        Operation::ListSchemas => {
            let docs: Vec<Value> = app.schemas().map(|s| discovery::schema_document(s, &call.base_url)).collect();
            let total = docs.len();
            Ok(Reply::ok(discovery::list_response(docs, total, 1)))
        }
        Operation::GetSchema(id) => app
            .schemas()
            .find(|s| s.id == *id)
            .map(|s| Reply::ok(discovery::schema_document(s, &call.base_url)))
            .ok_or_else(|| RequestError::NotFound { resource: "Schema", id: id.clone() }.into()),
        Operation::ListResourceTypes => {
            let docs: Vec<Value> =
                app.resource_types().map(|rt| discovery::resource_type_document(rt, &call.base_url)).collect();
            let total = docs.len();
            Ok(Reply::ok(discovery::list_response(docs, total, 1)))
        }
        Operation::GetResourceType(name) => app
            .resource_types()
            .find(|rt| rt.name == *name)
            .map(|rt| Reply::ok(discovery::resource_type_document(rt, &call.base_url)))
            .ok_or_else(|| RequestError::NotFound { resource: "ResourceType", id: name.clone() }.into()),
        Operation::Create(kind) => create(call, *kind).await,
        Operation::Get(kind, id) => get(call, *kind, id).await,
        Operation::List(kind, source) => {
            let params = list_params(call, *source)?;
            list(call, *kind, params).await
        }
        Operation::Replace(kind, id) => replace(call, *kind, id).await,
        Operation::Patch(kind, id) => patch(call, *kind, id).await,
        Operation::Delete(kind, id) => delete(call, *kind, id).await,
        Operation::SearchAll => search_all(call).await,
        Operation::Bulk => crate::bulk::perform(call).await,
        Operation::Unsupported(what) => Err(ScimError::NotImplemented { feature: (*what).into() }.into()),
    }
}

fn list_params(call: &Call<'_>, source: ListSource) -> Result<ListParams, ScimError> {
    match source {
        ListSource::Query => request::list_params(&call.query),
        ListSource::SearchBody => {
            let body =
                call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax("a SearchRequest body is required"))?;
            request::list_params(&request::search_request_pairs(body)?)
        }
    }
}

async fn create(call: &Call<'_>, kind: ResourceKind) -> Result<Reply, Error> {
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
    if unique_names && call.app.uncertain_creates.contains_key(&create_key) {
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
    call.app.uncertain_creates.invalidate(&create_key);
    let created = finish(call, kind, function, created)?
        .ok_or_else(|| bad_return(function, "() instead of the created resource"))?;
    Ok(Reply::resource(StatusCode::CREATED, created, &projection, rs))
}

/// A create's body with the app's defaults (`schema.overrides.*.default`) for the attributes
/// it leaves out; `None` when it leaves none out (the body is used as it is).
fn with_defaults(app: &App, kind: ResourceKind, body: &Value) -> Option<Value> {
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

/// The id of the resource whose name attribute is `name`, asked of the script's listing
/// (one native search where the script passes `eq` filters down); `None` when there is none.
async fn find_by_name(
    call: &Call<'_>,
    kind: ResourceKind,
    rs: &ResourceSchema,
    name: &str,
) -> Result<Option<String>, Error> {
    let quoted = serde_json::to_string(name).unwrap_or_default();
    let params = ListParams {
        filter: Some(format!("{} eq {quoted}", kind.name_attribute())),
        start_index: 1,
        count: Some(1),
        ..ListParams::default()
    };
    let query = Query::parse(rs, &params)?;
    let wanted = Wanted::writable(rs);
    let (found, _) = select(call, kind, rs, &query, &params, &wanted, (1, 1)).await?;
    Ok(found.first().and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned))
}

/// True when a resource read back still carries the name a create is about to use.
fn same_name(kind: ResourceKind, resource: &Value, name: &str) -> bool {
    resource.get(kind.name_attribute()).and_then(Value::as_str).is_some_and(|n| n.to_lowercase() == name)
}

async fn get(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = projection(call, rs)?;
    let resource = fetch(call, kind, id, &Wanted::by(rs, &projection, None)).await?;
    let etag = text_at(&resource, "/meta/version");
    if let (Some(etag), Some(wanted)) = (&etag, call.headers.get(http::header::IF_NONE_MATCH)) {
        if etag_matches(wanted, etag) {
            return Ok(Reply {
                status: StatusCode::NOT_MODIFIED,
                body: None,
                etag: Some(etag.clone()),
                location: None,
            });
        }
    }
    Ok(Reply::resource(StatusCode::OK, resource, &projection, rs))
}

/// Which top-level attributes a read must produce: the script may skip fetching the others
/// (a group's members, a user's groups). Passed to `get_*` as a second argument and to
/// `list_*` as `query.wanted`, a map of attribute name to boolean.
struct Wanted(Value);

impl Wanted {
    /// Everything a client can write: the reads before a write. readOnly attributes (a
    /// user's `groups`) are not written, so they are not read either.
    fn writable(rs: &ResourceSchema) -> Self {
        let writable = |a: &crate::scim::schema::Attribute| a.mutability != crate::scim::schema::Mutability::ReadOnly;
        Self(Value::Object(rs.core.attributes.iter().map(|a| (a.name.clone(), Value::Bool(writable(a)))).collect()))
    }

    /// What a response will show, plus what a filter must see.
    fn by(rs: &ResourceSchema, projection: &Projection, filter: Option<&Filter>) -> Self {
        let mut named = std::collections::BTreeSet::new();
        if let Some(filter) = filter {
            filter_attributes(filter, &mut named);
        }
        Self(Value::Object(
            rs.core
                .attributes
                .iter()
                .map(|a| {
                    let wanted = named.contains(&a.name.to_ascii_lowercase())
                        || projection.wants(rs, &AttrPath::simple(a.name.clone()));
                    (a.name.clone(), Value::Bool(wanted))
                })
                .collect(),
        ))
    }

    /// What a write reads, less one attribute (a group's members).
    fn writable_except(rs: &ResourceSchema, name: &str) -> Self {
        let mut wanted = Self::writable(rs);
        if let Some(map) = wanted.0.as_object_mut() {
            map.insert(name.to_owned(), Value::Bool(false));
        }
        wanted
    }
}

/// The top-level attribute names (lower-case) a filter reads.
fn filter_attributes(filter: &Filter, out: &mut std::collections::BTreeSet<String>) {
    match filter {
        Filter::Compare { path, .. } | Filter::Present { path } | Filter::ValuePath { path, .. } => {
            out.insert(path.name.to_ascii_lowercase());
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_attributes(a, out);
            filter_attributes(b, out);
        }
        Filter::Not(inner) => filter_attributes(inner, out),
    }
}

/// Reads one resource through the script; one the script does not find is a 404.
async fn fetch(call: &Call<'_>, kind: ResourceKind, id: &str, wanted: &Wanted) -> Result<Value, Error> {
    let function = functions(kind).get;
    let args = vec![Dynamic::from(id.to_owned()), ScriptEngine::to_dynamic(&wanted.0)];
    let found = call.app.script.call(function, trim_args(call.app, function, args), &call.scope).await?;
    match finish(call, kind, function, found)? {
        Some(resource) if resource.get("id").and_then(Value::as_str) == Some(id) => Ok(resource),
        Some(_) => Err(bad_return(function, "a resource with another id than the one asked for").into()),
        None => {
            call.app.ids.forget(kind, id);
            Err(RequestError::NotFound { resource: kind.name(), id: id.to_owned() }.into())
        }
    }
}

async fn replace(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
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

async fn patch(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
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
async fn patch_members(
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
async fn hold<'c>(call: &Call<'c>, kind: ResourceKind, id: &str) -> Result<crate::flight::Held<'c>, Error> {
    hold_key(call, &call.app.writes, format!("{}:{id}", kind.name())).await
}

/// Holds `key` of `locks` until dropped, waiting at most until the request's deadline.
async fn hold_key<'c>(
    call: &Call<'c>,
    locks: &'c crate::flight::KeyedLocks,
    key: String,
) -> Result<crate::flight::Held<'c>, Error> {
    tokio::time::timeout_at(call.scope.deadline.into(), locks.lock(key)).await.map_err(|_| {
        let millis = call.app.config.request_timeout.as_millis();
        Error::from(RequestError::Deadline { millis })
    })
}

/// The answer to a write of `id` whose body was refused: `404` when no resource has that id,
/// the body's own error otherwise. Identity providers treat a `404` on an update as "gone"
/// and move on, while a `400` counts towards quarantining the whole connection (Entra ID);
/// the read costs one legacy call, and only on the refused path.
async fn refused_body(call: &Call<'_>, kind: ResourceKind, id: &str, error: ScimError) -> Error {
    let rs = match call.app.resource(kind) {
        Ok(rs) => rs,
        Err(other) => return other.into(),
    };
    let mut wanted = Wanted::writable(rs);
    if let Some(map) = wanted.0.as_object_mut() {
        map.values_mut().for_each(|v| *v = Value::Bool(false));
    }
    match fetch(call, kind, id, &wanted).await {
        Err(missing @ Error::Request(RequestError::NotFound { .. })) => missing,
        _ => error.into(),
    }
}

/// Records the attributes a request named that the app does not publish and that were
/// ignored: on the request (its audit record), in the metric, and in a warning the first time
/// the app sees each.
fn note_ignored(call: &Call<'_>, kind: ResourceKind, unpublished: Unpublished) {
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
async fn write(call: &Call<'_>, kind: ResourceKind, id: &str, before: &Value, after: &Value) -> Result<Value, Error> {
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

async fn delete(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
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

/// A list request, parsed and checked against the schema before any legacy call.
struct Query<'a> {
    filter: Option<Filter>,
    matcher: Option<Matcher<'a>>,
    sort_by: Option<AttrPath>,
    descending: bool,
}

impl<'a> Query<'a> {
    fn parse(rs: &'a ResourceSchema, params: &ListParams) -> Result<Self, ScimError> {
        let filter = params.filter.as_deref().map(parse_filter).transpose()?;
        let matcher = filter.as_ref().map(|f| Matcher::new(f, rs)).transpose()?;
        let sort_by = params.sort_by.as_deref().map(AttrPath::parse).transpose()?;
        if let Some(path) = &sort_by {
            if rs.resolve(path).is_none() {
                return Err(ScimError::invalid_path(
                    path.to_string(),
                    "sortBy names no attribute of this resource type",
                ));
            }
        }
        Ok(Self { filter, matcher, sort_by, descending: params.descending })
    }
}

async fn list(call: &Call<'_>, kind: ResourceKind, params: ListParams) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = Projection::parse(rs, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
    let query = Query::parse(rs, &params)?;
    let count = params.count.unwrap_or(call.app.config.list.default_count).min(call.app.config.list.max_results);
    let wanted = Wanted::by(rs, &projection, query.filter.as_ref());
    let (page, total) = select(call, kind, rs, &query, &params, &wanted, (params.start_index, count)).await?;
    let resources = page.into_iter().map(|r| projection.apply_owned(rs, r)).collect();
    Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)))
}

/// The page `[start_index, start_index + count)` of the resources matching `query`, and the total.
async fn select(
    call: &Call<'_>,
    kind: ResourceKind,
    rs: &ResourceSchema,
    query: &Query<'_>,
    params: &ListParams,
    wanted: &Wanted,
    (start_index, count): (usize, usize),
) -> Result<(Vec<Value>, usize), Error> {
    if let Some(found) = lookup_by_cached_key(call, kind, query, wanted).await? {
        let total = found.len();
        return Ok((page_of(found, start_index, count), total));
    }
    let function = functions(kind).list;
    let argument = script_query(call, params, query.filter.as_ref(), wanted, start_index, count);
    let answer = call.app.script.call(function, vec![argument], &call.scope).await?;
    let large = listed_count(&answer) > LARGE_LISTING;
    let settle = || settle_listing(call, kind, rs, query, function, answer, (start_index, count));
    // Converting, finishing, filtering and sorting thousands of resources takes milliseconds of
    // CPU: the worker thread hands its other tasks to the rest of the runtime meanwhile, so one
    // large listing does not stall the requests queued behind it.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread && large { tokio::task::block_in_place(settle) } else { settle() }
}

/// Listings longer than this are settled with the worker thread's other tasks handed away.
const LARGE_LISTING: usize = 256;

/// How many resources a listing function answered (an array, or a map's `resources`).
fn listed_count(answer: &Dynamic) -> usize {
    if let Some(items) = answer.read_lock::<rhai::Array>() {
        return items.len();
    }
    answer
        .read_lock::<rhai::Map>()
        .and_then(|map| map.get("resources").and_then(|r| r.read_lock::<rhai::Array>().map(|items| items.len())))
        .unwrap_or(0)
}

/// The script's answer to a listing, read, finished, filtered, sorted and paged.
fn settle_listing(
    call: &Call<'_>,
    kind: ResourceKind,
    rs: &ResourceSchema,
    query: &Query<'_>,
    function: &str,
    answer: Dynamic,
    (start_index, count): (usize, usize),
) -> Result<(Vec<Value>, usize), Error> {
    let listed = read_listing(call, kind, function, answer)?;
    if listed.paged {
        let total = listed.total.unwrap_or(listed.resources.len());
        let mut resources = listed.resources;
        resources.truncate(count);
        return Ok((resources, total));
    }
    let mut matching = listed.resources;
    if let (Some(matcher), false) = (&query.matcher, listed.filtered) {
        matching.retain(|resource| matcher.matches(resource));
    }
    if let Some(path) = &query.sort_by {
        sort::sort_resources(&mut matching, path, query.descending, rs)?;
    }
    let total = matching.len();
    Ok((page_of(matching, start_index, count), total))
}

/// `POST /.search`: the same query over every resource type the app serves (RFC 7644 §3.4.3).
async fn search_all(call: &Call<'_>) -> Result<Reply, Error> {
    let params = list_params(call, ListSource::SearchBody)?;
    let count = params.count.unwrap_or(call.app.config.list.default_count).min(call.app.config.list.max_results);
    let max_scan = call.app.config.list.max_scan;
    let several = call.app.resource_types().count() > 1;
    let mut all = Vec::new();
    let mut sort_schema = None;
    for rs in call.app.resource_types() {
        let query = match Query::parse(rs, &params) {
            Ok(query) => query,
            // A filter naming attributes another resource type lacks matches none of its resources.
            Err(ScimError::InvalidFilter { .. } | ScimError::InvalidPath { .. }) if several => continue,
            Err(e) => return Err(e.into()),
        };
        if query.sort_by.is_some() && sort_schema.is_none() {
            sort_schema = Some(rs);
        }
        let unsorted = Query { sort_by: None, ..query };
        let projection = Projection::parse(rs, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
        let wanted = Wanted::by(rs, &projection, unsorted.filter.as_ref());
        let (found, total) = select(call, rs.kind(), rs, &unsorted, &params, &wanted, (1, max_scan)).await?;
        if total > found.len() || all.len() + found.len() > max_scan {
            return Err(too_many(max_scan).into());
        }
        all.extend(found);
    }
    if let (Some(sort_by), Some(rs)) = (params.sort_by.as_deref(), sort_schema) {
        // Resources of a type without the attribute have no value for it and sort last.
        sort::sort_resources(&mut all, &AttrPath::parse(sort_by)?, params.descending, rs)?;
    }
    let total = all.len();
    let mut resources = Vec::new();
    for resource in page_of(all, params.start_index, count) {
        let kind_name = text_at(&resource, "/meta/resourceType").unwrap_or_default();
        let Some(rs) = call.app.resource_types().find(|rs| rs.name == kind_name) else { continue };
        let projection = Projection::parse(rs, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
        resources.push(projection.apply_owned(rs, resource));
    }
    Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)))
}

fn too_many(max_scan: usize) -> ScimError {
    ScimError::TooMany {
        detail: format!(
            "answering needs more than {max_scan} resources filtered in the proxy; narrow the filter (e.g. userName eq \"…\")"
        ),
    }
}

/// Answers `userName eq "x"` from the ID cache and one read.
///
/// The cache is only a hint: the resource read back must still match the filter, else the
/// normal listing answers. Only a key the schema makes unique can answer this way: a user's
/// `userName` (uniqueness `server`, RFC 7643 §4.1.1). `externalId` and a group's
/// `displayName` may be shared by several resources, and one read can say that one of them
/// matches but not that it is the only one, so those filters go to the listing (which the
/// script can answer with one native search).
async fn lookup_by_cached_key(
    call: &Call<'_>,
    kind: ResourceKind,
    query: &Query<'_>,
    wanted: &Wanted,
) -> Result<Option<Vec<Value>>, Error> {
    let (Some((path, value)), Some(matcher)) = (query.filter.as_ref().and_then(Filter::as_simple_eq), &query.matcher)
    else {
        return Ok(None);
    };
    let (Some(text), None, None) = (value.as_str(), &path.sub, &path.urn) else {
        return Ok(None);
    };
    if call.scope.journal.as_ref().is_some_and(|j| j.is_recording()) {
        return Ok(None);
    }
    let unique = kind == ResourceKind::User && path.name.eq_ignore_ascii_case(kind.name_attribute());
    let Some(id) = call.app.ids.id_for_name(kind, text).filter(|_| unique) else {
        return Ok(None);
    };
    match fetch(call, kind, &id, wanted).await {
        Ok(resource) if matcher.matches(&resource) => Ok(Some(vec![resource])),
        Ok(_) | Err(Error::Request(RequestError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `query` map `list_*` receives.
fn script_query(
    call: &Call<'_>,
    params: &ListParams,
    filter: Option<&Filter>,
    wanted: &Wanted,
    start_index: usize,
    count: usize,
) -> Dynamic {
    let attributes: Option<Vec<Value>> =
        params.attributes.as_deref().map(|a| a.split(',').map(|s| Value::String(s.trim().to_owned())).collect());
    let excluded: Option<Vec<Value>> = params
        .excluded_attributes
        .as_deref()
        .map(|a| a.split(',').map(|s| Value::String(s.trim().to_owned())).collect());
    let query = json!({
        "filter": filter.map(Filter::to_json),
        "filter_text": filter.map(|f| f.to_string()),
        "start_index": start_index,
        "count": count,
        "sort_by": params.sort_by,
        "sort_order": if params.descending { "descending" } else { "ascending" },
        "attributes": attributes,
        "excluded_attributes": excluded,
        "max_scan": call.app.config.list.max_scan,
        "wanted": wanted.0,
    });
    ScriptEngine::to_dynamic(&query)
}

/// What a `list_*` function returned, finished.
struct Listing {
    resources: Vec<Value>,
    total: Option<usize>,
    /// The script applied the filter, sort and paging itself.
    paged: bool,
    /// The script applied the whole filter exactly (its legacy search is exact).
    filtered: bool,
}

/// Reads a listing: an array of resources, or `#{ resources, total_results, paged }`.
fn read_listing(call: &Call<'_>, kind: ResourceKind, function: &str, answer: Dynamic) -> Result<Listing, Error> {
    let value = ScriptEngine::to_json(&answer).map_err(|e| bad_return(function, &e))?;
    let (items, total, paged, filtered) = match value {
        Value::Array(items) => (items, None, false, false),
        Value::Object(mut map) => {
            let items = match map.remove("resources") {
                Some(Value::Array(items)) => items,
                _ => return Err(bad_return(function, "a map without a resources array").into()),
            };
            let total = map.get("total_results").and_then(Value::as_u64).map(|n| n as usize);
            let paged = map.get("paged").and_then(Value::as_bool).unwrap_or(false);
            let filtered = paged || map.get("filtered").and_then(Value::as_bool).unwrap_or(false);
            if paged && total.is_none() {
                return Err(bad_return(function, "paged: true without total_results").into());
            }
            (items, total, paged, filtered)
        }
        _ => return Err(bad_return(function, "neither an array nor a map").into()),
    };
    let max_scan = call.app.config.list.max_scan;
    if !paged && items.len() > max_scan {
        return Err(too_many(max_scan).into());
    }
    let resources =
        items.into_iter().map(|item| finish_value(call, kind, function, item)).collect::<Result<Vec<_>, _>>()?;
    Ok(Listing { resources, total, paged, filtered })
}

fn page_of(mut items: Vec<Value>, start_index: usize, count: usize) -> Vec<Value> {
    let skip = start_index.saturating_sub(1);
    if skip >= items.len() {
        return Vec::new();
    }
    items.drain(..skip);
    items.truncate(count);
    items
}

fn projection(call: &Call<'_>, rs: &ResourceSchema) -> Result<Projection, ScimError> {
    let p = request::projection_params(&call.query);
    Projection::parse(rs, p.attributes.as_deref(), p.excluded_attributes.as_deref())
}

fn body<'c>(call: &'c Call<'_>, kind: ResourceKind) -> Result<&'c Value, ScimError> {
    call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax(format!("a {} body is required", kind.name())))
}

/// Passes only as many arguments as the script's function takes (e.g. `replace_user(id, user)`).
fn trim_args(app: &App, function: &str, mut args: Vec<Dynamic>) -> Vec<Dynamic> {
    if let Some(arity) = app.script.arity(function) {
        args.truncate(arity);
    }
    args
}

fn bad_return(function: &str, detail: &str) -> ScriptError {
    ScriptError::BadReturn { file: String::new(), function: function.to_owned(), detail: detail.to_owned() }
}

/// Top-level attributes (and extension attributes, as `urn:…:name`) whose values differ.
fn changed_attributes(before: &Value, after: &Value) -> Vec<String> {
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
fn unchanged(before: &Value, after: &Value) -> bool {
    changed_attributes(before, after).is_empty()
}

/// Turns a script's answer into a finished SCIM resource; `()` means "no such resource".
fn finish(call: &Call<'_>, kind: ResourceKind, function: &str, value: Dynamic) -> Result<Option<Value>, Error> {
    if value.is_unit() {
        return Ok(None);
    }
    let json = ScriptEngine::to_json(&value).map_err(|e| bad_return(function, &e))?;
    finish_value(call, kind, function, json).map(Some)
}

/// Adds what the proxy owns to a resource the script returned: `schemas`, `meta`, the
/// version; drops what is never returned; remembers it in the ID cache.
fn finish_value(call: &Call<'_>, kind: ResourceKind, function: &str, value: Value) -> Result<Value, Error> {
    let rs = call.app.resource(kind)?;
    let Value::Object(mut object) = value else {
        return Err(bad_return(function, "a value that is not a map").into());
    };
    let id = match object.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(bad_return(function, "a resource without an id").into()),
    };
    object.insert("id".into(), Value::String(id.clone()));
    let name = match object.get(kind.name_attribute()) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad_return(function, &format!("a resource without a {}", kind.name_attribute())).into()),
    };
    let external_id = object.get("externalId").and_then(Value::as_str).map(str::to_owned);
    object.insert("schemas".into(), Value::Array(schemas_of(rs, &object)));
    fill_references(rs, &mut object, &call.base_url);
    let mut meta = match object.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("resourceType".into(), Value::String(rs.name.clone()));
    let location = format!("{}/{}/{}", call.base_url, kind.endpoint(), crate::legacy::encode_segment(&id));
    meta.insert("location".into(), Value::String(location));
    let version = match meta.remove("version").and_then(|v| v.as_str().map(str::to_owned)) {
        Some(v) if v.starts_with("W/\"") || v.starts_with('"') => v,
        Some(v) => format!("W/\"{v}\""),
        None => format!("W/\"{:016x}\"", version_hash(&object, &meta)),
    };
    meta.insert("version".into(), Value::String(version));
    object.insert("meta".into(), Value::Object(meta));
    let mut resource = Value::Object(object);
    without_never_returned(rs, &mut resource);
    // A dry run's answers are made up: nothing learnt from them is kept.
    let dry_run = call.scope.journal.as_ref().is_some_and(|j| j.is_dry_run());
    if !dry_run
        && call.app.ids.observe(kind, &id, Some(&name), external_id.as_deref()) == crate::cache::Observed::SharedId
    {
        // Clients keep resources by id alone (a member's `value`, a Bulk `location`):
        // a shared id makes one resource stand for the other (RFC 7643 §3.1).
        tracing::warn!(
            app = call.app.name(),
            id = %id,
            resource_type = rs.name.as_str(),
            "a user and a group share an id: give each resource type ids of its own"
        );
    }
    Ok(resource)
}

/// The fingerprint a resource's version is made of when the script gives none: that of the
/// resource as compact JSON, `meta` included, without its membership lists and location.
///
/// Membership lists are left out: a read that skips them (excludedAttributes=members) must
/// show the same version; their changes reach the version through lastModified. So is the
/// location: the same resource reached under two host names is one version. The JSON is fed
/// to the hash as it is written, not built (this runs for every resource answered).
fn version_hash(object: &Map<String, Value>, meta: &Map<String, Value>) -> u64 {
    use crate::scim::Fingerprinter;
    use std::io::Write as _;
    let mut out = Fingerprinter::default();
    // Writing to a hasher cannot fail; serde_json writes maps as `{"key":value,…}` in key order.
    fn entry(out: &mut Fingerprinter, first: &mut bool, key: &str, value: &dyn Fn(&mut Fingerprinter)) {
        if !std::mem::take(first) {
            let _ = out.write_all(b",");
        }
        let _ = serde_json::to_writer(&mut *out, key);
        let _ = out.write_all(b":");
        value(out);
    }
    let write_meta = |out: &mut Fingerprinter| {
        let _ = out.write_all(b"{");
        let mut first = true;
        for (key, value) in meta.iter().filter(|(k, _)| k.as_str() != "location") {
            if !std::mem::take(&mut first) {
                let _ = out.write_all(b",");
            }
            let _ = serde_json::to_writer(&mut *out, key);
            let _ = out.write_all(b":");
            let _ = serde_json::to_writer(&mut *out, value);
        }
        let _ = out.write_all(b"}");
    };
    let _ = out.write_all(b"{");
    let mut first = true;
    let mut meta_written = false;
    for (key, value) in object.iter().filter(|(k, _)| !matches!(k.as_str(), "members" | "groups" | "meta")) {
        if !meta_written && key.as_str() > "meta" {
            entry(&mut out, &mut first, "meta", &write_meta);
            meta_written = true;
        }
        entry(&mut out, &mut first, key, &|out| {
            let _ = serde_json::to_writer(&mut *out, value);
        });
    }
    if !meta_written {
        entry(&mut out, &mut first, "meta", &write_meta);
    }
    let _ = out.write_all(b"}");
    out.finish()
}

/// Adds the absolute `$ref` of references the script gave by `value` only — a group's
/// `members`, a user's `groups`, the enterprise `manager` — where the app publishes `$ref`.
fn fill_references(rs: &ResourceSchema, object: &mut Map<String, Value>, base_url: &str) {
    let reference = |value: &Map<String, Value>, default_endpoint: &str| -> Option<String> {
        let id = value.get("value")?.as_str()?;
        let endpoint = match value.get("type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("Group") => "Groups",
            Some(t) if t.eq_ignore_ascii_case("User") => "Users",
            _ => default_endpoint,
        };
        Some(format!("{base_url}/{endpoint}/{}", crate::legacy::encode_segment(id)))
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
fn schemas_of(rs: &ResourceSchema, object: &Map<String, Value>) -> Vec<Value> {
    let mut schemas = vec![Value::String(rs.core.id.clone())];
    for (extension, _) in &rs.extensions {
        if object.get(&extension.id).is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
            schemas.push(Value::String(extension.id.clone()));
        }
    }
    schemas
}

fn text_at(resource: &Value, pointer: &str) -> Option<String> {
    resource.pointer(pointer).and_then(Value::as_str).map(str::to_owned)
}

/// Enforces `If-Match` against the current version (RFC 7644 §3.14).
fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), RequestError> {
    let Some(wanted) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    let current = text_at(current, "/meta/version").unwrap_or_default();
    if etag_matches(wanted, &current) {
        Ok(())
    } else {
        Err(RequestError::PreconditionFailed { expected: wanted.to_str().unwrap_or("?").to_owned() })
    }
}

/// True when an `If-Match` / `If-None-Match` header names this ETag (weak comparison) or is `*`.
fn etag_matches(header: &http::HeaderValue, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_owned();
    let mine = opaque(etag);
    header.to_str().unwrap_or("").split(',').any(|t| t.trim() == "*" || opaque(t) == mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_one_based_and_bounded() {
        let items: Vec<Value> = (1..=5).map(|i| json!(i)).collect();
        assert_eq!(page_of(items.clone(), 1, 2), vec![json!(1), json!(2)]);
        assert_eq!(page_of(items.clone(), 4, 10), vec![json!(4), json!(5)]);
        assert!(page_of(items.clone(), 6, 10).is_empty());
        assert!(page_of(items, 1, 0).is_empty());
    }

    #[test]
    fn etags_compare_weakly() {
        let h = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert!(etag_matches(&h("W/\"abc\""), "W/\"abc\""));
        assert!(etag_matches(&h("\"abc\""), "W/\"abc\""));
        assert!(etag_matches(&h("\"x\", W/\"abc\""), "W/\"abc\""));
        assert!(etag_matches(&h("*"), "W/\"abc\""));
        assert!(!etag_matches(&h("W/\"abd\""), "W/\"abc\""));
    }

    #[test]
    fn versions_hash_the_json_without_members_groups_and_location() {
        let object = json!({"id": "1", "userName": "a", "members": [{"value": "2"}], "groups": [],
            "zeta": {"b": 1, "a": "x\"y"}, "active": true, "name": {"givenName": "Ä"}});
        let meta = json!({"resourceType": "User", "location": "http://x/Users/1", "lastModified": "2024"});
        let (Value::Object(object), Value::Object(meta)) = (object, meta) else { unreachable!() };
        // What it hashes: the resource as compact JSON, as serde_json writes it.
        let mut hashed = object.clone();
        hashed.remove("members");
        hashed.remove("groups");
        let mut hashed_meta = meta.clone();
        hashed_meta.remove("location");
        hashed.insert("meta".into(), Value::Object(hashed_meta));
        let expected = crate::scim::fingerprint(&serde_json::to_vec(&hashed).unwrap());
        assert_eq!(version_hash(&object, &meta), expected);
        let mut last = Map::new();
        last.insert("aaa".into(), json!(1));
        assert_eq!(
            version_hash(&last, &Map::new()),
            crate::scim::fingerprint(br#"{"aaa":1,"meta":{}}"#),
            "meta after every key before it"
        );
    }

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
