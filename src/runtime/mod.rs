//! The running proxy: start-up (apps built, listeners bound, periodic tasks started), the
//! state a reload replaces, and shutdown.
//!
//! The composition root: may import every module on the request path; only `authoring` and
//! the commands in `main.rs` import it.

pub(crate) mod reload;
pub(crate) mod restart_only;
pub mod signals;
pub(crate) mod tasks;
pub mod workers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use reload::{Reloaded, reload_config};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin;
use crate::app::{App, AppError};
use crate::config::Config;
use crate::listener::server::{self, ConnLimits};
use crate::listener::tls;
use crate::observe::metrics::Metrics;
use crate::observe::trace::Tracer;
use crate::pipeline::handle::handle;
use crate::script::ScriptEngine;
use crate::state::recent::RecentRequests;
use crate::state::{ConfigReload, Listeners, Shared, State};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An app could not be set up: its script or its schema settings.
    #[error(transparent)]
    App(#[from] AppError),
    /// The cause is in the message, not the error's source: shown once wherever it is printed.
    #[error("cannot listen on {addr} ({error})")]
    Bind {
        /// The address of `listen` or `admin_listen`.
        addr: SocketAddr,
        /// Why the socket could not be bound.
        error: std::io::Error,
    },
    /// The SCIM listener's certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The trace exporter could not be started; the message says why.
    #[error("{0}")]
    Traces(String),
}

/// A running proxy: its bound addresses and a way to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where the SCIM listener was bound (the port chosen when `listen` asked for port 0).
    pub scim_addr: SocketAddr,
    /// Where the admin listener was bound.
    pub admin_addr: SocketAddr,
    /// The state every request handler shares: the apps now serving and their counters.
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
    let state = RwLock::new(Arc::new(State::new(config.clone(), apps.into_iter().map(Arc::new).collect(), engine)));
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
        crate::pipeline::response::cut_short,
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
        crate::pipeline::response::cut_short,
        admin_limits,
        shared.listeners.admin.clone(),
        None,
        stopped.clone(),
    ));
    let stopped_reload = stopped.clone();
    let mut tasks = vec![scim, admin];
    if !config.server.health_interval.is_zero() {
        tasks.push(tokio::spawn(tasks::watch_health(shared.clone(), config.server.health_interval, stopped.clone())));
    }
    if !config.server.config_reload_interval.is_zero() && shared.config_reload.path.is_some() {
        tasks.push(tokio::spawn(tasks::watch_config(
            shared.clone(),
            config.server.config_reload_interval,
            stopped.clone(),
        )));
    }
    if let (Some(tls), Some(settings)) = (&tls, &config.tls) {
        if !settings.reload_interval.is_zero() {
            let certificate = tls.certificate.clone();
            tasks.push(tokio::spawn(tls::watch_files(certificate, settings.reload_interval, stopped.clone())));
        }
    }
    if !config.server.script_reload_interval.is_zero() {
        tasks.push(tokio::spawn(tasks::watch_scripts(
            shared.clone(),
            config.server.script_reload_interval,
            stopped_reload,
        )));
    }
    // Last: shutdown awaits the tasks in turn, and the exporter sends the spans of the
    // requests the listener drained.
    tasks.extend(exporter);
    shared.ready.store(true, Ordering::SeqCst);
    for app in &shared.state().apps {
        tracing::info!(app = app.name(), base_path = %app.config.base_path, script = %app.script.compiled().path().display(), legacy = %app.config.legacy.base_url, "app ready");
    }
    let runtime_threads = crate::listener::shards::serving_threads();
    tracing::info!(%scim_addr, %admin_addr, runtime_threads, "listening");
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
