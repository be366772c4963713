//! Configuration reloads: the file read again, validated whole, and swapped in (or refused,
//! with the running configuration left serving); and the timers that look for changed
//! configuration and script files.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::app::{App, AppError};
use crate::config::Config;
use crate::script::ScriptEngine;
use crate::state::{ConfigReload, Shared, State};

/// How many failed compiles a configuration reload remembers.
pub(crate) const FAILED_COMPILES: usize = 64;

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
            let restart = crate::runtime::restart_only::changed(&shared.started_with, &config);
            if !restart.is_empty() {
                tracing::warn!(
                    keys = %restart.join(", "),
                    "configuration reload: these keys changed and take effect at the next restart; the rest is applied"
                );
            }
            let config = crate::runtime::restart_only::in_force(config, &shared.started_with);
            let (file, count) = (config.file.clone(), config.apps.len());
            let fingerprint = config.fingerprint;
            let state = State::new(config, apps.into_iter().map(Arc::new).collect(), engine);
            // New apps answer /readyz by their health() from the start.
            for app in &state.apps {
                let _ = crate::app::health::check(app, &shared.metrics).await;
            }
            let names: Vec<&str> = state.apps.iter().map(|app| app.name()).collect();
            shared.recent.retain(&names, state.admin.recent_requests, state.admin.keeps_requests());
            shared.metrics.reloaded(&names);
            shared.replace_state(state);
            reload.fingerprint.store(fingerprint, Ordering::SeqCst);
            reload.refused_text.store(0, Ordering::SeqCst);
            if let Ok(mut failed) = reload.failed_compiles.lock() {
                failed.clear();
            }
            reload.reloads.fetch_add(1, Ordering::Relaxed);
            reload.set_error(None);
            tracing::info!(file = %file.display(), apps = count, "configuration reloaded");
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
                let previous = current.apps.iter().find(|p| p.name() == app.name).map(|p| &**p);
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

/// Swaps in the script of app `name` that `script::reload::check` found changed and sound: the
/// app is built again around it from the configuration in force — its Groups, schemas and
/// capabilities follow the new script — and takes over the running app's ID cache, locks,
/// script slots and reload history. Requests under way finish with the app they started with.
/// One swap or configuration reload at a time.
pub(crate) async fn swap_script(shared: &Arc<Shared>, name: &str, compiled: crate::script::Compiled) {
    let _one_at_a_time = shared.config_reload.running.lock().await;
    let current = shared.state();
    let path = compiled.path().to_path_buf();
    // A configuration reload since the look may have replaced the app, or moved its script.
    let Some(previous) =
        current.apps.iter().find(|app| app.name() == name && app.script.compiled().path() == path).cloned()
    else {
        return;
    };
    let (config, engine) = (current.config.clone(), previous.script.engine().clone());
    let building = previous.clone();
    let built = tokio::task::spawn_blocking(move || {
        App::build_after(&config, &building.config, engine, compiled, Some(&building))
    })
    .await;
    match built {
        Ok(Ok(app)) => {
            shared.replace_state(current.with_app(app));
            previous.reload.swapped(name, &path);
        }
        Ok(Err(error)) => previous.reload.refused(name, &path, error.to_string(), (0, 0)),
        Err(join) => previous.reload.refused(name, &path, format!("building the app failed: {join}"), (0, 0)),
    }
}
