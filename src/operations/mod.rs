//! SCIM operations on an app: plan what the script must do, call it, and finish its answer per RFC 7644.
//!
//! May import: `app` and what is listed after it in `lib.rs` (`auth` … `legacy`), and the
//! foundation; never `pipeline`, `state` or `runtime`.

pub(crate) mod audit;
pub(crate) mod bulk;
mod conditional;
mod finish;
mod list;
pub(crate) mod operation;
mod read;
mod write;

use http::{HeaderMap, StatusCode};
use rhai::Dynamic;
use serde_json::Value;

use crate::app::App;
use crate::error::{Error, RequestError};
use crate::operations::operation::Operation;
use crate::scim::ScimError;
use crate::scim::discovery;
use crate::scim::params::{self};
use crate::scim::projection::Projection;
use crate::scim::schema::{ResourceKind, ResourceSchema};
use crate::script::{CallScope, ScriptError};
use list::{list, list_params, search_all};
use read::get;
use write::{create, delete, patch, replace};

/// What an operation answers; turned into an HTTP response by the server.
#[derive(Debug)]
pub(crate) struct Reply {
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
        let location = (status == StatusCode::CREATED).then(|| meta_text(&resource, "location")).flatten();
        let etag = meta_text(&resource, "version");
        Self { status, body: Some(projection.apply_owned(rs, resource)), etag, location }
    }
}

/// The parts of a request an operation reads.
#[derive(Debug)]
pub(crate) struct Call<'a> {
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
pub(super) struct Functions {
    create: &'static str,
    get: &'static str,
    list: &'static str,
    replace: &'static str,
    patch: &'static str,
    delete: &'static str,
}

pub(super) fn functions(kind: ResourceKind) -> Functions {
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
pub(crate) async fn perform(operation: &Operation, call: &Call<'_>) -> Result<Reply, Error> {
    let writes_before = call.scope.stats.writes.load(std::sync::atomic::Ordering::Relaxed);
    let result = perform_unaudited(operation, call).await;
    let writes = call.scope.stats.writes.load(std::sync::atomic::Ordering::Relaxed) - writes_before;
    crate::operations::audit::record(call, operation, &result, writes);
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
        Operation::Bulk => crate::operations::bulk::perform(call).await,
        Operation::Unsupported(what) => Err(ScimError::NotImplemented { feature: (*what).into() }.into()),
    }
}

pub(super) fn projection(call: &Call<'_>, rs: &ResourceSchema) -> Result<Projection, ScimError> {
    let p = params::projection_params(&call.query);
    Projection::parse(rs, p.attributes.as_deref(), p.excluded_attributes.as_deref())
}

pub(super) fn body<'c>(call: &'c Call<'_>, kind: ResourceKind) -> Result<&'c Value, ScimError> {
    call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax(format!("a {} body is required", kind.name())))
}

/// Passes only as many arguments as the script's function takes (e.g. `replace_user(id, user)`).
pub(super) fn trim_args(app: &App, function: &str, mut args: Vec<Dynamic>) -> Vec<Dynamic> {
    if let Some(arity) = app.script.arity(function) {
        args.truncate(arity);
    }
    args
}

pub(super) fn bad_return(function: &str, detail: &str) -> ScriptError {
    ScriptError::BadReturn { file: String::new(), function: function.to_owned(), detail: detail.to_owned() }
}

/// The text a resource's `meta.<name>` holds. (Looked up member by member: `Value::pointer`
/// allocates for each token it unescapes, and this runs for every resource answered.)
pub(super) fn meta_text(resource: &Value, name: &str) -> Option<String> {
    resource.get("meta")?.get(name)?.as_str().map(str::to_owned)
}
