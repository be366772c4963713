//! Logging set-up: tracing to stderr, pretty for a terminal or JSON for collection.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; `RUST_LOG`, when set, wins over the configured level.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(directive),
        _ => EnvFilter::try_new(&config.level),
    }
    .map_err(|e| format!("log.level {:?} is not a valid filter: {e}", config.level))?;
    use std::io::IsTerminal as _;
    if !config.flush_interval.is_zero() && super::log_writer::install(config.flush_interval) {
        // A panic's report follows the lines made before it.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            super::log_writer::flush_before_panic();
            report(info);
        }));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| super::log_writer::GatheredWriter)
        // A reader of stderr that went away (a log collector restarting) must not take the
        // proxy down: the default reports a failed write with `eprintln!`, which panics then.
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match config.format {
        // The event's fields at the top level, and the span it happened in (the request's:
        // its id and app) as `span`; the list of every enclosing span would only repeat it.
        LogFormat::Json => {
            builder.fmt_fields(super::json_log::SpanFields).event_format(super::json_log::JsonLine).try_init()
        }
        LogFormat::Pretty => builder.compact().try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Writes the log lines still waiting (`log.flush_interval`) to stderr: before the process
/// exits, and before anything else is written to stderr.
pub fn flush_log() {
    super::log_writer::flush();
}

/// Writes one line of a command's report to stdout. A reader that went away (`check | head`)
/// is not an error: the rest of the report is dropped, as Unix tools do, where `println!`
/// would panic.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Set once the process is to write JSON lines only (`log.format: json`): failures and panics
/// are then JSON lines too.
static JSON_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every line the process writes to stderr itself a JSON object, as `log.format: json`
/// asks: start-up failures (see [`failure`]) and panics (a panic hook replaces Rust's
/// plain-text report). Runs before the configuration is fully valid, so that its own errors
/// follow the format too.
pub fn json_lines() {
    use std::io::Write as _;
    JSON_LINES.store(true, std::sync::atomic::Ordering::SeqCst);
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        let location = info.location().map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line()));
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        let line = json_line("ERROR", "panic", &[("panic", &text), ("location", &location), ("thread", &thread)]);
        // Not `eprintln!`: a failed write would panic inside the hook and abort the process.
        let _ = writeln!(std::io::stderr(), "{line}");
    }));
}

/// Whether the configuration asks for JSON lines (`log.format: json`), read leniently from the
/// file's text: the answer holds even when the rest of the configuration is not valid.
pub fn asks_for_json(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else { return false };
    value.get("log").and_then(|log| log.get("format")).and_then(serde_yaml_ng::Value::as_str) == Some("json")
}

/// A command's failure as its user (or log collector) reads it: `error: <what>` on a terminal,
/// one JSON line under `log.format: json`.
pub fn failure(text: &str) -> String {
    if JSON_LINES.load(std::sync::atomic::Ordering::SeqCst) {
        json_line("ERROR", "cannot run", &[("error", text)])
    } else {
        format!("error: {text}")
    }
}

/// One JSON log line with the keys tracing's JSON lines have (`timestamp`, `level`, `message`,
/// `target`) and `fields` at the top level.
fn json_line(level: &str, message: &str, fields: &[(&str, &str)]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut line = serde_json::Map::new();
    line.insert("timestamp".into(), timestamp.into());
    line.insert("level".into(), level.into());
    line.insert("message".into(), message.into());
    line.insert("target".into(), "scim_proxy".into());
    for (key, value) in fields {
        line.insert((*key).into(), (*value).into());
    }
    serde_json::Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_has_the_keys_of_tracings_lines_and_escapes_its_fields() {
        let line = json_line("ERROR", "panic", &[("panic", "index out of bounds: \"x\"\nnext"), ("thread", "main")]);
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(
            (&value["level"], &value["message"], &value["target"]),
            (&"ERROR".into(), &"panic".into(), &"scim_proxy".into())
        );
        assert_eq!(value["panic"], "index out of bounds: \"x\"\nnext");
        assert!(value["timestamp"].as_str().is_some_and(|t| t.len() >= 20 && t.ends_with('Z')), "{line}");
    }
}
