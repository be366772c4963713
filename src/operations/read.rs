//! Reading one resource: `GET /Users/{id}`, `GET /Groups/{id}`, and the read a write makes
//! first, asking the script only for what the answer needs.

use http::StatusCode;
use rhai::Dynamic;
use serde_json::Value;

use super::conditional::etag_matches;
use super::finish::finish;
use super::{Call, Reply, bad_return, functions, meta_text, projection, trim_args};
use crate::error::{Error, RequestError};
use crate::scim::filter::Filter;
use crate::scim::projection::Projection;
use crate::scim::schema::{Attribute, Mutability, ResourceKind, ResourceSchema};

pub(super) async fn get(call: &Call<'_>, kind: ResourceKind, id: &str) -> Result<Reply, Error> {
    let rs = call.app.resource(kind)?;
    let projection = projection(call, rs)?;
    let resource = fetch(call, kind, id, &Wanted::by(rs, &projection, None)).await?;
    let etag = meta_text(&resource, "version");
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
/// `list_*` as `query.wanted`, a map of attribute name to boolean. Built as the script's map
/// itself: every read passes one.
pub(super) struct Wanted(rhai::Map);

impl Wanted {
    /// Each core attribute of `rs`, wanted or not as `wanted` says.
    fn of(rs: &ResourceSchema, wanted: impl Fn(&Attribute) -> bool) -> Self {
        Self(rs.core.attributes.iter().map(|a| (a.name.as_str().into(), Dynamic::from_bool(wanted(a)))).collect())
    }

    /// Everything a client can write: the reads before a write. readOnly attributes (a
    /// user's `groups`) are not written, so they are not read either.
    pub(super) fn writable(rs: &ResourceSchema) -> Self {
        Self::of(rs, |a| a.mutability != Mutability::ReadOnly)
    }

    /// Nothing at all: a read that only asks whether the resource is there.
    pub(super) fn nothing(rs: &ResourceSchema) -> Self {
        Self::of(rs, |_| false)
    }

    /// What a response will show, plus what a filter must see.
    pub(super) fn by(rs: &ResourceSchema, projection: &Projection, filter: Option<&Filter>) -> Self {
        let mut named = std::collections::BTreeSet::new();
        if let Some(filter) = filter {
            filter_attributes(filter, &mut named);
        }
        Self::of(rs, |a| named.iter().any(|n| n.eq_ignore_ascii_case(&a.name)) || projection.wants_core(rs, a))
    }

    /// What a write reads, less one attribute (a group's members).
    pub(super) fn writable_except(rs: &ResourceSchema, name: &str) -> Self {
        let mut wanted = Self::writable(rs);
        wanted.0.insert(name.into(), Dynamic::FALSE);
        wanted
    }

    /// The map the script receives.
    pub(super) fn to_dynamic(&self) -> Dynamic {
        Dynamic::from_map(self.0.clone())
    }
}

/// The top-level attribute names (lower-case) a filter reads.
pub(super) fn filter_attributes(filter: &Filter, out: &mut std::collections::BTreeSet<String>) {
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
pub(super) async fn fetch(call: &Call<'_>, kind: ResourceKind, id: &str, wanted: &Wanted) -> Result<Value, Error> {
    let function = functions(kind).get;
    let args = vec![Dynamic::from(id.to_owned()), wanted.to_dynamic()];
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
