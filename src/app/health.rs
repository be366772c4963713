//! Readiness of the legacy apps: each script that defines `health()` is asked every
//! `server.health_interval`, and `/readyz` fails while one says its app is not well.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Dynamic;

use crate::app::App;
use crate::observe::metrics::Metrics;
use crate::script::{CallScope, CallStats};

/// The last answer of an app's `health()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub healthy: bool,
    /// Why not, when not.
    pub detail: Option<String>,
}

/// What is known of an app's health: nothing until the first check.
#[derive(Debug, Default)]
pub(crate) struct Health {
    last: Mutex<Option<Checked>>,
}

impl Health {
    /// The last check, if any.
    pub(crate) fn last(&self) -> Option<Checked> {
        match self.last.lock() {
            Ok(last) => last.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, checked: Checked) {
        match self.last.lock() {
            Ok(mut last) => *last = Some(checked),
            Err(poisoned) => *poisoned.into_inner() = Some(checked),
        }
    }
}

/// Why `/readyz` does not cover an app's legacy app, if it does not: its script defines no
/// `health()`, or `server.health_interval` is `0s`. Said by `/readyz` and `scim-proxy check`.
pub fn readiness_gap(script: &crate::script::Compiled, interval: std::time::Duration) -> Option<&'static str> {
    if script.arity("health").is_none() {
        Some(
            "the script defines no health(): /readyz does not cover the legacy app (a pod stays ready while every request fails); define one, see docs/scripting.md",
        )
    } else if interval.is_zero() {
        Some("server.health_interval is 0s: health() is not called and /readyz does not cover the legacy app")
    } else {
        None
    }
}

/// Longest time one `health()` call may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// Asks an app's script whether its legacy app is well, and keeps the answer.
///
/// `health()` answers `true` (or nothing) when it is, `false` or a text saying why when it is
/// not; a throw or a legacy fault is "not well" too. It runs on a script slot of its own
/// (`AppScript::call`), so requests holding every slot of the app do not make it unready.
pub(crate) async fn check(app: &App, metrics: &Arc<Metrics>) -> Option<Checked> {
    app.script.arity("health")?;
    let scope = CallScope {
        request_id: Arc::from(format!("health-{}", app.name())),
        deadline: Instant::now() + CHECK_DEADLINE.min(app.config.request_timeout),
        stats: Arc::new(CallStats::default()),
        journal: None,
        metrics: metrics.clone(),
        // A check is no request: it makes no spans, and its legacy calls go without a trace.
        trace: crate::observe::trace::TraceScope::default(),
    };
    // Its own span, as a request has: what `health()` logs names the check and the app.
    let span = tracing::info_span!("health", request_id = %scope.request_id, app = app.name());
    let checked = match tracing::Instrument::instrument(app.script.call("health", Vec::new(), &scope), span).await {
        Ok(value) if value.is_unit() || value.as_bool() == Ok(true) => Checked { healthy: true, detail: None },
        Ok(value) if value.as_bool() == Ok(false) => {
            Checked { healthy: false, detail: Some("health() returned false".into()) }
        }
        Ok(value) => Checked { healthy: false, detail: Some(describe(&value)) },
        Err(error) => Checked { healthy: false, detail: Some(error.to_string()) },
    };
    let previous = app.health.last();
    if previous.as_ref().map(|p| p.healthy) != Some(checked.healthy) {
        match &checked.detail {
            None => tracing::info!(app = app.name(), "legacy app healthy"),
            Some(detail) => tracing::warn!(app = app.name(), detail, "legacy app not healthy: /readyz fails"),
        }
    }
    app.health.set(checked.clone());
    Some(checked)
}

fn describe(value: &Dynamic) -> String {
    if value.is_string() { value.to_string() } else { format!("health() returned {value}") }
}
