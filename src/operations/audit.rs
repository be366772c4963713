//! Audit records: one for every SCIM request that asks for a change in a legacy app.
//!
//! Written as log events with the target `scim_proxy::audit` (so they reach the same
//! collector as the other logs, and can be routed apart by target): who asked (the
//! credential, never its secret), what, on which resource, the outcome, how many writes
//! reached the legacy app, and which attributes of the body were ignored because the app
//! does not publish them. Never a body, a password or a token.

use serde_json::Value;

use crate::error::{Error, answer};
use crate::operations::operation::Operation;
use crate::operations::{Call, Reply};
use crate::scim::schema::ResourceKind;

/// The resource a write operation changes: its type, and its id when the request names it.
fn target(operation: &Operation) -> Option<(ResourceKind, Option<&str>)> {
    match operation {
        Operation::Create(kind) => Some((*kind, None)),
        Operation::Replace(kind, id) | Operation::Patch(kind, id) | Operation::Delete(kind, id) => {
            Some((*kind, Some(id.as_str())))
        }
        _ => None,
    }
}

/// Writes the audit record of an operation, if it is one that changes something.
///
/// `legacy_writes` is the number of calls other than reads sent to the legacy app for it,
/// whatever their answer.
pub(crate) fn record(call: &Call<'_>, operation: &Operation, result: &Result<Reply, Error>, legacy_writes: u32) {
    let Some((kind, named)) = target(operation) else {
        return;
    };
    if call.scope.journal.as_ref().is_some_and(|j| j.is_dry_run()) {
        return;
    }
    let (status, id) = match result {
        Ok(reply) => {
            let created = reply.body.as_ref().and_then(|b| b.get("id")).and_then(Value::as_str);
            (reply.status.as_u16(), named.or(created).map(str::to_owned))
        }
        Err(error) => (answer(error).status.as_u16(), named.map(str::to_owned)),
    };
    // "failed": write calls reached the legacy app and the request still failed, so the
    // application may have changed in part; "refused": nothing was asked of it.
    let outcome = match (result.is_ok(), legacy_writes) {
        (true, _) => "success",
        (false, 0) => "refused",
        (false, _) => "failed",
    };
    let app = call.app.name();
    call.scope.metrics.audit(app, outcome);
    // what the body named that the app does not publish, dropped under `ignore`
    let mut ignored = match call.scope.stats.ignored.lock() {
        Ok(paths) => paths.join(","),
        Err(poisoned) => poisoned.into_inner().join(","),
    };
    // the id may come from the request's URL: bounded like any echoed value
    let id = id.as_deref().map_or_else(|| "-".to_owned(), crate::error::echoed);
    let more = call.scope.stats.ignored_more.load(std::sync::atomic::Ordering::Relaxed);
    if more > 0 {
        ignored.push_str(&format!(",… ({more} more)"));
    }
    tracing::info!(
        target: "scim_proxy::audit",
        app,
        principal = %call.principal,
        request_id = %call.scope.request_id,
        operation = operation.name(),
        resource = kind.name(),
        id = id.as_str(),
        status,
        outcome,
        legacy_writes,
        ignored = if ignored.is_empty() { "-" } else { ignored.as_str() },
        "audit"
    );
}
