//! The process's async runtime: a single thread when the proxy has one core to run on, one
//! worker a core otherwise.
//!
//! A multi-threaded runtime is built for workers that share work (queues others may steal
//! from, parking that hands the I/O driver between threads); with one worker that is cost
//! without use. Measured on the sidecar layout (`LOAD_PIN=1 cargo bench --bench load`, the two
//! builds side by side), the single-threaded runtime served the same requests at 0.77–0.92×
//! the CPU a request; see docs/performance.md.

use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// The variable that sets how many threads the runtime has: tokio's own name for it.
const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

/// Builds the runtime the proxy serves on: `TOKIO_WORKER_THREADS` threads when it is set, else
/// one a core the process may use (its CPU affinity and its cgroup's CPU limit, as
/// [`std::thread::available_parallelism`] counts them: `limits.cpu: 1` or less is one). One
/// thread is tokio's single-threaded runtime. Runs once, at start.
pub fn build() -> Result<Runtime, String> {
    let set = std::env::var(WORKER_THREADS_VAR).ok();
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    builder(workers(set.as_deref(), cores)?).build().map_err(|e| e.to_string())
}

/// A runtime of `threads` threads, I/O and time enabled.
fn builder(threads: usize) -> Builder {
    let mut builder = if threads == 1 {
        Builder::new_current_thread()
    } else {
        let mut builder = Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all();
    builder
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
    fn one_thread_is_the_single_threaded_runtime() {
        let one = builder(workers(None, 1).unwrap()).build().unwrap();
        assert_eq!(one.handle().runtime_flavor(), tokio::runtime::RuntimeFlavor::CurrentThread);
        let two = builder(workers(Some("2"), 1).unwrap()).build().unwrap();
        assert_eq!(two.handle().runtime_flavor(), tokio::runtime::RuntimeFlavor::MultiThread);
        assert_eq!(two.metrics().num_workers(), 2);
    }
}
