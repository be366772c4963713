//! What the proxy gives scripts: the `legacy` and `id_cache` objects, logging, JSON, base64, URLs, time.
//!
//! A script call runs once, from its start to its end, in a fiber on a runtime worker or on
//! a script thread; while it runs on a thread, its context (its app, its legacy client, its
//! deadline) sits in a thread-local of that thread, which is how the functions registered once
//! on the shared engine reach the right call.

mod legacy;
mod results;
mod template;

pub(in crate::script) use legacy::Answer;
use legacy::{call, request, unexpected};
pub(super) use legacy::{fault_kind, perform};
pub use results::Sieve;
pub(super) use results::{Held, Results, is_plain};
pub(crate) use template::Templates;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use http::Method;
use rhai::{Array, Dynamic, EvalAltResult, Map, Position};

use super::fiber::{Resumed, SuspendPoint, Suspended};
use super::journal::Journal;
use crate::cache::IdCache;
use crate::legacy::{LegacyClient, LegacyError};
use crate::observe::trace::TraceScope;

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
    pub held: Mutex<Held>,
    /// What a listing's `results(query)` lists keep of what is appended, for a listing whose
    /// filter the proxy can test on resources as the script gives them.
    pub sieve: Option<Arc<dyn Sieve>>,
    /// The trace the call's legacy calls continue: the script call's span is their parent.
    pub trace: TraceScope,
    /// Whether the call runs on a runtime worker: having used [`INLINE_OPERATIONS`] there, it
    /// suspends itself to go on on a script thread.
    pub inline: AtomicBool,
    /// The fiber the call runs in, if it runs in one.
    pub suspender: SuspendPoint,
    /// The templates of the call's script, kept once made (`fill`).
    pub templates: Arc<Templates>,
}

/// The most operations a script call may use on a runtime worker before it is moved to a
/// script thread of its own: some 40 times what mapping one user takes, about 2 ms of a core,
/// so that other requests on the worker wait no longer than that.
pub(super) const INLINE_OPERATIONS: u64 = 5_000;

impl CallContext {
    /// Whether the call runs in a fiber, and so can suspend itself.
    pub(super) fn in_fiber(&self) -> bool {
        self.suspender.is_set()
    }

    /// Suspends the call's fiber, if it runs in one, and gives what it is resumed with.
    fn suspend(&self, why: Suspended) -> Option<Resumed> {
        self.suspender.suspend(why)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CallContext>>> = const { RefCell::new(None) };
}

/// Installs a call's context on this thread until dropped: around each resumption of the
/// call's fiber, or around the whole call on a script thread.
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
        if operations == INLINE_OPERATIONS {
            // Resumed on a script thread (which marks the call no longer inline), the call goes
            // on from here.
            let inline = CURRENT.with(|c| c.borrow().clone()).filter(|ctx| ctx.inline.load(Ordering::Relaxed));
            if let Some(ctx) = inline {
                let _ = ctx.suspend(Suspended::Budget);
            }
        }
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
            if ctx.journal.as_ref().is_some_and(|j| j.is_dry_run()) {
                return Ok(());
            }
            ctx.ids.custom_set(namespace, key, value);
            Ok(())
        },
    );
    engine.register_fn("remove", |_: &mut IdsApi, namespace: &str, key: &str| -> Result<(), Box<EvalAltResult>> {
        let ctx = current()?;
        ctx.ids.custom_remove(namespace, key);
        Ok(())
    });

    engine.register_type_with_name::<Results>("Results");
    engine.register_fn("results", || -> Result<Results, Box<EvalAltResult>> {
        current()?;
        Ok(Results::default())
    });
    // A listing's list: what cannot match the request's filter is dropped as it is appended.
    engine.register_fn("results", |_query: Map| -> Result<Results, Box<EvalAltResult>> {
        Ok(Results::sifted(current()?.sieve.clone()))
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
    engine.register_fn("preferred", |values: &mut Dynamic| preferred(values, None));
    engine.register_fn("preferred", |values: &mut Dynamic, kind: &str| preferred(values, Some(kind)));
    engine.register_type_with_name::<template::Field>("Field");
    engine.register_fn("field", template::Field::named);
    engine.register_fn("as_text", template::Field::as_text);
    engine.register_fn("as_int", template::Field::as_int);
    engine.register_fn("or", template::Field::or);
    engine.register_fn("preferred", |field: &mut template::Field| field.preferred(None));
    engine.register_fn("preferred", |field: &mut template::Field, kind: &str| field.preferred(Some(kind)));
    engine.register_fn("fill", template::fill);
    engine.register_fn("fill", template::fill_each);
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
    engine.register_fn("path_segment", |text: &str| crate::legacy::path::encode_segment(text).into_owned());
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

/// `values.preferred()`, `values.preferred(type)`: the item of a multi-valued attribute to keep
/// where the legacy app holds one value: the one marked `primary` (RFC 7643 §2.4), else the
/// first whose `type` is `type` (compared without case), else the first; `()` for `()` or an
/// empty array. Read in place, as a method (`user.emails.preferred("work")`): only the item
/// answered is copied, where a script function would copy the whole array to receive it.
fn preferred(values: &mut Dynamic, kind: Option<&str>) -> Result<Dynamic, Box<EvalAltResult>> {
    if values.is_unit() {
        return Ok(Dynamic::UNIT);
    }
    let Some(items) = values.read_lock::<Array>() else {
        return Err(runtime_error(format!("preferred: {} is not an array", values.type_name())));
    };
    Ok(preferred_item(&items, kind).cloned().unwrap_or(Dynamic::UNIT))
}

/// The item [`preferred`] chooses among `items`, if any.
pub(super) fn preferred_item<'a>(items: &'a [Dynamic], kind: Option<&str>) -> Option<&'a Dynamic> {
    let is_primary = |item: &&Dynamic| {
        item.read_lock::<Map>().is_some_and(|m| m.get("primary").is_some_and(|p| p.as_bool() == Ok(true)))
    };
    let of_kind = |item: &&Dynamic| {
        let Some(kind) = kind else { return false };
        item.read_lock::<Map>().is_some_and(|m| {
            m.get("type")
                .and_then(|t| t.read_lock::<rhai::ImmutableString>())
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    };
    items.iter().find(is_primary).or_else(|| items.iter().find(of_kind)).or_else(|| items.first())
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

    #[test]
    fn preferred_is_the_primary_item_else_the_first_of_the_type_else_the_first() {
        let emails = r#"[#{ value: "home@x", type: "home" }, #{ value: "work@x", type: "Work" },
                         #{ value: "main@x", type: "other", primary: true }]"#;
        assert_eq!(
            eval(&format!("{emails}.preferred()")),
            serde_json::json!({"value": "main@x", "type": "other", "primary": true})
        );
        assert_eq!(eval(&format!("{emails}.preferred(\"work\").value")), serde_json::json!("main@x"));
        let unmarked = r#"[#{ value: "home@x", type: "home" }, #{ value: "work@x", type: "Work", primary: false }]"#;
        assert_eq!(eval(&format!("{unmarked}.preferred(\"work\").value")), serde_json::json!("work@x"));
        assert_eq!(eval(&format!("{unmarked}.preferred(\"fax\").value")), serde_json::json!("home@x"));
        assert_eq!(eval(&format!("{unmarked}.preferred().value")), serde_json::json!("home@x"));
        // `primary` must be the boolean true; items that are not maps are passed over.
        assert_eq!(
            eval(r#"[1, #{ value: "a", primary: "true" }, #{ value: "b", primary: true }].preferred().value"#),
            serde_json::json!("b")
        );
        assert_eq!(eval("[].preferred()"), serde_json::Value::Null);
        assert_eq!(eval("().preferred(\"work\")"), serde_json::Value::Null);
        // Read where it is: an absent attribute of a map is `()`, and so is its preferred value.
        assert_eq!(
            eval(
                r#"let user = #{ emails: [#{ value: "a@x" }] }; [user.emails.preferred()?.value, user.phoneNumbers.preferred("work")?.value]"#
            ),
            serde_json::json!(["a@x", null])
        );
        // A script's own function of that name, as scripts wrote before, is still the one called.
        assert_eq!(
            eval(r#"fn preferred(values) { "mine" } preferred([#{ value: "a@x" }])"#),
            serde_json::json!("mine")
        );
        let engine = super::super::ScriptEngine::new();
        let error = engine.engine.eval::<Dynamic>(r#"#{ value: "a@x" }.preferred()"#).unwrap_err();
        assert!(error.to_string().contains("preferred: map is not an array"), "{error}");
    }

    /// A resource is converted as if `compact` had been applied first: its mapping may write
    /// `()` for what the record lacks and need not call `compact` at all.
    #[test]
    fn a_resource_converts_as_its_compacted_self() {
        let engine = super::super::ScriptEngine::new();
        let cases = [
            r#"#{ id: "7", title: (), active: false, count: 0, note: "", tags: [], empty: #{},
                name: #{ givenName: (), familyName: () },
                emails: [#{ value: "a@x", type: () }, (), #{ value: () }, [(), #{}]],
                ext: #{ manager: #{ value: () }, department: () } }"#,
            "#{}",
            "#{ a: () }",
            "()",
            "[(), 1, #{}]",
            r#""text""#,
        ];
        for text in cases {
            let value: Dynamic = engine.engine.eval(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let compacted = compact(value.clone()).unwrap();
            assert_eq!(
                super::super::ScriptEngine::resource_to_json(&value).unwrap(),
                super::super::ScriptEngine::to_json(&compacted).unwrap(),
                "{text}"
            );
        }
        // Everything else is converted as it is: `()` is null.
        assert_eq!(eval("#{ a: (), b: [()] }"), serde_json::json!({"a": null, "b": [null]}));
    }
}
