//! What the proxy fetches for itself — an identity provider's JWKS document, an OAuth2 token
//! for the legacy app — from servers that answer too much, redirect elsewhere, state absurd
//! lifetimes or take their time: bounded in size, never redirected, lifetimes clamped, and a
//! slow JWKS server holds up no request once keys are held.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::inbound_auth::{SigningKey, claims, jwt_section, start_with_auth};
use crate::outbound::{FakeLegacy, assert_detail, proxy_with};
use crate::support::{Reply, TestEnv, log_lines_with};

const MIB: usize = 1024 * 1024;

/// What the fake server answers every request with.
#[derive(Debug, Clone)]
enum Answer {
    /// `200` with this JSON text.
    Json(String),
    /// `200` with a JSON object `bytes` long (mostly whitespace), streamed in 64 KiB pieces:
    /// chunked when `declared` is `None`, else with that `Content-Length`.
    Huge { bytes: usize, declared: Option<usize> },
    /// This status, with `Location`.
    Redirect(u16, String),
}

/// A JWKS or token endpoint on 127.0.0.1:0 that answers as told, after `delay`, and counts
/// what it did: requests, body bytes written, answers the client cut off.
struct Remote {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    delay: Arc<Mutex<Duration>>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    requests: AtomicUsize,
    /// The most body bytes written in one answer.
    most_body_bytes: AtomicUsize,
    /// Answers whose connection the client closed before the last byte.
    cut_off: AtomicUsize,
    /// Answers written whole.
    answered: AtomicUsize,
}

impl Remote {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let stats = Arc::new(Stats::default());
        let (told, wait, counted) = (answer.clone(), delay.clone(), stats.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (told, wait, counted) = (told.clone(), wait.clone(), counted.clone());
                tokio::spawn(async move { serve(stream, told, wait, counted).await });
            }
        });
        Self { addr, answer, delay, stats }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn slow_down(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    fn answered(&self) -> usize {
        self.stats.answered.load(Ordering::SeqCst)
    }

    /// Waits until `done` answers were cut off by the client, and returns the most body bytes
    /// one of them got written before that.
    async fn cut_off(&self, done: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stats.cut_off.load(Ordering::SeqCst) < done {
            assert!(Instant::now() < deadline, "the client read the whole huge answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stats.most_body_bytes.load(Ordering::SeqCst)
    }
}

/// Reads one request's head and the body it announces; false when the client went away.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return true;
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn serve(mut stream: TcpStream, answer: Arc<Mutex<Answer>>, delay: Arc<Mutex<Duration>>, stats: Arc<Stats>) {
    if !read_request(&mut stream).await {
        return;
    }
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let (answer, delay) = (answer.lock().unwrap().clone(), *delay.lock().unwrap());
    tokio::time::sleep(delay).await;
    let head = |status: &str, extra: &str| format!("HTTP/1.1 {status}\r\nconnection: close\r\n{extra}\r\n");
    let written = match answer {
        Answer::Json(text) => {
            let extra = format!("content-type: application/json\r\ncontent-length: {}\r\n", text.len());
            stream.write_all(format!("{}{text}", head("200 OK", &extra)).as_bytes()).await.is_ok()
        }
        Answer::Redirect(status, location) => {
            let extra = format!("location: {location}\r\ncontent-length: 0\r\n");
            stream.write_all(head(&format!("{status} Elsewhere"), &extra).as_bytes()).await.is_ok()
        }
        Answer::Huge { bytes, declared } => {
            let framing = match declared {
                Some(length) => format!("content-length: {length}\r\n"),
                None => "transfer-encoding: chunked\r\n".to_owned(),
            };
            let extra = format!("content-type: application/json\r\n{framing}");
            let mut ok = stream.write_all(head("200 OK", &extra).as_bytes()).await.is_ok();
            let mut sent = 0;
            while ok && sent < bytes {
                let mut piece = vec![b' '; (64 * 1024).min(bytes - sent)];
                if sent == 0 {
                    piece[0] = b'{';
                }
                if sent + piece.len() == bytes {
                    *piece.last_mut().unwrap() = b'}';
                }
                let framed = match declared {
                    Some(_) => piece.clone(),
                    None => [format!("{:x}\r\n", piece.len()).into_bytes(), piece.clone(), b"\r\n".to_vec()].concat(),
                };
                ok = stream.write_all(&framed).await.is_ok();
                if ok {
                    sent += piece.len();
                }
            }
            if ok && declared.is_none() {
                ok = stream.write_all(b"0\r\n\r\n").await.is_ok();
            }
            stats.most_body_bytes.fetch_max(sent, Ordering::SeqCst);
            ok
        }
    };
    if written {
        let _ = stream.shutdown().await;
        stats.answered.fetch_add(1, Ordering::SeqCst);
    } else {
        stats.cut_off.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// JWKS

/// `GET /Users` with `token`, timed.
async fn timed_bearer(env: &TestEnv, token: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let response = env.client.get(format!("{}/Users", env.base())).bearer_auth(token).send().await.unwrap();
    let reply = Reply::read(response).await;
    (reply, started.elapsed())
}

fn jwks(keys: &[serde_json::Value]) -> Answer {
    Answer::Json(json!({ "keys": keys }).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_a_jwks_document_over_the_limit_is_cut_off_and_the_token_refused_saying_why() {
    let key = SigningKey::es256();
    let token = key.sign(&claims(), Some("key-1"));
    // Streamed without a length, then with a truthful one: the proxy stops at 256 KiB, or
    // before the body at a Content-Length over it, and closes the connection.
    for declared in [None, Some(64 * MIB)] {
        let server = Remote::start(Answer::Huge { bytes: 64 * MIB, declared }).await;
        let env = start_with_auth(&jwt_section(&format!("        jwks_url: \"{}\"\n", server.url("/keys")))).await;
        let (reply, took) = timed_bearer(&env, &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("the JWKS could not be fetched: the answer is larger than 262144 bytes"),
            "{declared:?}: {detail}"
        );
        assert!(took < Duration::from_secs(3), "{declared:?}: refused after {took:?}");
        let sent = server.cut_off(1).await;
        assert!(sent < 16 * MIB, "{declared:?}: {sent} bytes of 64 MiB were sent before the proxy hung up");
        assert_eq!(server.answered(), 0);
        assert!(!log_lines_with(&["jwks fetch failed", "larger than 262144 bytes"]).is_empty());
    }
    // A Content-Length smaller than what follows: only that much is read, and it is no JWKS.
    let server = Remote::start(Answer::Huge { bytes: 64 * MIB, declared: Some(100) }).await;
    let env = start_with_auth(&jwt_section(&format!("        jwks_url: \"{}\"\n", server.url("/keys")))).await;
    let (reply, took) = timed_bearer(&env, &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("not a JWKS document"), "{}", reply.text);
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_an_oversized_jwks_refresh_fails_and_the_keys_held_keep_serving() {
    let key = SigningKey::es256();
    let server = Remote::start(jwks(&[key.jwk("key-1")])).await;
    let section = format!("        jwks_url: \"{}\"\n        jwks_max_age: 1s\n", server.url("/keys"));
    let env = start_with_auth(&jwt_section(&section)).await;
    let token = key.sign(&claims(), Some("key-1"));
    assert_eq!(timed_bearer(&env, &token).await.0.status, StatusCode::OK);

    server.answer(Answer::Huge { bytes: 64 * MIB, declared: None });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Stale keys: the refresh is cut off, and they go on serving.
    assert_eq!(timed_bearer(&env, &token).await.0.status, StatusCode::OK);
    let sent = server.cut_off(1).await;
    assert!(sent < 16 * MIB, "{sent} bytes of 64 MiB were sent before the proxy hung up");
    assert_eq!(timed_bearer(&env, &token).await.0.status, StatusCode::OK);
    // A key id not held is refused with the reason, and does not fetch again within the minute.
    let stranger = SigningKey::es256().sign(&claims(), Some("key-2"));
    let (reply, _) = timed_bearer(&env, &stranger).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body["detail"].as_str().unwrap().contains("larger than 262144 bytes"), "{}", reply.text);
    assert_eq!(server.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_a_jwks_url_redirecting_elsewhere_is_not_followed() {
    let key = SigningKey::es256();
    let elsewhere = Remote::start(jwks(&[key.jwk("key-1")])).await;
    let server = Remote::start(Answer::Redirect(302, elsewhere.url("/keys"))).await;
    let env = start_with_auth(&jwt_section(&format!("        jwks_url: \"{}\"\n", server.url("/keys")))).await;
    let (reply, _) = timed_bearer(&env, &key.sign(&claims(), Some("key-1"))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "the keys of the host redirected to were taken");
    assert!(reply.body["detail"].as_str().unwrap().contains("302: redirects are not followed"), "{}", reply.text);
    assert_eq!((server.requests(), elsewhere.requests()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_stale_jwks_keys_serve_while_a_slow_server_is_asked_again_in_the_background() {
    let (first, second) = (SigningKey::es256(), SigningKey::es256());
    let server = Remote::start(jwks(&[first.jwk("key-1")])).await;
    let section = format!("        jwks_url: \"{}\"\n        jwks_max_age: 1s\n", server.url("/keys"));
    let env = start_with_auth(&jwt_section(&section)).await;
    let token = first.sign(&claims(), Some("key-1"));
    assert_eq!(timed_bearer(&env, &token).await.0.status, StatusCode::OK, "the first fetch is waited for");

    // The identity provider adds a key and becomes slow: 5 s for every answer from now on.
    server.answer(jwks(&[first.jwk("key-1"), second.jwk("key-2")]));
    server.slow_down(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    for _ in 0..5 {
        let (reply, took) = timed_bearer(&env, &token).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(took < Duration::from_secs(2), "a request waited {took:?} for the slow JWKS server");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(server.requests(), 2, "one refresh under way, not one per request");

    // Once the server has answered, the new key is accepted without another fetch.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.answered() < 2 {
        assert!(Instant::now() < deadline, "the slow answer never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (reply, _) = timed_bearer(&env, &second.sign(&claims(), Some("key-2"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(server.requests(), 2);
}

// ---------------------------------------------------------------------------------------
// OAuth2 token endpoint

/// The legacy lines for a fake legacy app that takes any token, and `token` as its endpoint.
fn oauth2_lines(legacy: &crate::outbound::Running, token_url: &str) -> String {
    format!(
        "      base_url: \"http://{}/api\"\n      timeout: 5s\n      auth:\n        oauth2:\n          token_url: \"{token_url}\"\n          client_id: proxy-client\n          client_secret: remote-answers-secret\n",
        legacy.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_a_token_lifetime_of_1e20_or_u64_max_is_clamped_and_the_token_cached() {
    // (`expires_in` as sent, token requests for three SCIM requests)
    let cases = [
        ("1e20", 1),
        ("18446744073709551615", 1),
        ("\"99999999999999999999999\"", 1),
        ("3599.5", 1),
        ("\"3600\"", 1),
        // Expired on arrival: serves the call it was fetched for.
        ("-5", 3),
        // Not a number: kept until the legacy app refuses it.
        ("\"soon\"", 1),
    ];
    for (expires_in, fetches) in cases {
        let answer = format!(r#"{{"access_token": "a-token", "token_type": "Bearer", "expires_in": {expires_in}}}"#);
        let server = Remote::start(Answer::Json(answer)).await;
        let legacy = FakeLegacy::new().start().await;
        let env = proxy_with(&oauth2_lines(&legacy, &server.url("/oauth/token"))).await;
        for id in 1..=3 {
            let reply = env.get(&format!("/Users/{id}")).await;
            assert_eq!(reply.status, StatusCode::OK, "expires_in {expires_in}: {}", reply.text);
        }
        assert_eq!(server.requests(), fetches, "expires_in {expires_in}");
        assert_eq!(legacy.authorizations().len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_a_token_answer_over_the_limit_is_cut_off_and_the_request_gets_502() {
    let server = Remote::start(Answer::Huge { bytes: 64 * MIB, declared: None }).await;
    let legacy = FakeLegacy::new().start().await;
    let env = proxy_with(&oauth2_lines(&legacy, &server.url("/oauth/token"))).await;
    for (done, declared) in [(1, None), (2, Some(64 * MIB))] {
        server.answer(Answer::Huge { bytes: 64 * MIB, declared });
        let started = Instant::now();
        let reply = env.get("/Users/1").await;
        assert_detail(&reply, 502, "cannot get an access token");
        assert!(started.elapsed() < Duration::from_secs(3), "{declared:?}: {:?}", started.elapsed());
        let sent = server.cut_off(done).await;
        assert!(sent < 16 * MIB, "{declared:?}: {sent} bytes of 64 MiB were sent before the proxy hung up");
    }
    let host = format!("token_host=\"{}\"", server.addr);
    let lines = log_lines_with(&["cannot get an access token for the legacy app", &host, "larger than 65536 bytes"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(legacy.authorizations().is_empty(), "no call without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_a_token_endpoint_redirect_is_not_followed() {
    let elsewhere = Remote::start(Answer::Json(r#"{"access_token": "t", "token_type": "Bearer"}"#.into())).await;
    let server = Remote::start(Answer::Redirect(307, elsewhere.url("/oauth/token"))).await;
    let legacy = FakeLegacy::new().start().await;
    let env = proxy_with(&oauth2_lines(&legacy, &server.url("/oauth/token"))).await;
    assert_detail(&env.get("/Users/1").await, 502, "cannot get an access token");
    assert_eq!((server.requests(), elsewhere.requests()), (1, 0), "the client secret went elsewhere");
    let lines = log_lines_with(&["cannot get an access token", &server.addr.to_string()]);
    assert!(lines.iter().any(|l| l.contains("307: redirects are not followed")), "{lines:?}");
}
