//! What the proxy tells its operators: the log set-up, Prometheus metrics and OpenTelemetry
//! traces, which every stage writes to.
//!
//! May import: `config`.

mod json_log;
pub(crate) mod log_writer;
pub mod metrics;
pub(crate) mod process;
pub mod telemetry;
pub mod trace;

/// The whole `source()` chain of an error, which is where reqwest keeps the useful part.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
