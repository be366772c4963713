//! The periodic tasks of a running proxy, each until shutdown: the legacy apps' health checks,
//! and the look-outs for a changed configuration or script file.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::listener::server;
use crate::state::Shared;

/// Checks every app now and then every `interval`, until shutdown.
pub(crate) async fn watch_health(shared: Arc<Shared>, interval: Duration, stop: watch::Receiver<bool>) {
    server::every(interval, true, stop, || check_all(&shared)).await;
}

/// Checks every app of the state now serving.
pub(crate) async fn check_all(shared: &Shared) {
    let state = shared.state();
    for app in &state.apps {
        let _ = crate::app::health::check(app, &shared.metrics).await;
    }
}

/// Reloads the configuration whenever it changes, until shutdown.
pub(crate) async fn watch_config(shared: Arc<Shared>, interval: Duration, stop: watch::Receiver<bool>) {
    server::every(interval, false, stop, || async {
        super::reload_config(&shared).await;
    })
    .await;
}

/// Checks every app's script for changes until shutdown (hot reload).
pub(crate) async fn watch_scripts(shared: Arc<Shared>, interval: Duration, stop: watch::Receiver<bool>) {
    server::every(interval, true, stop, || {
        let (shared, state) = (shared.clone(), shared.state());
        async move {
            for app in &state.apps {
                if let Some(compiled) = crate::script::reload::check(&app.script, &app.reload).await {
                    super::reload::swap_script(&shared, app.name(), compiled).await;
                }
            }
        }
    })
    .await;
}
