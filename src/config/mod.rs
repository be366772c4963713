//! `proxy.yaml` to typed, validated configuration: read, expand references, deserialize, validate.
//!
//! This file holds the whole file's [`Config`], its loading and its error; each section's
//! structs, defaults and checks sit in the module named after it. A section whose every key
//! may be left out takes its `Default` (`#[serde(default)]` on the struct); a section with
//! required keys states the default of each optional one at the key (`secs::<10>`).
//!
//! May import: `scim` only.

mod app;
mod auth;
mod duration;
mod legacy;
mod observe;
mod secret;
mod server;
pub(crate) mod subject;
#[cfg(test)]
mod testing;
mod validate;
mod variables;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub(crate) use app::AttributeOverride;
pub use app::{AppConfig, CacheConfig, ListConfig, SchemaConfig, UserDelete};
pub(crate) use auth::{BasicCredential, ClientCertificates, InboundAuth, JwtConfig};
pub(crate) use duration::written;
pub use duration::{DurationError, parse_duration};
pub(crate) use legacy::{BreakerConfig, ClientAuth, RetryConfig};
pub use legacy::{ClientCertificate, LegacyAuthConfig, LegacyConfig, OAuth2Config};
pub(crate) use observe::{DEFAULT_LATENCY_BUCKETS, MetricsConfig, TracesConfig};
pub use observe::{LogConfig, LogFormat};
pub(crate) use secret::{Secret, weak_secret};
pub(crate) use server::MAX_RECENT_REQUESTS;
pub use server::{AdminConfig, ScriptConfig, ServerConfig, TlsConfig};
pub use variables::Variables;

/// Anything wrong with the configuration, naming the file, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is in the message, not the error's source: shown once wherever it is printed.
    #[error("{file}: cannot read ({error})")]
    Read {
        /// The configuration file.
        file: String,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// The file is not YAML at all.
    #[error("{file}: not valid YAML: {detail}")]
    Yaml {
        /// The configuration file.
        file: String,
        /// The YAML parser's message, with its line and column.
        detail: String,
    },
    /// One key is missing, unknown or wrong.
    #[error("{file}: {key}: {detail}")]
    Key {
        /// The configuration file.
        file: String,
        /// The key's path from the top of the file, e.g. `apps[0].legacy.timeout`.
        key: String,
        /// What is wrong and the fix.
        detail: String,
    },
}

/// One key that is wrong and how to fix it, as expansion, deserialization and validation find
/// it, before the file is named: [`Config::parse`] makes it a [`ConfigError::Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {detail}")]
pub(crate) struct KeyProblem {
    /// The key's path from the top of the file, e.g. `apps[0].legacy.timeout`.
    pub key: String,
    /// What is wrong and the fix.
    pub detail: String,
}

impl KeyProblem {
    fn new(key: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { key: key.into(), detail: detail.into() }
    }

    /// The same problem found by a section's own check: its key put below the section's.
    fn under(self, section: &str) -> Self {
        Self { key: format!("{section}.{}", self.key), ..self }
    }

    /// The error a load reports: the only place a problem becomes a [`ConfigError`].
    fn in_file(self, file: &str) -> ConfigError {
        ConfigError::Key { file: file.to_owned(), key: self.key, detail: self.detail }
    }
}

impl From<serde_path_to_error::Error<serde_yaml_ng::Error>> for KeyProblem {
    fn from(error: serde_path_to_error::Error<serde_yaml_ng::Error>) -> Self {
        let key = error.path().to_string();
        let key = if key == "." { "(top level)".into() } else { key };
        Self::new(key, error.into_inner().to_string())
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the SCIM listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the admin listener (`/healthz`, `/readyz`).
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// What the admin listener shows beyond health and metrics, and to whom.
    #[serde(default)]
    pub(crate) admin: AdminConfig,
    /// Logging format and level.
    #[serde(default)]
    pub log: LogConfig,
    /// Limits and timeouts of the SCIM listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Bounds of every app's mapping script, checked when it is compiled.
    #[serde(default)]
    pub script: ScriptConfig,
    /// TLS on the SCIM listener; absent serves plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// What `/metrics` shows.
    #[serde(default)]
    pub(crate) metrics: MetricsConfig,
    /// OpenTelemetry traces of requests; off unless `traces.otlp_endpoint` is set.
    #[serde(default)]
    pub(crate) traces: TracesConfig,
    /// The applications served, each under its own base path.
    pub apps: Vec<AppConfig>,
    /// The file this configuration was read from; scripts are relative to its folder.
    #[serde(skip)]
    pub file: PathBuf,
    /// A hash of the configuration after `${…}` expansion: a reload compares it to tell a
    /// real change (a rotated secret file included) from none.
    #[serde(skip)]
    pub(crate) fingerprint: u64,
    /// The variable overrides it was read with, so that a reload reads it the same way.
    #[serde(skip)]
    pub(crate) overrides: BTreeMap<String, String>,
    /// Script texts built into the binary, by the `script` path an app names: compiled
    /// instead of reading that file (the configuration `demo` has built in).
    #[serde(skip)]
    pub(crate) built_in_scripts: BTreeMap<PathBuf, &'static str>,
}

impl Config {
    /// Reads, expands, deserializes and validates a configuration file.
    pub fn load(path: &Path, vars: &Variables) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { file: file.clone(), error })?;
        let mut config = Self::parse(&text, &file, vars)?;
        config.file = path.to_path_buf();
        Ok(config)
    }

    /// Parses configuration text; `file` only names it in errors.
    pub fn parse(text: &str, file: &str, vars: &Variables) -> Result<Self, ConfigError> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Yaml { file: file.to_owned(), detail: e.to_string() })?;
        Self::from_yaml(value, vars).map_err(|problem| problem.in_file(file))
    }

    /// Expands the references of the tree, then deserializes and validates it.
    fn from_yaml(mut value: serde_yaml_ng::Value, vars: &Variables) -> Result<Self, KeyProblem> {
        variables::expand(&mut value, vars)?;
        let expanded = serde_yaml_ng::to_string(&value).unwrap_or_default();
        let mut config: Config = serde_path_to_error::deserialize(value)?;
        config.validate()?;
        config.fingerprint = crate::scim::fingerprint(expanded.as_bytes());
        config.overrides = vars.overrides().clone();
        Ok(config)
    }

    /// The path of an app's script, resolved against the configuration file's folder.
    pub fn script_path(&self, app: &AppConfig) -> PathBuf {
        self.relative_path(&app.script)
    }

    /// A path of the configuration, resolved against the configuration file's folder.
    pub(crate) fn relative_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        self.file.parent().map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

// The defaults of optional keys in sections that also have required keys, which cannot take a
// whole-section `Default`: written at the key, e.g. `#[serde(default = "secs::<10>")]`.

/// `N` seconds.
fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

/// A count of `N`.
fn count<const N: usize>() -> usize {
    N
}

/// `N` KiB, in bytes.
fn kib<const N: usize>() -> usize {
    N * 1024
}

/// `N` MiB, in bytes.
fn mib<const N: usize>() -> usize {
    N * 1024 * 1024
}

#[cfg(test)]
mod tests {
    use super::testing::{MINIMAL, vars};
    use super::*;

    #[test]
    fn loads_with_defaults_and_expands_references() {
        let config = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        assert_eq!(config.listen, default_listen());
        let app = &config.apps[0];
        assert_eq!(app.auth.bearer_tokens[0].expose(), "a-token-of-sufficient-length");
        assert_eq!(app.legacy.base_url.as_str(), "http://127.0.0.1:7070/api/v1");
        assert_eq!(app.legacy.headers["X-Api-Key"].expose(), "key");
        assert_eq!(app.request_timeout, Duration::from_secs(30));
        assert_eq!(app.user_delete, UserDelete::Delete);
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_fix() {
        let cases: &[(&str, &str, &str)] = &[
            (&MINIMAL.replace("    script:", "    scirpt: x\n    script:"), "apps[0]", "unknown field `scirpt`"),
            (
                &MINIMAL.replace("${env.TEST_KEY}", "${env.MISSING_VAR_X}"),
                "apps[0].legacy.headers.X-Api-Key",
                "MISSING_VAR_X is not set",
            ),
            (&MINIMAL.replace("/scim/v2", "scim/v2"), "apps[0].base_path", "must start with '/'"),
            (
                &MINIMAL.replace("base_path: /scim/v2", "base_path: /scim/v2\n    request_timeout: 10 parsecs"),
                "apps[0].request_timeout",
                "unknown unit",
            ),
            (&format!("{MINIMAL}\nlisten: nowhere"), "listen", "invalid socket address"),
            (&format!("{MINIMAL}\nlog: {{level: \"scim_proxy=loud\"}}"), "log.level", "is not a valid filter"),
            // Every variable that is not set is named, not only the first.
            (
                &MINIMAL
                    .replace("${env.TEST_KEY}", "${env.MISSING_VAR_X}")
                    .replace("${env.TEST_TOKEN}", "${env.MISSING_VAR_Y}"),
                "apps[0].auth.bearer_tokens[0]",
                "MISSING_VAR_Y is not set: set it, or write ${env.MISSING_VAR_Y:-default}; also apps[0].legacy.headers.X-Api-Key: environment variable MISSING_VAR_X is not set",
            ),
        ];
        for (text, key, detail) in cases {
            let err = Config::parse(text, "proxy.yaml", &vars()).unwrap_err().to_string();
            assert!(err.starts_with("proxy.yaml: "), "{err}");
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains(detail), "{err} should say {detail}");
        }
    }

    /// The defaults of the configuration reference (README, *Configuration*), key by key.
    #[test]
    fn every_key_left_out_takes_the_default_the_readme_lists() {
        let config = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        assert_eq!(
            (config.listen.to_string(), config.admin_listen.to_string()),
            ("127.0.0.1:8080".into(), "127.0.0.1:9090".into())
        );
        let admin = &config.admin;
        assert_eq!((admin.token.is_none(), admin.max_connections, admin.recent_requests), (true, 64, 200));
        let log = &config.log;
        assert_eq!((log.format, log.level.as_str(), log.bodies), (LogFormat::Pretty, "info", false));
        let traces = &config.traces;
        assert_eq!(
            (traces.otlp_endpoint.is_none(), traces.service_name.as_str(), traces.sample_ratio),
            (true, "scim-proxy", 1.0)
        );
        assert_eq!((traces.headers.len(), traces.batch_size, traces.queue_size), (0, 512, 4096));
        assert_eq!((traces.export_interval, traces.export_timeout), (Duration::from_secs(5), Duration::from_secs(10)));
        let server = &config.server;
        assert_eq!(
            (server.max_body_bytes, server.max_json_nodes, server.max_concurrent_streams),
            (1_048_576, 100_000, 100)
        );
        assert_eq!(
            (server.header_read_timeout, server.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(60))
        );
        assert_eq!((server.shutdown_grace, server.shutdown_delay), (Duration::from_secs(20), Duration::ZERO));
        assert_eq!((server.max_connections, server.trust_forwarded_headers, server.reveal_faults), (1024, true, false));
        assert_eq!(
            (server.script_reload_interval, server.config_reload_interval, server.health_interval),
            (Duration::from_secs(2), Duration::from_secs(5), Duration::from_secs(10))
        );
        let script = &config.script;
        assert_eq!(
            (script.max_bytes, script.max_functions, script.compile_timeout),
            (262_144, 1000, Duration::from_secs(10))
        );
        assert_eq!(
            config.metrics.latency_buckets,
            [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
        );
        assert!(config.tls.is_none());
        let app = &config.apps[0];
        assert_eq!(
            (app.request_timeout, app.max_concurrent_scripts, app.max_queued_requests),
            (Duration::from_secs(30), 16, 256)
        );
        assert_eq!(
            (app.user_delete, app.cache.max_entries, app.cache.ttl),
            (UserDelete::Delete, 10_000, Duration::from_secs(3600))
        );
        assert_eq!((app.list.default_count, app.list.max_results, app.list.max_scan), (100, 1000, 50_000));
        assert_eq!((app.bulk.enabled, app.bulk.max_operations, app.bulk.max_payload_bytes), (true, 100, 1_048_576));
        assert!(app.record.is_none() && app.schema.user_attributes.is_none() && app.schema.enterprise_user.is_none());
        assert!(app.schema.overrides.is_empty() && app.schema.user_extensions.is_empty());
        let legacy = &app.legacy;
        assert_eq!((legacy.timeout, legacy.connect_timeout), (Duration::from_secs(10), Duration::from_secs(3)));
        assert_eq!((legacy.max_response_bytes, legacy.insecure_skip_verify), (16_777_216, false));
        assert!(legacy.ca_file.is_none() && legacy.client_certificate.is_none() && legacy.auth.is_none());
        assert_eq!(
            (legacy.retry.attempts, legacy.retry.base_delay, legacy.retry.max_delay),
            (3, Duration::from_millis(50), Duration::from_secs(1))
        );
        assert_eq!((legacy.breaker.failures, legacy.breaker.open_for), (5, Duration::from_secs(10)));
        // The optional keys of sections with required ones: tls, jwt and oauth2.
        let text = MINIMAL.replacen("apps:", "tls: {cert: c.pem, key: k.pem}\napps:", 1).replace(
            "      bearer_tokens:",
            "      jwt: {issuer: https://idp, audiences: [scim], algorithms: [RS256], jwks_url: \"https://idp.example/keys\"}\n      bearer_tokens:",
        );
        let text = text.replace(
            "      headers:\n        X-Api-Key: \"${env.TEST_KEY}\"\n",
            "      auth:\n        oauth2: {token_url: \"https://login.example/token\", client_id: id, client_secret: \"${env.TEST_KEY}\"}\n",
        );
        let config = Config::parse(&text, "proxy.yaml", &vars()).unwrap();
        let tls = config.tls.as_ref().unwrap();
        assert_eq!((tls.reload_interval, tls.client_ca.is_none()), (Duration::from_secs(10), true));
        let jwt = config.apps[0].auth.jwt.as_ref().unwrap();
        assert_eq!(
            (jwt.jwks_max_age, jwt.jwks_max_bytes, jwt.leeway),
            (Duration::from_secs(3600), 262_144, Duration::from_secs(60))
        );
        assert!(jwt.keys.is_empty() && jwt.shared_secret.is_none());
        let oauth2 = config.apps[0].legacy.auth.as_ref().and_then(|a| a.oauth2.as_ref()).unwrap();
        assert_eq!((oauth2.refresh_before, oauth2.max_response_bytes), (Duration::from_secs(60), 65_536));
        assert_eq!(
            (oauth2.client_auth, oauth2.scope.is_none(), oauth2.extra_params.is_empty()),
            (ClientAuth::Basic, true, true)
        );
    }
}
