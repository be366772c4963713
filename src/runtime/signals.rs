//! The signals that stop the process: SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C).

/// A listener for the stop signals, installed when made: make it before anything can send
/// one (before the listeners are bound), or a signal that arrives first ends the process with
/// the default action instead of a drain.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers. Must run inside the runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate()).ok();
            let interrupt = signal(SignalKind::interrupt()).ok();
            if term.is_none() || interrupt.is_none() {
                tracing::warn!("cannot listen for SIGTERM or SIGINT: stop the process with SIGKILL");
            }
            Self { term, interrupt }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            let term = async {
                match self.term.as_mut() {
                    Some(term) => term.recv().await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(interrupt) => interrupt.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = interrupt => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
