//! Hot reload of mapping scripts: a changed file is compiled and swapped in; a broken one is refused.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AppScript, ScriptError};

/// What reloading has done for one app, shown by `/readyz`.
#[derive(Debug, Default)]
pub struct ReloadState {
    /// Scripts swapped in since start.
    pub reloads: AtomicU64,
    /// Edits refused since start.
    pub failures: AtomicU64,
    /// The last refused edit, `file:line:column: message`, until a good edit replaces it.
    pub last_error: Mutex<Option<String>>,
    /// A fingerprint of the script text last looked at: the one serving, or the last refused.
    fingerprint: Mutex<Option<u64>>,
}

impl ReloadState {
    /// The state of an app that starts serving the script compiled from text of this
    /// fingerprint ([`super::Compiled::fingerprint`]): the first change is the first reload.
    pub fn serving(fingerprint: u64) -> Self {
        Self { fingerprint: Mutex::new(Some(fingerprint)), ..Self::default() }
    }

    /// The last refused edit, if the serving script is not the file's current text.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Notes `fingerprint` as the text looked at; false when it was already the last one.
    fn note(&self, fingerprint: u64) -> bool {
        let Ok(mut seen) = self.fingerprint.lock() else { return false };
        seen.replace(fingerprint) != Some(fingerprint)
    }
}

/// Compiles the app's script file if its text changed, and swaps it in when it is sound.
///
/// The file's text is compared, not its modification time: a Kubernetes ConfigMap update
/// swaps a symlink, and some file systems keep whole-second times. Each text is looked at
/// once: a refused one (over `script.*`, not compiling in time, broken) is not compiled
/// again at every tick, and the next edit is looked at even while an abandoned compile of
/// an earlier one still runs.
pub async fn check(script: &AppScript, state: &ReloadState) {
    let path = script.compiled().path().to_path_buf();
    let engine = script.engine().clone();
    let reading = path.clone();
    // Reading a file is blocking work: keep it off the runtime threads.
    let Ok(read) = tokio::task::spawn_blocking(move || engine.read_source(&reading)).await else {
        return;
    };
    let text = match read {
        Ok(text) => text,
        // Over script.max_bytes: refused (once for each size met), without reading it whole.
        Err(too_big @ ScriptError::Refused { .. }) => {
            if state.note(crate::scim::fingerprint(too_big.to_string().as_bytes())) {
                refuse(script, state, &path, too_big.to_string(), (0, 0));
            }
            return;
        }
        // Unreadable for a moment (a ConfigMap's symlink swapped): the next tick reads it.
        Err(_) => return,
    };
    if !state.note(crate::scim::fingerprint(text.as_bytes())) {
        return;
    }
    match script.engine().compile_in_time(text, &path).await {
        Err(ScriptError::Compile { file, line, column, message }) => {
            refuse(script, state, &path, format!("{file}:{line}:{column}: {message}"), (line, column));
        }
        Err(other) => refuse(script, state, &path, other.to_string(), (0, 0)),
        Ok(compiled) => {
            if let Some(problem) = compiled.contract_problems().into_iter().next() {
                refuse(script, state, &path, problem, (0, 0));
                return;
            }
            script.replace(compiled);
            state.reloads.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = state.last_error.lock() {
                *last = None;
            }
            tracing::info!(app = script.app(), file = %path.display(), "script reloaded");
        }
    }
}

/// Reports a refused edit: the previous script keeps serving.
fn refuse(script: &AppScript, state: &ReloadState, path: &Path, message: String, (line, column): (usize, usize)) {
    tracing::warn!(app = script.app(), file = %path.display(), line, column, error = %message, "script reload refused; the previous script keeps serving");
    // The error first: whoever sees the count go up (`/readyz`) finds the error it counts.
    if let Ok(mut last) = state.last_error.lock() {
        *last = Some(message);
    }
    state.failures.fetch_add(1, Ordering::Release);
}
