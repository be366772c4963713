//! The admin listener: `/healthz` (the process is alive) and `/readyz` (it can serve).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use crate::proxy::Shared;
use crate::response::plain_json;

/// Answers one admin request.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain_json(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "only GET is allowed"}));
    }
    match request.uri().path() {
        "/healthz" => plain_json(StatusCode::OK, json!({"status": "alive"})),
        "/readyz" => {
            let ready = shared.ready.load(Ordering::SeqCst);
            let apps: Vec<_> = shared
                .apps
                .iter()
                .map(|app| {
                    let mut warnings = Vec::new();
                    if app.config.legacy.insecure_skip_verify {
                        warnings.push("legacy.insecure_skip_verify is on: the legacy app's TLS certificate is not checked");
                    }
                    json!({
                        "name": app.name(),
                        "base_path": app.config.base_path,
                        "script": app.script.compiled().path().display().to_string(),
                        "functions": app.script.compiled().functions().map(|(n, a)| format!("{n}/{a}")).collect::<Vec<_>>(),
                        "script_reloads": app.reload.reloads.load(Ordering::Relaxed),
                        "script_reload_failures": app.reload.failures.load(Ordering::Relaxed),
                        "script_error": app.reload.last_error(),
                        "warnings": warnings,
                    })
                })
                .collect();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            plain_json(status, json!({"status": if ready { "ready" } else { "not ready" }, "apps": apps}))
        }
        _ => plain_json(StatusCode::NOT_FOUND, json!({"error": "not found; try /healthz or /readyz"})),
    }
}
