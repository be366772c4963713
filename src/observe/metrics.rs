//! Prometheus metrics, served on the admin listener at `/metrics` in the text exposition format.
//!
//! A small registry of our own: counter and histogram families keyed by label values, each
//! series a set of atomics, so recording on the request path is a read-locked map lookup and
//! a few atomic adds. Values kept elsewhere (cache hits, script slots, connections, the
//! process's own figures) are read at scrape time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::DEFAULT_LATENCY_BUCKETS;
use crate::observe::process::ProcessStats;

/// The git revision the binary was built from (see `build.rs`), or `unknown`.
pub const REVISION: &str = env!("SCIM_PROXY_BUILD_REVISION");

/// One histogram series: a count per bucket of the family's bounds, not cumulative.
#[derive(Debug)]
struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: usize) -> Self {
        Self {
            buckets: (0..bounds).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds: &[f64], elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = bounds.iter().position(|&bound| seconds <= bound) {
            if let Some(bucket) = self.buckets.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One series: its label values and its value.
type Series<T> = (Vec<String>, Arc<T>);

/// A family of series of one kind, by label values. The first label of every family is `app`.
#[derive(Debug)]
struct Family<T> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// By the label values joined with a separator no label value holds in practice.
    series: RwLock<BTreeMap<String, Series<T>>>,
}

impl<T> Family<T> {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, help, labels, series: RwLock::new(BTreeMap::new()) }
    }

    fn key(values: &[&str]) -> String {
        values.join("\u{1f}")
    }

    fn find(&self, key: &str) -> Option<Arc<T>> {
        match self.series.read() {
            Ok(map) => map.get(key).map(|(_, series)| series.clone()),
            Err(poisoned) => poisoned.into_inner().get(key).map(|(_, series)| series.clone()),
        }
    }

    fn insert(&self, key: String, values: &[&str], make: impl FnOnce() -> T) -> Arc<T> {
        let labels = values.iter().map(|v| (*v).to_owned()).collect();
        let mut map = match self.series.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(key).or_insert_with(|| (labels, Arc::new(make()))).1.clone()
    }

    /// Drops the series of every app not in `apps`.
    fn retain_apps(&self, apps: &BTreeSet<&str>) {
        let mut map = match self.series.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|_, (labels, _)| labels.first().is_some_and(|app| apps.contains(app.as_str())));
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
    /// Upper bounds of the latency histograms' buckets, in seconds, ascending.
    buckets: Box<[f64]>,
    /// The apps series may be created for, once a configuration reload has said which serve
    /// (`None` before: every app). A request of a removed app that finishes after the reload
    /// creates no series again.
    live_apps: RwLock<Option<BTreeSet<String>>>,
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
        Self::new(&DEFAULT_LATENCY_BUCKETS)
    }
}

impl Metrics {
    /// The metrics of a proxy whose histograms have these bucket bounds (`metrics.latency_buckets`,
    /// validated: ascending, positive).
    pub fn new(buckets: &[f64]) -> Self {
        Self {
            buckets: buckets.into(),
            live_apps: RwLock::new(None),
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
    /// Per app: ID-cache hits, misses, script reloads, refused script edits, script slots.
    pub apps: Vec<AppGauges>,
    pub config_reloads: u64,
    pub config_reload_failures: u64,
    pub ready: bool,
    /// Per listener: its connections now and its limit.
    pub listeners: Vec<ListenerGauges>,
    /// The certificate the SCIM listener serves, when it serves TLS.
    pub certificates: Vec<CertificateGauges>,
    /// The process's own figures.
    pub process: ProcessStats,
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
    /// Requests' script calls running now, and how many may (`max_concurrent_scripts`).
    pub script_slots_in_use: u64,
    pub max_concurrent_scripts: u64,
    /// Requests waiting for a script slot now, and how many may (`max_queued_requests`).
    pub script_queue_depth: u64,
    pub max_queued_requests: u64,
}

/// One listener's connections, read at scrape time.
#[derive(Debug)]
pub struct ListenerGauges {
    /// `scim` or `admin`.
    pub listener: &'static str,
    pub open: u64,
    /// `server.max_connections` or `admin.max_connections`, as the listener started with it.
    pub max: u64,
}

/// A served certificate, read at scrape time.
#[derive(Debug)]
pub struct CertificateGauges {
    /// The certificate file, as configured (`tls.cert`).
    pub file: String,
    /// Seconds until it expires; negative once it has.
    pub expires_in_seconds: i64,
}

impl Metrics {
    /// The series of `family` with these label values (`app` first), created by `make` when
    /// new. For an app a configuration reload removed, a series of its own that is kept
    /// nowhere: a request of that app still finishing counts for nothing.
    fn series<T>(&self, family: &Family<T>, values: &[&str], make: impl FnOnce() -> T) -> Arc<T> {
        let key = Family::<T>::key(values);
        if let Some(found) = family.find(&key) {
            return found;
        }
        let live = match self.live_apps.read() {
            Ok(live) => live.as_ref().is_none_or(|apps| values.first().is_some_and(|app| apps.contains(*app))),
            Err(poisoned) => {
                poisoned.into_inner().as_ref().is_none_or(|apps| values.first().is_some_and(|app| apps.contains(*app)))
            }
        };
        if !live {
            return Arc::new(make());
        }
        family.insert(key, values, make)
    }

    fn histogram(&self, family: &Family<Histogram>, values: &[&str], elapsed: Duration) {
        self.series(family, values, || Histogram::new(self.buckets.len())).observe(&self.buckets, elapsed);
    }

    fn count(&self, family: &Family<AtomicU64>, values: &[&str], by: u64) {
        self.series(family, values, AtomicU64::default).fetch_add(by, Ordering::Relaxed);
    }

    /// After a configuration reload, before its apps serve: drops every series of the apps no
    /// longer served, so `/metrics` stops showing them, and says when the new configuration
    /// asks for other histogram buckets (they are set at start: a histogram's buckets cannot
    /// change under it).
    pub fn reloaded(&self, apps: &[&str]) {
        let kept: BTreeSet<&str> = apps.iter().copied().collect();
        {
            let mut live = match self.live_apps.write() {
                Ok(live) => live,
                Err(poisoned) => poisoned.into_inner(),
            };
            *live = Some(kept.iter().map(|app| (*app).to_owned()).collect());
        }
        let counters =
            [&self.requests, &self.legacy_errors, &self.legacy_retries, &self.audit_records, &self.ignored_attributes];
        for family in counters {
            family.retain_apps(&kept);
        }
        self.in_flight.retain_apps(&kept);
        for family in [&self.request_seconds, &self.script_seconds, &self.legacy_seconds] {
            family.retain_apps(&kept);
        }
    }

    /// Counts a request as in flight for `app` until the guard is dropped.
    pub fn in_flight(&self, app: &str) -> InFlight {
        let gauge = self.series(&self.in_flight, &[app], AtomicI64::default);
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight(gauge)
    }

    /// A SCIM request answered.
    pub fn request(&self, app: &str, operation: &str, status: u16, elapsed: Duration) {
        let code = status.to_string();
        self.count(&self.requests, &[app, operation, &code], 1);
        self.histogram(&self.request_seconds, &[app, operation], elapsed);
    }

    /// A mapping-script call finished.
    pub fn script_call(&self, app: &str, function: &str, elapsed: Duration) {
        self.histogram(&self.script_seconds, &[app, function], elapsed);
    }

    /// A legacy call finished (with an answer or a fault).
    pub fn legacy_call(&self, app: &str, method: &str, elapsed: Duration) {
        self.histogram(&self.legacy_seconds, &[app, method], elapsed);
    }

    /// A legacy call failed, or answered 429 or 5xx.
    pub fn legacy_error(&self, app: &str, kind: &str) {
        self.count(&self.legacy_errors, &[app, kind], 1);
    }

    /// Legacy calls were tried again.
    pub fn legacy_retries(&self, app: &str, retries: u32) {
        self.count(&self.legacy_retries, &[app], u64::from(retries));
    }

    /// An audit record was written.
    pub fn audit(&self, app: &str, outcome: &str) {
        self.count(&self.audit_records, &[app, outcome], 1);
    }

    /// A request named `count` attributes the app does not publish, and they were ignored.
    /// `attribute` must come from a bounded set (see `App::ignored_label`).
    pub fn ignored_attributes(&self, app: &str, resource: &str, attribute: &str, count: u64) {
        self.count(&self.ignored_attributes, &[app, resource, attribute], count);
    }

    /// The whole exposition: what the build and the process are, counters and histograms,
    /// then the values read now.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        header(
            &mut out,
            "scim_proxy_build_info",
            "The running version and the git revision it was built from.",
            "gauge",
        );
        let build = [env!("CARGO_PKG_VERSION").to_owned(), REVISION.to_owned()];
        sample(&mut out, "scim_proxy_build_info", &["version", "revision"], &build, None, "1");
        process(&mut out, &gauges.process);
        let _ = writeln!(
            out,
            "# HELP scim_proxy_ready 1 once start-up is complete and until shutdown begins (health() is scim_proxy_legacy_healthy)."
        );
        let _ = writeln!(out, "# TYPE scim_proxy_ready gauge");
        let _ = writeln!(out, "scim_proxy_ready {}", u8::from(gauges.ready));
        counters(&mut out, &self.requests);
        self.histograms(&mut out, &self.request_seconds);
        self.histograms(&mut out, &self.script_seconds);
        self.histograms(&mut out, &self.legacy_seconds);
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
        let per_app: [(&str, &str, &str, Read); 10] = [
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
            (
                "scim_proxy_script_slots_in_use",
                "Script calls of requests running now (health() has a slot of its own).",
                "gauge",
                |a| Some(a.script_slots_in_use),
            ),
            (
                "scim_proxy_max_concurrent_scripts",
                "Script calls of requests that may run at once (max_concurrent_scripts).",
                "gauge",
                |a| Some(a.max_concurrent_scripts),
            ),
            ("scim_proxy_script_queue_depth", "Requests waiting for a script slot now.", "gauge", |a| {
                Some(a.script_queue_depth)
            }),
            (
                "scim_proxy_max_queued_requests",
                "Requests that may wait for a script slot (max_queued_requests); past them, 503 at once.",
                "gauge",
                |a| Some(a.max_queued_requests),
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
        type Listener = fn(&ListenerGauges) -> u64;
        let listeners: [(&str, &str, Listener); 2] = [
            ("scim_proxy_open_connections", "Connections open now, by listener (scim, admin).", |l| l.open),
            (
                "scim_proxy_max_connections",
                "Connections a listener serves at once (server.max_connections, admin.max_connections).",
                |l| l.max,
            ),
        ];
        for (name, help, read) in listeners {
            header(&mut out, name, help, "gauge");
            for listener in &gauges.listeners {
                let values = [listener.listener.to_owned()];
                sample(&mut out, name, &["listener"], &values, None, &read(listener).to_string());
            }
        }
        let name = "scim_proxy_tls_certificate_expires_in_seconds";
        header(
            &mut out,
            name,
            "Seconds until the certificate the SCIM listener serves expires (negative once it has), by its file.",
            "gauge",
        );
        for certificate in &gauges.certificates {
            let values = [certificate.file.clone()];
            sample(&mut out, name, &["file"], &values, None, &certificate.expires_in_seconds.to_string());
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

    fn histograms(&self, out: &mut String, family: &Family<Histogram>) {
        header(out, family.name, family.help, "histogram");
        let bucket = format!("{}_bucket", family.name);
        for (values, h) in family.snapshot() {
            let mut cumulative = 0;
            for (bound, count) in self.buckets.iter().zip(h.buckets.iter()) {
                cumulative += count.load(Ordering::Relaxed);
                sample(out, &bucket, family.labels, &values, Some(&bound.to_string()), &cumulative.to_string());
            }
            let count = h.count.load(Ordering::Relaxed);
            sample(out, &bucket, family.labels, &values, Some("+Inf"), &count.to_string());
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            sample(out, &format!("{}_sum", family.name), family.labels, &values, None, &sum.to_string());
            sample(out, &format!("{}_count", family.name), family.labels, &values, None, &count.to_string());
        }
    }
}

/// The process's own figures, under the names and types every Prometheus client library
/// gives them; a figure that could not be read is left out.
fn process(out: &mut String, stats: &ProcessStats) {
    let figures: [(&str, &str, &str, Option<String>); 6] = [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            stats.cpu_seconds.map(|s| s.to_string()),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            stats.resident_memory_bytes.map(|b| b.to_string()),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            stats.virtual_memory_bytes.map(|b| b.to_string()),
        ),
        ("process_open_fds", "Number of open file descriptors.", "gauge", stats.open_fds.map(|n| n.to_string())),
        ("process_max_fds", "Maximum number of open file descriptors.", "gauge", stats.max_fds.map(|n| n.to_string())),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            stats.start_time_seconds.map(|s| s.to_string()),
        ),
    ];
    for (name, help, kind, value) in figures {
        if let Some(value) = value {
            header(out, name, help, kind);
            let _ = writeln!(out, "{name} {value}");
        }
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

    #[test]
    fn histograms_use_the_configured_buckets_and_build_info_names_the_revision() {
        let m = Metrics::new(&[0.01, 0.5, 2.0]);
        m.request("acme", "get_user", 200, Duration::from_millis(3));
        m.request("acme", "get_user", 200, Duration::from_millis(700));
        m.request("acme", "get_user", 200, Duration::from_secs(5));
        let text = m.render(&Gauges::default());
        let buckets: Vec<&str> =
            text.lines().filter(|l| l.starts_with("scim_proxy_request_duration_seconds_bucket{")).collect();
        assert_eq!(
            buckets,
            [
                r#"scim_proxy_request_duration_seconds_bucket{app="acme",operation="get_user",le="0.01"} 1"#,
                r#"scim_proxy_request_duration_seconds_bucket{app="acme",operation="get_user",le="0.5"} 1"#,
                r#"scim_proxy_request_duration_seconds_bucket{app="acme",operation="get_user",le="2"} 2"#,
                r#"scim_proxy_request_duration_seconds_bucket{app="acme",operation="get_user",le="+Inf"} 3"#,
            ]
        );
        let build =
            format!(r#"scim_proxy_build_info{{version="{}",revision="{REVISION}"}} 1"#, env!("CARGO_PKG_VERSION"));
        assert!(text.lines().any(|l| l == build), "{text}");
        assert!(!REVISION.is_empty());
    }

    #[test]
    fn a_reload_drops_the_series_of_removed_apps_for_good() {
        let m = Metrics::default();
        for app in ["kept", "gone"] {
            m.request(app, "get_user", 200, Duration::from_millis(3));
            m.script_call(app, "get_user", Duration::from_millis(2));
            m.legacy_call(app, "GET", Duration::from_millis(1));
            m.legacy_error(app, "connect");
            m.legacy_retries(app, 1);
            m.audit(app, "success");
            m.ignored_attributes(app, "User", "locale", 1);
        }
        let straggler = m.in_flight("gone");
        assert!(m.render(&Gauges::default()).contains(r#"app="gone""#));
        m.reloaded(&["kept", "new"]);
        // A request of the removed app that finishes after the reload counts nowhere.
        m.request("gone", "get_user", 200, Duration::from_millis(3));
        m.legacy_error("gone", "timeout");
        drop(straggler);
        m.request("new", "get_user", 200, Duration::from_millis(3));
        let text = m.render(&Gauges::default());
        assert!(!text.contains(r#"app="gone""#), "{text}");
        assert!(text.contains(r#"scim_proxy_legacy_errors_total{app="kept",kind="connect"} 1"#), "{text}");
        assert!(text.contains(r#"scim_proxy_requests_total{app="new",operation="get_user",status="200"} 1"#), "{text}");
    }

    #[test]
    fn values_read_at_scrape_time_are_rendered_with_their_labels() {
        let gauges = Gauges {
            apps: vec![AppGauges {
                app: "acme".into(),
                script_slots_in_use: 3,
                max_concurrent_scripts: 16,
                script_queue_depth: 2,
                max_queued_requests: 64,
                ..AppGauges::default()
            }],
            listeners: vec![
                ListenerGauges { listener: "scim", open: 5, max: 1024 },
                ListenerGauges { listener: "admin", open: 1, max: 64 },
            ],
            certificates: vec![CertificateGauges { file: "/tls/tls.crt".into(), expires_in_seconds: -30 }],
            process: ProcessStats {
                cpu_seconds: Some(1.25),
                open_fds: Some(12),
                max_fds: None,
                ..ProcessStats::default()
            },
            ..Gauges::default()
        };
        let text = Metrics::default().render(&gauges);
        for line in [
            r#"scim_proxy_script_slots_in_use{app="acme"} 3"#,
            r#"scim_proxy_max_concurrent_scripts{app="acme"} 16"#,
            r#"scim_proxy_script_queue_depth{app="acme"} 2"#,
            r#"scim_proxy_max_queued_requests{app="acme"} 64"#,
            r#"scim_proxy_open_connections{listener="scim"} 5"#,
            r#"scim_proxy_max_connections{listener="admin"} 64"#,
            r#"scim_proxy_tls_certificate_expires_in_seconds{file="/tls/tls.crt"} -30"#,
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 1.25",
            "# TYPE process_open_fds gauge",
            "process_open_fds 12",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // A figure that could not be read is left out, family and all.
        assert!(!text.contains("process_max_fds"), "{text}");
    }
}
