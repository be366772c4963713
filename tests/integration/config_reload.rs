//! Reloading `proxy.yaml` while serving (on change and on SIGHUP), and readiness that
//! follows the script's `health()`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{TOKEN, TestEnv, repo_file};

const ROTATED: &str = "rotated-token-0123456789abcdef";

/// Polls until `check` is true, for at most 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_with(env: &TestEnv, token: &str) -> StatusCode {
    env.send_as(token, Method::GET, &format!("{}/Users", env.base()), None).await.status
}

async fn readyz(env: &TestEnv) -> (StatusCode, Value) {
    let response = env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn with_reload_interval(text: String) -> String {
    text.replacen("server:\n", "server:\n  config_reload_interval: 100ms\n", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_config_is_applied_and_a_broken_edit_keeps_the_running_one() {
    let env = TestEnv::start_from_file(with_reload_interval).await;
    let file = env.config_file();
    assert_eq!(status_with(&env, ROTATED).await, StatusCode::UNAUTHORIZED);

    // A second token, as in a rotation: both work once the edit is picked up.
    let text = std::fs::read_to_string(&file).unwrap();
    let rotated = text.replacen(
        r#"bearer_tokens: ["${env.TOKEN}"]"#,
        &format!(r#"bearer_tokens: ["${{env.TOKEN}}", "{ROTATED}"]"#),
        1,
    );
    assert_ne!(text, rotated);
    std::fs::write(&file, &rotated).unwrap();
    eventually("the new token is accepted", async || status_with(&env, ROTATED).await == StatusCode::OK).await;
    assert_eq!(status_with(&env, TOKEN).await, StatusCode::OK);
    let (_, ready) = readyz(&env).await;
    assert_eq!(ready["config"]["reloads"], 1);

    // A broken edit is refused: the running configuration keeps serving, /readyz says why.
    std::fs::write(&file, rotated.replacen("max_body_bytes: 65536", "max_body_bytes: lots", 1)).unwrap();
    eventually("the broken edit is reported", async || readyz(&env).await.1["config"]["error"].is_string()).await;
    let (status, ready) = readyz(&env).await;
    assert_eq!(status, StatusCode::OK, "a refused edit does not make the proxy unready: {ready}");
    let error = ready["config"]["error"].as_str().unwrap();
    assert!(error.contains("server.max_body_bytes"), "{error}");
    assert_eq!(ready["config"]["reload_failures"], 1);
    assert_eq!(status_with(&env, ROTATED).await, StatusCode::OK);
    // Reported once, not at every check.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(readyz(&env).await.1["config"]["reload_failures"], 1);
    let metrics = env.client.get(format!("{}/metrics", env.admin())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("scim_proxy_config_reload_failures_total 1"), "{metrics}");
    assert!(metrics.contains("scim_proxy_config_reloads_total 1"), "{metrics}");

    // A script that does not compile is refused the same way.
    let script = file.parent().unwrap().join("broken.rhai");
    std::fs::write(&script, "fn get_user(id) { let x = ; }").unwrap();
    std::fs::write(
        &file,
        rotated.replace(&repo_file("scripts/demo.rhai").display().to_string(), &script.display().to_string()),
    )
    .unwrap();
    eventually("the broken script is reported", async || {
        readyz(&env).await.1["config"]["error"].as_str().is_some_and(|e| e.contains("broken.rhai"))
    })
    .await;
    assert_eq!(status_with(&env, ROTATED).await, StatusCode::OK);

    // Undoing the edit clears the error.
    std::fs::write(&file, &rotated).unwrap();
    eventually("the error is cleared", async || readyz(&env).await.1["config"]["error"].is_null()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_is_picked_up_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, format!("{TOKEN}\n")).unwrap();
    let reference = format!("${{file.{}}}", secret.display());
    let env = TestEnv::start_from_file(|text| {
        with_reload_interval(text).replacen(
            r#"bearer_tokens: ["${env.TOKEN}"]"#,
            &format!(r#"bearer_tokens: ["{reference}"]"#),
            1,
        )
    })
    .await;
    assert_eq!(status_with(&env, TOKEN).await, StatusCode::OK);
    // As the kubelet does with a mounted Secret: replace the file.
    std::fs::write(&secret, format!("{ROTATED}\n")).unwrap();
    eventually("the rotated token is accepted", async || status_with(&env, ROTATED).await == StatusCode::OK).await;
    assert_eq!(status_with(&env, TOKEN).await, StatusCode::UNAUTHORIZED, "the old token is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration() {
    let env = TestEnv::start().await; // only for its Acme Directory
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.yaml");
    let text = crate::support::config_text(&repo_file("scripts/demo.rhai")).replacen(
        "server:\n",
        "server:\n  config_reload_interval: 0s\n",
        1,
    );
    std::fs::write(&file, &text).unwrap();
    let (mut child, scim, _) = crate::support::spawn_proxy_binary(&file, &env.legacy.base_url());
    let client = reqwest::Client::new();
    let users = format!("http://{scim}/scim/v2/Users");
    let status = |token: &'static str| {
        let (client, users) = (client.clone(), users.clone());
        async move { client.get(&users).bearer_auth(token).send().await.map(|r| r.status()).ok() }
    };
    eventually("the proxy serves", async || status(TOKEN).await == Some(StatusCode::OK)).await;
    assert_eq!(status(ROTATED).await, Some(StatusCode::UNAUTHORIZED));
    std::fs::write(
        &file,
        text.replacen(r#"bearer_tokens: ["${env.TOKEN}"]"#, &format!(r#"bearer_tokens: ["{ROTATED}"]"#), 1),
    )
    .unwrap();
    // Polling is off: nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(ROTATED).await, Some(StatusCode::UNAUTHORIZED));
    let killed = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    eventually("SIGHUP applied the edit", async || status(ROTATED).await == Some(StatusCode::OK)).await;
    assert_eq!(status(TOKEN).await, Some(StatusCode::UNAUTHORIZED));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_scripts_health() {
    // The demo script, with a health() that fails while a user called "maintenance" exists.
    let demo =
        std::fs::read_to_string(repo_file("scripts/demo.rhai")).unwrap().replace("fn health() {", "fn demo_health() {");
    let script = format!(
        "{demo}\nfn health() {{\n    let r = legacy.get(\"/users\", #{{ login: \"maintenance\" }});\n    if r.status != 200 {{ return `Acme answered ${{r.status}}`; }}\n    if r.json.data.len() > 0 {{ return \"Acme is in maintenance\"; }}\n    true\n}}\n"
    );
    let env =
        TestEnv::start_script(Some(&script), |text| text.replacen("health_interval: 0s", "health_interval: 100ms", 1))
            .await;
    eventually("ready after the first check", async || readyz(&env).await.0 == StatusCode::OK).await;
    let (_, ready) = readyz(&env).await;
    assert_eq!(ready["apps"][0]["legacy_health"]["healthy"], true, "{ready}");

    let id = env.create_user("maintenance").await;
    eventually("not ready while health() fails", async || readyz(&env).await.0 == StatusCode::SERVICE_UNAVAILABLE)
        .await;
    let (_, ready) = readyz(&env).await;
    assert_eq!(ready["apps"][0]["legacy_health"]["detail"], "Acme is in maintenance", "{ready}");
    let metrics = env.client.get(format!("{}/metrics", env.admin())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("scim_proxy_legacy_healthy{app=\"acme\"} 0"), "{metrics}");
    assert!(metrics.contains("scim_proxy_ready 1"), "started, though not ready by health: {metrics}");

    assert_eq!(env.delete(&format!("/Users/{id}")).await.status, StatusCode::NO_CONTENT);
    eventually("ready again", async || readyz(&env).await.0 == StatusCode::OK).await;
}
