//! The script's `legacy` object at work: a call read from the script's arguments, sent through
//! the app's legacy client (or held back in a dry run), noted in the request's journal and
//! trace, and answered as a map the script reads.

use std::sync::atomic::Ordering;
use std::time::Instant;

use http::Method;
use rhai::{Array, Dynamic, EvalAltResult, Map, Position};

use crate::legacy::{LegacyError, LegacyPath, LegacyRequest, LegacyResponse};
use crate::observe::trace::SpanKind;
use crate::script::fiber::{Resumed, Suspended};
use crate::script::host::{CallContext, FAULT_KEY, current, runtime_error};
use crate::script::journal::{self, Exchange};
use crate::script::threads::block_on;
use crate::script::{NOTED_PATH_BYTES, NotedCall, shorten};

/// `legacy.request(#{ method, path, query, headers, body, idempotent })`.
pub(super) fn request(spec: Map) -> Result<Map, Box<EvalAltResult>> {
    const KEYS: [&str; 6] = ["method", "path", "query", "headers", "body", "idempotent"];
    if let Some(key) = spec.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(runtime_error(format!(
            "legacy.request: unknown key {key}: the keys are method, path, query, headers, body and idempotent"
        )));
    }
    let method = spec
        .get("method")
        .map(|m| m.to_string().to_ascii_uppercase())
        .ok_or_else(|| runtime_error("legacy.request needs a method"))?;
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| runtime_error(format!("invalid method {method}")))?;
    let path = spec.get("path").cloned().ok_or_else(|| runtime_error("legacy.request needs a path"))?;
    let query = spec.get("query").and_then(|q| q.read_lock::<Map>().map(|m| m.clone())).unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(map) = spec.get("headers").and_then(|h| h.read_lock::<Map>().map(|m| m.clone())) {
        for (name, value) in map {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let body = spec.get("body").filter(|b| !b.is_unit()).cloned();
    let idempotent = match spec.get("idempotent") {
        None => false,
        Some(flag) => flag.as_bool().map_err(|_| runtime_error("legacy.request: idempotent is true or false"))?,
    };
    send(method, path, query, headers, body, idempotent)
}

pub(super) fn call(
    method: Method,
    path: Dynamic,
    query: Map,
    body: Option<Dynamic>,
    options: Map,
) -> Result<Map, Box<EvalAltResult>> {
    let mut idempotent = false;
    for (key, value) in options {
        match key.as_str() {
            "idempotent" => {
                idempotent =
                    value.as_bool().map_err(|_| runtime_error("legacy call option idempotent is true or false"))?
            }
            other => {
                return Err(runtime_error(format!("unknown legacy call option {other}: the option is idempotent")));
            }
        }
    }
    send(method, path, query, Vec::new(), body, idempotent)
}

/// `legacy.unexpected(response)`: the fault to `throw` for an answer the script cannot use,
/// which the proxy then answers by its table (a 429 or 503 as retryable, with the legacy
/// app's `Retry-After`; anything else as `502`).
pub(super) fn unexpected(response: Map, what: &str) -> Result<Map, Box<EvalAltResult>> {
    let ctx = current()?;
    let status = response
        .get("status")
        .and_then(|s| s.as_int().ok())
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| runtime_error("legacy.unexpected takes the response of a legacy call"))?;
    let header = |name: &str| {
        let headers = response.get("headers")?.read_lock::<Map>()?.clone();
        headers.get(name).map(|v| v.to_string())
    };
    let retry_after = header("retry-after").and_then(|v| crate::legacy::retry_after(&v)).map(|d| d.as_secs());
    let reason = match status {
        429 => "rate limited",
        503 => "unavailable",
        500..=599 => "the legacy app failed",
        200..=299 if response.get("json").is_none_or(|j| j.is_unit()) => "the body is not JSON",
        _ => "the script did not expect it",
    };
    let fault = LegacyError::Unexpected {
        app: ctx.app.to_string(),
        status,
        what: what.to_owned(),
        reason: reason.to_owned(),
        retry_after,
    };
    let mut thrown = Map::new();
    thrown.insert(FAULT_KEY.into(), Dynamic::from(fault_kind(&fault)));
    thrown.insert("status".into(), Dynamic::from(i64::from(status)));
    thrown.insert("message".into(), Dynamic::from(fault.to_string()));
    if let Ok(mut slot) = ctx.fault.lock() {
        *slot = Some(fault);
    }
    Ok(thrown)
}

pub(super) fn send(
    method: Method,
    path: Dynamic,
    query: Map,
    headers: Vec<(String, String)>,
    body: Option<Dynamic>,
    idempotent: bool,
) -> Result<Map, Box<EvalAltResult>> {
    let ctx = current()?;
    let path = if let Some(segments) = path.read_lock::<Array>() {
        LegacyPath::Segments(segments.iter().map(|s| s.to_string()).collect())
    } else if path.is_string() {
        LegacyPath::Text(path.to_string())
    } else {
        return Err(runtime_error("a legacy path is a string like \"/users\" or an array of segments"));
    };
    let query = query.into_iter().filter(|(_, v)| !v.is_unit()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let body = match body {
        Some(b) => Some(crate::script::ScriptEngine::to_json(&b).map_err(runtime_error)?),
        None => None,
    };
    let request = LegacyRequest { method, path, query, headers, body, idempotent };
    // In a fiber, the call suspends itself here: whoever runs the fiber makes the legacy call
    // (a worker without waiting for it, a script thread that took the call over in place) and
    // resumes the script with the answer. Outside a fiber (a call on a script thread from its
    // start), the answer is waited for in place.
    if ctx.in_fiber() {
        return match ctx.suspend(Suspended::Call(request)) {
            Some(Resumed::Answer(answer)) => to_script(&ctx, answer),
            _ => Err(runtime_error("a script call was resumed without its legacy answer")),
        };
    }
    let answer = block_on(perform(&ctx, request), &ctx.runtime);
    to_script(&ctx, answer)
}

/// The outcome of one legacy call as the script sees it.
#[derive(Debug)]
pub(in crate::script) enum Answer {
    /// The legacy app's answer (or, in a dry run, the made-up answer to a write held back).
    Response(Map),
    /// No answer the script can read: the value thrown into the script, and the fault itself.
    Fault(Map, LegacyError),
    /// The request's deadline had passed when the call was due: it was not sent.
    Late,
}

/// What the script gets for a call's answer: the response map, or the fault thrown.
fn to_script(ctx: &CallContext, answer: Answer) -> Result<Map, Box<EvalAltResult>> {
    match answer {
        Answer::Response(map) => Ok(map),
        Answer::Fault(thrown, fault) => {
            if let Ok(mut slot) = ctx.fault.lock() {
                *slot = Some(fault);
            }
            Err(Box::new(EvalAltResult::ErrorRuntime(thrown.into(), Position::NONE)))
        }
        Answer::Late => Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from("the request's deadline passed"),
            Position::NONE,
        ))),
    }
}

/// Makes one legacy call a script asked for (or holds it back, in a dry run), and notes it
/// in the request's stats, metrics, journal and trace.
pub(in crate::script) async fn perform(ctx: &CallContext, request: LegacyRequest) -> Answer {
    let remaining = ctx.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Answer::Late;
    }
    let noted = ctx.journal.as_ref().and_then(|journal| {
        let url = ctx.legacy.url_for(&request.path, &request.query).ok()?;
        Some((journal, ctx.legacy.relative(&url)))
    });
    if let Some((journal, path)) = &noted {
        if journal.is_dry_run() && journal::is_write(&request.method) {
            let status = journal::dry_run_status(&request.method);
            let body = request.body.clone();
            journal.push(Exchange {
                method: request.method.to_string(),
                path: path.clone(),
                body: request.body,
                sent: false,
                status: None,
                reply: None,
                fault: None,
            });
            return Answer::Response(held_back_map(status, body));
        }
    }
    let (method, body) = match &noted {
        Some(_) => (request.method.to_string(), request.body.clone()),
        None => (String::new(), None),
    };
    let noted_path = match (&noted, &ctx.stats.noted) {
        (Some((_, path)), _) => Some(path.clone()),
        (None, Some(_)) if ctx.stats.notes_more() => {
            ctx.legacy.url_for(&request.path, &request.query).ok().map(|url| ctx.legacy.relative(&url))
        }
        (None, _) => None,
    };
    // The call's span: the legacy app gets it as the parent of what it does (`traceparent`).
    let mut span = ctx.trace.child(SpanKind::Client, || request.method.to_string());
    if span.recording() {
        span.set("http.request.method", request.method.as_str());
        if let Ok(url) = ctx.legacy.url_for(&request.path, &request.query) {
            span.set("url.path", url.path());
            span.set("server.address", url.host_str().unwrap_or_default());
            if let Some(port) = url.port_or_known_default() {
                span.set("server.port", port);
            }
        }
        span.set("scim.app", &*ctx.app);
    }
    let trace = span.headers();
    let started = Instant::now();
    let method_label = request.method.clone();
    let writes = journal::is_write(&request.method);
    let sent = if ctx.probe {
        ctx.legacy.send_past_breaker(request, &ctx.request_id, trace.as_ref(), remaining).await
    } else {
        ctx.legacy.send(request, &ctx.request_id, trace.as_ref(), remaining).await
    };
    let result = sent.result;
    if sent.retries > 0 {
        ctx.metrics.legacy_retries(&ctx.app, sent.retries);
        span.set("http.request.resend_count", sent.retries);
    }
    // A 4xx answer is the script's to read (a lookup that finds nothing is no failure); a 5xx
    // answer and a call with no answer fail the span.
    match &result {
        Ok(response) => {
            span.set("http.response.status_code", response.status);
            if response.status >= 500 {
                span.fail(&response.status.to_string(), || format!("the legacy app answered {}", response.status));
            }
        }
        Err(fault) => span.fail(fault_kind(fault), || fault.to_string()),
    }
    drop(span);
    let elapsed = started.elapsed();
    // A call the breaker refused made no exchange at all: it is counted as its fault only.
    if !matches!(result, Err(LegacyError::BreakerOpen { .. })) {
        ctx.stats.calls.fetch_add(1, Ordering::Relaxed);
        ctx.stats.micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        ctx.metrics.legacy_call(&ctx.app, method_label.as_str(), elapsed);
        ctx.stats.note(|| NotedCall {
            method: method_label.clone(),
            path: shorten(noted_path.unwrap_or_default(), NOTED_PATH_BYTES),
            status: result.as_ref().ok().map(|response| response.status),
            fault: result.as_ref().err().map(fault_kind),
            micros: elapsed.as_micros() as u64,
        });
    }
    // Only a write that may have reached the legacy app may have changed something.
    if writes && !result.as_ref().is_err_and(LegacyError::not_sent) {
        ctx.stats.writes.fetch_add(1, Ordering::Relaxed);
    }
    match &result {
        Ok(response) if response.status == 429 => ctx.metrics.legacy_error(&ctx.app, "http_429"),
        Ok(response) if response.status >= 500 => ctx.metrics.legacy_error(&ctx.app, "http_5xx"),
        Ok(_) => {}
        Err(fault) => ctx.metrics.legacy_error(&ctx.app, fault_kind(fault)),
    }
    if let Some((journal, path)) = noted {
        let (status, reply, fault) = match &result {
            Ok(response) => (Some(response.status), Some(reply_value(&response.body)), None),
            Err(fault) => (None, None, Some(fault.to_string())),
        };
        journal.push(Exchange { method, path, body, sent: true, status, reply, fault });
    }
    match result {
        Ok(response) => Answer::Response(response_map(response)),
        Err(fault) => {
            let mut thrown = Map::new();
            thrown.insert(FAULT_KEY.into(), Dynamic::from(fault_kind(&fault)));
            thrown.insert("message".into(), Dynamic::from(fault.to_string()));
            Answer::Fault(thrown, fault)
        }
    }
}

/// A short name for each kind of legacy fault, which scripts can test in a `catch`.
pub(in crate::script) fn fault_kind(fault: &LegacyError) -> &'static str {
    match fault {
        LegacyError::BadPath { .. } => "bad_path",
        LegacyError::BadHeader { .. } => "bad_header",
        LegacyError::BadBody { .. } => "bad_body",
        LegacyError::Connect { .. } => "connect",
        LegacyError::Timeout { .. } => "timeout",
        LegacyError::Transport { .. } => "transport",
        LegacyError::Malformed { .. } => "malformed",
        LegacyError::BreakerOpen { .. } => "breaker_open",
        LegacyError::Unexpected { .. } => "unexpected",
        LegacyError::TooLarge { .. } => "too_large",
        LegacyError::Tls { .. } => "tls",
        LegacyError::Token { .. } => "token",
    }
}

/// A legacy answer as a journal keeps it: the JSON it parses to, else its text.
pub(super) fn reply_value(body: &[u8]) -> serde_json::Value {
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// What a script sees for a write a dry run held back: a success echoing what it sent, and
/// a `scim-proxy-dry-run` header it can test.
pub(super) fn held_back_map(status: u16, body: Option<serde_json::Value>) -> Map {
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from(i64::from(status)));
    let mut headers = Map::new();
    headers.insert("scim-proxy-dry-run".into(), Dynamic::from("true"));
    map.insert("headers".into(), headers.into());
    let text = body.as_ref().map(|b| b.to_string()).unwrap_or_default();
    map.insert("json".into(), body.as_ref().map_or(Dynamic::UNIT, crate::script::ScriptEngine::to_dynamic));
    map.insert("body".into(), Dynamic::from(text));
    map
}

/// `#{ status, headers, body, json }`: `json` is the parsed body, or `()` when it is not JSON.
pub(super) fn response_map(response: LegacyResponse) -> Map {
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from(i64::from(response.status)));
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().into(), Dynamic::from(value.to_owned()));
        }
    }
    map.insert("headers".into(), headers.into());
    // Checked whole once: most answers are valid UTF-8 (the lossy conversion's scan is slower),
    // and the JSON is then parsed as text, each string not checked again. A body that is not
    // UTF-8 is not JSON either.
    let (json, text) = match std::str::from_utf8(&response.body) {
        Ok(text) => (crate::script::ScriptEngine::parse_json(text).unwrap_or(Dynamic::UNIT), text.to_owned()),
        Err(_) => (Dynamic::UNIT, String::from_utf8_lossy(&response.body).into_owned()),
    };
    map.insert("json".into(), json);
    map.insert("body".into(), Dynamic::from(text));
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static [u8]) -> Map {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", http::HeaderValue::from_static("application/json"));
        response_map(LegacyResponse { status: 200, headers, body: bytes::Bytes::from_static(body) })
    }

    /// `json` is the parsed body when it is JSON, `()` otherwise; `body` is always the text,
    /// bytes that are not UTF-8 replaced.
    #[test]
    fn an_answer_is_its_status_headers_text_and_json() {
        let map = answer(br#"{"id": 7, "login": "b\u00e9", "tags": ["x"]}"#);
        assert_eq!(map["status"].as_int(), Ok(200));
        let headers = map["headers"].clone().cast::<Map>();
        assert_eq!(headers["content-type"].clone().into_string().unwrap(), "application/json");
        let json = map["json"].clone().cast::<Map>();
        assert_eq!(json["id"].as_int(), Ok(7));
        assert_eq!(json["login"].clone().into_string().unwrap(), "bé");
        assert_eq!(map["body"].clone().into_string().unwrap(), r#"{"id": 7, "login": "b\u00e9", "tags": ["x"]}"#);

        let not_json = answer(b"<html>down</html>");
        assert!(not_json["json"].is_unit());
        assert_eq!(not_json["body"].clone().into_string().unwrap(), "<html>down</html>");

        // JSON but for one byte that is not UTF-8: not JSON, and its text says where.
        let broken = answer(b"{\"login\": \"b\xff\"}");
        assert!(broken["json"].is_unit());
        assert_eq!(broken["body"].clone().into_string().unwrap(), "{\"login\": \"b\u{fffd}\"}");
    }
}
