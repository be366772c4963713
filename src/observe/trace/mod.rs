//! Traces: a span for each SCIM request, its script call and each legacy call, sent to an OpenTelemetry collector, and the W3C trace context passed on to the legacy app.
//!
//! With traces off (no `traces.otlp_endpoint`) nothing here runs but passing a caller's
//! `traceparent` (and `tracestate`) on to the legacy app unchanged. With traces on, a request
//! continues its caller's trace, or starts one sampled by `traces.sample_ratio`; each legacy
//! call names its own span as the parent, so the legacy app's spans hang below it. Finished
//! spans go into a bounded queue that a background task sends in batches ([`export`]): a full
//! queue drops spans and counts them, and never holds up a request.

pub(crate) mod context;
mod export;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

pub(crate) use context::{Incoming, SpanContext};

use crate::config::TracesConfig;

/// What a span stands for, as OTLP tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    /// A SCIM request the proxy serves.
    Server,
    /// Work within the proxy: a script call.
    Internal,
    /// A call to the legacy app.
    Client,
}

/// The value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Str(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Value::Int(i64::from(n))
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(i64::from(n))
    }
}

/// A span once it has ended, as it is exported.
#[derive(Debug)]
struct Finished {
    context: SpanContext,
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(&'static str, Value)>,
    /// The span's status is an error, with this message.
    error: Option<String>,
}

/// Where a running proxy's finished spans go, and what became of them.
#[derive(Debug)]
pub(crate) struct Tracer {
    queue: mpsc::Sender<Finished>,
    sample_ratio: f64,
    /// Spans dropped because the queue was full.
    dropped: AtomicU64,
    /// Spans exported, for the log and the tests.
    exported: AtomicU64,
    /// Recorded spans not yet ended: at shutdown the last export waits for them.
    open: AtomicUsize,
    all_ended: Notify,
}

impl Tracer {
    /// Starts the exporter when `config` names an endpoint (`None` when traces are off). It
    /// runs until `stop`, then waits up to `drain` for the spans of requests still being
    /// answered, and sends what is left.
    pub(crate) fn start(
        config: &TracesConfig,
        stop: watch::Receiver<bool>,
        drain: Duration,
    ) -> Result<Option<Exporting>, String> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = export::Exporter::new(endpoint, config)?;
        let (queue, spans) = mpsc::channel(config.queue_size);
        let tracer = Arc::new(Tracer {
            queue,
            sample_ratio: config.sample_ratio,
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            all_ended: Notify::new(),
        });
        tracing::info!(endpoint = %exporter.url(), sample_ratio = config.sample_ratio, "traces are exported");
        let task = tokio::spawn(export::run(exporter, tracer.clone(), spans, stop, drain));
        Ok(Some(Exporting { tracer, task }))
    }

    /// Spans dropped so far because the export queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a finished span, or drops it when the queue is full: never waits.
    fn submit(&self, span: Finished) {
        if self.queue.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every recorded span has ended, or until `until`.
    async fn all_ended(&self, until: Instant) {
        loop {
            // Registered before the count is read, so an end in between is not missed.
            let ended = self.all_ended.notified();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(until.into(), ended).await.is_err() {
                return;
            }
        }
    }
}

/// A tracer and the task that exports its spans.
#[derive(Debug)]
pub(crate) struct Exporting {
    pub tracer: Arc<Tracer>,
    /// Ends after the last export once the proxy stops.
    pub task: JoinHandle<()>,
}

/// The `traceparent` (and `tracestate`) a legacy call is sent with.
#[derive(Debug, Clone)]
pub(crate) struct TraceHeaders {
    pub traceparent: HeaderValue,
    pub tracestate: Option<HeaderValue>,
}

/// The trace the calls of one request belong to: the span they are children of — with traces
/// off, the caller's, passed on as it came — and where their spans go. The default is no trace.
#[derive(Debug, Clone, Default)]
pub struct TraceScope {
    parent: Option<SpanContext>,
    tracestate: Option<HeaderValue>,
    tracer: Option<Arc<Tracer>>,
}

impl TraceScope {
    /// A span below this scope's: recorded when traces are on and the trace is sampled. With
    /// traces off it is the parent itself, so that its `traceparent` is the caller's unchanged.
    /// `name` is called only for a recorded span.
    pub(crate) fn child(&self, kind: SpanKind, name: impl FnOnce() -> String) -> Span {
        let Some(tracer) = &self.tracer else {
            return Span { context: self.parent, tracestate: self.tracestate.clone(), tracer: None, record: None };
        };
        let context = self.parent.map(|parent| parent.child());
        Span::new(context, self.parent.map(|p| p.span_id), self.tracestate.clone(), tracer, kind, || name().into())
    }
}

/// A span being timed: the request's, a script call's or a legacy call's. It ends, and is
/// queued for export when recorded, when it is dropped, so that every way out of the code it
/// times (an early return, a cancelled request) ends it once.
#[derive(Debug)]
pub(crate) struct Span {
    /// What children and legacy calls continue; none without any trace.
    context: Option<SpanContext>,
    tracestate: Option<HeaderValue>,
    tracer: Option<Arc<Tracer>>,
    /// Set for a span that will be exported.
    record: Option<Box<Record>>,
}

/// What is kept of a recorded span until it ends.
#[derive(Debug)]
struct Record {
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    started: Instant,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl Span {
    /// The span of a SCIM request that came with `incoming`. With traces on it continues the
    /// caller's trace (keeping its sampled flag) or starts one, sampled by `traces.sample_ratio`;
    /// with traces off (`tracer` none) it stands for the caller's span, passed on unchanged.
    pub(crate) fn request(tracer: Option<&Arc<Tracer>>, incoming: Incoming) -> Span {
        let Incoming { parent, tracestate } = incoming;
        let Some(tracer) = tracer else {
            return Span { context: parent, tracestate, tracer: None, record: None };
        };
        let context = match parent {
            Some(parent) => parent.child(),
            None => SpanContext::root(fastrand::f64() < tracer.sample_ratio),
        };
        Span::new(Some(context), parent.map(|p| p.span_id), tracestate, tracer, SpanKind::Server, || "request".into())
    }

    fn new(
        context: Option<SpanContext>,
        parent: Option<[u8; 8]>,
        tracestate: Option<HeaderValue>,
        tracer: &Arc<Tracer>,
        kind: SpanKind,
        name: impl FnOnce() -> Cow<'static, str>,
    ) -> Span {
        let record = context.filter(|c| c.sampled).map(|_| {
            tracer.open.fetch_add(1, Ordering::AcqRel);
            Box::new(Record {
                parent,
                kind,
                name: name(),
                start: SystemTime::now(),
                started: Instant::now(),
                attributes: Vec::new(),
                error: None,
            })
        });
        Span { context, tracestate, tracer: Some(tracer.clone()), record }
    }

    /// Whether the span will be exported: worth computing attributes for.
    pub(crate) fn recording(&self) -> bool {
        self.record.is_some()
    }

    /// The scope of the calls made within this span.
    pub(crate) fn scope(&self) -> TraceScope {
        TraceScope { parent: self.context, tracestate: self.tracestate.clone(), tracer: self.tracer.clone() }
    }

    /// The trace id, in hex, when there is a trace.
    pub(crate) fn trace_id(&self) -> Option<String> {
        self.context.map(|c| context::hex(&c.trace_id))
    }

    /// The headers that make this span the parent of what the receiver does.
    pub(crate) fn headers(&self) -> Option<TraceHeaders> {
        let traceparent = HeaderValue::from_str(&self.context?.traceparent()).ok()?;
        Some(TraceHeaders { traceparent, tracestate: self.tracestate.clone() })
    }

    /// Names the span; `name` is called only for a recorded span.
    pub(crate) fn rename(&mut self, name: impl FnOnce() -> String) {
        if let Some(record) = &mut self.record {
            record.name = name().into();
        }
    }

    /// Sets an attribute (OpenTelemetry's names where one exists: `http.response.status_code`).
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(record) = &mut self.record {
            match record.attributes.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => *old = value.into(),
                None => record.attributes.push((key, value.into())),
            }
        }
    }

    /// Takes back a failure set before: the work ended well after all.
    pub(crate) fn succeed(&mut self) {
        if let Some(record) = &mut self.record {
            record.error = None;
            record.attributes.retain(|(key, _)| *key != "error.type");
        }
    }

    /// Marks the span failed: `error.type` says what kind of failure, `message` (called only
    /// for a recorded span) the specifics.
    pub(crate) fn fail(&mut self, kind: &str, message: impl FnOnce() -> String) {
        if self.record.is_some() {
            self.set("error.type", kind);
        }
        if let Some(record) = &mut self.record {
            record.error = Some(message());
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let (Some(record), Some(tracer), Some(context)) = (self.record.take(), &self.tracer, self.context) else {
            return;
        };
        let Record { parent, kind, name, start, started, attributes, error } = *record;
        tracer.submit(Finished {
            context,
            parent,
            kind,
            name,
            start,
            end: start + started.elapsed(),
            attributes,
            error,
        });
        if tracer.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracer.all_ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracer whose queue holds `room` spans, with no exporter behind it.
    fn tracer(room: usize, sample_ratio: f64) -> (Arc<Tracer>, mpsc::Receiver<Finished>) {
        let (queue, spans) = mpsc::channel(room);
        let tracer = Tracer {
            queue,
            sample_ratio,
            dropped: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            all_ended: Notify::new(),
        };
        (Arc::new(tracer), spans)
    }

    fn incoming(value: &str) -> Incoming {
        Incoming { parent: SpanContext::parse(value), tracestate: None }
    }

    #[test]
    fn a_request_continues_its_callers_trace_and_its_calls_hang_below_it() {
        let (tracer, mut spans) = tracer(8, 1.0);
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let request = Span::request(Some(&tracer), incoming(caller));
        let mut script = request.scope().child(SpanKind::Internal, || "script get_user".into());
        let legacy = script.scope().child(SpanKind::Client, || "GET".into());
        let sent = legacy.headers().unwrap().traceparent;
        script.fail("thrown", || "script error 404".into());
        let mut retried = script.scope().child(SpanKind::Client, || "GET".into());
        retried.fail("abandoned", || "not yet".into());
        retried.succeed();
        assert!(retried.record.as_ref().is_some_and(|r| r.error.is_none() && r.attributes.is_empty()));
        drop(retried);
        drop((legacy, script, request));
        let mut finished = Vec::new();
        while let Ok(span) = spans.try_recv() {
            finished.push(span);
        }
        let [_, legacy, script, request] = &finished[..] else { panic!("{finished:#?}") };
        assert!(finished.iter().all(|s| context::hex(&s.context.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(request.parent.map(|p| context::hex(&p)).as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(script.parent, Some(request.context.span_id));
        assert_eq!(legacy.parent, Some(script.context.span_id));
        assert_eq!((request.kind, script.kind, legacy.kind), (SpanKind::Server, SpanKind::Internal, SpanKind::Client));
        assert_eq!(sent, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context::hex(&legacy.context.span_id)));
        assert_eq!(script.error.as_deref(), Some("script error 404"));
        assert_eq!(script.attributes, vec![("error.type", Value::from("thrown"))]);
        assert!(request.end >= request.start && request.end >= legacy.end);
        assert_eq!(tracer.open.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_unsampled_trace_is_passed_on_but_not_recorded() {
        let (sampling, mut spans) = tracer(8, 1.0);
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let request = Span::request(Some(&sampling), incoming(caller));
        let legacy = request.scope().child(SpanKind::Client, || unreachable!("no name for a span not recorded"));
        let sent = legacy.headers().unwrap().traceparent;
        let sent = sent.to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-00"), "{sent}");
        assert!(!sent.contains("00f067aa0ba902b7"), "the proxy's own span is the parent: {sent}");
        assert!(!request.recording() && !legacy.recording());
        drop((legacy, request));
        assert!(spans.try_recv().is_err());
        // A new trace follows the ratio.
        let (never, _spans) = tracer(8, 0.0);
        assert!(!Span::request(Some(&never), Incoming::default()).recording());
        assert!(Span::request(Some(&sampling), Incoming::default()).recording());
    }

    #[test]
    fn with_traces_off_the_callers_traceparent_goes_on_unchanged() {
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let request = Span::request(None, incoming(caller));
        let legacy = request.scope().child(SpanKind::Client, || unreachable!("nothing is recorded"));
        assert_eq!(legacy.headers().unwrap().traceparent, caller);
        assert!(
            Span::request(None, Incoming::default()).scope().child(SpanKind::Client, String::new).headers().is_none()
        );
        assert!(TraceScope::default().child(SpanKind::Internal, String::new).headers().is_none());
    }

    #[test]
    fn a_full_queue_drops_spans_and_counts_them_without_waiting() {
        let (tracer, _spans) = tracer(2, 1.0);
        for _ in 0..5 {
            drop(Span::request(Some(&tracer), Incoming::default()));
        }
        assert_eq!(tracer.dropped(), 3);
        assert_eq!(tracer.open.load(Ordering::SeqCst), 0);
    }
}
