//! Prometheus metrics, served on the admin listener at `/metrics` in the text exposition format.
//!
//! A small registry of our own: counter and histogram families keyed by label values, each
//! series a set of atomics, so recording on the request path is a read-locked map lookup and
//! a few atomic adds. Values kept elsewhere (cache hits, script reloads) are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One histogram series.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One series: its label values and its value.
type Series<T> = (Vec<String>, Arc<T>);

/// A family of series of one kind, by label values.
#[derive(Debug)]
struct Family<T> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// By the label values joined with a separator no label value holds in practice.
    series: RwLock<BTreeMap<String, Series<T>>>,
}

impl<T: Default> Family<T> {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, help, labels, series: RwLock::new(BTreeMap::new()) }
    }

    fn get(&self, values: &[&str]) -> Arc<T> {
        let key = values.join("\u{1f}");
        let found = match self.series.read() {
            Ok(map) => map.get(&key).map(|(_, series)| series.clone()),
            Err(poisoned) => poisoned.into_inner().get(&key).map(|(_, series)| series.clone()),
        };
        if let Some(series) = found {
            return series;
        }
        let labels = values.iter().map(|v| (*v).to_owned()).collect();
        let mut map = match self.series.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(key).or_insert_with(|| (labels, Arc::default())).1.clone()
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Arc<T>)> {
        let map = match self.series.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.values().map(|(labels, series)| (labels.clone(), series.clone())).collect()
    }
}

/// The metrics of one running proxy.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<AtomicU64>,
    request_seconds: Family<Histogram>,
    script_seconds: Family<Histogram>,
    legacy_seconds: Family<Histogram>,
    legacy_errors: Family<AtomicU64>,
    legacy_retries: Family<AtomicU64>,
    in_flight: Family<AtomicI64>,
    audit_records: Family<AtomicU64>,
    ignored_attributes: Family<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::new(
                "scim_proxy_requests_total",
                "SCIM requests answered, by app, operation and HTTP status.",
                &["app", "operation", "status"],
            ),
            request_seconds: Family::new(
                "scim_proxy_request_duration_seconds",
                "Time to answer a SCIM request, from its headers to its answer.",
                &["app", "operation"],
            ),
            script_seconds: Family::new(
                "scim_proxy_script_duration_seconds",
                "Time of one mapping-script call, legacy calls made from it included.",
                &["app", "function"],
            ),
            legacy_seconds: Family::new(
                "scim_proxy_legacy_request_duration_seconds",
                "Time of one call to the legacy app, by HTTP method.",
                &["app", "method"],
            ),
            legacy_errors: Family::new(
                "scim_proxy_legacy_errors_total",
                "Legacy calls that failed, by kind: connect, timeout, transport, malformed, too_large, tls, token, breaker_open, bad_path, bad_header, bad_body, http_429, http_5xx.",
                &["app", "kind"],
            ),
            legacy_retries: Family::new(
                "scim_proxy_legacy_retries_total",
                "Legacy calls tried again after a transient failure.",
                &["app"],
            ),
            in_flight: Family::new("scim_proxy_in_flight_requests", "SCIM requests being answered now.", &["app"]),
            audit_records: Family::new(
                "scim_proxy_audit_records_total",
                "Audit records written for changes requested of the legacy app, by outcome.",
                &["app", "outcome"],
            ),
            ignored_attributes: Family::new(
                "scim_proxy_ignored_attributes_total",
                "Attributes of requests that the app does not publish, dropped under schema.unsupported_attributes: ignore; attribute is its path in the RFC 7643 schemas or the app's extensions, other for any other name.",
                &["app", "resource", "attribute"],
            ),
        }
    }
}

/// Keeps a request counted as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Values that live elsewhere, read when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Per app: ID-cache hits, misses, script reloads, refused script edits.
    pub apps: Vec<AppGauges>,
    pub config_reloads: u64,
    pub config_reload_failures: u64,
    pub ready: bool,
}

/// Per-app values read at scrape time.
#[derive(Debug, Default)]
pub struct AppGauges {
    pub app: String,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub script_reloads: u64,
    pub script_reload_failures: u64,
    /// `Some(healthy)` when the script defines `health()`.
    pub legacy_healthy: Option<bool>,
    /// The circuit breaker of the app's legacy calls is open or half-open.
    pub breaker_open: bool,
}

impl Metrics {
    /// Counts a request as in flight for `app` until the guard is dropped.
    pub fn in_flight(&self, app: &str) -> InFlight {
        let gauge = self.in_flight.get(&[app]);
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight(gauge)
    }

    /// A SCIM request answered.
    pub fn request(&self, app: &str, operation: &str, status: u16, elapsed: Duration) {
        let code = status.to_string();
        self.requests.get(&[app, operation, &code]).fetch_add(1, Ordering::Relaxed);
        self.request_seconds.get(&[app, operation]).observe(elapsed);
    }

    /// A mapping-script call finished.
    pub fn script_call(&self, app: &str, function: &str, elapsed: Duration) {
        self.script_seconds.get(&[app, function]).observe(elapsed);
    }

    /// A legacy call finished (with an answer or a fault).
    pub fn legacy_call(&self, app: &str, method: &str, elapsed: Duration) {
        self.legacy_seconds.get(&[app, method]).observe(elapsed);
    }

    /// A legacy call failed, or answered 429 or 5xx.
    pub fn legacy_error(&self, app: &str, kind: &str) {
        self.legacy_errors.get(&[app, kind]).fetch_add(1, Ordering::Relaxed);
    }

    /// Legacy calls were tried again.
    pub fn legacy_retries(&self, app: &str, retries: u32) {
        self.legacy_retries.get(&[app]).fetch_add(u64::from(retries), Ordering::Relaxed);
    }

    /// An audit record was written.
    pub fn audit(&self, app: &str, outcome: &str) {
        self.audit_records.get(&[app, outcome]).fetch_add(1, Ordering::Relaxed);
    }

    /// A request named `count` attributes the app does not publish, and they were ignored.
    /// `attribute` must come from a bounded set (see `App::ignored_label`).
    pub fn ignored_attributes(&self, app: &str, resource: &str, attribute: &str, count: u64) {
        self.ignored_attributes.get(&[app, resource, attribute]).fetch_add(count, Ordering::Relaxed);
    }

    /// The whole exposition, counters and histograms first, then the values read now.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let _ = writeln!(out, "# HELP scim_proxy_build_info The running version.");
        let _ = writeln!(out, "# TYPE scim_proxy_build_info gauge");
        let _ = writeln!(out, "scim_proxy_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(
            out,
            "# HELP scim_proxy_ready 1 once start-up is complete and until shutdown begins (health() is scim_proxy_legacy_healthy)."
        );
        let _ = writeln!(out, "# TYPE scim_proxy_ready gauge");
        let _ = writeln!(out, "scim_proxy_ready {}", u8::from(gauges.ready));
        counters(&mut out, &self.requests);
        histograms(&mut out, &self.request_seconds);
        histograms(&mut out, &self.script_seconds);
        histograms(&mut out, &self.legacy_seconds);
        counters(&mut out, &self.legacy_errors);
        counters(&mut out, &self.legacy_retries);
        counters(&mut out, &self.audit_records);
        counters(&mut out, &self.ignored_attributes);
        header(&mut out, self.in_flight.name, self.in_flight.help, "gauge");
        for (values, value) in self.in_flight.snapshot() {
            sample(
                &mut out,
                self.in_flight.name,
                self.in_flight.labels,
                &values,
                None,
                &value.load(Ordering::Relaxed).to_string(),
            );
        }
        type Read = fn(&AppGauges) -> Option<u64>;
        let per_app: [(&str, &str, &str, Read); 6] = [
            ("scim_proxy_id_cache_hits_total", "ID-cache lookups that found an entry.", "counter", |a| {
                Some(a.cache_hits)
            }),
            ("scim_proxy_id_cache_misses_total", "ID-cache lookups that found none.", "counter", |a| {
                Some(a.cache_misses)
            }),
            ("scim_proxy_script_reloads_total", "Script edits compiled and swapped in.", "counter", |a| {
                Some(a.script_reloads)
            }),
            (
                "scim_proxy_script_reload_failures_total",
                "Script edits refused (the previous script kept serving).",
                "counter",
                |a| Some(a.script_reload_failures),
            ),
            (
                "scim_proxy_legacy_healthy",
                "1 while the script's health() passes, for apps whose script defines it.",
                "gauge",
                |a| a.legacy_healthy.map(u64::from),
            ),
            (
                "scim_proxy_legacy_breaker_open",
                "1 while the circuit breaker of the app's legacy calls is open or half-open.",
                "gauge",
                |a| Some(u64::from(a.breaker_open)),
            ),
        ];
        for (name, help, kind, read) in per_app {
            header(&mut out, name, help, kind);
            for app in &gauges.apps {
                if let Some(value) = read(app) {
                    sample(&mut out, name, &["app"], std::slice::from_ref(&app.app), None, &value.to_string());
                }
            }
        }
        for (name, help, value) in [
            ("scim_proxy_config_reloads_total", "Configuration edits validated and applied.", gauges.config_reloads),
            (
                "scim_proxy_config_reload_failures_total",
                "Configuration edits refused (the previous configuration kept serving).",
                gauges.config_reload_failures,
            ),
        ] {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counters(out: &mut String, family: &Family<AtomicU64>) {
    header(out, family.name, family.help, "counter");
    for (values, value) in family.snapshot() {
        sample(out, family.name, family.labels, &values, None, &value.load(Ordering::Relaxed).to_string());
    }
}

fn histograms(out: &mut String, family: &Family<Histogram>) {
    header(out, family.name, family.help, "histogram");
    for (values, h) in family.snapshot() {
        let bucket = format!("{}_bucket", family.name);
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            sample(out, &bucket, family.labels, &values, Some(&bound.to_string()), &cumulative.to_string());
        }
        let count = h.count.load(Ordering::Relaxed);
        sample(out, &bucket, family.labels, &values, Some("+Inf"), &count.to_string());
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        sample(out, &format!("{}_sum", family.name), family.labels, &values, None, &sum.to_string());
        sample(out, &format!("{}_count", family.name), family.labels, &values, None, &count.to_string());
    }
}

/// One sample line: `name{label="value",…,le="…"} value`, label values escaped.
fn sample(out: &mut String, name: &str, labels: &[&str], values: &[String], le: Option<&str>, value: &str) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let pairs = labels.iter().copied().zip(values.iter().map(String::as_str)).chain(le.map(|le| ("le", le)));
        for (label, value) in pairs {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{label}=\"");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escaped_labels() {
        let m = Metrics::default();
        m.request("acme", "get_user", 200, Duration::from_millis(3));
        m.request("acme", "get_user", 200, Duration::from_millis(30));
        m.request("a\"b", "get_user", 404, Duration::from_millis(1));
        {
            let _guard = m.in_flight("acme");
            assert!(m.render(&Gauges::default()).contains("scim_proxy_in_flight_requests{app=\"acme\"} 1"));
        }
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("scim_proxy_requests_total{app=\"acme\",operation=\"get_user\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("scim_proxy_requests_total{app=\"a\\\"b\",operation=\"get_user\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "scim_proxy_request_duration_seconds_bucket{app=\"acme\",operation=\"get_user\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "scim_proxy_request_duration_seconds_bucket{app=\"acme\",operation=\"get_user\",le=\"0.05\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "scim_proxy_request_duration_seconds_bucket{app=\"acme\",operation=\"get_user\",le=\"+Inf\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("scim_proxy_request_duration_seconds_count{app=\"acme\",operation=\"get_user\"} 2"),
            "{text}"
        );
        assert!(text.contains("scim_proxy_in_flight_requests{app=\"acme\"} 0"), "{text}");
        // Every sample line is `name{labels} number`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
