//! The recent requests of each app, bounded and redacted, that the admin listener's `/requests` shows.
//!
//! Each request an app answers becomes one [`Entry`] once its answer is known: what was asked,
//! the status and SCIM error, the attributes ignored, the legacy calls with their answers and
//! times, and the request body redacted by the app's [`Redactor`]. Every part of an entry is
//! cut to a fixed size, so an entry holds at most [`ENTRY_MAX_BYTES`], and each app keeps its
//! `admin.recent_requests` latest: the memory is at most apps × N × [`ENTRY_MAX_BYTES`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::recording::{REDACTED, Redactor};
use crate::script::{NOTED_CALLS, NOTED_PATH_BYTES, NotedCall, shorten};

/// The longest request target (path and query) an entry keeps, in bytes.
pub(crate) const TARGET_BYTES: usize = 512;
/// The longest request body an entry keeps, in bytes of its redacted JSON text.
pub(crate) const BODY_BYTES: usize = 4096;
/// The longest error detail (and cause) an entry keeps, in bytes.
pub(crate) const DETAIL_BYTES: usize = 512;
/// The most ignored attributes an entry names.
pub(crate) const IGNORED_NAMES: usize = 20;
/// The longest ignored attribute path an entry keeps, in bytes.
pub(crate) const IGNORED_BYTES: usize = 128;

/// Bytes one entry may hold at most: its bounded texts and lists, plus the fixed part (the
/// request id, app and operation names, numbers and the containers themselves).
pub(crate) const ENTRY_MAX_BYTES: usize = TARGET_BYTES
    + BODY_BYTES
    + 2 * DETAIL_BYTES
    + IGNORED_NAMES * (IGNORED_BYTES + FIXED_STRING)
    + NOTED_CALLS * (NOTED_PATH_BYTES + FIXED_CALL)
    + FIXED_ENTRY;

// The README (`admin.recent_requests`) states the bound as 16 KiB an entry.
const _: () = assert!(ENTRY_MAX_BYTES <= 16 * 1024, "the documented bound is 16 KiB an entry");

/// What a `String` costs besides its text.
const FIXED_STRING: usize = std::mem::size_of::<String>();
/// What a noted call costs besides its path's text (its method's own text included).
const FIXED_CALL: usize = std::mem::size_of::<NotedCall>() + 16;
/// The entry's struct and its short fixed texts (request id up to 128, app name, operation).
const FIXED_ENTRY: usize = std::mem::size_of::<Entry>() + 128 + 64 + 32 + 64;

/// One answered request as `/requests` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Orders entries across apps: a higher one was answered later.
    pub(crate) seq: u64,
    /// When the answer was sent, RFC 3339 in UTC (set by [`Entry::bounded`]).
    pub(crate) time: String,
    pub(crate) request_id: String,
    pub(crate) app: String,
    /// The operation the request was routed to (`create_user`), `-` before routing.
    pub(crate) operation: String,
    pub(crate) method: String,
    /// Path and query as received (secret query values redacted by [`Entry::bounded`]).
    pub(crate) target: String,
    pub(crate) status: u16,
    pub(crate) latency_ms: f64,
    /// The SCIM error answered, when the request failed.
    pub(crate) error: Option<Failure>,
    /// Attributes the app does not publish that the request named, ignored.
    pub(crate) ignored: Vec<String>,
    /// The first [`NOTED_CALLS`] legacy calls, secret query values redacted.
    pub(crate) legacy_calls: Vec<NotedCall>,
    /// All legacy calls the request made, noted or not.
    pub(crate) legacy_calls_total: u32,
    pub(crate) legacy_ms: f64,
    /// The request body's JSON, redacted, cut to [`BODY_BYTES`].
    pub(crate) body: Option<String>,
    pub(crate) body_truncated: bool,
}

/// The SCIM error a request was answered with.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub scim_type: Option<&'static str>,
    /// The detail the client saw.
    pub detail: String,
    /// What went wrong, when the client saw only a generic detail (script and internal faults).
    pub cause: Option<String>,
}

/// A request body as an entry keeps it: its JSON text with the app's secrets redacted, cut
/// to [`BODY_BYTES`]; and whether it was cut.
pub(crate) fn body_text(redactor: &Redactor, body: &Value) -> (String, bool) {
    let mut body = body.clone();
    redactor.redact(&mut body);
    let text = body.to_string();
    let cut = text.len() > BODY_BYTES;
    (shorten(text, BODY_BYTES), cut)
}

impl Entry {
    /// The entry cut to its bounds, with secret query values (`?access_token=…`) redacted by
    /// the app's redactor, and stamped with the time: runs once, before it is kept.
    pub(crate) fn bounded(self, redactor: &Redactor) -> Self {
        let cut_failure = |failure: Failure| Failure {
            scim_type: failure.scim_type,
            detail: shorten(failure.detail, DETAIL_BYTES),
            cause: failure.cause.map(|cause| shorten(cause, DETAIL_BYTES)),
        };
        Self {
            seq: 0,
            time: crate::script::format_time(time::OffsetDateTime::now_utc()),
            request_id: shorten(self.request_id, 128),
            method: shorten(self.method, 16),
            target: shorten(redact_query(&self.target, redactor), TARGET_BYTES),
            error: self.error.map(cut_failure),
            ignored: self.ignored.into_iter().take(IGNORED_NAMES).map(|path| shorten(path, IGNORED_BYTES)).collect(),
            legacy_calls: self
                .legacy_calls
                .into_iter()
                .take(NOTED_CALLS)
                .map(|call| NotedCall { path: shorten(redact_query(&call.path, redactor), NOTED_PATH_BYTES), ..call })
                .collect(),
            body: self.body.map(|body| shorten(body, BODY_BYTES)),
            ..self
        }
    }

    /// The bytes this entry holds (its texts and lists, and its fixed part).
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        let text = |s: &String| s.capacity();
        FIXED_ENTRY
            + text(&self.target)
            + self.body.as_ref().map_or(0, text)
            + self.error.as_ref().map_or(0, |e| text(&e.detail) + e.cause.as_ref().map_or(0, text))
            + self.ignored.iter().map(|p| text(p) + FIXED_STRING).sum::<usize>()
            + self.legacy_calls.iter().map(|c| text(&c.path) + FIXED_CALL).sum::<usize>()
    }

    /// The entry as `/requests` answers it in JSON.
    pub(crate) fn to_json(&self) -> Value {
        let calls: Vec<Value> = self
            .legacy_calls
            .iter()
            .map(|call| {
                json!({
                    "method": call.method.as_str(),
                    "path": call.path,
                    "status": call.status,
                    "fault": call.fault,
                    "ms": millis(call.micros),
                })
            })
            .collect();
        json!({
            "time": self.time,
            "request_id": self.request_id,
            "app": self.app,
            "operation": self.operation,
            "method": self.method,
            "path": self.target,
            "status": self.status,
            "latency_ms": round(self.latency_ms),
            "error": self.error.as_ref().map(|e| json!({"scimType": e.scim_type, "detail": e.detail, "cause": e.cause})),
            "ignored_attributes": self.ignored,
            "legacy_calls": calls,
            "legacy_calls_total": self.legacy_calls_total,
            "legacy_ms": round(self.legacy_ms),
            "request_body": self.body,
            "request_body_truncated": self.body_truncated,
        })
    }
}

fn millis(micros: u64) -> f64 {
    round(micros as f64 / 1000.0)
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// `target` with the value of every query parameter the redactor calls a secret replaced.
fn redact_query(target: &str, redactor: &Redactor) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if redactor.is_secret(&percent_encoding::percent_decode_str(name).decode_utf8_lossy()) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// The last entries of each app, for `/requests`.
#[derive(Debug, Default)]
pub struct RecentRequests {
    rings: Mutex<BTreeMap<String, VecDeque<Arc<Entry>>>>,
    seq: AtomicU64,
}

impl RecentRequests {
    /// Keeps an entry as its app's newest, forgetting the app's oldest beyond `capacity`.
    pub(crate) fn push(&self, mut entry: Entry, capacity: usize) {
        if capacity == 0 {
            return;
        }
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(entry);
        // The lock is held for a pointer's push and pop: entries are built before it.
        let Ok(mut rings) = self.rings.lock() else { return };
        let ring = match rings.get_mut(&entry.app) {
            Some(ring) => ring,
            None => rings.entry(entry.app.clone()).or_default(),
        };
        while ring.len() >= capacity {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// Every entry kept, newest first.
    pub fn newest_first(&self) -> Vec<Arc<Entry>> {
        let mut all: Vec<Arc<Entry>> = match self.rings.lock() {
            Ok(rings) => rings.values().flat_map(|ring| ring.iter().cloned()).collect(),
            Err(_) => Vec::new(),
        };
        all.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.seq));
        all
    }

    /// After a configuration reload: forgets the apps no longer served and the entries
    /// beyond a smaller `capacity` (nothing at all when `keep` is false).
    pub(crate) fn retain(&self, apps: &[&str], capacity: usize, keep: bool) {
        let Ok(mut rings) = self.rings.lock() else { return };
        rings.retain(|app, _| keep && apps.contains(&app.as_str()));
        for ring in rings.values_mut() {
            while ring.len() > capacity {
                ring.pop_front();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of `app` as the proxy makes it, before it is bounded.
    pub(crate) fn entry(app: &str) -> Entry {
        Entry {
            seq: 0,
            time: String::new(),
            request_id: "req-1".into(),
            app: app.into(),
            operation: "create_user".into(),
            method: "POST".into(),
            target: "/scim/v2/Users".into(),
            status: 201,
            latency_ms: 3.25,
            error: None,
            ignored: Vec::new(),
            legacy_calls: Vec::new(),
            legacy_calls_total: 0,
            legacy_ms: 0.0,
            body: None,
            body_truncated: false,
        }
    }

    fn redactor() -> Redactor {
        Redactor::new(&["ssn".into()], std::iter::empty())
    }

    #[test]
    fn an_entry_redacts_bodies_and_secret_query_values() {
        let body = json!({"userName": "bjensen", "password": "Hunter2-secret", "ssn": "123-45"});
        let (body, body_truncated) = body_text(&redactor(), &body);
        let entry = Entry {
            target: "/scim/v2/Users?access_token=abc&filter=userName%20eq%20%22b%22".into(),
            body: Some(body),
            body_truncated,
            legacy_calls: vec![NotedCall {
                method: http::Method::GET,
                path: "/users?api_key=k1&login=bjensen".into(),
                status: Some(200),
                fault: None,
                micros: 1500,
            }],
            legacy_calls_total: 1,
            ..entry("acme")
        }
        .bounded(&redactor());
        let text = entry.to_json().to_string();
        for secret in ["Hunter2-secret", "123-45", "abc", "k1"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let json = entry.to_json();
        assert_eq!(json["path"], "/scim/v2/Users?access_token=[redacted]&filter=userName%20eq%20%22b%22");
        assert_eq!(json["legacy_calls"][0]["path"], "/users?api_key=[redacted]&login=bjensen");
        assert_eq!(json["legacy_calls"][0]["ms"], 1.5);
        let body: Value = serde_json::from_str(json["request_body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"userName": "bjensen", "password": REDACTED, "ssn": REDACTED}));
        assert_eq!(json["request_body_truncated"], false);
    }

    #[test]
    fn an_entry_holds_at_most_its_bound_whatever_it_is_given() {
        let long = |n: usize| "é".repeat(n);
        let (body, body_truncated) = body_text(&redactor(), &json!({"userName": long(100_000)}));
        let entry = Entry {
            request_id: long(500),
            target: format!("/scim/v2/Users/{}?{}", long(10_000), long(10_000)),
            error: Some(Failure { scim_type: Some("invalidValue"), detail: long(10_000), cause: Some(long(10_000)) }),
            ignored: (0..1000).map(|_| long(1000)).collect(),
            legacy_calls: (0..1000)
                .map(|_| NotedCall {
                    method: http::Method::GET,
                    path: long(1000),
                    status: None,
                    fault: Some("timeout"),
                    micros: 5,
                })
                .collect(),
            legacy_calls_total: 1000,
            body: Some(body),
            body_truncated,
            ..entry("acme")
        }
        .bounded(&redactor());
        assert!(entry.held_bytes() <= ENTRY_MAX_BYTES, "{} > {ENTRY_MAX_BYTES}", entry.held_bytes());
        assert!(entry.body_truncated);
        assert_eq!(entry.legacy_calls.len(), NOTED_CALLS);
        assert_eq!(entry.ignored.len(), IGNORED_NAMES);
        assert!(entry.target.len() <= TARGET_BYTES && entry.target.ends_with('…'));
    }

    #[test]
    fn each_app_keeps_its_newest_up_to_the_capacity() {
        let recent = RecentRequests::default();
        for i in 0..5 {
            let app = if i % 2 == 0 { "a" } else { "b" };
            let mut entry = entry(app).bounded(&redactor());
            entry.status = 200 + i;
            recent.push(entry, 2);
        }
        let statuses: Vec<(String, u16)> = recent.newest_first().iter().map(|e| (e.app.clone(), e.status)).collect();
        let expected = [("a", 204), ("b", 203), ("a", 202), ("b", 201)];
        assert_eq!(statuses, expected.map(|(a, s)| (a.to_owned(), s)));
        recent.retain(&["b"], 1, true);
        assert_eq!(recent.newest_first().iter().map(|e| e.status).collect::<Vec<_>>(), [203]);
        recent.retain(&["b"], 1, false);
        assert!(recent.newest_first().is_empty());
        recent.push(entry("a").bounded(&redactor()), 0);
        assert!(recent.newest_first().is_empty());
    }
}
