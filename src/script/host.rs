//! What the proxy gives scripts: the `legacy` and `id_cache` objects, logging, JSON, base64, URLs, time.
//!
//! Each script call runs on one blocking-pool thread; the call's context (its app, its legacy
//! client, its deadline) sits in a thread-local for the call's duration, which is how the
//! functions registered once on the shared engine reach the right app.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use http::Method;
use rhai::{Array, Dynamic, EvalAltResult, Map, Position};

use super::journal::{self, Exchange, Journal};
use crate::cache::IdCache;
use crate::legacy::{LegacyClient, LegacyError, LegacyPath, LegacyRequest, LegacyResponse};
use crate::observe::trace::{SpanKind, TraceScope};

/// Legacy calls made by one request, and the time they took.
#[derive(Debug, Default)]
pub struct CallStats {
    pub(crate) calls: AtomicU32,
    /// Calls other than reads (`GET`, `HEAD`, `OPTIONS`) that were sent: changes asked of the legacy app.
    pub(crate) writes: AtomicU32,
    pub(crate) micros: AtomicU64,
    /// Attributes the request named that the app does not publish, ignored under
    /// `schema.unsupported_attributes: ignore` (paths as the client wrote them, each once).
    pub(crate) ignored: std::sync::Mutex<Vec<String>>,
    /// Further attributes ignored past the [`crate::scim::unpublished::MAX_NOTED`] named ones.
    pub(crate) ignored_more: std::sync::atomic::AtomicUsize,
    /// Bytes of the request's body, once read.
    pub(crate) request_bytes: std::sync::atomic::AtomicUsize,
    /// The legacy calls made, each with its answer and time, for the admin listener's
    /// `/requests`; `None` when nothing shows them (the list then costs nothing).
    pub(crate) noted: Option<Mutex<Vec<NotedCall>>>,
}

impl CallStats {
    /// Stats that also note each legacy call (at most [`NOTED_CALLS`] of them).
    pub(crate) fn noting_calls() -> Self {
        Self { noted: Some(Mutex::new(Vec::new())), ..Self::default() }
    }

    /// The legacy calls noted so far, in order.
    pub(crate) fn noted_calls(&self) -> Vec<NotedCall> {
        self.noted.as_ref().and_then(|noted| noted.lock().ok().map(|calls| calls.clone())).unwrap_or_default()
    }

    /// Whether the next legacy call will be noted: calls are noted, and fewer than [`NOTED_CALLS`] so far.
    fn notes_more(&self) -> bool {
        self.noted.as_ref().is_some_and(|noted| noted.lock().is_ok_and(|calls| calls.len() < NOTED_CALLS))
    }

    fn note(&self, call: impl FnOnce() -> NotedCall) {
        let Some(noted) = &self.noted else { return };
        if let Ok(mut calls) = noted.lock() {
            // A mapping that loops over a listing may make thousands of calls: the first ones
            // say what went wrong, and the count in `calls` says how many there were.
            if calls.len() < NOTED_CALLS {
                calls.push(call());
            }
        }
    }
}

/// The most legacy calls one request notes for `/requests`.
pub(crate) const NOTED_CALLS: usize = 20;

/// The longest legacy path (with its query) a noted call keeps, in bytes.
pub(crate) const NOTED_PATH_BYTES: usize = 256;

/// One legacy call as `/requests` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotedCall {
    pub method: Method,
    /// Below the app's base URL, with the query as sent (shortened to [`NOTED_PATH_BYTES`]).
    pub path: String,
    /// The legacy app's answer, when it answered.
    pub status: Option<u16>,
    /// The kind of fault (`timeout`, `connect`, …) when it did not.
    pub fault: Option<&'static str>,
    pub micros: u64,
}

/// Everything a script call needs from its app and request.
pub(super) struct CallContext {
    pub app: Arc<str>,
    pub file: Arc<str>,
    pub request_id: Arc<str>,
    pub legacy: Arc<LegacyClient>,
    pub ids: Arc<IdCache>,
    pub runtime: tokio::runtime::Handle,
    pub deadline: Instant,
    pub stats: Arc<CallStats>,
    /// The last legacy fault raised into the script, so an uncaught one keeps its kind.
    pub fault: Mutex<Option<LegacyError>>,
    /// Where the calls are written down, for a dry run or a recording.
    pub journal: Option<Arc<Journal>>,
    /// Where legacy call times and faults are counted.
    pub metrics: Arc<crate::observe::metrics::Metrics>,
    /// A readiness check (`health()`): its calls go past the circuit breaker, which must not
    /// hide the legacy app from it, and do not move it.
    pub probe: bool,
    /// What the call's `results()` lists hold, bounded by the engine's size limits.
    pub held: Mutex<DataSizes>,
    /// The trace the call's legacy calls continue: the script call's span is their parent.
    pub trace: TraceScope,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CallContext>>> = const { RefCell::new(None) };
}

/// Installs a call's context on this thread until dropped.
pub(super) struct Installed;

impl Installed {
    pub(super) fn new(context: Arc<CallContext>) -> Self {
        CURRENT.with(|c| *c.borrow_mut() = Some(context));
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

fn current() -> Result<Arc<CallContext>, Box<EvalAltResult>> {
    CURRENT
        .with(|c| c.borrow().clone())
        .ok_or_else(|| runtime_error("this function is only available while the proxy runs a mapping"))
}

fn runtime_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(message.into()), Position::NONE))
}

/// A list a script fills a page at a time and returns: `let users = results(); users += page;`.
///
/// Rhai measures a whole array (every nested map and string) after each change to it, so a
/// listing gathered in a script array costs time quadratic in its length (1.7 s for 10,000
/// users). This list is held by the host: what is appended is measured once, and counted
/// against the same size limits for everything `results()` lists hold in one script call.
/// Copies of it share one list.
///
/// A list may hold lists one level deep (a listing of groups, each with its list of members):
/// a list held by another holds no list, and a list holding lists is held by none. So no chain
/// or cycle of lists can form, whatever the order of the appends, and converting or dropping
/// one never recurses deeper than its data.
#[derive(Debug, Clone, Default)]
pub(super) struct Results(Arc<List>);

#[derive(Debug, Default)]
struct List {
    items: Mutex<Vec<Dynamic>>,
    /// Another list holds this one.
    held: std::sync::atomic::AtomicBool,
    /// This list holds another.
    holds_lists: std::sync::atomic::AtomicBool,
}

impl Results {
    /// Appends items after counting them against the call's budget.
    fn append(&mut self, items: Array) -> Result<(), Box<EvalAltResult>> {
        let ctx = current()?;
        // Only plain data: a function pointer (which may hold anything) or lists chained in
        // lists would let a script nest values as deep as it likes at no cost, deeper than any
        // stack that converts or drops them.
        let mut added = DataSizes::default();
        let mut lists = Vec::new();
        for item in &items {
            added = added.plus(DataSizes::of(item, super::limits::MAX_VALUE_DEPTH, &mut lists).ok_or_else(|| {
                runtime_error(format!(
                    "results() holds data (maps, arrays, strings, numbers, booleans, ()) nested at most {} levels",
                    super::limits::MAX_VALUE_DEPTH
                ))
            })?);
        }
        let chained = !lists.is_empty()
            && (self.0.held.load(Ordering::SeqCst)
                || lists.iter().any(|list| Arc::ptr_eq(&list.0, &self.0) || list.0.holds_lists.load(Ordering::SeqCst)));
        if chained {
            return Err(runtime_error(
                "results() lists nest one level at most: a list in another list cannot hold lists itself",
            ));
        }
        ctx.held
            .lock()
            .map_err(|_| runtime_error("results() is unavailable"))?
            .take(added.plus(DataSizes { array: items.len(), ..DataSizes::default() }))?;
        let mut list = self.0.items.lock().map_err(|_| runtime_error("results() is unavailable"))?;
        list.extend(items);
        for held in &lists {
            held.0.held.store(true, Ordering::SeqCst);
        }
        if !lists.is_empty() {
            self.0.holds_lists.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    fn len(&mut self) -> i64 {
        self.0.items.lock().map_or(0, |list| list.len() as i64)
    }

    /// The items as JSON, the list being found `depth` levels down.
    pub(super) fn to_json(&self, depth: usize) -> Result<serde_json::Value, String> {
        let list = self.0.items.lock().map_err(|_| "results() is unavailable".to_owned())?;
        list.iter()
            .map(|item| super::ScriptEngine::to_json_within(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array)
    }
}

/// Array elements, map entries and string bytes in a value, counted as Rhai's limits count them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DataSizes {
    array: usize,
    map: usize,
    string: usize,
}

impl DataSizes {
    /// The sizes of a plain data value nesting at most `depth` levels; `None` for anything else.
    /// The `results()` lists in it are gathered in `lists` and count nothing (what they hold
    /// was counted as they were filled).
    fn of(value: &Dynamic, depth: usize, lists: &mut Vec<Results>) -> Option<Self> {
        if let Some(items) = value.read_lock::<Array>() {
            let below = depth.checked_sub(1)?;
            let inner = items
                .iter()
                .try_fold(Self::default(), |sizes, item| Some(sizes.plus(Self::of(item, below, lists)?)))?;
            return Some(inner.plus(Self { array: items.len(), ..Self::default() }));
        }
        if let Some(map) = value.read_lock::<Map>() {
            let below = depth.checked_sub(1)?;
            let inner = map
                .values()
                .try_fold(Self::default(), |sizes, item| Some(sizes.plus(Self::of(item, below, lists)?)))?;
            return Some(inner.plus(Self { map: map.len(), ..Self::default() }));
        }
        if let Some(list) = value.read_lock::<Results>() {
            lists.push(list.clone());
            return Some(Self::default());
        }
        if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
            return Some(Self { string: text.len(), ..Self::default() });
        }
        let plain = value.is_unit()
            || value.is_bool()
            || value.is_int()
            || value.is_float()
            || value.is_char()
            || value.is_blob()
            || value.is_timestamp();
        plain.then(Self::default)
    }

    fn plus(self, other: Self) -> Self {
        Self {
            array: self.array.saturating_add(other.array),
            map: self.map.saturating_add(other.map),
            string: self.string.saturating_add(other.string),
        }
    }

    /// Adds `more` to what is held, or refuses it when that would pass a limit.
    fn take(&mut self, more: Self) -> Result<(), Box<EvalAltResult>> {
        let total = self.plus(more);
        let over = if total.array > super::limits::MAX_ARRAY_LEN {
            Some("Size of array")
        } else if total.map > super::limits::MAX_MAP_LEN {
            Some("Size of object map")
        } else if total.string > super::limits::MAX_STRING_BYTES {
            Some("Length of string")
        } else {
            None
        };
        if let Some(what) = over {
            return Err(Box::new(EvalAltResult::ErrorDataTooLarge(format!("{what} in results()"), Position::NONE)));
        }
        *self = total;
        Ok(())
    }
}

/// Whether a script's answer is plain data nested at most [`super::limits::MAX_VALUE_DEPTH`]
/// levels. A `results()` list in it counts as plain: it holds only plain data nested as much
/// at most (checked as it is filled), and lists one level deep at most.
pub(super) fn is_plain(value: &Dynamic) -> bool {
    fn within(value: &Dynamic, depth: usize) -> bool {
        if let Some(items) = value.read_lock::<Array>() {
            return depth > 0 && items.iter().all(|item| within(item, depth - 1));
        }
        if let Some(map) = value.read_lock::<Map>() {
            return depth > 0 && map.values().all(|item| within(item, depth - 1));
        }
        DataSizes::of(value, 0, &mut Vec::new()).is_some()
    }
    within(value, super::limits::MAX_VALUE_DEPTH)
}

/// The `legacy` object of scripts.
#[derive(Debug, Clone, Copy)]
pub(super) struct LegacyApi;

/// The `id_cache` object of scripts.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdsApi;

/// Names scripts use for the proxy's objects and may not define themselves.
pub(super) const RESERVED: [&str; 2] = ["legacy", "id_cache"];

/// The names scripts may use without defining them, for strict-variables compilation.
pub(super) fn compile_scope() -> rhai::Scope<'static> {
    let mut scope = rhai::Scope::new();
    scope.push_constant("legacy", LegacyApi);
    scope.push_constant("id_cache", IdsApi);
    scope
}

/// Key marking a value thrown into the script for a failed legacy call.
const FAULT_KEY: &str = "legacy_error";

/// True when a thrown value is the one raised for a legacy fault of this kind.
pub(super) fn is_legacy_fault(value: &Dynamic, kind: &str) -> bool {
    value
        .read_lock::<Map>()
        .is_some_and(|m| m.get(FAULT_KEY).is_some_and(|k| k.clone().into_string().is_ok_and(|k| k == kind)))
}

/// Registers the host API on the engine; runs once at start.
#[allow(deprecated)] // `on_def_var` is marked volatile, not deprecated
pub(super) fn register(engine: &mut rhai::Engine) {
    engine.register_type_with_name::<LegacyApi>("Legacy");
    engine.register_type_with_name::<IdsApi>("Ids");
    // Script functions see no outer variables; `legacy` and `id_cache` resolve everywhere:
    // compiled in as constants (`compile_scope`), and held by a global module for any place
    // the compiler leaves a name to be looked up when the script runs. A resolver (`on_var`)
    // would do the same at a cost on every variable read of every script (5–10 % of a
    // mapping function's time). The names are reserved: `let`/`const` of them is refused when
    // the script is compiled, and so is a function parameter of either name (`compile`).
    let mut globals = rhai::Module::new();
    globals.set_var("legacy", LegacyApi);
    globals.set_var("id_cache", IdsApi);
    engine.register_global_module(globals.into());
    engine.on_def_var(|_, info, _| Ok(!RESERVED.contains(&info.name())));
    engine.on_progress(|operations| {
        // Reading the clock on every operation would cost more than the script itself.
        if operations % 4096 != 0 {
            return None;
        }
        let late = CURRENT.with(|c| c.borrow().as_ref().is_some_and(|ctx| Instant::now() >= ctx.deadline));
        late.then(|| Dynamic::from("the request's deadline passed"))
    });
    engine.on_print(|text| log_line(tracing::Level::INFO, text));
    engine.on_debug(|text, _, position| {
        let line = position.line().unwrap_or(0);
        with_names(|app, file| tracing::debug!(app, script = file, line, text, "script debug"));
    });

    for (name, method) in [
        ("get", Method::GET),
        ("delete", Method::DELETE),
        ("post", Method::POST),
        ("put", Method::PUT),
        ("patch", Method::PATCH),
    ] {
        let m = method.clone();
        engine.register_fn(name, move |_: &mut LegacyApi, path: Dynamic| {
            call(m.clone(), path, Map::new(), None, Map::new())
        });
        let m = method.clone();
        if matches!(method, Method::GET | Method::DELETE) {
            engine.register_fn(name, move |_: &mut LegacyApi, path: Dynamic, query: Map| {
                call(m.clone(), path, query, None, Map::new())
            });
            let m = method.clone();
            engine.register_fn(name, move |_: &mut LegacyApi, path: Dynamic, query: Map, options: Map| {
                call(m.clone(), path, query, None, options)
            });
        } else {
            engine.register_fn(name, move |_: &mut LegacyApi, path: Dynamic, body: Dynamic| {
                call(m.clone(), path, Map::new(), Some(body), Map::new())
            });
            let m = method.clone();
            engine.register_fn(name, move |_: &mut LegacyApi, path: Dynamic, body: Dynamic, query: Map| {
                call(m.clone(), path, query, Some(body), Map::new())
            });
            let m = method.clone();
            engine.register_fn(
                name,
                move |_: &mut LegacyApi, path: Dynamic, body: Dynamic, query: Map, options: Map| {
                    call(m.clone(), path, query, Some(body), options)
                },
            );
        }
    }
    engine.register_fn("request", |_: &mut LegacyApi, spec: Map| request(spec));
    engine.register_fn("unexpected", |_: &mut LegacyApi, response: Map| unexpected(response, ""));
    engine.register_fn("unexpected", |_: &mut LegacyApi, response: Map, what: &str| unexpected(response, what));

    engine.register_fn("get", |_: &mut IdsApi, namespace: &str, key: &str| -> Result<Dynamic, Box<EvalAltResult>> {
        let ctx = current()?;
        if ctx.journal.as_ref().is_some_and(|j| j.is_recording()) {
            return Ok(Dynamic::UNIT);
        }
        Ok(ctx.ids.custom_get(namespace, key).map_or(Dynamic::UNIT, Dynamic::from))
    });
    engine.register_fn(
        "set",
        |_: &mut IdsApi, namespace: &str, key: &str, value: &str| -> Result<(), Box<EvalAltResult>> {
            let ctx = current()?;
            // A dry run's answers are made up: nothing learnt from them is kept.
            if !ctx.journal.as_ref().is_some_and(|j| j.is_dry_run()) {
                ctx.ids.custom_set(namespace, key, value);
            }
            Ok(())
        },
    );
    engine.register_fn("remove", |_: &mut IdsApi, namespace: &str, key: &str| -> Result<(), Box<EvalAltResult>> {
        current()?.ids.custom_remove(namespace, key);
        Ok(())
    });

    engine.register_type_with_name::<Results>("Results");
    engine.register_fn("results", || -> Result<Results, Box<EvalAltResult>> {
        current()?;
        Ok(Results::default())
    });
    engine.register_fn("+=", |list: &mut Results, items: Array| list.append(items));
    engine.register_fn("append", |list: &mut Results, items: Array| list.append(items));
    engine.register_fn("push", |list: &mut Results, item: Dynamic| list.append(vec![item]));
    engine.register_fn("len", Results::len);
    engine.register_fn("is_empty", |list: &mut Results| list.len() == 0);

    engine.register_fn("log_debug", |text: &str| log_line(tracing::Level::DEBUG, text));
    engine.register_fn("log_info", |text: &str| log_line(tracing::Level::INFO, text));
    engine.register_fn("log_warn", |text: &str| log_line(tracing::Level::WARN, text));
    engine.register_fn("log_error", |text: &str| log_line(tracing::Level::ERROR, text));

    engine.register_fn("compact", compact);
    engine.register_fn("json_encode", |value: Dynamic| -> Result<String, Box<EvalAltResult>> {
        let json = super::ScriptEngine::to_json(&value).map_err(runtime_error)?;
        Ok(json.to_string())
    });
    engine.register_fn("json_decode", |text: &str| -> Result<Dynamic, Box<EvalAltResult>> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| runtime_error(format!("invalid JSON: {e}")))?;
        Ok(super::ScriptEngine::to_dynamic(&json))
    });
    engine.register_fn("base64_encode", |text: &str| base64::engine::general_purpose::STANDARD.encode(text));
    engine.register_fn("base64_decode", |text: &str| -> Result<String, Box<EvalAltResult>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| runtime_error(format!("invalid base64: {e}")))?;
        String::from_utf8(bytes).map_err(|_| runtime_error("decoded base64 is not UTF-8 text"))
    });
    engine.register_fn("url_encode", |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    });
    engine.register_fn("path_segment", |text: &str| crate::legacy::path::encode_segment(text));
    engine.register_fn("now", || format_time(time::OffsetDateTime::now_utc()));
    engine.register_fn("unix_time", || time::OffsetDateTime::now_utc().unix_timestamp());
}

/// `compact(value)`: the value without its `()` map entries and array items, and without the
/// maps that leaves empty, at every depth — so a mapping can be one map literal whose
/// absent parts are `()`. The value is taken as it is (a literal is not copied).
fn compact(value: Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
    compact_within(value, super::limits::MAX_VALUE_DEPTH)
        .ok_or_else(|| runtime_error(format!("compact: {}", super::too_deep())))
}

/// [`compact`] of a value that may nest `depth` more levels; `None` when it nests deeper.
fn compact_within(value: Dynamic, depth: usize) -> Option<Dynamic> {
    let value = value.flatten();
    let absent = |v: &Dynamic| v.is_unit() || v.read_lock::<Map>().is_some_and(|m| m.is_empty());
    if value.is_map() {
        let below = depth.checked_sub(1)?;
        // In place: the map's own nodes are kept, only what is left out is dropped.
        let mut map = value.cast::<Map>();
        for v in map.values_mut() {
            *v = compact_within(std::mem::take(v), below)?;
        }
        map.retain(|_, v| !absent(v));
        Some(Dynamic::from_map(map))
    } else if value.is_array() {
        let below = depth.checked_sub(1)?;
        let mut items = value.cast::<Array>();
        for v in &mut items {
            *v = compact_within(std::mem::take(v), below)?;
        }
        items.retain(|v| !absent(v));
        Some(Dynamic::from_array(items))
    } else {
        Some(value)
    }
}

/// Formats a time as SCIM writes it: RFC 3339 in UTC, whole seconds.
pub(crate) fn format_time(t: time::OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn with_names(f: impl FnOnce(&str, &str)) {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(ctx) => f(&ctx.app, &ctx.file),
        None => f("-", "-"),
    });
}

/// A script's `print` or `log_*` line. What the script wrote is the `text` field: a field
/// named `message` as well as the fixed message would be two `message` keys in a JSON line.
fn log_line(level: tracing::Level, text: &str) {
    with_names(|app, file| match level {
        tracing::Level::ERROR => tracing::error!(app, script = file, text, "script log"),
        tracing::Level::WARN => tracing::warn!(app, script = file, text, "script log"),
        tracing::Level::INFO => tracing::info!(app, script = file, text, "script log"),
        _ => tracing::debug!(app, script = file, text, "script log"),
    });
}

/// `legacy.request(#{ method, path, query, headers, body, idempotent })`.
fn request(spec: Map) -> Result<Map, Box<EvalAltResult>> {
    const KEYS: [&str; 6] = ["method", "path", "query", "headers", "body", "idempotent"];
    if let Some(key) = spec.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(runtime_error(format!(
            "legacy.request: unknown key {key}: the keys are method, path, query, headers, body and idempotent"
        )));
    }
    let method = spec
        .get("method")
        .map(|m| m.to_string().to_ascii_uppercase())
        .ok_or_else(|| runtime_error("legacy.request needs a method"))?;
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| runtime_error(format!("invalid method {method}")))?;
    let path = spec.get("path").cloned().ok_or_else(|| runtime_error("legacy.request needs a path"))?;
    let query = spec.get("query").and_then(|q| q.read_lock::<Map>().map(|m| m.clone())).unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(map) = spec.get("headers").and_then(|h| h.read_lock::<Map>().map(|m| m.clone())) {
        for (name, value) in map {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let body = spec.get("body").filter(|b| !b.is_unit()).cloned();
    let idempotent = match spec.get("idempotent") {
        None => false,
        Some(flag) => flag.as_bool().map_err(|_| runtime_error("legacy.request: idempotent is true or false"))?,
    };
    send(method, path, query, headers, body, idempotent)
}

fn call(
    method: Method,
    path: Dynamic,
    query: Map,
    body: Option<Dynamic>,
    options: Map,
) -> Result<Map, Box<EvalAltResult>> {
    let mut idempotent = false;
    for (key, value) in options {
        match key.as_str() {
            "idempotent" => {
                idempotent =
                    value.as_bool().map_err(|_| runtime_error("legacy call option idempotent is true or false"))?
            }
            other => {
                return Err(runtime_error(format!("unknown legacy call option {other}: the option is idempotent")));
            }
        }
    }
    send(method, path, query, Vec::new(), body, idempotent)
}

/// `legacy.unexpected(response)`: the fault to `throw` for an answer the script cannot use,
/// which the proxy then answers by its table (a 429 or 503 as retryable, with the legacy
/// app's `Retry-After`; anything else as `502`).
fn unexpected(response: Map, what: &str) -> Result<Map, Box<EvalAltResult>> {
    let ctx = current()?;
    let status = response
        .get("status")
        .and_then(|s| s.as_int().ok())
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| runtime_error("legacy.unexpected takes the response of a legacy call"))?;
    let header = |name: &str| {
        let headers = response.get("headers")?.read_lock::<Map>()?.clone();
        headers.get(name).map(|v| v.to_string())
    };
    let retry_after = header("retry-after").and_then(|v| crate::legacy::retry_after(&v)).map(|d| d.as_secs());
    let reason = match status {
        429 => "rate limited",
        503 => "unavailable",
        500..=599 => "the legacy app failed",
        200..=299 if response.get("json").is_none_or(|j| j.is_unit()) => "the body is not JSON",
        _ => "the script did not expect it",
    };
    let fault = LegacyError::Unexpected {
        app: ctx.app.to_string(),
        status,
        what: what.to_owned(),
        reason: reason.to_owned(),
        retry_after,
    };
    let mut thrown = Map::new();
    thrown.insert(FAULT_KEY.into(), Dynamic::from(fault_kind(&fault)));
    thrown.insert("status".into(), Dynamic::from(i64::from(status)));
    thrown.insert("message".into(), Dynamic::from(fault.to_string()));
    if let Ok(mut slot) = ctx.fault.lock() {
        *slot = Some(fault);
    }
    Ok(thrown)
}

fn send(
    method: Method,
    path: Dynamic,
    query: Map,
    headers: Vec<(String, String)>,
    body: Option<Dynamic>,
    idempotent: bool,
) -> Result<Map, Box<EvalAltResult>> {
    let ctx = current()?;
    let path = if let Some(segments) = path.read_lock::<Array>() {
        LegacyPath::Segments(segments.iter().map(|s| s.to_string()).collect())
    } else if path.is_string() {
        LegacyPath::Text(path.to_string())
    } else {
        return Err(runtime_error("a legacy path is a string like \"/users\" or an array of segments"));
    };
    let query = query.into_iter().filter(|(_, v)| !v.is_unit()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let body = match body {
        Some(b) => Some(super::ScriptEngine::to_json(&b).map_err(runtime_error)?),
        None => None,
    };
    let remaining = ctx.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from("the request's deadline passed"),
            Position::NONE,
        )));
    }
    let request = LegacyRequest { method, path, query, headers, body, idempotent };
    let noted = ctx.journal.as_ref().and_then(|journal| {
        let url = ctx.legacy.url_for(&request.path, &request.query).ok()?;
        Some((journal, ctx.legacy.relative(&url)))
    });
    if let Some((journal, path)) = &noted {
        if journal.is_dry_run() && journal::is_write(&request.method) {
            let status = journal::dry_run_status(&request.method);
            let body = request.body.clone();
            journal.push(Exchange {
                method: request.method.to_string(),
                path: path.clone(),
                body: request.body,
                sent: false,
                status: None,
                reply: None,
                fault: None,
            });
            return Ok(held_back_map(status, body));
        }
    }
    let (method, body) = match &noted {
        Some(_) => (request.method.to_string(), request.body.clone()),
        None => (String::new(), None),
    };
    let noted_path = match (&noted, &ctx.stats.noted) {
        (Some((_, path)), _) => Some(path.clone()),
        (None, Some(_)) if ctx.stats.notes_more() => {
            ctx.legacy.url_for(&request.path, &request.query).ok().map(|url| ctx.legacy.relative(&url))
        }
        (None, _) => None,
    };
    // The call's span: the legacy app gets it as the parent of what it does (`traceparent`).
    let mut span = ctx.trace.child(SpanKind::Client, || request.method.to_string());
    if span.recording() {
        span.set("http.request.method", request.method.as_str());
        if let Ok(url) = ctx.legacy.url_for(&request.path, &request.query) {
            span.set("url.path", url.path());
            span.set("server.address", url.host_str().unwrap_or_default());
            if let Some(port) = url.port_or_known_default() {
                span.set("server.port", port);
            }
        }
        span.set("scim.app", &*ctx.app);
    }
    let trace = span.headers();
    let started = Instant::now();
    let method_label = request.method.clone();
    let writes = journal::is_write(&request.method);
    let sent = if ctx.probe {
        ctx.runtime.block_on(ctx.legacy.send_past_breaker(request, &ctx.request_id, trace.as_ref(), remaining))
    } else {
        ctx.runtime.block_on(ctx.legacy.send(request, &ctx.request_id, trace.as_ref(), remaining))
    };
    let result = sent.result;
    if sent.retries > 0 {
        ctx.metrics.legacy_retries(&ctx.app, sent.retries);
        span.set("http.request.resend_count", sent.retries);
    }
    // A 4xx answer is the script's to read (a lookup that finds nothing is no failure); a 5xx
    // answer and a call with no answer fail the span.
    match &result {
        Ok(response) => {
            span.set("http.response.status_code", response.status);
            if response.status >= 500 {
                span.fail(&response.status.to_string(), || format!("the legacy app answered {}", response.status));
            }
        }
        Err(fault) => span.fail(fault_kind(fault), || fault.to_string()),
    }
    drop(span);
    let elapsed = started.elapsed();
    // A call the breaker refused made no exchange at all: it is counted as its fault only.
    if !matches!(result, Err(LegacyError::BreakerOpen { .. })) {
        ctx.stats.calls.fetch_add(1, Ordering::Relaxed);
        ctx.stats.micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        ctx.metrics.legacy_call(&ctx.app, method_label.as_str(), elapsed);
        ctx.stats.note(|| NotedCall {
            method: method_label.clone(),
            path: shorten(noted_path.unwrap_or_default(), NOTED_PATH_BYTES),
            status: result.as_ref().ok().map(|response| response.status),
            fault: result.as_ref().err().map(fault_kind),
            micros: elapsed.as_micros() as u64,
        });
    }
    // Only a write that may have reached the legacy app may have changed something.
    if writes && !result.as_ref().is_err_and(LegacyError::not_sent) {
        ctx.stats.writes.fetch_add(1, Ordering::Relaxed);
    }
    match &result {
        Ok(response) if response.status == 429 => ctx.metrics.legacy_error(&ctx.app, "http_429"),
        Ok(response) if response.status >= 500 => ctx.metrics.legacy_error(&ctx.app, "http_5xx"),
        Ok(_) => {}
        Err(fault) => ctx.metrics.legacy_error(&ctx.app, fault_kind(fault)),
    }
    if let Some((journal, path)) = noted {
        let (status, reply, fault) = match &result {
            Ok(response) => (Some(response.status), Some(reply_value(&response.body)), None),
            Err(fault) => (None, None, Some(fault.to_string())),
        };
        journal.push(Exchange { method, path, body, sent: true, status, reply, fault });
    }
    match result {
        Ok(response) => Ok(response_map(response)),
        Err(fault) => {
            let mut thrown = Map::new();
            thrown.insert(FAULT_KEY.into(), Dynamic::from(fault_kind(&fault)));
            thrown.insert("message".into(), Dynamic::from(fault.to_string()));
            if let Ok(mut slot) = ctx.fault.lock() {
                *slot = Some(fault);
            }
            Err(Box::new(EvalAltResult::ErrorRuntime(thrown.into(), Position::NONE)))
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, `…` marking a cut.
pub(crate) fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
        // Kept texts are held for long: what was cut off is given back.
        text.shrink_to_fit();
    }
    text
}

/// A short name for each kind of legacy fault, which scripts can test in a `catch`.
pub(super) fn fault_kind(fault: &LegacyError) -> &'static str {
    match fault {
        LegacyError::BadPath { .. } => "bad_path",
        LegacyError::BadHeader { .. } => "bad_header",
        LegacyError::BadBody { .. } => "bad_body",
        LegacyError::Connect { .. } => "connect",
        LegacyError::Timeout { .. } => "timeout",
        LegacyError::Transport { .. } => "transport",
        LegacyError::Malformed { .. } => "malformed",
        LegacyError::BreakerOpen { .. } => "breaker_open",
        LegacyError::Unexpected { .. } => "unexpected",
        LegacyError::TooLarge { .. } => "too_large",
        LegacyError::Tls { .. } => "tls",
        LegacyError::Token { .. } => "token",
    }
}

/// A legacy answer as a journal keeps it: the JSON it parses to, else its text.
fn reply_value(body: &[u8]) -> serde_json::Value {
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// What a script sees for a write a dry run held back: a success echoing what it sent, and
/// a `scim-proxy-dry-run` header it can test.
fn held_back_map(status: u16, body: Option<serde_json::Value>) -> Map {
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from(i64::from(status)));
    let mut headers = Map::new();
    headers.insert("scim-proxy-dry-run".into(), Dynamic::from("true"));
    map.insert("headers".into(), headers.into());
    let text = body.as_ref().map(|b| b.to_string()).unwrap_or_default();
    map.insert("json".into(), body.as_ref().map_or(Dynamic::UNIT, super::ScriptEngine::to_dynamic));
    map.insert("body".into(), Dynamic::from(text));
    map
}

/// `#{ status, headers, body, json }`: `json` is the parsed body, or `()` when it is not JSON.
fn response_map(response: LegacyResponse) -> Map {
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from(i64::from(response.status)));
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().into(), Dynamic::from(value.to_owned()));
        }
    }
    map.insert("headers".into(), headers.into());
    let json = serde_json::from_slice::<serde_json::Value>(&response.body)
        .map(|v| super::ScriptEngine::to_dynamic(&v))
        .unwrap_or(Dynamic::UNIT);
    map.insert("json".into(), json);
    map.insert("body".into(), Dynamic::from(String::from_utf8_lossy(&response.body).into_owned()));
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> serde_json::Value {
        let engine = super::super::ScriptEngine::new();
        let value: Dynamic = engine.engine.eval(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        super::super::ScriptEngine::to_json(&value).unwrap()
    }

    #[test]
    fn a_request_notes_its_first_legacy_calls_and_none_when_not_asked() {
        let call = |i: usize| NotedCall {
            method: Method::GET,
            path: format!("/users/{i}"),
            status: Some(200),
            fault: None,
            micros: 1,
        };
        let stats = CallStats::noting_calls();
        for i in 0..NOTED_CALLS + 5 {
            assert_eq!(stats.notes_more(), i < NOTED_CALLS);
            stats.note(|| call(i));
        }
        let noted = stats.noted_calls();
        assert_eq!(noted.len(), NOTED_CALLS);
        assert_eq!((noted[0].path.as_str(), noted[NOTED_CALLS - 1].path.as_str()), ("/users/0", "/users/19"));
        let off = CallStats::default();
        off.note(|| call(0));
        assert!(off.noted_calls().is_empty() && !off.notes_more());
        assert_eq!(shorten("abcdef".into(), 5), "ab…");
        assert_eq!(shorten("ééé".into(), 5), "é…");
        assert_eq!(shorten("abc".into(), 5), "abc");
    }

    /// A map holding a map … `levels + 1` deep (the innermost is empty), as script text.
    fn nested(levels: usize) -> String {
        format!("let m = #{{}}; for i in 0..{levels} {{ m = #{{ a: take(m) }}; }} m")
    }

    #[test]
    fn values_crossing_to_the_proxy_nest_at_most_128_levels() {
        let engine = super::super::ScriptEngine::new();
        let value = |levels: usize| -> Dynamic { engine.engine.eval(&nested(levels)).unwrap() };
        let json = super::super::ScriptEngine::to_json(&value(127)).unwrap();
        assert_eq!(super::super::ScriptEngine::to_json(&super::super::ScriptEngine::to_dynamic(&json)).unwrap(), json);
        assert!(is_plain(&value(127)) && !is_plain(&value(128)));
        let error = super::super::ScriptEngine::to_json(&value(128)).unwrap_err();
        assert_eq!(error, "a value nested deeper than 128 levels");
        for text in [format!("compact({{{}}})", nested(128)), format!("json_encode({{{}}})", nested(128))] {
            let error = engine.engine.eval::<Dynamic>(&text).unwrap_err();
            assert!(error.to_string().contains("nested deeper than 128 levels"), "{error}");
        }
        assert!(engine.engine.eval::<Dynamic>(&format!("compact({{{}}})", nested(127))).is_ok());
        let closure: Dynamic = engine.engine.eval("let f = || 1; f").unwrap();
        assert!(!is_plain(&closure));
    }

    #[test]
    fn converting_json_to_a_script_value_keeps_every_kind_and_order() {
        let json = serde_json::json!({
            "b": [1, -2, 2.5, "x", null, true, [], {}, [[{"z": [false]}]]],
            "a": {"nested": {"deeper": "yes"}, "n": 9_223_372_036_854_775_807_i64},
            "c": null
        });
        let value = super::super::ScriptEngine::to_dynamic(&json);
        assert_eq!(super::super::ScriptEngine::to_json(&value).unwrap(), json);
        assert_eq!(super::super::ScriptEngine::to_dynamic(&serde_json::json!(7)).as_int(), Ok(7));
    }

    #[test]
    fn compact_leaves_out_units_and_the_maps_they_empty_at_every_depth() {
        let compacted = eval(
            r#"compact(#{
                id: "7", title: (), active: false, count: 0, note: "",
                name: #{ givenName: (), familyName: () },
                emails: [#{ value: "a@x", type: () }, (), #{ value: () }],
                ext: #{ manager: #{ value: () }, department: () },
                tags: [],
            })"#,
        );
        assert_eq!(
            compacted,
            serde_json::json!({"id": "7", "active": false, "count": 0, "note": "", "emails": [{"value": "a@x"}], "tags": []})
        );
        assert_eq!(eval("compact(())"), serde_json::Value::Null);
        assert_eq!(eval("compact([(), 1, #{}])"), serde_json::json!([1]));
        assert_eq!(eval(r#"compact("text")"#), serde_json::json!("text"));
    }
}
