//! A request whose legacy calls are written down: a dry run (writes held back, answered with a
//! report), a recording (written as a mapping test case), or `log.bodies` (logged, redacted).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::response;
use crate::app::App;
use crate::error::RequestError;
use crate::recording::Recording;
use crate::script::journal::Journal;

impl Noted {
    /// The `log.bodies` line: the SCIM request and answer and every legacy call, redacted.
    pub(crate) fn log_bodies(&self, app: &App, request_id: &str, status: u16, answer: Option<&serde_json::Value>) {
        let redacted = |value: Option<&serde_json::Value>| {
            let mut value = value.cloned().unwrap_or(serde_json::Value::Null);
            let _ = app.redactor.redact(&mut value);
            value.to_string()
        };
        let mut calls = self.journal.entries();
        for call in &mut calls {
            for value in [&mut call.body, &mut call.reply].into_iter().flatten() {
                let _ = app.redactor.redact(value);
            }
        }
        tracing::info!(
            target: "scim_proxy::bodies",
            request_id,
            app = app.name(),
            method = %self.method,
            path = %self.target,
            request = %redacted(self.body.as_ref()),
            status,
            response = %redacted(answer),
            legacy = %serde_json::to_string(&calls).unwrap_or_default(),
            "bodies"
        );
    }
}

/// The header that asks for a dry run.
pub(crate) const DRY_RUN_HEADER: &str = "scim-proxy-dry-run";

/// The schema of the answer to a dry run that held writes back.
pub(crate) const DRY_RUN_SCHEMA: &str = "urn:scim-proxy:api:messages:DryRun";

/// Whether the request asks for a dry run: `Scim-Proxy-Dry-Run: true` (or `1`); `false`/`0` or
/// no header for a normal request.
pub(crate) fn dry_run_asked(headers: &http::HeaderMap) -> Result<bool, RequestError> {
    let Some(value) = headers.get(DRY_RUN_HEADER) else {
        return Ok(false);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Ok("true" | "1") => Ok(true),
        Ok("false" | "0") => Ok(false),
        _ => Err(RequestError::BadHeader { name: "Scim-Proxy-Dry-Run", detail: "must be true or false".into() }),
    }
}

/// A request whose legacy calls are being written down (dry run, recording), and what of the
/// request itself the recording needs.
pub(crate) struct Noted {
    pub(crate) journal: Arc<Journal>,
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<serde_json::Value>,
    pub(crate) base_url: String,
}

impl Noted {
    pub(crate) fn new(journal: Arc<Journal>, rest: &str, request: &Request<Incoming>) -> Self {
        let rest = if rest.is_empty() { "/" } else { rest };
        let target = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let headers = [http::header::IF_MATCH, http::header::IF_NONE_MATCH]
            .iter()
            .filter_map(|name| Some((name.to_string(), request.headers().get(name)?.to_str().ok()?.to_owned())))
            .collect();
        Self { journal, method: request.method().to_string(), target, headers, body: None, base_url: String::new() }
    }

    /// Turns the response into a dry-run report, or records the exchange.
    pub(crate) async fn finish(
        self,
        app: &App,
        response: Response<Full<Bytes>>,
        request_id: &str,
        log_bodies: bool,
    ) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt as _;
        let (mut parts, body) = response.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let json = (!bytes.is_empty()).then(|| {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        });
        if log_bodies {
            self.log_bodies(app, request_id, parts.status.as_u16(), json.as_ref());
        }
        if self.journal.is_dry_run() {
            let mut calls = self.journal.entries();
            for call in &mut calls {
                for value in [&mut call.body, &mut call.reply].into_iter().flatten() {
                    let _ = app.redactor.redact(value);
                }
            }
            let held_back = calls.iter().filter(|c| !c.sent).count();
            tracing::info!(request_id, app = app.name(), held_back, "dry run: writes held back, not sent");
            if held_back == 0 {
                parts.headers.insert(DRY_RUN_HEADER, HeaderValue::from_static("no-writes"));
                return Response::from_parts(parts, Full::new(bytes));
            }
            let mut detail = format!("dry run: nothing was written to the legacy app; {held_back} write(s) held back");
            let mut answered = serde_json::json!({ "status": parts.status.as_u16(), "body": json });
            if parts.status == http::StatusCode::INTERNAL_SERVER_ERROR {
                detail.push_str(
                    "; the 500 in `response` is what the mapping made of echoed writes, not a verdict on a real run (see response.explanation)",
                );
                answered["explanation"] = crate::script::journal::explain_fault(&calls).into();
            }
            let report = serde_json::json!({
                "schemas": [DRY_RUN_SCHEMA],
                "detail": detail,
                "legacyCalls": calls,
                "response": answered,
                "note": "legacyCalls lists every call in order; those with sent: false were held back. `response` is what the mapping made of held-back writes answered with their own body echoed, so an error there may only mean the mapping needed data a real answer would have had.",
            });
            let mut response = Response::new(Full::new(Bytes::from(report.to_string())));
            let headers = response.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(response::SCIM_JSON));
            headers.insert(DRY_RUN_HEADER, HeaderValue::from_static("writes-held-back"));
            if let Some(id) = parts.headers.get("x-request-id") {
                headers.insert("x-request-id", id.clone());
            }
            return response;
        }
        if let Some(recorder) = app.recorder.as_ref().filter(|_| self.journal.is_recording()) {
            recorder.write(Recording {
                request_id: request_id.to_owned(),
                method: self.method,
                target: self.target,
                headers: self.headers,
                body: self.body,
                calls: self.journal.entries(),
                status: parts.status.as_u16(),
                response: json,
                base_url: self.base_url,
                base_path: app.config.base_path.clone(),
            });
        }
        Response::from_parts(parts, Full::new(bytes))
    }
}
