//! An app's `legacy` section: where and how the proxy calls the in-house API, and the checks of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{KeyProblem, Secret, duration, kib, mib, secs};

/// Where and how the proxy calls the in-house API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyConfig {
    /// Base URL; scripts call paths relative to it and can reach nothing else.
    pub(crate) base_url: url::Url,
    /// Headers sent with every legacy call, e.g. an API key.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Secret>,
    /// Timeout of one legacy call.
    #[serde(default = "secs::<10>", with = "duration")]
    pub(crate) timeout: Duration,
    /// Timeout to establish a connection to the legacy app.
    #[serde(default = "secs::<3>", with = "duration")]
    pub(crate) connect_timeout: Duration,
    /// Largest legacy response body accepted.
    #[serde(default = "mib::<16>")]
    pub(crate) max_response_bytes: usize,
    /// PEM file of the CA certificates trusted for the legacy app (and its token endpoint),
    /// relative to the configuration file. When set, only these are trusted; when absent, the
    /// Mozilla root certificates built into the proxy are.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The certificate and key the proxy presents to the legacy app (mutual TLS).
    #[serde(default)]
    pub client_certificate: Option<ClientCertificate>,
    /// Accept any certificate from the legacy app: no chain, name or expiry check. For trials
    /// only; every start logs a warning and `/readyz` shows it.
    #[serde(default)]
    pub(crate) insecure_skip_verify: bool,
    /// Credentials sent with every legacy call, in the `Authorization` header.
    #[serde(default)]
    pub auth: Option<LegacyAuthConfig>,
    /// When a failed legacy call is tried again.
    #[serde(default)]
    pub(crate) retry: RetryConfig,
    /// When the app's legacy calls fail fast for a while, after consecutive transient failures.
    #[serde(default)]
    pub(crate) breaker: BreakerConfig,
}

/// Retries of legacy calls that are safe to repeat: capped exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RetryConfig {
    /// Tries of one call in all, the first included; `1` turns retries off.
    pub attempts: u32,
    /// The longest wait before the first retry; each further retry may wait twice as long.
    #[serde(with = "duration")]
    pub base_delay: Duration,
    /// The longest wait before any retry (a `Retry-After` of the legacy app may ask for more,
    /// within the request's deadline).
    #[serde(with = "duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1) }
    }
}

/// The circuit breaker of an app's legacy calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BreakerConfig {
    /// Consecutive transient failures (no connection, reset, timeout, 502/503/504/429) that
    /// open the breaker; `0` turns it off.
    pub failures: u32,
    /// How long calls fail fast once it is open, before one probe call is let through.
    #[serde(with = "duration")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 5, open_for: Duration::from_secs(10) }
    }
}

/// A client certificate for mutual TLS, as two PEM files relative to the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// The certificate, optionally followed by its intermediate CA certificates.
    pub(crate) cert: PathBuf,
    /// The private key of the certificate (PKCS#8, PKCS#1 or SEC1, not encrypted).
    pub(crate) key: PathBuf,
}

/// How the proxy authenticates to the legacy app: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegacyAuthConfig {
    /// HTTP Basic authentication with fixed credentials.
    pub(crate) basic: Option<BasicAuth>,
    /// A fixed bearer token.
    pub(crate) bearer: Option<BearerAuth>,
    /// Tokens fetched from an OAuth2 token endpoint (client credentials grant).
    pub oauth2: Option<OAuth2Config>,
}

/// HTTP Basic credentials for the legacy app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicAuth {
    /// The user name; it cannot contain ':'.
    pub username: Secret,
    /// The password.
    pub password: Secret,
}

/// A fixed bearer token for the legacy app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BearerAuth {
    /// The token, sent as `Authorization: Bearer <token>`.
    pub token: Secret,
}

/// OAuth2 client credentials grant (RFC 6749 §4.4) for the legacy app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token endpoint, called with the app's TLS settings.
    pub(crate) token_url: url::Url,
    /// The client identifier.
    pub(crate) client_id: Secret,
    /// The client secret.
    pub(crate) client_secret: Secret,
    /// How the client authenticates to the token endpoint.
    #[serde(default)]
    pub(crate) client_auth: ClientAuth,
    /// The `scope` parameter, when the token endpoint needs one.
    #[serde(default)]
    pub(crate) scope: Option<String>,
    /// The `audience` parameter, when the token endpoint needs one.
    #[serde(default)]
    pub(crate) audience: Option<String>,
    /// More form parameters of the token request.
    #[serde(default)]
    pub(crate) extra_params: BTreeMap<String, String>,
    /// How long before its expiry a token is replaced (at most half its lifetime).
    #[serde(default = "secs::<60>", with = "duration")]
    pub(crate) refresh_before: Duration,
    /// The largest token endpoint answer read; a larger one is a failed token request. 64 KiB
    /// by default: a token answer is a few KB even when the access token is a JWT with many claims.
    #[serde(default = "kib::<64>")]
    pub(crate) max_response_bytes: usize,
}

/// Where the client credentials go in a token request (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientAuth {
    /// HTTP Basic authentication with the client id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

impl LegacyConfig {
    /// Checks the URL, headers, TLS and credential settings of one app at load; the key
    /// returned is below `legacy`.
    pub(super) fn validate(&self) -> Result<(), KeyProblem> {
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(KeyProblem::new("base_url", "must be an http:// or https:// URL"));
        }
        if self.base_url.query().is_some() || self.base_url.fragment().is_some() {
            return Err(KeyProblem::new("base_url", "must not have a query or fragment"));
        }
        for name in self.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(KeyProblem::new(format!("headers.{name}"), "is not a valid HTTP header name"));
            }
        }
        for (name, value) in &self.headers {
            if http::HeaderValue::from_str(value.expose()).is_err() {
                return Err(KeyProblem::new(
                    format!("headers.{name}"),
                    "the value has characters not allowed in a header",
                ));
            }
        }
        if !(1..=10).contains(&self.retry.attempts) {
            return Err(KeyProblem::new("retry.attempts", "must be from 1 (no retries) to 10"));
        }
        if self.retry.base_delay > self.retry.max_delay {
            return Err(KeyProblem::new("retry.base_delay", "must be at most retry.max_delay"));
        }
        if self.breaker.failures > 0 && self.breaker.open_for < Duration::from_millis(100) {
            return Err(KeyProblem::new(
                "breaker.open_for",
                "must be at least 100ms (or set breaker.failures: 0 to turn the breaker off)",
            ));
        }
        if self.insecure_skip_verify && self.ca_file.is_some() {
            return Err(KeyProblem::new(
                "insecure_skip_verify",
                "cannot be combined with ca_file: with ca_file set, remove insecure_skip_verify",
            ));
        }
        let Some(auth) = &self.auth else { return Ok(()) };
        let chosen = [auth.basic.is_some(), auth.bearer.is_some(), auth.oauth2.is_some()];
        if chosen.iter().filter(|set| **set).count() != 1 {
            return Err(KeyProblem::new("auth", "set exactly one of basic, bearer or oauth2"));
        }
        if self.headers.keys().any(|name| name.eq_ignore_ascii_case("authorization")) {
            return Err(KeyProblem::new(
                "headers.Authorization",
                "legacy.auth sets the Authorization header: remove it from legacy.headers",
            ));
        }
        if let Some(basic) = &auth.basic {
            if basic.username.expose().contains(':') {
                return Err(KeyProblem::new(
                    "auth.basic.username",
                    "cannot contain ':' (HTTP Basic separates with it)",
                ));
            }
        }
        if let Some(oauth2) = &auth.oauth2 {
            if !matches!(oauth2.token_url.scheme(), "http" | "https") {
                return Err(KeyProblem::new("auth.oauth2.token_url", "must be an http:// or https:// URL"));
            }
            if oauth2.client_id.expose().is_empty() {
                return Err(KeyProblem::new("auth.oauth2.client_id", "is empty"));
            }
            let reserved = ["grant_type", "client_id", "client_secret", "scope", "audience"];
            if let Some(name) = oauth2.extra_params.keys().find(|k| reserved.contains(&k.as_str())) {
                return Err(KeyProblem::new(
                    format!("auth.oauth2.extra_params.{name}"),
                    "is set by the proxy or by its own key: remove it from extra_params",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::super::testing::{MINIMAL, vars};
    use super::*;

    #[test]
    fn reads_tls_and_credentials_of_the_legacy_app() {
        let text = MINIMAL.replace(
            "      headers:\n        X-Api-Key: \"${env.TEST_KEY}\"\n",
            r#"      ca_file: certs/ca.pem
      client_certificate: {cert: certs/proxy.pem, key: certs/proxy.key}
      auth:
        oauth2:
          token_url: https://login.example.com/oauth2/token
          client_id: scim-proxy
          client_secret: "${env.TEST_KEY}"
          scope: users
          extra_params: {resource: "api://hr"}
"#,
        );
        let config = Config::parse(&text, "proxy.yaml", &vars()).unwrap();
        let legacy = &config.apps[0].legacy;
        assert_eq!(legacy.ca_file.as_deref(), Some(Path::new("certs/ca.pem")));
        assert_eq!(legacy.client_certificate.as_ref().unwrap().key, Path::new("certs/proxy.key"));
        assert!(!legacy.insecure_skip_verify);
        let oauth2 = legacy.auth.as_ref().unwrap().oauth2.as_ref().unwrap();
        assert_eq!(oauth2.client_secret.expose(), "key");
        assert_eq!(oauth2.client_auth, ClientAuth::Basic);
        assert_eq!(oauth2.refresh_before, Duration::from_secs(60));
        assert!(!format!("{oauth2:?}").contains("key\""), "the secret is not printed");
    }

    #[test]
    fn refuses_contradictory_legacy_settings() {
        let with = |lines: &str| MINIMAL.replace("      headers:\n", &format!("{lines}      headers:\n"));
        let cases = [
            (
                with("      auth: {basic: {username: a, password: b}, bearer: {token: c}}\n"),
                "legacy.auth",
                "exactly one",
            ),
            (with("      auth: {}\n"), "legacy.auth", "exactly one"),
            (
                with("      auth: {bearer: {token: c}}\n").replace("X-Api-Key", "Authorization"),
                "legacy.headers.Authorization",
                "remove it",
            ),
            (
                with("      ca_file: ca.pem\n      insecure_skip_verify: true\n"),
                "legacy.insecure_skip_verify",
                "cannot be combined",
            ),
            (with("      auth: {basic: {username: \"a:b\", password: c}}\n"), "legacy.auth.basic.username", "':'"),
            (
                with(
                    "      auth: {oauth2: {token_url: \"https://t\", client_id: i, client_secret: s, extra_params: {scope: x}}}\n",
                ),
                "legacy.auth.oauth2.extra_params.scope",
                "remove it",
            ),
            (
                with("      auth: {oauth2: {token_url: \"https://t\", client_id: i, client_secret: s, secret: x}}\n"),
                "legacy.auth.oauth2",
                "unknown field `secret`",
            ),
            (
                with(
                    "      auth: {oauth2: {token_url: \"https://t\", client_id: i, client_secret: s, client_auth: jwt}}\n",
                ),
                "legacy.auth.oauth2.client_auth",
                "unknown variant `jwt`",
            ),
            (with("      retry: {attempts: 0}\n"), "legacy.retry.attempts", "from 1"),
            (with("      retry: {base_delay: 2s, max_delay: 1s}\n"), "legacy.retry.base_delay", "at most"),
            (with("      retry: {tries: 2}\n"), "legacy.retry", "unknown field `tries`"),
            (with("      breaker: {failures: 3, open_for: 0s}\n"), "legacy.breaker.open_for", "at least 100ms"),
        ];
        for (text, key, detail) in cases {
            let err = Config::parse(&text, "proxy.yaml", &vars()).unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains(detail), "{err} should say {detail}");
        }
    }

    #[test]
    fn retries_and_the_breaker_have_defaults_and_can_be_turned_off() {
        let config = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        let legacy = &config.apps[0].legacy;
        assert_eq!((legacy.retry.attempts, legacy.retry.base_delay), (3, Duration::from_millis(50)));
        assert_eq!((legacy.breaker.failures, legacy.breaker.open_for), (5, Duration::from_secs(10)));
        let off = MINIMAL.replace(
            "      headers:\n",
            "      retry: {attempts: 1}\n      breaker: {failures: 0, open_for: 0s}\n      headers:\n",
        );
        let config = Config::parse(&off, "proxy.yaml", &vars()).unwrap();
        assert_eq!((config.apps[0].legacy.retry.attempts, config.apps[0].legacy.breaker.failures), (1, 0));
    }
}
