//! Discovery documents (`/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`, RFC 7644 §4) and the ListResponse.

use serde_json::{Value, json};

use super::schema::{ResourceSchema, Schema};

/// The URN of a schema definition document (RFC 7643 §7).
pub(crate) const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// The URN of a resource type document (RFC 7643 §6).
pub(crate) const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// The URN of the service provider configuration document (RFC 7643 §5).
pub(crate) const SERVICE_PROVIDER_CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The URN of a list or query response (RFC 7644 §3.4.2).
pub(crate) const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// What this proxy, for one app, can do; published in `/ServiceProviderConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// PATCH is supported.
    pub patch: bool,
    /// Bulk is supported, with (maximum operations, maximum payload size in bytes).
    pub bulk: Option<(usize, usize)>,
    /// The most resources one list or query response returns.
    pub filter_max_results: usize,
    /// Passwords can be changed (the script handles `password`).
    pub change_password: bool,
    /// `sortBy` is supported.
    pub sort: bool,
    /// ETags are produced and `If-Match` / `If-None-Match` honoured.
    pub etag: bool,
    /// Where humans find documentation about this endpoint.
    pub documentation_uri: Option<String>,
    /// How a client may authenticate, the preferred way first.
    pub authentication: Vec<AuthScheme>,
}

/// A way a client may authenticate to an app, published in `authenticationSchemes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    /// A shared secret sent as a bearer token (RFC 6750).
    BearerToken,
    /// A signed JWT access token from an OAuth 2.0 authorization server, sent as a bearer token.
    Jwt {
        /// The `iss` the token must carry: the authorization server to get it from.
        issuer: String,
    },
    /// HTTP Basic (RFC 7617).
    HttpBasic,
    /// A client certificate presented in the TLS handshake, matched by subject or subject
    /// alternative name.
    ClientCertificate,
}

impl AuthScheme {
    /// The scheme's `authenticationSchemes` entry (RFC 7643 §5).
    ///
    /// The types are RFC 7643 §5's where one fits. A client certificate has none: it is
    /// published as `tls_client_auth`, the name RFC 8705 §2.1 registered for authentication
    /// by a CA-issued certificate matched by subject DN or SAN, which is what the proxy does
    /// (`type` lists canonical values, which RFC 7643 §7 makes suggestions, not a closed set).
    fn document(&self, primary: bool) -> Value {
        let (kind, name, description, spec) = match self {
            Self::BearerToken => (
                "oauthbearertoken",
                "OAuth Bearer Token",
                "Send a token configured for this app in the Authorization header as a bearer token".to_owned(),
                "https://www.rfc-editor.org/info/rfc6750",
            ),
            Self::Jwt { issuer } => (
                "oauth2",
                "OAuth 2.0 JWT access token",
                format!(
                    "Get a signed JWT access token from {issuer} for this app and send it in the Authorization header as a bearer token"
                ),
                "https://www.rfc-editor.org/info/rfc6749",
            ),
            Self::HttpBasic => (
                "httpbasic",
                "HTTP Basic",
                "Send a user name and password configured for this app in the Authorization header".to_owned(),
                "https://www.rfc-editor.org/info/rfc7617",
            ),
            Self::ClientCertificate => (
                "tls_client_auth",
                "TLS client certificate",
                "Present a client certificate configured for this app in the TLS handshake; no Authorization header is needed"
                    .to_owned(),
                "https://www.rfc-editor.org/info/rfc8705",
            ),
        };
        json!({ "type": kind, "name": name, "description": description, "specUri": spec, "primary": primary })
    }
}

/// The `/Schemas/{id}` document for one schema: every attribute with all its characteristics.
///
/// `base_url` is the app's SCIM base URL (`https://host/scim/v2`), with or without a trailing slash.
pub(crate) fn schema_document(schema: &Schema, base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": schema.attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", trim(base_url), schema.id),
        },
    })
}

/// The `/ResourceTypes/{name}` document for one resource type.
///
/// `schemaExtensions` is left out when there are none, as in the RFC's Group example (RFC 7643 §8.6).
pub(crate) fn resource_type_document(rt: &ResourceSchema, base_url: &str) -> Value {
    let mut doc = json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.core.id,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{}/ResourceTypes/{}", trim(base_url), rt.name),
        },
    });
    if !rt.extensions.is_empty() {
        doc["schemaExtensions"] = rt
            .extensions
            .iter()
            .map(|(schema, required)| json!({ "schema": schema.id, "required": required }))
            .collect();
    }
    doc
}

/// The `/ServiceProviderConfig` document (RFC 7643 §5). `authenticationSchemes` lists what
/// the app accepts, the first one `primary`.
///
/// Unsupported bulk is published with zero limits, since `maxOperations` and
/// `maxPayloadSize` are required sub-attributes (RFC 7643 §8.7.2).
pub(crate) fn service_provider_config(caps: &Capabilities, base_url: &str) -> Value {
    let (max_operations, max_payload_size) = caps.bulk.unwrap_or((0, 0));
    let mut doc = json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": { "supported": caps.patch },
        "bulk": {
            "supported": caps.bulk.is_some(),
            "maxOperations": max_operations,
            "maxPayloadSize": max_payload_size,
        },
        "filter": { "supported": true, "maxResults": caps.filter_max_results },
        "changePassword": { "supported": caps.change_password },
        "sort": { "supported": caps.sort },
        "etag": { "supported": caps.etag },
        "authenticationSchemes": caps.authentication.iter().enumerate().map(|(i, s)| s.document(i == 0)).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", trim(base_url)),
        },
    });
    if let Some(uri) = &caps.documentation_uri {
        doc["documentationUri"] = Value::from(uri.as_str());
    }
    doc
}

/// A ListResponse (RFC 7644 §3.4.2) holding one page of `resources` out of `total` matches,
/// the first of them at 1-based `start_index`.
pub(crate) fn list_response(resources: Vec<Value>, total: usize, start_index: usize) -> Value {
    // Built by hand: `json!` would serialise the resources into a copy of themselves.
    let mut list = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
    });
    if let Value::Object(map) = &mut list {
        map.insert("Resources".into(), Value::Array(resources));
    }
    list
}

/// The base URL without its trailing slashes, so locations never hold `//`.
fn trim(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::definitions::{enterprise_user_schema, group_resource, user_resource, user_schema};

    const BASE: &str = "https://example.com/scim/v2/";

    #[test]
    fn user_schema_document_carries_every_characteristic() {
        let doc = schema_document(&user_schema(), BASE);
        assert_eq!(doc["schemas"], json!([SCHEMA_SCHEMA]));
        assert_eq!(doc["id"], "urn:ietf:params:scim:schemas:core:2.0:User");
        assert_eq!(
            doc["meta"],
            json!({
                "resourceType": "Schema",
                "location": "https://example.com/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            })
        );
        let attributes = doc["attributes"].as_array().unwrap();
        let names: Vec<&str> = attributes.iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert!(!names.contains(&"id") && !names.contains(&"meta"), "common attributes stay out, as in §8.7.1");
        let characteristics = [
            "name",
            "type",
            "multiValued",
            "description",
            "required",
            "caseExact",
            "mutability",
            "returned",
            "uniqueness",
        ];
        for attribute in attributes {
            for sub in std::iter::once(attribute).chain(attribute["subAttributes"].as_array().into_iter().flatten()) {
                for key in characteristics {
                    assert!(sub.get(key).is_some(), "{} lacks {key}", sub["name"]);
                }
            }
        }
        let user_name = &attributes[0];
        assert_eq!(
            *user_name,
            json!({
                "name": "userName", "type": "string", "multiValued": false,
                "description": user_name["description"], "required": true, "caseExact": false,
                "mutability": "readWrite", "returned": "default", "uniqueness": "server",
            })
        );
        let emails = attributes.iter().find(|a| a["name"] == "emails").unwrap();
        assert_eq!(emails["subAttributes"][2]["canonicalValues"], json!(["work", "home", "other"]));
        let password = attributes.iter().find(|a| a["name"] == "password").unwrap();
        assert_eq!(
            (password["mutability"].as_str(), password["returned"].as_str()),
            (Some("writeOnly"), Some("never"))
        );
        let groups = attributes.iter().find(|a| a["name"] == "groups").unwrap();
        assert_eq!(groups["subAttributes"][1]["referenceTypes"], json!(["User", "Group"]));
    }

    #[test]
    fn resource_type_documents() {
        let users = resource_type_document(&user_resource(vec![(enterprise_user_schema(), false)]), BASE);
        assert_eq!(
            users,
            json!({
                "schemas": [RESOURCE_TYPE_SCHEMA],
                "id": "User", "name": "User", "endpoint": "/Users", "description": users["description"],
                "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
                "schemaExtensions": [
                    { "schema": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "required": false },
                ],
                "meta": { "resourceType": "ResourceType", "location": "https://example.com/scim/v2/ResourceTypes/User" },
            })
        );
        let groups = resource_type_document(&group_resource(vec![]), "https://example.com/scim/v2");
        assert_eq!(groups["schema"], "urn:ietf:params:scim:schemas:core:2.0:Group");
        assert_eq!(groups["endpoint"], "/Groups");
        assert!(groups.get("schemaExtensions").is_none());
        assert_eq!(groups["meta"]["location"], "https://example.com/scim/v2/ResourceTypes/Group");
    }

    #[test]
    fn service_provider_config_reflects_capabilities() {
        let cases = [
            (
                Capabilities {
                    patch: true,
                    bulk: None,
                    filter_max_results: 200,
                    change_password: false,
                    sort: true,
                    etag: true,
                    documentation_uri: None,
                    authentication: vec![AuthScheme::BearerToken],
                },
                json!({ "supported": false, "maxOperations": 0, "maxPayloadSize": 0 }),
            ),
            (
                Capabilities {
                    patch: false,
                    bulk: Some((100, 1_048_576)),
                    filter_max_results: 50,
                    change_password: true,
                    sort: false,
                    etag: false,
                    documentation_uri: Some("https://docs.example.com/scim".to_owned()),
                    authentication: vec![AuthScheme::BearerToken],
                },
                json!({ "supported": true, "maxOperations": 100, "maxPayloadSize": 1_048_576 }),
            ),
        ];
        for (caps, bulk) in cases {
            let doc = service_provider_config(&caps, BASE);
            assert_eq!(doc["schemas"], json!([SERVICE_PROVIDER_CONFIG_SCHEMA]));
            assert_eq!(doc["patch"], json!({ "supported": caps.patch }));
            assert_eq!(doc["bulk"], bulk);
            assert_eq!(doc["filter"], json!({ "supported": true, "maxResults": caps.filter_max_results }));
            assert_eq!(doc["changePassword"], json!({ "supported": caps.change_password }));
            assert_eq!(doc["sort"], json!({ "supported": caps.sort }));
            assert_eq!(doc["etag"], json!({ "supported": caps.etag }));
            assert_eq!(doc.get("documentationUri").and_then(Value::as_str), caps.documentation_uri.as_deref());
            let scheme = &doc["authenticationSchemes"][0];
            assert_eq!(scheme["type"], "oauthbearertoken");
            assert_eq!(scheme["specUri"], "https://www.rfc-editor.org/info/rfc6750");
            assert_eq!(scheme["primary"], true);
            assert_eq!(
                doc["meta"],
                json!({
                    "resourceType": "ServiceProviderConfig",
                    "location": "https://example.com/scim/v2/ServiceProviderConfig",
                })
            );
        }
    }

    #[test]
    fn authentication_schemes_are_what_the_app_accepts_the_first_primary() {
        let caps = |authentication| Capabilities {
            patch: true,
            bulk: None,
            filter_max_results: 10,
            change_password: false,
            sort: true,
            etag: true,
            documentation_uri: None,
            authentication,
        };
        let issuer = "https://sts.windows.net/tenant/".to_owned();
        let cases = [
            (vec![AuthScheme::BearerToken], vec![("oauthbearertoken", "rfc6750", true)]),
            (
                vec![AuthScheme::Jwt { issuer: issuer.clone() }, AuthScheme::HttpBasic],
                vec![("oauth2", "rfc6749", true), ("httpbasic", "rfc7617", false)],
            ),
            (
                vec![AuthScheme::BearerToken, AuthScheme::ClientCertificate],
                vec![("oauthbearertoken", "rfc6750", true), ("tls_client_auth", "rfc8705", false)],
            ),
            (vec![AuthScheme::ClientCertificate], vec![("tls_client_auth", "rfc8705", true)]),
        ];
        for (schemes, expected) in cases {
            let doc = service_provider_config(&caps(schemes.clone()), BASE);
            let published = doc["authenticationSchemes"].as_array().unwrap();
            let got: Vec<(&str, &str, bool)> = published
                .iter()
                .map(|s| {
                    let spec = s["specUri"].as_str().unwrap().rsplit('/').next().unwrap();
                    (s["type"].as_str().unwrap(), spec, s["primary"].as_bool().unwrap())
                })
                .collect();
            assert_eq!(got, expected, "{schemes:?}");
            for scheme in published {
                // name and description are required sub-attributes (RFC 7643 §5).
                assert!(
                    !scheme["name"].as_str().unwrap().is_empty() && !scheme["description"].as_str().unwrap().is_empty()
                );
            }
        }
        let doc = service_provider_config(&caps(vec![AuthScheme::Jwt { issuer: issuer.clone() }]), BASE);
        assert!(
            doc["authenticationSchemes"][0]["description"].as_str().unwrap().contains(&issuer),
            "says where to get a token"
        );
    }

    #[test]
    fn list_response_envelope() {
        let page = list_response(vec![json!({ "id": "a" }), json!({ "id": "b" })], 12, 3);
        assert_eq!(
            page,
            json!({
                "schemas": [LIST_RESPONSE],
                "totalResults": 12, "itemsPerPage": 2, "startIndex": 3,
                "Resources": [{ "id": "a" }, { "id": "b" }],
            })
        );
        assert_eq!(list_response(vec![], 0, 1)["Resources"], json!([]));
    }
}
