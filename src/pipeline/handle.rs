//! The path of one SCIM request: route, authenticate, read, perform, answer, and log one line.
//!
//! This is where a request's stages meet; each stage is a module of its own (`routing`,
//! `crate::auth`, `request`, `crate::operations`, `response`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tracing::Instrument as _;

use super::note::{Noted, dry_run_asked};
use super::{request, response, routing};
use crate::app::App;
use crate::auth;
use crate::error::{Error, RequestError, Source, answer};
use crate::listener::server::Connection;
use crate::observe::metrics::Metrics;
use crate::observe::trace::{self, TraceScope};
use crate::operations::operation::Operation;
use crate::operations::{self, Call};
use crate::script::journal::Journal;
use crate::script::{CallScope, CallStats};
use crate::state::{Shared, State, recent};

/// One SCIM request: route, authenticate, read, perform, answer, and log one line; all of it,
/// and the script calls it makes on their own threads, within one `request` span that names
/// the request id (and the app, once routed, and the trace id when there is a trace), so every
/// line the request causes carries them.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    connection: Connection,
) -> Response<Full<Bytes>> {
    use tracing::Instrument as _;
    let request_id = request_id(request.headers());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        app = tracing::field::Empty,
        trace_id = tracing::field::Empty
    );
    serve(shared, request, connection, request_id).instrument(span).await
}

/// [`handle`] within the request's span.
async fn serve(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    connection: Connection,
    request_id: Arc<str>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    // The request's span in its trace: the caller's trace continued, or passed on as it came
    // with traces off.
    let mut trace = trace::Span::request(shared.tracer.as_ref(), trace::Incoming::read(request.headers()));
    if let Some(trace_id) = trace.trace_id() {
        tracing::Span::current().record("trace_id", tracing::field::display(trace_id));
    }
    if trace.recording() {
        // What the span says if the request is dropped unanswered, which ends it.
        trace.rename(|| request.method().to_string());
        trace.set("http.request.method", request.method().as_str());
        trace.set("scim.request_id", &*request_id);
        trace.fail("abandoned", || {
            "the request ended unanswered: the client went away, or the shutdown grace ran out".into()
        });
    }
    let state = shared.state();
    let keeps_requests = state.admin.keeps_requests();
    let stats = Arc::new(if keeps_requests { CallStats::noting_calls() } else { CallStats::default() });
    let method = request.method().clone();
    let http1 = request.version() < http::Version::HTTP_2;
    let path = request.uri().path().to_owned();
    let peer = connection.peer;
    let user_agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .map_or_else(|| "-".to_owned(), |agent| crate::error::echoed(&String::from_utf8_lossy(agent.as_bytes())));
    let query = keeps_requests.then(|| request.uri().query().map(str::to_owned)).flatten();
    let mut kept_body = None;
    let found = routing::find_app(state.apps.iter().map(|a| a.config.base_path.as_str()), &path);
    let _in_flight = found.map(|(index, _)| shared.metrics.in_flight(state.apps[index].name()));
    let mut noted: Option<Noted> = None;
    let (app, operation, outcome) = match found {
        None => (None, None, Err(Error::from(RequestError::NoRoute { path: path.clone() }))),
        Some((index, rest)) => {
            let app = &state.apps[index];
            tracing::Span::current().record("app", app.name());
            // Authenticate before routing, so strangers learn nothing of the endpoints.
            let routed = auth::authenticate(&app.auth, request.headers(), &connection).await.and_then(|principal| {
                let operation = crate::operations::operation::route(&method, rest, &path)?;
                Ok((principal, operation, dry_run_asked(request.headers())?))
            });
            match routed {
                Err(e) => (Some(app), None, Err(e.into())),
                Ok((principal, operation, dry_run)) => {
                    let journal = if dry_run {
                        Some(Arc::new(Journal::dry_run()))
                    } else if app.recorder.is_some() {
                        Some(Arc::new(Journal::recording()))
                    } else if state.log_bodies {
                        Some(Arc::new(Journal::observing()))
                    } else {
                        None
                    };
                    if let Some(journal) = &journal {
                        noted = Some(Noted::new(journal.clone(), rest, &request));
                    }
                    let context = Context {
                        state: &state,
                        index,
                        metrics: &shared.metrics,
                        principal,
                        request_id: &request_id,
                        stats: &stats,
                        started,
                        scim_addr: shared.scim_addr,
                        tls: connection.tls,
                        body_budget: (&connection.body_budget, connection.body_budget_bytes),
                        trace: trace.scope(),
                    };
                    let kept = keeps_requests.then_some(&mut kept_body);
                    let outcome = perform(context, app, &operation, request, &mut noted, kept).await;
                    (Some(app), Some(operation), outcome)
                }
            }
        }
    };
    let app_name = app.map_or("-", |a| a.name());
    let op = operation.as_ref().map_or("-", Operation::name);
    let route = Route(
        app.zip(operation.as_ref()).map(|(app, operation)| (app.config.base_path.as_str(), operation.template())),
    );
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let legacy_calls = stats.calls.load(Ordering::Relaxed);
    let legacy_ms = stats.micros.load(Ordering::Relaxed) as f64 / 1000.0;
    let bytes_in = stats.request_bytes.load(Ordering::Relaxed);
    // The access log line: one set of fields, at the level and with the message of the outcome.
    macro_rules! access {
        ($level:ident, $response:expr, $message:literal $(, $extra:ident = %$value:expr)?) => {{
            let response = $response;
            let status = response.status().as_u16();
            let bytes_out = hyper::body::Body::size_hint(response.body()).exact().unwrap_or(0);
            tracing::$level!(
                request_id = %request_id, app = app_name, op, %method, route = %route, status,
                latency_ms, legacy_calls, legacy_ms, client = %peer, user_agent = user_agent.as_str(),
                bytes_in, bytes_out $(, $extra = %$value)?, $message
            );
            response
        }};
    }
    let mut failure = None;
    let mut fault = None;
    let response = match outcome {
        Ok(reply) => access!(info, response::reply(reply, &request_id), "request done"),
        Err(error) => {
            let mut answer = answer(&error);
            if state.server.reveal_faults && answer.detail == crate::error::GENERIC {
                answer.detail = error.to_string();
            }
            if keeps_requests {
                let cause = error.to_string();
                failure = Some(recent::Failure {
                    scim_type: answer.scim_type,
                    cause: (cause != answer.detail).then_some(cause),
                    detail: answer.detail.clone(),
                });
            }
            if trace.recording() && answer.status.is_server_error() {
                fault = Some(error.to_string());
            }
            let mut response = response::error(&answer, &request_id);
            if let Error::Request(RequestError::MethodNotAllowed { allowed, .. }) = &error {
                response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allowed));
            }
            // The rest of a body refused unread is not read: the connection ends with this
            // answer, and says so, or a client would send its next request on it and lose it.
            if http1
                && matches!(error, Error::Request(RequestError::TooLarge { .. } | RequestError::BodyTimeout { .. }))
            {
                response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            if response.status() == http::StatusCode::UNAUTHORIZED {
                let invalid_token = matches!(error, Error::Request(RequestError::InvalidToken { .. }));
                let headers = response.headers_mut();
                for challenge in challenges(&state, invalid_token) {
                    headers.append(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                }
            }
            match answer.source {
                Source::Client => access!(info, response, "request refused", reason = %error),
                Source::Legacy | Source::Script | Source::Internal => {
                    access!(warn, response, "request failed", error = %error)
                }
            }
        }
    };
    let response = match (noted, app) {
        (Some(noted), Some(app)) => noted.finish(app, response, &request_id, state.log_bodies).await,
        _ => response,
    };
    if let Some(app) = app.filter(|_| keeps_requests) {
        let (body, body_truncated) = kept_body.map_or((None, false), |(text, cut)| (Some(text), cut));
        let entry = recent::Entry {
            seq: 0,
            time: String::new(),
            request_id: request_id.to_string(),
            app: app_name.to_owned(),
            operation: op.to_owned(),
            method: method.to_string(),
            target: match &query {
                Some(query) => format!("{path}?{query}"),
                None => path,
            },
            status: response.status().as_u16(),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            error: failure,
            ignored: stats.ignored.lock().map(|ignored| ignored.clone()).unwrap_or_default(),
            legacy_calls: stats.noted_calls(),
            legacy_calls_total: legacy_calls,
            legacy_ms,
            body,
            body_truncated,
        };
        shared.recent.push(entry.bounded(&app.redactor), state.admin.recent_requests);
    }
    shared.metrics.request(app_name, op, response.status().as_u16(), started.elapsed());
    if trace.recording() {
        let status = response.status().as_u16();
        trace.rename(|| if route.0.is_none() { method.to_string() } else { format!("{method} {route}") });
        if route.0.is_some() {
            trace.set("http.route", route.to_string().as_str());
        }
        trace.set("http.response.status_code", status);
        trace.set("client.address", peer.ip().to_string());
        trace.set("user_agent.original", user_agent.as_str());
        trace.set("scim.app", app_name);
        trace.set("scim.operation", op);
        trace.set("scim.legacy_calls", legacy_calls);
        // Only the proxy's and the legacy app's faults fail the span, as OpenTelemetry's
        // HTTP conventions say of a server: a client's mistake is the client's.
        match fault {
            Some(fault) => trace.fail(&status.to_string(), || fault),
            None => trace.succeed(),
        }
    }
    response
}

/// The route of a request as logs and traces name it: the app's base path and the
/// operation's template (`/scim/v2/Users/{id}`), or `-` for one not routed. Written where it
/// is shown, not built for each request.
struct Route<'a>(Option<(&'a str, &'static str)>);

impl std::fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((base_path, template)) => {
                f.write_str(base_path)?;
                f.write_str(template)
            }
            None => f.write_str("-"),
        }
    }
}

/// The challenges of a `401` (RFC 7235 §4.1): one for each scheme some app accepts — the
/// credentials come before the app is known, since a token opens only its own app. A bearer
/// token the proxy refused is named as such (RFC 6750 §3.1).
fn challenges(state: &State, invalid_token: bool) -> Vec<&'static str> {
    let auths = || state.apps.iter().map(|app| &app.config.auth);
    let bearer = auths().any(|a| !a.bearer_tokens.is_empty() || !a.bearer_token_files.is_empty() || a.jwt.is_some());
    let basic = auths().any(|a| !a.basic.is_empty());
    let mut challenges = Vec::new();
    if bearer || !basic {
        challenges.push(if invalid_token {
            "Bearer realm=\"scim\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"scim\""
        });
    }
    if basic {
        challenges.push("Basic realm=\"scim\", charset=\"UTF-8\"");
    }
    challenges
}

/// What `perform` needs besides the app, the operation and the request.
struct Context<'a> {
    state: &'a Arc<State>,
    /// The app's place in `state.apps`, so that a write's task can hold the state it runs in.
    index: usize,
    metrics: &'a Arc<Metrics>,
    principal: auth::Principal,
    request_id: &'a Arc<str>,
    stats: &'a Arc<CallStats>,
    started: Instant,
    scim_addr: SocketAddr,
    /// The request came over TLS (so `meta.location` says https).
    tls: bool,
    /// The request body bytes its connection may still hold, and may hold in all.
    body_budget: (&'a Arc<tokio::sync::Semaphore>, usize),
    /// The trace the request's script and legacy calls continue.
    trace: TraceScope,
}

/// The steps after routing, each of which may end the request with an error.
async fn perform(
    context: Context<'_>,
    app: &App,
    operation: &Operation,
    request: Request<Incoming>,
    noted: &mut Option<Noted>,
    kept_body: Option<&mut Option<(String, bool)>>,
) -> Result<operations::Reply, Error> {
    let Context { state, index, metrics, principal, request_id, stats, started, scim_addr, tls, body_budget, trace } =
        context;
    let (parts, body) = request.into_parts();
    let query = crate::scim::params::query_pairs(parts.uri.query());
    let has_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    // The body's share of its connection's budget, held until the request is answered.
    let (body, body_bytes, _body_share) = if has_body {
        request::check_content_type(&parts.headers)?;
        // A client that sends its body slowly holds a connection and a buffer: it gets the
        // request's deadline to finish, like everything else.
        let reading = request::read_body(&parts.headers, body, state.server.max_body_bytes, body_budget);
        let deadline = started + app.config.request_timeout;
        let (bytes, share) = match tokio::time::timeout_at(deadline.into(), reading).await {
            Ok(read) => read?,
            Err(_) => return Err(RequestError::BodyTimeout { millis: app.config.request_timeout.as_millis() }.into()),
        };
        stats.request_bytes.store(bytes.len(), Ordering::Relaxed);
        (Some(request::parse_json(&bytes, state.server.max_json_nodes)?), bytes.len(), Some(share))
    } else {
        (None, 0, None)
    };
    if let (Some(kept), Some(body)) = (kept_body, &body) {
        *kept = Some(recent::body_text(&app.redactor, body));
    }
    let base_url =
        request::base_url(&parts.headers, state.server.trust_forwarded_headers, tls, &scim_addr, &app.config.base_path);
    let journal = noted.as_mut().map(|noted| {
        noted.body.clone_from(&body);
        noted.base_url.clone_from(&base_url);
        noted.journal.clone()
    });
    let deadline = started + app.config.request_timeout;
    let millis = app.config.request_timeout.as_millis();
    let scope = CallScope {
        request_id: request_id.clone(),
        deadline,
        stats: stats.clone(),
        journal,
        metrics: metrics.clone(),
        trace,
    };
    let principal: Arc<str> = Arc::from(principal.0);
    if !operation.writes() {
        let call = Call { app, base_url, headers: &parts.headers, query, body, body_bytes, principal, scope };
        return match tokio::time::timeout_at(deadline.into(), operations::perform(operation, &call)).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::Deadline { millis }.into()),
        };
    }
    // A write runs in a task of its own: once it has started, the request going away (its
    // deadline, a client that disconnects, an h2 reset) does not cut it short, so its locks
    // are held to its end and its ID-cache update and audit record are made. The script
    // itself stops at the deadline, which bounds the task.
    let bulk = matches!(operation, Operation::Bulk);
    let state = state.clone();
    let operation = operation.clone();
    let headers = parts.headers;
    let writing = tokio::spawn(
        async move {
            let call = Call {
                app: &state.apps[index],
                base_url,
                headers: &headers,
                query,
                body,
                body_bytes,
                principal,
                scope,
            };
            operations::perform(&operation, &call).await
        }
        .in_current_span(),
    );
    // A Bulk request stops starting operations at the deadline and answers with the results
    // of those it ran: it is given a moment past the deadline to say so.
    let answer_by = if bulk { deadline + BULK_GRACE } else { deadline };
    match tokio::time::timeout_at(answer_by.into(), writing).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(crate::script::ScriptError::Runtime {
            file: app.script.compiled().path().display().to_string(),
            function: "?".into(),
            line: 0,
            message: format!("the operation panicked: {join}"),
        }
        .into()),
        Err(_) => Err(RequestError::WriteDeadline { millis }.into()),
    }
}

/// How long past its deadline a Bulk request may take to answer with the results of the
/// operations it ran before the deadline.
const BULK_GRACE: Duration = Duration::from_secs(2);

/// The request id from `X-Request-Id` when it is sane, else a new one.
fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(new_request_id)
}

/// A new request id: a random (version 4) UUID.
///
/// Its bits come from a generator of the thread's own (SplitMix64, seeded once from the
/// operating system's randomness), not from a `getrandom` syscall per request as
/// `Uuid::new_v4` takes them: a request id must be unique, not secret. Two threads' sequences,
/// each 2^64 long from a random start, do not meet in practice.
fn new_request_id() -> Arc<str> {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or_default(),
        ));
    }
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let bits = (u128::from(next()) << 64) | u128::from(next());
    let id = uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    Arc::from(&*id.hyphenated().encode_lower(&mut text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_request_ids_are_version_4_uuids_and_never_repeat_across_threads() {
        let threads: Vec<_> =
            (0..4).map(|_| std::thread::spawn(|| (0..50_000).map(|_| new_request_id()).collect::<Vec<_>>())).collect();
        let mut seen = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                let parsed = uuid::Uuid::parse_str(&id).unwrap();
                assert_eq!(parsed.get_version(), Some(uuid::Version::Random), "{id}");
                assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
                assert_eq!(id.len(), 36, "{id}");
                assert!(seen.insert(id.clone()), "{id} twice");
            }
        }
        assert_eq!(seen.len(), 200_000);
    }
}
