//! `/requests` on the admin listener: each app's last requests, only for the admin token, redacted and bounded.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{self, OTHER_TOKEN, Reply, TOKEN, TestEnv, user};

const ADMIN_TOKEN: &str = "admin-view-token-0123456789";

/// The test configuration with `admin.token` set and `recent` requests kept per app.
fn keeping(recent: usize) -> impl FnOnce(String) -> String {
    move |text| {
        text.replacen(
            "admin_listen: 127.0.0.1:0\n",
            &format!("admin_listen: 127.0.0.1:0\nadmin:\n  token: \"{ADMIN_TOKEN}\"\n  recent_requests: {recent}\n"),
            1,
        )
    }
}

/// `GET /requests` on the admin listener with an `Authorization` header (or none) and an `Accept`.
async fn requests(env: &TestEnv, authorization: Option<&str>, accept: &str) -> Reply {
    let mut request = env.client.get(format!("{}/requests", env.admin())).header("accept", accept);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// The entries `/requests` lists, newest first, as the admin token sees them.
async fn entries(env: &TestEnv) -> Vec<Value> {
    let reply = requests(env, Some(&format!("Bearer {ADMIN_TOKEN}")), "application/json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.body["requests"].as_array().unwrap().clone()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_token_sees_the_requests_and_probes_stay_open() {
    let env = TestEnv::start_with(keeping(50)).await;
    env.create_user("seen-only-with-the-token").await;
    let stranger = env.send_as("wrong-token-0123456789", Method::GET, &format!("{}/Users", env.base()), None).await;
    stranger.assert_error(401, None);

    let refused = [
        None,
        Some("Bearer wrong-admin-token-0123456789".to_owned()),
        Some(format!("Bearer {TOKEN}")),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(basic(ADMIN_TOKEN, "")),
        Some(basic("admin", "wrong-admin-token-0123456789")),
    ];
    for authorization in &refused {
        for accept in ["application/json", "text/html"] {
            let reply = requests(&env, authorization.as_deref(), accept).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}: {}", reply.text);
            assert_eq!(reply.body, json!({"error": "missing or invalid admin token"}), "{authorization:?}");
            assert!(!reply.text.contains("seen-only-with-the-token"));
            let challenges: Vec<_> = reply.headers.get_all("www-authenticate").iter().collect();
            assert!(challenges.iter().any(|c| c.to_str().unwrap().starts_with("Basic realm=")), "{challenges:?}");
        }
    }

    let listed = entries(&env).await;
    let texts = Value::Array(listed.clone()).to_string();
    assert!(texts.contains("seen-only-with-the-token"), "{texts}");
    // A person in a browser gives the token as the password of HTTP Basic, under any name.
    let in_browser = requests(&env, Some(&basic("", ADMIN_TOKEN)), "text/html").await;
    assert_eq!(in_browser.status, StatusCode::OK, "{}", in_browser.text);
    assert!(in_browser.text.contains("seen-only-with-the-token"));
    // A request refused for its token is listed too: the first thing to check when an IdP fails.
    assert_eq!(listed[0]["status"], 401, "{}", listed[0]);
    assert_eq!(listed[0]["request_body"], Value::Null);

    for probe in ["/healthz", "/readyz", "/metrics"] {
        let response = env.client.get(format!("{}{probe}", env.admin())).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe} without a token");
    }
    assert!(!support::logs().contains(ADMIN_TOKEN), "the admin token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_off_without_an_admin_token_and_when_none_are_kept() {
    let env = TestEnv::start().await;
    env.create_user("kept-by-nobody").await;
    for authorization in [None, Some(format!("Bearer {ADMIN_TOKEN}")), Some(format!("Bearer {TOKEN}"))] {
        let reply = requests(&env, authorization.as_deref(), "application/json").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
        assert!(reply.body["error"].as_str().unwrap().contains("set admin.token"), "{}", reply.text);
        assert!(!reply.text.contains("kept-by-nobody"));
    }
    assert!(env.proxy.as_ref().unwrap().shared.recent.newest_first().is_empty(), "kept without a token");

    let none_kept = TestEnv::start_with(keeping(0)).await;
    none_kept.create_user("kept-by-nobody-either").await;
    let refused = requests(&none_kept, None, "application/json").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    let off = requests(&none_kept, Some(&format!("Bearer {ADMIN_TOKEN}")), "application/json").await;
    assert_eq!(off.status, StatusCode::NOT_FOUND, "{}", off.text);
    assert!(off.body["error"].as_str().unwrap().contains("admin.recent_requests is 0"), "{}", off.text);
    assert!(none_kept.proxy.as_ref().unwrap().shared.recent.newest_first().is_empty(), "kept with N = 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show_in_json_or_html() {
    let env = TestEnv::start_with(keeping(50)).await;
    let mut body = user("with-a-password");
    body["password"] = json!("Hunter2-secret");
    let created = env.post("/Users", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "password", "value": "Correct-Horse-9"}]
    });
    let patched = env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert!(patched.status.is_success(), "{}", patched.text);

    let listed = entries(&env).await;
    let html = requests(&env, Some(&format!("Bearer {ADMIN_TOKEN}")), "text/html").await.text;
    for shown in [Value::Array(listed.clone()).to_string(), html] {
        assert!(!shown.contains("Hunter2-secret") && !shown.contains("Correct-Horse-9"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
    let create: Value = serde_json::from_str(listed[1]["request_body"].as_str().unwrap()).unwrap();
    assert_eq!(create["password"], "[redacted]");
    assert_eq!(create["userName"], "with-a-password");
    let patch: Value = serde_json::from_str(listed[0]["request_body"].as_str().unwrap()).unwrap();
    assert_eq!(patch["Operations"][0]["value"], "[redacted]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_keeps_its_last_n() {
    let env = TestEnv::start_with(keeping(3)).await;
    for count in 1..=5 {
        assert_eq!(env.get(&format!("/Users?count={count}")).await.status, StatusCode::OK);
    }
    let other = format!("http://{}/other/scim/Users?count=9", env.proxy.as_ref().unwrap().scim_addr);
    assert_eq!(env.send_as(OTHER_TOKEN, Method::GET, &other, None).await.status, StatusCode::OK);

    let listed = entries(&env).await;
    let seen: Vec<(&str, &str)> =
        listed.iter().map(|e| (e["app"].as_str().unwrap(), e["path"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("other", "/other/scim/Users?count=9"),
            ("acme", "/scim/v2/Users?count=5"),
            ("acme", "/scim/v2/Users?count=4"),
            ("acme", "/scim/v2/Users?count=3"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scim_listener_does_not_serve_requests() {
    let env = TestEnv::start_with(keeping(50)).await;
    env.create_user("not-on-the-scim-port").await;
    let scim_addr = env.proxy.as_ref().unwrap().scim_addr;
    for token in [ADMIN_TOKEN, TOKEN] {
        let reply = env.send_as(token, Method::GET, &format!("http://{scim_addr}/requests"), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
        assert!(!reply.text.contains("not-on-the-scim-port"), "{}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_escapes_what_clients_send_under_a_strict_policy() {
    let env = TestEnv::start_with(keeping(50)).await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let reply = env.post("/Users", user(hostile)).await;
    assert!(reply.status.is_success() || reply.status.is_client_error(), "{}", reply.text);
    let page = requests(&env, Some(&format!("Bearer {ADMIN_TOKEN}")), "text/html,application/xhtml+xml;q=0.9").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.starts_with("default-src 'none'; style-src 'nonce-"), "{policy}");
    let nonce = policy.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(page.text.contains(&format!("<style nonce=\"{nonce}\">")), "the style carries the policy's nonce");
    assert!(!page.text.contains("<script") && !page.text.contains("<img"), "{}", page.text);
    assert!(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(page.text.contains("<th>legacy calls</th>"), "{}", page.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_show_the_error_and_each_legacy_call_with_its_status() {
    let env = TestEnv::start_with(keeping(50)).await;
    let id = env.create_user("listed-with-calls").await;
    let found = env.get(&format!("/Users/{id}")).await;
    assert_eq!(found.status, StatusCode::OK);
    env.get("/Users/999999").await.assert_error(404, None);
    let refused = env.post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]})).await;
    refused.assert_error(400, Some("invalidValue"));

    let listed = entries(&env).await;
    let (invalid, missing, read) = (&listed[0], &listed[1], &listed[2]);
    assert_eq!(invalid["status"], 400);
    assert_eq!(invalid["operation"], "create_user");
    assert_eq!(invalid["error"]["scimType"], "invalidValue");
    assert_eq!(invalid["error"]["detail"], refused.body["detail"]);
    assert_eq!(invalid["legacy_calls"], json!([]), "refused before the mapping ran");

    assert_eq!(missing["status"], 404);
    assert_eq!(missing["error"]["detail"], env.get("/Users/999999").await.body["detail"]);
    let call = &missing["legacy_calls"][0];
    assert_eq!((call["method"].as_str(), call["status"].as_u64()), (Some("GET"), Some(404)), "{missing}");

    assert_eq!(read["request_id"], found.header("x-request-id").unwrap());
    assert_eq!(read["app"], "acme");
    assert_eq!(read["method"], "GET");
    assert_eq!(read["path"], format!("/scim/v2/Users/{id}"));
    assert_eq!(read["status"], 200);
    assert_eq!(read["error"], Value::Null);
    assert_eq!(read["ignored_attributes"], json!([]));
    let calls = read["legacy_calls"].as_array().unwrap();
    assert!(!calls.is_empty() && calls.len() as u64 == read["legacy_calls_total"].as_u64().unwrap(), "{read}");
    assert!(calls[0]["path"].as_str().unwrap().contains(&id), "{read}");
    assert_eq!(calls[0]["status"], 200);
    assert!(calls.iter().all(|c| c["ms"].as_f64().is_some_and(|ms| ms >= 0.0)), "{read}");
    assert!(read["time"].as_str().unwrap().ends_with('Z'), "{read}");
    assert!(read["latency_ms"].as_f64().unwrap() >= read["legacy_ms"].as_f64().unwrap(), "{read}");
}

/// The page as headless Chromium renders it (`--dump-dom`): the DOM after parsing, as a person's
/// browser would hold it.
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let output = std::process::Command::new(&binary)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary} (apt-get install chromium, or set CHROMIUM): {e}"));
    assert!(output.status.success(), "{binary}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Needs Chromium (`apt-get install chromium`): `cargo test --test integration admin_requests:: -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs headless Chromium"]
async fn a_browser_shows_the_page_with_the_token_and_nothing_without_it() {
    let env = TestEnv::start_with(keeping(50)).await;
    let mut body = user("<script>document.title='owned'</script>");
    body["password"] = json!("S3cret!pass");
    let reply = env.post("/Users", body).await;
    assert!(reply.status.is_success() || reply.status.is_client_error(), "{}", reply.text);
    let admin = env.proxy.as_ref().unwrap().admin_addr;

    let page = tokio::task::spawn_blocking(move || chromium_dom(&format!("http://:{ADMIN_TOKEN}@{admin}/requests")))
        .await
        .unwrap();
    assert!(page.contains("<title>scim-proxy: recent requests</title>"), "{page}");
    assert!(page.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"), "{page}");
    assert!(!page.contains("<script") && !page.contains("owned</title>"), "a value became markup: {page}");
    assert!(page.contains("[redacted]") && !page.contains("S3cret!pass"), "{page}");

    let refused = tokio::task::spawn_blocking(move || chromium_dom(&format!("http://{admin}/requests"))).await.unwrap();
    // Headless Chromium cannot answer the Basic challenge: it shows nothing at all.
    assert!(!refused.contains("document.title") && !refused.contains("recent requests"), "{refused}");
}

/// `scim-proxy demo` with the repository's configuration, until it has printed its `Try:` line.
fn start_demo(admin_token: Option<&str>) -> support::DemoProcess {
    let mut command = support::demo_command(&support::repo_file("."));
    command.arg("--config").arg(support::repo_file("proxy.yaml"));
    if let Some(token) = admin_token {
        command.env("SCIM_ADMIN_TOKEN", token);
    }
    support::DemoProcess::start(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_takes_the_admin_token_from_the_environment_or_makes_one_up_and_prints_it() {
    for given in [Some(ADMIN_TOKEN), None] {
        let demo = tokio::task::spawn_blocking(move || start_demo(given)).await.unwrap();
        let printed = |prefix: &str| demo.printed(prefix).map(str::to_owned);
        let token = printed("Admin token: ").unwrap_or_else(|| panic!("no admin token printed: {:?}", demo.lines));
        match given {
            Some(given) => assert_eq!(token, given),
            None => assert!(token.starts_with("admin-") && token.len() >= 16, "{token}"),
        }
        let url = printed("Recent requests: ").unwrap();
        let url = url.split(' ').next().unwrap().to_owned();
        let client = reqwest::Client::new();
        let shown = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(shown.status(), StatusCode::OK);
        let body: Value = shown.json().await.unwrap();
        assert_eq!(body["recent_requests"], 200, "{body}");
        assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        drop(demo);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_smaller_size_at_once_and_a_removed_token_forgets_everything() {
    let env = TestEnv::start_from_file(keeping(10)).await;
    for count in 1..=3 {
        assert_eq!(env.get(&format!("/Users?count={count}")).await.status, StatusCode::OK);
    }
    assert_eq!(entries(&env).await.len(), 3);
    let shared = env.proxy.as_ref().unwrap().shared.clone();
    let file = env.config_file();
    let text = std::fs::read_to_string(&file).unwrap();

    std::fs::write(&file, text.replacen("recent_requests: 10", "recent_requests: 1", 1)).unwrap();
    assert_eq!(scim_proxy::runtime::reload_config(&shared).await, scim_proxy::runtime::Reloaded::Applied);
    let kept = entries(&env).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["path"], "/scim/v2/Users?count=3");

    std::fs::write(&file, text.replacen(&format!("  token: \"{ADMIN_TOKEN}\"\n"), "", 1)).unwrap();
    assert_eq!(scim_proxy::runtime::reload_config(&shared).await, scim_proxy::runtime::Reloaded::Applied);
    let off = requests(&env, Some(&format!("Bearer {ADMIN_TOKEN}")), "application/json").await;
    assert_eq!(off.status, StatusCode::NOT_FOUND, "{}", off.text);
    assert!(shared.recent.newest_first().is_empty(), "entries kept after the token was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_call_that_got_no_answer_is_listed_with_its_fault() {
    // Port 9 on localhost refuses connections.
    let env =
        TestEnv::start_with(|text| keeping(50)(text.replacen("${env.ACME_BASE_URL}", "http://127.0.0.1:9/api", 1)))
            .await;
    let reply = env.get("/Users/1").await;
    assert_eq!(reply.status.as_u16(), 503, "{}", reply.text);
    let listed = entries(&env).await;
    let call = &listed[0]["legacy_calls"][0];
    assert_eq!((call["method"].as_str(), call["path"].as_str()), (Some("GET"), Some("/users/1")), "{}", listed[0]);
    assert_eq!((call["status"].clone(), call["fault"].as_str()), (Value::Null, Some("connect")), "{}", listed[0]);
    assert_eq!(listed[0]["status"], 503);
    assert_eq!(listed[0]["error"]["detail"], reply.body["detail"]);
}
