//! `scim-proxy test`: runs mapping test files against a stand-in legacy app, offline.
//!
//! Each case gets a fresh proxy (so a cold ID cache) serving only the app under test, with its
//! `legacy.base_url` pointed at a stand-in on 127.0.0.1 that answers the case's scripted
//! replies. The case's SCIM requests go to the proxy over HTTP; the calls the stand-in
//! received and the proxy's answers are compared with the file's expectations.

pub(crate) mod compare;
pub(crate) mod mock;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::config::{AppConfig, Config, InboundAuth, Secret, Variables};
use crate::recording::fixture::{self, Case, Expect, LegacyCall, Step, TestFile};
use crate::runtime;
use compare::{diff, matches, pretty, prune};
use mock::{MockLegacy, Received, UNSCRIPTED};

use crate::recording::fixture::TEST_HOST;

/// The bearer token of the proxies the runner starts.
const TOKEN: &str = "scim-proxy-test-token-0000000000";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file whose apps' scripts are tested.
    pub config: PathBuf,
    /// Only this app (by name).
    pub app: Option<String>,
    /// These test files instead of the ones beside the scripts.
    pub files: Vec<PathBuf>,
}

/// Counts of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub(crate) passed: usize,
    /// Test cases whose answers differ from the expected ones: the run fails when not zero.
    pub failed: usize,
}

/// A problem that stops the run before any verdict (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the test files chosen by `options`, writing the report to `out`.
pub async fn run(options: &Options, out: &mut dyn Write) -> Result<Summary, UsageError> {
    let vars = Variables::offline();
    let config = Config::load(&options.config, &vars).map_err(|e| UsageError(e.to_string()))?;
    if let Some(name) = &options.app {
        if !config.apps.iter().any(|a| &a.name == name) {
            let names: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
            return Err(UsageError(format!(
                "{}: no app named {name:?} (apps: {})",
                options.config.display(),
                names.join(", ")
            )));
        }
    }
    let mut targets: Vec<(PathBuf, TestFile, &AppConfig)> = Vec::new();
    if options.files.is_empty() {
        for app in config.apps.iter().filter(|a| options.app.as_ref().is_none_or(|n| n == &a.name)) {
            let path = fixture::beside(&config.script_path(app));
            if !path.exists() {
                let _ = writeln!(out, "app {}: no test file ({} does not exist)", app.name, path.display());
                continue;
            }
            let file = fixture::load(&path).map_err(UsageError)?;
            if let Some(named) = file.app.as_ref().filter(|n| *n != &app.name) {
                return Err(UsageError(format!(
                    "{}: names app {named:?}, but it is beside the script of app {:?}",
                    path.display(),
                    app.name
                )));
            }
            targets.push((path, file, app));
        }
    } else {
        for path in &options.files {
            let file = fixture::load(path).map_err(UsageError)?;
            let wanted = file.app.as_ref().or(options.app.as_ref());
            let app = match wanted {
                Some(name) => config.apps.iter().find(|a| &a.name == name),
                None if config.apps.len() == 1 => config.apps.first(),
                None => {
                    return Err(UsageError(format!(
                        "{}: the configuration has several apps: name one with `app:` in the file or on the command line",
                        path.display()
                    )));
                }
            };
            let app = app.ok_or_else(|| {
                UsageError(format!("{}: no app {:?} in {}", path.display(), wanted, options.config.display()))
            })?;
            targets.push((path.clone(), file, app));
        }
    }
    if targets.is_empty() {
        return Err(UsageError(format!(
            "{}: no test file to run (write one beside the script, e.g. scripts/<app>.test.yaml)",
            options.config.display()
        )));
    }
    let unset = vars.unset();
    if !unset.is_empty() {
        let _ = writeln!(out, "(placeholders for unset {})", unset.join(", "));
    }
    let mut summary = Summary::default();
    for (path, file, app) in targets {
        let _ = writeln!(out, "{} (app {})", path.display(), app.name);
        let mut seen = SeenIds::default();
        for case in &file.cases {
            let failures = match run_case(&config, app, case, &mut seen).await {
                Ok(failures) => failures,
                Err(e) => vec![format!("could not run: {e}")],
            };
            if failures.is_empty() {
                summary.passed += 1;
                let _ = writeln!(out, "  ok    {}", case.name);
            } else {
                summary.failed += 1;
                let _ = writeln!(out, "  FAIL  {}", case.name);
                for failure in failures {
                    for line in failure.lines() {
                        let _ = writeln!(out, "        {line}");
                    }
                }
            }
        }
        for id in seen.shared() {
            let _ = writeln!(
                out,
                "  note  id {id:?} is a User's and a Group's: SCIM ids are unique across resource types \
                 (RFC 7643 §3.1), give groups ids of their own (docs/scripting.md, \"Ids\")"
            );
        }
    }
    let _ = writeln!(out, "{} passed, {} failed", summary.passed, summary.failed);
    Ok(summary)
}

/// The ids the proxy's answers gave Users and Groups, across the cases of one file.
#[derive(Debug, Default)]
struct SeenIds {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl SeenIds {
    /// Notes the ids an answer shows: of the resources it is or lists (by `meta.resourceType`),
    /// of a user's `groups`, and of a group's members of `type: User`.
    fn collect(&mut self, body: &Value) {
        let resources = match body.get("Resources").and_then(Value::as_array) {
            Some(listed) => listed.iter().collect(),
            None => vec![body],
        };
        let id = |value: &Value| value.as_str().map(str::to_owned);
        for resource in resources {
            let own = resource.get("id").and_then(id);
            match resource.pointer("/meta/resourceType").and_then(Value::as_str) {
                Some("User") => {
                    self.users.extend(own);
                    let groups = resource.get("groups").and_then(Value::as_array).into_iter().flatten();
                    self.groups.extend(groups.filter_map(|g| g.get("value").and_then(id)));
                }
                Some("Group") => {
                    self.groups.extend(own);
                    let members = resource.get("members").and_then(Value::as_array).into_iter().flatten();
                    let users = members.filter(|m| m.get("type").and_then(Value::as_str) == Some("User"));
                    self.users.extend(users.filter_map(|m| m.get("value").and_then(id)));
                }
                _ => {}
            }
        }
    }

    /// The ids seen both as a User's and as a Group's.
    fn shared(&self) -> impl Iterator<Item = &String> {
        self.users.intersection(&self.groups)
    }
}

/// Runs one case on its own proxy and stand-in; returns what did not match, and notes the
/// ids the answers gave in `seen`.
async fn run_case(config: &Config, app: &AppConfig, case: &Case, seen: &mut SeenIds) -> Result<Vec<String>, String> {
    let steps = case.steps()?;
    let base = &app.legacy.base_url;
    let mock = MockLegacy::start(base.path()).await.map_err(|e| format!("cannot start the stand-in: {e}"))?;
    let mut app = app.clone();
    let mut url = base.clone();
    let pointed = url.set_scheme("http").is_ok()
        && url.set_host(Some("127.0.0.1")).is_ok()
        && url.set_port(Some(mock.addr.port())).is_ok();
    if !pointed {
        return Err(format!("cannot point {base} at the stand-in"));
    }
    app.legacy.base_url = url;
    // The stand-in speaks plain HTTP and needs no token: the app's certificates and token
    // endpoint (which need not exist on this machine) are left out, and the test run
    // authenticates with one token, whatever the real deployment uses.
    app.legacy.ca_file = None;
    app.legacy.client_certificate = None;
    app.legacy.insecure_skip_verify = false;
    if let Some(auth) = app.legacy.auth.as_mut() {
        auth.oauth2 = None;
    }
    app.auth = InboundAuth { bearer_tokens: vec![Secret::new(TOKEN)], ..InboundAuth::default() };
    app.record = None;
    let mut config = config.clone();
    config.apps = vec![app.clone()];
    // Nothing runs on a timer during a case: a periodic `health()` or reload would make legacy
    // calls of its own among the case's scripted ones, at random places.
    config.server.script_reload_interval = Duration::ZERO;
    config.server.health_interval = Duration::ZERO;
    config.server.config_reload_interval = Duration::ZERO;
    config.tls = None;
    // A case's requests go to a stand-in app: their spans are nobody's to collect.
    config.traces = crate::config::TracesConfig::default();
    // The report shows a script fault's file, function and line instead of the generic detail.
    config.server.reveal_faults = true;
    let localhost = "127.0.0.1:0".parse().ok();
    let running = runtime::start(&config, localhost, localhost).await.map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let endpoint = format!("http://{}{}", running.scim_addr, app.base_path.trim_end_matches('/'));
    let mut failures = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let label = if steps.len() > 1 { format!("step {}: ", index + 1) } else { String::new() };
        mock.script(step.legacy.iter().map(|c| c.reply.clone()).collect());
        match send(&client, &endpoint, step).await {
            Ok((status, headers, body)) => {
                let received = mock.received();
                for failure in check_calls(&step.legacy, &received) {
                    failures.push(format!("{label}{failure}"));
                }
                for failure in check_answer(&step.expect, status, &headers, body.as_ref()) {
                    failures.push(format!("{label}{failure}"));
                }
                if let Some(body) = &body {
                    seen.collect(body);
                }
            }
            Err(e) => failures.push(format!("{label}{}: {e}", step.request.call)),
        }
    }
    running.shutdown().await;
    mock.shutdown().await;
    Ok(failures)
}

/// Sends a step's SCIM request; answers status, headers and body (JSON, else text).
async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    step: &Step,
) -> Result<(u16, reqwest::header::HeaderMap, Option<Value>), String> {
    let (method, target) = fixture::split_call(&step.request.call)?;
    let mut request = client
        .request(method, format!("{endpoint}{target}"))
        .header(reqwest::header::HOST, TEST_HOST)
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(120));
    let has_content_type = step.request.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type"));
    for (name, value) in &step.request.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &step.request.body {
        if !has_content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/scim+json");
        }
        request = match body {
            Value::String(text) => request.body(text.clone()),
            json => request.body(json.to_string()),
        };
    }
    let response = request.send().await.map_err(|e| format!("no answer from the proxy: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(|e| format!("cannot read the proxy's answer: {e}"))?;
    let body = (!bytes.is_empty()).then(|| {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    });
    Ok((status, headers, body))
}

/// Compares the legacy calls made with the ones the step expects.
fn check_calls(expected: &[LegacyCall], received: &[Received]) -> Vec<String> {
    let mut failures = Vec::new();
    let same_calls = expected.len() == received.len()
        && expected.iter().zip(received).all(|(e, r)| same_call(&e.call, &r.method, &r.target));
    if !same_calls {
        let want: Vec<String> = expected.iter().map(|e| normal_call(&e.call)).collect();
        // A call that matches is shown as the file writes it, so it reads as unchanged.
        let have: Vec<String> = received
            .iter()
            .enumerate()
            .map(|(i, r)| match expected.get(i) {
                Some(e) if same_call(&e.call, &r.method, &r.target) => normal_call(&e.call),
                _ => format!("{} {}", r.method, r.target),
            })
            .collect();
        let mut text = String::from("legacy calls differ (- expected, + made):\n");
        text.push_str(&diff(&want.join("\n"), &have.join("\n")));
        if received.len() > expected.len() {
            text.push_str(&format!("(calls past the scripted ones were answered 500: {UNSCRIPTED})\n"));
        }
        failures.push(text.trim_end().to_owned());
    }
    for (index, (e, r)) in expected.iter().zip(received).enumerate() {
        let Some(want) = &e.body else { continue };
        if !same_call(&e.call, &r.method, &r.target) || matches(want, r.body.as_ref()) {
            continue;
        }
        let have = r.body.as_ref().map_or(Value::Null, |b| prune(want, b));
        failures.push(format!(
            "legacy call {} ({}): request body differs (- expected, + sent):\n{}",
            index + 1,
            normal_call(&e.call),
            diff(&pretty(want), &pretty(&have)).trim_end()
        ));
    }
    failures
}

/// True when a received call is the expected one: method, path, and query as a set of pairs.
fn same_call(expected: &str, method: &str, target: &str) -> bool {
    let Ok((want_method, want_target)) = fixture::split_call(expected) else {
        return false;
    };
    let (want_path, want_query) = want_target.split_once('?').unwrap_or((want_target, ""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    want_method.as_str() == method && want_path == path && query_pairs(want_query) == query_pairs(query)
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    pairs.sort();
    pairs
}

fn normal_call(call: &str) -> String {
    match fixture::split_call(call) {
        Ok((method, target)) => format!("{method} {target}"),
        Err(_) => call.to_owned(),
    }
}

/// Compares the proxy's answer with the step's expectation.
fn check_answer(
    expect: &Expect,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: Option<&Value>,
) -> Vec<String> {
    let mut failures = Vec::new();
    if status != expect.status {
        let detail = body.and_then(|b| b.get("detail")).and_then(Value::as_str).map(|d| format!(" ({d})"));
        failures.push(format!("status: expected {}, got {status}{}", expect.status, detail.unwrap_or_default()));
    }
    for (name, want) in &expect.headers {
        let have = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        if have != Some(want.as_str()) {
            failures.push(format!(
                "header {name}: expected {want:?}, got {}",
                have.map_or("none".into(), |h| format!("{h:?}"))
            ));
        }
    }
    if let Some(want) = &expect.body {
        if !matches(want, body) {
            let have = body.map_or(Value::Null, |b| prune(want, b));
            failures.push(format!(
                "response body differs (- expected, + got):\n{}",
                diff(&pretty(want), &pretty(&have)).trim_end()
            ));
        }
    }
    failures
}
