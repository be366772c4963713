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
