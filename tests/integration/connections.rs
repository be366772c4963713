//! Hostile connections: silent ones, idle ones, h2 streams with unfinished bodies, and bodies
//! whose parsed JSON would dwarf their text. Each is closed or refused in bounded time and
//! memory, and a normal request is answered meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TOKEN, TestEnv, closed_after, spawn_proxy_binary};

fn scim_addr(env: &TestEnv) -> SocketAddr {
    env.proxy.as_ref().unwrap().scim_addr
}

fn admin_addr(env: &TestEnv) -> SocketAddr {
    env.proxy.as_ref().unwrap().admin_addr
}

/// The test configuration with these `server:` keys added.
async fn start_with_server(keys: &str) -> TestEnv {
    let keys = keys.to_owned();
    TestEnv::start_with(move |text| text.replace("max_body_bytes: 65536", &format!("max_body_bytes: 65536\n{keys}")))
        .await
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_silent_ones_are_closed_after_header_read_timeout_on_both_listeners() {
    let env = start_with_server("  header_read_timeout: 1s").await;
    let mut silent = Vec::new();
    for addr in [scim_addr(&env), admin_addr(&env)] {
        silent.push((TcpStream::connect(addr).await.unwrap(), Instant::now()));
    }
    for (mut stream, since) in silent {
        let after =
            closed_after(&mut stream, since, Duration::from_secs(10)).await.expect("a silent connection stayed open");
        assert!(after >= Duration::from_millis(800) && after < Duration::from_secs(4), "closed after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_eleven_hundred_silent_ones_do_not_keep_out_a_normal_request() {
    // Each silent connection is an open file here, and one in the proxy while it is served:
    // with a soft limit too low for 1,100 of them, fewer against a lower max_connections.
    let (silent, max_connections) = match open_files_limit() {
        n if n >= 2600 => (1100, 1024),
        n => ((n - 400) / 2, (n - 400) / 2 - 76),
    };
    let env = TestEnv::start_with(|text| {
        text.replace(
            "max_body_bytes: 65536",
            &format!("max_body_bytes: 65536\n  header_read_timeout: 1s\n  max_connections: {max_connections}"),
        )
    })
    .await;
    let addr = scim_addr(&env);
    let mut held = Vec::with_capacity(silent);
    for _ in 0..silent {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let response = client.get(format!("{}/Users?count=1", env.base())).bearer_auth(TOKEN).send().await;
    let status = response.as_ref().map(reqwest::Response::status);
    assert!(matches!(status, Ok(StatusCode::OK)), "{silent} silent connections kept a request out: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    // And every silent one is closed: made room for, or timed out.
    let closes: Vec<_> = held
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move { closed_after(&mut stream, started, Duration::from_secs(10)).await })
        })
        .collect();
    for close in closes {
        assert!(close.await.unwrap().is_some(), "a silent connection stayed open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_admin_port_answers_probes_while_full_of_silent_clients() {
    // The default header_read_timeout (10 s) and admin cap (64): the probes are answered
    // because the idlest connection makes room, not because the silent ones time out.
    let env = TestEnv::start().await;
    let mut silent = Vec::new();
    for _ in 0..80 {
        silent.push(TcpStream::connect(admin_addr(&env)).await.unwrap());
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    for probe in ["/healthz", "/readyz", "/healthz"] {
        let started = Instant::now();
        let response = client.get(format!("{}{probe}", env.admin())).send().await;
        let status = response.as_ref().map(reqwest::Response::status);
        assert!(matches!(status, Ok(StatusCode::OK)), "{probe} with 80 silent clients: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{probe} answered after {:?}", started.elapsed());
    }
    drop(silent);
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: an h2c client with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_h2c_without_a_complete_request_is_closed_after_header_read_timeout() {
    let env = start_with_server("  header_read_timeout: 1s").await;
    // The preface and nothing more; and a HEADERS frame without END_HEADERS (flags 0) whose
    // CONTINUATION never comes: `:method GET`, `:scheme http`, `:path /` in HPACK.
    let unfinished_headers = [&[0u8, 0, 3, 1, 0, 0, 0, 0, 1][..], &[0x82, 0x86, 0x84]].concat();
    for tail in [&b""[..], &unfinished_headers] {
        let mut stream = TcpStream::connect(scim_addr(&env)).await.unwrap();
        let since = Instant::now();
        stream.write_all(&[H2_PREFACE, tail].concat()).await.unwrap();
        let after = closed_after(&mut stream, since, Duration::from_secs(10)).await;
        let after = after.unwrap_or_else(|| panic!("open after 10 s (sent {} bytes after the preface)", tail.len()));
        assert!(after >= Duration::from_millis(800) && after < Duration::from_secs(4), "closed after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_idle_ones_are_closed_after_idle_timeout_and_a_stalled_head_after_header_read_timeout() {
    let env = start_with_server("  header_read_timeout: 1s\n  idle_timeout: 3s").await;
    let request = format!("GET /scim/v2/Users?count=1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");

    // HTTP/1.1 keep-alive: one request, then nothing; kept past header_read_timeout, closed
    // at idle_timeout.
    let mut idle = TcpStream::connect(scim_addr(&env)).await.unwrap();
    idle.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let after =
        closed_after(&mut idle, Instant::now(), Duration::from_secs(15)).await.expect("an idle connection stayed open");
    assert!(after >= Duration::from_millis(2500) && after < Duration::from_secs(7), "closed after {after:?}");

    // A request, then half of the next head: header_read_timeout from that first byte.
    let mut stalled = TcpStream::connect(scim_addr(&env)).await.unwrap();
    stalled.write_all(request.as_bytes()).await.unwrap();
    stalled.read_exact(&mut answer).await.unwrap();
    stalled.write_all(b"GET /scim/v2/Us").await.unwrap();
    let after =
        closed_after(&mut stalled, Instant::now(), Duration::from_secs(15)).await.expect("a stalled head stayed open");
    assert!(after >= Duration::from_millis(800) && after < Duration::from_millis(2500), "closed after {after:?}");

    // h2: one request, then a PING and nothing more: a GOAWAY at idle_timeout ends the
    // connection. Frames between requests (PING, WINDOW_UPDATE, SETTINGS) are no request head,
    // so they do not start header_read_timeout.
    let tcp = TcpStream::connect(scim_addr(&env)).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut ping_pong = connection.ping_pong().unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/scim/v2/Users?count=1", scim_addr(&env)))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(())
        .unwrap();
    // (the client is kept: dropping it would end the connection from this side)
    let (response, _) = client.clone().ready().await.unwrap().send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), StatusCode::OK);
    let started = Instant::now();
    ping_pong.ping(h2::Ping::opaque()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
    assert!(ended.is_ok(), "an idle h2 connection stayed open");
    drop(client);
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(2500) && after < Duration::from_secs(7), "closed after {after:?}");
}

/// Padding sent as request bodies.
static PAD: [u8; 128 * 1024] = [b' '; 128 * 1024];

/// h2 streams with unfinished bodies on one connection; dropping it cancels them.
struct Flood {
    /// The stream limit the proxy advertised.
    limit: usize,
    /// The body bytes the proxy's flow control let through, once that stopped growing.
    taken: usize,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Flood {
    fn drop(&mut self) {
        for sender in &self.senders {
            sender.abort();
        }
    }
}

/// Opens `streams` POSTs on one h2c connection, each declaring a body of `length` bytes and
/// sending as much of it as the proxy's flow control lets through, never the end.
async fn flood_h2(addr: SocketAddr, streams: usize, length: usize) -> Flood {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let client = client.ready().await.unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..streams {
        let (client, taken) = (client.clone(), taken.clone());
        senders.push(tokio::spawn(async move {
            let request = http::Request::post(format!("http://{addr}/scim/v2/Users"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/scim+json")
                .header("content-length", length.to_string())
                .body(())
                .unwrap();
            let Ok(mut client) = client.ready().await else { return };
            let Ok((_response, mut body)) = client.send_request(request, false) else { return };
            let mut left = length;
            while left > 0 {
                body.reserve_capacity(left);
                match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                    Some(Ok(granted)) if granted > 0 => {
                        let n = granted.min(left).min(PAD.len());
                        if body.send_data(Bytes::from_static(&PAD[..n]), false).is_err() {
                            return;
                        }
                        taken.fetch_add(n, Ordering::SeqCst);
                        left -= n;
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
            // every byte sent, the end never: the request waits for the rest of its body
            std::future::pending::<()>().await;
        }));
    }
    // Taken in once it has not grown for two seconds (at most 15 s): on a machine busy with the
    // rest of the suite, the proxy may take a second to read what a stream sent.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = (0, Instant::now());
    while Instant::now() < deadline && last.1.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = taken.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let limit = client.current_max_send_streams();
    Flood { limit, taken: taken.load(Ordering::SeqCst), senders }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_h2_streams_with_unfinished_bodies_stay_within_the_memory_bound() {
    // 256 streams of 16 KiB bodies per connection: 4 MiB if every stream's body were read.
    // The bound per connection is the h2 connection window (1 MiB) plus max_body_bytes,
    // however many streams carry them. (Small bodies: the h2 client spreads the window over
    // streams; with bodies the size of a stream's window it sends on two or four at a time.)
    let (max_body, body) = (128 * 1024, 16 * 1024);
    let env =
        TestEnv::start_with(|text| text.replace("max_body_bytes: 65536", &format!("max_body_bytes: {max_body}"))).await;
    let addr = scim_addr(&env);
    let floods: Vec<_> = (0..2).map(|_| tokio::spawn(flood_h2(addr, 256, body))).collect();
    for flood in floods {
        let flood = flood.await.unwrap();
        let (streams, taken) = (flood.limit, flood.taken);
        assert_eq!(streams, 100, "the proxy's h2 stream limit (server.max_concurrent_streams)");
        let bound = 1024 * 1024 + max_body;
        assert!(taken <= bound, "one connection's unfinished bodies took {taken} bytes, over {bound}");
        assert!(taken > 1024 * 1024, "no body was read, so the window was never refilled: {taken}");
        eprintln!("h2 flood of 256 streams: limit {streams} streams, {taken} body bytes taken in (bound {bound})");
    }
    let reply = env.get("/Users?count=1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

/// A figure of `/proc/PID/status` in bytes: `VmRSS` (resident now) or `VmHWM` (its peak).
fn memory_bytes(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// The `scim-proxy` binary in a process of its own (so that its memory is its alone), with
/// these `server:` keys, serving; killed when dropped.
struct ProxyProcess {
    child: std::process::Child,
    scim: SocketAddr,
    _legacy: TestEnv,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    async fn start(server_keys: &str) -> Self {
        let legacy = TestEnv::start().await; // only for its Acme Directory
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.yaml");
        let text = crate::support::config_text(&crate::support::repo_file("scripts/demo.rhai"))
            .replace("  max_body_bytes: 65536", server_keys);
        std::fs::write(&file, &text).unwrap();
        let (child, scim, _) = spawn_proxy_binary(&file, &legacy.legacy.base_url());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sent = client.get(format!("http://{scim}/scim/v2/Users?count=1")).bearer_auth(TOKEN).send().await;
            if sent.is_ok_and(|r| r.status() == StatusCode::OK) {
                break;
            }
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, scim, _legacy: legacy, _dir: dir }
    }

    fn memory(&self, field: &str) -> usize {
        memory_bytes(self.child.id(), field)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_h2_floods_keep_the_proxy_process_within_the_readmes_memory_bound() {
    // Every connection the proxy allows floods 256 h2 streams with unfinished 16 KiB bodies
    // (16 MiB in all were every body read). The README's bound:
    // max_connections × (max_body_bytes + 1 MiB + max_concurrent_streams × 16 KiB).
    let (connections, max_body, streams) = (4usize, 256 * 1024usize, 100usize);
    let proxy = ProxyProcess::start(&format!("  max_body_bytes: {max_body}\n  max_connections: {connections}")).await;
    let before = proxy.memory("VmRSS:");
    let floods: Vec<_> = (0..connections).map(|_| tokio::spawn(flood_h2(proxy.scim, 256, 16 * 1024))).collect();
    let mut held = Vec::new();
    for flood in floods {
        held.push(flood.await.unwrap());
    }
    let after = proxy.memory("VmRSS:");
    let bound = connections * (max_body + 1024 * 1024 + streams * 16 * 1024);
    let grown = after.saturating_sub(before);
    let taken: Vec<_> = held.iter().map(|flood| flood.taken).collect();
    eprintln!(
        "h2 floods: {connections} connections x 256 streams took in {taken:?} body bytes; resident {before} -> {after} bytes (+{grown}, bound {bound})"
    );
    assert!(grown <= bound, "the proxy grew by {grown} bytes, over the README's bound of {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_bulk_bodies_of_empty_arrays_are_refused_before_they_are_parsed_whole() {
    // 16 Bulk requests at once of 1 MiB of `[],` each: 350,000 values, 14 MiB once parsed.
    // Each is refused at its 100,001st value: at most its text twice (read, then collected)
    // and 100,000 values of 42 bytes.
    let (max_body, requests) = (1024 * 1024usize, 16usize);
    let proxy = ProxyProcess::start(&format!("  max_body_bytes: {max_body}")).await;
    let head = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":["#;
    let count = (max_body - head.len() - 8) / 3;
    let body = Arc::new(format!("{head}{}[]]}}", "[],".repeat(count)));
    assert!(body.len() <= max_body);
    let before = proxy.memory("VmHWM:");
    let client = reqwest::Client::new();
    let sends: Vec<_> = (0..requests)
        .map(|_| {
            let (client, body, url) = (client.clone(), body.clone(), format!("http://{}/scim/v2/Bulk", proxy.scim));
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/scim+json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await
                    .unwrap();
                crate::support::Reply::read(response).await
            })
        })
        .collect();
    for send in sends {
        let reply = send.await.unwrap();
        reply.assert_error(413, None);
        assert!(reply.body["detail"].as_str().unwrap().contains("more than 100000 JSON values"), "{}", reply.text);
    }
    let peak = proxy.memory("VmHWM:");
    let bound = requests * (2 * max_body + 100_000 * 42);
    let grown = peak.saturating_sub(before);
    eprintln!("{requests} bulk bodies of [],: peak resident {before} -> {peak} bytes (+{grown}, bound {bound})");
    assert!(grown <= bound, "the proxy's peak grew by {grown} bytes, over {bound}");
    let still = client.get(format!("http://{}/scim/v2/Users?count=1", proxy.scim)).bearer_auth(TOKEN).send().await;
    assert_eq!(still.unwrap().status(), StatusCode::OK);
}
