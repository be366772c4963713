//! The legacy calls of one request, as they were made: for dry runs and recordings.
//!
//! A request gets a journal only when someone asked to see its calls (a dry run, or an app
//! with `record` configured); without one, the legacy client path stays as it is.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// One call a mapping made to its legacy app, and its outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Exchange {
    pub method: String,
    /// Path and query relative to the app's `legacy.base_url`, as sent (percent-encoded).
    pub path: String,
    /// The JSON body the script sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// False for a write a dry run held back.
    pub sent: bool,
    /// The legacy app's status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Its answer: JSON when the body parsed as JSON, else the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Value>,
    /// Why there was no answer (connection refused, timeout, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Why a request's calls are written down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    /// To show them in a log line (`log.bodies`).
    #[default]
    Observe,
    /// To write a test file (`record`).
    Record,
    /// To hold writes back and report them (`Scim-Proxy-Dry-Run`).
    DryRun,
}

/// The calls of one request, in order.
#[derive(Debug, Default)]
pub struct Journal {
    mode: Mode,
    entries: Mutex<Vec<Exchange>>,
}

impl Journal {
    /// A journal that records every call (sent as usual) for a test file.
    pub(crate) fn recording() -> Self {
        Self { mode: Mode::Record, entries: Mutex::default() }
    }

    /// A journal under which writes are recorded and not sent.
    pub(crate) fn dry_run() -> Self {
        Self { mode: Mode::DryRun, entries: Mutex::default() }
    }

    /// A journal that only keeps the calls, for the body log.
    pub(crate) fn observing() -> Self {
        Self { mode: Mode::Observe, entries: Mutex::default() }
    }

    /// True when writes are to be held back.
    pub(crate) fn is_dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    /// True when the calls are recorded for a test file: the request then runs as if the ID
    /// cache were cold, so that the recording replays the same in a fresh proxy.
    pub(crate) fn is_recording(&self) -> bool {
        self.mode == Mode::Record
    }

    pub(crate) fn push(&self, exchange: Exchange) {
        match self.entries.lock() {
            Ok(mut entries) => entries.push(exchange),
            Err(poisoned) => poisoned.into_inner().push(exchange),
        }
    }

    /// The calls made so far.
    pub(crate) fn entries(&self) -> Vec<Exchange> {
        match self.entries.lock() {
            Ok(entries) => entries.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// True for the methods a dry run holds back: everything but reads.
pub(crate) fn is_write(method: &http::Method) -> bool {
    !matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS)
}

/// The status a dry run answers a held-back write with, as a typical API would.
pub(crate) fn dry_run_status(method: &http::Method) -> u16 {
    match *method {
        http::Method::POST => 201,
        http::Method::DELETE => 204,
        _ => 200,
    }
}

/// Why a dry run's answer may be a `500` that says nothing about a real run, for its report.
///
/// Called when the mapping failed after writes were held back. Each held-back write was
/// answered with the body the mapping sent; one without an `id` is named, since a mapping
/// that reads the written record from the answer finds no id there.
pub(crate) fn explain_fault(calls: &[Exchange]) -> String {
    let without_id: Vec<String> = calls
        .iter()
        .filter(|c| !c.sent && c.body.as_ref().is_some_and(|b| b.is_object() && b.get("id").is_none()))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    let echoed = match without_id.as_slice() {
        [] => "Each held-back write was answered with the body the mapping sent, and the mapping failed \
               after that: if it reads the written record from the answer, a real answer may have had \
               what it needed; if not, the fault is the mapping's own."
            .to_owned(),
        [one] => format!(
            "The held-back write {one} was answered with the body the mapping sent, which has no `id`: \
             a mapping that reads the written record (its id, its timestamps) from the answer cannot \
             make a SCIM resource of it, while the legacy app's real answer would carry the record."
        ),
        many => format!(
            "The held-back writes {} were answered with the bodies the mapping sent, which have no `id`: \
             a mapping that reads the written record (its id, its timestamps) from the answer cannot \
             make a SCIM resource of them, while the legacy app's real answers would carry the record.",
            many.join(", ")
        ),
    };
    format!(
        "{echoed} legacyCalls shows what a real run would send; the proxy log has the mapping's error \
         under this request's id (the X-Request-Id header)."
    )
}
