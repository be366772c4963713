//! Hostile input: oversized and malformed bodies, huge filters and PATCH messages, header and
//! path injection into legacy calls, slow clients and request smuggling. Each gets its precise
//! answer, quickly, and normal requests are served right after.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{RawLegacy, Reply, TOKEN, TestEnv, Traffic, http_answer, user, wait_for_log};

/// An answer read off a socket: status, head (status line and headers) and body.
struct RawReply {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one HTTP/1.1 answer (with a Content-Length body) from a socket, within 5 s.
async fn read_reply(stream: &mut TcpStream) -> Option<RawReply> {
    let read = async {
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if received.len() >= end + 4 + length {
                    let body = serde_json::from_slice(&received[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    return Some(RawReply { status, head, body });
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.unwrap_or(None)
}

/// Everything the server sends on a connection until it closes it (within 5 s).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

fn scim_addr(env: &TestEnv) -> SocketAddr {
    env.proxy.as_ref().unwrap().scim_addr
}

/// A script that reads users by id through `legacy.get(["users", id])`, and for ids starting
/// with `hdr-` passes the id on in a header; lists are empty.
const PASS_ON: &str = r#"
fn get_user(id) {
    if id.starts_with("hdr-") {
        legacy.request(#{ method: "GET", path: "/users", headers: #{ "X-Trace": id } }); // LINE:header
        return ();
    }
    let response = legacy.get(["users", id]);
    if response.status == 200 { #{ id: id, userName: `u${id}`, active: true } } else { () }
}
fn list_users(query) { [] }
fn create_user(user) { legacy.post("/users", user); user.id = "1"; user }
"#;

/// A proxy running [`PASS_ON`] in front of a raw legacy app that answers 404 to everything.
async fn pass_on_env() -> (TestEnv, RawLegacy) {
    let legacy = RawLegacy::start(|_| http_answer(404, &[("content-type", "application/json")], "{}")).await;
    let base = format!("base_url: \"{}/api\"", legacy.url());
    let env =
        TestEnv::start_script(Some(PASS_ON), |text| text.replace("base_url: \"${env.ACME_BASE_URL}\"", &base)).await;
    (env, legacy)
}

/// A normal request right after: the listing answers 200.
async fn still_serving(env: &TestEnv) {
    let reply = env.get("/Users?count=1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let env = TestEnv::start().await;
    let mut stream = TcpStream::connect(scim_addr(&env)).await.unwrap();
    // 1 GB announced, nothing sent: the answer comes without the body.
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/scim+json\r\ncontent-length: 1000000000\r\n\r\n"
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await.expect("an answer before the body");
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert_eq!(reply.body["status"], "413");
    assert!(reply.body["scimType"].is_null(), "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("65536"), "{}", reply.body);
    // The body is never read: the connection ends with the answer, and the answer says so.
    assert!(reply.head.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{}", reply.head);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_chunked_body_growing_past_the_limit_is_cut_off() {
    let env = TestEnv::start().await;
    let stream = TcpStream::connect(scim_addr(&env)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/scim+json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sent.clone();
    // Up to 100 MB, 4 KiB at a time, paced so that the kernel's buffers do not swallow it
    // all before the server has had a chance to answer.
    let feeder = tokio::spawn(async move {
        let chunk = format!("1000\r\n{}\r\n", " ".repeat(4096));
        for _ in 0..25_600 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            counted.fetch_add(4096, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let sent_when_answered = sent.load(std::sync::atomic::Ordering::SeqCst);
    feeder.abort();
    assert!(answered.is_ok(), "no answer while the body kept coming");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{text}");
    assert!(sent_when_answered < 2 * 1024 * 1024, "answered only after {sent_when_answered} bytes");
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_nested_a_hundred_thousand_deep_is_invalid_syntax() {
    let env = TestEnv::start_with(|text| text.replace("max_body_bytes: 65536", "max_body_bytes: 1048576")).await;
    let deep = format!("{{\"userName\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    for (method, path) in [(Method::POST, "/Users"), (Method::PATCH, "/Users/1"), (Method::POST, "/Users/.search")] {
        let started = Instant::now();
        let request = env.client.request(method, format!("{}{path}", env.base())).bearer_auth(TOKEN);
        let request = request.header("content-type", "application/scim+json").body(deep.clone());
        let reply = Reply::read(request.send().await.unwrap()).await;
        reply.assert_error(400, Some("invalidSyntax"));
        assert!(reply.body["detail"].as_str().unwrap().contains("recursion limit"), "{}", reply.text);
        assert!(started.elapsed() < Duration::from_secs(1), "{path}: {:?}", started.elapsed());
    }
    assert_eq!(env.legacy.store().user_count(), 0);
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_body_that_is_not_utf8_is_invalid_syntax() {
    let env = TestEnv::start().await;
    let bodies: [&[u8]; 3] =
        [b"{\"userName\": \"\xff\xfe\"}", b"\xef\xbb\xbf{\"userName\": \"bom\"}", b"{\"userName\": \"\xed\xa0\x80\"}"];
    for body in bodies {
        let request = env.client.post(format!("{}/Users", env.base())).bearer_auth(TOKEN);
        let request = request.header("content-type", "application/scim+json").body(body.to_vec());
        Reply::read(request.send().await.unwrap()).await.assert_error(400, Some("invalidSyntax"));
    }
    assert_eq!(env.legacy.store().user_count(), 0);
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_filter_over_the_length_limit_is_invalid_filter() {
    let env = TestEnv::start().await;
    let long = format!("userName eq \"{}\"", "a".repeat(5000));
    let started = Instant::now();
    let query = url::form_urlencoded::byte_serialize(long.as_bytes()).collect::<String>();
    let reply = env.get(&format!("/Users?filter={query}")).await;
    reply.assert_error(400, Some("invalidFilter"));
    assert!(reply.body["detail"].as_str().unwrap().contains("longer than 4096"), "{}", reply.text);
    let search = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": long });
    env.post("/Users/.search", search).await.assert_error(400, Some("invalidFilter"));
    // Deeply nested parentheses within the length limit are refused too, without recursion.
    let nested = format!("{}userName pr{}", "(".repeat(2000), ")".repeat(2000));
    let query = url::form_urlencoded::byte_serialize(nested.as_bytes()).collect::<String>();
    env.get(&format!("/Users?filter={query}")).await.assert_error(400, Some("invalidFilter"));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_patch_with_thousands_of_operations_is_refused_quickly() {
    let env = TestEnv::start_with(|text| text.replace("max_body_bytes: 65536", "max_body_bytes: 1048576")).await;
    let id = env.create_user("patched").await;
    let patch =
        |ops: Vec<Value>| json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops });
    let title = |i: usize| json!({ "op": "replace", "path": "title", "value": format!("t{i}") });
    let started = Instant::now();
    let reply = env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch((0..5000).map(title).collect()))).await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("at most 1000"), "{}", reply.text);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // A thousand are accepted, and the last one wins.
    let reply = env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch((0..1000).map(title).collect()))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["title"], "t999");
    // One operation whose value array is past the body limit is refused before parsing.
    let emails: Vec<Value> = (0..40_000).map(|i| json!({ "value": format!("a{i}@example.com") })).collect();
    let huge = patch(vec![json!({ "op": "add", "path": "emails", "value": emails })]);
    env.send(Method::PATCH, &format!("/Users/{id}"), Some(huge)).await.assert_error(413, None);
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_script_cannot_put_cr_lf_from_a_request_into_a_legacy_header() {
    let (env, legacy) = pass_on_env().await;
    for id in ["hdr-a%0D%0AX-Injected:%201", "hdr-a%0AX-Injected:%201", "hdr-%00"] {
        let request_id = format!("header-injection-{}", id.len());
        let response = env
            .client
            .get(format!("{}/Users/{id}", env.base()))
            .bearer_auth(TOKEN)
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        let reply = Reply::read(response).await;
        reply.assert_error(500, None);
        assert_eq!(reply.body["detail"], scim_proxy::error::GENERIC);
        let logged = wait_for_log(&[&request_id, "refused header", "X-Trace"], Duration::from_secs(5)).await;
        assert!(logged.iter().any(|l| l.contains("app.rhai") && l.contains("line=4 ")), "{logged:?}");
    }
    assert_eq!(legacy.connections(), 0, "a call went out: {:?}", legacy.heads());
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_reach_the_legacy_app_as_one_encoded_segment() {
    let (env, legacy) = pass_on_env().await;
    let cases = [
        ("..%2F..%2Fadmin", "/api/users/..%2F..%2Fadmin"),
        ("%2E%2E%2Fadmin", "/api/users/..%2Fadmin"),
        ("a%3Fadmin=1%23x", "/api/users/a%3Fadmin%3D1%23x"),
        ("a%0D%0AHost:%20evil", "/api/users/a%0D%0AHost:%20evil"),
        ("a%252F", "/api/users/a%252F"),
        ("..%3B%2Fadmin", "/api/users/..%3B%2Fadmin"),
        ("%C3%BC%20x", "/api/users/%C3%BC%20x"),
        ("...", "/api/users/..."),
    ];
    let mut stream = TcpStream::connect(scim_addr(&env)).await.unwrap();
    for (id, expected) in cases {
        // Raw bytes: a client library would normalise some of these paths before sending.
        let request = format!("GET /scim/v2/Users/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = read_reply(&mut stream).await.unwrap();
        assert_eq!(reply.status, 404, "{id}: {}", reply.head);
        let line = legacy.request_lines().pop().unwrap_or_default();
        assert_eq!(line, format!("GET {expected} HTTP/1.1"), "{id}");
    }
    // "." and ".." are no one's id: 404 without a legacy call (a URL parser would navigate).
    let before = legacy.connections();
    for id in ["..", "%2E%2E", "%2e", ".%2E"] {
        let request = format!("GET /scim/v2/Users/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = read_reply(&mut stream).await.unwrap();
        assert_eq!(reply.status, 404, "{id}: {}", reply.head);
        assert!(reply.body["scimType"].is_null());
    }
    assert_eq!(legacy.connections(), before);
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_loris_connections_are_closed_and_others_served() {
    let env = TestEnv::start_with(|text| {
        text.replace("max_body_bytes: 65536", "max_body_bytes: 65536\n  header_read_timeout: 1s")
    })
    .await;
    let traffic = Traffic::start(&[(TOKEN, format!("{}/Users?count=1", env.base()))], 10);
    let head = format!("GET /scim/v2/Users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    let mut lorises = Vec::new();
    for _ in 0..50 {
        let (addr, head) = (scim_addr(&env), head.clone());
        lorises.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            // One byte every 100 ms: the whole head would take about 8 s.
            for byte in head.as_bytes() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                // The server hangs up: a read sees the end (or a 408) instead of waiting.
                let mut buf = [0u8; 512];
                match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                    Ok(Ok(n)) => return (started.elapsed(), String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Ok(Err(_)) => return (started.elapsed(), String::new()),
                    Err(_) => {}
                }
            }
            panic!("the whole head went through byte by byte without the server hanging up");
        }));
    }
    for loris in lorises {
        let (after, said) = loris.await.unwrap();
        assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(3), "closed after {after:?}");
        assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "{said}");
    }
    let served = traffic.finish(Duration::from_secs(2)).await;
    assert!(served >= 20, "{served}");
    still_serving(&env).await;
}

/// Sends raw bytes on a fresh connection and returns everything the server answers until it closes.
async fn raw_exchange(addr: SocketAddr, bytes: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    read_to_close(&mut stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_smuggling_shapes_are_rejected_or_cannot_desync() {
    let (env, legacy) = pass_on_env().await;
    let auth = format!("authorization: Bearer {TOKEN}\r\ncontent-type: application/scim+json\r\n");
    let body = serde_json::to_string(&user("smuggler")).unwrap();
    // A second request hidden where one reading of the framing sees a body.
    let hidden = format!("GET /scim/v2/Users/smuggled HTTP/1.1\r\nhost: x\r\n{auth}\r\n");
    let shapes = [
        (
            "content-length and transfer-encoding",
            format!(
                "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\n{auth}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n{hidden}",
                body.len()
            ),
        ),
        (
            "two content-lengths",
            format!(
                "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\n{auth}content-length: {}\r\ncontent-length: {}\r\n\r\n{body}{hidden}",
                body.len(),
                body.len() + hidden.len()
            ),
        ),
        (
            "obs-fold",
            format!(
                "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\n{auth}x-folded: a\r\n b\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "transfer-encoding not ending in chunked",
            format!(
                "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\n{auth}transfer-encoding: chunked, identity\r\n\r\n{body}"
            ),
        ),
        (
            "a space before the colon",
            format!("POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\n{auth}content-length : {}\r\n\r\n{body}", body.len()),
        ),
    ];
    for (shape, bytes) in shapes {
        let answer = raw_exchange(scim_addr(&env), &bytes).await;
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{shape}: a second answer: {answer}");
        if shape.starts_with("content-length and") {
            // hyper reads the body by Transfer-Encoding alone, drops Content-Length (so the
            // proxy cannot even see it was there) and closes the connection after the answer
            // (RFC 9112 §6.3): the request hidden behind the chunked body is never read.
            assert!(answer.starts_with("HTTP/1.1 201 "), "{shape}: {answer}");
            assert!(answer.contains("connection: close"), "{shape}: {answer}");
            assert_eq!(legacy.request_lines(), ["POST /api/users HTTP/1.1"]);
        } else {
            // hyper's own answer, before any handler: no SCIM body
            assert!(answer.starts_with("HTTP/1.1 400 "), "{shape}: {answer}");
            assert!(answer.contains("content-length: 0"), "{shape}: {answer}");
        }
    }
    assert_eq!(legacy.connections(), 1, "a smuggled request reached the script: {:?}", legacy.request_lines());
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_broken_chunked_body_is_invalid_syntax() {
    let (env, legacy) = pass_on_env().await;
    let bytes = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/scim+json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    let answer = raw_exchange(scim_addr(&env), &bytes).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("\"scimType\":\"invalidSyntax\""), "{answer}");
    assert_eq!(legacy.connections(), 0);
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_body_sent_too_slowly_is_a_408() {
    let env = TestEnv::start_with(|text| text.replacen("request_timeout: 10s", "request_timeout: 1s", 1)).await;
    let mut stream = TcpStream::connect(scim_addr(&env)).await.unwrap();
    // 100 bytes announced, 10 sent, then nothing: the request's deadline ends the wait.
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/scim+json\r\ncontent-length: 100\r\n\r\n{{\"schemas\""
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await.expect("an answer before the body is complete");
    assert_eq!(reply.status, 408, "{}", reply.head);
    assert_eq!(reply.body["status"], "408");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_from_a_request_are_cut_and_escaped_where_they_are_echoed() {
    crate::support::init_logs();
    let env = TestEnv::start().await;
    let id = env.create_user("echo-bjensen").await;
    // One marker per request, a quote and a newline in it, then 5,000 characters.
    let long = |marker: &str| format!("{marker}\"\n{}", "x".repeat(5000));
    let encoded = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let bounded = |reply: &Reply, marker: &str| {
        let detail = reply.body["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(marker) && detail.contains(" bytes)"), "{detail}");
        assert!(detail.len() < 400, "{} characters: {detail:.200}", detail.len());
        assert!(!detail.contains('\n'), "{detail:.200}");
    };

    let reply = env.get(&format!("/Users/{}", encoded(&long("echo-id")))).await;
    reply.assert_error(404, None);
    bounded(&reply, "echo-id");

    let reply = env.get(&format!("/Users?sortBy={}", encoded(&long("echo-sort")))).await;
    reply.assert_error(400, Some("invalidPath"));
    bounded(&reply, "echo-sort");

    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "path": long("echo-path"), "value": 1 }]
    });
    let reply = env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    reply.assert_error(400, Some("invalidPath"));
    bounded(&reply, "echo-path");

    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": long("echo-op"), "path": "displayName", "value": "x" }]
    });
    let reply = env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    reply.assert_error(400, Some("invalidSyntax"));
    bounded(&reply, "echo-op");

    let reply =
        env.get(&format!("/Users?filter={}", encoded(&format!("userName eq \"a\" {}", "echo-word".repeat(300))))).await;
    reply.assert_error(400, Some("invalidFilter"));
    bounded(&reply, "echo-word");

    // An attribute of a made-up name is ignored, and named in the audit record, bounded.
    let mut body = user("echo-ignored");
    body[long("echo-name")] = json!(1);
    assert_eq!(env.post("/Users", body).await.status, StatusCode::CREATED);
    let audit = wait_for_log(&["echo-name", "audit"], Duration::from_secs(5)).await;
    assert!(!audit.is_empty());

    // No log line of the proxy carries more than a bounded piece of any of them (the bundled
    // stand-in app, the `acme` crate, is the legacy side and logs what it receives; its lines
    // name their target, `acme` or `acme::api`, after the level).
    for marker in ["echo-id", "echo-sort", "echo-path", "echo-op", "echo-word", "echo-name"] {
        let mut lines = crate::support::log_lines_with(&[marker]);
        lines.retain(|line| !line.contains(" acme::") && !line.contains(" acme: "));
        assert!(!lines.is_empty(), "{marker} is in no log line");
        for line in lines {
            assert!(line.len() < 2000, "{marker}: a log line of {} characters: {line:.300}", line.len());
        }
    }
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_body_of_forty_thousand_made_up_attributes_is_ignored_in_linear_time() {
    crate::support::init_logs();
    // A 10 s request deadline: checking names pairwise took minutes at this size.
    let env = TestEnv::start_with(|c| c.replace("max_body_bytes: 65536", "max_body_bytes: 2000000")).await;
    let mut body = user("many-names");
    for i in 0..40_000 {
        body[format!("madeUp{i}")] = json!(1);
    }
    let reply = env.post("/Users", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let audit = wait_for_log(&["audit", "madeUp0,"], Duration::from_secs(5)).await;
    let line = audit.first().expect("an audit line");
    assert!(line.contains("more)") && line.len() < 2000, "{} characters: {line:.400}", line.len());
    // The metric counts every one of them.
    let metrics = reqwest::get(format!("{}/metrics", env.admin())).await.unwrap().text().await.unwrap();
    let other = metrics
        .lines()
        .find(|l| l.starts_with("scim_proxy_ignored_attributes_total{") && l.contains("attribute=\"other\""))
        .expect("the other series");
    assert!(other.ends_with(" 40000"), "{other}");
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_what_a_script_throws_is_bounded_in_the_answer_and_the_log() {
    crate::support::init_logs();
    const QUOTING: &str = r#"
fn get_user(id) { () }
fn list_users(query) { [] }
fn create_user(user) {
    throw #{ status: 409, scimType: "uniqueness", detail: "taken: " + user.displayName + "\n" + user.displayName };
}
"#;
    let env = TestEnv::start_script(Some(QUOTING), |text| text).await;
    let mut body = user("quoted-at-length");
    body["displayName"] = json!(format!("echo-thrown{}", "y".repeat(20_000)));
    let reply = env.post("/Users", body).await;
    reply.assert_error(409, Some("uniqueness"));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.starts_with("taken: echo-thrownyyy") && detail.ends_with("… (40030 bytes)"), "{detail:.100}");
    assert!(detail.chars().count() < 1100 && !detail.contains('\n'), "{detail:.100}");
    let lines = crate::support::log_lines_with(&["echo-thrown"]);
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.len() < 2000), "{:?}", lines.iter().map(String::len).collect::<Vec<_>>());
}
