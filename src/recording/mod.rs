//! Recording: each SCIM request of an app, with the legacy calls it caused, written as a
//! mapping test file (redacted), ready for `scim-proxy test --file`.
//!
//! May import: `script` (the journal of legacy calls), and the foundation.

pub(crate) mod fixture;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::recording::fixture::TEST_HOST;
use crate::recording::fixture::{Case, Expect, LegacyCall, Reply, Request, TestFile};
use crate::scim::schema::{Attribute, Returned};
use crate::script::journal::Exchange;

/// What replaces a redacted value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Names whose values are never written, whatever the schema says (compared case-insensitively).
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "client_secret",
    "private_key",
    "authorization",
    "credentials",
];

/// Which values are secrets: the secret names, the configured ones, and the attributes the
/// app's schemas never return.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    names: BTreeSet<String>,
}

impl Redactor {
    /// A redactor for these extra names and schema attributes.
    pub(crate) fn new<'a>(extra: &[String], attributes: impl Iterator<Item = &'a Attribute>) -> Self {
        let mut names: BTreeSet<String> = SECRET_NAMES.iter().map(|s| (*s).to_owned()).collect();
        names.extend(extra.iter().map(|s| s.to_ascii_lowercase()));
        for attribute in attributes {
            collect_never_returned(attribute, &mut names);
        }
        Self { names }
    }

    /// Replaces the values of secret names, and the `value` of PATCH operations whose `path`
    /// names one.
    ///
    /// Answers whether anything was redacted.
    pub(crate) fn redact(&self, value: &mut Value) -> bool {
        match value {
            Value::Object(map) => {
                let patch_target = map.get("path").and_then(Value::as_str).map(|p| self.is_secret(last_name(p)));
                let mut changed = false;
                for (key, item) in map.iter_mut() {
                    let secret = self.is_secret(key) || (key == "value" && patch_target == Some(true));
                    if secret && !item.is_null() {
                        changed |= item.as_str() != Some(REDACTED);
                        *item = Value::String(REDACTED.into());
                    } else {
                        changed |= self.redact(item);
                    }
                }
                changed
            }
            Value::Array(items) => items.iter_mut().fold(false, |changed, item| self.redact(item) | changed),
            _ => false,
        }
    }

    /// Whether values under this name (a JSON key, a query parameter) are never shown.
    pub(crate) fn is_secret(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_lowercase())
    }
}

/// One app's recorder.
#[derive(Debug)]
pub(crate) struct Recorder {
    app: String,
    dir: PathBuf,
    redactor: Redactor,
    sequence: AtomicU64,
}

/// One SCIM exchange with the legacy calls it caused.
#[derive(Debug)]
pub(crate) struct Recording {
    pub request_id: String,
    pub method: String,
    /// Path below the app's base path, and query.
    pub target: String,
    /// Conditional request headers (`If-Match`, `If-None-Match`); nothing that authenticates.
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub calls: Vec<Exchange>,
    pub status: u16,
    pub response: Option<Value>,
    /// The app's base URL as the client saw it, replaced by the test host in the file.
    pub base_url: String,
    pub base_path: String,
}

impl Recorder {
    /// A recorder writing into `dir` (created if missing).
    pub(crate) fn new(app: &str, dir: PathBuf, redactor: Redactor) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { app: app.to_owned(), dir, redactor, sequence: AtomicU64::new(0) })
    }

    /// Writes a recording as its own test file, off the runtime threads; problems are logged.
    pub(crate) fn write(&self, recording: Recording) {
        if let Some(fault) = recording.calls.iter().find_map(|c| c.fault.as_ref()) {
            tracing::info!(app = %self.app, request_id = %recording.request_id, fault = %fault, "not recorded: a legacy call got no answer, which a test file cannot replay");
            return;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let name = format!("{millis}-{sequence:04}-{}.test.yaml", recording.method.to_ascii_lowercase());
        let path = self.dir.join(name);
        let text = match serde_yaml_ng::to_string(&self.test_file(recording)) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(app = %self.app, %error, "cannot write a recording");
                return;
            }
        };
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = std::fs::write(&path, text) {
                tracing::warn!(app, path = %path.display(), %error, "cannot write a recording");
            }
        });
    }

    /// The test file of one recording, redacted.
    pub(crate) fn test_file(&self, recording: Recording) -> TestFile {
        let test_base = format!("http://{TEST_HOST}{}", recording.base_path.trim_end_matches('/'));
        let mut body = recording.body;
        if let Some(body) = &mut body {
            self.redactor.redact(body);
        }
        let mut replies_redacted = false;
        let legacy = recording
            .calls
            .into_iter()
            .map(|call| {
                let mut sent = call.body;
                if let Some(sent) = &mut sent {
                    self.redactor.redact(sent);
                }
                let mut reply = call.reply.filter(|r| !r.is_null());
                if let Some(reply) = &mut reply {
                    replies_redacted |= self.redactor.redact(reply);
                }
                LegacyCall {
                    call: format!("{} {}", call.method, call.path),
                    body: sent,
                    reply: Reply { status: call.status.unwrap_or(200), headers: Default::default(), body: reply },
                }
            })
            .collect();
        let mut response = recording.response;
        if let Some(response) = &mut response {
            self.redactor.redact(response);
            rebase(response, &recording.base_url, &test_base);
            if replies_redacted {
                // The version hashes what the legacy app really answered; replayed with
                // redacted answers it cannot be the same.
                drop_versions(response);
            }
        }
        let case = Case {
            name: format!(
                "{} {} → {} (request {})",
                recording.method, recording.target, recording.status, recording.request_id
            ),
            request: Some(Request {
                call: format!("{} {}", recording.method, recording.target),
                headers: recording.headers.into_iter().collect(),
                body,
            }),
            legacy: Some(legacy),
            expect: Some(Expect { status: recording.status, headers: Default::default(), body: response }),
            steps: Vec::new(),
        };
        TestFile { app: Some(self.app.clone()), cases: vec![case] }
    }
}

/// The attribute a PATCH path ends in: `password`, `urn:…:User:password` and
/// `emails[type eq "work"].value` → `password`, `password`, `value`.
fn last_name(path: &str) -> &str {
    let without_filter = match (path.find('['), path.rfind(']')) {
        (Some(open), Some(close)) if close > open => {
            let after = &path[close + 1..];
            if after.is_empty() { &path[..open] } else { after.trim_start_matches('.') }
        }
        _ => path,
    };
    let tail = without_filter.rsplit(':').next().unwrap_or(without_filter);
    tail.rsplit('.').next().unwrap_or(tail)
}

fn collect_never_returned(attribute: &Attribute, into: &mut BTreeSet<String>) {
    if attribute.returned == Returned::Never {
        into.insert(attribute.name.to_ascii_lowercase());
    }
    for sub in &attribute.sub_attributes {
        collect_never_returned(sub, into);
    }
}

/// Removes `meta.version` wherever it appears (a resource, or each of a list's).
fn drop_versions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(meta)) = map.get_mut("meta") {
                meta.remove("version");
            }
            map.values_mut().for_each(drop_versions);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_versions),
        _ => {}
    }
}

/// Rewrites the client's base URL to the test host's in every string.
fn rebase(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(text) if text.starts_with(from) => *text = format!("{to}{}", &text[from.len()..]),
        Value::Array(items) => items.iter_mut().for_each(|v| rebase(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| rebase(v, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A recorder writing into a temporary folder, removed with the returned guard.
    fn recorder() -> (Recorder, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let recorder =
            Recorder::new("acme", dir.path().join("recorded"), Redactor::new(&["SSN".into()], std::iter::empty()))
                .unwrap();
        (recorder, dir)
    }

    #[test]
    fn redacts_secret_names_configured_names_and_patch_values() {
        let r = recorder().0.redactor;
        let mut body = json!({
            "userName": "b", "password": "hunter2", "ssn": "123", "nested": [{"api_key": "k", "x": 1}],
            "Operations": [
                {"op": "replace", "path": "password", "value": "p1"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": "p2"},
                {"op": "replace", "path": "title", "value": "Boss"},
                {"op": "replace", "value": {"password": "p3"}}
            ]
        });
        r.redact(&mut body);
        let text = body.to_string();
        for secret in ["hunter2", "\"123\"", "\"k\"", "p1", "p2", "p3"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(body["Operations"][2]["value"], "Boss");
        assert_eq!(body["nested"][0]["x"], 1);
        assert_eq!(last_name("emails[type eq \"work\"].value"), "value");
        assert_eq!(last_name("members[value eq \"2\"]"), "members");
    }

    #[test]
    fn a_recording_becomes_a_test_file() {
        let (r, _dir) = recorder();
        let file = r.test_file(Recording {
            request_id: "r1".into(),
            method: "POST".into(),
            target: "/Users".into(),
            headers: vec![],
            body: Some(json!({"userName": "b", "password": "x"})),
            calls: vec![Exchange {
                method: "POST".into(),
                path: "/users".into(),
                body: Some(json!({"login": "b", "password": "x"})),
                sent: true,
                status: Some(201),
                reply: Some(json!({"id": 7, "login": "b"})),
                fault: None,
            }],
            status: 201,
            response: Some(json!({"id": "7", "meta": {"location": "https://idp.example/scim/v2/Users/7"}})),
            base_url: "https://idp.example/scim/v2".into(),
            base_path: "/scim/v2".into(),
        });
        let text = serde_yaml_ng::to_string(&file).unwrap();
        assert!(!text.contains("password: x"), "{text}");
        assert!(text.contains("http://scim.test/scim/v2/Users/7"), "{text}");
        let back: TestFile = serde_yaml_ng::from_str(&text).unwrap();
        let step = &back.cases[0].steps().unwrap()[0];
        assert_eq!(step.legacy[0].call, "POST /users");
        assert_eq!(step.legacy[0].reply.status, 201);
        assert_eq!(step.expect.status, 201);
    }
}
