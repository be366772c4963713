//! Hot reload of mapping scripts: a changed file is compiled and swapped in; a broken one is refused.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::AppScript;

/// What reloading has done for one app, shown by `/readyz`.
#[derive(Debug, Default)]
pub struct ReloadState {
    /// Scripts swapped in since start.
    pub reloads: AtomicU64,
    /// Edits refused since start.
    pub failures: AtomicU64,
    /// The last refused edit, `file:line:column: message`, until a good edit replaces it.
    pub last_error: Mutex<Option<String>>,
    /// A fingerprint of the script text now serving.
    fingerprint: Mutex<Option<u64>>,
}

impl ReloadState {
    /// The last refused edit, if the serving script is not the file's current text.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Compiles the app's script file if its text changed, and swaps it in when it is sound.
///
/// The file's text is compared, not its modification time: a Kubernetes ConfigMap update
/// swaps a symlink, and some file systems keep whole-second times.
pub fn check(script: &AppScript, state: &ReloadState) {
    let path = script.compiled().path().to_path_buf();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let fingerprint = crate::scim::fingerprint(text.as_bytes());
    {
        let Ok(mut seen) = state.fingerprint.lock() else { return };
        match *seen {
            Some(old) if old == fingerprint => return,
            None => {
                // The first look records the text the app started with.
                *seen = Some(fingerprint);
                return;
            }
            _ => *seen = Some(fingerprint),
        }
    }
    let refused = |message: String, line: usize, column: usize| {
        state.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(app = script.app(), file = %path.display(), line, column, error = %message, "script reload refused; the previous script keeps serving");
        if let Ok(mut last) = state.last_error.lock() {
            *last = Some(message);
        }
    };
    match script.engine().compile(&text, &path) {
        Err(super::ScriptError::Compile { file, line, column, message }) => {
            refused(format!("{file}:{line}:{column}: {message}"), line, column);
        }
        Err(other) => refused(other.to_string(), 0, 0),
        Ok(compiled) => {
            if let Some(problem) = compiled.contract_problems().into_iter().next() {
                refused(problem, 0, 0);
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
