//! The `log`, `metrics` and `traces` sections: what the proxy tells the people who run it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::validate::{check_duration, check_size, holds_credentials};
use super::{KeyProblem, Secret, duration};

/// Upper bounds of the latency buckets, in seconds, unless `metrics.latency_buckets` says otherwise.
pub(crate) const DEFAULT_LATENCY_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The most buckets `metrics.latency_buckets` may have: each one is a series of every
/// histogram series.
pub(crate) const MAX_LATENCY_BUCKETS: usize = 32;

/// How long a log line waits at most for the lines after it, unless `log.flush_interval` says.
pub(crate) const DEFAULT_LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How logs are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for a terminal, `json` for production log collection.
    pub format: LogFormat,
    /// A tracing filter directive, e.g. `info` or `scim_proxy=debug,info`.
    pub level: String,
    /// Log each request's SCIM and legacy bodies, redacted (target `scim_proxy::bodies`).
    pub bodies: bool,
    /// How long a log line may wait to be written to stderr with the lines made after it
    /// (0 to 10s); `0s` writes each line as it is made.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: "info".into(),
            bodies: false,
            flush_interval: DEFAULT_LOG_FLUSH_INTERVAL,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Compact, human-readable lines for a terminal (the default).
    #[default]
    Pretty,
    /// One JSON object a line, for log collection.
    Json,
}

/// The metrics of the admin listener's `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Upper bounds of the buckets of every latency histogram, in seconds, ascending (`+Inf`
    /// is always added). Read at start: a reload does not change them.
    pub latency_buckets: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { latency_buckets: DEFAULT_LATENCY_BUCKETS.to_vec() }
    }
}

impl MetricsConfig {
    /// Histogram bucket bounds: 1 to [`MAX_LATENCY_BUCKETS`]
    /// of them, each over 0 and at most 1 h (the longest `request_timeout`), strictly ascending.
    /// The key returned is below `metrics`.
    pub(super) fn validate(&self) -> Result<(), KeyProblem> {
        let problem = |detail: String| Err(KeyProblem::new("latency_buckets", detail));
        let buckets = &self.latency_buckets;
        let max = MAX_LATENCY_BUCKETS;
        if buckets.is_empty() || buckets.len() > max {
            return problem(format!(
                "list 1 to {max} upper bounds in seconds, e.g. [0.01, 0.1, 1, 10]; it has {}",
                buckets.len()
            ));
        }
        if let Some(bound) = buckets.iter().find(|b| !(**b > 0.0 && **b <= 3600.0)) {
            return problem(format!(
                "{bound} is not a bound in seconds over 0 and at most 3600 (+Inf is always added)"
            ));
        }
        if let Some(pair) = buckets.windows(2).find(|pair| pair[0] >= pair[1]) {
            return problem(format!(
                "must be in ascending order, each bound once: {} is followed by {}",
                pair[0], pair[1]
            ));
        }
        Ok(())
    }
}

/// Traces of SCIM requests, sent to an OpenTelemetry collector as OTLP/HTTP with JSON bodies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TracesConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://localhost:4318`: spans are POSTed to
    /// `<otlp_endpoint>/v1/traces`. Unset or empty (as `${env.NAME:-}` gives) turns traces off:
    /// no span is made and nothing is sent.
    #[serde(deserialize_with = "optional_url")]
    pub otlp_endpoint: Option<url::Url>,
    /// The `service.name` the spans are exported under.
    pub service_name: String,
    /// The share of new traces recorded, from 0 to 1. A request that comes with a
    /// `traceparent` is recorded when its caller recorded it (the sampled flag), whatever this says.
    pub sample_ratio: f64,
    /// Headers sent with every export, e.g. a hosted backend's API key by reference.
    pub headers: BTreeMap<String, Secret>,
    /// Most spans sent in one request to the collector (1 to 10000).
    pub batch_size: usize,
    /// Most finished spans waiting to be sent (1 to 1000000); past it new spans are dropped
    /// (and counted in the log), so a slow collector never holds up a request.
    pub queue_size: usize,
    /// How often the spans waiting are sent, when fewer than `batch_size` (100ms to 1m).
    #[serde(with = "duration")]
    pub export_interval: Duration,
    /// How long one request to the collector may take (100ms to 1m).
    #[serde(with = "duration")]
    pub export_timeout: Duration,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "scim-proxy".into(),
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
            batch_size: 512,
            queue_size: 4096,
            export_interval: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
        }
    }
}

impl TracesConfig {
    /// Checks the settings of the exporter; the key returned is below `traces`.
    pub(super) fn validate(&self) -> Result<(), KeyProblem> {
        if let Some(endpoint) = &self.otlp_endpoint {
            if !matches!(endpoint.scheme(), "http" | "https") {
                return Err(KeyProblem::new(
                    "otlp_endpoint",
                    "must be an http:// or https:// URL, e.g. http://localhost:4318",
                ));
            }
            if endpoint.query().is_some() || endpoint.fragment().is_some() {
                return Err(KeyProblem::new("otlp_endpoint", "must not have a query or fragment"));
            }
            if holds_credentials(endpoint) {
                return Err(KeyProblem::new(
                    "otlp_endpoint",
                    "must not hold credentials (user:password@): put them in traces.headers",
                ));
            }
        }
        if self.service_name.trim().is_empty() || self.service_name.len() > 255 {
            return Err(KeyProblem::new("service_name", "must be 1 to 255 characters"));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(KeyProblem::new("sample_ratio", "must be from 0 (none) to 1 (every new trace)"));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(KeyProblem::new(format!("headers.{name}"), "is not a valid HTTP header name"));
            }
            if http::HeaderValue::from_str(value.expose()).is_err() {
                return Err(KeyProblem::new(
                    format!("headers.{name}"),
                    "the value has characters not allowed in a header",
                ));
            }
        }
        check_size("batch_size", self.batch_size, (1, 10_000))?;
        check_size("queue_size", self.queue_size, (1, 1_000_000))?;
        check_duration("export_interval", self.export_interval, (100, 60_000))?;
        check_duration("export_timeout", self.export_timeout, (100, 60_000))?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::testing::{MINIMAL, refusal, vars};
    use super::*;

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
        assert_eq!(config.metrics.latency_buckets, DEFAULT_LATENCY_BUCKETS);
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
}
