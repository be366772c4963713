//! Running one app's script: a bounded number of calls at once, each on the worker that received the request (one core) or on a script thread, before a deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::{CallFnOptions, Dynamic};
use tokio::sync::Semaphore;

use super::host::{CallContext, CallStats, Diverged, Installed, Stop, perform};
use super::journal::Journal;
use super::{Compiled, ScriptEngine, ScriptError, classify, failure_site};
use crate::cache::IdCache;
use crate::legacy::LegacyClient;
use crate::legacy::LegacyError;
use crate::observe::metrics::Metrics;
use crate::observe::trace::{SpanKind, TraceScope};

/// What a script call needs from the request that makes it.
#[derive(Debug, Clone)]
pub struct CallScope {
    /// The request's id, written on the log lines of the call.
    pub request_id: Arc<str>,
    /// When the request's time is up: the call waits for a slot and runs until then at most.
    pub deadline: Instant,
    /// Where the call's legacy calls and their time are counted for the request.
    pub stats: Arc<CallStats>,
    /// Where the request's legacy calls are written down (dry run, recording), if anywhere.
    pub journal: Option<Arc<Journal>>,
    /// Where script and legacy call times are counted.
    pub metrics: Arc<Metrics>,
    /// The trace the call continues (none for `health()`).
    pub trace: TraceScope,
}

/// One app's compiled script and what its calls run with.
pub struct AppScript {
    app: Arc<str>,
    engine: Arc<ScriptEngine>,
    /// The script this app serves; a reloaded script comes with an app built again around it.
    compiled: Arc<Compiled>,
    slots: Arc<Semaphore>,
    /// The slot of `health()`, apart from the requests' so that a busy app is not taken for
    /// an unready one: one check at a time, never waiting behind traffic.
    health_slot: Arc<Semaphore>,
    limit: usize,
    /// Calls waiting for a slot now, and the most allowed to wait.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    legacy: Arc<LegacyClient>,
    ids: Arc<IdCache>,
    habits: Arc<Habits>,
}

/// What running each of a script's functions on a runtime worker costs in runs stopped and
/// run again (see [`Run::inline`]). A run stopped at a legacy call is work done twice: nothing
/// for a function whose first call comes first, a whole mapping for one that maps a body
/// before its call or between two calls. Where that costs more than handing the call to a
/// script thread ([`HAND_OVER`]), the function runs on a script thread from the start; one
/// call in [`RETRY_EVERY`] of it runs on the worker still, to notice when that changes.
#[derive(Debug, Default)]
struct Habits(Mutex<Vec<Habit>>);

#[derive(Debug)]
struct Habit {
    function: String,
    /// The operations of the stopped runs of its recent calls on a worker, an average that
    /// weighs the latest call a quarter.
    redone: u64,
    /// Its calls since the last one that ran on a worker.
    since_inline: u32,
}

/// What handing a call to a script thread and back costs, in script operations of about the
/// same CPU time: two thread wake-ups, and a thread waiting on its own runtime for each legacy
/// answer.
const HAND_OVER: u64 = 50;

/// How often a function that runs on script threads is tried on a worker again.
const RETRY_EVERY: u32 = 32;

impl Habits {
    /// Whether the next call of `function` runs on the worker.
    fn inline(&self, function: &str) -> bool {
        let Ok(mut habits) = self.0.lock() else { return true };
        let Some(habit) = habits.iter_mut().find(|h| h.function == function) else { return true };
        if habit.redone <= HAND_OVER || habit.since_inline >= RETRY_EVERY {
            habit.since_inline = 0;
            return true;
        }
        habit.since_inline += 1;
        false
    }

    /// Notes the operations a call of `function` on a worker spent in stopped runs.
    fn note(&self, function: &str, redone: u64) {
        let Ok(mut habits) = self.0.lock() else { return };
        match habits.iter_mut().find(|h| h.function == function) {
            Some(habit) => habit.redone = (habit.redone.saturating_mul(3).saturating_add(redone)) / 4,
            None => habits.push(Habit { function: function.to_owned(), redone, since_inline: 0 }),
        }
    }
}

/// A place in an app's queue for a script slot, given back when dropped.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    /// Takes a place when fewer than `limit` are taken.
    fn join(queued: &'a AtomicUsize, limit: usize) -> Option<Self> {
        queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(Queued(queued))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for AppScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppScript").field("app", &self.app).field("limit", &self.limit).finish()
    }
}

impl AppScript {
    /// Wraps a compiled script for an app.
    pub(crate) fn new(
        app: &str,
        engine: Arc<ScriptEngine>,
        compiled: Compiled,
        (max_concurrent, max_queued): (usize, usize),
        legacy: Arc<LegacyClient>,
        ids: Arc<IdCache>,
    ) -> Self {
        Self {
            app: Arc::from(app),
            engine,
            compiled: Arc::new(compiled),
            slots: Arc::new(Semaphore::new(max_concurrent)),
            health_slot: Arc::new(Semaphore::new(1)),
            limit: max_concurrent,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued,
            legacy,
            ids,
            habits: Arc::default(),
        }
    }

    /// Takes over the script slots and the queue of the app this one replaces at a reload, so
    /// that the calls still running on the old state and those starting on the new one share
    /// one bound: a reload never doubles an app's concurrency. A changed
    /// `max_concurrent_scripts` resizes the shared slots: up at once, down as running calls give
    /// theirs back.
    pub(crate) fn keep_slots(&mut self, previous: &AppScript) {
        self.slots = previous.slots.clone();
        self.health_slot = previous.health_slot.clone();
        self.queued = previous.queued.clone();
        if self.limit > previous.limit {
            self.slots.add_permits(self.limit - previous.limit);
        } else if self.limit < previous.limit {
            let excess = previous.limit - self.limit;
            let rest = excess - self.slots.forget_permits(excess);
            if rest > 0 {
                // Held by running calls: taken as they come back, and never given out again.
                let slots = self.slots.clone();
                if let (Ok(runtime), Ok(rest)) = (tokio::runtime::Handle::try_current(), u32::try_from(rest)) {
                    runtime.spawn(async move {
                        if let Ok(taken) = slots.acquire_many_owned(rest).await {
                            taken.forget();
                        }
                    });
                }
            }
        }
    }

    /// The compiled script now serving.
    pub fn compiled(&self) -> Arc<Compiled> {
        self.compiled.clone()
    }

    /// The app's legacy client.
    pub(crate) fn legacy(&self) -> &Arc<LegacyClient> {
        &self.legacy
    }

    /// The app's name.
    pub(crate) fn app(&self) -> &str {
        &self.app
    }

    /// The engine scripts of this app are compiled with.
    pub(crate) fn engine(&self) -> &Arc<ScriptEngine> {
        &self.engine
    }

    /// The arity the serving script defines `function` with, if it defines it.
    pub(crate) fn arity(&self, function: &str) -> Option<usize> {
        self.compiled().arity(function)
    }

    /// Requests' script calls running now and requests waiting for a slot, for `/metrics`.
    pub(crate) fn occupancy(&self) -> (usize, usize) {
        (self.limit.saturating_sub(self.slots.available_permits()), self.queued.load(Ordering::Relaxed))
    }

    /// A slot for a request's script call: at once when one is free, else after waiting in
    /// the bounded queue until the request's deadline.
    async fn request_slot(&self, scope: &CallScope) -> Result<tokio::sync::OwnedSemaphorePermit, ScriptError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Every slot is busy: wait in a bounded queue, never an unbounded one.
                let Some(_place) = Queued::join(&self.queued, self.max_queued) else {
                    return Err(ScriptError::QueueFull { app: self.app.to_string(), limit: self.max_queued });
                };
                let wait = scope.deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(ScriptError::Overloaded { app: self.app.to_string(), limit: self.limit }),
                }
            }
        };
        Ok(permit)
    }

    /// Calls a script function with JSON-shaped arguments.
    ///
    /// Waits for a free slot until the request's deadline, then runs on a script thread (`threads`).
    /// The call keeps running if the request is abandoned, so a legacy write is never cut in half.
    pub async fn call(&self, function: &str, args: Vec<Dynamic>, scope: &CallScope) -> Result<Dynamic, ScriptError> {
        let compiled = self.compiled();
        if compiled.arity(function).is_none() {
            return Err(ScriptError::Missing { function: function.to_owned() });
        }
        // The call's span, from its wait for a slot to the script's end on its thread.
        let mut span = scope.trace.child(SpanKind::Internal, || format!("script {function}"));
        span.set("scim.app", &*self.app);
        span.set("code.function.name", function);
        span.set("code.file.path", &*compiled.file);
        let permit = if function == "health" {
            // A check still running when the next is due makes the next wait for it.
            let wait = scope.deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, self.health_slot.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => return Err(ScriptError::Overloaded { app: self.app.to_string(), limit: 1 }),
            }
        } else {
            match self.request_slot(scope).await {
                Ok(permit) => permit,
                Err(error) => {
                    span.fail(fault_kind(&error), || error.to_string());
                    return Err(error);
                }
            }
        };
        // On the one worker of a runtime on one core, with a script thread's stack, the call
        // runs where it is: no thread is woken for it, and its legacy calls are made on the
        // worker's runtime.
        let place = if !super::threads::stack_is_big_enough() {
            Some("small_stack")
        } else if tokio::runtime::Handle::current().metrics().num_workers() > 1 {
            // With a core of its own, a script thread runs beside the worker, and the hand-over
            // costs less than the runs done again: measured, running here gained 10–18 % of
            // throughput on one core and lost 13 % on two.
            Some("several_cores")
        } else if !self.habits.inline(function) {
            Some("costly_reruns")
        } else {
            None
        };
        let inline = place.is_none();
        let context = Arc::new(CallContext {
            app: self.app.clone(),
            file: compiled.file.clone(),
            request_id: scope.request_id.clone(),
            legacy: self.legacy.clone(),
            ids: self.ids.clone(),
            runtime: tokio::runtime::Handle::current(),
            deadline: scope.deadline,
            stats: scope.stats.clone(),
            fault: Mutex::new(None),
            journal: scope.journal.clone(),
            metrics: scope.metrics.clone(),
            probe: function == "health",
            held: Mutex::default(),
            trace: span.scope(),
            tape: Mutex::default(),
            inline: AtomicBool::new(inline),
            stop: Mutex::new(None),
        });
        let run = Run {
            engine: self.engine.clone(),
            compiled,
            function: function.to_owned(),
            args,
            context,
            // The request's span goes with the call, so what the script logs names the request.
            log_span: tracing::Span::current(),
            span,
            _permit: permit,
        };
        let started = Instant::now();
        let file = run.compiled.file.clone();
        // Either way the call runs to its end even when its request is abandoned, so that a
        // legacy write it makes is never cut in half: on a worker as a task of its own, else
        // on a script thread.
        let outcome = if inline {
            let habits = self.habits.clone();
            let function = function.to_owned();
            let call = async move {
                let (outcome, redone) = run.inline().await;
                habits.note(&function, redone);
                outcome
            };
            // Within the request's span, so what the call logs names the request.
            let call = tracing::Instrument::in_current_span(call);
            tokio::spawn(call).await.unwrap_or_else(|_| Err("the script call panicked".to_owned()))
        } else {
            run.elsewhere(place.unwrap_or("small_stack")).await
        };
        scope.metrics.script_call(&self.app, function, started.elapsed());
        match outcome {
            Ok(result) => result,
            Err(message) => {
                Err(ScriptError::Runtime { file: file.to_string(), function: "?".into(), line: 0, message })
            }
        }
    }
}

/// The most legacy calls a script call makes on a runtime worker: each one runs the script
/// again from its start, so a script making more goes on on a script thread, where it waits for
/// each answer in place.
const INLINE_CALLS: usize = 8;

/// One script call: the script, its arguments, and what its runs share.
struct Run {
    engine: Arc<ScriptEngine>,
    compiled: Arc<Compiled>,
    function: String,
    args: Vec<Dynamic>,
    context: Arc<CallContext>,
    log_span: tracing::Span,
    /// The call's span, ended when the call ends: its legacy calls are children of it.
    span: crate::observe::trace::Span,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// How a run of a script call ended.
enum Step {
    /// The script returned or failed.
    Ended(Result<Dynamic, ScriptError>),
    /// The proxy stopped it.
    Stopped(Stop),
}

impl Run {
    /// Runs the call on the worker it was made on, as far as it can go there: each legacy call
    /// the script asks for ends the run, is made without holding the thread, and the script runs
    /// again with the answer on its tape. A script that runs long or makes many calls is moved
    /// to a script thread, which goes on from what the tape holds.
    /// Also gives the operations of the runs that were stopped (work done again).
    async fn inline(mut self) -> (Result<Result<Dynamic, ScriptError>, String>, u64) {
        let mut redone = 0;
        loop {
            let step = self.once(false);
            let used = super::host::operations_used();
            match step {
                Step::Ended(result) => return (Ok(self.end(result)), redone),
                Step::Stopped(Stop::Diverged(diverged)) => {
                    let error = self.diverged(diverged);
                    return (Ok(self.end(Err(error))), redone);
                }
                // Run again from its start on a script thread.
                Step::Stopped(Stop::Budget) => {
                    redone += used;
                    return (self.elsewhere("long_run").await, redone);
                }
                Step::Stopped(Stop::Call(request)) => {
                    redone += used;
                    let answer = perform(&self.context, request.clone()).await;
                    let calls = match self.context.tape.lock() {
                        Ok(mut tape) => {
                            tape.record_call(request, answer);
                            tape.calls()
                        }
                        Err(_) => return (Err("a script call's tape is poisoned".to_owned()), redone),
                    };
                    if calls >= INLINE_CALLS {
                        return (self.elsewhere("many_calls").await, redone);
                    }
                }
            }
        }
    }

    /// Runs the call to its end on a script thread, its legacy calls waited for in place;
    /// `reason` says why it does not run on the worker (`small_stack`, `several_cores`,
    /// `costly_reruns`, `long_run`, `many_calls`).
    async fn elsewhere(mut self, reason: &'static str) -> Result<Result<Dynamic, ScriptError>, String> {
        let _entered = self.log_span.enter();
        tracing::debug!(app = %self.context.app, function = %self.function, reason, "script call runs on a script thread");
        drop(_entered);
        self.context.inline.store(false, Ordering::Relaxed);
        let task = super::threads::run(move || match self.once(true) {
            Step::Ended(result) => self.end(result),
            Step::Stopped(Stop::Diverged(diverged)) => {
                let error = self.diverged(diverged);
                self.end(Err(error))
            }
            Step::Stopped(stop) => {
                let error = ScriptError::Runtime {
                    file: self.compiled.file.to_string(),
                    function: self.function.clone(),
                    line: 0,
                    message: format!("a run on a script thread was stopped: {stop:?}"),
                };
                self.end(Err(error))
            }
        });
        match task {
            Ok(receiver) => receiver.await.map_err(|_| "the script call panicked".to_owned()),
            Err(e) => Err(format!("cannot start a script thread: {e}")),
        }
    }

    /// One run of the script from its start, what earlier runs did taken from the tape. The
    /// `last` run gets the arguments themselves, the others a copy.
    fn once(&mut self, last: bool) -> Step {
        let args = if last { std::mem::take(&mut self.args) } else { self.args.clone() };
        let context = &self.context;
        context.rewind();
        let _entered = self.log_span.enter();
        let _installed = Installed::new(context.clone());
        let mut rhai_scope = rhai::Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let result = self.engine.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut rhai_scope,
            &self.compiled.ast,
            &self.function,
            args,
        );
        if let Some(stop) = context.take_stop() {
            return Step::Stopped(stop);
        }
        let result = result.map_err(|error| {
            let fault = context.fault.lock().ok().and_then(|mut f| f.take());
            let (at, line) = failure_site(&error, &self.function);
            let at = at.to_owned();
            let error = classify(*error, &self.compiled.file, &self.function, fault);
            log_where_it_failed(&error, context, &at, line);
            error
        });
        let result = match result {
            Ok(result) => result.flatten(),
            Err(error) => return Step::Ended(Err(error)),
        };
        // Only plain data nested no deeper than the proxy converts goes back; anything else
        // is refused here and dropped on this thread's big stack (dropping a deep value on a
        // thread with a smaller stack would overflow it).
        if !super::host::is_plain(&result) {
            return Step::Ended(Err(ScriptError::BadReturn {
                file: self.compiled.file.to_string(),
                function: self.function.clone(),
                detail: format!(
                    "a value that is not plain data (maps, arrays, strings, numbers, booleans, ()) nested at most {} levels",
                    super::limits::MAX_VALUE_DEPTH
                ),
            }));
        }
        Step::Ended(Ok(result))
    }

    /// The fault of a script whose run asked for something else than its earlier runs did.
    fn diverged(&self, diverged: Diverged) -> ScriptError {
        ScriptError::Runtime {
            file: self.compiled.file.to_string(),
            function: self.function.clone(),
            line: 0,
            message: format!(
                "the script did not do the same when run again after a legacy answer: it asked for {} where it had asked for {}; a mapping must decide what it does from its arguments and what the proxy's functions give it",
                diverged.found, diverged.expected
            ),
        }
    }

    /// Ends the call's span with its outcome.
    fn end(mut self, result: Result<Dynamic, ScriptError>) -> Result<Dynamic, ScriptError> {
        if let Err(error) = &result {
            if !matches!(error, ScriptError::Thrown { status: ..500, .. }) {
                self.span.fail(fault_kind(error), || error.to_string());
            }
        }
        result
    }
}

/// The kind of a script call's failure, as its span's `error.type`.
fn fault_kind(error: &ScriptError) -> &'static str {
    match error {
        ScriptError::Compile { .. } => "compile",
        ScriptError::Refused { .. } => "refused",
        ScriptError::Thrown { .. } => "thrown",
        ScriptError::Runtime { .. } => "runtime",
        ScriptError::BadReturn { .. } => "bad_return",
        ScriptError::Stopped { .. } => "stopped",
        ScriptError::Late { .. } => "late",
        ScriptError::Legacy(_) => "legacy",
        ScriptError::Overloaded { .. } => "overloaded",
        ScriptError::QueueFull { .. } => "queue_full",
        ScriptError::Missing { .. } => "missing",
    }
}

/// Logs where a script failed when the request's own log line cannot say it: a legacy call
/// the proxy refused to send (the fault names the path, not the line asking for it), or a
/// script stopped at the deadline (its request may have been answered `504` already, naming
/// no script; Rhai gives no line for a stop).
fn log_where_it_failed(error: &ScriptError, context: &CallContext, function: &str, line: usize) {
    let refused = matches!(
        error,
        ScriptError::Legacy(LegacyError::BadPath { .. } | LegacyError::BadHeader { .. } | LegacyError::BadBody { .. })
    );
    if refused {
        tracing::warn!(
            request_id = %context.request_id,
            app = %context.app,
            script = %context.file,
            function,
            line,
            error = %error,
            "script legacy call refused"
        );
    } else if let ScriptError::Late { function, .. } = error {
        tracing::warn!(
            request_id = %context.request_id,
            app = %context.app,
            script = %context.file,
            function,
            error = %error,
            "script stopped"
        );
    }
}
