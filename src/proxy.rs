//! The proxy: start-up of apps and listeners, and the path of one SCIM request through them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, AppError};
use crate::config::{Config, ServerConfig};
use crate::error::{Error, RequestError, Source, answer};
use crate::operations::{self, Call};
use crate::record::Recording;
use crate::routing::{self, Operation};
use crate::script::journal::Journal;
use crate::script::{CallScope, CallStats, ScriptEngine};
use crate::server::{self, ConnLimits, Connection};
use crate::{admin, auth, request, response, tls};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    pub apps: Vec<App>,
    pub server: ServerConfig,
    /// The address the SCIM listener is bound to, the host of last resort for `meta.location`.
    pub scim_addr: SocketAddr,
    /// False until start-up is complete and again once shutdown begins.
    pub ready: AtomicBool,
}

/// A running proxy: its bound addresses and a way to stop it.
#[derive(Debug)]
pub struct Running {
    pub scim_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests within the grace time, and returns.
    pub async fn shutdown(self) {
        self.shared.ready.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Builds every app (compiling its script), binds both listeners and starts serving.
///
/// `listen` and `admin_listen` override the configuration (port 0 picks a free port).
pub async fn start(
    config: &Config,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> Result<Running, StartError> {
    let engine = Arc::new(ScriptEngine::new());
    let apps = config.apps.iter().map(|app| App::build(config, app, engine.clone())).collect::<Result<Vec<_>, _>>()?;
    let tls = config.tls.as_ref().map(|settings| tls::Tls::load(config, settings)).transpose()?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
    };
    let scim_listener = bind(listen.unwrap_or(config.listen)).await?;
    let admin_listener = bind(admin_listen.unwrap_or(config.admin_listen)).await?;
    let scim_addr = scim_listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
    let admin_addr =
        admin_listener.local_addr().map_err(|source| StartError::Bind { addr: config.admin_listen, source })?;
    let shared = Arc::new(Shared { apps, server: config.server.clone(), scim_addr, ready: AtomicBool::new(false) });
    let (stop, stopped) = watch::channel(false);
    let limits = ConnLimits {
        header_read_timeout: config.server.header_read_timeout,
        shutdown_grace: config.server.shutdown_grace,
    };
    let scim_shared = shared.clone();
    let scim = tokio::spawn(server::serve(
        scim_listener,
        "scim",
        move |request, connection| handle(scim_shared.clone(), request, connection),
        limits,
        tls.as_ref().map(|tls| tls.acceptor.clone()),
        stopped.clone(),
    ));
    let admin_shared = shared.clone();
    let admin_limits = ConnLimits { shutdown_grace: Duration::from_secs(1), ..limits };
    let admin = tokio::spawn(server::serve(
        admin_listener,
        "admin",
        move |request, _| admin::handle(admin_shared.clone(), request),
        admin_limits,
        None,
        stopped.clone(),
    ));
    let mut tasks = vec![scim, admin];
    if let (Some(tls), Some(settings)) = (&tls, &config.tls) {
        if !settings.reload_interval.is_zero() {
            let certificate = tls.certificate.clone();
            tasks.push(tokio::spawn(tls::watch_files(certificate, settings.reload_interval, stopped.clone())));
        }
    }
    let stopped_reload = stopped;
    if !config.server.script_reload_interval.is_zero() {
        tasks.push(tokio::spawn(watch_scripts(shared.clone(), config.server.script_reload_interval, stopped_reload)));
    }
    shared.ready.store(true, Ordering::SeqCst);
    for app in &shared.apps {
        tracing::info!(app = app.name(), base_path = %app.config.base_path, script = %app.script.compiled().path().display(), legacy = %app.config.legacy.base_url, "app ready");
    }
    tracing::info!(%scim_addr, %admin_addr, "listening");
    Ok(Running { scim_addr, admin_addr, shared, stop, tasks })
}

/// Checks every app's script for changes until shutdown (hot reload).
async fn watch_scripts(shared: Arc<Shared>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Reading and compiling files is blocking work: keep it off the runtime threads.
        let shared = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for app in &shared.apps {
                crate::script::reload::check(&app.script, &app.reload);
            }
        })
        .await;
    }
}

/// One SCIM request: route, authenticate, read, perform, answer, and log one line.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>, connection: Connection) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let stats = Arc::new(CallStats::default());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let found = routing::find_app(shared.apps.iter().map(|a| a.config.base_path.as_str()), &path);
    let mut noted: Option<Noted> = None;
    let (app, operation, outcome) = match found {
        None => (None, None, Err(Error::from(RequestError::NoRoute { path: path.clone() }))),
        Some((index, rest)) => {
            let app = &shared.apps[index];
            // Authenticate before routing, so strangers learn nothing of the endpoints.
            let routed = auth::authenticate(&app.auth, request.headers(), &connection)
                .await
                .and_then(|_principal| routing::route(&method, rest, &path))
                .and_then(|operation| dry_run_asked(request.headers()).map(|dry| (operation, dry)));
            match routed {
                Err(e) => (Some(app), None, Err(e.into())),
                Ok((operation, dry_run)) => {
                    let journal = if dry_run {
                        Some(Arc::new(Journal::dry_run()))
                    } else {
                        app.recorder.as_ref().map(|_| Arc::new(Journal::recording()))
                    };
                    if let Some(journal) = &journal {
                        noted = Some(Noted::new(journal.clone(), rest, &request));
                    }
                    let outcome = perform(
                        &shared,
                        app,
                        &operation,
                        request,
                        (&request_id, &stats, started),
                        &connection,
                        &mut noted,
                    )
                    .await;
                    (Some(app), Some(operation), outcome)
                }
            }
        }
    };
    let app_name = app.map_or("-", |a| a.name());
    let op = operation.as_ref().map_or("-", Operation::name);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let legacy_calls = stats.calls.load(Ordering::Relaxed);
    let legacy_ms = stats.micros.load(Ordering::Relaxed) as f64 / 1000.0;
    let response = match outcome {
        Ok(reply) => {
            let status = reply.status.as_u16();
            tracing::info!(request_id = %request_id, app = app_name, op, %method, status, latency_ms, legacy_calls, legacy_ms, "request done");
            response::reply(reply, &request_id)
        }
        Err(error) => {
            let mut answer = answer(&error);
            if shared.server.reveal_faults && answer.detail == crate::error::GENERIC {
                answer.detail = error.to_string();
            }
            let status = answer.status.as_u16();
            match answer.source {
                Source::Client => {
                    tracing::info!(request_id = %request_id, app = app_name, op, %method, status, latency_ms, legacy_calls, legacy_ms, reason = %error, "request refused")
                }
                Source::Legacy | Source::Script | Source::Internal => {
                    tracing::warn!(request_id = %request_id, app = app_name, op, %method, status, latency_ms, legacy_calls, legacy_ms, error = %error, "request failed")
                }
            }
            let mut response = response::error(&answer, &request_id);
            if let Error::Request(RequestError::MethodNotAllowed { allowed, .. }) = &error {
                response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allowed));
            }
            if let Error::Request(RequestError::InvalidToken { .. }) = &error {
                let challenge = HeaderValue::from_static("Bearer realm=\"scim\", error=\"invalid_token\"");
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, challenge);
            }
            response
        }
    };
    match (noted, app) {
        (Some(noted), Some(app)) => noted.finish(app, response, &request_id).await,
        _ => response,
    }
}

/// The header that asks for a dry run.
pub const DRY_RUN_HEADER: &str = "scim-proxy-dry-run";

/// The schema of the answer to a dry run that held writes back.
pub const DRY_RUN_SCHEMA: &str = "urn:scim-proxy:api:messages:DryRun";

/// Whether the request asks for a dry run: `Scim-Proxy-Dry-Run: true` (or `1`); `false`/`0` or
/// no header for a normal request.
fn dry_run_asked(headers: &http::HeaderMap) -> Result<bool, RequestError> {
    let Some(value) = headers.get(DRY_RUN_HEADER) else {
        return Ok(false);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Ok("true" | "1") => Ok(true),
        Ok("false" | "0") => Ok(false),
        _ => Err(RequestError::BadHeader { name: "Scim-Proxy-Dry-Run", detail: "must be true or false".into() }),
    }
}

/// A request whose legacy calls are being written down (dry run, recording), and what of the
/// request itself the recording needs.
struct Noted {
    journal: Arc<Journal>,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Option<serde_json::Value>,
    base_url: String,
}

impl Noted {
    fn new(journal: Arc<Journal>, rest: &str, request: &Request<Incoming>) -> Self {
        let rest = if rest.is_empty() { "/" } else { rest };
        let target = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let headers = [http::header::IF_MATCH, http::header::IF_NONE_MATCH]
            .iter()
            .filter_map(|name| Some((name.to_string(), request.headers().get(name)?.to_str().ok()?.to_owned())))
            .collect();
        Self { journal, method: request.method().to_string(), target, headers, body: None, base_url: String::new() }
    }

    /// Turns the response into a dry-run report, or records the exchange.
    async fn finish(self, app: &App, response: Response<Full<Bytes>>, request_id: &str) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt as _;
        let (mut parts, body) = response.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json = (!bytes.is_empty()).then(|| {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        });
        if self.journal.is_dry_run() {
            let mut calls = self.journal.entries();
            for call in &mut calls {
                for value in [&mut call.body, &mut call.reply].into_iter().flatten() {
                    let _ = app.redactor.redact(value);
                }
            }
            let held_back = calls.iter().filter(|c| !c.sent).count();
            tracing::info!(request_id, app = app.name(), held_back, "dry run: writes held back, not sent");
            if held_back == 0 {
                parts.headers.insert(DRY_RUN_HEADER, HeaderValue::from_static("no-writes"));
                return Response::from_parts(parts, Full::new(bytes));
            }
            let report = serde_json::json!({
                "schemas": [DRY_RUN_SCHEMA],
                "detail": format!("dry run: nothing was written to the legacy app; {held_back} write(s) held back"),
                "legacyCalls": calls,
                "response": { "status": parts.status.as_u16(), "body": json },
                "note": "legacyCalls lists every call in order; those with sent: false were held back. `response` is what the mapping made of held-back writes answered with their own body echoed, so an error there may only mean the mapping needed data a real answer would have had.",
            });
            let mut response = Response::new(Full::new(Bytes::from(report.to_string())));
            let headers = response.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(response::SCIM_JSON));
            headers.insert(DRY_RUN_HEADER, HeaderValue::from_static("writes-held-back"));
            if let Some(id) = parts.headers.get("x-request-id") {
                headers.insert("x-request-id", id.clone());
            }
            return response;
        }
        if let Some(recorder) = &app.recorder {
            recorder.write(Recording {
                request_id: request_id.to_owned(),
                method: self.method,
                target: self.target,
                headers: self.headers,
                body: self.body,
                calls: self.journal.entries(),
                status: parts.status.as_u16(),
                response: json,
                base_url: self.base_url,
                base_path: app.config.base_path.clone(),
            });
        }
        Response::from_parts(parts, Full::new(bytes))
    }
}

/// The steps after routing, each of which may end the request with an error.
async fn perform(
    shared: &Shared,
    app: &App,
    operation: &Operation,
    request: Request<Incoming>,
    (request_id, stats, started): (&Arc<str>, &Arc<CallStats>, Instant),
    connection: &Connection,
    noted: &mut Option<Noted>,
) -> Result<operations::Reply, Error> {
    let (parts, body) = request.into_parts();
    let query = request::query_pairs(parts.uri.query());
    let has_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let (body, body_bytes) = if has_body {
        request::check_content_type(&parts.headers)?;
        let bytes = request::read_body(&parts.headers, body, shared.server.max_body_bytes).await?;
        (Some(request::parse_json(&bytes)?), bytes.len())
    } else {
        (None, 0)
    };
    let base_url = request::base_url(
        &parts.headers,
        shared.server.trust_forwarded_headers,
        connection.tls,
        &shared.scim_addr.to_string(),
        &app.config.base_path,
    );
    let journal = noted.as_mut().map(|noted| {
        noted.body.clone_from(&body);
        noted.base_url.clone_from(&base_url);
        noted.journal.clone()
    });
    let deadline = started + app.config.request_timeout;
    let call = Call {
        app,
        base_url,
        headers: &parts.headers,
        query,
        body,
        body_bytes,
        scope: CallScope { request_id: request_id.clone(), deadline, stats: stats.clone(), journal },
    };
    match tokio::time::timeout_at(deadline.into(), operations::perform(operation, &call)).await {
        Ok(result) => result,
        Err(_) => Err(RequestError::Deadline { millis: app.config.request_timeout.as_millis() }.into()),
    }
}

/// The request id from `X-Request-Id` when it is sane, else a new one.
fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()))
}
