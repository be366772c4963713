//! Inbound authentication: bearer tokens (inline or in files, compared in constant time), HTTP
//! Basic, signed JWTs and verified client certificates, each answering who the caller is.
//!
//! May import: `listener` (the connection and its client certificate), `error`, `legacy`
//! (bounded JWKS reads), and the foundation.

mod jwt;
mod token_file;

use std::path::Path;

use base64::Engine as _;
use http::HeaderMap;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{BasicCredential, ClientCertificates, Config, InboundAuth, Secret};
use crate::error::RequestError;
use crate::listener::server::Connection;
use crate::listener::tls::ClientIdentity;

pub(crate) use jwt::JwtValidator;
pub(crate) use token_file::TokenFile;

/// Who a request was authenticated as: the credential, never its secret (`bearer token #2`).
/// Audit records and logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal(pub String);

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An app's inbound authentication at run time: its configuration with the files and keys it
/// names read in.
#[derive(Debug)]
pub(crate) struct AppAuth {
    app: String,
    tokens: Vec<Secret>,
    token_files: Vec<TokenFile>,
    basic: Vec<BasicCredential>,
    jwt: Option<JwtValidator>,
    client_certificates: Option<ClientCertificates>,
}

impl AppAuth {
    /// Reads the JWT keys an app's configuration names; runs at start. The error names the
    /// key under `auth` and the reason.
    pub(crate) fn new(config: &Config, app: &str, auth: &InboundAuth) -> Result<Self, (String, String)> {
        let resolve = |path: &Path| config.relative_path(path);
        let jwt = auth
            .jwt
            .as_ref()
            .map(|jwt| JwtValidator::new(jwt, resolve))
            .transpose()
            .map_err(|(key, detail)| (format!("auth.{key}"), detail))?;
        let token_files = auth.bearer_token_files.iter().map(|p| TokenFile::new(app, resolve(p))).collect::<Vec<_>>();
        // Read now, so a missing file is in the log at start rather than at the first request,
        // and a weak token stops the start.
        for (i, file) in token_files.iter().enumerate() {
            file.check_at_start().map_err(|detail| (format!("auth.bearer_token_files[{i}]"), detail))?;
        }
        Ok(Self {
            app: app.to_owned(),
            tokens: auth.bearer_tokens.clone(),
            token_files,
            basic: auth.basic.clone(),
            jwt,
            client_certificates: auth.client_certificates.clone(),
        })
    }
}

/// Authenticates a request by any method its app accepts: a verified client certificate that
/// matches, a bearer token (inline, from a file, or a valid JWT), or HTTP Basic.
///
/// Runs before routing. A JWT that fails validation is `InvalidToken` with the reason (also
/// logged); every other failure is `Unauthorized`.
pub(crate) async fn authenticate(
    auth: &AppAuth,
    headers: &HeaderMap,
    connection: &Connection,
) -> Result<Principal, RequestError> {
    if let (Some(accepted), Some(client)) = (&auth.client_certificates, &connection.client) {
        if let Some(principal) = match_certificate(accepted, client) {
            return Ok(principal);
        }
        // The subject is the client's to choose: escaped, so that no value passes for structure,
        // and cut short.
        tracing::info!(app = %auth.app, subject = %client.subject.shown(), "client certificate not accepted by this app");
    }
    let Some((scheme, credential)) = authorization(headers) else {
        return Err(RequestError::Unauthorized);
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(principal) = check_tokens(auth, credential) {
            return Ok(principal);
        }
        if let Some(jwt) = &auth.jwt {
            if JwtValidator::looks_like_jwt(credential) {
                return match jwt.validate(&auth.app, credential).await {
                    Ok((sub, iss)) => Ok(Principal(format!("jwt sub={sub} iss={iss}"))),
                    Err(reason) => {
                        tracing::info!(app = %auth.app, reason, "jwt refused");
                        Err(RequestError::InvalidToken { reason })
                    }
                };
            }
        }
        return Err(RequestError::Unauthorized);
    }
    if scheme.eq_ignore_ascii_case("basic") && !auth.basic.is_empty() {
        return check_basic(&auth.basic, credential).ok_or(RequestError::Unauthorized);
    }
    Err(RequestError::Unauthorized)
}

/// Whether a request carries the admin token: `Bearer <token>`, or HTTP Basic with the token
/// as the password and any user name (what a browser asks a person for). Compared in
/// constant time, like the apps' tokens.
pub(crate) fn has_admin_token(expected: &Secret, headers: &HeaderMap) -> bool {
    let matches = |presented: &str| bool::from(expected.expose().as_bytes().ct_eq(presented.as_bytes()));
    match authorization(headers) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => matches(token),
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("basic") => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(credential).ok();
            let decoded = decoded.and_then(|d| String::from_utf8(d).ok());
            decoded.as_deref().and_then(|d| d.split_once(':')).is_some_and(|(_, password)| matches(password))
        }
        _ => false,
    }
}

/// The scheme and credential of the `Authorization` header.
fn authorization(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    Some((scheme, credential.trim()))
}

/// The inline tokens first (`bearer token #N`), then the token files (`bearer token file PATH`).
fn check_tokens(auth: &AppAuth, presented: &str) -> Option<Principal> {
    let mut matched = 0u32;
    let file_tokens: Vec<Option<Secret>> = auth.token_files.iter().map(TokenFile::token).collect();
    let inline = auth.tokens.iter().map(Some);
    // Every token is compared, whether or not an earlier one matched, so the time taken does
    // not tell which token (or how much of one) was right.
    for (index, token) in inline.chain(file_tokens.iter().map(Option::as_ref)).enumerate() {
        let Some(token) = token else { continue };
        let equal = token.expose().as_bytes().ct_eq(presented.as_bytes());
        matched = u32::conditional_select(&matched, &(index as u32 + 1), equal);
    }
    let index = (matched as usize).checked_sub(1)?;
    if index < auth.tokens.len() {
        return Some(Principal(format!("bearer token #{matched}")));
    }
    let file = auth.token_files.get(index - auth.tokens.len())?;
    Some(Principal(format!("bearer token file {}", file.path.display())))
}

/// `Basic base64(user:password)` against the configured users, in constant time.
fn check_basic(users: &[BasicCredential], credential: &str) -> Option<Principal> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(credential).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (name, password) = decoded.split_once(':')?;
    let mut matched = 0u32;
    for (index, user) in users.iter().enumerate() {
        let equal = user.username.as_bytes().ct_eq(name.as_bytes())
            & user.password.expose().as_bytes().ct_eq(password.as_bytes());
        matched = u32::conditional_select(&matched, &(index as u32 + 1), equal);
    }
    let user = users.get((matched as usize).checked_sub(1)?)?;
    Some(Principal(format!("basic user {}", user.username)))
}

/// The principal of a client certificate that one of `accepted` names: `client certificate`,
/// the subject as escaped RFC 4514 text (so `CN=a\,O=b`, one common name, never reads as
/// `CN=a,O=b`), and the alternative name that matched when that is how it was accepted.
/// The rules: [`subject::SubjectName::accepts`], [`same_dns_name`], and URIs character for
/// character.
fn match_certificate(accepted: &ClientCertificates, client: &ClientIdentity) -> Option<Principal> {
    let name = if client.subject.is_empty() {
        "client certificate".to_owned()
    } else {
        format!("client certificate {}", client.subject)
    };
    if accepted.subjects.iter().any(|wanted| wanted.accepts(&client.subject)) {
        return Some(Principal(name));
    }
    if let Some(dns) = client.dns_names.iter().find(|d| accepted.dns_names.iter().any(|w| same_dns_name(w, d))) {
        return Some(Principal(format!("{name} DNS:{}", crate::error::echoed(dns))));
    }
    if let Some(uri) = client.uris.iter().find(|u| accepted.uris.contains(u)) {
        return Some(Principal(format!("{name} URI:{}", crate::error::echoed(uri))));
    }
    None
}

/// Whether a certificate's DNS name is a configured one, as RFC 6125 §6.4 compares them: ASCII
/// without regard to case, a final dot ignored, internationalised names as their A-labels
/// (`xn--…`, the form certificates hold). No wildcard is expanded: a configured one is refused
/// at load, and a certificate's `*.example.com` is no name but itself, so it matches nothing.
fn same_dns_name(configured: &str, presented: &str) -> bool {
    fn bare(name: &str) -> &str {
        name.strip_suffix('.').unwrap_or(name)
    }
    !presented.contains('*') && bare(configured).eq_ignore_ascii_case(bare(presented))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::subject;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn app_auth(tokens: &[&str], basic: &[(&str, &str)]) -> AppAuth {
        AppAuth {
            app: "test".into(),
            tokens: tokens.iter().map(|t| Secret::new(*t)).collect(),
            token_files: Vec::new(),
            basic: basic
                .iter()
                .map(|(u, p)| BasicCredential { username: (*u).into(), password: Secret::new(*p) })
                .collect(),
            jwt: None,
            client_certificates: None,
        }
    }

    fn plain() -> Connection {
        Connection {
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: false,
            client: None,
            body_budget: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
            body_budget_bytes: 0,
        }
    }

    #[tokio::test]
    async fn accepts_any_configured_token_and_nothing_else() {
        let auth = app_auth(&["first-token-0123456789", "second-token-0123456789"], &[]);
        let check = |value: &str| {
            let h = headers(value);
            let auth = &auth;
            async move { authenticate(auth, &h, &plain()).await }
        };
        assert_eq!(check("Bearer first-token-0123456789").await.unwrap().0, "bearer token #1");
        assert_eq!(check("bearer second-token-0123456789").await.unwrap().0, "bearer token #2");
        for bad in [
            "Bearer first-token-012345678",
            "Bearer first-token-01234567890",
            "Basic first-token-0123456789",
            "Bearer",
            "",
        ] {
            assert!(check(bad).await.is_err(), "{bad}");
        }
        assert!(authenticate(&auth, &HeaderMap::new(), &plain()).await.is_err());
    }

    #[tokio::test]
    async fn basic_names_the_user_and_needs_both_halves() {
        let auth = app_auth(&[], &[("okta", "a-basic-password-0123"), ("other", "another-password-0123")]);
        let basic = |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
        let ok = authenticate(&auth, &headers(&basic("other:another-password-0123")), &plain()).await.unwrap();
        assert_eq!(ok.0, "basic user other");
        for bad in ["okta:another-password-0123", "okta:", "okta", ":a-basic-password-0123"] {
            assert!(authenticate(&auth, &headers(&basic(bad)), &plain()).await.is_err(), "{bad}");
        }
        assert!(authenticate(&auth, &headers("Basic !!!"), &plain()).await.is_err());
    }

    #[test]
    fn the_admin_token_opens_as_bearer_or_as_a_basic_password_only() {
        let token = Secret::new("admin-token-0123456789");
        let basic = |pair: &str| headers(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
        assert!(has_admin_token(&token, &headers("Bearer admin-token-0123456789")));
        assert!(has_admin_token(&token, &headers("bearer   admin-token-0123456789 ")));
        assert!(has_admin_token(&token, &basic(":admin-token-0123456789")));
        assert!(has_admin_token(&token, &basic("ops:admin-token-0123456789")));
        assert!(!has_admin_token(&token, &HeaderMap::new()));
        assert!(!has_admin_token(&token, &headers("Bearer admin-token-012345678")));
        assert!(!has_admin_token(&token, &headers("Bearer admin-token-0123456789x")));
        assert!(!has_admin_token(&token, &basic("admin-token-0123456789:")));
        assert!(!has_admin_token(&token, &basic("admin-token-0123456789")));
        assert!(!has_admin_token(&token, &headers("Token admin-token-0123456789")));
        assert!(!has_admin_token(&token, &headers("Basic !!notbase64")));
    }

    #[test]
    fn certificates_match_by_subject_or_alternative_name_and_are_named_by_their_escaped_subject() {
        let subject = |text: &str| subject::DistinguishedName::parse(text).unwrap();
        let client = |subject: subject::DistinguishedName, dns: &[&str]| ClientIdentity {
            subject,
            dns_names: dns.iter().map(|s| (*s).into()).collect(),
            uris: vec!["spiffe://acme/idp".into()],
        };
        let accepted = |subjects: &[&str], dns: &[&str], uris: &[&str]| ClientCertificates {
            subjects: subjects.iter().map(|s| subject::SubjectName::try_from((*s).to_owned()).unwrap()).collect(),
            dns_names: dns.iter().map(|s| (*s).into()).collect(),
            uris: uris.iter().map(|s| (*s).into()).collect(),
        };
        let principal = |a: &ClientCertificates, c: &ClientIdentity| match_certificate(a, c).map(|p| p.0);
        let idp = client(subject("CN=entra-provisioning,O=Acme"), &["idp.example.com"]);
        assert_eq!(
            principal(&accepted(&["CN=entra-provisioning"], &[], &[]), &idp).unwrap(),
            "client certificate CN=entra-provisioning,O=Acme"
        );
        assert!(principal(&accepted(&["CN=entra-provisioning, O=Acme"], &[], &[]), &idp).is_some());
        assert!(principal(&accepted(&["O=Acme,CN=entra-provisioning"], &[], &[]), &idp).is_none());
        assert!(principal(&accepted(&["CN=entra"], &[], &[]), &idp).is_none());
        assert!(principal(&accepted(&["CN=entra-provisioning,O=Other"], &[], &[]), &idp).is_none());
        assert!(
            principal(&accepted(&[], &[], &["spiffe://acme/idp"]), &idp).unwrap().ends_with(" URI:spiffe://acme/idp")
        );
        assert!(principal(&accepted(&[], &[], &["spiffe://acme/IDP"]), &idp).is_none());
        assert!(principal(&accepted(&[], &["other.example.com"], &["spiffe://acme/other"]), &idp).is_none());

        // The spoof: one common name holding the text of a whole subject.
        let spoof = client(subject("CN=entra-provisioning\\, O=Acme"), &[]);
        assert!(principal(&accepted(&["CN=entra-provisioning,O=Acme"], &[], &[]), &spoof).is_none());
        assert!(principal(&accepted(&["CN=entra-provisioning"], &[], &[]), &spoof).is_none());
        let configured_so = accepted(&["CN=entra-provisioning\\, O=Acme"], &[], &[]);
        assert_eq!(principal(&configured_so, &spoof).unwrap(), "client certificate CN=entra-provisioning\\, O=Acme");

        // DNS names: any case, a final dot ignored, no wildcard either way.
        for (configured, presented, matches) in [
            ("idp.example.com", "IDP.Example.COM", true),
            ("idp.example.com", "idp.example.com.", true),
            ("IDP.example.com.", "idp.example.com", true),
            ("xn--bcher-kva.example", "XN--BCHER-KVA.example", true),
            ("idp.example.com", "idp.example.com..", false),
            ("idp.example.com", "*.example.com", false),
            ("idp.example.com", "idp.example.com.evil", false),
            ("a.example.com", "*.example.com", false),
        ] {
            let by_dns = principal(&accepted(&[], &[configured], &[]), &client(subject("CN=x"), &[presented]));
            assert_eq!(by_dns.is_some(), matches, "{configured} / {presented}");
            if matches {
                assert_eq!(by_dns.unwrap(), format!("client certificate CN=x DNS:{presented}"));
            }
        }
        let nameless = client(subject::DistinguishedName::default(), &["idp.example.com"]);
        assert_eq!(
            principal(&accepted(&[], &["idp.example.com"], &[]), &nameless).unwrap(),
            "client certificate DNS:idp.example.com"
        );
    }
}
