//! What every request handler shares: the apps and settings now serving (which a configuration
//! reload swaps whole), the listeners' counters, what reloads have done, and each app's recent
//! requests.
//!
//! May import: `app`, `listener`, `observe`, `recording`, `script`, `config`.

pub mod recent;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use recent::RecentRequests;

use crate::app::App;
use crate::config::{AdminConfig, Config, ServerConfig};
use crate::listener::{server, tls};
use crate::observe::metrics::Metrics;
use crate::observe::trace::Tracer;
use crate::script::ScriptEngine;

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    /// The apps and server settings now serving; a configuration reload swaps them whole.
    pub(crate) state: RwLock<Arc<State>>,
    /// The address the SCIM listener is bound to, the host of last resort for `meta.location`.
    pub(crate) scim_addr: SocketAddr,
    /// False until start-up is complete and again once shutdown begins.
    pub(crate) ready: AtomicBool,
    pub(crate) metrics: Arc<Metrics>,
    /// What `/metrics` reads of the listeners.
    pub(crate) listeners: Listeners,
    /// What configuration reloads have done.
    pub(crate) config_reload: ConfigReload,
    /// The last requests of each app, for the admin listener's `/requests`.
    pub recent: RecentRequests,
    /// The configuration the proxy started with: what a reload compares the keys only a
    /// restart applies with, and keeps in force.
    pub(crate) started_with: Config,
    /// Where request spans go; none when traces are off.
    pub(crate) tracer: Option<Arc<Tracer>>,
}

/// The listeners' connections, and the certificate the SCIM listener serves, for `/metrics`.
#[derive(Debug)]
pub(crate) struct Listeners {
    pub scim: Arc<server::Connections>,
    pub admin: Arc<server::Connections>,
    pub certificate: Option<Arc<tls::RotatingCertificate>>,
}

/// What configuration reloads have done, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ConfigReload {
    /// The file reloads read; none for a configuration that was not read from a file.
    pub(crate) path: Option<std::path::PathBuf>,
    /// The variable overrides the configuration was first read with (the demo's, say).
    pub(crate) overrides: std::collections::BTreeMap<String, String>,
    pub reloads: AtomicU64,
    pub failures: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
    /// The fingerprint of the configuration now serving.
    pub(crate) fingerprint: AtomicU64,
    /// A hash of the file text last refused, so the same broken edit is reported once.
    pub(crate) refused_text: AtomicU64,
    /// Scripts that failed to compile at a reload, by path, text and bounds: while an edit
    /// stays refused, its script is not compiled again at every tick (a slow one would leave
    /// an abandoned compile running at each). At most [`FAILED_COMPILES`], cleared when a
    /// reload is applied.
    pub(crate) failed_compiles: Mutex<std::collections::HashMap<u64, crate::script::ScriptError>>,
    /// One reload at a time (the timer and SIGHUP may meet).
    pub(crate) running: tokio::sync::Mutex<()>,
}

impl ConfigReload {
    /// The last refused edit, until a good one replaces it.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// What a configuration reload replaces: the apps (scripts, schemas, clients) and the
/// request limits. Requests under way finish with the state they started with.
#[derive(Debug)]
pub struct State {
    /// The apps, each shared so that a reload of one app's script replaces that app alone.
    pub apps: Vec<Arc<App>>,
    /// The `server` section now in force: timeouts, limits and shutdown times.
    pub server: ServerConfig,
    /// `log.bodies`: each request's bodies are logged, redacted.
    pub(crate) log_bodies: bool,
    /// Who may see `/requests`, and how many requests of each app it keeps.
    pub admin: AdminConfig,
    /// The engine of the `script.*` bounds now in force, which reloads compile with.
    pub(crate) engine: Arc<ScriptEngine>,
    /// The configuration in force, which an app is built again from when its script changes.
    pub(crate) config: Arc<Config>,
}

impl State {
    /// The state of a configuration in force, its apps built with `engine`.
    pub(crate) fn new(config: Config, apps: Vec<Arc<App>>, engine: Arc<ScriptEngine>) -> Self {
        Self {
            apps,
            server: config.server.clone(),
            log_bodies: config.log.bodies,
            admin: config.admin.clone(),
            engine,
            config: Arc::new(config),
        }
    }

    /// This state with `app` in the place of the app of the same name.
    pub(crate) fn with_app(&self, app: App) -> Self {
        let app = Arc::new(app);
        let apps = self.apps.iter().map(|a| if a.name() == app.name() { app.clone() } else { a.clone() }).collect();
        Self {
            apps,
            server: self.server.clone(),
            log_bodies: self.log_bodies,
            admin: self.admin.clone(),
            engine: self.engine.clone(),
            config: self.config.clone(),
        }
    }
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
    pub(crate) fn replace_state(&self, state: State) {
        let mut guard = match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(state);
    }
}
