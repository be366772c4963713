//! The proxy: start-up of apps and listeners, and the path of one SCIM request through them.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::app::{App, AppError};
use crate::config::{AdminConfig, Config, ServerConfig};
use crate::error::{Error, RequestError, Source, answer};
use crate::metrics::Metrics;
use crate::operations::{self, Call};
use crate::recent::{self, RecentRequests};
use crate::record::Recording;
use crate::routing::{self, Operation};
use crate::script::journal::Journal;
use crate::script::{CallScope, CallStats, ScriptEngine};
use crate::server::{self, ConnLimits, Connection};
use crate::trace::{self, TraceScope, Tracer};
use crate::{admin, auth, request, response, tls};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    App(#[from] AppError),
    /// The cause is in the message, not the error's source: shown once wherever it is printed.
    #[error("cannot listen on {addr} ({error})")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Traces(String),
}

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    /// The apps and server settings now serving; a configuration reload swaps them whole.
    state: RwLock<Arc<State>>,
    /// The address the SCIM listener is bound to, the host of last resort for `meta.location`.
    pub scim_addr: SocketAddr,
    /// False until start-up is complete and again once shutdown begins.
    pub ready: AtomicBool,
    pub metrics: Arc<Metrics>,
    /// What `/metrics` reads of the listeners.
    pub listeners: Listeners,
    /// What configuration reloads have done.
    pub config_reload: ConfigReload,
    /// The last requests of each app, for the admin listener's `/requests`.
    pub recent: RecentRequests,
    /// The configuration the proxy started with: what a reload compares the keys only a
    /// restart applies with, and keeps in force.
    started_with: Config,
    /// Where request spans go; none when traces are off.
    pub tracer: Option<Arc<Tracer>>,
}

/// The listeners' connections, and the certificate the SCIM listener serves, for `/metrics`.
#[derive(Debug)]
pub struct Listeners {
    pub scim: Arc<server::Connections>,
    pub admin: Arc<server::Connections>,
    pub certificate: Option<Arc<tls::RotatingCertificate>>,
}

/// What configuration reloads have done, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct ConfigReload {
    /// The file reloads read; none for a configuration that was not read from a file.
    path: Option<std::path::PathBuf>,
    /// The variable overrides the configuration was first read with (the demo's, say).
    overrides: std::collections::BTreeMap<String, String>,
    pub reloads: AtomicU64,
    pub failures: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The fingerprint of the configuration now serving.
    fingerprint: AtomicU64,
    /// A hash of the file text last refused, so the same broken edit is reported once.
    refused_text: AtomicU64,
    /// Scripts that failed to compile at a reload, by path, text and bounds: while an edit
    /// stays refused, its script is not compiled again at every tick (a slow one would leave
    /// an abandoned compile running at each). At most [`FAILED_COMPILES`], cleared when a
    /// reload is applied.
    failed_compiles: Mutex<std::collections::HashMap<u64, crate::script::ScriptError>>,
    /// One reload at a time (the timer and SIGHUP may meet).
    running: tokio::sync::Mutex<()>,
}

impl ConfigReload {
    /// The last refused edit, until a good one replaces it.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// How many failed compiles a configuration reload remembers.
const FAILED_COMPILES: usize = 64;

/// What a configuration reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The file (and the secrets it references) did not change.
    Unchanged,
    /// The new configuration serves.
    Applied,
    /// The edit was refused; the previous configuration keeps serving.
    Refused(String),
}

/// What a configuration reload replaces: the apps (scripts, schemas, clients) and the
/// request limits. Requests under way finish with the state they started with.
#[derive(Debug)]
pub struct State {
    pub apps: Vec<App>,
    pub server: ServerConfig,
    /// `log.bodies`: each request's bodies are logged, redacted.
    pub log_bodies: bool,
    /// Who may see `/requests`, and how many requests of each app it keeps.
    pub admin: AdminConfig,
    /// The engine of the `script.*` bounds now in force, which reloads compile with.
    pub engine: Arc<ScriptEngine>,
}

impl Shared {
    /// The state now serving.
    pub fn state(&self) -> Arc<State> {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new state.
    pub fn replace_state(&self, state: State) {
        let mut guard = match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(state);
    }
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
    ///
    /// With `server.shutdown_delay`, `/readyz` fails first and requests are still served for
    /// that long, so that load balancers stop sending new ones before the listener closes.
    pub async fn shutdown(self) -> Drained {
        self.shared.ready.store(false, Ordering::SeqCst);
        let delay = self.shared.state().server.shutdown_delay;
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "not ready; serving on until the shutdown delay is over"
            );
            tokio::time::sleep(delay).await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let listeners = &self.shared.listeners;
        Drained { cut: listeners.scim.cut() + listeners.admin.cut() }
    }
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Requests still running when `server.shutdown_grace` ran out, answered `503`.
    pub cut: usize,
}

/// Builds every app (compiling its script), binds both listeners and starts serving.
///
/// `listen` and `admin_listen` override the configuration (port 0 picks a free port).
pub async fn start(
    config: &Config,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> Result<Running, StartError> {
    let engine = Arc::new(ScriptEngine::with_bounds(&config.script));
    let apps = config.apps.iter().map(|app| App::build(config, app, engine.clone())).collect::<Result<Vec<_>, _>>()?;
    let config_reload = ConfigReload {
        path: (!config.file.as_os_str().is_empty()).then(|| config.file.clone()),
        fingerprint: AtomicU64::new(config.fingerprint),
        overrides: config.overrides.clone(),
        ..ConfigReload::default()
    };
    let tls = config.tls.as_ref().map(|settings| tls::Tls::load(config, settings)).transpose()?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|error| StartError::Bind { addr, error })
    };
    let scim_listener = bind(listen.unwrap_or(config.listen)).await?;
    let admin_listener = bind(admin_listen.unwrap_or(config.admin_listen)).await?;
    let scim_addr = scim_listener.local_addr().map_err(|error| StartError::Bind { addr: config.listen, error })?;
    let admin_addr =
        admin_listener.local_addr().map_err(|error| StartError::Bind { addr: config.admin_listen, error })?;
    let (stop, stopped) = watch::channel(false);
    let traces =
        Tracer::start(&config.traces, stopped.clone(), config.server.shutdown_grace).map_err(StartError::Traces)?;
    let (tracer, exporter) = traces.map(|t| (t.tracer, t.task)).unzip();
    let state = RwLock::new(Arc::new(State {
        apps,
        server: config.server.clone(),
        log_bodies: config.log.bodies,
        admin: config.admin.clone(),
        engine,
    }));
    let shared = Arc::new(Shared {
        state,
        scim_addr,
        ready: AtomicBool::new(false),
        metrics: Arc::new(Metrics::new(&config.metrics.latency_buckets)),
        listeners: Listeners {
            scim: server::Connections::new(config.server.max_connections),
            admin: server::Connections::new(config.admin.max_connections),
            certificate: tls.as_ref().map(|tls| tls.certificate.clone()),
        },
        config_reload,
        recent: RecentRequests::default(),
        started_with: config.clone(),
        tracer,
    });
    let live = shared.clone();
    let limits = server::Limits::live(move || scim_limits(&live.state()));
    let scim_shared = shared.clone();
    let scim = tokio::spawn(server::serve(
        scim_listener,
        "scim",
        move |request, connection| handle(scim_shared.clone(), request, connection),
        limits,
        shared.listeners.scim.clone(),
        tls.as_ref().map(|tls| tls.acceptor.clone()),
        stopped.clone(),
    ));
    let admin_shared = shared.clone();
    let live = shared.clone();
    let admin_limits = server::Limits::live(move || admin_limits(&live.state()));
    let admin = tokio::spawn(server::serve(
        admin_listener,
        "admin",
        move |request, _| admin::handle(admin_shared.clone(), request),
        admin_limits,
        shared.listeners.admin.clone(),
        None,
        stopped.clone(),
    ));
    let stopped_reload = stopped.clone();
    let mut tasks = vec![scim, admin];
    if !config.server.health_interval.is_zero() {
        tasks.push(tokio::spawn(crate::health::watch(shared.clone(), config.server.health_interval, stopped.clone())));
    }
    if !config.server.config_reload_interval.is_zero() && shared.config_reload.path.is_some() {
        tasks.push(tokio::spawn(watch_config(shared.clone(), config.server.config_reload_interval, stopped.clone())));
    }
    if let (Some(tls), Some(settings)) = (&tls, &config.tls) {
        if !settings.reload_interval.is_zero() {
            let certificate = tls.certificate.clone();
            tasks.push(tokio::spawn(tls::watch_files(certificate, settings.reload_interval, stopped.clone())));
        }
    }
    if !config.server.script_reload_interval.is_zero() {
        tasks.push(tokio::spawn(watch_scripts(shared.clone(), config.server.script_reload_interval, stopped_reload)));
    }
    // Last: shutdown awaits the tasks in turn, and the exporter sends the spans of the
    // requests the listener drained.
    tasks.extend(exporter);
    shared.ready.store(true, Ordering::SeqCst);
    for app in &shared.state().apps {
        tracing::info!(app = app.name(), base_path = %app.config.base_path, script = %app.script.compiled().path().display(), legacy = %app.config.legacy.base_url, "app ready");
    }
    tracing::info!(%scim_addr, %admin_addr, "listening");
    Ok(Running { scim_addr, admin_addr, shared, stop, tasks })
}

/// The limits of the SCIM listener's connections, from the state now serving.
fn scim_limits(state: &State) -> ConnLimits {
    let server = &state.server;
    ConnLimits {
        header_read_timeout: server.header_read_timeout,
        idle_timeout: server.idle_timeout,
        shutdown_grace: server.shutdown_grace,
        max_concurrent_streams: server.max_concurrent_streams,
        body_budget: server.max_body_bytes,
    }
}

/// The limits of the admin listener's connections: the SCIM listener's timeouts, a short grace
/// time and no body (the admin handler reads none). Its connection count is its own
/// (`admin.max_connections`, see `Listeners`).
fn admin_limits(state: &State) -> ConnLimits {
    ConnLimits { shutdown_grace: Duration::from_secs(1), body_budget: 0, ..scim_limits(state) }
}

/// Reloads the configuration whenever it changes, until shutdown.
async fn watch_config(shared: Arc<Shared>, interval: Duration, stop: watch::Receiver<bool>) {
    server::every(interval, false, stop, || async {
        reload_config(&shared).await;
    })
    .await;
}

/// Reads the configuration file again and, when it (or a secret file it references) changed,
/// validates it whole — every app built, every changed script compiled — and swaps it in. A refused
/// edit leaves the running configuration serving and is reported in the log, `/readyz` and
/// `/metrics`. The timer and SIGHUP both call this.
pub async fn reload_config(shared: &Arc<Shared>) -> Reloaded {
    let reload = &shared.config_reload;
    let Some(path) = reload.path.clone() else {
        return Reloaded::Unchanged;
    };
    let _one_at_a_time = reload.running.lock().await;
    let built = build_reloaded(shared, path).await;
    match built {
        Ok(None) => {
            // Back to what serves (a refused edit undone): nothing is wrong any more.
            reload.refused_text.store(0, Ordering::SeqCst);
            reload.set_error(None);
            Reloaded::Unchanged
        }
        Ok(Some((config, engine, apps))) => {
            let restart = crate::restart_only::changed(&shared.started_with, &config);
            if !restart.is_empty() {
                tracing::warn!(
                    keys = %restart.join(", "),
                    "configuration reload: these keys changed and take effect at the next restart; the rest is applied"
                );
            }
            let config = crate::restart_only::in_force(config, &shared.started_with);
            let state = State {
                apps,
                server: config.server.clone(),
                log_bodies: config.log.bodies,
                admin: config.admin.clone(),
                engine,
            };
            // New apps answer /readyz by their health() from the start.
            for app in &state.apps {
                let _ = crate::health::check(app, &shared.metrics).await;
            }
            let names: Vec<&str> = state.apps.iter().map(App::name).collect();
            shared.recent.retain(&names, state.admin.recent_requests, state.admin.keeps_requests());
            shared.metrics.reloaded(&names);
            shared.replace_state(state);
            reload.fingerprint.store(config.fingerprint, Ordering::SeqCst);
            reload.refused_text.store(0, Ordering::SeqCst);
            if let Ok(mut failed) = reload.failed_compiles.lock() {
                failed.clear();
            }
            reload.reloads.fetch_add(1, Ordering::Relaxed);
            reload.set_error(None);
            tracing::info!(file = %config.file.display(), apps = config.apps.len(), "configuration reloaded");
            Reloaded::Applied
        }
        Err((text_hash, error)) => {
            // The same broken file is reported once, not at every tick.
            if text_hash != 0 && reload.refused_text.swap(text_hash, Ordering::SeqCst) == text_hash {
                return Reloaded::Refused(error);
            }
            reload.failures.fetch_add(1, Ordering::Relaxed);
            reload.set_error(Some(error.clone()));
            tracing::error!(error = %error, "configuration reload refused; the previous configuration keeps serving");
            Reloaded::Refused(error)
        }
    }
}

/// A reloaded configuration with its script engine and its apps built, `None` when it did not
/// change; or why it is refused, with a hash of the file's text.
type Built = Result<Option<(Config, Arc<ScriptEngine>, Vec<App>)>, (u64, String)>;

/// Reads the configuration file again and, when it changed, compiles its scripts and builds
/// its apps. Reading and building are blocking work, off the runtime threads; each script is
/// compiled on a thread of its own within `script.compile_timeout`, so that neither the
/// reload nor shutdown waits longer for a script that compiles too slowly.
async fn build_reloaded(shared: &Arc<Shared>, path: std::path::PathBuf) -> Built {
    let current = shared.state();
    let (engine, serving, overrides) = (
        current.engine.clone(),
        shared.config_reload.fingerprint.load(Ordering::SeqCst),
        shared.config_reload.overrides.clone(),
    );
    let loaded = tokio::task::spawn_blocking(move || {
        let text = std::fs::read(&path).unwrap_or_default();
        let text_hash = crate::scim::fingerprint(&text);
        let config = Config::load(&path, &crate::config::Variables::with_overrides(overrides))
            .map_err(|error| (text_hash, error.to_string()))?;
        if config.fingerprint == serving {
            return Ok(None);
        }
        // An engine of the new bounds, when `script.*` changed; apps keep their own until replaced.
        let engine = if engine.bounds() == &config.script {
            engine
        } else {
            Arc::new(ScriptEngine::with_bounds(&config.script))
        };
        let texts: Vec<_> = config.apps.iter().map(|app| engine.read_source(&config.script_path(app))).collect();
        Ok(Some((text_hash, config, engine, texts)))
    })
    .await
    .map_err(|join| (0, format!("the reload task failed: {join}")))??;
    let Some((text_hash, config, engine, texts)) = loaded else {
        return Ok(None);
    };
    let refused = |app: &crate::config::AppConfig, source| {
        (text_hash, AppError::Script { app: app.name.clone(), error: Box::new(source) }.to_string())
    };
    let mut compiled = Vec::with_capacity(texts.len());
    for (app, text) in config.apps.iter().zip(texts) {
        let text = text.map_err(|source| refused(app, source))?;
        let script = reload_script(&shared.config_reload, &current, &engine, &app.name, config.script_path(app), text);
        compiled.push(script.await.map_err(|source| refused(app, source))?);
    }
    tokio::task::spawn_blocking(move || {
        let apps = config
            .apps
            .iter()
            .zip(compiled)
            .map(|(app, compiled)| {
                let previous = current.apps.iter().find(|p| p.name() == app.name);
                App::build_after(&config, app, engine.clone(), compiled, previous)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| (text_hash, error.to_string()))?;
        Ok(Some((config, engine, apps)))
    })
    .await
    .map_err(|join| (0, format!("the reload task failed: {join}")))?
}

/// The compiled script of app `name` in a reloaded configuration: the one serving when neither
/// its text nor the bounds changed, else a new compile. A text that failed to compile under
/// these bounds fails again at once.
async fn reload_script(
    reload: &ConfigReload,
    current: &State,
    engine: &Arc<ScriptEngine>,
    name: &str,
    path: std::path::PathBuf,
    text: String,
) -> Result<crate::script::Compiled, crate::script::ScriptError> {
    let fingerprint = crate::scim::fingerprint(text.as_bytes());
    let serving = current.apps.iter().find(|app| app.name() == name).map(|app| app.script.compiled());
    if let Some(serving) =
        serving.filter(|s| Arc::ptr_eq(&current.engine, engine) && s.path() == path && s.fingerprint() == fingerprint)
    {
        return Ok((*serving).clone());
    }
    let key = crate::scim::fingerprint(format!("{}\0{fingerprint}\0{:?}", path.display(), engine.bounds()).as_bytes());
    if let Some(failed) = reload.failed_compiles.lock().ok().and_then(|failed| failed.get(&key).cloned()) {
        return Err(failed);
    }
    let compiled = engine.compile_in_time(text, &path).await;
    if let (Err(error), Ok(mut failed)) = (&compiled, reload.failed_compiles.lock()) {
        if failed.len() >= FAILED_COMPILES {
            failed.clear();
        }
        failed.insert(key, error.clone());
    }
    compiled
}

/// Checks every app's script for changes until shutdown (hot reload).
async fn watch_scripts(shared: Arc<Shared>, interval: Duration, stop: watch::Receiver<bool>) {
    server::every(interval, true, stop, || {
        let state = shared.state();
        async move {
            for app in &state.apps {
                crate::script::reload::check(&app.script, &app.reload).await;
            }
        }
    })
    .await;
}

/// One SCIM request: route, authenticate, read, perform, answer, and log one line; all of it,
/// and the script calls it makes on their own threads, within one `request` span that names
/// the request id (and the app, once routed, and the trace id when there is a trace), so every
/// line the request causes carries them.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>, connection: Connection) -> Response<Full<Bytes>> {
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
                let operation = routing::route(&method, rest, &path)?;
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
    let route = match (app, &operation) {
        (Some(app), Some(operation)) => format!("{}{}", app.config.base_path, operation.template()),
        _ => "-".to_owned(),
    };
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
                request_id = %request_id, app = app_name, op, %method, route = route.as_str(), status,
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
        trace.rename(|| if route == "-" { method.to_string() } else { format!("{method} {route}") });
        if route != "-" {
            trace.set("http.route", route.as_str());
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

impl Noted {
    /// The `log.bodies` line: the SCIM request and answer and every legacy call, redacted.
    fn log_bodies(&self, app: &App, request_id: &str, status: u16, answer: Option<&serde_json::Value>) {
        let redacted = |value: Option<&serde_json::Value>| {
            let mut value = value.cloned().unwrap_or(serde_json::Value::Null);
            let _ = app.redactor.redact(&mut value);
            value.to_string()
        };
        let mut calls = self.journal.entries();
        for call in &mut calls {
            for value in [&mut call.body, &mut call.reply].into_iter().flatten() {
                let _ = app.redactor.redact(value);
            }
        }
        tracing::info!(
            target: "scim_proxy::bodies",
            request_id,
            app = app.name(),
            method = %self.method,
            path = %self.target,
            request = %redacted(self.body.as_ref()),
            status,
            response = %redacted(answer),
            legacy = %serde_json::to_string(&calls).unwrap_or_default(),
            "bodies"
        );
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
    async fn finish(
        self,
        app: &App,
        response: Response<Full<Bytes>>,
        request_id: &str,
        log_bodies: bool,
    ) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt as _;
        let (mut parts, body) = response.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json = (!bytes.is_empty()).then(|| {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        });
        if log_bodies {
            self.log_bodies(app, request_id, parts.status.as_u16(), json.as_ref());
        }
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
            let mut detail = format!("dry run: nothing was written to the legacy app; {held_back} write(s) held back");
            let mut answered = serde_json::json!({ "status": parts.status.as_u16(), "body": json });
            if parts.status == http::StatusCode::INTERNAL_SERVER_ERROR {
                detail.push_str(
                    "; the 500 in `response` is what the mapping made of echoed writes, not a verdict on a real run (see response.explanation)",
                );
                answered["explanation"] = crate::script::journal::explain_fault(&calls).into();
            }
            let report = serde_json::json!({
                "schemas": [DRY_RUN_SCHEMA],
                "detail": detail,
                "legacyCalls": calls,
                "response": answered,
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
        if let Some(recorder) = app.recorder.as_ref().filter(|_| self.journal.is_recording()) {
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
    context: Context<'_>,
    app: &App,
    operation: &Operation,
    request: Request<Incoming>,
    noted: &mut Option<Noted>,
    kept_body: Option<&mut Option<(String, bool)>>,
) -> Result<operations::Reply, Error> {
    let Context { state, index, metrics, principal, request_id, stats, started, scim_addr, tls, body_budget, trace } =
        context;
    let scim_host = scim_addr.to_string();
    let (parts, body) = request.into_parts();
    let query = request::query_pairs(parts.uri.query());
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
        request::base_url(&parts.headers, state.server.trust_forwarded_headers, tls, &scim_host, &app.config.base_path);
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
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()))
}
