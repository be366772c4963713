//! SCIM operations on an app: plan what the script must do, call it, and finish its answer per RFC 7644.

use http::{HeaderMap, StatusCode};
use rhai::Dynamic;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::cache::Kind;
use crate::error::{Error, RequestError};
use crate::request::{self, ListParams};
use crate::routing::Operation;
use crate::scim::ScimError;
use crate::scim::discovery;
use crate::scim::evaluate::Matcher;
use crate::scim::filter::{Filter, parse_filter};
use crate::scim::path::AttrPath;
use crate::scim::projection::Projection;
use crate::scim::schema::ResourceSchema;
use crate::scim::sort;
use crate::scim::validate::{WriteMode, validate_resource, without_never_returned};
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
}

/// The parts of a request an operation reads.
#[derive(Debug)]
pub struct Call<'a> {
    pub app: &'a App,
    /// The app's absolute base URL as the client sees it.
    pub base_url: String,
    pub headers: &'a HeaderMap,
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub scope: CallScope,
}

/// Performs one SCIM operation.
pub async fn perform(operation: &Operation, call: &Call<'_>) -> Result<Reply, Error> {
    let app = call.app;
    match operation {
        Operation::ServiceProviderConfig => {
            Ok(Reply::ok(discovery::service_provider_config(&app.capabilities, &call.base_url)))
        }
        Operation::ListSchemas => {
            let docs: Vec<Value> = app.users.schemas().map(|s| discovery::schema_document(s, &call.base_url)).collect();
            let total = docs.len();
            Ok(Reply::ok(discovery::list_response(docs, total, 1)))
        }
        Operation::GetSchema(id) => app
            .users
            .schemas()
            .find(|s| s.id == *id)
            .map(|s| Reply::ok(discovery::schema_document(s, &call.base_url)))
            .ok_or_else(|| RequestError::NotFound { resource: "schema", id: id.clone() }.into()),
        Operation::ListResourceTypes => {
            let docs = vec![discovery::resource_type_document(&app.users, &call.base_url)];
            Ok(Reply::ok(discovery::list_response(docs, 1, 1)))
        }
        Operation::GetResourceType(id) if id == &app.users.name => {
            Ok(Reply::ok(discovery::resource_type_document(&app.users, &call.base_url)))
        }
        Operation::GetResourceType(id) => {
            Err(RequestError::NotFound { resource: "resource type", id: id.clone() }.into())
        }
        Operation::CreateUser => create_user(call).await,
        Operation::GetUser(id) => get_user(call, id).await,
        Operation::ListUsers => {
            let params = request::list_params(&call.query)?;
            list_users(call, params).await
        }
        Operation::SearchUsers => {
            let body =
                call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax("a SearchRequest body is required"))?;
            let params = request::list_params(&request::search_request_pairs(body)?)?;
            list_users(call, params).await
        }
        Operation::ReplaceUser(id) => replace_user(call, id).await,
        Operation::DeleteUser(id) => delete_user(call, id).await,
        Operation::PatchUser(_) => {
            Err(ScimError::NotImplemented { feature: "PATCH (use PUT to change a user)".into() }.into())
        }
        Operation::Unsupported(what) => Err(ScimError::NotImplemented { feature: (*what).into() }.into()),
    }
}

async fn create_user(call: &Call<'_>) -> Result<Reply, Error> {
    let app = call.app;
    let projection = projection(call)?;
    let body = call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax("a User body is required"))?;
    let user = validate_resource(&app.users, body, WriteMode::Create)?;
    let created = app.script.call("create_user", vec![ScriptEngine::to_dynamic(&user)], &call.scope).await?;
    let created = finish(call, "create_user", created)?
        .ok_or_else(|| bad_return("create_user", "() instead of the created user"))?;
    let location = location(call, &created);
    let etag = version(&created);
    Ok(Reply { status: StatusCode::CREATED, body: Some(projection.apply(&app.users, &created)), etag, location })
}

async fn get_user(call: &Call<'_>, id: &str) -> Result<Reply, Error> {
    let projection = projection(call)?;
    let user = fetch_user(call, id).await?;
    let etag = version(&user);
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
    Ok(Reply { status: StatusCode::OK, body: Some(projection.apply(&call.app.users, &user)), etag, location: None })
}

/// Reads one user through the script; a user the script does not find is a 404.
async fn fetch_user(call: &Call<'_>, id: &str) -> Result<Value, Error> {
    let found = call.app.script.call("get_user", vec![Dynamic::from(id.to_owned())], &call.scope).await?;
    match finish(call, "get_user", found)? {
        Some(user) if user.get("id").and_then(Value::as_str) == Some(id) => Ok(user),
        Some(_) => Err(bad_return("get_user", "a user with another id than the one asked for").into()),
        None => {
            call.app.ids.forget(Kind::User, id);
            Err(RequestError::NotFound { resource: "User", id: id.to_owned() }.into())
        }
    }
}

async fn replace_user(call: &Call<'_>, id: &str) -> Result<Reply, Error> {
    let app = call.app;
    let projection = projection(call)?;
    let body = call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax("a User body is required"))?;
    let mut user = validate_resource(&app.users, body, WriteMode::Replace)?;
    let before = fetch_user(call, id).await?;
    check_if_match(call.headers, &before)?;
    if let Some(object) = user.as_object_mut() {
        object.insert("id".into(), Value::String(id.to_owned()));
    }
    let args = vec![Dynamic::from(id.to_owned()), ScriptEngine::to_dynamic(&user), ScriptEngine::to_dynamic(&before)];
    let args = trim_args(app, "replace_user", args);
    let replaced = app.script.call("replace_user", args, &call.scope).await?;
    let replaced = finish(call, "replace_user", replaced)?
        .ok_or_else(|| bad_return("replace_user", "() instead of the replaced user"))?;
    let etag = version(&replaced);
    Ok(Reply { status: StatusCode::OK, body: Some(projection.apply(&app.users, &replaced)), etag, location: None })
}

async fn delete_user(call: &Call<'_>, id: &str) -> Result<Reply, Error> {
    let app = call.app;
    let no_content = Reply { status: StatusCode::NO_CONTENT, body: None, etag: None, location: None };
    if app.config.user_delete == crate::config::UserDelete::Deactivate {
        let before = fetch_user(call, id).await?;
        check_if_match(call.headers, &before)?;
        let mut after = before.clone();
        if let Some(object) = after.as_object_mut() {
            object.insert("active".into(), Value::Bool(false));
        }
        let args =
            vec![Dynamic::from(id.to_owned()), ScriptEngine::to_dynamic(&after), ScriptEngine::to_dynamic(&before)];
        let args = trim_args(app, "replace_user", args);
        let replaced = app.script.call("replace_user", args, &call.scope).await?;
        finish(call, "replace_user", replaced)?;
        return Ok(no_content);
    }
    if call.headers.contains_key(http::header::IF_MATCH) {
        let before = fetch_user(call, id).await?;
        check_if_match(call.headers, &before)?;
    }
    let result = app.script.call("delete_user", vec![Dynamic::from(id.to_owned())], &call.scope).await?;
    match result.as_bool() {
        Ok(true) => {
            app.ids.forget(Kind::User, id);
            Ok(no_content)
        }
        Ok(false) => {
            app.ids.forget(Kind::User, id);
            Err(RequestError::NotFound { resource: "User", id: id.to_owned() }.into())
        }
        Err(_) => Err(bad_return("delete_user", "neither true (deleted) nor false (no such user)").into()),
    }
}

async fn list_users(call: &Call<'_>, params: ListParams) -> Result<Reply, Error> {
    let app = call.app;
    let schema = &app.users;
    let projection = Projection::parse(schema, params.attributes.as_deref(), params.excluded_attributes.as_deref())?;
    let filter = params.filter.as_deref().map(parse_filter).transpose()?;
    // Built once: checks the filter against the schema before any legacy call.
    let matcher = filter.as_ref().map(|f| Matcher::new(f, schema)).transpose()?;
    let sort_by = params.sort_by.as_deref().map(AttrPath::parse).transpose()?;
    if let Some(path) = &sort_by {
        if schema.resolve(path).is_none() {
            return Err(
                ScimError::invalid_path(path.to_string(), "sortBy names no attribute of this resource type").into()
            );
        }
    }
    let count = params.count.unwrap_or(app.config.list.default_count).min(app.config.list.max_results);

    if let Some(found) = lookup_by_cached_key(call, filter.as_ref(), matcher.as_ref()).await? {
        let total = found.len();
        let page = page_of(found, params.start_index, count);
        let resources = page.iter().map(|r| projection.apply(schema, r)).collect();
        return Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)));
    }

    let query = script_query(call, &params, filter.as_ref(), count);
    let answer = app.script.call("list_users", vec![query], &call.scope).await?;
    let listed = read_listing(call, answer)?;
    let max_scan = app.config.list.max_scan;

    if listed.paged {
        let total = listed.total.unwrap_or(listed.resources.len());
        let resources = listed.resources.iter().take(count).map(|r| projection.apply(schema, r)).collect();
        return Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)));
    }
    if listed.resources.len() > max_scan {
        return Err(too_many(max_scan).into());
    }
    let mut matching = listed.resources;
    if let Some(matcher) = &matcher {
        matching.retain(|resource| matcher.matches(resource));
    }
    if let Some(path) = &sort_by {
        sort::sort_resources(&mut matching, path, params.descending, schema)?;
    }
    let total = matching.len();
    let page = page_of(matching, params.start_index, count);
    let resources = page.iter().map(|r| projection.apply(schema, r)).collect();
    Ok(Reply::ok(discovery::list_response(resources, total, params.start_index)))
}

fn too_many(max_scan: usize) -> ScimError {
    ScimError::TooMany {
        detail: format!(
            "the filter must be answered by scanning more than {max_scan} users in the proxy; narrow it (e.g. userName eq \"…\")"
        ),
    }
}

/// Answers `userName eq "x"` / `externalId eq "x"` from the ID cache and one `get_user`.
///
/// The cache is only a hint: the user read back must still match the filter, else the
/// entry is dropped and the normal listing answers.
async fn lookup_by_cached_key(
    call: &Call<'_>,
    filter: Option<&Filter>,
    matcher: Option<&Matcher<'_>>,
) -> Result<Option<Vec<Value>>, Error> {
    let (Some((path, value)), Some(matcher)) = (filter.and_then(Filter::as_simple_eq), matcher) else {
        return Ok(None);
    };
    let (Some(text), None, None) = (value.as_str(), &path.sub, &path.urn) else {
        return Ok(None);
    };
    let ids = &call.app.ids;
    let cached = if path.name.eq_ignore_ascii_case("userName") {
        ids.id_for_name(Kind::User, text)
    } else if path.name.eq_ignore_ascii_case("externalId") {
        ids.id_for_external_id(Kind::User, text)
    } else {
        None
    };
    let Some(id) = cached else {
        return Ok(None);
    };
    match fetch_user(call, &id).await {
        Ok(user) if matcher.matches(&user) => Ok(Some(vec![user])),
        Ok(_) => Ok(None),
        Err(Error::Request(RequestError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `query` map `list_users` receives.
fn script_query(call: &Call<'_>, params: &ListParams, filter: Option<&Filter>, count: usize) -> Dynamic {
    let attributes: Option<Vec<Value>> =
        params.attributes.as_deref().map(|a| a.split(',').map(|s| Value::String(s.trim().to_owned())).collect());
    let query = json!({
        "filter": filter.map(Filter::to_json),
        "filter_text": filter.map(|f| f.to_string()),
        "start_index": params.start_index,
        "count": count,
        "sort_by": params.sort_by,
        "sort_order": if params.descending { "descending" } else { "ascending" },
        "attributes": attributes,
        "max_scan": call.app.config.list.max_scan,
    });
    ScriptEngine::to_dynamic(&query)
}

/// What `list_users` returned, finished.
struct Listing {
    resources: Vec<Value>,
    total: Option<usize>,
    /// The script applied the filter, sort and paging itself.
    paged: bool,
}

/// Reads `list_users`' answer: an array of users, or `#{ resources, total_results, paged }`.
fn read_listing(call: &Call<'_>, answer: Dynamic) -> Result<Listing, Error> {
    let value = ScriptEngine::to_json(&answer).map_err(|e| bad_return("list_users", &e))?;
    let (items, total, paged) = match value {
        Value::Array(items) => (items, None, false),
        Value::Object(mut map) => {
            let items = match map.remove("resources") {
                Some(Value::Array(items)) => items,
                _ => return Err(bad_return("list_users", "a map without a resources array").into()),
            };
            let total = map.get("total_results").and_then(Value::as_u64).map(|n| n as usize);
            let paged = map.get("paged").and_then(Value::as_bool).unwrap_or(false);
            if paged && total.is_none() {
                return Err(bad_return("list_users", "paged: true without total_results").into());
            }
            (items, total, paged)
        }
        _ => return Err(bad_return("list_users", "neither an array nor a map").into()),
    };
    if !paged && items.len() > call.app.config.list.max_scan {
        return Err(too_many(call.app.config.list.max_scan).into());
    }
    let resources =
        items.into_iter().map(|item| finish_value(call, "list_users", item)).collect::<Result<Vec<_>, _>>()?;
    Ok(Listing { resources, total, paged })
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

fn projection(call: &Call<'_>) -> Result<Projection, ScimError> {
    let p = request::projection_params(&call.query);
    Projection::parse(&call.app.users, p.attributes.as_deref(), p.excluded_attributes.as_deref())
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

/// Turns a script's answer into a finished SCIM resource; `()` means "no such resource".
fn finish(call: &Call<'_>, function: &str, value: Dynamic) -> Result<Option<Value>, Error> {
    if value.is_unit() {
        return Ok(None);
    }
    let json = ScriptEngine::to_json(&value).map_err(|e| bad_return(function, &e))?;
    finish_value(call, function, json).map(Some)
}

/// Adds what the proxy owns to a user the script returned: `schemas`, `meta`, the version;
/// drops what is never returned; remembers it in the ID cache.
fn finish_value(call: &Call<'_>, function: &str, value: Value) -> Result<Value, Error> {
    let schema = &call.app.users;
    let Value::Object(mut object) = value else {
        return Err(bad_return(function, "a value that is not a map").into());
    };
    let id = match object.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(bad_return(function, "a user without an id").into()),
    };
    object.insert("id".into(), Value::String(id.clone()));
    let user_name = match object.get("userName") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad_return(function, "a user without a userName").into()),
    };
    let external_id = object.get("externalId").and_then(Value::as_str).map(str::to_owned);
    object.insert("schemas".into(), Value::Array(schemas_of(schema, &object)));
    let mut meta = match object.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("resourceType".into(), Value::String(schema.name.clone()));
    meta.insert(
        "location".into(),
        Value::String(format!("{}/Users/{}", call.base_url, crate::legacy::encode_segment(&id))),
    );
    let script_version = meta.remove("version").and_then(|v| v.as_str().map(str::to_owned));
    let version = match script_version {
        Some(v) if v.starts_with("W/\"") || v.starts_with('"') => v,
        Some(v) => format!("W/\"{v}\""),
        None => {
            let mut hashed = object.clone();
            hashed.insert("meta".into(), Value::Object(meta.clone()));
            format!("W/\"{:016x}\"", fnv1a(&serde_json::to_vec(&hashed).unwrap_or_default()))
        }
    };
    meta.insert("version".into(), Value::String(version));
    object.insert("meta".into(), Value::Object(meta));
    let mut resource = Value::Object(object);
    without_never_returned(schema, &mut resource);
    call.app.ids.observe(Kind::User, &id, Some(&user_name), external_id.as_deref());
    Ok(resource)
}

/// `schemas`: the core URN and each extension the resource carries data for.
fn schemas_of(schema: &ResourceSchema, object: &Map<String, Value>) -> Vec<Value> {
    let mut schemas = vec![Value::String(schema.core.id.clone())];
    for (extension, _) in &schema.extensions {
        if object.get(&extension.id).is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
            schemas.push(Value::String(extension.id.clone()));
        }
    }
    schemas
}

fn location(_call: &Call<'_>, resource: &Value) -> Option<String> {
    resource.pointer("/meta/location").and_then(Value::as_str).map(str::to_owned)
}

fn version(resource: &Value) -> Option<String> {
    resource.pointer("/meta/version").and_then(Value::as_str).map(str::to_owned)
}

/// Enforces `If-Match` against the current version (RFC 7644 §3.14).
fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), RequestError> {
    let Some(wanted) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    let current = version(current).unwrap_or_default();
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

/// FNV-1a, 64 bits: a stable, fast hash for versions that every replica computes alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
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
}
