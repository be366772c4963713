//! The process's end, as a platform team checks it with a real child process: past
//! `server.shutdown_grace` the requests still running are answered (`503`, `Connection:
//! close`, a write saying its outcome is unknown) and logged, nothing panics, and the exit code
//! says the drain was cut short; a second SIGTERM exits at once; h2 and HTTP/1.1 connections
//! are served at once. Each on as many serving threads as the machine has cores, on two, and
//! on the single thread the proxy runs on with one core.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::TOKEN;

/// A legacy app that reads requests and never answers them; counts the requests it heard.
async fn silent_legacy() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = heard.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        seen.clear();
                    }
                }
            });
        }
    });
    (url, heard)
}

const SCRIPT: &str = r#"
fn get_user(id) {
    let response = legacy.get(["users", id]);
    if response.status == 200 { #{ id: id, userName: "u" + id } } else { () }
}
fn list_users(query) { [] }
fn create_user(user) { legacy.post("/users", user); user.id = "1"; user }
"#;

/// The threads a process is checked on: as many as it chooses (one a core of this machine),
/// two serving threads whatever the machine (the connections of one test on different
/// threads), and the single thread it runs on when it has one core (`TOKIO_WORKER_THREADS=1`,
/// as on a sidecar's core).
const RUNTIMES: [Option<&str>; 3] = [None, Some("2"), Some("1")];

/// The proxy in a child process with `server` settings, logging JSON lines to a pipe, on
/// `threads` runtime threads (`None`: as many as it chooses).
fn start(
    dir: &std::path::Path,
    legacy: &str,
    server: &str,
    threads: Option<&str>,
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    write_project(dir, legacy, server);
    let mut child = run_command(dir)
        .env_remove("RUST_LOG")
        .env_remove("TOKIO_WORKER_THREADS")
        .envs(threads.map(|n| ("TOKIO_WORKER_THREADS", n)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the proxy did not start");
        };
        let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
        if parsed["message"] == "listening" {
            if let Some(threads) = threads {
                assert_eq!(parsed["runtime_threads"].to_string(), threads, "{line}");
            }
            return (child, parsed["scim_addr"].as_str().unwrap().to_owned(), lines);
        }
    }
}

/// The app's script and a `proxy.yaml` with `server` settings in `dir`.
fn write_project(dir: &std::path::Path, legacy: &str, server: &str) {
    std::fs::write(dir.join("app.rhai"), SCRIPT).unwrap();
    let config = format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
log: {{format: json, level: info}}
server:
{server}
  health_interval: 0s
apps:
  - name: acme
    base_path: /scim/v2
    script: app.rhai
    request_timeout: 60s
    auth: {{bearer_tokens: ["${{env.TOKEN}}"]}}
    legacy: {{base_url: "{legacy}", timeout: 60s}}
"#
    );
    std::fs::write(dir.join("proxy.yaml"), config).unwrap();
}

/// `scim-proxy run` with the configuration [`write_project`] wrote in `dir`.
fn run_command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scim-proxy"));
    command.args(["run", "--config"]).arg(dir.join("proxy.yaml")).env("TOKEN", TOKEN);
    command
}

#[test]
fn a_runtime_thread_count_that_is_no_count_stops_the_start_with_the_variable_named() {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), "http://127.0.0.1:9/api", "  shutdown_grace: 1s");
    for bad in ["0", "two"] {
        let output = run_command(dir.path()).env("TOKIO_WORKER_THREADS", bad).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("TOKIO_WORKER_THREADS is \"{bad}\"")), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Waits for the child's exit within `within`; answers its exit code.
fn exit_code(child: &mut Child, within: Duration) -> Option<i32> {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {within:?} later");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request on a connection of its own; answers the head and the JSON body.
async fn exchange(addr: &str, method: &str, path: &str, body: Option<Value>) -> (String, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nx-request-id: cut-{method}\r\ncontent-type: application/scim+json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_time_requests_still_running_are_answered_and_the_exit_code_says_so() {
    for threads in RUNTIMES {
        cut_short_on(threads).await;
    }
}

async fn cut_short_on(threads: Option<&str>) {
    let (legacy, heard) = silent_legacy().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, scim, lines) = start(dir.path(), &legacy, "  shutdown_grace: 1s", threads);
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "cut"});
    let read = tokio::spawn(exchange_owned(scim.clone(), "GET", "/scim/v2/Users/7", None));
    let write = tokio::spawn(exchange_owned(scim.clone(), "POST", "/scim/v2/Users", Some(user)));
    // Both are in the legacy app's hands, which never answers.
    let until = Instant::now() + Duration::from_secs(10);
    while heard.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(Instant::now() < until, "the legacy app never heard both requests");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    signal(&child, "TERM");
    let (read_head, read_body) = read.await.unwrap();
    let (write_head, write_body) = write.await.unwrap();
    let answered = stopping.elapsed();
    assert!(answered < Duration::from_secs(5), "answered {answered:?} after SIGTERM with a 1 s grace");
    for (head, body) in [(&read_head, &read_body), (&write_head, &write_body)] {
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(head.to_ascii_lowercase().contains("\r\nconnection: close"), "{head}");
        assert_eq!(body["status"], "503", "{body}");
    }
    assert!(read_body["detail"].as_str().unwrap().ends_with("send it again"), "{read_body}");
    assert!(write_body["detail"].as_str().unwrap().contains("may or may not have been made"), "{write_body}");
    let code = tokio::task::spawn_blocking(move || exit_code(&mut child, Duration::from_secs(10))).await.unwrap();
    assert_eq!(code, Some(3), "the exit code says the drain was cut short");
    let lines: Vec<String> = lines.try_iter().collect();
    for line in &lines {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_ne!(parsed["message"], "panic", "{line}");
    }
    let cut: Vec<&String> = lines.iter().filter(|l| l.contains("request cut short")).collect();
    assert_eq!(cut.len(), 2, "{lines:#?}");
    assert!(cut.iter().any(|l| l.contains("cut-GET")) && cut.iter().any(|l| l.contains("cut-POST")), "{cut:#?}");
    // The last line, made just before the exit: the log lines still gathered
    // (`log.flush_interval`) are written before the process exits.
    assert!(lines.iter().any(|l| l.contains("stopped before every request finished")), "{lines:#?}");
}

async fn exchange_owned(
    addr: String,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
) -> (String, Value) {
    exchange(&addr, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_drain_exits_zero_and_a_second_sigterm_exits_at_once() {
    for threads in RUNTIMES {
        drained_on(threads).await;
    }
}

async fn drained_on(threads: Option<&str>) {
    let (legacy, _) = silent_legacy().await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing in flight: the drain ends at once, exit code 0. Its log's reader is gone (the
    // receiver is dropped, the pipe closed): the proxy logs on without it, and without dying.
    let (mut child, _, _) = start(dir.path(), &legacy, "  shutdown_grace: 5s", threads);
    signal(&child, "TERM");
    let code = tokio::task::spawn_blocking(move || exit_code(&mut child, Duration::from_secs(10))).await.unwrap();
    assert_eq!(code, Some(0));
    // A 60 s shutdown delay: the first SIGTERM starts it, the second ends the process now.
    let (mut child, _, _) = start(dir.path(), &legacy, "  shutdown_delay: 60s", threads);
    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    signal(&child, "TERM");
    let code = tokio::task::spawn_blocking(move || exit_code(&mut child, Duration::from_secs(10))).await.unwrap();
    assert_eq!(code, Some(3));
    assert!(second.elapsed() < Duration::from_secs(3), "{:?} after the second SIGTERM", second.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_http1_connections_at_once_are_served_on_every_runtime() {
    let acme = crate::support::TestEnv::start().await; // only for its Acme Directory
    let server = "  shutdown_grace: 5s\n  header_read_timeout: 1s";
    for threads in RUNTIMES {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, scim, _) = start(dir.path(), &acme.legacy.base_url(), server, threads);
        // Clients that connect and send nothing, spread over the threads like the others.
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(tokio::net::TcpStream::connect(&scim).await.unwrap());
        }
        let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
        let http1 = reqwest::Client::builder().http1_only().build().unwrap();
        let create = |client: &reqwest::Client, name: String| {
            let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
            client.post(format!("http://{scim}/scim/v2/Users")).bearer_auth(TOKEN).json(&user).send()
        };
        // One h2 connection: requests one after another, then many at once beside HTTP/1.1 ones.
        for n in 0..3 {
            let reply = create(&h2, format!("seq-{n}")).await.unwrap();
            assert_eq!((reply.version(), reply.status().as_u16()), (reqwest::Version::HTTP_2, 201), "{threads:?}");
        }
        let mut sent = Vec::new();
        for n in 0..16 {
            sent.push((reqwest::Version::HTTP_2, tokio::spawn(create(&h2, format!("h2-{n}")))));
            sent.push((reqwest::Version::HTTP_11, tokio::spawn(create(&http1, format!("h1-{n}")))));
        }
        for (version, reply) in sent {
            let reply = reply.await.unwrap().unwrap();
            assert_eq!((reply.version(), reply.status().as_u16()), (version, 201), "{threads:?}");
        }
        // Each silent one is closed by its thread once `header_read_timeout` is over.
        for mut stream in silent {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{threads:?}: a silent connection stayed open");
        }
        signal(&child, "TERM");
        let code = tokio::task::spawn_blocking(move || exit_code(&mut child, Duration::from_secs(10))).await.unwrap();
        assert_eq!(code, Some(0), "{threads:?}");
    }
}
