//! Routing: which app a request is for (by base path) and which SCIM endpoint and operation it names.

use http::Method;

use crate::error::RequestError;

/// A SCIM operation the proxy performs; also the `op` field of request logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    ServiceProviderConfig,
    ListSchemas,
    GetSchema(String),
    ListResourceTypes,
    GetResourceType(String),
    CreateUser,
    GetUser(String),
    ListUsers,
    SearchUsers,
    ReplaceUser(String),
    PatchUser(String),
    DeleteUser(String),
    /// An endpoint of RFC 7644 this proxy does not implement yet (answered 501).
    Unsupported(&'static str),
}

impl Operation {
    /// A short stable name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ServiceProviderConfig => "service_provider_config",
            Self::ListSchemas | Self::GetSchema(_) => "schemas",
            Self::ListResourceTypes | Self::GetResourceType(_) => "resource_types",
            Self::CreateUser => "create_user",
            Self::GetUser(_) => "get_user",
            Self::ListUsers | Self::SearchUsers => "list_users",
            Self::ReplaceUser(_) => "replace_user",
            Self::PatchUser(_) => "patch_user",
            Self::DeleteUser(_) => "delete_user",
            Self::Unsupported(_) => "unsupported",
        }
    }
}

/// Finds the app whose base path prefixes `path` (the longest one wins); returns its index
/// and the rest of the path.
pub fn find_app<'a>(base_paths: impl Iterator<Item = &'a str>, path: &'a str) -> Option<(usize, &'a str)> {
    base_paths
        .enumerate()
        .filter_map(|(i, base)| {
            let rest = if base == "/" { path } else { path.strip_prefix(base)? };
            (rest.is_empty() || rest.starts_with('/')).then_some((i, base.len(), rest))
        })
        .max_by_key(|(_, len, _)| *len)
        .map(|(i, _, rest)| (i, rest))
}

/// Maps a method and the path below an app's base path to a SCIM operation.
pub fn route(method: &Method, rest: &str, full_path: &str) -> Result<Operation, RequestError> {
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
    match (endpoint.as_str(), second) {
        ("serviceproviderconfig", None) => match *method {
            Method::GET => Ok(Operation::ServiceProviderConfig),
            _ => Err(not_allowed("GET")),
        },
        ("schemas", None) => only_get(method, Operation::ListSchemas, not_allowed),
        ("schemas", Some(raw)) => only_get(method, Operation::GetSchema(id(raw)?), not_allowed),
        ("resourcetypes", None) => only_get(method, Operation::ListResourceTypes, not_allowed),
        ("resourcetypes", Some(raw)) => only_get(method, Operation::GetResourceType(id(raw)?), not_allowed),
        ("users", None) => match *method {
            Method::GET => Ok(Operation::ListUsers),
            Method::POST => Ok(Operation::CreateUser),
            _ => Err(not_allowed("GET, POST")),
        },
        ("users", Some(".search")) => match *method {
            Method::POST => Ok(Operation::SearchUsers),
            _ => Err(not_allowed("POST")),
        },
        ("users", Some(raw)) => {
            let id = id(raw)?;
            match *method {
                Method::GET => Ok(Operation::GetUser(id)),
                Method::PUT => Ok(Operation::ReplaceUser(id)),
                Method::PATCH => Ok(Operation::PatchUser(id)),
                Method::DELETE => Ok(Operation::DeleteUser(id)),
                _ => Err(not_allowed("GET, PUT, PATCH, DELETE")),
            }
        }
        ("groups", _) => Ok(Operation::Unsupported("the /Groups endpoint")),
        ("bulk", None) => Ok(Operation::Unsupported("the /Bulk endpoint")),
        (".search", None) => Ok(Operation::Unsupported("searching across resource types with /.search")),
        ("me", _) => Ok(Operation::Unsupported("the /Me endpoint")),
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
    fn picks_the_longest_base_path() {
        let bases = ["/scim/v2", "/scim/v2/hr", "/other"];
        assert_eq!(find_app(bases.iter().copied(), "/scim/v2/Users"), Some((0, "/Users")));
        assert_eq!(find_app(bases.iter().copied(), "/scim/v2/hr/Users"), Some((1, "/Users")));
        assert_eq!(find_app(bases.iter().copied(), "/scim/v2hr/Users"), None);
        assert_eq!(find_app(bases.iter().copied(), "/nothing"), None);
    }

    #[test]
    fn routes_methods_and_paths() {
        let get = Method::GET;
        assert_eq!(route(&get, "/Users/a%20b", "").unwrap(), Operation::GetUser("a b".into()));
        assert_eq!(route(&Method::POST, "/Users", "").unwrap(), Operation::CreateUser);
        assert_eq!(route(&Method::POST, "/Users/.search", "").unwrap(), Operation::SearchUsers);
        assert_eq!(route(&get, "/Schemas/urn:x", "").unwrap(), Operation::GetSchema("urn:x".into()));
        assert!(matches!(route(&Method::POST, "/Schemas", ""), Err(RequestError::MethodNotAllowed { .. })));
        assert!(matches!(route(&Method::PUT, "/Users", ""), Err(RequestError::MethodNotAllowed { .. })));
        assert!(matches!(route(&get, "/Nope", ""), Err(RequestError::NoRoute { .. })));
        assert!(matches!(route(&get, "/Users/a/b", ""), Err(RequestError::NoRoute { .. })));
    }
}
