//! Script calls as coroutines: a call runs on a stack of its own, on the runtime worker that
//! received its request, and suspends itself where the script asks for a legacy call. The
//! worker makes the call without waiting for it, goes on with other requests meanwhile, and
//! resumes the script with the answer where it stopped: nothing of the script is run twice,
//! and no other thread is woken. A call that runs long suspends itself once more, and a
//! script thread takes it over from there ([`Suspended::Budget`]).
//!
//! A suspended call may be resumed on another thread than the one it started on (a worker
//! that stole its task, a script thread that took it over). What lives on its stack then is
//! the script engine's state, the script's values and the proxy's host functions' locals:
//! plain data, `Send` once the engine is built with `sync`. Nothing thread-bound is kept
//! across a suspension: the call's context and its log span are installed on the thread by
//! whoever resumes it, around each resumption, and taken down before the resumption returns.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use corosensei::stack::{DefaultStack, Stack as _};
use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::threads::STACK_BYTES;
use crate::legacy::LegacyRequest;
use crate::script::host::Answer;

/// Why a script call suspended itself.
#[derive(Debug)]
pub(super) enum Suspended {
    /// The script asked for a legacy call; it is resumed with [`Resumed::Answer`].
    Call(LegacyRequest),
    /// The call has run as long as a call may on a worker; it is resumed on a script thread.
    Budget,
}

/// What a suspended script call is resumed with.
#[derive(Debug)]
pub(super) enum Resumed {
    /// The first resumption, and the one after [`Suspended::Budget`].
    Go,
    /// The answer to the legacy call it asked for.
    Answer(Answer),
}

type Suspender = Yielder<Resumed, Suspended>;

/// A running fiber's way out: its suspender, and where its stack lies.
pub(super) struct Inside<'a> {
    suspender: &'a Suspender,
    stack: Range<usize>,
}

/// Where the host functions of a script call find the fiber the call runs in, to suspend it:
/// published by the fiber's body while it runs ([`SuspendPoint::during`]).
#[derive(Debug, Default)]
pub(super) struct SuspendPoint(Mutex<Option<(usize, Range<usize>)>>);

impl SuspendPoint {
    /// Runs `f`, the body of a fiber, with the fiber published here; taken down when `f`
    /// returns or unwinds.
    pub(super) fn during<T>(&self, inside: Inside<'_>, f: impl FnOnce() -> T) -> T {
        struct Unpublish<'a>(&'a SuspendPoint);
        impl Drop for Unpublish<'_> {
            fn drop(&mut self) {
                *self.0.published() = None;
            }
        }
        *self.published() = Some((std::ptr::from_ref(inside.suspender) as usize, inside.stack));
        let _unpublish = Unpublish(self);
        f()
    }

    fn published(&self) -> std::sync::MutexGuard<'_, Option<(usize, Range<usize>)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a fiber is published: the call runs in one, and can suspend itself.
    pub(super) fn is_set(&self) -> bool {
        self.published().is_some()
    }

    /// Suspends the fiber published here and gives what it is resumed with; `None` when no
    /// fiber is published, or when this does not run on its stack.
    pub(super) fn suspend(&self, why: Suspended) -> Option<Resumed> {
        let (address, stack) = self.published().clone()?;
        // An address on the stack this runs on.
        let here = std::ptr::from_ref(&why) as usize;
        if !stack.contains(&here) {
            return None;
        }
        // SAFETY: `address` is that of the suspender of the fiber whose stack is `stack`,
        // published by its body for as long as the body runs (`during`, which takes it down
        // before the body returns or unwinds). This runs on that stack, so it runs inside that
        // body: the suspender is alive, and suspending from here is suspending that fiber.
        #[allow(unsafe_code)]
        let suspender = unsafe { &*(address as *const Suspender) };
        Some(suspender.suspend(why))
    }
}

/// A stack for one script call: [`STACK_BYTES`] reserved, committed only as deep as the call
/// goes. It is mapped and unmapped by whoever holds it, on whichever thread.
pub(super) struct Stack(DefaultStack);

// SAFETY: a stack is a memory mapping owned by the one fiber or pool holding it; nothing about
// it is bound to the thread that mapped it.
#[allow(unsafe_code)]
unsafe impl Send for Stack {}

/// A stack for a script call: one a call that ended left, else a new one.
pub(super) fn stack() -> std::io::Result<Stack> {
    match stacks().pop() {
        Some(stack) => Ok(stack),
        None => DefaultStack::new(STACK_BYTES).map(Stack),
    }
}

/// The stacks of calls that have ended, kept for the next calls: mapping a stack and touching
/// its first pages again would cost more than a short call.
static STACKS: Mutex<Vec<Stack>> = Mutex::new(Vec::new());

/// The most stacks kept: as many as an app's script calls at once by default
/// (`max_concurrent_scripts`), so that under steady load every call finds one. A kept stack
/// holds the memory its calls touched: tens of KiB for a mapping, a few MiB at most for one that
/// nests values or calls as deep as the engine allows within the operations a call may use on
/// a worker ([`crate::script::host::INLINE_OPERATIONS`]). The stack of a call that went on on
/// a script thread is given back to the system, since that call may have gone deeper.
const KEPT: usize = 16;

fn stacks() -> std::sync::MutexGuard<'static, Vec<Stack>> {
    STACKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A script call on a stack of its own, with the result `R` of its body.
pub(super) struct Fiber<R: 'static> {
    /// `None` only while being dropped.
    coroutine: Option<Coroutine<Resumed, Suspended, R, DefaultStack>>,
    /// Whether the stack goes back to the pool when the call ends.
    keep: bool,
}

// SAFETY: see the module's documentation. The body of every fiber is a script run
// (`runner::Run`) whose stack holds, at a suspension, only `Send` data: the engine is built
// with Rhai's `sync` feature, and the thread-bound state of a run (its installed context, its
// entered span) is put in place and taken down around each `resume`, never held inside. `R`
// itself is `Send`.
#[allow(unsafe_code)]
unsafe impl<R: Send + 'static> Send for Fiber<R> {}

/// How [`Fiber::resume`] came back.
pub(super) enum Step<R> {
    Suspended(Suspended),
    Ended(R),
}

impl<R: Send + 'static> Fiber<R> {
    /// A fiber that will run `body` on `stack` when first resumed, given its way out.
    pub(super) fn new(Stack(stack): Stack, body: impl FnOnce(Inside<'_>) -> R + Send + 'static) -> Self {
        let range = stack.limit().get()..stack.base().get();
        let coroutine = Coroutine::with_stack(stack, move |suspender: &Suspender, _: Resumed| {
            body(Inside { suspender, stack: range })
        });
        Self { coroutine: Some(coroutine), keep: true }
    }

    /// Runs the call until it suspends itself or ends. A panic in it goes on in the caller;
    /// a fiber that has ended is not resumed again.
    pub(super) fn resume(&mut self, with: Resumed) -> Option<Step<R>> {
        let coroutine = self.coroutine.as_mut().filter(|c| !c.done())?;
        Some(match coroutine.resume(with) {
            CoroutineResult::Yield(suspended) => Step::Suspended(suspended),
            CoroutineResult::Return(result) => Step::Ended(result),
        })
    }

    /// Gives the stack back to the system when the call ends instead of keeping it, for a call
    /// that may have gone deep.
    pub(super) fn discard_stack(&mut self) {
        self.keep = false;
    }
}

impl<R: 'static> Drop for Fiber<R> {
    fn drop(&mut self) {
        // A call dropped while suspended (its runtime shutting down) is unwound on this thread
        // by the coroutine's own drop, and its stack unmapped; only an ended call's is kept.
        let Some(coroutine) = self.coroutine.take() else { return };
        if self.keep && coroutine.done() {
            let stack = coroutine.into_stack();
            let mut kept = stacks();
            if kept.len() < KEPT {
                kept.push(Stack(stack));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::script::host::Answer;

    fn answer(status: i64) -> Resumed {
        let mut map = rhai::Map::new();
        map.insert("status".into(), status.into());
        Resumed::Answer(Answer::Response(map))
    }

    fn status_of(resumed: Option<Resumed>) -> i64 {
        match resumed {
            Some(Resumed::Answer(Answer::Response(map))) => map["status"].as_int().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn a_call() -> Suspended {
        Suspended::Call(LegacyRequest {
            method: http::Method::GET,
            path: crate::legacy::LegacyPath::Text("/users".into()),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            idempotent: true,
        })
    }

    #[test]
    fn a_fiber_suspends_where_it_asks_and_goes_on_there_on_another_thread() {
        let point = Arc::new(SuspendPoint::default());
        let inner = point.clone();
        let mut fiber = Fiber::new(stack().unwrap(), move |inside| {
            inner.during(inside, || {
                let first = status_of(inner.suspend(a_call()));
                let second = status_of(inner.suspend(a_call()));
                first * 1000 + second
            })
        });
        assert!(matches!(fiber.resume(Resumed::Go), Some(Step::Suspended(Suspended::Call(_)))));
        assert!(point.is_set());
        // Off the fiber's stack, nothing is suspended.
        assert!(point.suspend(Suspended::Budget).is_none());
        let mut fiber = std::thread::spawn(move || {
            assert!(matches!(fiber.resume(answer(200)), Some(Step::Suspended(Suspended::Call(_)))));
            fiber
        })
        .join()
        .unwrap();
        assert!(matches!(fiber.resume(answer(404)), Some(Step::Ended(200_404))));
        assert!(!point.is_set(), "taken down when the body returned");
        assert!(fiber.resume(Resumed::Go).is_none(), "an ended fiber is not resumed");
    }

    #[test]
    fn a_fiber_dropped_while_suspended_drops_what_it_held() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let held = Counted(dropped.clone());
        let point = Arc::new(SuspendPoint::default());
        let inner = point.clone();
        let mut fiber = Fiber::new(stack().unwrap(), move |inside| {
            inner.during(inside, || {
                let _held = held;
                inner.suspend(a_call()).is_some()
            })
        });
        assert!(matches!(fiber.resume(Resumed::Go), Some(Step::Suspended(_))));
        drop(fiber);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert!(!point.is_set(), "taken down as the body unwound");
    }

    #[test]
    fn a_panic_in_a_fiber_goes_on_in_its_caller_and_leaves_nothing_published() {
        let point = Arc::new(SuspendPoint::default());
        let inner = point.clone();
        let mut fiber = Fiber::new(stack().unwrap(), move |inside| {
            inner.during(inside, || -> usize {
                let _ = inner.suspend(a_call());
                panic!("a host function panics after a legacy answer");
            })
        });
        assert!(matches!(fiber.resume(Resumed::Go), Some(Step::Suspended(_))));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fiber.resume(answer(200))));
        assert!(panicked.is_err());
        assert!(!point.is_set());
        assert!(fiber.resume(Resumed::Go).is_none(), "a fiber that panicked has ended");
    }

    #[test]
    fn a_fiber_goes_as_deep_as_a_script_thread() {
        // 64 MiB on the stack: far past a worker's 2 MiB.
        fn deep(n: usize) -> usize {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 { pad[0] as usize } else { deep(n - 1) + pad[n % 1024] as usize }
        }
        let mut fiber = Fiber::new(stack().unwrap(), |_| deep(64 * 1024));
        // As the runner does for a long call: 64 MiB touched is not kept for other fibers.
        fiber.discard_stack();
        assert!(matches!(fiber.resume(Resumed::Go), Some(Step::Ended(0))));
    }
}
