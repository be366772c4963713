//! Reloading `proxy.yaml` while serving (on change and on SIGHUP), and readiness that
//! follows the script's `health()`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{TOKEN, TestEnv, repo_file, write_whole};

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
    write_whole(&file, &rotated);
    eventually("the new token is accepted", async || status_with(&env, ROTATED).await == StatusCode::OK).await;
    assert_eq!(status_with(&env, TOKEN).await, StatusCode::OK);
    let (_, ready) = readyz(&env).await;
    assert_eq!(ready["config"]["reloads"], 1);

    // A broken edit is refused: the running configuration keeps serving, /readyz says why.
    write_whole(&file, &rotated.replacen("max_body_bytes: 65536", "max_body_bytes: lots", 1));
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
    write_whole(&file, &rotated);
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

/// Writes the configuration file with `from` replaced by `to` (which must be in it), and
/// waits until the reload applied it.
async fn reload_with(env: &TestEnv, from: &str, to: &str) {
    let file = env.config_file();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(from), "the test configuration no longer has {from}");
    let before = readyz(env).await.1["config"]["reloads"].as_u64().unwrap();
    write_whole(&file, &text.replacen(from, to, 1));
    eventually("the edit is applied", async || readyz(env).await.1["config"]["reloads"] == before + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_the_keys_only_a_restart_applies_and_applies_the_rest() {
    let env = TestEnv::start_from_file(with_reload_interval).await;
    assert_eq!(status_with(&env, ROTATED).await, StatusCode::UNAUTHORIZED);
    let server = "server:\n  config_reload_interval: 100ms\n";
    let edited = "admin:\n  max_connections: 7\nserver:\n  config_reload_interval: 100ms\n  max_connections: 10\n  \
                  header_read_timeout: 3s\n  shutdown_grace: 2s\n  idle_timeout: 30s\n";
    let text = std::fs::read_to_string(env.config_file()).unwrap();
    let text = text.replacen(server, edited, 1).replacen(
        r#"bearer_tokens: ["${env.TOKEN}"]"#,
        &format!(r#"bearer_tokens: ["${{env.TOKEN}}", "{ROTATED}"]"#),
        1,
    );
    std::fs::write(env.config_file(), text).unwrap();
    eventually("the new token is accepted", async || status_with(&env, ROTATED).await == StatusCode::OK).await;
    // Named exactly: the two connection counts; the timeouts and the grace time are applied.
    let warned = crate::support::wait_for_log(&["take effect at the next restart"], Duration::from_secs(5)).await;
    assert!(
        warned.iter().any(|line| line.trim_end().ends_with("keys=admin.max_connections, server.max_connections")),
        "{warned:?}"
    );
    let state = env.proxy.as_ref().unwrap().shared.state();
    assert_eq!((state.server.max_connections, state.admin.max_connections), (1024, 64), "kept until a restart");
    assert_eq!(state.server.shutdown_grace, Duration::from_secs(2));
    assert_eq!(state.server.header_read_timeout, Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_header_read_timeout_applies_to_the_next_connections() {
    let env = TestEnv::start_from_file(with_reload_interval).await;
    reload_with(&env, "server:\n", "server:\n  header_read_timeout: 300ms\n").await;
    // A silent client is closed after the new 300ms, not the 10s the proxy started with.
    let scim = env.proxy.as_ref().unwrap().scim_addr;
    let mut silent = tokio::net::TcpStream::connect(scim).await.unwrap();
    let after = crate::support::closed_after(&mut silent, Instant::now(), Duration::from_secs(5)).await;
    assert!(after.is_some_and(|after| after < Duration::from_secs(3)), "closed after {after:?}");
    let warned = crate::support::log_lines_with(&["take effect at the next restart", "header_read_timeout"]);
    assert!(warned.is_empty(), "{warned:?}");
}

/// Sends one HTTP/1.1 request on `stream` and reads the answer's status, within 15 s.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.ok()?;
    let read = async {
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    return head.split(' ').nth(1).and_then(|s| s.parse().ok());
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_max_body_bytes_serves_a_larger_body_on_a_connection_opened_before() {
    let env = TestEnv::start_from_file(with_reload_interval).await;
    let scim = env.proxy.as_ref().unwrap().scim_addr;
    let mut open = tokio::net::TcpStream::connect(scim).await.unwrap();
    let get = format!("GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    assert_eq!(exchange(&mut open, get.as_bytes()).await, Some(200));
    reload_with(&env, "max_body_bytes: 65536", "max_body_bytes: 200000").await;
    // 100 kB: within the new limit, over the share the connection was accepted with.
    let search = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 1}"#;
    let body = format!("{search}{}", " ".repeat(100_000 - search.len()));
    let post = format!(
        "POST /scim/v2/Users/.search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(exchange(&mut open, post.as_bytes()).await, Some(200), "on the connection opened before the reload");
    let mut new = tokio::net::TcpStream::connect(scim).await.unwrap();
    assert_eq!(exchange(&mut new, post.as_bytes()).await, Some(200), "on a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_shutdown_grace_is_the_one_shutdown_waits() {
    // A legacy app that takes 30 s to answer: a request to it is in flight at shutdown.
    let asked = std::sync::Arc::new(tokio::sync::Notify::new());
    let (slow, _server) = crate::support::serve_fake(asked.clone(), |asked, _request| async move {
        asked.notify_one();
        tokio::time::sleep(Duration::from_secs(30)).await;
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow.rhai");
    std::fs::write(&script, r#"fn get_user(id) { legacy.get("/users/" + id); #{ id: id, userName: "x" } }"#).unwrap();
    let mut env = TestEnv::start_from_file(|text| {
        with_reload_interval(text)
            .replace(&repo_file("scripts/demo.rhai").display().to_string(), &script.display().to_string())
            .replace("${env.ACME_BASE_URL}", &format!("http://{slow}/api"))
    })
    .await;
    // Started with 20 s (the default); the reload makes it 1 s.
    reload_with(&env, "server:\n", "server:\n  shutdown_grace: 1s\n").await;
    let request = env.client.get(format!("{}/Users/1", env.base())).bearer_auth(TOKEN).send();
    let in_flight = tokio::spawn(request);
    asked.notified().await;
    let started = Instant::now();
    env.proxy.take().unwrap().shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?} with a grace time of 1 s");
    in_flight.abort();
}
