//! The threads the proxy serves on: one when it has one core to run on, one a core otherwise,
//! each a single-threaded runtime of its own that serves the connections handed to it.
//!
//! A multi-threaded runtime is built for workers that share work (queues others may steal
//! from, parking that hands the I/O driver between threads, a request's steps run on whichever
//! worker is free); that sharing is paid on every request. Measured with `cargo bench --bench
//! load`, the two builds side by side: on one core the single-threaded runtime served the same
//! requests at 0.77–0.92× the CPU a request of a multi-threaded runtime with one worker, and on
//! two cores, at 32 connections, two serving threads at 0.63–0.87× the CPU and 1.18–1.52× the
//! throughput of a multi-threaded runtime with two workers; see docs/performance.md.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;

use crate::listener::shards::{self, Shards};

/// The variable that sets how many threads the runtime has: tokio's own name for it.
const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

/// The threads the proxy serves on: the thread that builds them, with a single-threaded
/// runtime, and as many more serving threads as it has cores past the first (see
/// [`crate::listener::shards`]).
#[derive(Debug)]
pub struct Workers {
    runtime: Runtime,
    shards: Option<Arc<Shards>>,
    /// Each serving thread ends when its sender is dropped.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Runs `future` on this thread to its end, the connections it accepts served on every
    /// serving thread.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        crate::legacy::keep_connections_on_this_thread(true);
        let _accepting = self.shards.clone().map(shards::accept_for);
        self.runtime.block_on(future)
    }
}

/// Builds the threads the proxy serves on: `TOKIO_WORKER_THREADS` threads when it is set, else
/// one a core the process may use (its CPU affinity and its cgroup's CPU limit, as
/// [`std::thread::available_parallelism`] counts them: `limits.cpu: 1` or less is one). Runs
/// once, at start.
pub fn build() -> Result<Workers, String> {
    let set = std::env::var(WORKER_THREADS_VAR).ok();
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    with_threads(workers(set.as_deref(), cores)?)
}

/// The thread that calls it and `threads - 1` serving threads more.
fn with_threads(threads: usize) -> Result<Workers, String> {
    let runtime = single_threaded()?;
    if threads == 1 {
        return Ok(Workers { runtime, shards: None, _stop: Vec::new() });
    }
    let mut handles = vec![runtime.handle().clone()];
    let mut stop = Vec::new();
    for n in 1..threads {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("scim-serve-{n}"))
            .spawn(move || {
                let runtime = match single_threaded() {
                    Ok(runtime) => runtime,
                    Err(error) => return drop(handle_tx.send(Err(error))),
                };
                crate::legacy::keep_connections_on_this_thread(true);
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| format!("cannot start serving thread {n}: {e}"))?;
        let handle = handle_rx.recv().map_err(|_| format!("serving thread {n} ended at start"))??;
        handles.push(handle);
        stop.push(stop_tx);
    }
    Ok(Workers { runtime, shards: Some(Shards::new(handles)), _stop: stop })
}

/// A single-threaded runtime, I/O and time enabled.
fn single_threaded() -> Result<Runtime, String> {
    Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// How many threads the runtime gets: the variable's count when it is set, else `cores`.
fn workers(set: Option<&str>, cores: usize) -> Result<usize, String> {
    let Some(text) = set else { return Ok(cores.max(1)) };
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{WORKER_THREADS_VAR} is {text:?}: it must be a whole number of threads, 1 or more")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cores_the_process_may_use_decide_unless_the_variable_is_set() {
        assert_eq!(workers(None, 1), Ok(1));
        assert_eq!(workers(None, 8), Ok(8));
        assert_eq!(workers(Some("1"), 8), Ok(1));
        assert_eq!(workers(Some(" 3 "), 1), Ok(3));
    }

    #[test]
    fn a_count_that_is_not_one_or_more_threads_is_refused_with_the_variable_named() {
        for bad in ["0", "", "two", "-1", "1.5"] {
            let error = workers(Some(bad), 2).unwrap_err();
            assert!(error.starts_with("TOKIO_WORKER_THREADS is"), "{error}");
            assert!(error.contains("1 or more"), "{error}");
        }
    }

    #[test]
    fn each_serving_thread_is_a_single_threaded_runtime_and_one_thread_is_just_this_one() {
        let one = with_threads(1).unwrap();
        let (flavor, count) = one.block_on(async {
            (tokio::runtime::Handle::current().runtime_flavor(), crate::listener::shards::serving_threads())
        });
        assert_eq!((flavor, count), (tokio::runtime::RuntimeFlavor::CurrentThread, 1));
        let two = with_threads(2).unwrap();
        let (flavor, count) = two.block_on(async {
            (tokio::runtime::Handle::current().runtime_flavor(), crate::listener::shards::serving_threads())
        });
        assert_eq!((flavor, count), (tokio::runtime::RuntimeFlavor::CurrentThread, 2));
        assert!(two.shards.as_ref().is_some_and(|shards| shards.count() == 2));
    }
}
