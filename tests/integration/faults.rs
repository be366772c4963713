//! Fault injection: a legacy app that refuses, resets, stalls, fails, throttles or talks
//! nonsense, and what the identity provider gets for each; retries and the circuit breaker.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{OTHER_TOKEN, TestEnv, log_lines_with, user};

/// What the fake legacy app does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answers like a healthy Acme: user 1 for a GET or PUT (no teams), 201 for a POST.
    Healthy,
    /// Reads the request, then resets the connection (SO_LINGER 0).
    Reset,
    /// Reads the request and never answers.
    Stall,
    /// Answers this status, with this `Retry-After` if any.
    Status(u16, Option<&'static str>),
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers 200 with a body that is not JSON.
    NotJson,
    /// Answers 200 with a 100 MB body, streamed in chunks.
    Huge,
}

/// A legacy app on 127.0.0.1:0 that misbehaves as told, and counts what reaches it.
struct FaultServer {
    addr: SocketAddr,
    state: Arc<Mutex<Plan>>,
}

#[derive(Default)]
struct Plan {
    /// Faults for the next requests of a method, in order.
    queued: HashMap<String, VecDeque<Fault>>,
    /// The fault of every other request.
    otherwise: Option<Fault>,
    /// Connections accepted.
    accepts: usize,
    /// The method and path of each request read.
    requests: Vec<(String, String)>,
}

impl FaultServer {
    async fn start(otherwise: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Plan { otherwise: Some(otherwise), ..Plan::default() }));
        let plan = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                plan.lock().unwrap().accepts += 1;
                tokio::spawn(serve(stream, plan.clone()));
            }
        });
        Self { addr, state }
    }

    fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Every request from now on gets `fault`.
    fn always(&self, fault: Fault) {
        let mut plan = self.state.lock().unwrap();
        plan.queued.clear();
        plan.otherwise = Some(fault);
    }

    /// The next requests of `method` get `faults`, in order; then the usual fault again.
    fn next(&self, method: &str, faults: &[Fault]) {
        self.state.lock().unwrap().queued.entry(method.to_owned()).or_default().extend(faults);
    }

    fn accepts(&self) -> usize {
        self.state.lock().unwrap().accepts
    }

    fn requests(&self, method: &str) -> usize {
        self.state.lock().unwrap().requests.iter().filter(|(m, _)| m == method).count()
    }

    fn requests_to(&self, path: &str) -> usize {
        self.state.lock().unwrap().requests.iter().filter(|(_, p)| p == path).count()
    }
}

/// Reads one request: its method and path, once the headers and the body announced are in.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let mut words = text.split(' ');
                return Some((words.next()?.to_owned(), words.next()?.to_owned()));
            }
        }
    }
}

async fn serve(mut stream: TcpStream, plan: Arc<Mutex<Plan>>) {
    let Some((method, path)) = read_request(&mut stream).await else { return };
    let fault = {
        let mut plan = plan.lock().unwrap();
        plan.requests.push((method.clone(), path.clone()));
        let queued = plan.queued.get_mut(&method).and_then(VecDeque::pop_front);
        queued.or(plan.otherwise).unwrap_or(Fault::Healthy)
    };
    let answer = |status: &str, extra: &str, body: &str| http_answer(status, extra, body, false);
    let text = match fault {
        Fault::Healthy => healthy_answer(&method, &path, false),
        Fault::Reset => {
            let _ = stream.set_zero_linger();
            return;
        }
        Fault::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        Fault::Status(status, retry_after) => {
            let extra = retry_after.map(|r| format!("retry-after: {r}\r\n")).unwrap_or_default();
            answer(&format!("{status} Whatever"), &extra, r#"{"error": {"code": "down", "message": "down"}}"#)
        }
        Fault::Garbage => "SSH-2.0-OpenSSH_9.6 this is no HTTP\r\n\r\n".to_owned(),
        Fault::NotJson => answer("200 OK", "", "<html><body>maintenance</body></html>"),
        Fault::Huge => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let piece = vec![b' '; 64 * 1024];
            let chunk = [format!("{:x}\r\n", piece.len()).into_bytes(), piece, b"\r\n".to_vec()].concat();
            // 100 MB, unless the proxy hangs up first (which is the point).
            for _ in 0..1600 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            "0\r\n\r\n".to_owned()
        }
    };
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An HTTP/1.1 answer with a JSON body; `keep_alive` false closes the connection after it.
fn http_answer(status: &str, extra: &str, body: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {connection}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// What a healthy Acme answers: user 1 for a GET or PUT (no teams), 201 for a POST.
fn healthy_answer(method: &str, path: &str, keep_alive: bool) -> String {
    let record = r#"{"id": 1, "login": "healthy", "enabled": true}"#;
    match method {
        "POST" => http_answer("201 Created", "", record, keep_alive),
        _ if path.contains("/teams") => http_answer("200 OK", "", r#"{"data": [], "total": 0}"#, keep_alive),
        _ => http_answer("200 OK", "", record, keep_alive),
    }
}

/// A healthy legacy app that keeps connections alive and closes one idle for `idle`, as
/// servers do (gunicorn after 2 s, Node.js after 5 s); it counts the requests of each method.
async fn closing_idle_server(idle: Duration) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok(Some((method, path))) = tokio::time::timeout(idle, read_request(&mut stream)).await {
                    *seen.lock().unwrap().entry(method.clone()).or_insert(0) += 1;
                    if stream.write_all(healthy_answer(&method, &path, true).as_bytes()).await.is_err() {
                        return;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, counts)
}

/// The test proxy with its first app, named `name`, in front of `legacy_url` with `legacy`
/// settings added; the second app (`other`) stays in front of a healthy Acme. Each test names
/// its app, so that the log lines it looks for are its own.
async fn proxy_before(name: &str, legacy_url: &str, legacy: &str) -> TestEnv {
    let (name, legacy, legacy_url) = (name.to_owned(), legacy.to_owned(), legacy_url.to_owned());
    TestEnv::start_with(move |text| {
        let text = text.replacen("  - name: acme\n", &format!("  - name: {name}\n"), 1);
        let text = text.replacen("base_url: \"${env.ACME_BASE_URL}\"", &format!("base_url: \"{legacy_url}\""), 1);
        let settings = legacy.lines().map(|l| format!("      {l}\n")).collect::<String>();
        text.replacen("      timeout: 5s\n", &format!("      timeout: 500ms\n{settings}"), 1)
    })
    .await
}

/// One fault, what the identity provider must get for it: status, `Retry-After`, and a word
/// of the detail.
struct Case {
    fault: Fault,
    status: u16,
    retry_after: Option<&'static str>,
    detail: &'static str,
}

/// A read of user 1 that makes one legacy call (its teams are not asked for).
const ONE_USER: &str = "/Users/1?attributes=userName";

/// The other app, in front of a healthy Acme, answers normally.
async fn other_app_serves(env: &TestEnv) {
    let other = format!("http://{}/other/scim/Users", env.proxy.as_ref().unwrap().scim_addr);
    let reply = env.send_as(OTHER_TOKEN, Method::GET, &other, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_legacy_fault_gets_its_scim_answer() {
    let server = FaultServer::start(Fault::Healthy).await;
    let env = proxy_before(
        "fault-table",
        &server.base_url(),
        "max_response_bytes: 1048576\nretry: {attempts: 1}\nbreaker: {failures: 0}",
    )
    .await;
    let cases = [
        Case { fault: Fault::Reset, status: 503, retry_after: Some("10"), detail: "connection" },
        Case { fault: Fault::Stall, status: 504, retry_after: Some("10"), detail: "in time" },
        Case { fault: Fault::Status(500, None), status: 502, retry_after: None, detail: "answered 500" },
        Case { fault: Fault::Status(502, Some("5")), status: 502, retry_after: None, detail: "answered 502" },
        Case { fault: Fault::Status(503, None), status: 503, retry_after: Some("10"), detail: "unavailable" },
        Case { fault: Fault::Status(503, Some("7")), status: 503, retry_after: Some("7"), detail: "unavailable" },
        Case { fault: Fault::Status(503, Some("86400")), status: 503, retry_after: Some("120"), detail: "unavailable" },
        Case { fault: Fault::Status(503, Some("soon")), status: 503, retry_after: Some("10"), detail: "unavailable" },
        Case { fault: Fault::Status(429, None), status: 429, retry_after: Some("10"), detail: "rate limiting" },
        Case { fault: Fault::Status(429, Some("3")), status: 429, retry_after: Some("3"), detail: "rate limiting" },
        Case { fault: Fault::Status(401, None), status: 502, retry_after: None, detail: "cannot use" },
        Case { fault: Fault::Garbage, status: 502, retry_after: None, detail: "not HTTP" },
        Case { fault: Fault::NotJson, status: 502, retry_after: None, detail: "cannot use" },
        Case { fault: Fault::Huge, status: 502, retry_after: None, detail: "too large" },
    ];
    for (n, case) in cases.iter().enumerate() {
        server.always(case.fault);
        let read = env.get("/Users/1").await;
        // A new name each time: a create whose outcome was unknown makes the next create of
        // its name look for the account first (a read), which is not what this case is about.
        let created = env.post("/Users", user(&format!("faulty{n}"))).await;
        for (op, reply) in [("GET /Users/1", &read), ("POST /Users", &created)] {
            let context = format!("{:?}, {op}: {}", case.fault, reply.text);
            assert_eq!(reply.status.as_u16(), case.status, "{context}");
            reply.assert_error(case.status, None);
            assert_eq!(reply.header("retry-after"), case.retry_after, "{context}");
            let detail = reply.body["detail"].as_str().unwrap();
            assert!(detail.contains(case.detail), "{context}");
            assert!(!detail.contains("127.0.0.1") && !detail.contains("/api/v1"), "no internals: {context}");
        }
        // A write whose answer never came may have been made: the detail says so.
        let unknown = "may or may not have been made";
        let sent_write_lost = matches!(case.fault, Fault::Stall | Fault::Reset);
        assert_eq!(created.body["detail"].as_str().unwrap().contains(unknown), sent_write_lost, "{}", created.text);
        assert!(!read.body["detail"].as_str().unwrap().contains(unknown), "{}", read.text);
        other_app_serves(&env).await;
    }
    // A Retry-After date is passed on as the seconds left until it.
    let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    server.always(Fault::Status(503, Some(Box::leak(soon.into_boxed_str()))));
    let reply = env.get("/Users/1").await;
    let seconds: u32 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((28..=30).contains(&seconds), "{seconds}");
    // The legacy app recovers: the same proxy serves it again.
    server.always(Fault::Healthy);
    let reply = env.get("/Users/1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["userName"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_retryable_503_until_the_app_is_back() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let env = proxy_before("refused", &format!("http://{port}/api/v1"), "retry: {attempts: 2, base_delay: 10ms}").await;
    for reply in [env.get("/Users/1").await, env.post("/Users", user("refused")).await] {
        reply.assert_error(503, None);
        assert_eq!(reply.header("retry-after"), Some("10"), "{}", reply.text);
        assert!(reply.body["detail"].as_str().unwrap().contains("unreachable"), "{}", reply.text);
        assert!(!reply.body["detail"].as_str().unwrap().contains("may or may not"), "nothing was sent");
    }
    let audit = log_lines_with(&["scim_proxy::audit", "app=\"refused\"", "operation=\"create_user\""]);
    assert!(audit.len() == 1 && audit[0].contains("outcome=\"refused\""), "nothing was sent: {audit:?}");
    other_app_serves(&env).await;
    // The app comes back on its port.
    let listener = TcpListener::bind(port).await.unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let plan = Arc::new(Mutex::new(Plan { otherwise: Some(Fault::Healthy), ..Plan::default() }));
            tokio::spawn(serve(stream, plan));
        }
    });
    let reply = env.get("/Users/1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_does_not_resolve_is_a_retryable_503() {
    // legacy.timeout stays 5s, above connect_timeout (3s): a slow resolver still ends as a
    // failed connection.
    let env = TestEnv::start_with(|text| {
        let text = text.replacen("  - name: acme\n", "  - name: unresolved\n", 1);
        text.replacen("base_url: \"${env.ACME_BASE_URL}\"", "base_url: \"http://legacy.invalid/api/v1\"", 1)
    })
    .await;
    let reply = env.get("/Users/1").await;
    reply.assert_error(503, None);
    assert_eq!(reply.header("retry-after"), Some("10"), "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("unreachable"), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_succeeds_after_two_503s_waiting_as_the_legacy_app_asks() {
    let server = FaultServer::start(Fault::Healthy).await;
    let env =
        proxy_before("retried", &server.base_url(), "retry: {attempts: 3, base_delay: 10ms, max_delay: 50ms}").await;
    server.next("GET", &[Fault::Status(503, Some("1")), Fault::Status(503, None)]);
    let started = Instant::now();
    let reply = env.get(ONE_USER).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(server.requests("GET"), 3);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    let metrics = env.client.get(format!("{}/metrics", env.admin())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("scim_proxy_legacy_retries_total{app=\"retried\"} 2"), "{metrics}");
    assert_eq!(log_lines_with(&["legacy call retried", "app=\"retried\"", "reason=\"http_5xx\""]).len(), 2);
    // Three failures are one too many: the last answer goes to the script, and on.
    server.next("GET", &[Fault::Status(503, None); 3]);
    env.get(ONE_USER).await.assert_error(503, None);
    assert_eq!(server.requests("GET"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_deadline_is_passed_on_not_waited_for() {
    let server = FaultServer::start(Fault::Healthy).await;
    let env = proxy_before("retry-after", &server.base_url(), "retry: {attempts: 3}").await;
    server.next("GET", &[Fault::Status(503, Some("60"))]);
    let started = Instant::now();
    let reply = env.get("/Users/1").await;
    reply.assert_error(503, None);
    assert_eq!(reply.header("retry-after"), Some("60"));
    assert_eq!(server.requests("GET"), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_any_size_is_capped_and_passed_on_without_a_panic() {
    let server = FaultServer::start(Fault::Healthy).await;
    let env = proxy_before("retry-after-huge", &server.base_url(), "retry: {attempts: 3}").await;
    let huge = ["18446744073709551615", "99999999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"];
    for (n, retry_after) in huge.into_iter().enumerate() {
        server.next("GET", &[Fault::Status(503, Some(retry_after))]);
        let started = Instant::now();
        let reply = env.get(ONE_USER).await;
        reply.assert_error(503, None);
        assert_eq!(reply.header("retry-after"), Some("120"), "{retry_after}: the cap");
        assert_eq!(server.requests("GET"), n + 1, "{retry_after}: not waited for");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    other_app_serves(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_retried_only_when_the_script_marks_them_idempotent() {
    let server = FaultServer::start(Fault::Healthy).await;
    let env = proxy_before("writes", &server.base_url(), "retry: {attempts: 3, base_delay: 10ms}").await;
    // A POST that timed out may have created the user: never sent twice, outcome unknown.
    server.next("POST", &[Fault::Stall]);
    let reply = env.post("/Users", user("slowpoke")).await;
    reply.assert_error(504, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("may or may not have been made"), "{detail}");
    assert_eq!(server.requests("POST"), 1);
    // Nor after a 503 answer.
    server.next("POST", &[Fault::Status(503, None)]);
    env.post("/Users", user("busy")).await.assert_error(503, None);
    assert_eq!(server.requests("POST"), 2);
    // The demo marks its PUT of a whole user idempotent: it is retried.
    server.next("PUT", &[Fault::Reset, Fault::Status(503, None)]);
    let mut replacement = user("healthy");
    replacement["id"] = serde_json::json!("1");
    let reply = env.put("/Users/1", replacement).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(server.requests("PUT"), 3);
}

#[tokio::test]
async fn a_write_after_the_legacy_app_closed_idle_connections_is_sent_once_and_succeeds() {
    // The legacy app closes a connection idle for 150 ms; the proxy is left idle for longer,
    // then writes. Every write must reach the app exactly once and succeed: a connection the
    // app closed must not be used for it.
    let (url, counts) = closing_idle_server(Duration::from_millis(150)).await;
    let env = proxy_before("idle-closed", &url, "").await;
    for (round, pause) in [200u64, 300, 450, 700, 1100, 1600].into_iter().enumerate() {
        let reply = env.get("/Users/1").await;
        assert_eq!(reply.status, StatusCode::OK, "round {round}: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let posts = counts.lock().unwrap().get("POST").copied().unwrap_or(0);
        let reply = env.post("/Users", user(&format!("idle{round}"))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "round {round}, after {pause} ms idle: {}", reply.text);
        assert_eq!(counts.lock().unwrap().get("POST").copied().unwrap_or(0), posts + 1, "round {round}");
    }
}

/// The admin listener's view of the first app: `/readyz` status, its breaker entry, `/metrics`.
async fn admin_view(env: &TestEnv) -> (StatusCode, serde_json::Value, String) {
    let ready = env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap();
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.unwrap();
    let metrics = env.client.get(format!("{}/metrics", env.admin())).send().await.unwrap().text().await.unwrap();
    (status, body["apps"][0]["legacy_breaker"].clone(), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_fails_fast_probes_and_closes() {
    let server = FaultServer::start(Fault::Status(503, None)).await;
    let env =
        proxy_before("breaker", &server.base_url(), "retry: {attempts: 1}\nbreaker: {failures: 3, open_for: 1s}").await;
    for _ in 0..3 {
        env.get(ONE_USER).await.assert_error(503, None);
    }
    assert_eq!(server.accepts(), 3);
    assert_eq!(log_lines_with(&["legacy circuit breaker opened", "app=\"breaker\""]).len(), 1);

    // Open: no connection is made, and the answer says when to come back.
    for reply in [env.get(ONE_USER).await, env.post("/Users", user("waiting")).await] {
        reply.assert_error(503, None);
        assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.text);
        assert!(reply.body["detail"].as_str().unwrap().contains("paused"), "{}", reply.text);
    }
    assert_eq!(server.accepts(), 3, "calls fail fast while the breaker is open");
    let audit = log_lines_with(&["scim_proxy::audit", "app=\"breaker\"", "operation=\"create_user\""]);
    assert!(audit.len() == 1 && audit[0].contains("outcome=\"refused\""), "nothing was sent: {audit:?}");
    let (ready, breaker, metrics) = admin_view(&env).await;
    assert_eq!(ready, StatusCode::OK, "an open breaker does not fail readiness");
    assert_eq!(breaker["state"], "open", "{breaker}");
    assert!(metrics.contains("scim_proxy_legacy_breaker_open{app=\"breaker\"} 1"), "{metrics}");
    assert!(metrics.contains("scim_proxy_legacy_breaker_open{app=\"other\"} 0"), "{metrics}");
    assert!(metrics.contains("scim_proxy_legacy_errors_total{app=\"breaker\",kind=\"breaker_open\"} 2"), "{metrics}");
    other_app_serves(&env).await;

    // Half-open after open_for: one probe goes through; it fails, so the breaker opens again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(admin_view(&env).await.1["state"], "half_open");
    env.get(ONE_USER).await.assert_error(503, None);
    assert_eq!(server.accepts(), 4, "one probe");
    env.get(ONE_USER).await.assert_error(503, None);
    assert_eq!(server.accepts(), 4, "open again after the failed probe");
    assert_eq!(log_lines_with(&["legacy circuit breaker opened", "app=\"breaker\"", "the probe call failed"]).len(), 1);

    // The app recovers: the next probe succeeds and closes the breaker.
    server.always(Fault::Healthy);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..3 {
        let reply = env.get(ONE_USER).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    assert_eq!(server.accepts(), 7);
    assert_eq!(log_lines_with(&["legacy circuit breaker closed", "app=\"breaker\""]).len(), 1);
    let (_, breaker, metrics) = admin_view(&env).await;
    assert_eq!(breaker["state"], "closed");
    assert!(metrics.contains("scim_proxy_legacy_breaker_open{app=\"breaker\"} 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_see_the_legacy_app_past_an_open_breaker_and_leave_it_alone() {
    let script = r#"
fn get_user(id) {
    let response = legacy.get(["users", id]);
    if response.status != 200 { throw legacy.unexpected(response, "read"); }
    #{ id: id, userName: response.json.login }
}
fn list_users(query) { [] }
fn health() { legacy.get("/users", #{ per_page: 1 }).status == 200 }
"#;
    let server = FaultServer::start(Fault::Status(503, None)).await;
    let url = server.base_url();
    let env = TestEnv::start_script(Some(script), move |text| {
        let text = text.replacen("  - name: acme\n", "  - name: health-past-breaker\n", 1);
        let text = text.replacen("base_url: \"${env.ACME_BASE_URL}\"", &format!("base_url: \"{url}\""), 1);
        let text = text.replacen("health_interval: 0s", "health_interval: 100ms", 1);
        text.replacen(
            "      timeout: 5s\n",
            "      timeout: 500ms\n      retry: {attempts: 1}\n      breaker: {failures: 2, open_for: 60s}\n",
            1,
        )
    })
    .await;
    let ready = || async {
        let reply = env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap();
        (reply.status(), reply.json::<serde_json::Value>().await.unwrap()["apps"][0].clone())
    };
    // Failing health checks do not open the breaker: two failed reads do.
    let (status, app) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "health() fails while the app answers 503: {app}");
    assert_eq!(app["legacy_breaker"]["state"], "closed", "{app}");
    for _ in 0..2 {
        env.get("/Users/1").await.assert_error(503, None);
    }
    assert_eq!(ready().await.1["legacy_breaker"]["state"], "open");
    // The app recovers: health() sees it through the open breaker, and readiness follows.
    server.always(Fault::Healthy);
    let started = Instant::now();
    while ready().await.0 != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(10), "readiness never followed health()");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, app) = ready().await;
    assert_eq!(app["legacy_health"]["healthy"], true, "{app}");
    assert_eq!(app["legacy_breaker"]["state"], "open", "health checks do not close the breaker: {app}");
    let reads = server.requests_to("/api/v1/users/1");
    env.get("/Users/1").await.assert_error(503, None);
    assert_eq!(server.requests_to("/api/v1/users/1"), reads, "reads still fail fast");
}

/// A legacy app whose `/slow` answers only once released, and whose `/health` answers at once;
/// it counts both.
#[derive(Default)]
struct SlowApp {
    slow: std::sync::atomic::AtomicUsize,
    health: std::sync::atomic::AtomicUsize,
    released: tokio::sync::Notify,
    open: std::sync::atomic::AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_app_is_not_an_unready_app_health_runs_on_its_own_slot() {
    use std::sync::atomic::Ordering;
    let script = r#"
fn get_user(id) {
    let response = legacy.get("/slow");
    #{ id: id, userName: `user${id}`, active: response.status == 200 }
}
fn list_users(query) { [] }
fn health() { legacy.get("/health").status == 200 }
"#;
    let app = Arc::new(SlowApp::default());
    let (addr, task) = crate::support::serve_fake(app.clone(), |app, request| async move {
        let counter = if request.uri().path() == "/slow" { &app.slow } else { &app.health };
        counter.fetch_add(1, Ordering::SeqCst);
        if request.uri().path() == "/slow" {
            let released = app.released.notified();
            if !app.open.load(Ordering::SeqCst) {
                released.await;
            }
        }
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
    })
    .await;
    let env = TestEnv::start_script(Some(script), move |text| {
        let text = text.replace("base_url: \"${env.ACME_BASE_URL}\"", &format!("base_url: \"http://{addr}\""));
        let text = text.replacen("health_interval: 0s", "health_interval: 100ms", 1);
        text.replacen("    request_timeout: 10s\n", "    request_timeout: 20s\n    max_concurrent_scripts: 2\n", 1)
    })
    .await;
    let readyz = || async { env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap().status() };
    // Every script slot of the app taken by a request waiting for the legacy app.
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let (client, url) = (env.client.clone(), format!("{}/Users/{i}", env.base()));
            tokio::spawn(
                async move { client.get(url).bearer_auth(crate::support::TOKEN).send().await.unwrap().status() },
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.slow.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the slow requests never reached the legacy app");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // health() goes on being called (every 100 ms) while the slots stay busy, and passes.
    let checks = app.health.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.health.load(Ordering::SeqCst) < checks + 3 {
        assert!(Instant::now() < deadline, "health() was not called while the script slots were busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(readyz().await, StatusCode::OK);
    assert_eq!(app.slow.load(Ordering::SeqCst), 2, "the requests still hold their slots");
    app.open.store(true, Ordering::SeqCst);
    app.released.notify_waiters();
    for request in busy {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(readyz().await, StatusCode::OK);
    task.abort();
}
