//! Prometheus metrics, served on the admin listener at `/metrics` in the text exposition format.
//!
//! The series are `prometheus-client` families, written out by its Prometheus text encoder
//! (format version 0.0.4): recording on the request path is a read-locked map lookup and an
//! atomic add (a histogram's, an uncontended lock). Values kept elsewhere (cache hits, script
//! slots, connections, the process's own figures) are read at scrape time into a registry
//! made for that scrape.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder, prometheus_text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::config::DEFAULT_LATENCY_BUCKETS;
use crate::observe::process::ProcessStats;

/// The git revision the binary was built from (see `build.rs`), or `unknown`.
pub(crate) const REVISION: &str = env!("SCIM_PROXY_BUILD_REVISION");

/// The first label of every series recorded on the request path: a reload drops the series
/// of the apps it removed by it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

/// No label beside `app`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct NoMore;

impl EncodeLabelSet for NoMore {
    fn encode(&self, _: &mut LabelSetEncoder) -> std::fmt::Result {
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IgnoredLabels {
    resource: String,
    attribute: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: String,
}

/// Makes each histogram series with the configured bucket bounds.
#[derive(Clone, Debug)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The apps series may be created for, once a configuration reload has said which serve
/// (`None` before: every app).
type LiveApps = RwLock<Option<BTreeSet<String>>>;

/// A family whose series are created only for apps still served, and dropped with their app:
/// its label sets are `app` and then `L`'s labels.
#[derive(Debug)]
struct AppFamily<L, M, C = fn() -> M> {
    family: Family<(AppLabels, L), M, C>,
    /// Every label set created: a `Family` cannot list its own, and a reload must find those
    /// of the apps it removed.
    created: Mutex<HashSet<(AppLabels, L)>>,
}

impl<L: Clone + Hash + Eq, M, C: MetricConstructor<M>> AppFamily<L, M, C> {
    fn new(family: Family<(AppLabels, L), M, C>) -> Self {
        Self { family, created: Mutex::new(HashSet::new()) }
    }

    /// The series of `app` and `labels`, created when new; `None` for an app a configuration
    /// reload removed (a request of it still finishing counts for nothing).
    fn series(&self, live: &LiveApps, app: &str, labels: L) -> Option<impl Deref<Target = M> + '_> {
        let key = (AppLabels { app: app.to_owned() }, labels);
        if let Some(found) = self.family.get(&key) {
            return Some(found);
        }
        // Held until the series exists and is indexed: a reload then either drops it or has
        // already kept it from being created.
        let live = live.read().unwrap_or_else(PoisonError::into_inner);
        if live.as_ref().is_some_and(|apps| !apps.contains(app)) {
            return None;
        }
        self.created.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone());
        Some(self.family.get_or_create(&key))
    }

    /// Drops the series of every app not in `apps`.
    fn retain_apps(&self, apps: &BTreeSet<String>) {
        self.created.lock().unwrap_or_else(PoisonError::into_inner).retain(|key| {
            let kept = apps.contains(&key.0.app);
            if !kept {
                self.family.remove(key);
            }
            kept
        });
    }
}

/// The metrics of one running proxy.
#[derive(Debug)]
pub struct Metrics {
    /// What the build is and the series recorded on the request path; `/metrics` adds the
    /// values read at scrape time.
    registry: Registry,
    /// A request of an app removed by a reload that finishes after it creates no series again.
    live_apps: LiveApps,
    requests: AppFamily<RequestLabels, Counter>,
    request_seconds: AppFamily<OperationLabels, Histogram, Buckets>,
    script_seconds: AppFamily<FunctionLabels, Histogram, Buckets>,
    legacy_seconds: AppFamily<MethodLabels, Histogram, Buckets>,
    legacy_errors: AppFamily<KindLabels, Counter>,
    legacy_retries: AppFamily<NoMore, Counter>,
    in_flight: AppFamily<NoMore, Gauge>,
    audit_records: AppFamily<OutcomeLabels, Counter>,
    ignored_attributes: AppFamily<IgnoredLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&DEFAULT_LATENCY_BUCKETS)
    }
}

impl Metrics {
    /// The metrics of a proxy whose histograms have these bucket bounds (`metrics.latency_buckets`,
    /// validated: ascending, positive).
    pub(crate) fn new(buckets: &[f64]) -> Self {
        let buckets = Buckets(buckets.into());
        let metrics = Self {
            registry: Registry::default(),
            live_apps: RwLock::new(None),
            requests: AppFamily::new(Family::default()),
            request_seconds: AppFamily::new(Family::new_with_constructor(buckets.clone())),
            script_seconds: AppFamily::new(Family::new_with_constructor(buckets.clone())),
            legacy_seconds: AppFamily::new(Family::new_with_constructor(buckets.clone())),
            legacy_errors: AppFamily::new(Family::default()),
            legacy_retries: AppFamily::new(Family::default()),
            in_flight: AppFamily::new(Family::default()),
            audit_records: AppFamily::new(Family::default()),
            ignored_attributes: AppFamily::new(Family::default()),
        };
        let mut registry = Registry::default();
        // Names as registered: the encoder adds `_total` to a counter's and `_info` to an info's.
        registry.register(
            "scim_proxy_build",
            "The running version and the git revision it was built from",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION"), revision: REVISION }),
        );
        registry.register(
            "scim_proxy_requests",
            "SCIM requests answered, by app, operation and HTTP status",
            metrics.requests.family.clone(),
        );
        registry.register(
            "scim_proxy_request_duration_seconds",
            "Time to answer a SCIM request, from its headers to its answer",
            metrics.request_seconds.family.clone(),
        );
        registry.register(
            "scim_proxy_script_duration_seconds",
            "Time of one mapping-script call, legacy calls made from it included",
            metrics.script_seconds.family.clone(),
        );
        registry.register(
            "scim_proxy_legacy_request_duration_seconds",
            "Time of one call to the legacy app, by HTTP method",
            metrics.legacy_seconds.family.clone(),
        );
        registry.register(
            "scim_proxy_legacy_errors",
            "Legacy calls that failed, by kind: connect, timeout, transport, malformed, too_large, tls, token, breaker_open, bad_path, bad_header, bad_body, http_429, http_5xx",
            metrics.legacy_errors.family.clone(),
        );
        registry.register(
            "scim_proxy_legacy_retries",
            "Legacy calls tried again after a transient failure",
            metrics.legacy_retries.family.clone(),
        );
        registry.register(
            "scim_proxy_audit_records",
            "Audit records written for changes requested of the legacy app, by outcome",
            metrics.audit_records.family.clone(),
        );
        registry.register(
            "scim_proxy_ignored_attributes",
            "Attributes of requests that the app does not publish, dropped under schema.unsupported_attributes: ignore; attribute is its path in the RFC 7643 schemas or the app's extensions, other for any other name",
            metrics.ignored_attributes.family.clone(),
        );
        registry.register(
            "scim_proxy_in_flight_requests",
            "SCIM requests being answered now",
            metrics.in_flight.family.clone(),
        );
        Self { registry, ..metrics }
    }
}

/// Keeps a request counted as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Values that live elsewhere, read when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Per app: ID-cache hits, misses, script reloads, refused script edits, script slots.
    pub(crate) apps: Vec<AppGauges>,
    pub(crate) config_reloads: u64,
    pub(crate) config_reload_failures: u64,
    pub(crate) ready: bool,
    /// Per listener: its connections now and its limit.
    pub(crate) listeners: Vec<ListenerGauges>,
    /// The certificate the SCIM listener serves, when it serves TLS.
    pub(crate) certificates: Vec<CertificateGauges>,
    /// The process's own figures.
    pub(crate) process: ProcessStats,
}

/// Per-app values read at scrape time.
#[derive(Debug, Default)]
pub(crate) struct AppGauges {
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
pub(crate) struct ListenerGauges {
    /// `scim` or `admin`.
    pub listener: &'static str,
    pub open: u64,
    /// `server.max_connections` or `admin.max_connections`, as the listener started with it.
    pub max: u64,
}

/// A served certificate, read at scrape time.
#[derive(Debug)]
pub(crate) struct CertificateGauges {
    /// The certificate file, as configured (`tls.cert`).
    pub file: String,
    /// Seconds until it expires; negative once it has.
    pub expires_in_seconds: i64,
}

impl Metrics {
    /// After a configuration reload, before its apps serve: drops every series of the apps no
    /// longer served, so `/metrics` stops showing them. (The histograms keep the buckets they
    /// started with: a histogram's buckets cannot change under it.)
    pub(crate) fn reloaded(&self, apps: &[&str]) {
        let mut live = self.live_apps.write().unwrap_or_else(PoisonError::into_inner);
        let kept: BTreeSet<String> = apps.iter().map(|app| (*app).to_owned()).collect();
        // Under the write lock: no series of a removed app is created meanwhile.
        self.requests.retain_apps(&kept);
        self.request_seconds.retain_apps(&kept);
        self.script_seconds.retain_apps(&kept);
        self.legacy_seconds.retain_apps(&kept);
        self.legacy_errors.retain_apps(&kept);
        self.legacy_retries.retain_apps(&kept);
        self.in_flight.retain_apps(&kept);
        self.audit_records.retain_apps(&kept);
        self.ignored_attributes.retain_apps(&kept);
        *live = Some(kept);
    }

    /// Counts a request as in flight for `app` until the guard is dropped.
    pub fn in_flight(&self, app: &str) -> InFlight {
        let gauge = self.in_flight.series(&self.live_apps, app, NoMore).map(|g| g.clone()).unwrap_or_default();
        gauge.inc();
        InFlight(gauge)
    }

    /// A SCIM request answered.
    pub fn request(&self, app: &str, operation: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels { operation: operation.to_owned(), status };
        if let Some(counter) = self.requests.series(&self.live_apps, app, labels) {
            counter.inc();
        }
        let labels = OperationLabels { operation: operation.to_owned() };
        if let Some(histogram) = self.request_seconds.series(&self.live_apps, app, labels) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// A mapping-script call finished.
    pub fn script_call(&self, app: &str, function: &str, elapsed: Duration) {
        let labels = FunctionLabels { function: function.to_owned() };
        if let Some(histogram) = self.script_seconds.series(&self.live_apps, app, labels) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// A legacy call finished (with an answer or a fault).
    pub fn legacy_call(&self, app: &str, method: &str, elapsed: Duration) {
        let labels = MethodLabels { method: method.to_owned() };
        if let Some(histogram) = self.legacy_seconds.series(&self.live_apps, app, labels) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// A legacy call failed, or answered 429 or 5xx.
    pub(crate) fn legacy_error(&self, app: &str, kind: &str) {
        let labels = KindLabels { kind: kind.to_owned() };
        if let Some(counter) = self.legacy_errors.series(&self.live_apps, app, labels) {
            counter.inc();
        }
    }

    /// Legacy calls were tried again.
    pub(crate) fn legacy_retries(&self, app: &str, retries: u32) {
        if let Some(counter) = self.legacy_retries.series(&self.live_apps, app, NoMore) {
            counter.inc_by(u64::from(retries));
        }
    }

    /// An audit record was written.
    pub(crate) fn audit(&self, app: &str, outcome: &str) {
        let labels = OutcomeLabels { outcome: outcome.to_owned() };
        if let Some(counter) = self.audit_records.series(&self.live_apps, app, labels) {
            counter.inc();
        }
    }

    /// A request named `count` attributes the app does not publish, and they were ignored.
    /// `attribute` must come from a bounded set (see `App::ignored_label`).
    pub(crate) fn ignored_attributes(&self, app: &str, resource: &str, attribute: &str, count: u64) {
        let labels = IgnoredLabels { resource: resource.to_owned(), attribute: attribute.to_owned() };
        if let Some(counter) = self.ignored_attributes.series(&self.live_apps, app, labels) {
            counter.inc_by(count);
        }
    }

    /// The whole exposition: what the build is, the series recorded on the request path, then
    /// the values read now. A family without a series is left out.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let scraped = scrape_registry(gauges);
        let encoded = prometheus_text::encode(&mut out, &self.registry)
            .and_then(|()| prometheus_text::encode(&mut out, &scraped));
        // Writing to a String fails only when a label or value cannot be formatted, and none of
        // ours can fail: this is a bug, not a scrape to refuse.
        if let Err(error) = encoded {
            tracing::error!(%error, "metrics: encoding failed");
        }
        out
    }
}

/// A registry of the values read at this scrape: the process's, readiness, each app's, each
/// listener's, the served certificate's and the configuration reloads.
fn scrape_registry(gauges: &Gauges) -> Registry {
    let mut registry = Registry::default();
    gauges.process.register(&mut registry);
    registry.register(
        "scim_proxy_ready",
        "1 once start-up is complete and until shutdown begins (health() is scim_proxy_legacy_healthy)",
        ConstGauge::new(u64::from(gauges.ready)),
    );
    type Read = fn(&AppGauges) -> u64;
    let counters: [(&str, &str, Read); 4] = [
        ("scim_proxy_id_cache_hits", "ID-cache lookups that found an entry", |a| a.cache_hits),
        ("scim_proxy_id_cache_misses", "ID-cache lookups that found none", |a| a.cache_misses),
        ("scim_proxy_script_reloads", "Script edits compiled and swapped in", |a| a.script_reloads),
        ("scim_proxy_script_reload_failures", "Script edits refused (the previous script kept serving)", |a| {
            a.script_reload_failures
        }),
    ];
    for (name, help, read) in counters {
        let family = Family::<AppLabels, Counter>::default();
        for app in &gauges.apps {
            family.get_or_create(&AppLabels { app: app.app.clone() }).inc_by(read(app));
        }
        registry.register(name, help, family);
    }
    type ReadSome = fn(&AppGauges) -> Option<u64>;
    let per_app: [(&str, &str, ReadSome); 6] = [
        ("scim_proxy_legacy_healthy", "1 while the script's health() passes, for apps whose script defines it", |a| {
            a.legacy_healthy.map(u64::from)
        }),
        (
            "scim_proxy_legacy_breaker_open",
            "1 while the circuit breaker of the app's legacy calls is open or half-open",
            |a| Some(u64::from(a.breaker_open)),
        ),
        (
            "scim_proxy_script_slots_in_use",
            "Script calls of requests running now (health() has a slot of its own)",
            |a| Some(a.script_slots_in_use),
        ),
        (
            "scim_proxy_max_concurrent_scripts",
            "Script calls of requests that may run at once (max_concurrent_scripts)",
            |a| Some(a.max_concurrent_scripts),
        ),
        ("scim_proxy_script_queue_depth", "Requests waiting for a script slot now", |a| Some(a.script_queue_depth)),
        (
            "scim_proxy_max_queued_requests",
            "Requests that may wait for a script slot (max_queued_requests); past them, 503 at once",
            |a| Some(a.max_queued_requests),
        ),
    ];
    for (name, help, read) in per_app {
        let family = Family::<AppLabels, Gauge<u64, AtomicU64>>::default();
        for app in &gauges.apps {
            if let Some(value) = read(app) {
                family.get_or_create(&AppLabels { app: app.app.clone() }).set(value);
            }
        }
        registry.register(name, help, family);
    }
    type Listener = fn(&ListenerGauges) -> u64;
    let listeners: [(&str, &str, Listener); 2] = [
        ("scim_proxy_open_connections", "Connections open now, by listener (scim, admin)", |l| l.open),
        (
            "scim_proxy_max_connections",
            "Connections a listener serves at once (server.max_connections, admin.max_connections)",
            |l| l.max,
        ),
    ];
    for (name, help, read) in listeners {
        let family = Family::<ListenerLabels, Gauge<u64, AtomicU64>>::default();
        for listener in &gauges.listeners {
            family.get_or_create(&ListenerLabels { listener: listener.listener }).set(read(listener));
        }
        registry.register(name, help, family);
    }
    let certificates = Family::<FileLabels, Gauge>::default();
    for certificate in &gauges.certificates {
        certificates.get_or_create(&FileLabels { file: certificate.file.clone() }).set(certificate.expires_in_seconds);
    }
    registry.register(
        "scim_proxy_tls_certificate_expires_in_seconds",
        "Seconds until the certificate the SCIM listener serves expires (negative once it has), by its file",
        certificates,
    );
    registry.register(
        "scim_proxy_config_reloads",
        "Configuration edits validated and applied",
        ConstCounter::new(gauges.config_reloads),
    );
    registry.register(
        "scim_proxy_config_reload_failures",
        "Configuration edits refused (the previous configuration kept serving)",
        ConstCounter::new(gauges.config_reload_failures),
    );
    registry
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
