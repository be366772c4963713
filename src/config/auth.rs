//! An app's `auth` section: how identity providers authenticate to it, and the checks of it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{KeyProblem, Secret, TlsConfig, duration, kib, secs, weak_secret};

/// Inbound authentication of an app: a request is accepted when any configured method accepts it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct InboundAuth {
    /// Accepted bearer tokens; several allow rotation without downtime.
    pub bearer_tokens: Vec<Secret>,
    /// Files holding one bearer token each (e.g. a mounted Kubernetes Secret), re-read when
    /// they change; relative to the configuration file.
    pub bearer_token_files: Vec<PathBuf>,
    /// HTTP Basic credentials.
    pub basic: Vec<BasicCredential>,
    /// Signed JWT bearer tokens (e.g. from Microsoft Entra ID).
    pub jwt: Option<JwtConfig>,
    /// Client certificates (verified against `tls.client_ca`) that authenticate without a token.
    pub client_certificates: Option<ClientCertificates>,
}

/// One HTTP Basic user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicCredential {
    /// The user name, as the identity provider sends it.
    pub username: String,
    /// Its password (16 characters or more), by reference: `${env.NAME}` or `${file.PATH}`.
    pub password: Secret,
}

/// Validation of JWT bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtConfig {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// Accepted `aud` values; a token must name one of them.
    pub audiences: Vec<String>,
    /// Signature algorithms accepted (`RS256`, `ES256`, `PS256`, `EdDSA`, …); `HS*` only with
    /// `shared_secret`. There is no `none`.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Public keys read at start: `{pem_file: PATH}` or `{jwks_file: PATH}`.
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// A JWKS document fetched when needed and again (at most once a minute) when a token
    /// names a key id it does not hold.
    #[serde(default)]
    pub jwks_url: Option<url::Url>,
    /// How long keys fetched from `jwks_url` are used before the document is fetched again,
    /// so that a key the identity provider withdrew stops being accepted.
    #[serde(default = "secs::<3600>", with = "duration")]
    pub jwks_max_age: Duration,
    /// The largest JWKS document read from `jwks_url`; a larger one is a failed fetch (the
    /// keys held stay in use). 256 KiB by default: a JWKS of a dozen keys with their
    /// certificate chains (`x5c`) is some tens of KB.
    #[serde(default = "kib::<256>")]
    pub jwks_max_bytes: usize,
    /// The secret of `HS256`/`HS384`/`HS512` tokens (32 bytes or more).
    #[serde(default)]
    pub shared_secret: Option<Secret>,
    /// Clock difference tolerated on `exp` and `nbf`.
    #[serde(default = "secs::<60>", with = "duration")]
    pub leeway: Duration,
}

/// Where a JWT verification key comes from: exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct JwtKey {
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`, RSA, EC or Ed25519).
    pub pem_file: Option<PathBuf>,
    /// A JWKS document (`{"keys": [...]}`) on disk.
    pub jwks_file: Option<PathBuf>,
}

/// Client certificates accepted as credentials: any entry that matches accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ClientCertificates {
    /// Subjects in RFC 4514 text, read at load (malformed text stops the start). `CN=name`
    /// alone accepts a subject with exactly one common name, `name`, whatever else it holds; any
    /// other entry (`CN=a,O=b`, last RDN first as RFC 4514 writes it) accepts only that subject:
    /// the same RDNs in the same order, values compared exactly. A comma or plus inside a value
    /// is escaped (`CN=Acme\, Inc.`); `#hex` values are not supported.
    pub subjects: Vec<super::subject::SubjectName>,
    /// DNS names of the subject alternative name extension, compared as RFC 6125 says: without
    /// regard to case, a final dot ignored, internationalised names as A-labels (`xn--…`). No
    /// wildcards: `*.example.com` is refused here, and a certificate's `*.example.com` matches
    /// no configured name.
    pub dns_names: Vec<String>,
    /// URIs of the subject alternative name extension (e.g. SPIFFE ids), compared character for
    /// character.
    pub uris: Vec<String>,
}

impl InboundAuth {
    /// Checks an app's inbound authentication at load; the key returned is below `auth`.
    pub(super) fn validate(&self, tls: Option<&TlsConfig>) -> Result<(), KeyProblem> {
        let err = |key: &str, detail: &str| Err(KeyProblem::new(key, detail));
        if self.bearer_tokens.is_empty()
            && self.bearer_token_files.is_empty()
            && self.basic.is_empty()
            && self.jwt.is_none()
            && self.client_certificates.is_none()
        {
            return err(
                "bearer_tokens",
                "no way to authenticate: add a token, e.g. bearer_tokens: [\"${env.SCIM_TOKEN}\"], or bearer_token_files, basic, jwt or client_certificates",
            );
        }
        if let Some(problem) = self.bearer_tokens.iter().find_map(|t| weak_secret(t.expose())) {
            return err("bearer_tokens", &format!("a token {problem}"));
        }
        for (i, user) in self.basic.iter().enumerate() {
            if user.username.is_empty() || user.username.contains(':') {
                return err(&format!("basic[{i}].username"), "must be non-empty and without ':'");
            }
            if let Some(problem) = weak_secret(user.password.expose()) {
                return err(&format!("basic[{i}].password"), &problem);
            }
        }
        if let Some(jwt) = &self.jwt {
            jwt.validate()?;
        }
        if let Some(certs) = &self.client_certificates {
            for (i, name) in certs.dns_names.iter().enumerate() {
                if let Some(problem) = dns_name_problem(name) {
                    return err(&format!("client_certificates.dns_names[{i}]"), &problem);
                }
            }
            if let Some(i) = certs.uris.iter().position(|uri| uri.trim().is_empty()) {
                return err(
                    &format!("client_certificates.uris[{i}]"),
                    "is empty: write the URI, e.g. spiffe://acme/idp",
                );
            }
            if tls.is_none_or(|t| t.client_ca.is_none()) {
                return err(
                    "client_certificates",
                    "needs tls.client_ca: set it to the CA bundle that issues the client certificates",
                );
            }
            if certs.subjects.is_empty() && certs.dns_names.is_empty() && certs.uris.is_empty() {
                return err("client_certificates", "list at least one of subjects, dns_names or uris");
            }
        }
        Ok(())
    }
}

impl JwtConfig {
    /// Checks the settings of JWT validation; the key returned is below `auth`.
    fn validate(&self) -> Result<(), KeyProblem> {
        use jsonwebtoken::Algorithm as A;
        let err = |key: &str, detail: &str| Err(KeyProblem::new(format!("jwt.{key}"), detail));
        let hmac = |a: &A| matches!(a, A::HS256 | A::HS384 | A::HS512);
        if self.jwks_max_age < Duration::from_secs(1) {
            return err("jwks_max_age", "must be at least 1s (an hour is usual): every token would fetch the JWKS");
        }
        if self.issuer.is_empty() {
            return err("issuer", "must name the issuer, e.g. https://sts.windows.net/TENANT_ID/");
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return err("audiences", "list at least one audience, e.g. the application id URI");
        }
        if self.algorithms.is_empty() {
            return err("algorithms", "list the accepted algorithms, e.g. [RS256]");
        }
        if self.algorithms.iter().any(hmac) && self.shared_secret.is_none() {
            return err("algorithms", "HS256/HS384/HS512 need jwt.shared_secret; use RS256 or ES256 with public keys");
        }
        if let Some(secret) = &self.shared_secret {
            if !self.algorithms.iter().any(hmac) {
                return err(
                    "shared_secret",
                    "is used only by HS256/HS384/HS512: add one to jwt.algorithms or drop the secret",
                );
            }
            if secret.expose().len() < 32 {
                return err("shared_secret", "shorter than 32 characters: use a long random secret");
            }
        }
        if self.algorithms.iter().any(|a| !hmac(a)) && self.keys.is_empty() && self.jwks_url.is_none() {
            return err("keys", "no public key: add keys ({pem_file: PATH} or {jwks_file: PATH}) or jwks_url");
        }
        if let Some(i) = self.keys.iter().position(|k| k.pem_file.is_some() == k.jwks_file.is_some()) {
            return err(&format!("keys[{i}]"), "give exactly one of pem_file or jwks_file");
        }
        if let Some(url) = &self.jwks_url {
            if !matches!(url.scheme(), "http" | "https") {
                return err("jwks_url", "must be an https:// (or http://) URL");
            }
        }
        Ok(())
    }
}

/// Why a configured DNS name of a client certificate could never be matched as meant: `None`
/// when it is a plain ASCII host name (a final dot allowed).
fn dns_name_problem(name: &str) -> Option<String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.contains('*') {
        return Some(format!(
            "{name:?} is a wildcard: certificates are matched by exact name only; list each name, e.g. idp.example.com"
        ));
    }
    if !bare.is_ascii() {
        return Some(format!(
            "{name:?} is not ASCII: write an internationalised name as its A-labels (xn--…), as certificates hold it"
        ));
    }
    let label_ok =
        |label: &str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !bare.split('.').all(label_ok) {
        return Some(format!("{name:?} is not a DNS name: use letters, digits, '-' and '.', e.g. idp.example.com"));
    }
    None
}
