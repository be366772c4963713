//! `proxy.yaml` to typed, validated configuration: read, expand references, deserialize, validate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Anything wrong with the configuration, naming the file, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is in the message, not the error's source: shown once wherever it is printed.
    #[error("{file}: cannot read ({error})")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: not valid YAML: {detail}")]
    Yaml { file: String, detail: String },
    #[error("{file}: {key}: {detail}")]
    Key { file: String, key: String, detail: String },
}

/// Where `${env.NAME}` references take their values from.
///
/// The process environment, with overrides that win over it (the `demo` command uses them
/// to point the configuration at the bundled API it has just started).
#[derive(Debug, Default)]
pub struct Variables {
    overrides: BTreeMap<String, String>,
    /// Offline use (`check`, `test`): what is not set gets a placeholder, named here.
    placeholders: Option<std::sync::Mutex<Vec<String>>>,
}

impl Variables {
    /// For commands that need no real secrets: an unset `${env.NAME}` (without a default) or an
    /// unreadable `${file.PATH}` becomes a placeholder instead of an error.
    ///
    /// The placeholder is a URL, `http://unset.invalid/NAME`, because it must pass for a
    /// token, a header value and a base URL alike.
    pub fn offline() -> Self {
        Self { overrides: BTreeMap::new(), placeholders: Some(std::sync::Mutex::default()) }
    }

    /// Variables with these overrides (those a configuration was first read with).
    pub fn with_overrides(overrides: BTreeMap<String, String>) -> Self {
        Self { overrides, placeholders: None }
    }

    /// The references that got placeholders, in the order met.
    pub fn unset(&self) -> Vec<String> {
        self.placeholders.as_ref().and_then(|p| p.lock().ok().map(|names| names.clone())).unwrap_or_default()
    }

    fn placeholder(&self, reference: &str) -> Option<String> {
        let names = self.placeholders.as_ref()?;
        if let Ok(mut names) = names.lock() {
            if !names.iter().any(|n| n == reference) {
                names.push(reference.to_owned());
            }
        }
        let tail: String = reference.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        Some(format!("http://unset.invalid/{tail}"))
    }

    /// Sets a value that wins over the environment variable of the same name.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.overrides.insert(name.into(), value.into());
    }

    fn get(&self, name: &str) -> Option<String> {
        self.overrides.get(name).cloned().or_else(|| std::env::var(name).ok())
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
    pub admin: AdminConfig,
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
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces of requests; off unless `traces.otlp_endpoint` is set.
    #[serde(default)]
    pub traces: TracesConfig,
    /// The applications served, each under its own base path.
    pub apps: Vec<AppConfig>,
    /// The file this configuration was read from; scripts are relative to its folder.
    #[serde(skip)]
    pub file: PathBuf,
    /// A hash of the configuration after `${…}` expansion: a reload compares it to tell a
    /// real change (a rotated secret file included) from none.
    #[serde(skip)]
    pub fingerprint: u64,
    /// The variable overrides it was read with, so that a reload reads it the same way.
    #[serde(skip)]
    pub overrides: BTreeMap<String, String>,
    /// Script texts built into the binary, by the `script` path an app names: compiled
    /// instead of reading that file (the configuration `demo` has built in).
    #[serde(skip)]
    pub built_in_scripts: BTreeMap<PathBuf, &'static str>,
}

/// The admin listener's `/requests`: the last requests of each app, for the people who run it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The token `/requests` answers to (as a bearer token, or as the password of HTTP Basic
    /// with any user name); unset or empty turns `/requests` off. `/healthz`, `/readyz` and
    /// `/metrics` never ask for it.
    #[serde(default)]
    pub token: Option<Secret>,
    /// How many of each app's latest requests `/requests` keeps; `0` keeps none.
    #[serde(default = "default_recent_requests")]
    pub recent_requests: usize,
    /// Connections the admin listener serves at once (1 to 4096). When it is full, the
    /// connection idle the longest is closed to make room, so probes are answered even then.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            recent_requests: default_recent_requests(),
            max_connections: default_admin_max_connections(),
        }
    }
}

impl AdminConfig {
    /// The token, when one is set (an empty one, as `${env.X:-}` gives, is none).
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref().filter(|t| !t.expose().is_empty())
    }

    /// Whether requests are kept for `/requests`: a token to show them with and room for some.
    pub fn keeps_requests(&self) -> bool {
        self.token().is_some() && self.recent_requests > 0
    }
}

/// The metrics of the admin listener's `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Upper bounds of the buckets of every latency histogram, in seconds, ascending (`+Inf`
    /// is always added). Read at start: a reload does not change them.
    #[serde(default = "default_latency_buckets")]
    pub latency_buckets: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { latency_buckets: default_latency_buckets() }
    }
}

fn default_latency_buckets() -> Vec<f64> {
    crate::metrics::DEFAULT_LATENCY_BUCKETS.to_vec()
}

/// How logs are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for a terminal, `json` for production log collection.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `scim_proxy=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Log each request's SCIM and legacy bodies, redacted (target `scim_proxy::bodies`).
    #[serde(default)]
    pub bodies: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::default(), level: default_log_level(), bodies: false }
    }
}

/// Traces of SCIM requests, sent to an OpenTelemetry collector as OTLP/HTTP with JSON bodies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://localhost:4318`: spans are POSTed to
    /// `<otlp_endpoint>/v1/traces`. Unset or empty (as `${env.NAME:-}` gives) turns traces off:
    /// no span is made and nothing is sent.
    #[serde(default, deserialize_with = "optional_url")]
    pub otlp_endpoint: Option<url::Url>,
    /// The `service.name` the spans are exported under.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of new traces recorded, from 0 to 1. A request that comes with a
    /// `traceparent` is recorded when its caller recorded it (the sampled flag), whatever this says.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Headers sent with every export, e.g. a hosted backend's API key by reference.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Most spans sent in one request to the collector (1 to 10000).
    #[serde(default = "default_trace_batch_size")]
    pub batch_size: usize,
    /// Most finished spans waiting to be sent (1 to 1000000); past it new spans are dropped
    /// (and counted in the log), so a slow collector never holds up a request.
    #[serde(default = "default_trace_queue_size")]
    pub queue_size: usize,
    /// How often the spans waiting are sent, when fewer than `batch_size` (100ms to 1m).
    #[serde(default = "default_trace_export_interval", deserialize_with = "duration")]
    pub export_interval: Duration,
    /// How long one request to the collector may take (100ms to 1m).
    #[serde(default = "default_trace_export_timeout", deserialize_with = "duration")]
    pub export_timeout: Duration,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            headers: BTreeMap::new(),
            batch_size: default_trace_batch_size(),
            queue_size: default_trace_queue_size(),
            export_interval: default_trace_export_interval(),
            export_timeout: default_trace_export_timeout(),
        }
    }
}

impl TracesConfig {
    /// Checks the settings of the exporter; the key returned is below `traces`.
    fn validate(&self) -> Result<(), (String, String)> {
        if let Some(endpoint) = &self.otlp_endpoint {
            if !matches!(endpoint.scheme(), "http" | "https") {
                return Err((
                    "otlp_endpoint".into(),
                    "must be an http:// or https:// URL, e.g. http://localhost:4318".into(),
                ));
            }
            if endpoint.query().is_some() || endpoint.fragment().is_some() {
                return Err(("otlp_endpoint".into(), "must not have a query or fragment".into()));
            }
            if holds_credentials(endpoint) {
                return Err((
                    "otlp_endpoint".into(),
                    "must not hold credentials (user:password@): put them in traces.headers".into(),
                ));
            }
        }
        if self.service_name.trim().is_empty() || self.service_name.len() > 255 {
            return Err(("service_name".into(), "must be 1 to 255 characters".into()));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(("sample_ratio".into(), "must be from 0 (none) to 1 (every new trace)".into()));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((format!("headers.{name}"), "is not a valid HTTP header name".into()));
            }
            if http::HeaderValue::from_str(value.expose()).is_err() {
                return Err((format!("headers.{name}"), "the value has characters not allowed in a header".into()));
            }
        }
        check_size("batch_size", self.batch_size, (1, 10_000))?;
        check_size("queue_size", self.queue_size, (1, 1_000_000))?;
        check_duration("export_interval", self.export_interval, (100, 60_000))?;
        check_duration("export_timeout", self.export_timeout, (100, 60_000))?;
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Limits of the SCIM listener, common to all apps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body accepted; larger bodies are answered 413 before parsing. Also the
    /// request body bytes one connection may hold at once, over all its h2 streams.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most JSON values (objects, arrays, strings, numbers, booleans, nulls) one request body
    /// may hold (1000 to 10,000,000); more is answered 413 while parsing. Each costs 42 to 340
    /// bytes once parsed, whatever its text.
    #[serde(default = "default_max_json_nodes")]
    pub max_json_nodes: usize,
    /// Time a client has to send a complete request head: a new connection from its TCP
    /// accept (TLS handshake included), an idle one from its first byte. Both listeners.
    #[serde(default = "default_header_read_timeout", deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open for the next request
    /// (HTTP/1.1 keep-alive and h2 alike; 1s to 1h). Both listeners.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// h2 requests served at once on one connection (1 to 1000); more streams are refused.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight requests before closing them.
    #[serde(default = "default_shutdown_grace", deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Connections served at once by the SCIM listener; past it, new ones wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// On shutdown, how long `/readyz` fails while requests are still served, so that load
    /// balancers (a Kubernetes Service) stop sending new ones before the listener closes.
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_delay: Duration,
    /// Honour `X-Forwarded-Proto` / `X-Forwarded-Host` when building `meta.location`.
    #[serde(default = "default_true")]
    pub trust_forwarded_headers: bool,
    /// How often scripts are checked for changes and reloaded; `0s` turns reloading off.
    #[serde(default = "default_script_reload", deserialize_with = "duration")]
    pub script_reload_interval: Duration,
    /// How often each app's `health()` (when its script defines one) is called for `/readyz`.
    #[serde(default = "default_health_interval", deserialize_with = "duration")]
    pub health_interval: Duration,
    /// How often `proxy.yaml` (and the secret files it references) is checked for changes
    /// and reloaded; `0s` turns it off (SIGHUP still reloads).
    #[serde(default = "default_config_reload", deserialize_with = "duration")]
    pub config_reload_interval: Duration,
    /// Put the specifics of script and internal faults in the answer's detail instead of the
    /// generic text. Not a configuration key: only `scim-proxy test` sets it, for its report.
    #[serde(skip)]
    pub reveal_faults: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_json_nodes: default_max_json_nodes(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_concurrent_streams: default_max_concurrent_streams(),
            shutdown_grace: default_shutdown_grace(),
            shutdown_delay: Duration::ZERO,
            max_connections: default_max_connections(),
            trust_forwarded_headers: true,
            script_reload_interval: default_script_reload(),
            health_interval: default_health_interval(),
            config_reload_interval: default_config_reload(),
            reveal_faults: false,
        }
    }
}

/// Bounds of a mapping script's source: what the proxy compiles at all, and for how long.
///
/// Rhai's compile time grows with the square of a script's statements and of its functions
/// (`docs/scripting.md`, *Limits*), so these are what keeps a huge file from holding a core.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// Largest script file, in bytes (1024 to 16 MiB); a larger one is refused before it is read.
    #[serde(default = "default_script_max_bytes")]
    pub max_bytes: usize,
    /// Most functions (closures included) one script may define (1 to 100,000); the parser
    /// stops at the first one over.
    #[serde(default = "default_script_max_functions")]
    pub max_functions: usize,
    /// Longest a script's compile may take (100ms to 10m); past it the script is refused (at a
    /// reload, the previous one keeps serving).
    #[serde(default = "default_script_compile_timeout", deserialize_with = "duration")]
    pub compile_timeout: Duration,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_script_max_bytes(),
            max_functions: default_script_max_functions(),
            compile_timeout: default_script_compile_timeout(),
        }
    }
}

/// TLS of the SCIM listener: the certificate it presents and the client certificates it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first; relative to the configuration file.
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// How often `cert` and `key` are checked for a new pair; `0s` turns reloading off.
    #[serde(default = "default_tls_reload", deserialize_with = "duration")]
    pub reload_interval: Duration,
    /// PEM bundle of the CAs whose client certificates are accepted; when set, clients are asked
    /// for a certificate (optional) and apps may authenticate by it.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// One application: a SCIM endpoint under `base_path`, mapped by `script` onto `legacy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Short name, used in logs and metrics.
    pub name: String,
    /// Path prefix of the SCIM endpoint, e.g. `/scim/v2`.
    pub base_path: String,
    /// The Rhai mapping script, relative to the configuration file.
    pub script: PathBuf,
    /// How identity providers authenticate to this app.
    pub auth: InboundAuth,
    /// The in-house API behind this app.
    pub legacy: LegacyConfig,
    /// Deadline for one whole SCIM request, script and legacy calls included.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Mapping scripts of this app running at the same time; further requests wait.
    #[serde(default = "default_max_concurrent_scripts")]
    pub max_concurrent_scripts: usize,
    /// Requests of this app that may wait for a script slot; past them, `503` at once.
    #[serde(default = "default_max_queued_requests")]
    pub max_queued_requests: usize,
    /// The ID-mapping cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Listing and filtering limits.
    #[serde(default)]
    pub list: ListConfig,
    /// What happens on `DELETE /Users/{id}`.
    #[serde(default)]
    pub user_delete: UserDelete,
    /// Which attributes the legacy app can hold, published in `/Schemas`.
    #[serde(default)]
    pub schema: SchemaConfig,
    /// Limits of `POST /Bulk`.
    #[serde(default)]
    pub bulk: BulkConfig,
    /// Write every request of this app, with its legacy calls, as a test file (redacted).
    #[serde(default)]
    pub record: Option<RecordConfig>,
}

/// Recording of exchanges into mapping test files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// The folder the files go to, relative to the configuration file; created if missing.
    pub dir: PathBuf,
    /// More names (JSON keys, SCIM attributes) whose values are written as `[redacted]`.
    #[serde(default)]
    pub redact: Vec<String>,
}

/// Limits of `POST /Bulk` (RFC 7644 §3.7), published in `/ServiceProviderConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// Whether `/Bulk` is offered at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Most operations in one request; more is `413`.
    #[serde(default = "default_bulk_operations")]
    pub max_operations: usize,
    /// Largest bulk request body in bytes (at most `server.max_body_bytes`); larger is `413`.
    #[serde(default = "default_max_body_bytes")]
    pub max_payload_bytes: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        Self { enabled: true, max_operations: default_bulk_operations(), max_payload_bytes: default_max_body_bytes() }
    }
}

/// The attributes an app supports; requests are validated and `/Schemas` published from this.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// Core User attributes the app supports (`name` keeps all sub-attributes, `name.givenName`
    /// just that one); absent means all of RFC 7643 §4.1.
    #[serde(default)]
    pub user_attributes: Option<Vec<String>>,
    /// Enterprise User extension attributes the app supports; absent means the extension is
    /// not published.
    #[serde(default)]
    pub enterprise_user: Option<Vec<String>>,
    /// Core Group attributes the app supports; absent means all of RFC 7643 §4.2. Groups are
    /// served when the script defines `get_group`.
    #[serde(default)]
    pub group_attributes: Option<Vec<String>>,
    /// Custom extension schemas of the User resource type.
    #[serde(default)]
    pub user_extensions: Vec<ExtensionConfig>,
    /// Characteristics this app changes for some attributes, by path (`emails.type`,
    /// `urn:…:enterprise:2.0:User:department`): what the app's data really allows.
    #[serde(default)]
    pub overrides: BTreeMap<String, AttributeOverride>,
    /// The same for Group attributes (`members.display`).
    #[serde(default)]
    pub group_overrides: BTreeMap<String, AttributeOverride>,
    /// What happens to an attribute a request names that this app does not publish:
    /// `ignore` (dropped, named in the audit record, a metric and a warning) or `refuse`
    /// (`400`).
    #[serde(default)]
    pub unsupported_attributes: crate::scim::unpublished::UnsupportedAttributes,
}

/// Characteristics of one attribute that an app sets differently from RFC 7643.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeOverride {
    /// `true` when the app cannot hold the resource without it.
    pub required: Option<bool>,
    /// `readOnly` for values the app assigns itself, `immutable` for values set once.
    pub mutability: Option<crate::scim::schema::Mutability>,
    /// When the attribute is returned.
    pub returned: Option<crate::scim::schema::Returned>,
    /// Whether values compare case-sensitively.
    pub case_exact: Option<bool>,
    /// The values the app knows, published as `canonicalValues`.
    pub canonical_values: Option<Vec<String>>,
    /// The value a create that leaves this (top-level) attribute out gets, as the app itself
    /// would assign it: with one, a `required` attribute may be left out of a `POST`.
    pub default: Option<serde_json::Value>,
}

/// A custom schema extension, written as `/Schemas` publishes one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    /// Whether every resource must carry the extension.
    #[serde(default)]
    pub required: bool,
    /// The schema: `id` (a URN), `name`, `description`, `attributes` with their characteristics.
    pub schema: serde_json::Value,
}

/// Inbound authentication of an app: a request is accepted when any configured method accepts it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundAuth {
    /// Accepted bearer tokens; several allow rotation without downtime.
    #[serde(default)]
    pub bearer_tokens: Vec<Secret>,
    /// Files holding one bearer token each (e.g. a mounted Kubernetes Secret), re-read when
    /// they change; relative to the configuration file.
    #[serde(default)]
    pub bearer_token_files: Vec<PathBuf>,
    /// HTTP Basic credentials.
    #[serde(default)]
    pub basic: Vec<BasicCredential>,
    /// Signed JWT bearer tokens (e.g. from Microsoft Entra ID).
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Client certificates (verified against `tls.client_ca`) that authenticate without a token.
    #[serde(default)]
    pub client_certificates: Option<ClientCertificates>,
}

/// One HTTP Basic user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    /// The user name, as the identity provider sends it.
    pub username: String,
    /// Its password (16 characters or more), by reference: `${env.NAME}` or `${file.PATH}`.
    pub password: Secret,
}

/// Validation of JWT bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
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
    #[serde(default = "default_jwks_max_age", deserialize_with = "duration")]
    pub jwks_max_age: Duration,
    /// The largest JWKS document read from `jwks_url`; a larger one is a failed fetch (the
    /// keys held stay in use).
    #[serde(default = "default_jwks_max_bytes")]
    pub jwks_max_bytes: usize,
    /// The secret of `HS256`/`HS384`/`HS512` tokens (32 bytes or more).
    #[serde(default)]
    pub shared_secret: Option<Secret>,
    /// Clock difference tolerated on `exp` and `nbf`.
    #[serde(default = "default_jwt_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
}

/// Where a JWT verification key comes from: exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`, RSA, EC or Ed25519).
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
    /// A JWKS document (`{"keys": [...]}`) on disk.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
}

/// Client certificates accepted as credentials: any entry that matches accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificates {
    /// Subjects in RFC 4514 text, read at load (malformed text stops the start). `CN=name`
    /// alone accepts a subject with exactly one common name, `name`, whatever else it holds; any
    /// other entry (`CN=a,O=b`, last RDN first as RFC 4514 writes it) accepts only that subject:
    /// the same RDNs in the same order, values compared exactly. A comma or plus inside a value
    /// is escaped (`CN=Acme\, Inc.`); `#hex` values are not supported.
    #[serde(default)]
    pub subjects: Vec<crate::auth::subject::SubjectName>,
    /// DNS names of the subject alternative name extension, compared as RFC 6125 says: without
    /// regard to case, a final dot ignored, internationalised names as A-labels (`xn--…`). No
    /// wildcards: `*.example.com` is refused here, and a certificate's `*.example.com` matches
    /// no configured name.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// URIs of the subject alternative name extension (e.g. SPIFFE ids), compared character for
    /// character.
    #[serde(default)]
    pub uris: Vec<String>,
}

/// Where and how the proxy calls the in-house API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyConfig {
    /// Base URL; scripts call paths relative to it and can reach nothing else.
    pub base_url: url::Url,
    /// Headers sent with every legacy call, e.g. an API key.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Timeout of one legacy call.
    #[serde(default = "default_legacy_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Timeout to establish a connection to the legacy app.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Largest legacy response body accepted.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
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
    pub insecure_skip_verify: bool,
    /// Credentials sent with every legacy call, in the `Authorization` header.
    #[serde(default)]
    pub auth: Option<LegacyAuthConfig>,
    /// When a failed legacy call is tried again.
    #[serde(default)]
    pub retry: RetryConfig,
    /// When the app's legacy calls fail fast for a while, after consecutive transient failures.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// Retries of legacy calls that are safe to repeat: capped exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries of one call in all, the first included; `1` turns retries off.
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// The longest wait before the first retry; each further retry may wait twice as long.
    #[serde(default = "default_retry_base_delay", deserialize_with = "duration")]
    pub base_delay: Duration,
    /// The longest wait before any retry (a `Retry-After` of the legacy app may ask for more,
    /// within the request's deadline).
    #[serde(default = "default_retry_max_delay", deserialize_with = "duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: default_retry_attempts(),
            base_delay: default_retry_base_delay(),
            max_delay: default_retry_max_delay(),
        }
    }
}

/// The circuit breaker of an app's legacy calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive transient failures (no connection, reset, timeout, 502/503/504/429) that
    /// open the breaker; `0` turns it off.
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    /// How long calls fail fast once it is open, before one probe call is let through.
    #[serde(default = "default_breaker_open_for", deserialize_with = "duration")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: default_breaker_failures(), open_for: default_breaker_open_for() }
    }
}

/// A client certificate for mutual TLS, as two PEM files relative to the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// The certificate, optionally followed by its intermediate CA certificates.
    pub cert: PathBuf,
    /// The private key of the certificate (PKCS#8, PKCS#1 or SEC1, not encrypted).
    pub key: PathBuf,
}

/// How the proxy authenticates to the legacy app: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyAuthConfig {
    /// HTTP Basic authentication with fixed credentials.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// A fixed bearer token.
    #[serde(default)]
    pub bearer: Option<BearerAuth>,
    /// Tokens fetched from an OAuth2 token endpoint (client credentials grant).
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
}

/// HTTP Basic credentials for the legacy app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name; it cannot contain ':'.
    pub username: Secret,
    /// The password.
    pub password: Secret,
}

/// A fixed bearer token for the legacy app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// The token, sent as `Authorization: Bearer <token>`.
    pub token: Secret,
}

/// OAuth2 client credentials grant (RFC 6749 §4.4) for the legacy app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token endpoint, called with the app's TLS settings.
    pub token_url: url::Url,
    /// The client identifier.
    pub client_id: Secret,
    /// The client secret.
    pub client_secret: Secret,
    /// How the client authenticates to the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The `scope` parameter, when the token endpoint needs one.
    #[serde(default)]
    pub scope: Option<String>,
    /// The `audience` parameter, when the token endpoint needs one.
    #[serde(default)]
    pub audience: Option<String>,
    /// More form parameters of the token request.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// How long before its expiry a token is replaced (at most half its lifetime).
    #[serde(default = "default_refresh_before", deserialize_with = "duration")]
    pub refresh_before: Duration,
    /// The largest token endpoint answer read; a larger one is a failed token request.
    #[serde(default = "default_token_max_response_bytes")]
    pub max_response_bytes: usize,
}

/// Where the client credentials go in a token request (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic authentication with the client id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

impl LegacyConfig {
    /// Checks the TLS and credential settings of one app; the key returned is below `legacy`.
    fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=10).contains(&self.retry.attempts) {
            return Err(("retry.attempts".into(), "must be from 1 (no retries) to 10".into()));
        }
        if self.retry.base_delay > self.retry.max_delay {
            return Err(("retry.base_delay".into(), "must be at most retry.max_delay".into()));
        }
        if self.breaker.failures > 0 && self.breaker.open_for < Duration::from_millis(100) {
            return Err((
                "breaker.open_for".into(),
                "must be at least 100ms (or set breaker.failures: 0 to turn the breaker off)".into(),
            ));
        }
        if self.insecure_skip_verify && self.ca_file.is_some() {
            return Err((
                "insecure_skip_verify".into(),
                "cannot be combined with ca_file: with ca_file set, remove insecure_skip_verify".into(),
            ));
        }
        let Some(auth) = &self.auth else { return Ok(()) };
        let chosen = [auth.basic.is_some(), auth.bearer.is_some(), auth.oauth2.is_some()];
        if chosen.iter().filter(|set| **set).count() != 1 {
            return Err(("auth".into(), "set exactly one of basic, bearer or oauth2".into()));
        }
        if self.headers.keys().any(|name| name.eq_ignore_ascii_case("authorization")) {
            return Err((
                "headers.Authorization".into(),
                "legacy.auth sets the Authorization header: remove it from legacy.headers".into(),
            ));
        }
        if let Some(basic) = &auth.basic {
            if basic.username.expose().contains(':') {
                return Err(("auth.basic.username".into(), "cannot contain ':' (HTTP Basic separates with it)".into()));
            }
        }
        if let Some(oauth2) = &auth.oauth2 {
            if !matches!(oauth2.token_url.scheme(), "http" | "https") {
                return Err(("auth.oauth2.token_url".into(), "must be an http:// or https:// URL".into()));
            }
            if oauth2.client_id.expose().is_empty() {
                return Err(("auth.oauth2.client_id".into(), "is empty".into()));
            }
            let reserved = ["grant_type", "client_id", "client_secret", "scope", "audience"];
            if let Some(name) = oauth2.extra_params.keys().find(|k| reserved.contains(&k.as_str())) {
                return Err((
                    format!("auth.oauth2.extra_params.{name}"),
                    "is set by the proxy or by its own key: remove it from extra_params".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Sizes and lifetime of the ID-mapping cache.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Entries kept per resource type and per index.
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
    /// Time after which an entry is dropped.
    #[serde(default = "default_cache_ttl", deserialize_with = "duration")]
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { max_entries: default_cache_entries(), ttl: default_cache_ttl() }
    }
}

/// Limits of listing and filtering.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// Page size when the IdP gives no `count`.
    #[serde(default = "default_page_size")]
    pub default_count: usize,
    /// Largest page returned (`filter.maxResults` in `/ServiceProviderConfig`).
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// Most resources the proxy filters and sorts in memory; past it a list is `400 tooMany`.
    #[serde(default = "default_max_scan")]
    pub max_scan: usize,
}

impl Default for ListConfig {
    fn default() -> Self {
        Self { default_count: default_page_size(), max_results: default_max_results(), max_scan: default_max_scan() }
    }
}

/// Behaviour of `DELETE /Users/{id}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDelete {
    /// Call the script's `delete_user`.
    #[default]
    Delete,
    /// Set `active: false` through `replace_user`; the user stays readable.
    Deactivate,
}

/// Fewest characters of a secret a client presents (bearer token, Basic password, admin token).
pub const MIN_SECRET_CHARS: usize = 16;

/// What is wrong with a secret a client must present, wherever it comes from (inline, an
/// environment variable, a file): shorter than [`MIN_SECRET_CHARS`], or a placeholder left
/// from an example (`REPLACE_ME`, `changeme`), which anyone who read the example knows.
pub fn weak_secret(value: &str) -> Option<String> {
    let folded: String = value.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    if ["replaceme", "changeme"].iter().any(|placeholder| folded.contains(placeholder)) {
        return Some("is a placeholder from an example: set a long random secret".to_owned());
    }
    (value.chars().count() < MIN_SECRET_CHARS)
        .then(|| format!("is shorter than {MIN_SECRET_CHARS} characters: use a long random secret"))
}

/// A secret value, already expanded from `${env.NAME}` or `${file.PATH}`; never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must not be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the places that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
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
        let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Yaml { file: file.to_owned(), detail: e.to_string() })?;
        let mut problems = Vec::new();
        expand(&mut value, "", vars, &mut problems);
        if let Some((key, detail)) = reported(problems) {
            return Err(ConfigError::Key { file: file.to_owned(), key, detail });
        }
        let expanded = serde_yaml_ng::to_string(&value).unwrap_or_default();
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                file: file.to_owned(),
                key: if key == "." { "(top level)".into() } else { key },
                detail: e.into_inner().to_string(),
            }
        })?;
        config.validate().map_err(|(key, detail)| ConfigError::Key { file: file.to_owned(), key, detail })?;
        config.fingerprint = crate::scim::fingerprint(expanded.as_bytes());
        config.overrides = vars.overrides.clone();
        Ok(config)
    }

    /// Checks the relations between fields that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), (String, String)> {
        // Checked here, not only when the logger is installed, so that `check` refuses what
        // `run` would.
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(("log.level".into(), format!("{:?} is not a valid filter: {error}", self.log.level)));
        }
        if self.apps.is_empty() {
            return Err(("apps".into(), "no app is configured: add at least one entry under apps".into()));
        }
        self.validate_ranges()?;
        self.traces.validate().map_err(|(field, detail)| (format!("traces.{field}"), detail))?;
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err((
                "admin_listen".into(),
                "must differ from listen: give the admin listener its own port".into(),
            ));
        }
        if let Some(problem) = self.admin.token().and_then(|t| weak_secret(t.expose())) {
            return Err(("admin.token".into(), format!("{problem}, e.g. token: \"${{env.SCIM_ADMIN_TOKEN}}\"")));
        }
        if self.admin.recent_requests > MAX_RECENT_REQUESTS {
            return Err((
                "admin.recent_requests".into(),
                format!("must be at most {MAX_RECENT_REQUESTS}: each kept request holds up to 16 KiB"),
            ));
        }
        validate_buckets(&self.metrics.latency_buckets)
            .map_err(|detail| ("metrics.latency_buckets".to_owned(), detail))?;
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(("server.max_connections".into(), "must be between 1 and 1000000".into()));
        }
        if !(1..=4096).contains(&self.admin.max_connections) {
            return Err(("admin.max_connections".into(), "must be between 1 and 4096".into()));
        }
        if !(1024..=MAX_BODY_BYTES).contains(&self.server.max_body_bytes) {
            return Err((
                "server.max_body_bytes".into(),
                format!("must be between 1024 and {MAX_BODY_BYTES} bytes (1 GiB)"),
            ));
        }
        if !(1000..=10_000_000).contains(&self.server.max_json_nodes) {
            return Err(("server.max_json_nodes".into(), "must be between 1000 and 10000000".into()));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.server.idle_timeout) {
            return Err(("server.idle_timeout".into(), "must be between 1s and 1h".into()));
        }
        if !(1..=1000).contains(&self.server.max_concurrent_streams) {
            return Err(("server.max_concurrent_streams".into(), "must be between 1 and 1000".into()));
        }
        if let Some(tls) = &self.tls {
            if tls.reload_interval.as_millis() > 0 && tls.reload_interval < Duration::from_millis(100) {
                return Err((
                    "tls.reload_interval".into(),
                    "must be at least 100ms (or 0s to turn reloading off)".into(),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut paths: Vec<(usize, &str)> = Vec::new();
        for (i, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            if app.name.is_empty() || !app.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err((key("name"), "use letters, digits, '-' and '_' only".into()));
            }
            if !names.insert(app.name.as_str()) {
                return Err((key("name"), format!("{:?} is used by another app: app names must be unique", app.name)));
            }
            let bp = app.base_path.as_str();
            if !bp.starts_with('/')
                || (bp.len() > 1 && bp.ends_with('/'))
                || bp.contains("//")
                || bp.contains(['?', '#', ' '])
            {
                return Err((key("base_path"), format!("{bp:?} must start with '/', not end with '/', e.g. /scim/v2")));
            }
            if let Some((j, _)) = paths.iter().find(|(_, p)| *p == bp) {
                return Err((
                    key("base_path"),
                    format!("{bp:?} is also the base path of apps[{j}]: each app needs its own"),
                ));
            }
            paths.push((i, bp));
            validate_auth(&app.auth, self.tls.as_ref()).map_err(|(field, detail)| (key(&field), detail))?;
            if !matches!(app.legacy.base_url.scheme(), "http" | "https") {
                return Err((key("legacy.base_url"), "must be an http:// or https:// URL".into()));
            }
            if app.legacy.base_url.query().is_some() || app.legacy.base_url.fragment().is_some() {
                return Err((key("legacy.base_url"), "must not have a query or fragment".into()));
            }
            for name in app.legacy.headers.keys() {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err((key(&format!("legacy.headers.{name}")), "is not a valid HTTP header name".into()));
                }
            }
            for (name, value) in &app.legacy.headers {
                if http::HeaderValue::from_str(value.expose()).is_err() {
                    return Err((
                        key(&format!("legacy.headers.{name}")),
                        "the value has characters not allowed in a header".into(),
                    ));
                }
            }
            app.legacy.validate().map_err(|(field, detail)| (key(&format!("legacy.{field}")), detail))?;
            if app.list.max_results == 0 || app.list.default_count > app.list.max_results {
                return Err((
                    key("list.default_count"),
                    "must be at most list.max_results, which must be at least 1".into(),
                ));
            }
            if app.list.max_scan < app.list.max_results {
                return Err((key("list.max_scan"), "must be at least list.max_results".into()));
            }
        }
        Ok(())
    }

    /// Checks every duration and size against its range, so that no value
    /// can stop every request (a zero timeout), overflow a deadline (`Instant + Duration`) or
    /// make a library panic (moka's builder past 1000 years, a semaphore past its permits).
    fn validate_ranges(&self) -> Result<(), (String, String)> {
        let server = &self.server;
        check_duration("server.header_read_timeout", server.header_read_timeout, (100, HOUR))?;
        check_duration("server.shutdown_grace", server.shutdown_grace, (0, HOUR))?;
        check_duration("server.shutdown_delay", server.shutdown_delay, (0, HOUR))?;
        check_interval("server.script_reload_interval", server.script_reload_interval)?;
        check_interval("server.health_interval", server.health_interval)?;
        check_interval("server.config_reload_interval", server.config_reload_interval)?;
        check_size("script.max_bytes", self.script.max_bytes, (1024, MAX_SCRIPT_BYTES))?;
        check_size("script.max_functions", self.script.max_functions, (1, 100_000))?;
        check_duration("script.compile_timeout", self.script.compile_timeout, (100, 10 * 60_000))?;
        if let Some(tls) = &self.tls {
            check_interval("tls.reload_interval", tls.reload_interval)?;
        }
        for (i, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            let duration = |field: &str, value: Duration, range| check_duration(&key(field), value, range);
            let size = |field: &str, value: usize, range| check_size(&key(field), value, range);
            // The script threads' stack is sized for the nesting a script reaches within 1 h.
            duration("request_timeout", app.request_timeout, (100, HOUR))?;
            duration("legacy.timeout", app.legacy.timeout, (10, HOUR))?;
            duration("legacy.connect_timeout", app.legacy.connect_timeout, (10, HOUR))?;
            duration("legacy.retry.base_delay", app.legacy.retry.base_delay, (0, HOUR))?;
            duration("legacy.retry.max_delay", app.legacy.retry.max_delay, (0, HOUR))?;
            duration("legacy.breaker.open_for", app.legacy.breaker.open_for, (0, DAY))?;
            // moka's builder panics past 1000 years; a day of entries not seen again is plenty.
            duration("cache.ttl", app.cache.ttl, (1000, 365 * DAY))?;
            let entries = usize::try_from(app.cache.max_entries).unwrap_or(usize::MAX);
            size("cache.max_entries", entries, (1, 100_000_000))?;
            size("legacy.max_response_bytes", app.legacy.max_response_bytes, (1024, 1 << 30))?;
            // Each script call running holds a script thread, which reserves its stack.
            size("max_concurrent_scripts", app.max_concurrent_scripts, (1, 1024))?;
            size("max_queued_requests", app.max_queued_requests, (0, 1_000_000))?;
            size("list.max_results", app.list.max_results, (1, 100_000))?;
            size("list.max_scan", app.list.max_scan, (1, 100_000_000))?;
            size("bulk.max_operations", app.bulk.max_operations, (1, 100_000))?;
            size("bulk.max_payload_bytes", app.bulk.max_payload_bytes, (1, 1 << 30))?;
            if let Some(oauth2) = app.legacy.auth.as_ref().and_then(|auth| auth.oauth2.as_ref()) {
                duration("legacy.auth.oauth2.refresh_before", oauth2.refresh_before, (0, DAY))?;
                size("legacy.auth.oauth2.max_response_bytes", oauth2.max_response_bytes, (1024, 16 << 20))?;
            }
            if let Some(jwt) = &app.auth.jwt {
                duration("auth.jwt.jwks_max_age", jwt.jwks_max_age, (1000, 30 * DAY))?;
                duration("auth.jwt.leeway", jwt.leeway, (0, DAY))?;
                size("auth.jwt.jwks_max_bytes", jwt.jwks_max_bytes, (1024, 16 << 20))?;
            }
            // Refused rather than redacted: a URL is printed by logs, errors and `/readyz`, and
            // every place would have to remember to redact it; `legacy.auth` keeps secrets
            // out of URLs and sends them only as the header they belong in.
            let urls = [
                ("legacy.base_url", Some(&app.legacy.base_url), "put them in legacy.auth (basic, bearer or oauth2)"),
                (
                    "legacy.auth.oauth2.token_url",
                    app.legacy.auth.as_ref().and_then(|a| a.oauth2.as_ref()).map(|o| &o.token_url),
                    "put them in legacy.auth.oauth2.client_id and client_secret",
                ),
                (
                    "auth.jwt.jwks_url",
                    app.auth.jwt.as_ref().and_then(|j| j.jwks_url.as_ref()),
                    "a JWKS document is public: remove them",
                ),
            ];
            for (field, url, fix) in urls {
                if url.is_some_and(holds_credentials) {
                    return Err((key(field), format!("must not hold credentials (user:password@): {fix}")));
                }
            }
        }
        Ok(())
    }

    /// The path of an app's script, resolved against the configuration file's folder.
    pub fn script_path(&self, app: &AppConfig) -> PathBuf {
        self.relative_path(&app.script)
    }

    /// A path of the configuration, resolved against the configuration file's folder.
    pub fn relative_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        self.file.parent().map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
    }
}

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// Writes milliseconds as the configuration does: `500ms`, `10s`, `5m`, `1h`.
pub(crate) fn written(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % HOUR == 0 => format!("{}h", ms / HOUR),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Checks that a duration lies from `min` to `max` milliseconds; the error names the key and the range.
fn check_duration(key: &str, value: Duration, (min, max): (u64, u64)) -> Result<(), (String, String)> {
    let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    if (min..=max).contains(&ms) {
        return Ok(());
    }
    Err((key.to_owned(), format!("must be from {} to {}", written(min), written(max))))
}

/// Checks how often something is done: `0s` (never), or from 10ms to a day.
fn check_interval(key: &str, value: Duration) -> Result<(), (String, String)> {
    let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 || (10..=DAY).contains(&ms) {
        return Ok(());
    }
    Err((key.to_owned(), format!("must be 0s (off) or from 10ms to {}", written(DAY))))
}

/// Checks that a count or a number of bytes lies from `min` to `max`.
fn check_size(key: &str, value: usize, (min, max): (usize, usize)) -> Result<(), (String, String)> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err((key.to_owned(), format!("must be from {min} to {max}")))
}

/// Checks an app's inbound authentication; the key returned is relative to the app.
fn validate_auth(auth: &InboundAuth, tls: Option<&TlsConfig>) -> Result<(), (String, String)> {
    let err = |key: &str, detail: &str| Err((format!("auth.{key}"), detail.to_owned()));
    if auth.bearer_tokens.is_empty()
        && auth.bearer_token_files.is_empty()
        && auth.basic.is_empty()
        && auth.jwt.is_none()
        && auth.client_certificates.is_none()
    {
        return err(
            "bearer_tokens",
            "no way to authenticate: add a token, e.g. bearer_tokens: [\"${env.SCIM_TOKEN}\"], or bearer_token_files, basic, jwt or client_certificates",
        );
    }
    if let Some(problem) = auth.bearer_tokens.iter().find_map(|t| weak_secret(t.expose())) {
        return err("bearer_tokens", &format!("a token {problem}"));
    }
    for (i, user) in auth.basic.iter().enumerate() {
        if user.username.is_empty() || user.username.contains(':') {
            return err(&format!("basic[{i}].username"), "must be non-empty and without ':'");
        }
        if let Some(problem) = weak_secret(user.password.expose()) {
            return err(&format!("basic[{i}].password"), &problem);
        }
    }
    if let Some(jwt) = &auth.jwt {
        use jsonwebtoken::Algorithm as A;
        let hmac = |a: &A| matches!(a, A::HS256 | A::HS384 | A::HS512);
        if jwt.jwks_max_age < Duration::from_secs(1) {
            return err("jwt.jwks_max_age", "must be at least 1s (an hour is usual): every token would fetch the JWKS");
        }
        if jwt.issuer.is_empty() {
            return err("jwt.issuer", "must name the issuer, e.g. https://sts.windows.net/TENANT_ID/");
        }
        if jwt.audiences.is_empty() || jwt.audiences.iter().any(String::is_empty) {
            return err("jwt.audiences", "list at least one audience, e.g. the application id URI");
        }
        if jwt.algorithms.is_empty() {
            return err("jwt.algorithms", "list the accepted algorithms, e.g. [RS256]");
        }
        if jwt.algorithms.iter().any(hmac) && jwt.shared_secret.is_none() {
            return err(
                "jwt.algorithms",
                "HS256/HS384/HS512 need jwt.shared_secret; use RS256 or ES256 with public keys",
            );
        }
        if let Some(secret) = &jwt.shared_secret {
            if !jwt.algorithms.iter().any(hmac) {
                return err(
                    "jwt.shared_secret",
                    "is used only by HS256/HS384/HS512: add one to jwt.algorithms or drop the secret",
                );
            }
            if secret.expose().len() < 32 {
                return err("jwt.shared_secret", "shorter than 32 characters: use a long random secret");
            }
        }
        if jwt.algorithms.iter().any(|a| !hmac(a)) && jwt.keys.is_empty() && jwt.jwks_url.is_none() {
            return err("jwt.keys", "no public key: add keys ({pem_file: PATH} or {jwks_file: PATH}) or jwks_url");
        }
        if let Some(i) = jwt.keys.iter().position(|k| k.pem_file.is_some() == k.jwks_file.is_some()) {
            return err(&format!("jwt.keys[{i}]"), "give exactly one of pem_file or jwks_file");
        }
        if let Some(url) = &jwt.jwks_url {
            if !matches!(url.scheme(), "http" | "https") {
                return err("jwt.jwks_url", "must be an https:// (or http://) URL");
            }
        }
    }
    if let Some(certs) = &auth.client_certificates {
        for (i, name) in certs.dns_names.iter().enumerate() {
            if let Some(problem) = dns_name_problem(name) {
                return err(&format!("client_certificates.dns_names[{i}]"), &problem);
            }
        }
        if let Some(i) = certs.uris.iter().position(|uri| uri.trim().is_empty()) {
            return err(&format!("client_certificates.uris[{i}]"), "is empty: write the URI, e.g. spiffe://acme/idp");
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

/// Replaces `${env.NAME}`, `${env.NAME:-default}` and `${file.PATH}` in every string of the
/// tree; what cannot be replaced goes to `problems` (key, detail), and the rest goes on, so
/// that one start names every variable missing.
fn expand(value: &mut serde_yaml_ng::Value, key: &str, vars: &Variables, problems: &mut Vec<(String, String)>) {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => {
            if s.contains("${") {
                match expand_str(s, vars) {
                    Ok(expanded) => *s = expanded,
                    Err(detail) => problems.push((key.to_owned(), detail)),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, &format!("{key}[{i}]"), vars, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().unwrap_or("?");
                let child = if key.is_empty() { name.to_owned() } else { format!("{key}.{name}") };
                expand(v, &child, vars, problems);
            }
        }
        Value::Tagged(tagged) => expand(&mut tagged.value, key, vars, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The one error to report for the references that could not be replaced: the first, with
/// every other key named after it.
fn reported(mut problems: Vec<(String, String)>) -> Option<(String, String)> {
    if problems.len() <= 1 {
        return problems.pop();
    }
    let (key, detail) = problems.remove(0);
    let others: Vec<String> = problems.iter().map(|(key, detail)| format!("{key}: {detail}")).collect();
    Some((key, format!("{detail}; also {}", others.join("; "))))
}

fn expand_str(text: &str, vars: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| "unclosed ${…}: close it with '}'".to_owned())?;
        let reference = &after[..end];
        out.push_str(&resolve_reference(reference, vars)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_reference(reference: &str, vars: &Variables) -> Result<String, String> {
    if let Some(spec) = reference.strip_prefix("env.") {
        let (name, default) = match spec.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (spec, None),
        };
        return match (vars.get(name), default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.to_owned()),
            (None, None) => vars.placeholder(&format!("env.{name}")).ok_or_else(|| {
                format!("environment variable {name} is not set: set it, or write ${{env.{name}:-default}}")
            }),
        };
    }
    if let Some(path) = reference.strip_prefix("file.") {
        return match std::fs::read_to_string(path) {
            Ok(text) => Ok(text.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => vars.placeholder(reference).ok_or_else(|| format!("cannot read secret file {path}: {e}")),
        };
    }
    Err(format!("unknown reference ${{{reference}}}: use ${{env.NAME}} or ${{file.PATH}}"))
}

/// Whether a URL carries a user name or a password (`user:password@`).
fn holds_credentials(url: &url::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Deserializes an optional URL, where an empty string (`${env.NAME:-}` unset) is none.
fn optional_url<'de, D: Deserializer<'de>>(de: D) -> Result<Option<url::Url>, D::Error> {
    match Option::<String>::deserialize(de)? {
        Some(text) if !text.trim().is_empty() => {
            url::Url::parse(text.trim()).map(Some).map_err(serde::de::Error::custom)
        }
        _ => Ok(None),
    }
}

/// Deserializes `250ms`, `10s`, `5m`, `1h` (or a bare number of seconds).
fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Histogram bucket bounds: 1 to [`MAX_LATENCY_BUCKETS`](crate::metrics::MAX_LATENCY_BUCKETS)
/// of them, each over 0 and at most 1 h (the longest `request_timeout`), strictly ascending.
fn validate_buckets(buckets: &[f64]) -> Result<(), String> {
    let max = crate::metrics::MAX_LATENCY_BUCKETS;
    if buckets.is_empty() || buckets.len() > max {
        return Err(format!(
            "list 1 to {max} upper bounds in seconds, e.g. [0.01, 0.1, 1, 10]; it has {}",
            buckets.len()
        ));
    }
    if let Some(bound) = buckets.iter().find(|b| !(**b > 0.0 && **b <= 3600.0)) {
        return Err(format!("{bound} is not a bound in seconds over 0 and at most 3600 (+Inf is always added)"));
    }
    if let Some(pair) = buckets.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(format!("must be in ascending order, each bound once: {} is followed by {}", pair[0], pair[1]));
    }
    Ok(())
}

/// Parses a duration written as a number and a unit: `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration: write e.g. 500ms, 10s, 5m or 1h"))?;
    let seconds = |per: u64| n.checked_mul(per).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{text:?} has an unknown unit: use ms, s, m or h")),
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_recent_requests() -> usize {
    200
}

/// The most requests `admin.recent_requests` may keep per app.
pub const MAX_RECENT_REQUESTS: usize = 10_000;

fn default_service_name() -> String {
    "scim-proxy".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_trace_batch_size() -> usize {
    512
}
fn default_trace_queue_size() -> usize {
    4096
}
fn default_trace_export_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_trace_export_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_log_level() -> String {
    "info".into()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
/// The largest `server.max_body_bytes`.
const MAX_BODY_BYTES: usize = 1024 * 1024 * 1024;
/// The largest `script.max_bytes`: compiling 16 MiB of the worst statements takes hours.
const MAX_SCRIPT_BYTES: usize = 16 * 1024 * 1024;
/// 256 KiB: twelve times the largest example script; the worst text of that size compiles
/// in about 2.5 s (measured: `cargo bench --bench micro -- compile`).
fn default_script_max_bytes() -> usize {
    256 * 1024
}
/// 1000: thirty times the example scripts' functions; 1000 compile in about 35 ms.
fn default_script_max_functions() -> usize {
    1000
}
fn default_script_compile_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_json_nodes() -> usize {
    100_000
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_concurrent_streams() -> u32 {
    100
}
fn default_admin_max_connections() -> usize {
    64
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_config_reload() -> Duration {
    Duration::from_secs(5)
}

fn default_script_reload() -> Duration {
    Duration::from_secs(2)
}
fn default_tls_reload() -> Duration {
    Duration::from_secs(10)
}

fn default_jwks_max_age() -> Duration {
    Duration::from_secs(3600)
}

/// A JWKS of a dozen keys with their certificate chains (`x5c`) is some tens of KB.
fn default_jwks_max_bytes() -> usize {
    256 * 1024
}

fn default_jwt_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    1024
}

fn default_max_queued_requests() -> usize {
    256
}

fn default_max_concurrent_scripts() -> usize {
    16
}
fn default_legacy_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_max_response_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_retry_attempts() -> u32 {
    3
}
fn default_retry_base_delay() -> Duration {
    Duration::from_millis(50)
}
fn default_retry_max_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_for() -> Duration {
    Duration::from_secs(10)
}
fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}
/// A token answer is a few KB even when the access token is a JWT with many claims.
fn default_token_max_response_bytes() -> usize {
    64 * 1024
}
fn default_bulk_operations() -> usize {
    100
}
fn default_cache_entries() -> u64 {
    100_000
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_page_size() -> usize {
    100
}
fn default_max_results() -> usize {
    1000
}
fn default_max_scan() -> usize {
    50_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_short_ones_and_placeholders() {
        for weak in [
            "a",
            "0123456789abcde",
            "REPLACE_ME",
            "REPLACE_ME_WITH_A_LONG_TOKEN",
            "replace-me-0123456789",
            "changeme-0123456789",
        ] {
            assert!(weak_secret(weak).is_some(), "{weak}");
        }
        assert!(weak_secret("REPLACE_ME").is_some_and(|p| p.contains("placeholder")));
        assert!(weak_secret("short").is_some_and(|p| p.contains("shorter than 16 characters")));
        for strong in ["0123456789abcdef", "a-long-random-token-9f8e7d6c"] {
            assert_eq!(weak_secret(strong), None, "{strong}");
        }
    }

    const MINIMAL: &str = r#"
apps:
  - name: acme
    base_path: /scim/v2
    script: scripts/demo.rhai
    auth:
      bearer_tokens: ["${env.TEST_TOKEN}"]
    legacy:
      base_url: "${env.TEST_BASE:-http://127.0.0.1:7070/api/v1}"
      headers:
        X-Api-Key: "${env.TEST_KEY}"
"#;

    fn vars() -> Variables {
        let mut v = Variables::default();
        v.set("TEST_TOKEN", "a-token-of-sufficient-length");
        v.set("TEST_KEY", "key");
        v
    }

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

    /// `MINIMAL` with `yaml` added under the app (indented as its keys are).
    fn app_with(yaml: &str) -> String {
        MINIMAL.replace("    base_path: /scim/v2\n", &format!("    base_path: /scim/v2\n{yaml}"))
    }

    /// `MINIMAL` with `yaml` added under the app's `legacy` (indented as its keys are).
    fn legacy_with(yaml: &str) -> String {
        MINIMAL.replace("      headers:", &format!("{yaml}      headers:"))
    }

    /// `MINIMAL` with the legacy app at `url`.
    fn legacy_at(url: &str) -> String {
        MINIMAL.replace("${env.TEST_BASE:-http://127.0.0.1:7070/api/v1}", url)
    }

    /// The key and message a configuration is refused with.
    fn refusal(text: &str) -> (String, String) {
        match Config::parse(text, "proxy.yaml", &vars()) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(ConfigError::Key { key, detail, .. }) => (key, detail),
            Err(other) => ("".into(), other.to_string()),
        }
    }

    #[test]
    fn every_duration_and_size_is_checked_against_its_range() {
        let server = |yaml: &str| MINIMAL.replacen("apps:", &format!("server:\n{yaml}apps:"), 1);
        let script = |yaml: &str| MINIMAL.replacen("apps:", &format!("script:\n{yaml}apps:"), 1);
        let cases: &[(String, &str, &str)] = &[
            // Values that once made every request fail, or panicked.
            (app_with("    request_timeout: 0s\n"), "apps[0].request_timeout", "must be from 100ms to 1h"),
            (app_with("    request_timeout: 9999999999h\n"), "apps[0].request_timeout", "must be from 100ms to 1h"),
            (app_with("    cache: {ttl: 9000000h}\n"), "apps[0].cache.ttl", "must be from 1s to 8760h"),
            (app_with("    cache: {ttl: 0s}\n"), "apps[0].cache.ttl", "must be from 1s to 8760h"),
            (app_with("    cache: {max_entries: 0}\n"), "apps[0].cache.max_entries", "must be from 1 to 100000000"),
            (app_with("    max_concurrent_scripts: 0\n"), "apps[0].max_concurrent_scripts", "must be from 1 to 1024"),
            (
                app_with("    max_concurrent_scripts: 18446744073709551615\n"),
                "apps[0].max_concurrent_scripts",
                "must be from 1 to 1024",
            ),
            (
                app_with("    max_queued_requests: 2000000\n"),
                "apps[0].max_queued_requests",
                "must be from 0 to 1000000",
            ),
            (app_with("    list: {max_results: 1000000}\n"), "apps[0].list.max_results", "must be from 1 to 100000"),
            (app_with("    bulk: {max_operations: 0}\n"), "apps[0].bulk.max_operations", "must be from 1 to 100000"),
            (legacy_with("      timeout: 0s\n"), "apps[0].legacy.timeout", "must be from 10ms to 1h"),
            (
                legacy_with("      connect_timeout: 100000h\n"),
                "apps[0].legacy.connect_timeout",
                "must be from 10ms to 1h",
            ),
            (
                legacy_with("      max_response_bytes: 10\n"),
                "apps[0].legacy.max_response_bytes",
                "must be from 1024 to 1073741824",
            ),
            (
                legacy_with("      breaker: {open_for: 48h}\n"),
                "apps[0].legacy.breaker.open_for",
                "must be from 0s to 24h",
            ),
            (
                MINIMAL.replace(
                    "      headers:\n        X-Api-Key: \"${env.TEST_KEY}\"\n",
                    "      auth:\n        oauth2: {token_url: \"https://login.example/token\", client_id: id, client_secret: \"${env.TEST_KEY}\", max_response_bytes: 1000}\n",
                ),
                "apps[0].legacy.auth.oauth2.max_response_bytes",
                "must be from 1024 to 16777216",
            ),
            (
                MINIMAL.replace(
                    "      bearer_tokens:",
                    "      jwt: {issuer: https://idp, audiences: [scim], algorithms: [RS256], jwks_url: \"https://idp.example/keys\", jwks_max_bytes: 1073741824}\n      bearer_tokens:",
                ),
                "apps[0].auth.jwt.jwks_max_bytes",
                "must be from 1024 to 16777216",
            ),
            (server("  header_read_timeout: 0s\n"), "server.header_read_timeout", "must be from 100ms to 1h"),
            (server("  shutdown_grace: 2h\n"), "server.shutdown_grace", "must be from 0s to 1h"),
            (server("  health_interval: 5ms\n"), "server.health_interval", "must be 0s (off) or from 10ms to 24h"),
            (server("  script_reload_interval: 25h\n"), "server.script_reload_interval", "must be 0s (off)"),
            (script("  max_bytes: 100\n"), "script.max_bytes", "must be from 1024 to 16777216"),
            (script("  max_bytes: 100000000\n"), "script.max_bytes", "must be from 1024 to 16777216"),
            (script("  max_functions: 0\n"), "script.max_functions", "must be from 1 to 100000"),
            (script("  compile_timeout: 50ms\n"), "script.compile_timeout", "must be from 100ms to 10m"),
            (script("  compile_timeout: 1h\n"), "script.compile_timeout", "must be from 100ms to 10m"),
            (script("  max_size: 1000\n"), "script.max_size", "unknown field `max_size`"),
        ];
        for (text, key, says) in cases {
            let (got_key, detail) = refusal(text);
            assert_eq!((got_key.as_str(), detail.contains(says)), (*key, true), "{detail}\n{text}");
        }
        // The ends of each range are accepted, and 0s turns an interval off.
        for yaml in [
            "    request_timeout: 100ms\n",
            "    request_timeout: 1h\n",
            "    cache: {ttl: 1s, max_entries: 1}\n",
            "    cache: {ttl: 8760h}\n",
        ] {
            Config::parse(&app_with(yaml), "proxy.yaml", &vars()).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
        Config::parse(&server("  health_interval: 0s\n  script_reload_interval: 10ms\n"), "proxy.yaml", &vars())
            .unwrap();
        let defaults = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap().script;
        assert_eq!((defaults.max_bytes, defaults.max_functions), (256 * 1024, 1000));
        assert_eq!(defaults.compile_timeout, Duration::from_secs(10));
        let ends = "  max_bytes: 16777216\n  max_functions: 100000\n  compile_timeout: 10m\n";
        let set = Config::parse(&script(ends), "proxy.yaml", &vars()).unwrap().script;
        assert_eq!((set.max_bytes, set.max_functions), (16 * 1024 * 1024, 100_000));
        Config::parse(&script("  max_bytes: 1024\n  max_functions: 1\n  compile_timeout: 100ms\n"), "p.yaml", &vars())
            .unwrap();
    }

    #[test]
    fn latency_buckets_are_ascending_positive_bounded_seconds() {
        let metrics = |yaml: &str| MINIMAL.replacen("apps:", &format!("metrics:\n  latency_buckets: {yaml}\napps:"), 1);
        let many = format!("[{}]", (1..=33).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        for (yaml, says) in [
            ("[]", "list 1 to 32 upper bounds"),
            (many.as_str(), "it has 33"),
            ("[0.1, 0.05, 1]", "ascending order, each bound once: 0.1 is followed by 0.05"),
            ("[0.1, 0.1]", "0.1 is followed by 0.1"),
            ("[0, 1]", "0 is not a bound in seconds over 0"),
            ("[-1, 1]", "-1 is not a bound"),
            ("[1, 7200]", "7200 is not a bound"),
            ("[.nan]", "NaN is not a bound"),
            ("[.inf]", "inf is not a bound"),
        ] {
            let (key, detail) = refusal(&metrics(yaml));
            assert_eq!((key.as_str(), detail.contains(says)), ("metrics.latency_buckets", true), "{yaml}: {detail}");
        }
        let (key, _) = refusal(&metrics("[\"1s\"]"));
        assert!(key.starts_with("metrics.latency_buckets"), "{key}");
        let config = Config::parse(&metrics("[0.005, 1, 3600]"), "proxy.yaml", &vars()).unwrap();
        assert_eq!(config.metrics.latency_buckets, [0.005, 1.0, 3600.0]);
        let config = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        assert_eq!(config.metrics.latency_buckets, crate::metrics::DEFAULT_LATENCY_BUCKETS);
    }

    #[test]
    fn a_duration_too_long_to_hold_is_an_error_not_a_panic() {
        for text in ["18446744073709551615h", "18446744073709551615m", "99999999999999999999s"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(text), "{error}");
        }
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn credentials_inside_urls_are_refused_with_where_they_belong() {
        let oauth2 = |url: &str| {
            MINIMAL.replace(
                "      headers:\n        X-Api-Key: \"${env.TEST_KEY}\"\n",
                &format!(
                    "      auth:\n        oauth2: {{token_url: \"{url}\", client_id: id, client_secret: \"${{env.TEST_KEY}}\"}}\n"
                ),
            )
        };
        let jwks = |url: &str| {
            MINIMAL.replace(
                "      bearer_tokens:",
                &format!(
                    "      jwt: {{issuer: https://idp, audiences: [scim], algorithms: [RS256], jwks_url: \"{url}\"}}\n      bearer_tokens:"
                ),
            )
        };
        let cases = [
            (legacy_at("http://hr:Hunter2@127.0.0.1:7070/api"), "apps[0].legacy.base_url", "put them in legacy.auth"),
            (legacy_at("http://token@127.0.0.1:7070/api"), "apps[0].legacy.base_url", "put them in legacy.auth"),
            (oauth2("https://id:secret@login.example/token"), "apps[0].legacy.auth.oauth2.token_url", "client_secret"),
            (jwks("https://u:p@idp.example/keys"), "apps[0].auth.jwt.jwks_url", "public"),
        ];
        for (text, key, says) in &cases {
            let (got_key, detail) = refusal(text);
            assert_eq!(got_key, *key, "{detail}");
            assert!(detail.contains("must not hold credentials") && detail.contains(says), "{detail}");
            assert!(!detail.contains("Hunter2") && !detail.contains("secret@"), "{detail}");
        }
        Config::parse(&oauth2("https://login.example/token"), "proxy.yaml", &vars()).unwrap();
        Config::parse(&jwks("https://idp.example/keys"), "proxy.yaml", &vars()).unwrap();
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set_and_their_settings_are_checked() {
        let traced = |yaml: &str| format!("traces:\n{yaml}{MINIMAL}");
        assert_eq!(Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap().traces, TracesConfig::default());
        assert_eq!(TracesConfig::default().otlp_endpoint, None);
        // `${env.NAME:-}` with the variable unset: off, not an error.
        let unset =
            Config::parse(&traced("  otlp_endpoint: \"${env.NO_SUCH_OTLP_ENDPOINT:-}\"\n"), "proxy.yaml", &vars());
        assert_eq!(unset.unwrap().traces.otlp_endpoint, None);
        let on = Config::parse(
            &traced("  otlp_endpoint: http://collector:4318\n  sample_ratio: 0.25\n  headers: {X-Team: \"${env.TEST_KEY}\"}\n"),
            "proxy.yaml",
            &vars(),
        )
        .unwrap();
        assert_eq!(on.traces.otlp_endpoint.map(String::from).as_deref(), Some("http://collector:4318/"));
        assert_eq!((on.traces.sample_ratio, on.traces.service_name.as_str()), (0.25, "scim-proxy"));
        assert_eq!(on.traces.headers["X-Team"].expose(), "key");
        let cases = [
            (
                "  otlp_endpoint: http://otel:Hunter2@collector:4318\n",
                "traces.otlp_endpoint",
                "put them in traces.headers",
            ),
            ("  otlp_endpoint: grpc://collector:4317\n", "traces.otlp_endpoint", "http:// or https://"),
            ("  otlp_endpoint: http://collector:4318/?x=1\n", "traces.otlp_endpoint", "query"),
            ("  otlp_endpoint: not a url\n", "traces.otlp_endpoint", ""),
            ("  sample_ratio: 1.5\n", "traces.sample_ratio", "from 0"),
            ("  sample_ratio: -0.1\n", "traces.sample_ratio", "from 0"),
            ("  service_name: \"\"\n", "traces.service_name", "1 to 255"),
            ("  batch_size: 0\n", "traces.batch_size", "from 1 to 10000"),
            ("  queue_size: 0\n", "traces.queue_size", "from 1 to 1000000"),
            ("  export_interval: 0s\n", "traces.export_interval", "from 100ms to 1m"),
            ("  export_timeout: 2m\n", "traces.export_timeout", "from 100ms to 1m"),
            ("  headers: {\"bad name\": x}\n", "traces.headers.bad name", "header name"),
            ("  endpoint: http://collector:4318\n", "traces.endpoint", "unknown field"),
        ];
        for (yaml, key, says) in cases {
            let (got_key, detail) = refusal(&traced(yaml));
            assert_eq!(got_key, key, "{yaml}: {detail}");
            assert!(detail.contains(says) && !detail.contains("Hunter2"), "{yaml}: {detail}");
        }
    }

    #[test]
    fn reads_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "token-from-a-mounted-secret\n").unwrap();
        let text = MINIMAL.replace("${env.TEST_TOKEN}", &format!("${{file.{}}}", path.display()));
        let config = Config::parse(&text, "proxy.yaml", &vars()).unwrap();
        assert_eq!(config.apps[0].auth.bearer_tokens[0].expose(), "token-from-a-mounted-secret");
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

    #[test]
    fn connection_limits_have_defaults_and_ranges_named_in_errors() {
        let config = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        let server = &config.server;
        assert_eq!((server.idle_timeout, server.max_concurrent_streams), (Duration::from_secs(60), 100));
        assert_eq!((server.max_json_nodes, config.admin.max_connections), (100_000, 64));
        let keys = "server:\n  idle_timeout: 5s\n  max_concurrent_streams: 8\n  max_json_nodes: 5000\nadmin:\n  max_connections: 4\n";
        let set = Config::parse(&format!("{keys}{MINIMAL}"), "proxy.yaml", &vars()).unwrap();
        assert_eq!((set.server.idle_timeout, set.server.max_concurrent_streams), (Duration::from_secs(5), 8));
        assert_eq!((set.server.max_json_nodes, set.admin.max_connections), (5000, 4));
        let cases = [
            ("server:\n  idle_timeout: 0s\n", "server.idle_timeout", "between 1s and 1h"),
            ("server:\n  idle_timeout: 2h\n", "server.idle_timeout", "between 1s and 1h"),
            ("server:\n  max_concurrent_streams: 0\n", "server.max_concurrent_streams", "between 1 and 1000"),
            ("server:\n  max_json_nodes: 10\n", "server.max_json_nodes", "between 1000 and 10000000"),
            ("server:\n  max_body_bytes: 2000000000\n", "server.max_body_bytes", "between 1024 and"),
            ("server:\n  max_connections: 0\n", "server.max_connections", "between 1 and 1000000"),
            ("admin:\n  max_connections: 0\n", "admin.max_connections", "between 1 and 4096"),
        ];
        for (section, key, detail) in cases {
            let err = Config::parse(&format!("{section}{MINIMAL}"), "proxy.yaml", &vars()).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(detail), "{err} should name {key} and say {detail}");
        }
    }

    #[test]
    fn the_admin_token_is_a_long_secret_reference_and_off_when_unset_or_empty() {
        let with = |admin: &str| format!("admin:\n{admin}{MINIMAL}");
        let off = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        assert_eq!((off.admin.token(), off.admin.recent_requests, off.admin.keeps_requests()), (None, 200, false));
        let empty = Config::parse(&with("  token: \"${env.UNSET_ADMIN_X:-}\"\n"), "proxy.yaml", &vars()).unwrap();
        assert!(empty.admin.token().is_none() && !empty.admin.keeps_requests());
        let mut v = vars();
        v.set("ADMIN", "an-admin-token-0123456789");
        let on = Config::parse(&with("  token: \"${env.ADMIN}\"\n  recent_requests: 5\n"), "p.yaml", &v).unwrap();
        assert_eq!(on.admin.token().map(Secret::expose), Some("an-admin-token-0123456789"));
        assert!(on.admin.keeps_requests() && on.admin.recent_requests == 5);
        assert!(!format!("{:?}", on.admin).contains("0123456789"), "the token is never printed");
        let cases = [
            ("  token: short\n", "admin.token", "shorter than 16 characters"),
            (
                "  token: an-admin-token-0123456789\n  recent_requests: 100000\n",
                "admin.recent_requests",
                "at most 10000",
            ),
            ("  tokn: an-admin-token-0123456789\n", "admin", "unknown field `tokn`"),
        ];
        for (admin, key, detail) in cases {
            let err = Config::parse(&with(admin), "proxy.yaml", &vars()).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(detail), "{err} should name {key} and say {detail}");
        }
    }

    #[test]
    fn rejects_duplicate_names_and_base_paths() {
        let two = format!("{MINIMAL}{}", MINIMAL.replace("apps:\n", ""));
        let err = Config::parse(&two, "p.yaml", &vars()).unwrap_err().to_string();
        assert!(err.contains("apps[1].name"), "{err}");
        let two = two.replacen("name: acme", "name: other", 1);
        let err = Config::parse(&two, "p.yaml", &vars()).unwrap_err().to_string();
        assert!(err.contains("apps[1].base_path"), "{err}");
    }

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

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("ten").is_err());
    }
}
