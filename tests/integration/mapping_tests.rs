//! Writing and checking mappings: `scim-proxy test`, dry runs and recordings.

use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Reply, TOKEN, TestEnv, repo_file, user};

/// Runs `scim-proxy test` with these arguments; answers the exit code and stdout + stderr.
fn scim_proxy_test(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .arg("test")
        .args(args)
        .env_remove("SCIM_TOKEN")
        .env_remove("ACME_API_KEY")
        .env_remove("ACME_BASE_URL")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn the_demo_mapping_passes_its_test_file() {
    let config = path_arg(&repo_file("proxy.yaml"));
    let (code, text) = scim_proxy_test(&["--config", &config]);
    assert_eq!(code, 0, "{text}");
    let cases = std::fs::read_to_string(repo_file("scripts/demo.test.yaml")).unwrap().matches("\n- name:").count();
    assert!(cases >= 20, "the demo test file should cover the whole mapping: {cases} cases");
    assert!(text.contains(&format!("{cases} passed, 0 failed")), "{text}");
    // Users are "7", groups "team-7": no id is both (RFC 7643 §3.1).
    let notes: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("note")).collect();
    assert!(notes.is_empty(), "{text}");
}

#[test]
fn a_wrong_fixture_fails_with_a_diff_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.test.yaml");
    // The legacy answer says login "bjensen"; the file expects another userName, a title the
    // record does not have, and a second legacy call the mapping does not make.
    std::fs::write(
        &file,
        r#"
app: acme
cases:
  - name: right
    request: {call: GET /Users/7?excludedAttributes=groups}
    legacy:
      - call: GET /users/7
        reply: {body: {id: 7, login: bjensen, enabled: true}}
    expect: {status: 200, body: {id: "7", userName: bjensen}}
  - name: deliberately wrong
    request: {call: GET /Users/7?excludedAttributes=groups}
    legacy:
      - call: GET /users/7
        reply: {body: {id: 7, login: bjensen, enabled: true}}
      - call: GET /users/7/roles
        reply: {body: []}
    expect:
      status: 200
      body: {id: "7", userName: barbara, title: Boss}
"#,
    )
    .unwrap();
    let config = path_arg(&repo_file("proxy.yaml"));
    let (code, text) = scim_proxy_test(&["--config", &config, "--file", &path_arg(&file)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("ok    right"), "{text}");
    assert!(text.contains("FAIL  deliberately wrong"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    // The calls as a diff: the one made, and the one expected but not made.
    assert!(text.contains("legacy calls differ (- expected, + made):"), "{text}");
    assert!(text.contains("  GET /users/7\n"), "{text}");
    assert!(text.contains("- GET /users/7/roles"), "{text}");
    // The body as a diff of the keys the file names.
    assert!(text.contains("response body differs (- expected, + got):"), "{text}");
    assert!(text.contains("-   \"title\": \"Boss\""), "{text}");
    assert!(text.contains("-   \"userName\": \"barbara\""), "{text}");
    assert!(text.contains("+   \"userName\": \"bjensen\""), "{text}");
}

#[test]
fn usage_errors_exit_with_code_2() {
    let config = path_arg(&repo_file("proxy.yaml"));
    let (code, text) = scim_proxy_test(&["nosuchapp", "--config", &config]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no app named \"nosuchapp\""), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.test.yaml");
    std::fs::write(&file, "cases:\n  - name: x\n    request: {call: /Users}\n    expect: {status: 200}\n").unwrap();
    let (code, text) = scim_proxy_test(&["--config", &config, "--file", &path_arg(&file)]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("write the method, a space and the path"), "{text}");
}

async fn dry_run(env: &TestEnv, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut request = env
        .client
        .request(method, format!("{}{path}", env.base()))
        .bearer_auth(TOKEN)
        .header("Scim-Proxy-Dry-Run", "true");
    if let Some(body) = body {
        request = request.header("content-type", "application/scim+json").body(body.to_string());
    }
    Reply::read(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_sends_reads_and_holds_writes_back() {
    let env = TestEnv::start().await;
    let id = env.create_user("dryrun").await;
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "title", "value": "Tried"},
            {"op": "replace", "path": "password", "value": "Hunter2-secret"}
        ]
    });
    let reply = dry_run(&env, Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(reply.header("scim-proxy-dry-run"), Some("writes-held-back"));
    assert_eq!(reply.body["schemas"][0], "urn:scim-proxy:api:messages:DryRun");
    let calls = reply.body["legacyCalls"].as_array().unwrap();
    let summary: Vec<(String, String, bool)> = calls
        .iter()
        .map(|c| (c["method"].as_str().unwrap().into(), c["path"].as_str().unwrap().into(), c["sent"] == true))
        .collect();
    assert_eq!(
        summary,
        vec![("GET".into(), format!("/users/{id}"), true), ("PUT".into(), format!("/users/{id}"), false)],
        "{}",
        reply.text
    );
    assert_eq!(calls[1]["body"]["title"], "Tried", "the report shows what would have been sent");
    assert_eq!(calls[1]["body"]["password"], "[redacted]");
    assert!(!reply.text.contains("Hunter2-secret"), "{}", reply.text);

    // Nothing reached the legacy app.
    let after = env.get(&format!("/Users/{id}")).await;
    assert_eq!(after.status.as_u16(), 200);
    assert!(after.body.get("title").is_none(), "{}", after.text);

    let delete = dry_run(&env, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(delete.body["legacyCalls"][0]["sent"], false, "{}", delete.text);
    assert_eq!(env.get(&format!("/Users/{id}")).await.status.as_u16(), 200, "the user is still there");

    // A read answers as usual, saying there was nothing to hold back.
    let read = dry_run(&env, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(read.status.as_u16(), 200);
    assert_eq!(read.header("scim-proxy-dry-run"), Some("no-writes"));
    assert_eq!(read.body["userName"], "dryrun");

    let bad = env
        .client
        .get(format!("{}/Users/{id}", env.base()))
        .bearer_auth(TOKEN)
        .header("Scim-Proxy-Dry-Run", "perhaps")
        .send()
        .await
        .unwrap();
    Reply::read(bad).await.assert_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_redacted_test_files_that_replay() {
    let dir = tempfile::tempdir().unwrap();
    let record_dir = dir.path().join("recordings");
    let line =
        format!("    request_timeout: 10s\n    record: {{dir: \"{}\", redact: [title]}}\n", record_dir.display());
    let env = TestEnv::start_with(|text| text.replacen("    request_timeout: 10s\n", &line, 1)).await;
    let mut body = user("recorded");
    body["password"] = json!("Correct-Horse-9");
    body["title"] = json!("Secret Agent");
    let created = env.post("/Users", body).await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(env.get(&format!("/Users/{id}")).await.status.as_u16(), 200);
    let listed = env.get("/Users?filter=userName%20eq%20%22recorded%22").await;
    assert_eq!(listed.body["totalResults"], 1);
    assert_eq!(env.get("/Users/99999").await.status.as_u16(), 404);

    // Files are written off the request path: wait for the four.
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&record_dir).unwrap().map(|e| e.unwrap().path()).collect();
        if files.len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("Correct-Horse-9") && !text.contains("Secret Agent"), "{text}");
        assert!(!text.contains(crate::support::API_KEY) && !text.contains(TOKEN), "{text}");
    }
    let create = std::fs::read_to_string(&files[0]).unwrap();
    assert!(create.contains("call: POST /Users") && create.contains("call: POST /users"), "{create}");
    assert!(create.contains("[redacted]"), "{create}");

    // Every recording replays against the stand-in as it happened.
    let config = dir.path().join("proxy.yaml");
    let script = repo_file("scripts/demo.rhai");
    std::fs::write(&config, crate::support::config_text(&script)).unwrap();
    let mut args = vec!["acme".to_owned(), "--config".into(), path_arg(&config), "--file".into()];
    args.extend(files.iter().map(|f| path_arg(f)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = scim_proxy_test(&args);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("4 passed, 0 failed"), "{text}");
}

#[test]
fn a_script_fault_shows_its_file_and_line_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.rhai"),
        "fn get_user(id) {\n    let user = #{};\n    user.emails[0].value\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("proxy.yaml"),
        "apps:\n  - name: app\n    base_path: /scim/v2\n    script: app.rhai\n    auth: {bearer_tokens: [\"${env.T}\"]}\n    legacy: {base_url: \"${env.U}\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("app.test.yaml"),
        "cases:\n  - name: read\n    request: {call: GET /Users/1}\n    expect: {status: 200}\n",
    )
    .unwrap();
    let (code, text) = scim_proxy_test(&["--config", &path_arg(&dir.path().join("proxy.yaml"))]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("status: expected 200, got 500 (script "), "{text}");
    assert!(text.contains("app.rhai: get_user: line 3:"), "{text}");
}

#[test]
fn a_group_id_that_is_also_a_user_id_is_noted_without_failing_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.test.yaml");
    // Acme numbers teams apart from users: without the prefix of its group ids, the demo
    // mapping answers user 7 and team 7 both as "7".
    let script = dir.path().join("shared.rhai");
    std::fs::write(&script, crate::support::demo_script_sharing_ids()).unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(&config, crate::support::config_text(&script)).unwrap();
    std::fs::write(
        &file,
        r#"
app: acme
cases:
  - name: a user
    request: {call: GET /Users/7?excludedAttributes=groups}
    legacy:
      - call: GET /users/7
        reply: {body: {id: 7, login: bjensen, enabled: true}}
    expect: {status: 200, body: {id: "7"}}
  - name: a team numbered like the user
    request: {call: GET /Groups/7?excludedAttributes=members}
    legacy:
      - call: GET /teams/7
        reply: {body: {id: 7, name: admins}}
    expect: {status: 200, body: {id: "7"}}
  - name: a team of its own
    request: {call: GET /Groups/8?excludedAttributes=members}
    legacy:
      - call: GET /teams/8
        reply: {body: {id: 8, name: devs}}
    expect: {status: 200, body: {id: "8"}}
"#,
    )
    .unwrap();
    let (code, text) = scim_proxy_test(&["acme", "--config", &path_arg(&config), "--file", &path_arg(&file)]);
    assert_eq!(code, 0, "a note, not a failure: {text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    let notes: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("note")).collect();
    assert_eq!(notes.len(), 1, "{text}");
    assert!(notes[0].contains("id \"7\" is a User's and a Group's") && notes[0].contains("RFC 7643 §3.1"), "{text}");
}

/// A mapping that defines `health()` (whose legacy call the proxy makes every
/// `server.health_interval`) passes its own test file every time: no periodic call lands among
/// a case's scripted ones. The demo mapping defines one.
#[test]
fn a_mapping_with_health_passes_its_test_file_ten_runs_out_of_ten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    let demo = std::fs::read_to_string(repo_file("scripts/demo.rhai")).unwrap();
    assert!(demo.contains("\nfn health() {"), "the demo mapping defines health()");
    std::fs::write(dir.path().join("scripts/demo.rhai"), demo).unwrap();
    std::fs::copy(repo_file("scripts/demo.test.yaml"), dir.path().join("scripts/demo.test.yaml")).unwrap();
    // A short interval, so that a periodic check would fall within the cases.
    let config = std::fs::read_to_string(repo_file("proxy.yaml")).unwrap().replacen(
        "server:\n",
        "server:\n  health_interval: 1s\n",
        1,
    );
    std::fs::write(dir.path().join("proxy.yaml"), config).unwrap();
    let config = path_arg(&dir.path().join("proxy.yaml"));
    for run in 1..=10 {
        let (code, text) = scim_proxy_test(&["--config", &config]);
        assert_eq!(code, 0, "run {run}:\n{text}");
        assert!(text.contains(" passed, 0 failed"), "run {run}:\n{text}");
    }
}

/// A dry run's held-back write is answered with the body the mapping sent; the demo's
/// `replace_user` reads the written record's id from that answer and fails. The report says
/// so instead of showing a bare 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_report_explains_a_500_made_from_an_echoed_write_without_an_id() {
    let env = TestEnv::start().await;
    let id = env.create_user("echoed").await;
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Tried"}]
    });
    let reply = dry_run(&env, Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(reply.body["legacyCalls"][1]["sent"], false, "{}", reply.text);
    assert!(reply.body["legacyCalls"][1]["body"].get("id").is_none(), "{}", reply.text);
    assert_eq!(reply.body["response"]["status"], 500, "{}", reply.text);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("not a verdict on a real run"), "{detail}");
    let explanation = reply.body["response"]["explanation"].as_str().unwrap_or_default();
    assert!(explanation.contains(&format!("PUT /users/{id}")) && explanation.contains("has no `id`"), "{}", reply.text);
}
