//! The admin listener: `/healthz` (the process is alive), `/readyz` (it can serve), `/metrics`,
//! and `/requests` (each app's last requests, for whoever holds the admin token).
//!
//! May import: `pipeline` (the response helpers) and everything after it; never `runtime`,
//! which starts it.

pub mod probe;
pub(crate) mod requests;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, VARY, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use crate::legacy::breaker::Shown;
use crate::observe::metrics::{AppGauges, CertificateGauges, Gauges, ListenerGauges};
use crate::observe::process::ProcessStats;
use crate::pipeline::response::plain_json;
use crate::state::Shared;

/// Answers one admin request.
pub(crate) async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain_json(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "only GET is allowed"}));
    }
    match request.uri().path() {
        "/healthz" => plain_json(StatusCode::OK, json!({"status": "alive"})),
        "/readyz" => {
            let state = shared.state();
            let mut ready = shared.ready.load(Ordering::SeqCst);
            let checks_health = !state.server.health_interval.is_zero();
            let apps: Vec<_> = state
                .apps
                .iter()
                .map(|app| {
                    let health = app.script.arity("health").filter(|_| checks_health).map(|_| match app.health.last() {
                        None => {
                            ready = false;
                            json!({"healthy": false, "detail": "not checked yet"})
                        }
                        Some(checked) => {
                            ready &= checked.healthy;
                            json!({"healthy": checked.healthy, "detail": checked.detail})
                        }
                    });
                    // Shown, but not failing readiness: taking the pod out of service (or
                    // restarting it) does not bring the legacy app back.
                    let breaker = match app.script.legacy().breaker().shown() {
                        Shown::Closed => json!({"state": "closed"}),
                        Shown::Open(left) => json!({"state": "open", "retry_after_s": left.as_millis().div_ceil(1000) as u64}),
                        Shown::HalfOpen => json!({"state": "half_open"}),
                    };
                    let mut warnings = Vec::new();
                    let gap = crate::app::health::readiness_gap(&app.script.compiled(), state.server.health_interval);
                    warnings.extend(gap);
                    if app.config.legacy.insecure_skip_verify {
                        warnings.push("legacy.insecure_skip_verify is on: the legacy app's TLS certificate is not checked");
                    }
                    json!({
                        "legacy_health": health,
                        "readiness_covers_legacy": gap.is_none(),
                        "legacy_breaker": breaker,
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
            let reload = &shared.config_reload;
            let config = json!({
                "reloads": reload.reloads.load(Ordering::Relaxed),
                "reload_failures": reload.failures.load(Ordering::Relaxed),
                "error": reload.last_error(),
            });
            plain_json(
                status,
                json!({"status": if ready { "ready" } else { "not ready" }, "config": config, "apps": apps}),
            )
        }
        "/metrics" => {
            let state = shared.state();
            let gauges = Gauges {
                apps: state
                    .apps
                    .iter()
                    .map(|app| {
                        let (in_use, queued) = app.script.occupancy();
                        AppGauges {
                            app: app.name().to_owned(),
                            cache_hits: app.ids.stats().hits.load(Ordering::Relaxed),
                            cache_misses: app.ids.stats().misses.load(Ordering::Relaxed),
                            script_reloads: app.reload.reloads.load(Ordering::Relaxed),
                            script_reload_failures: app.reload.failures.load(Ordering::Relaxed),
                            legacy_healthy: app
                                .script
                                .arity("health")
                                .filter(|_| !state.server.health_interval.is_zero())
                                .map(|_| app.health.last().is_some_and(|checked| checked.healthy)),
                            breaker_open: app.script.legacy().breaker().shown() != Shown::Closed,
                            script_slots_in_use: in_use as u64,
                            max_concurrent_scripts: app.config.max_concurrent_scripts as u64,
                            script_queue_depth: queued as u64,
                            max_queued_requests: app.config.max_queued_requests as u64,
                        }
                    })
                    .collect(),
                config_reloads: shared.config_reload.reloads.load(Ordering::Relaxed),
                config_reload_failures: shared.config_reload.failures.load(Ordering::Relaxed),
                ready: shared.ready.load(Ordering::SeqCst),
                listeners: [("scim", &shared.listeners.scim), ("admin", &shared.listeners.admin)]
                    .into_iter()
                    .map(|(listener, connections)| ListenerGauges {
                        listener,
                        open: connections.open() as u64,
                        max: connections.limit() as u64,
                    })
                    .collect(),
                certificates: shared
                    .listeners
                    .certificate
                    .iter()
                    .map(|certificate| CertificateGauges {
                        file: certificate.cert_path().display().to_string(),
                        expires_in_seconds: certificate.not_after().saturating_sub(unix_now()),
                    })
                    .collect(),
                process: ProcessStats::read(),
            };
            let mut response = Response::new(Full::new(Bytes::from(shared.metrics.render(&gauges))));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/requests" => requests(&shared, request.headers()),
        _ => plain_json(
            StatusCode::NOT_FOUND,
            json!({"error": "not found; try /healthz, /readyz, /metrics or /requests"}),
        ),
    }
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
}

/// `/requests`: each app's last requests, newest first, as JSON, or as an HTML page when the
/// client asks for `text/html` (a browser). Only with the admin token; off without one.
fn requests(shared: &Shared, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let state = shared.state();
    let Some(token) = state.admin.token() else {
        return plain_json(
            StatusCode::NOT_FOUND,
            json!({"error": "/requests is off: set admin.token (e.g. token: \"${env.SCIM_ADMIN_TOKEN}\") to turn it on"}),
        );
    };
    if !crate::auth::has_admin_token(token, headers) {
        tracing::info!(path = "/requests", "admin request refused: no valid admin token");
        let mut response = plain_json(StatusCode::UNAUTHORIZED, json!({"error": "missing or invalid admin token"}));
        let challenges = response.headers_mut();
        challenges.append(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim-proxy admin\""));
        challenges
            .append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"scim-proxy admin\", charset=\"UTF-8\""));
        return private(response);
    }
    if state.admin.recent_requests == 0 {
        return plain_json(
            StatusCode::NOT_FOUND,
            json!({"error": "/requests is off: admin.recent_requests is 0; set it to how many requests of each app to keep"}),
        );
    }
    let entries = shared.recent.newest_first();
    let capacity = state.admin.recent_requests;
    if !wants_html(headers) {
        let requests: Vec<_> = entries.iter().map(|entry| entry.to_json()).collect();
        return private(plain_json(StatusCode::OK, json!({"recent_requests": capacity, "requests": requests})));
    }
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut response =
        Response::new(Full::new(Bytes::from(crate::admin::requests::render(&entries, capacity, &nonce))));
    let policy = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    private(response)
}

/// Marks an answer that shows (or may show) people's data: never cached, and different by `Accept`.
fn private(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(VARY, HeaderValue::from_static("Accept, Authorization"));
    response
}

/// Whether the client prefers an HTML page: its `Accept` names `text/html` (as browsers do).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html")))
}
