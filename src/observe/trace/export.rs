//! Sending finished spans to the collector: batches POSTed as OTLP/HTTP JSON, failures logged at most once a minute.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use super::context::hex;
use super::{Finished, SpanKind, Tracer, Value};
use crate::config::TracesConfig;

/// The longest a problem with the export waits to be logged again.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The most of a collector's answer read (it is a small JSON object, or an error).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The collector's client and what every export sends.
pub(super) struct Exporter {
    client: reqwest::Client,
    url: url::Url,
    headers: HeaderMap,
    /// The `resource` every batch carries: who made the spans.
    resource: Json,
    batch_size: usize,
    interval: Duration,
    timeout: Duration,
}

impl Exporter {
    /// The client of `<endpoint>/v1/traces`.
    pub(super) fn new(endpoint: &url::Url, config: &TracesConfig) -> Result<Self, String> {
        let mut url = endpoint.clone();
        let path = format!("{}/v1/traces", endpoint.path().trim_end_matches('/'));
        url.set_path(&path);
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("traces.headers.{name}: {e}"))?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|e| format!("traces.headers.{name}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let client = reqwest::Client::builder()
            .timeout(config.export_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scim-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                format!("cannot build the trace exporter's HTTP client: {}", crate::observe::error_chain(&e))
            })?;
        let resource = json!({
            "attributes": [
                attribute("service.name", &Value::Str(config.service_name.clone())),
                attribute("service.version", &Value::from(env!("CARGO_PKG_VERSION"))),
            ]
        });
        Ok(Self {
            client,
            url,
            headers,
            resource,
            batch_size: config.batch_size,
            interval: config.export_interval,
            timeout: config.export_timeout,
        })
    }

    /// Where the spans are POSTed.
    pub(super) fn url(&self) -> &url::Url {
        &self.url
    }

    /// Sends one batch; the error says why the collector did not take it.
    async fn post(&self, spans: &[Finished]) -> Result<(), String> {
        let body = encode(&self.resource, spans).to_string();
        let mut response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| crate::observe::error_chain(&e))?;
        let status = response.status();
        // The answer is read so that the connection can serve the next batch.
        let mut read = 0;
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                break;
            }
        }
        if status.is_success() { Ok(()) } else { Err(format!("the collector answered {status}")) }
    }
}

/// The exporter's task: batches spans as they are queued and sends a batch when it is full
/// or every `export_interval`, until `stop`. Then it waits up to `drain` for the spans of
/// requests still being answered and sends what is left, within `export_timeout` in all and
/// giving up at the first failure, so that a collector that is down does not hold up the exit.
pub(super) async fn run(
    exporter: Exporter,
    tracer: Arc<Tracer>,
    mut spans: mpsc::Receiver<Finished>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut batch = Vec::with_capacity(exporter.batch_size);
    let mut report = Report::default();
    let mut tick = tokio::time::interval(exporter.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let room = exporter.batch_size - batch.len();
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            received = spans.recv_many(&mut batch, room) => {
                if received == 0 {
                    break;
                }
                if batch.len() >= exporter.batch_size {
                    send(&exporter, &tracer, &mut batch, &mut report).await;
                }
            }
            _ = tick.tick() => {
                report.check_dropped(&exporter, &tracer);
                if !batch.is_empty() {
                    send(&exporter, &tracer, &mut batch, &mut report).await;
                }
            }
        }
    }
    tracer.all_ended(Instant::now() + drain).await;
    let last = async {
        while let Ok(span) = spans.try_recv() {
            batch.push(span);
            if batch.len() >= exporter.batch_size && !send(&exporter, &tracer, &mut batch, &mut report).await {
                return;
            }
        }
        if !batch.is_empty() {
            send(&exporter, &tracer, &mut batch, &mut report).await;
        }
    };
    // All of it within one export's time: a collector that is slow does not hold up the exit.
    if tokio::time::timeout(exporter.timeout, last).await.is_err() {
        tracing::warn!(endpoint = %exporter.url, "trace export at shutdown cut short: the spans left are dropped");
    }
    report.check_dropped(&exporter, &tracer);
}

/// Sends and empties `batch`; true when the collector took it.
async fn send(exporter: &Exporter, tracer: &Tracer, batch: &mut Vec<Finished>, report: &mut Report) -> bool {
    let outcome = exporter.post(batch).await;
    let spans = batch.len();
    batch.clear();
    // Here too, not only at the timer: a queue that overflows keeps this task sending.
    report.check_dropped(exporter, tracer);
    match outcome {
        Ok(()) => {
            tracer.exported.fetch_add(spans as u64, Ordering::Relaxed);
            report.succeeded(exporter);
            true
        }
        Err(error) => {
            report.failed(exporter, &error, spans);
            false
        }
    }
}

/// What went wrong with the export since it was last logged, so that a collector that is
/// down makes one line a minute, not one a batch.
#[derive(Default)]
struct Report {
    last_failure_logged: Option<Instant>,
    failed_batches: u64,
    lost_spans: u64,
    failing: bool,
    last_drop_logged: Option<Instant>,
    dropped_logged: u64,
}

impl Report {
    fn failed(&mut self, exporter: &Exporter, error: &str, spans: usize) {
        self.failing = true;
        self.failed_batches += 1;
        self.lost_spans += spans as u64;
        if self.last_failure_logged.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            endpoint = %exporter.url,
            error,
            failed_batches = self.failed_batches,
            lost_spans = self.lost_spans,
            "trace export failed; its spans are dropped (logged at most once a minute)"
        );
        self.last_failure_logged = Some(Instant::now());
        (self.failed_batches, self.lost_spans) = (0, 0);
    }

    fn succeeded(&mut self, exporter: &Exporter) {
        if std::mem::take(&mut self.failing) {
            tracing::info!(endpoint = %exporter.url, "trace export works again");
        }
    }

    /// Logs the spans dropped for a full queue since the last such line, at most once a minute.
    fn check_dropped(&mut self, exporter: &Exporter, tracer: &Tracer) {
        let dropped = tracer.dropped();
        if dropped == self.dropped_logged || self.last_drop_logged.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            endpoint = %exporter.url,
            dropped_spans = dropped - self.dropped_logged,
            "trace spans dropped: the export queue was full (raise traces.queue_size, or check the collector)"
        );
        self.last_drop_logged = Some(Instant::now());
        self.dropped_logged = dropped;
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding: ids in hex, enums as numbers,
/// 64-bit numbers as strings.
fn encode(resource: &Json, spans: &[Finished]) -> Json {
    json!({
        "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": { "name": "scim-proxy", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(encode_span).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn encode_span(span: &Finished) -> Json {
    let nanos = |time: std::time::SystemTime| {
        time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).to_string()
    };
    let mut encoded = json!({
        "traceId": hex(&span.context.trace_id),
        "spanId": hex(&span.context.span_id),
        "name": span.name,
        "kind": match span.kind {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        },
        "startTimeUnixNano": nanos(span.start),
        "endTimeUnixNano": nanos(span.end),
        "attributes": span.attributes.iter().map(|(key, value)| attribute(key, value)).collect::<Vec<_>>(),
    });
    if let Some(parent) = &span.parent {
        encoded["parentSpanId"] = hex(parent).into();
    }
    if let Some(message) = &span.error {
        // STATUS_CODE_ERROR
        encoded["status"] = json!({ "code": 2, "message": message });
    }
    encoded
}

fn attribute(key: &str, value: &Value) -> Json {
    let value = match value {
        Value::Str(text) => json!({ "stringValue": text }),
        Value::Int(n) => json!({ "intValue": n.to_string() }),
    };
    json!({ "key": key, "value": value })
}

#[cfg(test)]
mod tests {
    use super::super::SpanContext;
    use super::*;

    #[test]
    fn spans_are_encoded_as_otlp_json() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let span = Finished {
            context: SpanContext { trace_id: [0xab; 16], span_id: [1, 2, 3, 4, 5, 6, 7, 8], sampled: true },
            parent: Some([0xff; 8]),
            kind: SpanKind::Client,
            name: "GET".into(),
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("http.response.status_code", Value::Int(503)), ("url.path", "/api/users".into())],
            error: Some("the legacy app answered 503".into()),
        };
        let resource = json!({ "attributes": [attribute("service.name", &"scim-proxy".into())] });
        let encoded = encode(&resource, &[span]);
        let scope = &encoded["resourceSpans"][0]["scopeSpans"][0];
        assert_eq!(scope["scope"]["name"], "scim-proxy");
        assert_eq!(
            encoded["resourceSpans"][0]["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "scim-proxy"}})
        );
        assert_eq!(
            scope["spans"][0],
            json!({
                "traceId": "abababababababababababababababab",
                "spanId": "0102030405060708",
                "parentSpanId": "ffffffffffffffff",
                "name": "GET",
                "kind": 3,
                "startTimeUnixNano": "1700000000123456789",
                "endTimeUnixNano": "1700000000125456789",
                "attributes": [
                    {"key": "http.response.status_code", "value": {"intValue": "503"}},
                    {"key": "url.path", "value": {"stringValue": "/api/users"}},
                ],
                "status": {"code": 2, "message": "the legacy app answered 503"},
            })
        );
    }

    #[test]
    fn the_endpoint_is_the_collectors_base_url() {
        for (endpoint, url) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            ("https://otel.example/tenant/7/", "https://otel.example/tenant/7/v1/traces"),
        ] {
            let endpoint = url::Url::parse(endpoint).unwrap();
            let exporter = Exporter::new(&endpoint, &TracesConfig::default()).unwrap();
            assert_eq!(exporter.url().as_str(), url);
        }
    }
}
