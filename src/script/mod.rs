//! Mapping scripts: the one Rhai engine, compiled scripts, and the errors of running them.
//!
//! May import: `cache`, `legacy`, and the foundation (`config`, `observe`, `scim`).

mod host;
mod json;
pub mod journal;
pub mod lint;
pub(crate) mod reload;
mod fiber;
mod runner;
mod threads;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Position};

pub use host::{CallStats, Sieve};
pub(crate) use host::{NOTED_CALLS, NOTED_PATH_BYTES, NotedCall, format_time, shorten};
pub use runner::AppScript;
pub use runner::CallScope;

use crate::config::ScriptConfig;
use crate::legacy::LegacyError;
use crate::scim::error::bounded_detail;

/// The functions of the script contract, with the arities the proxy can call them with.
pub(crate) const CONTRACT: &[(&str, &[usize])] = &[
    ("create_user", &[1]),
    ("get_user", &[1, 2]),
    ("list_users", &[1]),
    ("replace_user", &[2, 3, 4]),
    ("patch_user", &[4]),
    ("delete_user", &[1]),
    ("create_group", &[1]),
    ("get_group", &[1, 2]),
    ("list_groups", &[1]),
    ("replace_group", &[2, 3, 4]),
    ("patch_group", &[4]),
    ("delete_group", &[1]),
    ("add_members", &[2]),
    ("remove_members", &[2]),
    ("health", &[0]),
];

/// A failure of a script, or of something a script asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    /// The script does not compile.
    #[error("{file}:{line}:{column}: {message}")]
    Compile {
        /// The script file, as the configuration names it.
        file: String,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// Rhai's description of the error.
        message: String,
    },
    /// The script is not served: it is over a bound of `script.*` (its size, its compile
    /// time), or its compile could not run.
    #[error("{file}: {reason}")]
    Refused {
        /// The script file, as the configuration names it.
        file: String,
        /// Which bound it is over, or why the compile could not run.
        reason: String,
    },
    /// The script threw a SCIM error on purpose (`throw #{ status, scimType, detail }`).
    #[error("script error {status}: {detail}")]
    Thrown {
        /// The HTTP status the script chose.
        status: u16,
        /// The `scimType` the script chose, if any; an unknown one is not passed on.
        scim_type: Option<String>,
        /// The message for the client.
        detail: String,
    },
    /// The script failed in a way it did not mean to.
    #[error("script {file}: {function}: line {line}: {message}")]
    Runtime {
        /// The script file, as the configuration names it.
        file: String,
        /// The script function that failed.
        function: String,
        /// The line of the failure, from 1.
        line: usize,
        /// Rhai's description of the failure.
        message: String,
    },
    /// The script returned something that is not what its contract says.
    #[error("script {}{function} returned {detail}", if file.is_empty() { String::new() } else { format!("{file}: ") })]
    BadReturn {
        /// The script file; empty when an operation, not the script runner, found the value wrong.
        file: String,
        /// The contract function whose return value is wrong.
        function: String,
        /// What was returned and what was expected.
        detail: String,
    },
    /// The script ran past its operation or nesting limit and was stopped.
    ///
    /// Rhai reports no position for a stop (it passes such errors up unwrapped, each call
    /// level overwriting the position), so `function` is the contract function called.
    #[error("script {file}: {function}: stopped: {reason}")]
    Stopped {
        /// The script file, as the configuration names it.
        file: String,
        /// The contract function called.
        function: String,
        /// Which limit stopped it.
        reason: String,
    },
    /// The script was still running when the request's deadline passed, and was stopped.
    /// As for [`ScriptError::Stopped`], `function` is the contract function called.
    #[error("script {file}: {function}: stopped: the request's deadline passed")]
    Late {
        /// The script file, as the configuration names it.
        file: String,
        /// The contract function called.
        function: String,
    },
    /// A legacy call the script made failed without an HTTP answer, and the script let it through.
    // `LegacyError` stays crate-internal: outside the crate it is read through `Display` only.
    #[allow(private_interfaces)]
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    /// No script slot became free before the request's deadline.
    #[error("app {app}: all {limit} script slots are busy")]
    Overloaded {
        /// The app whose slots are busy.
        app: String,
        /// How many script slots the app has.
        limit: usize,
    },
    /// Every slot was busy and the queue for them full.
    #[error("app {app}: {limit} requests are already waiting for a script slot")]
    QueueFull {
        /// The app whose queue is full.
        app: String,
        /// How many requests may wait for a slot.
        limit: usize,
    },
    /// The script does not define the function a request needs.
    #[error("the mapping does not define {function}")]
    Missing {
        /// The contract function the request needs.
        function: String,
    },
}

/// The process-wide Rhai engine, with every limit set and the host API registered.
pub struct ScriptEngine {
    engine: rhai::Engine,
    /// What the engine compiles at all, and for how long (`script.*`).
    bounds: ScriptConfig,
}

impl std::fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptEngine")
    }
}

/// Limits every script call runs under.
pub(crate) mod limits {
    /// Rhai operations one call may perform.
    pub(crate) const MAX_OPERATIONS: u64 = 50_000_000;
    /// Nested function calls.
    pub(crate) const MAX_CALL_LEVELS: usize = 32;
    /// Expression nesting, at the top level and inside functions.
    pub(crate) const MAX_EXPR_DEPTH: usize = 64;
    /// Expression nesting inside functions.
    pub(crate) const MAX_FN_EXPR_DEPTH: usize = 32;
    // Rhai counts the three sizes below over a whole value, nested arrays and maps included:
    // a listing of 50,000 users (the default scan bound) must fit.
    /// Bytes of the strings in one value.
    pub(crate) const MAX_STRING_BYTES: usize = 64 * 1024 * 1024;
    /// Elements of the arrays in one value.
    pub(crate) const MAX_ARRAY_LEN: usize = 1_000_000;
    /// Entries of the object maps in one value.
    pub(crate) const MAX_MAP_LEN: usize = 4_000_000;
    /// Nesting of a value crossing between a script and the proxy (an answer, a legacy body,
    /// `json_encode`, `compact`, a `results()` item), so that converting or dropping one is
    /// safe on any thread. Above what serde_json parses (127 levels), so any JSON the proxy
    /// receives fits. Values inside a script are bounded by the script thread's stack instead
    /// (see `threads`).
    pub(crate) const MAX_VALUE_DEPTH: usize = 128;
}

/// The stack of a thread compiling a script: Rhai's parser and optimiser recurse as deep as
/// the expression depth limits allow, as on the main thread.
const COMPILE_STACK_BYTES: usize = 8 * 1024 * 1024;

impl ScriptEngine {
    /// Builds the engine with the default `script.*` bounds.
    pub fn new() -> Self {
        Self::with_bounds(&ScriptConfig::default())
    }

    /// Builds the engine with these `script.*` bounds; runs once at start, and again at a
    /// configuration reload that changes them.
    pub fn with_bounds(bounds: &ScriptConfig) -> Self {
        let mut engine = rhai::Engine::new();
        engine
            // The parser counts functions (closures included) as it meets them and stops at
            // the first one over: compile time grows with their square.
            .set_max_functions(bounds.max_functions)
            .set_max_operations(limits::MAX_OPERATIONS)
            .set_max_call_levels(limits::MAX_CALL_LEVELS)
            .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH)
            .set_max_string_size(limits::MAX_STRING_BYTES)
            .set_max_array_size(limits::MAX_ARRAY_LEN)
            .set_max_map_size(limits::MAX_MAP_LEN)
            .set_max_modules(0)
            .set_strict_variables(true)
            .set_fail_on_invalid_map_property(false)
            // Rhai interns the strings scripts assign in one cache shared by every script
            // thread, behind a lock; with users' names and ids it is mostly churn (a full
            // cache is scanned on each insert), and under load the lock is contended.
            .set_max_strings_interned(0);
        // Scripts load no modules and evaluate no strings: nothing outside the script runs.
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.disable_symbol("eval");
        host::register(&mut engine);
        Self { engine, bounds: bounds.clone() }
    }

    /// The `script.*` bounds the engine compiles with.
    pub(crate) fn bounds(&self) -> &ScriptConfig {
        &self.bounds
    }

    /// Reads a script file; one over `script.max_bytes` is refused before it is read whole.
    pub(crate) fn read_source(&self, path: &Path) -> Result<String, ScriptError> {
        let file = path.display().to_string();
        let unreadable = |e: std::io::Error| ScriptError::Compile {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        };
        let opened = std::fs::File::open(path).map_err(unreadable)?;
        if let Some(size) = opened.metadata().ok().map(|m| m.len()).filter(|&len| len > self.bounds.max_bytes as u64) {
            return Err(self.too_large(&file, size));
        }
        // One byte past the bound tells a file that grew since, without reading it whole.
        let mut bytes = Vec::new();
        opened.take(self.bounds.max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() > self.bounds.max_bytes {
            return Err(self.too_large(&file, bytes.len() as u64));
        }
        String::from_utf8(bytes).map_err(|e| unreadable(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// Reads and compiles a script file within `script.compile_timeout`, blocking the caller
    /// (start-up); see [`ScriptEngine::compile_in_time`].
    pub(crate) fn compile_file(self: &Arc<Self>, path: &Path) -> Result<Compiled, ScriptError> {
        let text = self.read_source(path)?;
        self.compile_in_time_blocking(text, path)
    }

    /// Compiles `text` on a thread of its own and waits for it at most `script.compile_timeout`,
    /// without holding a runtime thread: for reloads, which run while the proxy serves.
    ///
    /// Rhai cannot stop a compile under way: one that takes too long is abandoned, its thread
    /// left to finish and its result dropped, so that the caller (a watcher, shutdown) goes on.
    pub(crate) async fn compile_in_time(self: &Arc<Self>, text: String, path: &Path) -> Result<Compiled, ScriptError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.compile_aside(text, path, move |compiled| {
            let _ = sender.send(compiled);
        })?;
        match tokio::time::timeout(self.bounds.compile_timeout, receiver).await {
            Ok(Ok(compiled)) => compiled,
            Ok(Err(_)) => Err(self.compile_panicked(path)),
            Err(_) => Err(self.too_slow(path)),
        }
    }

    /// [`ScriptEngine::compile_in_time`], blocking the caller: for start-up and the command line.
    pub fn compile_in_time_blocking(self: &Arc<Self>, text: String, path: &Path) -> Result<Compiled, ScriptError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.compile_aside(text, path, move |compiled| {
            let _ = sender.send(compiled);
        })?;
        match receiver.recv_timeout(self.bounds.compile_timeout) {
            Ok(compiled) => compiled,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(self.compile_panicked(path)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(self.too_slow(path)),
        }
    }

    /// Starts compiling `text` on a new thread, which hands the result to `deliver`.
    fn compile_aside(
        self: &Arc<Self>,
        text: String,
        path: &Path,
        deliver: impl FnOnce(Result<Compiled, ScriptError>) + Send + 'static,
    ) -> Result<(), ScriptError> {
        let (engine, owned) = (self.clone(), path.to_path_buf());
        std::thread::Builder::new()
            .name("scim-compile".into())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn(move || deliver(engine.compile(&text, &owned)))
            .map(drop)
            .map_err(|e| ScriptError::Refused {
                file: path.display().to_string(),
                reason: format!("cannot start a thread to compile it: {e}"),
            })
    }

    fn too_large(&self, file: &str, size: u64) -> ScriptError {
        ScriptError::Refused {
            file: file.to_owned(),
            reason: format!(
                "{size} bytes, over script.max_bytes ({}): make the script smaller or raise script.max_bytes",
                self.bounds.max_bytes
            ),
        }
    }

    fn too_slow(&self, path: &Path) -> ScriptError {
        ScriptError::Refused {
            file: path.display().to_string(),
            reason: format!(
                "not compiled within script.compile_timeout ({}): make the script smaller or raise script.compile_timeout",
                crate::config::written(u64::try_from(self.bounds.compile_timeout.as_millis()).unwrap_or(u64::MAX))
            ),
        }
    }

    fn compile_panicked(&self, path: &Path) -> ScriptError {
        ScriptError::Refused { file: path.display().to_string(), reason: "the compile failed (panicked)".into() }
    }

    /// Compiles script text on the calling thread; `path` names it in errors and logs. Text
    /// over `script.max_bytes`, or defining more than `script.max_functions`, is refused.
    pub fn compile(&self, text: &str, path: &Path) -> Result<Compiled, ScriptError> {
        let file = path.display().to_string();
        if text.len() > self.bounds.max_bytes {
            return Err(self.too_large(&file, text.len() as u64));
        }
        let mut ast = self.engine.compile_with_scope(&host::compile_scope(), text).map_err(|e| {
            let position = e.position();
            let message = match e.err_type() {
                rhai::ParseErrorType::TooManyFunctions => format!(
                    "more than {} functions (closures included), over script.max_functions: make the script smaller or raise script.max_functions",
                    self.bounds.max_functions
                ),
                other => other.to_string(),
            };
            ScriptError::Compile {
                file: file.clone(),
                line: position.line().unwrap_or(0),
                column: position.position().unwrap_or(0),
                message,
            }
        })?;
        ast.set_source(file.as_str());
        // A parameter of a reserved name would hide the proxy's object in its function.
        // (Closures, `anon$…`, take the outer names they capture as parameters: those are
        // the proxy's objects themselves.)
        if let Some((function, param)) = ast.iter_functions().filter(|f| !f.name.starts_with("anon$")).find_map(|f| {
            f.params.iter().find(|p| host::RESERVED.contains(p)).map(|p| (f.name.to_owned(), p.to_string()))
        }) {
            let line =
                text.lines().position(|l| l.trim_start().starts_with(&format!("fn {function}("))).map_or(0, |i| i + 1);
            return Err(ScriptError::Compile {
                file,
                line,
                column: 0,
                message: format!(
                    "parameter {param} of {function}: {param} is the proxy's, name the parameter otherwise"
                ),
            });
        }
        // Closures are compiled to `anon$…` functions: not the script's own names.
        let functions: BTreeSet<(String, usize)> = ast
            .iter_functions()
            .filter(|f| !f.name.starts_with("anon$"))
            .map(|f| (f.name.to_owned(), f.params.len()))
            .collect();
        // The set is ordered by arity within a name: the last one seen is the highest.
        let arities = functions.iter().map(|(name, arity)| (name.clone(), *arity)).collect();
        Ok(Compiled {
            ast: Arc::new(ast),
            functions,
            arities,
            path: path.to_path_buf(),
            file: Arc::from(file),
            fingerprint: crate::scim::fingerprint(text.as_bytes()),
            templates: Arc::default(),
        })
    }

    /// Converts JSON into a script value: `null` is `()`, integers that fit are `INT`, other
    /// numbers `FLOAT` (as `rhai::serde::to_dynamic` does, without its serializer's overhead:
    /// this runs on every resource given to a script).
    pub fn to_dynamic(value: &serde_json::Value) -> Dynamic {
        json::to_dynamic(value)
    }

    /// Parses JSON text straight into a script value, the same value [`ScriptEngine::to_dynamic`]
    /// makes of it: every legacy answer is read this way, without a `serde_json::Value` between.
    pub fn parse_json(text: &str) -> Result<Dynamic, serde_json::Error> {
        json::from_str(text)
    }

    /// Converts a script value into JSON; `()` becomes `null`, a `results()` list an array.
    ///
    /// The common types are converted directly; anything else (characters, blobs, timestamps,
    /// custom types) goes through `rhai::serde`, whose answer this matches. A value nested
    /// deeper than [`limits::MAX_VALUE_DEPTH`] is refused.
    pub fn to_json(value: &Dynamic) -> Result<serde_json::Value, String> {
        json::to_json_within(value, 0)
    }

    /// Converts a resource a script answered into JSON as [`ScriptEngine::to_json`] does, but
    /// with what it lacks left out at every depth, as `compact` leaves it out: `()` map entries
    /// and array items, and the maps that leaves empty. A resource is read the same whether
    /// its mapping wrote `()` for an absent part or left it out (RFC 7643 §2.5: null and
    /// unassigned are one state), down to its `schemas` and its version.
    pub fn resource_to_json(value: &Dynamic) -> Result<serde_json::Value, String> {
        json::resource_to_json_within(value, 0)
    }

    /// The items of a list a script answered (an array or a `results()` list), taken out of
    /// it for the proxy to read once the script call is over, and how many matching items a
    /// `results(query)` list cut out as past the page the request answers with (they count in
    /// the listing's total); `None` when the value is no such list, or a `results()` list that
    /// is unavailable.
    pub(crate) fn into_items(list: Dynamic) -> Option<(Vec<Dynamic>, usize)> {
        let list = list.flatten();
        if list.is_array() {
            return list.try_cast::<rhai::Array>().map(|items| (items, 0));
        }
        let results = list.try_cast::<host::Results>()?;
        let items = results.take()?;
        Some((items, results.beyond()))
    }

    /// How many items a list a script answered counts (an array's items; the items appended
    /// to a `results()` list, those its sieve took out included).
    pub(crate) fn item_count(list: &Dynamic) -> Option<usize> {
        if let Some(items) = list.read_lock::<rhai::Array>() {
            return Some(items.len());
        }
        list.read_lock::<host::Results>().map(|results| results.count())
    }

    /// The entries of a resource found `depth` levels down whose key `keep` accepts, as JSON
    /// (each as [`ScriptEngine::resource_to_json`] converts it, absent ones left out); `None`
    /// when the value is no map.
    pub(crate) fn to_json_entries(
        value: &Dynamic,
        depth: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Option<Result<serde_json::Map<String, serde_json::Value>, String>> {
        let map = value.read_lock::<rhai::Map>()?;
        let mut object = serde_json::Map::new();
        for (key, value) in map.iter().filter(|(key, _)| keep(key.as_str())) {
            match json::resource_member_within(value, depth + 1) {
                Ok(Some(value)) => {
                    object.insert(key.as_str().to_owned(), value);
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(object))
    }

    /// [`ScriptEngine::resource_to_json`] of a resource found `depth` levels down.
    pub(crate) fn resource_to_json_within(value: &Dynamic, depth: usize) -> Result<serde_json::Value, String> {
        json::resource_to_json_within(value, depth)
    }
}

/// What a value nested too deeply is refused with.
pub(crate) fn too_deep() -> String {
    format!("a value nested deeper than {} levels", limits::MAX_VALUE_DEPTH)
}

impl Default for ScriptEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// A compiled script and the functions it defines.
#[derive(Debug, Clone)]
pub struct Compiled {
    ast: Arc<rhai::AST>,
    functions: BTreeSet<(String, usize)>,
    /// The highest arity of each function, looked up for every script call.
    arities: std::collections::HashMap<String, usize>,
    path: PathBuf,
    file: Arc<str>,
    /// A fingerprint of the text it was compiled from.
    fingerprint: u64,
    /// The templates its functions answered, made on first use (`fill`).
    templates: Arc<host::Templates>,
}

impl Compiled {
    /// The arity the script defines `name` with (the highest, when several), if it defines it.
    pub fn arity(&self, name: &str) -> Option<usize> {
        self.arities.get(name).copied()
    }

    /// A fingerprint of the text the script was compiled from.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Every function the script defines, as `(name, arity)`.
    pub fn functions(&self) -> impl Iterator<Item = (&str, usize)> {
        self.functions.iter().map(|(n, a)| (n.as_str(), *a))
    }

    /// Contract functions defined with an arity the proxy cannot call, as messages.
    pub(crate) fn contract_problems(&self) -> Vec<String> {
        self.functions()
            .filter_map(|(name, arity)| lint::arity_problem(name, arity))
            .map(|problem| format!("{}: {problem}", self.file))
            .collect()
    }

    /// The script's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Turns a failed call into a `ScriptError`, telling a deliberate `throw` from a fault.
fn classify(error: EvalAltResult, file: &str, function: &str, legacy_fault: Option<LegacyError>) -> ScriptError {
    let mut error = error;
    let mut function = function.to_owned();
    // The innermost error names the function and line where it really happened.
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = error {
        function = name;
        error = *inner;
    }
    let line = error.position().line().unwrap_or(0);
    match error {
        EvalAltResult::ErrorRuntime(value, position) => {
            // The fault kept is the one thrown only when the kinds agree: a script may throw a
            // fault map it caught earlier, after another fault was raised.
            if let Some(fault) = legacy_fault.filter(|f| host::is_legacy_fault(&value, host::fault_kind(f))) {
                return ScriptError::Legacy(fault);
            }
            thrown(&value).unwrap_or_else(|message| ScriptError::Runtime {
                file: file.to_owned(),
                function,
                line: position.line().unwrap_or(line),
                message,
            })
        }
        // Only the request's deadline terminates a script (the progress check, or a legacy
        // call made with no time left).
        EvalAltResult::ErrorTerminated(..) => ScriptError::Late { file: file.to_owned(), function },
        EvalAltResult::ErrorTooManyOperations(_) => ScriptError::Stopped {
            file: file.to_owned(),
            function,
            reason: format!("more than {} operations", limits::MAX_OPERATIONS),
        },
        EvalAltResult::ErrorStackOverflow(_) => ScriptError::Stopped {
            file: file.to_owned(),
            function,
            reason: format!("calls nested deeper than {} levels", limits::MAX_CALL_LEVELS),
        },
        EvalAltResult::ErrorDataTooLarge(what, _) => ScriptError::Stopped {
            file: file.to_owned(),
            function,
            reason: format!("{what} over its limit (see the Limits of docs/scripting.md)"),
        },
        EvalAltResult::ErrorTooManyModules(_) => {
            ScriptError::Stopped { file: file.to_owned(), function, reason: "import: scripts load no modules".into() }
        }
        other => ScriptError::Runtime { file: file.to_owned(), function, line, message: strip_position(other) },
    }
}

/// The function and line where a failed call really failed: those of the innermost call.
fn failure_site<'e>(mut error: &'e EvalAltResult, function: &'e str) -> (&'e str, usize) {
    let mut function = function;
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = error {
        function = name;
        error = inner;
    }
    (function, error.position().line().unwrap_or(0))
}

/// Reads a thrown `#{ status, scimType, detail }`; anything else thrown is a runtime fault.
fn thrown(value: &Dynamic) -> Result<ScriptError, String> {
    let Some(map) = value.read_lock::<rhai::Map>() else {
        return Err(format!("threw {}", bounded_detail(&value.to_string())));
    };
    let status = map.get("status").and_then(|s| s.as_int().ok());
    let status = match status {
        Some(s) if (400..=599).contains(&s) => s as u16,
        _ => {
            let value = bounded_detail(&value.to_string());
            return Err(format!("threw a map without a status between 400 and 599: {value}"));
        }
    };
    let text = |key: &str| map.get(key).filter(|v| !v.is_unit()).map(|v| v.to_string());
    Ok(ScriptError::Thrown {
        status,
        scim_type: text("scimType").or_else(|| text("scim_type")),
        detail: text("detail").map(|d| bounded_detail(&d)).unwrap_or_default(),
    })
}

fn strip_position(mut error: EvalAltResult) -> String {
    error.set_position(Position::NONE);
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(max_bytes: usize, max_functions: usize, compile_timeout_ms: u64) -> Arc<ScriptEngine> {
        Arc::new(ScriptEngine::with_bounds(&ScriptConfig {
            max_bytes,
            max_functions,
            compile_timeout: std::time::Duration::from_millis(compile_timeout_ms),
        }))
    }

    /// `n` functions of one line each, as an attacker's generated script has them.
    fn functions(n: usize) -> String {
        (0..n).map(|i| format!("fn f{i}(x) {{ x + {i} }}\n")).collect()
    }

    #[test]
    fn a_script_over_max_bytes_is_refused_naming_the_file_and_the_bound() {
        let engine = bounded(1024, 1000, 10_000);
        let text = functions(60);
        assert!(text.len() > 1024);
        let error = engine.compile(&text, Path::new("big.rhai")).unwrap_err().to_string();
        let says = format!("big.rhai: {} bytes, over script.max_bytes (1024)", text.len());
        assert!(error.starts_with(&says), "{error}");
        // From a file: refused by its size, before it is read whole.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.rhai");
        std::fs::write(&path, &text).unwrap();
        let error = engine.read_source(&path).unwrap_err().to_string();
        assert!(error.contains(&format!("{} bytes, over script.max_bytes (1024)", text.len())), "{error}");
        assert!(engine.compile_file(&path).unwrap_err().to_string().contains("script.max_bytes"));
        // At the bound it is read and compiled.
        let exact = format!("{text:<1024}", text = functions(40));
        std::fs::write(&path, &exact).unwrap();
        assert_eq!(engine.compile_file(&path).unwrap().functions().count(), 40);
    }

    #[test]
    fn a_script_with_more_functions_than_max_functions_is_refused_where_the_first_one_over_is() {
        let engine = bounded(1024 * 1024, 100, 10_000);
        assert_eq!(engine.compile(&functions(100), Path::new("a.rhai")).unwrap().functions().count(), 100);
        let error = engine.compile(&functions(101), Path::new("a.rhai")).unwrap_err().to_string();
        assert!(
            error.starts_with("a.rhai:101:1: more than 100 functions (closures included), over script.max_functions"),
            "{error}"
        );
        // Closures count: each is a function of its own.
        let closures = |name: &str| format!("fn {name}() {{\n{}}}\n", "    let f = |x| x;\n".repeat(60));
        let two = format!("{}{}", closures("g"), closures("h"));
        let error = engine.compile(&two, Path::new("a.rhai")).unwrap_err().to_string();
        assert!(error.contains("over script.max_functions"), "{error}");
        assert_eq!(engine.compile(&closures("g"), Path::new("a.rhai")).unwrap().functions().count(), 1);
    }

    #[test]
    fn a_compile_over_compile_timeout_is_abandoned_and_the_script_refused() {
        // Rhai's optimiser drops each statement without effect from the middle of its block:
        // compile time grows with the square of their number (0.7 s for 128 KiB).
        let text = format!("fn big(x) {{\n{}}}\n", "x;".repeat(64 * 1024));
        let engine = bounded(1024 * 1024, 1000, 100);
        let error = engine.compile_in_time_blocking(text.clone(), Path::new("slow.rhai")).unwrap_err().to_string();
        assert_eq!(
            error,
            "slow.rhai: not compiled within script.compile_timeout (100ms): make the script smaller or raise script.compile_timeout"
        );
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let error = runtime.block_on(engine.compile_in_time(text, Path::new("slow.rhai"))).unwrap_err();
        assert!(error.to_string().contains("script.compile_timeout (100ms)"), "{error}");
        // A script that compiles in time is served.
        let quick = runtime.block_on(engine.compile_in_time(functions(3), Path::new("quick.rhai"))).unwrap();
        assert_eq!(quick.arity("f2"), Some(1));
    }

    #[test]
    fn arity_names_the_highest_arity_a_function_is_defined_with() {
        let text = "fn get_user(id) { id }\nfn get_user(id, attributes) { id }\nfn get_userx() { 1 }\n";
        let compiled = ScriptEngine::new().compile(text, Path::new("a.rhai")).unwrap();
        assert_eq!((compiled.arity("get_user"), compiled.arity("get_userx")), (Some(2), Some(0)));
        assert_eq!((compiled.arity("get_use"), compiled.arity("list_users")), (None, None));
    }
}
