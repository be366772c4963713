//! The threads script calls go on on once they have run long in their fiber on a runtime
//! worker (or run on from their start, when no stack could be mapped for a fiber): started on
//! demand with a stack big enough for Rhai's own recursion, kept a while when idle, shared by
//! every app of the process.
//!
//! Rhai measures, clones and drops nested maps and arrays recursively, so how deep a value a
//! script can build is bounded by the stack of the thread running it, not by an engine limit;
//! past it the whole process aborts. The blocking pool's threads have tokio's default 2 MiB
//! (about 4,500 levels), reached by a script in a few seconds. Rhai measures a value whole each
//! time it grows, so nesting costs time quadratic in the depth (10,000 levels take about 4 s):
//! within the longest `request_timeout` allowed (1 h) a script reaches about 300,000 levels,
//! which need some 140 MiB of stack. [`STACK_BYTES`] is reserved, not committed: a thread (or
//! a fiber) uses the memory only of the depth it reaches.
//!
//! Each thread drives its script's legacy calls itself, on a runtime of its own, with
//! connections of its own ([`crate::legacy::keep_connections_on_this_thread`]): a request
//! crosses threads once on its way to its script and once back, however many legacy calls the
//! script makes, and no other thread is woken for a legacy answer. A script thread runs one
//! call at a time, so a slow legacy app or a long script holds up its own request only.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The stack of each script thread, and of each script call's fiber (`super::fiber`).
pub(super) const STACK_BYTES: usize = 256 * 1024 * 1024;

/// How long an idle thread waits for work before it ends.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// An idle thread's mailbox: the job handed to it, and its wake-up call.
#[derive(Default)]
struct Mailbox {
    job: Mutex<Option<Job>>,
    wake: Condvar,
}

/// The idle threads, the one idle since the shortest time last. A job goes to that one: its
/// caches, runtime and legacy connections are the warmest, and under light load a few threads
/// do all the work while the others end after [`KEEP_ALIVE`].
static IDLE: Mutex<Vec<Arc<Mailbox>>> = Mutex::new(Vec::new());

fn idle() -> MutexGuard<'static, Vec<Arc<Mailbox>>> {
    // No job runs under these locks, so a poisoned one is still consistent.
    IDLE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn mail(mailbox: &Mailbox) -> MutexGuard<'_, Option<Job>> {
    mailbox.job.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `job` on a script thread and gives its result; `Err` when no thread could be started.
///
/// The job runs to its end even when the receiver is dropped (an abandoned request), so a
/// legacy write it makes is never cut in half. A job that panics gives no result: the
/// receiver sees its sender dropped.
pub(super) fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<tokio::sync::oneshot::Receiver<T>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = sender.send(job());
    });
    let mut idle = idle();
    if let Some(mailbox) = idle.pop() {
        // Handed over under the idle list's lock: a thread giving up waiting looks for a job
        // under it too, so a job is never left in the box of a thread that has ended.
        *mail(&mailbox) = Some(job);
        mailbox.wake.notify_one();
        return Ok(receiver);
    }
    drop(idle);
    // No thread is idle: one more is started. The number of threads follows the script calls
    // running at once, which the apps' slots bound.
    std::thread::Builder::new().name("scim-script".into()).stack_size(STACK_BYTES).spawn(move || work(job))?;
    Ok(receiver)
}

thread_local! {
    /// The runtime a script thread drives its legacy calls on; `None` on other threads, and
    /// on a script thread whose runtime could not be made.
    static OWN_RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Runs `future` to its end: on this script thread's own runtime, or on `elsewhere` (the
/// process's runtime) when the thread has none.
///
/// The thread's connections are watched only while the thread waits on its runtime: a
/// legacy server may have closed one while the thread ran script code or waited for work.
/// After such a pause ([`UNWATCHED`]), the runtime first takes in what its connections heard
/// meanwhile (two turns: one to poll for I/O, one to run the connections' tasks), so that a
/// connection the server closed is dropped from the pool before a call could be sent on it.
/// A thread that turned its runtime a moment ago has seen it all already.
pub(crate) fn block_on<F: Future>(future: F, elsewhere: &tokio::runtime::Handle) -> F::Output {
    OWN_RUNTIME.with_borrow(|own| match own {
        Some(runtime) => {
            let paused = LAST_TURN.get().is_none_or(|last| last.elapsed() > UNWATCHED);
            let output = runtime.block_on(async {
                if paused {
                    catch_up().await;
                }
                future.await
            });
            LAST_TURN.set(Some(Instant::now()));
            output
        }
        None => elsewhere.block_on(future),
    })
}

/// Two turns of the thread's runtime: one to poll for I/O, one to run the tasks it woke (its
/// connections'), so that what they heard, or were told, while the thread was elsewhere is done.
async fn catch_up() {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
}

/// How long a thread's connections may go unwatched before a call looks at them first.
const UNWATCHED: Duration = Duration::from_millis(20);

thread_local! {
    /// When this thread's runtime last ended a turn.
    static LAST_TURN: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A script thread: its own runtime made, then its jobs.
fn work(first: Job) {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => {
            crate::legacy::keep_connections_on_this_thread(false);
            OWN_RUNTIME.set(Some(runtime));
        }
        Err(error) => {
            tracing::warn!(error = %error, "a script thread could not make a runtime: its legacy calls run on the process's");
        }
    }
    serve(first);
    // Dropped while the thread is whole, not among its thread-locals' destructors.
    drop(OWN_RUNTIME.take());
}

/// The jobs of a script thread: its first, then each one handed to it, until it has been
/// idle for [`KEEP_ALIVE`].
fn serve(first: Job) {
    run_and_settle(first);
    let mailbox = Arc::new(Mailbox::default());
    loop {
        idle().push(mailbox.clone());
        let mut job = mail(&mailbox);
        let waiting = Instant::now();
        while job.is_none() {
            let left = KEEP_ALIVE.saturating_sub(waiting.elapsed());
            if left.is_zero() {
                break;
            }
            job = mailbox.wake.wait_timeout(job, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        let next = match job.take() {
            Some(next) => next,
            None => {
                drop(job);
                // Taken off the list, unless a job was handed over meanwhile.
                let mut idle = idle();
                match mail(&mailbox).take() {
                    Some(next) => next,
                    None => {
                        idle.retain(|other| !Arc::ptr_eq(other, &mailbox));
                        return;
                    }
                }
            }
        };
        run_and_settle(next);
    }
}

/// Runs a job, then lets the thread's runtime run what the job's legacy calls left ready: a
/// connection whose answer was refused unread (over `max_response_bytes`, a token answer too
/// large) is closed then, not when the thread next makes a call.
fn run_and_settle(job: Job) {
    run_one(job);
    OWN_RUNTIME.with_borrow(|own| {
        if let Some(runtime) = own {
            runtime.block_on(catch_up());
        }
    });
}

fn run_one(job: Job) {
    // A panicking job loses its own result only; the thread goes on serving.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_big_stacks_and_a_panic_loses_only_its_own_result() {
        // 64 MiB on the stack: far past the 2 MiB of a blocking-pool thread.
        fn deep(n: usize) -> usize {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 { pad[0] as usize } else { deep(n - 1) + pad[n % 1024] as usize }
        }
        assert_eq!(run(|| deep(64 * 1024)).unwrap().await.unwrap(), 0);
        let panicked = run(|| -> usize { panic!("a script thread panics") }).unwrap();
        assert!(panicked.await.is_err());
        let many: Vec<_> = (0..8).map(|i| run(move || i * 2).unwrap()).collect();
        let mut results = Vec::new();
        for receiver in many {
            results.push(receiver.await.unwrap());
        }
        assert_eq!(results, vec![0, 2, 4, 6, 8, 10, 12, 14]);
    }

    #[tokio::test]
    async fn the_thread_idle_for_the_shortest_time_takes_the_next_job() {
        // One job after another, each once the thread of the one before is idle again: each
        // goes to that thread, although the test beside this one leaves several idle. Other
        // tests may borrow that thread meanwhile, so most, not all, must match.
        let mut threads = Vec::new();
        for _ in 0..20 {
            threads.push(run(|| std::thread::current().id()).unwrap().await.unwrap());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let same = threads.windows(2).filter(|pair| pair[0] == pair[1]).count();
        assert!(same >= 15, "{same} of 19 jobs ran on the thread of the job before");
    }
}
