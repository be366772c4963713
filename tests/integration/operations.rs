//! Operational behaviour: request ids, forwarded headers, HTTP/2, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::{TOKEN, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_made() {
    let env = TestEnv::start().await;
    let url = format!("{}/Users", env.base());
    let given = env.client.get(&url).bearer_auth(TOKEN).header("x-request-id", "req-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-123");
    let made = env.client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert!(made.headers()["x-request-id"].len() >= 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_follow_forwarded_headers() {
    let env = TestEnv::start().await;
    let id = env.create_user("forwarded").await;
    let reply = env
        .client
        .get(format!("{}/Users/{id}", env.base()))
        .bearer_auth(TOKEN)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "scim.example.com")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    assert_eq!(body["meta"]["location"], format!("https://scim.example.com/scim/v2/Users/{id}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_tls_is_served() {
    let env = TestEnv::start().await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let reply = client.get(format!("{}/ServiceProviderConfig", env.base())).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    assert_eq!(reply.status(), StatusCode::OK);
    // The same connection again, one request after another, then eight at once.
    for count in 1..=3 {
        let reply = client.get(format!("{}/Users?count={count}", env.base())).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!((reply.version(), reply.status()), (reqwest::Version::HTTP_2, StatusCode::OK));
    }
    let at_once: Vec<_> = (1..=8)
        .map(|count| tokio::spawn(client.get(format!("{}/Users?count={count}", env.base())).bearer_auth(TOKEN).send()))
        .collect();
    for reply in at_once {
        let reply = reply.await.unwrap().unwrap();
        assert_eq!((reply.version(), reply.status()), (reqwest::Version::HTTP_2, StatusCode::OK));
    }
}

/// A legacy app that answers every request after `delay`, with one fixed user; `arrived` is
/// notified when a request has been read.
async fn slow_legacy(delay: Duration, arrived: Arc<Notify>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                arrived.notify_one();
                tokio::time::sleep(delay).await;
                let body = r#"{"id": 1, "login": "slow", "enabled": true}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/api/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let arrived = Arc::new(Notify::new());
    let legacy = slow_legacy(Duration::from_millis(300), arrived.clone()).await;
    let env = TestEnv::start_with(|text| {
        text.replace("base_url: \"${env.ACME_BASE_URL}\"", &format!("base_url: \"{legacy}\""))
    })
    .await;
    let url = format!("{}/Users/1?attributes=userName", env.base());
    let client = env.client.clone();
    let in_flight = tokio::spawn(async move { client.get(url).bearer_auth(TOKEN).send().await.map(|r| r.status()) });
    // Shut down once the request is inside the proxy, waiting on the legacy app.
    arrived.notified().await;
    let mut env = env;
    env.proxy.take().unwrap().shutdown().await;
    let status = in_flight.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "the request in flight completed during the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shutdown_delay_readyz_fails_first_while_requests_are_still_served() {
    let mut env = TestEnv::start_with(|text| text.replacen("server:\n", "server:\n  shutdown_delay: 600ms\n", 1)).await;
    let (base, admin) = (env.base(), env.admin());
    let running = env.proxy.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let ready = env.client.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let users = env.client.get(format!("{base}/Users")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(users.status(), StatusCode::OK, "still served during the delay");
    shutdown.await.unwrap();
    assert!(env.client.get(format!("{base}/Users")).bearer_auth(TOKEN).send().await.is_err(), "closed after it");
}

/// A legacy API with no uniqueness at all: every POST makes a new account (slowly, so that
/// concurrent creates overlap), and the accounts made are kept for the test to count.
async fn lax_legacy_api() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt as _;
    let accounts: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let store = accounts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let bytes = body.collect().await.unwrap().to_bytes();
                        let (status, answer) = if parts.method == hyper::Method::POST {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            let name = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["name"]
                                .as_str()
                                .unwrap()
                                .to_owned();
                            let mut accounts = store.lock().unwrap();
                            accounts.push(name.clone());
                            (201, serde_json::json!({"id": accounts.len(), "name": name}))
                        } else {
                            let id: usize = parts.uri.path().rsplit('/').next().unwrap().parse().unwrap_or(0);
                            match store.lock().unwrap().get(id.wrapping_sub(1)) {
                                Some(name) => (200, serde_json::json!({"id": id, "name": name})),
                                None => (404, serde_json::json!({"error": "no such account"})),
                            }
                        };
                        let mut response =
                            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(answer.to_string())));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (url, accounts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_identical_creates_make_one_account() {
    let (url, accounts) = lax_legacy_api().await;
    let script = r#"
fn create_user(user) {
    let r = legacy.post("/users", #{ name: user.userName });
    if r.status != 201 { throw #{ status: 502, detail: "create failed" }; }
    #{ id: r.json.id.to_string(), userName: r.json.name, active: true }
}
fn get_user(id) {
    let r = legacy.get(["users", id]);
    if r.status == 404 { return (); }
    #{ id: r.json.id.to_string(), userName: r.json.name, active: true }
}
fn list_users(query) { [] }
"#;
    let env = TestEnv::start_script(Some(script), |text| text.replacen("${env.ACME_BASE_URL}", &url, 2)).await;
    let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "retried"});
    let mut replies = Vec::new();
    for _ in 0..20 {
        let (client, url, body) = (env.client.clone(), format!("{}/Users", env.base()), body.to_string());
        replies.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/scim+json")
                .body(body)
                .send()
                .await
                .unwrap();
            crate::support::Reply::read(response).await
        }));
    }
    let mut statuses = Vec::new();
    for reply in replies {
        let reply = reply.await.unwrap();
        if reply.status == StatusCode::CONFLICT {
            reply.assert_error(409, Some("uniqueness"));
        }
        statuses.push(reply.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 19, "{statuses:?}");
    assert_eq!(*accounts.lock().unwrap(), vec!["retried".to_owned()], "one legacy account");
    // A different name is not held up, and makes its own account.
    let other = env
        .post(
            "/Users",
            serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "other"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text);
    assert_eq!(accounts.lock().unwrap().len(), 2);
}

/// A legacy API that answers every request after `delay`, with `{"id": 1, "name": "slow"}`.
pub(crate) async fn slow_legacy_api(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    let body = r#"{"id": 1, "name": "slow"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_script_slots_and_the_queue_requests_are_refused_at_once() {
    let url = slow_legacy_api(Duration::from_millis(600)).await;
    let script = r#"
fn get_user(id) {
    let r = legacy.get(["users", id]);
    #{ id: id, userName: r.json.name, active: true }
}
fn list_users(query) { [] }
"#;
    let env = TestEnv::start_script(Some(script), |text| {
        text.replacen("${env.ACME_BASE_URL}", &url, 2).replacen(
            "    request_timeout: 10s\n",
            "    request_timeout: 10s\n    max_concurrent_scripts: 1\n    max_queued_requests: 1\n",
            1,
        )
    })
    .await;
    let started = std::time::Instant::now();
    let mut replies = Vec::new();
    for i in 0..4 {
        let (client, url) = (env.client.clone(), format!("{}/Users/{i}", env.base()));
        replies.push(tokio::spawn(async move {
            let reply = crate::support::Reply::read(client.get(url).bearer_auth(TOKEN).send().await.unwrap()).await;
            (reply, started.elapsed())
        }));
        // In order: the first takes the slot, the second the queue.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut served = 0;
    for reply in replies {
        let (reply, elapsed) = reply.await.unwrap();
        if reply.status == StatusCode::OK {
            served += 1;
        } else {
            reply.assert_error(503, None);
            assert_eq!(reply.header("retry-after"), Some("1"));
            assert!(elapsed < Duration::from_millis(500), "refused at once, not after waiting: {elapsed:?}");
        }
    }
    assert_eq!(served, 2, "one running and one queued are served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_connections_wait_to_be_accepted() {
    let env = TestEnv::start_with(|text| text.replacen("server:\n", "server:\n  max_connections: 2\n", 1)).await;
    let addr = env.base().trim_start_matches("http://").split('/').next().unwrap().to_owned();
    // Two connections with a request in flight (its body still coming) hold both slots: an
    // idle connection would be closed to make room, a busy one is not.
    let mut busy = Vec::new();
    for _ in 0..2 {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/scim+json\r\ncontent-length: 100\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(700)).build().unwrap();
    let url = format!("{}/Users", env.base());
    assert!(client.get(&url).bearer_auth(TOKEN).send().await.is_err(), "not served while both slots are held");
    let (first, second) = (busy.remove(0), busy.remove(0));
    drop(first);
    drop(second);
    let served = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "served once a slot is free");
}
