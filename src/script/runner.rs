//! Running one app's script: a bounded number of calls at once, each in a fiber on a runtime
//! worker (on a script thread once it has run long there), before a deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::{CallFnOptions, Dynamic};
use tokio::sync::Semaphore;

use super::fiber::{self, Fiber, Resumed, SuspendPoint, Suspended};
use super::host::{CallContext, CallStats, Installed, perform};
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
    /// Waits for a free slot until the request's deadline, then runs in a fiber on this worker
    /// ([`Run::inline`]). The call keeps running if the request is abandoned, so a legacy write is
    /// never cut in half.
    pub async fn call(&self, function: &str, args: Vec<Dynamic>, scope: &CallScope) -> Result<Dynamic, ScriptError> {
        self.call_sifted(function, args, scope, None).await
    }

    /// [`AppScript::call`] for a listing, whose `results(query)` lists keep only what `sieve`
    /// keeps of what is appended to them.
    pub(crate) async fn call_sifted(
        &self,
        function: &str,
        args: Vec<Dynamic>,
        scope: &CallScope,
        sieve: Option<Arc<dyn super::Sieve>>,
    ) -> Result<Dynamic, ScriptError> {
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
            sieve,
            trace: span.scope(),
            inline: AtomicBool::new(true),
            suspender: SuspendPoint::default(),
            templates: compiled.templates.clone(),
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
        // The call runs where it is, in a fiber: no thread is woken for it, and its legacy calls
        // are made on the worker's runtime. It is a task of its own, so that it runs to its end
        // even when its request is abandoned: a legacy write it makes is never cut in half.
        // Within the request's span, so what the call logs names the request.
        // Boxed: the task then holds a pointer, not the whole call, which its cell would copy
        // at each change of stage.
        let call = tracing::Instrument::in_current_span(Box::pin(run.inline()));
        let outcome = tokio::spawn(call).await.unwrap_or_else(|_| Err("the script call panicked".to_owned()));
        scope.metrics.script_call(&self.app, function, started.elapsed());
        match outcome {
            Ok(result) => result,
            Err(message) => {
                Err(ScriptError::Runtime { file: file.to_string(), function: "?".into(), line: 0, message })
            }
        }
    }
}

/// One script call: the script, its arguments, and what its run needs.
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

/// What a script call's run needs on the thread or in the fiber it runs in.
struct Script {
    engine: Arc<ScriptEngine>,
    compiled: Arc<Compiled>,
    function: String,
    args: Vec<Dynamic>,
    context: Arc<CallContext>,
}

/// A script call's fiber, ending with the call's result.
type CallFiber = Fiber<Result<Dynamic, ScriptError>>;

impl Run {
    /// Runs the call in a fiber on the worker it was made on (or the one that takes its task
    /// over): at each legacy call the script asks for, the fiber suspends itself, the worker
    /// makes the call without holding the thread, then resumes the script with the answer. A
    /// call that runs long goes on on a script thread ([`Run::finish_on_thread`]).
    async fn inline(mut self) -> Result<Result<Dynamic, ScriptError>, String> {
        let stack = match fiber::stack() {
            Ok(stack) => stack,
            Err(error) => {
                tracing::warn!(error = %error, "no stack could be mapped for a script call: it runs on a script thread");
                return self.elsewhere().await;
            }
        };
        let script = self.script();
        let context = self.context.clone();
        let mut fiber = Fiber::new(stack, move |inside| context.suspender.during(inside, || script.run()));
        let mut input = Resumed::Go;
        loop {
            match resume(&mut fiber, input, &self.log_span, &self.context) {
                fiber::Step::Ended(result) => return Ok(self.end(result)),
                fiber::Step::Suspended(Suspended::Call(request)) => {
                    input = Resumed::Answer(perform(&self.context, request).await);
                }
                fiber::Step::Suspended(Suspended::Budget) => return self.finish_on_thread(fiber).await,
            }
        }
    }

    /// Goes on with a call suspended in its fiber on a script thread, from where it stopped,
    /// each legacy answer waited for in place.
    async fn finish_on_thread(self, mut fiber: CallFiber) -> Result<Result<Dynamic, ScriptError>, String> {
        self.moved("long_run");
        // The stack of a long call may have been used deep: it is not kept for others.
        fiber.discard_stack();
        let (log_span, context) = (self.log_span.clone(), self.context.clone());
        self.end_on_thread(move || {
            let mut input = Resumed::Go;
            loop {
                match resume(&mut fiber, input, &log_span, &context) {
                    fiber::Step::Ended(result) => return result,
                    fiber::Step::Suspended(Suspended::Call(request)) => {
                        input = Resumed::Answer(super::threads::block_on(perform(&context, request), &context.runtime));
                    }
                    // The call no longer runs on a worker: it does not suspend itself for that again.
                    fiber::Step::Suspended(Suspended::Budget) => input = Resumed::Go,
                }
            }
        })
        .await
    }

    /// Runs the call from its start to its end on a script thread, its legacy calls waited
    /// for in place: when no stack could be mapped for its fiber.
    async fn elsewhere(mut self) -> Result<Result<Dynamic, ScriptError>, String> {
        self.moved("no_stack");
        let script = self.script();
        let (log_span, context) = (self.log_span.clone(), self.context.clone());
        self.end_on_thread(move || {
            let _entered = log_span.enter();
            let _installed = Installed::new(context);
            script.run()
        })
        .await
    }

    /// Runs `job`, the rest of the call, on a script thread, and ends the call with its result.
    async fn end_on_thread(
        self,
        job: impl FnOnce() -> Result<Dynamic, ScriptError> + Send + 'static,
    ) -> Result<Result<Dynamic, ScriptError>, String> {
        match super::threads::run(job) {
            Ok(receiver) => match receiver.await {
                Ok(result) => Ok(self.end(result)),
                Err(_) => Err("the script call panicked".to_owned()),
            },
            Err(e) => Err(format!("cannot start a script thread: {e}")),
        }
    }

    /// Notes that the call runs on a script thread, and why.
    fn moved(&self, reason: &'static str) {
        let _entered = self.log_span.enter();
        tracing::debug!(app = %self.context.app, function = %self.function, reason, "script call runs on a script thread");
        self.context.inline.store(false, Ordering::Relaxed);
    }

    /// What the run needs, the arguments taken.
    fn script(&mut self) -> Script {
        Script {
            engine: self.engine.clone(),
            compiled: self.compiled.clone(),
            function: self.function.clone(),
            args: std::mem::take(&mut self.args),
            context: self.context.clone(),
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

/// Resumes a call's fiber on this thread, the call's context installed and its log span
/// entered while it runs.
fn resume(
    fiber: &mut CallFiber,
    input: Resumed,
    log_span: &tracing::Span,
    context: &Arc<CallContext>,
) -> fiber::Step<Result<Dynamic, ScriptError>> {
    let _entered = log_span.enter();
    let _installed = Installed::new(context.clone());
    fiber.resume(input).unwrap_or_else(|| {
        fiber::Step::Ended(Err(ScriptError::Runtime {
            file: context.file.to_string(),
            function: "?".into(),
            line: 0,
            message: "a script call that had ended was resumed".into(),
        }))
    })
}

impl Script {
    /// Runs the script function from its start to its end, on the thread or in the fiber it
    /// is on, the call's context installed.
    fn run(self) -> Result<Dynamic, ScriptError> {
        let Script { engine, compiled, function, args, context } = self;
        let mut rhai_scope = rhai::Scope::new();
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let result =
            engine.engine.call_fn_with_options::<Dynamic>(options, &mut rhai_scope, &compiled.ast, &function, args);
        let result = result.map_err(|error| {
            let fault = context.fault.lock().ok().and_then(|mut f| f.take());
            let (at, line) = failure_site(&error, &function);
            let at = at.to_owned();
            let error = classify(*error, &compiled.file, &function, fault);
            log_where_it_failed(&error, &context, &at, line);
            error
        })?;
        let result = result.flatten();
        // Only plain data nested no deeper than the proxy converts goes back; anything else
        // is refused here and dropped on this stack, made for the depth a script reaches (a
        // deep value dropped on a smaller stack would overflow it).
        if !super::host::is_plain(&result) {
            return Err(ScriptError::BadReturn {
                file: compiled.file.to_string(),
                function,
                detail: format!(
                    "a value that is not plain data (maps, arrays, strings, numbers, booleans, ()) nested at most {} levels",
                    super::limits::MAX_VALUE_DEPTH
                ),
            });
        }
        Ok(result)
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
