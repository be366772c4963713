//! Hot reload of mapping scripts: a changed file is compiled and, when sound, handed over to be
//! swapped in (the app is built again around it); a broken or unreadable one is reported.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{AppScript, Compiled, ScriptError};

/// What reloading has done for one app, shown by `/readyz`.
#[derive(Debug, Default)]
pub(crate) struct ReloadState {
    /// Scripts swapped in since start.
    pub reloads: AtomicU64,
    /// Edits refused since start.
    pub failures: AtomicU64,
    /// The last refused edit, `file:line:column: message`, until a good edit replaces it.
    pub last_error: Mutex<Option<String>>,
    /// A fingerprint of the script text last looked at: the one serving, or the last refused.
    fingerprint: Mutex<Option<u64>>,
    /// Why the script file cannot be read, once it could not be on [`UNREADABLE_TICKS`] looks
    /// in a row; cleared when it can be again.
    unreadable: Mutex<Option<String>>,
    /// Looks in a row at which the file could not be read.
    misses: AtomicU32,
}

/// Looks in a row at which a script file must be unreadable before it is reported: a
/// Kubernetes ConfigMap update swaps a symlink, and one look may fall in between.
const UNREADABLE_TICKS: u32 = 2;

impl ReloadState {
    /// The state of an app that starts serving the script compiled from text of this
    /// fingerprint ([`super::Compiled::fingerprint`]): the first change is the first reload.
    pub(crate) fn serving(fingerprint: u64) -> Self {
        Self { fingerprint: Mutex::new(Some(fingerprint)), ..Self::default() }
    }

    /// Notes the script now serving, built from text of this fingerprint, when an app taking
    /// over this state is built (a reload of its configuration or of its script).
    pub(crate) fn serve(&self, fingerprint: u64) {
        self.note(fingerprint);
    }

    /// Why the serving script is not the file's current text: the file cannot be read, or the
    /// last edit was refused.
    pub(crate) fn last_error(&self) -> Option<String> {
        let unreadable = self.unreadable.lock().ok().and_then(|e| e.clone());
        unreadable.or_else(|| self.last_error.lock().ok().and_then(|e| e.clone()))
    }

    /// Notes a script swapped in: reloads counts it, and no error stands any more.
    pub(crate) fn swapped(&self, app: &str, path: &Path) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        tracing::info!(app, file = %path.display(), "script reloaded");
    }

    /// Reports a refused edit: the previous script keeps serving.
    pub(crate) fn refused(&self, app: &str, path: &Path, message: String, (line, column): (usize, usize)) {
        tracing::warn!(app, file = %path.display(), line, column, error = %message, "script reload refused; the previous script keeps serving");
        // The error first: whoever sees the count go up (`/readyz`) finds the error it counts.
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message);
        }
        self.failures.fetch_add(1, Ordering::Release);
    }

    /// Notes a look at which the file could not be read; reported (once) from the
    /// [`UNREADABLE_TICKS`]th look in a row.
    fn missed(&self, app: &str, path: &Path, error: &ScriptError) {
        if self.misses.fetch_add(1, Ordering::Relaxed) + 1 < UNREADABLE_TICKS {
            return;
        }
        let Ok(mut unreadable) = self.unreadable.lock() else { return };
        if unreadable.is_none() {
            tracing::warn!(app, file = %path.display(), error = %error, "script file cannot be read; the script loaded before keeps serving");
            *unreadable = Some(format!("cannot read the script file; the script loaded before keeps serving: {error}"));
        }
    }

    /// Notes a look at which the file could be read.
    fn read(&self, app: &str, path: &Path) {
        self.misses.store(0, Ordering::Relaxed);
        if let Ok(mut unreadable) = self.unreadable.lock() {
            if unreadable.take().is_some() {
                tracing::info!(app, file = %path.display(), "script file readable again");
            }
        }
    }

    /// Notes `fingerprint` as the text looked at; false when it was already the last one.
    fn note(&self, fingerprint: u64) -> bool {
        let Ok(mut seen) = self.fingerprint.lock() else { return false };
        seen.replace(fingerprint) != Some(fingerprint)
    }
}

/// Compiles the app's script file if its text changed, and returns it when it is sound, for the
/// caller to swap in (`runtime::reload::swap_script`); a refused or unreadable file is reported
/// here, and the script serving stays.
///
/// The file's text is compared, not its modification time: a Kubernetes ConfigMap update
/// swaps a symlink, and some file systems keep whole-second times. Each text is looked at
/// once: a refused one (over `script.*`, not compiling in time, broken) is not compiled
/// again at every tick, and the next edit is looked at even while an abandoned compile of
/// an earlier one still runs.
pub(crate) async fn check(script: &AppScript, state: &ReloadState) -> Option<Compiled> {
    let path = script.compiled().path().to_path_buf();
    let engine = script.engine().clone();
    let reading = path.clone();
    // Reading a file is blocking work: keep it off the runtime threads.
    let read = tokio::task::spawn_blocking(move || engine.read_source(&reading)).await.ok()?;
    let text = match read {
        Ok(text) => text,
        // Over script.max_bytes: refused (once for each size met), without reading it whole.
        Err(too_big @ ScriptError::Refused { .. }) => {
            state.read(script.app(), &path);
            if state.note(crate::scim::fingerprint(too_big.to_string().as_bytes())) {
                state.refused(script.app(), &path, too_big.to_string(), (0, 0));
            }
            return None;
        }
        Err(unreadable) => {
            state.missed(script.app(), &path, &unreadable);
            return None;
        }
    };
    state.read(script.app(), &path);
    if !state.note(crate::scim::fingerprint(text.as_bytes())) {
        return None;
    }
    match script.engine().compile_in_time(text, &path).await {
        Err(ScriptError::Compile { file, line, column, message }) => {
            state.refused(script.app(), &path, format!("{file}:{line}:{column}: {message}"), (line, column));
            None
        }
        Err(other) => {
            state.refused(script.app(), &path, other.to_string(), (0, 0));
            None
        }
        Ok(compiled) => match compiled.contract_problems().into_iter().next() {
            Some(problem) => {
                state.refused(script.app(), &path, problem, (0, 0));
                None
            }
            None => Some(compiled),
        },
    }
}
