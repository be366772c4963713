//! Metrics on the admin listener, audit records of changes, and logs that never hold a secret.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{self, OTHER_TOKEN, Reply, TOKEN, TestEnv, user};

/// `/metrics` parsed: each sample (`name{labels}`) to its value. Fails on anything promtool's
/// `check metrics` would refuse (see [`lint`]), and runs promtool itself when it is installed.
pub(crate) async fn scrape(env: &TestEnv) -> BTreeMap<String, f64> {
    let response = env.client.get(format!("{}/metrics", env.admin())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    lint(&text);
    promtool(&text);
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate series {series}");
    }
    samples
}

/// The rules of the text exposition format that promtool checks: every sample belongs to the
/// family whose `# HELP` and `# TYPE` (once each) come right before its samples, which are
/// not split; counters end in `_total`; a histogram's buckets ascend in `le`, are cumulative
/// and end with `+Inf`, which equals `_count`.
fn lint(text: &str) {
    let mut seen = std::collections::BTreeSet::new();
    let mut current: Option<(String, String)> = None;
    let mut helped = None;
    let mut histogram: Option<(String, f64, f64)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(!seen.contains(&name), "family {name} appears twice");
            helped = Some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(helped.as_deref(), Some(name), "# TYPE {name} without its # HELP right before");
            assert!(seen.insert(name.to_owned()), "family {name} appears twice");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} must end in _total");
            } else {
                assert!(!name.ends_with("_total"), "{kind} {name} must not end in _total");
            }
            current = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (family, kind) = current.clone().unwrap_or_else(|| panic!("{line} before any # TYPE"));
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        let name = series.split('{').next().unwrap();
        if kind != "histogram" {
            assert_eq!(name, family, "{line} is not in its family's block");
            continue;
        }
        let suffix = name.strip_prefix(family.as_str()).unwrap_or_else(|| panic!("{line} outside {family}"));
        assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
        let labels = series.strip_prefix(name).unwrap();
        if suffix == "_bucket" {
            let (rest, le) = labels.rsplit_once("le=\"").unwrap_or_else(|| panic!("{line} has no le"));
            let le = le.trim_end_matches("\"}");
            let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            let key = rest.to_owned();
            if let Some((last_key, last_le, last_count)) = &histogram {
                if *last_key == key && *last_le < f64::INFINITY {
                    assert!(le > *last_le, "{line}: le must ascend");
                    assert!(value >= *last_count, "{line}: buckets must be cumulative");
                } else {
                    assert!(*last_le == f64::INFINITY, "the series before {line} has no +Inf bucket");
                }
            }
            histogram = Some((key, le, value));
        } else if suffix == "_count" {
            let (_, le, inf) = histogram.clone().unwrap_or_else(|| panic!("{line} without buckets"));
            assert_eq!((le, inf), (f64::INFINITY, value), "{line}: the +Inf bucket must equal the count");
        }
    }
}

/// promtool's own `check metrics`, when it is installed (it is not needed to run the tests).
fn promtool(text: &str) {
    use std::io::Write as _;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n{text}");
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_move_with_requests() {
    let env = TestEnv::start().await;
    let id = env.create_user("metered").await;
    let before = scrape(&env).await;
    for _ in 0..3 {
        assert_eq!(env.get(&format!("/Users/{id}")).await.status, StatusCode::OK);
    }
    env.get("/Users/999999").await.assert_error(404, None);
    let after = scrape(&env).await;

    let ok = r#"scim_proxy_requests_total{app="acme",operation="get_user",status="200"}"#;
    let missing = r#"scim_proxy_requests_total{app="acme",operation="get_user",status="404"}"#;
    assert_eq!(value(&after, ok) - value(&before, ok), 3.0);
    assert_eq!(value(&after, missing) - value(&before, missing), 1.0);
    let count = r#"scim_proxy_request_duration_seconds_count{app="acme",operation="get_user"}"#;
    assert_eq!(value(&after, count) - value(&before, count), 4.0);
    let inf = r#"scim_proxy_request_duration_seconds_bucket{app="acme",operation="get_user",le="+Inf"}"#;
    assert_eq!(value(&after, inf), value(&after, count), "+Inf bucket equals the count");
    // Each read calls get_user in the script and GETs the legacy app (the user and its teams).
    let script = r#"scim_proxy_script_duration_seconds_count{app="acme",function="get_user"}"#;
    assert_eq!(value(&after, script) - value(&before, script), 4.0);
    let legacy = r#"scim_proxy_legacy_request_duration_seconds_count{app="acme",method="GET"}"#;
    assert!(value(&after, legacy) - value(&before, legacy) >= 4.0);
    assert_eq!(value(&after, r#"scim_proxy_in_flight_requests{app="acme"}"#), 0.0);
    assert_eq!(value(&after, "scim_proxy_ready"), 1.0);
    assert!(after.contains_key(r#"scim_proxy_id_cache_hits_total{app="acme"}"#));
    assert!(after.contains_key(r#"scim_proxy_script_reloads_total{app="acme"}"#));
    let created = r#"scim_proxy_audit_records_total{app="acme",outcome="success"}"#;
    assert!(value(&after, created) >= 1.0);

    // The list of metrics in docs/operations.md names every family served.
    let text = env.client.get(format!("{}/metrics", env.admin())).send().await.unwrap().text().await.unwrap();
    let readme = std::fs::read_to_string(support::repo_file("docs/operations.md")).unwrap();
    let families: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
    let missing: Vec<&&str> = families.iter().filter(|family| !readme.contains(&format!("`{family}"))).collect();
    assert!(missing.is_empty(), "not in docs/operations.md's list of metrics: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_faults_are_counted_by_kind() {
    // Port 9 on localhost refuses connections.
    let env = TestEnv::start_with(|text| text.replacen("${env.ACME_BASE_URL}", "http://127.0.0.1:9/api", 1)).await;
    let before = scrape(&env).await;
    let reply = env.get("/Users/1").await;
    assert_eq!(reply.status.as_u16(), 503, "{}", reply.text);
    let after = scrape(&env).await;
    let connect = r#"scim_proxy_legacy_errors_total{app="acme",kind="connect"}"#;
    assert_eq!(value(&after, connect) - value(&before, connect), 1.0);
}

/// Waits (10 s at most) until `check` holds for a scrape; returns that scrape.
async fn scrape_until(
    env: &TestEnv,
    what: &str,
    check: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let started = std::time::Instant::now();
    loop {
        let samples = scrape(env).await;
        if check(&samples) {
            return samples;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "never happened: {what}\n{samples:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The revision `scim_proxy_build_info` must name: what `build.rs` was told or found.
fn expected_revision() -> String {
    if let Some(given) = option_env!("SCIM_PROXY_GIT_REVISION").map(str::trim).filter(|g| !g.is_empty()) {
        return given.to_owned();
    }
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success());
    git.map_or_else(|| "unknown".to_owned(), |output| String::from_utf8(output.stdout).unwrap().trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_build_and_connection_metrics_say_what_the_process_is_and_holds() {
    let env = TestEnv::start().await;
    let samples = scrape(&env).await;
    let build = format!(
        r#"scim_proxy_build_info{{version="{}",revision="{}"}}"#,
        env!("CARGO_PKG_VERSION"),
        expected_revision()
    );
    assert_eq!(samples.get(&build), Some(&1.0), "{build} in {samples:#?}");

    // The process's own figures (this test binary's: the proxy runs in it).
    let figure = |name: &str| *samples.get(name).unwrap_or_else(|| panic!("no {name} in {samples:#?}"));
    assert!(figure("process_open_fds") >= 3.0);
    assert!(figure("process_max_fds") >= figure("process_open_fds"));
    assert!(figure("process_resident_memory_bytes") > 1_048_576.0);
    assert!(figure("process_virtual_memory_bytes") >= figure("process_resident_memory_bytes"));
    assert!(figure("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = figure("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 86_400.0, "started {started}, now {now}");

    // Connections against their limits (the defaults), the scrape's own on the admin listener.
    let scim = r#"scim_proxy_open_connections{listener="scim"}"#;
    assert_eq!(figure(r#"scim_proxy_max_connections{listener="scim"}"#), 1024.0);
    assert_eq!(figure(r#"scim_proxy_max_connections{listener="admin"}"#), 64.0);
    assert!(figure(r#"scim_proxy_open_connections{listener="admin"}"#) >= 1.0);
    let before = figure(scim);
    let addr = env.proxy.as_ref().unwrap().scim_addr;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    scrape_until(&env, "five more open SCIM connections", |s| value(s, scim) == before + 5.0).await;
    drop(held);
    scrape_until(&env, "the five closed", |s| value(s, scim) == before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_slots_and_queue_depth_follow_requests_waiting_for_the_app() {
    // A legacy app that answers only when the test lets it.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (addr, _task) = support::serve_fake(gate.clone(), |gate, _request| async move {
        gate.acquire().await.unwrap().forget();
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
    })
    .await;
    let script = r#"
fn get_user(id) { legacy.get(["users", id]); #{ id: id, userName: "held" } }
fn list_users(query) { [] }
"#;
    let env = TestEnv::start_script(Some(script), |text| {
        text.replacen("${env.ACME_BASE_URL}", &format!("http://{addr}"), 1).replacen(
            "    request_timeout: 10s\n",
            "    request_timeout: 10s\n    max_concurrent_scripts: 1\n    max_queued_requests: 4\n",
            1,
        )
    })
    .await;
    let in_use = r#"scim_proxy_script_slots_in_use{app="acme"}"#;
    let queued = r#"scim_proxy_script_queue_depth{app="acme"}"#;
    let idle = scrape(&env).await;
    assert_eq!((value(&idle, in_use), value(&idle, queued)), (0.0, 0.0));
    assert_eq!(idle.get(r#"scim_proxy_max_concurrent_scripts{app="acme"}"#), Some(&1.0));
    assert_eq!(idle.get(r#"scim_proxy_max_queued_requests{app="acme"}"#), Some(&4.0));
    assert_eq!(idle.get(r#"scim_proxy_max_concurrent_scripts{app="other"}"#), Some(&16.0));

    let requests: Vec<_> = (0..3)
        .map(|i| {
            let (client, url) = (env.client.clone(), format!("{}/Users/{i}", env.base()));
            tokio::spawn(async move { client.get(url).bearer_auth(TOKEN).send().await.unwrap().status() })
        })
        .collect();
    scrape_until(&env, "one script running, two waiting", |s| value(s, in_use) == 1.0 && value(s, queued) == 2.0).await;
    gate.add_permits(3);
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    let after = scrape(&env).await;
    assert_eq!((value(&after, in_use), value(&after, queued)), (0.0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_removed_by_a_reload_leaves_no_series() {
    let env =
        TestEnv::start_from_file(|text| text.replacen("server:\n", "server:\n  config_reload_interval: 100ms\n", 1))
            .await;
    assert_eq!(env.get("/Users").await.status, StatusCode::OK);
    let other = format!("http://{}/other/scim/Users", env.proxy.as_ref().unwrap().scim_addr);
    assert_eq!(env.send_as(OTHER_TOKEN, Method::GET, &other, None).await.status, StatusCode::OK);
    let before = scrape(&env).await;
    let of_other: Vec<&String> = before.keys().filter(|series| series.contains(r#"app="other""#)).collect();
    assert!(of_other.iter().any(|s| s.starts_with("scim_proxy_requests_total")), "{of_other:#?}");
    assert!(of_other.iter().any(|s| s.starts_with("scim_proxy_script_duration_seconds")), "{of_other:#?}");

    let file = env.config_file();
    let text = std::fs::read_to_string(&file).unwrap();
    let (without, _) = text.split_once("  - name: other\n").unwrap();
    std::fs::write(&file, without).unwrap();
    let after = scrape_until(&env, "the reload", |s| value(s, "scim_proxy_config_reloads_total") == 1.0).await;
    let left: Vec<&String> = after.keys().filter(|series| series.contains(r#"app="other""#)).collect();
    assert!(left.is_empty(), "series of the removed app: {left:#?}");
    let acme = r#"scim_proxy_requests_total{app="acme",operation="list_users",status="200"}"#;
    assert_eq!(after.get(acme), Some(&1.0), "the app still served keeps its series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_buckets_come_from_the_configuration() {
    let env = TestEnv::start_with(|text| format!("metrics:\n  latency_buckets: [0.05, 0.5, 5]\n{text}")).await;
    assert_eq!(env.get("/Users").await.status, StatusCode::OK);
    let samples = scrape(&env).await;
    for family in [
        r#"scim_proxy_request_duration_seconds_bucket{app="acme",operation="list_users","#,
        r#"scim_proxy_script_duration_seconds_bucket{app="acme",function="list_users","#,
    ] {
        let bounds: Vec<&str> = samples
            .keys()
            .filter_map(|series| series.strip_prefix(family))
            .map(|le| le.trim_start_matches("le=\"").trim_end_matches("\"}"))
            .collect();
        let mut bounds = bounds;
        let number = |le: &str| le.parse::<f64>().unwrap_or(f64::INFINITY);
        bounds.sort_by(|a, b| number(a).total_cmp(&number(b)));
        assert_eq!(bounds, ["0.05", "0.5", "5", "+Inf"], "{family}");
    }
}

async fn send_with_id(env: &TestEnv, method: Method, path: &str, body: Option<Value>, request_id: &str) -> Reply {
    let mut request = env
        .client
        .request(method, format!("{}{path}", env.base()))
        .bearer_auth(TOKEN)
        .header("x-request-id", request_id);
    if let Some(body) = body {
        request = request.header("content-type", "application/scim+json").body(body.to_string());
    }
    Reply::read(request.send().await.unwrap()).await
}

/// The one audit line of a request.
fn audit_line(request_id: &str) -> String {
    let lines = support::log_lines_with(&["scim_proxy::audit", &format!("request_id={request_id}")]);
    assert_eq!(lines.len(), 1, "one audit record for {request_id}: {lines:?}");
    lines.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_has_an_audit_record_without_secrets() {
    let env = TestEnv::start().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let rid = |step: &str| format!("audit-{step}-{run}");

    let mut body = user("audited");
    body["password"] = json!("audit-Passw0rd");
    let created = send_with_id(&env, Method::POST, "/Users", Some(body), &rid("create")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let line = audit_line(&rid("create"));
    for part in [
        "principal=bearer token #1",
        "operation=\"create_user\"",
        "resource=\"User\"",
        &format!("id=\"{id}\""),
        "status=201",
        "outcome=\"success\"",
        "legacy_writes=1",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Auditor"}]});
    let patched = send_with_id(&env, Method::PATCH, &format!("/Users/{id}"), Some(patch), &rid("update")).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let line = audit_line(&rid("update"));
    assert!(line.contains("operation=\"patch_user\"") && line.contains("status=200"), "{line}");
    assert!(line.contains("outcome=\"success\"") && line.contains("legacy_writes=1"), "{line}");

    let deleted = send_with_id(&env, Method::DELETE, &format!("/Users/{id}"), None, &rid("delete")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let line = audit_line(&rid("delete"));
    assert!(line.contains("operation=\"delete_user\"") && line.contains(&format!("id=\"{id}\"")), "{line}");
    assert!(line.contains("status=204") && line.contains("legacy_writes=1"), "{line}");

    // A failed change is audited too: the DELETE reached the legacy app, which said 404.
    let again = send_with_id(&env, Method::DELETE, &format!("/Users/{id}"), None, &rid("again")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let line = audit_line(&rid("again"));
    assert!(line.contains("status=404") && line.contains("outcome=\"failed\""), "{line}");
    assert!(line.contains("legacy_writes=1"), "{line}");
    // And one refused before anything was sent.
    let bad = send_with_id(&env, Method::POST, "/Users", Some(json!({"userName": 7})), &rid("refused")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let line = audit_line(&rid("refused"));
    assert!(line.contains("status=400") && line.contains("outcome=\"refused\""), "{line}");
    assert!(line.contains("legacy_writes=0") && line.contains("id=\"-\""), "{line}");

    // Reads are not changes.
    let read = send_with_id(&env, Method::GET, "/Users", None, &rid("read")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(support::log_lines_with(&["scim_proxy::audit", &rid("read")]).is_empty());

    // No record, and no other log line, holds the password or the token.
    for line in support::log_lines_with(&[&run]) {
        assert!(!line.contains("audit-Passw0rd") && !line.contains(TOKEN), "{line}");
    }
    support::assert_no_secret_logged();
}

#[test]
fn the_log_scan_recognises_every_secret() {
    for secret in support::NEVER_LOGGED {
        assert!(support::contains_secret(&format!("a line with {secret} in it")), "{secret}");
    }
    assert!(!support::contains_secret("a line with nothing in it"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_logging_is_opt_in_and_redacted() {
    let env = TestEnv::start_with(|text| format!("log:\n  bodies: true\n{text}")).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut body = user(&format!("bodies{}", &run[..8]));
    body["password"] = json!("Hunter2-secret");
    let created = send_with_id(&env, Method::POST, "/Users", Some(body), &format!("bodies-{run}")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let lines = support::log_lines_with(&["scim_proxy::bodies", &format!("bodies-{run}")]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.contains("userName") && line.contains("POST") && line.contains("/users"), "{line}");
    assert!(line.contains("[redacted]") && !line.contains("Hunter2-secret"), "{line}");
    support::assert_no_secret_logged();

    // Off by default.
    let quiet = TestEnv::start().await;
    let reply = send_with_id(&quiet, Method::GET, "/Users", None, &format!("quiet-{run}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(support::log_lines_with(&["scim_proxy::bodies", &format!("quiet-{run}")]).is_empty());
}

/// A JSON object read strictly: a key given twice anywhere in it is an error (serde_json
/// would keep the last one silently).
pub(crate) struct Strict(pub(crate) Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON without duplicate keys")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                let mut items = Vec::new();
                while let Some(Strict(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Strict(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Strict(value) = map.next_value()?;
                    if object.insert(key.clone(), value).is_some() {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                }
                Ok(Strict(Value::Object(object)))
            }
        }
        de.deserialize_any(Visitor)
    }
}

#[test]
fn the_strict_reader_refuses_duplicate_keys_at_any_depth() {
    assert!(serde_json::from_str::<Strict>(r#"{"a": 1, "b": [{"c": 2}]}"#).is_ok());
    for text in [r#"{"message": "x", "message": "y"}"#, r#"{"span": {"id": 1, "id": 2}}"#] {
        let error = serde_json::from_str::<Strict>(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("duplicate key"), "{text}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_no_duplicate_keys_and_every_line_of_a_request_names_it() {
    use std::io::BufRead as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let legacy = acme::start(listener, acme::AcmeConfig::new(support::API_KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.rhai"),
        r#"
fn get_user(id) {
    log_info(`looking up ${id}`);
    print("printed too");
    if id == "broken" { throw "this mapping is broken"; }
    let response = legacy.get(["users", id]);
    if response.status == 404 { return (); }
    if response.status != 200 { throw legacy.unexpected(response, "read"); }
    #{ id: id, userName: response.json.login }
}
fn list_users(query) { [] }
"#,
    )
    .unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
log: {{format: json, level: "scim_proxy=debug,info"}}
apps:
  - name: acme
    base_path: /scim/v2
    script: app.rhai
    auth: {{bearer_tokens: ["${{env.TOKEN}}"]}}
    legacy:
      base_url: "{}"
      headers: {{X-Api-Key: "${{env.ACME_API_KEY}}"}}
"#,
            legacy.base_url()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["run", "--config"])
        .arg(&config)
        .env("TOKEN", TOKEN)
        .env("ACME_API_KEY", support::API_KEY)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let scim_addr = loop {
        let line = tokio::time::timeout_at(deadline, lines.recv()).await.ok().flatten();
        let line = line.unwrap_or_else(|| panic!("the proxy did not start:\n{}", all.join("\n")));
        all.push(line.clone());
        let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
        if parsed["message"] == "listening" {
            break parsed["scim_addr"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let new = acme::store::NewUser { login: "logged".into(), ..Default::default() };
    let id = legacy.store().create_user(new).unwrap().id.to_string();
    let mut sent = Vec::new();
    for (user, status) in [(id.as_str(), 200), ("999999", 404), ("broken", 500)] {
        let request_id = format!("json-log-{user}");
        let response = client
            .get(format!("http://{scim_addr}/scim/v2/Users/{user}"))
            .bearer_auth(TOKEN)
            .header("x-request-id", &request_id)
            .header("user-agent", "Azure AD SCIM Validator/1.0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{user}");
        sent.push(request_id);
    }
    // Each request's own line is the last it causes: once the broken one's is read, all are.
    while !all.iter().any(|line| line.contains("json-log-broken") && line.contains("request failed")) {
        let line = tokio::time::timeout_at(deadline, lines.recv()).await.ok().flatten();
        all.push(line.unwrap_or_else(|| panic!("no line for the broken request:\n{}", all.join("\n"))));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let parsed: Vec<Value> = all
        .iter()
        .map(|line| match serde_json::from_str::<Strict>(line) {
            Ok(Strict(value)) => value,
            Err(e) => panic!("{e}: {line}"),
        })
        .collect();
    for request_id in &sent {
        let script_lines: Vec<&Value> = parsed
            .iter()
            .filter(|line| line["message"] == "script log" && line["span"]["request_id"] == request_id.as_str())
            .collect();
        assert_eq!(script_lines.len(), 2, "{request_id}: {parsed:#?}");
        let user = request_id.trim_start_matches("json-log-");
        assert_eq!(script_lines[0]["text"], format!("looking up {user}"));
        assert_eq!(script_lines[1]["text"], "printed too");
        assert_eq!(script_lines[0]["span"]["app"], "acme");
        // Every line the request caused names it in its span (its own line also as a field).
        let own: Vec<&Value> = parsed.iter().filter(|line| line["request_id"] == request_id.as_str()).collect();
        assert!(!own.is_empty(), "{request_id}");
        for line in own {
            assert_eq!(line["span"]["request_id"], request_id.as_str(), "{line}");
        }
    }
    let failed = parsed.iter().find(|line| line["message"] == "request failed").unwrap();
    assert_eq!((failed["status"].as_u64(), &failed["span"]["request_id"]), (Some(500), &json!("json-log-broken")));
    // An access line says what a platform team investigates with: the endpoint (its template,
    // no ids), who called, with what, and how much went each way.
    let access = ["request done", "request refused", "request failed"];
    let access: Vec<&Value> = parsed.iter().filter(|l| access.iter().any(|m| l["message"] == *m)).collect();
    assert_eq!(access.len(), 3, "{access:#?}");
    for line in access {
        assert_eq!(line["route"], "/scim/v2/Users/{id}", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert!(line["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "{line}");
        assert_eq!(line["user_agent"], "Azure AD SCIM Validator/1.0", "{line}");
        assert_eq!(line["bytes_in"], 0, "{line}");
        assert!(line["bytes_out"].as_u64().is_some_and(|n| n > 50), "{line}");
    }
}
