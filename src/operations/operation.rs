//! The SCIM operations the proxy performs: which one a method and path name, what each is
//! called in logs and metrics, its endpoint's template, and whether it writes.

use http::Method;

use crate::error::RequestError;
use crate::scim::schema::ResourceKind;

/// A SCIM operation the proxy performs; also the `op` field of request logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    ServiceProviderConfig,
    ListSchemas,
    GetSchema(String),
    ListResourceTypes,
    GetResourceType(String),
    Create(ResourceKind),
    Get(ResourceKind, String),
    /// `GET /Users` (query parameters) or `POST /Users/.search` (a SearchRequest body).
    List(ResourceKind, ListSource),
    Replace(ResourceKind, String),
    Patch(ResourceKind, String),
    Delete(ResourceKind, String),
    /// `POST /.search`: a search across every resource type.
    SearchAll,
    Bulk,
    /// An endpoint of RFC 7644 this proxy does not implement (answered 501).
    Unsupported(&'static str),
}

/// Where the parameters of a list come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListSource {
    Query,
    SearchBody,
}

impl Operation {
    /// True for the operations that may change something in the legacy app.
    pub(crate) fn writes(&self) -> bool {
        matches!(self, Self::Create(_) | Self::Replace(..) | Self::Patch(..) | Self::Delete(..) | Self::Bulk)
    }

    /// A short stable name for logs.
    pub(crate) fn name(&self) -> &'static str {
        use ResourceKind::{Group, User};
        match self {
            Self::ServiceProviderConfig => "service_provider_config",
            Self::ListSchemas | Self::GetSchema(_) => "schemas",
            Self::ListResourceTypes | Self::GetResourceType(_) => "resource_types",
            Self::Create(User) => "create_user",
            Self::Create(Group) => "create_group",
            Self::Get(User, _) => "get_user",
            Self::Get(Group, _) => "get_group",
            Self::List(User, _) => "list_users",
            Self::List(Group, _) => "list_groups",
            Self::Replace(User, _) => "replace_user",
            Self::Replace(Group, _) => "replace_group",
            Self::Patch(User, _) => "patch_user",
            Self::Patch(Group, _) => "patch_group",
            Self::Delete(User, _) => "delete_user",
            Self::Delete(Group, _) => "delete_group",
            Self::SearchAll => "search",
            Self::Bulk => "bulk",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// The endpoint's path below the app's base path, with `{id}` for the resource's id: what
    /// an access log shows, so that lines group by endpoint and carry no ids.
    pub(crate) fn template(&self) -> &'static str {
        use ResourceKind::{Group, User};
        match self {
            Self::ServiceProviderConfig => "/ServiceProviderConfig",
            Self::ListSchemas => "/Schemas",
            Self::GetSchema(_) => "/Schemas/{id}",
            Self::ListResourceTypes => "/ResourceTypes",
            Self::GetResourceType(_) => "/ResourceTypes/{id}",
            Self::Create(User) | Self::List(User, ListSource::Query) => "/Users",
            Self::Create(Group) | Self::List(Group, ListSource::Query) => "/Groups",
            Self::List(User, ListSource::SearchBody) => "/Users/.search",
            Self::List(Group, ListSource::SearchBody) => "/Groups/.search",
            Self::Get(User, _) | Self::Replace(User, _) | Self::Patch(User, _) | Self::Delete(User, _) => "/Users/{id}",
            Self::Get(Group, _) | Self::Replace(Group, _) | Self::Patch(Group, _) | Self::Delete(Group, _) => {
                "/Groups/{id}"
            }
            Self::SearchAll => "/.search",
            Self::Bulk => "/Bulk",
            Self::Unsupported(_) => "/Me",
        }
    }
}

/// Maps a method and the path below an app's base path to a SCIM operation.
pub(crate) fn route(method: &Method, rest: &str, full_path: &str) -> Result<Operation, RequestError> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut parts = rest.trim_start_matches('/').splitn(2, '/');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    let no_route = || RequestError::NoRoute { path: full_path.to_owned() };
    let id = |raw: &str| -> Result<String, RequestError> {
        if raw.is_empty() || raw.contains('/') {
            return Err(no_route());
        }
        Ok(percent_encoding::percent_decode_str(raw).decode_utf8().map_err(|_| no_route())?.into_owned())
    };
    let not_allowed = |allowed: &'static str| RequestError::MethodNotAllowed { method: method.to_string(), allowed };
    let endpoint = first.to_ascii_lowercase();
    let kind = match endpoint.as_str() {
        "users" => Some(ResourceKind::User),
        "groups" => Some(ResourceKind::Group),
        _ => None,
    };
    if let Some(kind) = kind {
        return match (second, method) {
            (None, &Method::GET) => Ok(Operation::List(kind, ListSource::Query)),
            (None, &Method::POST) => Ok(Operation::Create(kind)),
            (None, _) => Err(not_allowed("GET, POST")),
            (Some(".search"), &Method::POST) => Ok(Operation::List(kind, ListSource::SearchBody)),
            (Some(".search"), _) => Err(not_allowed("POST")),
            (Some(raw), method) => {
                let id = id(raw)?;
                // No resource is called "." or "..": a URL parser would take either for
                // navigation, so the legacy client refuses them as path segments (a 500).
                if id == "." || id == ".." {
                    return Err(RequestError::NotFound { resource: kind.name(), id });
                }
                match *method {
                    Method::GET => Ok(Operation::Get(kind, id)),
                    Method::PUT => Ok(Operation::Replace(kind, id)),
                    Method::PATCH => Ok(Operation::Patch(kind, id)),
                    Method::DELETE => Ok(Operation::Delete(kind, id)),
                    _ => Err(not_allowed("GET, PUT, PATCH, DELETE")),
                }
            }
        };
    }
    match (endpoint.as_str(), second) {
        ("serviceproviderconfig", None) => only_get(method, Operation::ServiceProviderConfig, not_allowed),
        ("schemas", None) => only_get(method, Operation::ListSchemas, not_allowed),
        ("schemas", Some(raw)) => only_get(method, Operation::GetSchema(id(raw)?), not_allowed),
        ("resourcetypes", None) => only_get(method, Operation::ListResourceTypes, not_allowed),
        ("resourcetypes", Some(raw)) => only_get(method, Operation::GetResourceType(id(raw)?), not_allowed),
        ("bulk", None) => match *method {
            Method::POST => Ok(Operation::Bulk),
            _ => Err(not_allowed("POST")),
        },
        (".search", None) => match *method {
            Method::POST => Ok(Operation::SearchAll),
            _ => Err(not_allowed("POST")),
        },
        ("me", _) => {
            Ok(Operation::Unsupported("the /Me endpoint (the proxy does not know which user a token belongs to)"))
        }
        _ => Err(no_route()),
    }
}

fn only_get(
    method: &Method,
    operation: Operation,
    not_allowed: impl Fn(&'static str) -> RequestError,
) -> Result<Operation, RequestError> {
    if *method == Method::GET { Ok(operation) } else { Err(not_allowed("GET")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_methods_and_paths() {
        let get = Method::GET;
        let user = ResourceKind::User;
        assert_eq!(route(&get, "/Users/a%20b", "").unwrap(), Operation::Get(user, "a b".into()));
        assert_eq!(route(&Method::POST, "/Users", "").unwrap(), Operation::Create(user));
        assert_eq!(route(&Method::POST, "/Users/.search", "").unwrap(), Operation::List(user, ListSource::SearchBody));
        assert_eq!(
            route(&Method::DELETE, "/Groups/7", "").unwrap(),
            Operation::Delete(ResourceKind::Group, "7".into())
        );
        assert_eq!(route(&get, "/Schemas/urn:x", "").unwrap(), Operation::GetSchema("urn:x".into()));
        assert!(matches!(route(&Method::POST, "/Schemas", ""), Err(RequestError::MethodNotAllowed { .. })));
        assert!(matches!(route(&Method::PUT, "/Users", ""), Err(RequestError::MethodNotAllowed { .. })));
        assert!(matches!(route(&get, "/Nope", ""), Err(RequestError::NoRoute { .. })));
        assert!(matches!(route(&get, "/Users/a/b", ""), Err(RequestError::NoRoute { .. })));
        for dots in ["/Users/..", "/Users/%2E%2E", "/Groups/%2e", "/Users/.%2e"] {
            assert!(matches!(route(&Method::PATCH, dots, ""), Err(RequestError::NotFound { .. })), "{dots}");
        }
        assert_eq!(route(&get, "/Users/...", "").unwrap(), Operation::Get(user, "...".into()));
    }
}
