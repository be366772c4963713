//! A bearer token kept in a file (a mounted Kubernetes Secret), re-read when the file changes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Secret, weak_secret};

/// How often, at most, a request looks at the file's metadata.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One token file and the token last read from it.
#[derive(Debug)]
pub(crate) struct TokenFile {
    pub path: PathBuf,
    app: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    checked: Option<Instant>,
    /// Modification time and size when last read; `None` while the file is unreadable.
    stamp: Option<(Option<SystemTime>, u64)>,
    token: Option<Secret>,
    /// Whether the current problem (missing, empty) has been logged.
    reported: bool,
}

impl TokenFile {
    /// A token file; read on first use.
    pub(crate) fn new(app: &str, path: PathBuf) -> Self {
        Self { path, app: app.to_owned(), state: Mutex::default() }
    }

    /// Reads the file at start: a token in it that is too short or a placeholder is an
    /// error naming the file (the proxy does not start). A missing or empty file is not (a
    /// Secret may be mounted a moment later): it is logged and accepts nothing meanwhile.
    pub(crate) fn check_at_start(&self) -> Result<(), String> {
        let _ = self.token();
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let token = text.trim();
        match weak_secret(token).filter(|_| !token.is_empty()) {
            Some(problem) => Err(format!("{}: the token {problem}", self.path.display())),
            None => Ok(()),
        }
    }

    /// The token in the file now, or `None` when it is missing or empty (which accepts nothing).
    ///
    /// Called per request: at most once a second it stats the file, and reads it only when
    /// its modification time or size changed, so a rotated Secret is picked up within a second.
    pub(crate) fn token(&self) -> Option<Secret> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if state.checked.is_some_and(|at| now.duration_since(at) < CHECK_EVERY) {
            return state.token.clone();
        }
        state.checked = Some(now);
        let stamp = std::fs::metadata(&self.path).map(|m| (m.modified().ok(), m.len()));
        match stamp {
            Ok(stamp) if state.stamp == Some(stamp) => {}
            Ok(stamp) => {
                state.stamp = Some(stamp);
                let text = std::fs::read_to_string(&self.path).unwrap_or_default();
                let token = text.trim();
                if let Some(problem) = weak_secret(token).filter(|_| !token.is_empty()) {
                    // A rotation to a weak token is refused: the token read before keeps
                    // working (as a broken configuration edit keeps the running one).
                    tracing::error!(app = %self.app, file = %self.path.display(), problem = %problem, "bearer token file refused; the token read before it stays in use");
                    state.reported = true;
                } else if token.is_empty() {
                    state.token = None;
                    tracing::warn!(app = %self.app, file = %self.path.display(), "bearer token file is empty or unreadable; it accepts nothing");
                    state.reported = true;
                } else {
                    let first = state.token.is_none() && !state.reported;
                    state.token = Some(Secret::new(token));
                    state.reported = false;
                    if !first {
                        tracing::info!(app = %self.app, file = %self.path.display(), "bearer token file changed; the new token is accepted");
                    }
                }
            }
            Err(error) => {
                state.stamp = None;
                state.token = None;
                if !state.reported {
                    tracing::warn!(app = %self.app, file = %self.path.display(), %error, "bearer token file cannot be read; it accepts nothing");
                    state.reported = true;
                }
            }
        }
        state.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trims_and_notices_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let file = TokenFile::new("app", path.clone());
        assert!(file.token().is_none());
        std::fs::write(&path, "  a-token-from-a-secret\n").unwrap();
        // Within a second the last answer stands; after it the file is looked at again.
        assert!(file.token().is_none());
        file.state.lock().unwrap().checked = None;
        assert_eq!(file.token().unwrap().expose(), "a-token-from-a-secret");
        std::fs::write(&path, "\n").unwrap();
        file.state.lock().unwrap().checked = None;
        assert!(file.token().is_none());
    }
}
