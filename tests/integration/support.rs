//! Test fixtures: an Acme Directory and a proxy in front of it, and a small SCIM client.

#![allow(dead_code)]

use std::path::PathBuf;

use acme::{AcmeConfig, AcmeHandle};
use reqwest::{Method, StatusCode};
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime::{self, Running};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Secrets the tests send: none may appear in any log line of the whole suite (checked as
/// each line is written, and asserted when every test environment is dropped).
pub(crate) const NEVER_LOGGED: &[&str] =
    &[TOKEN, OTHER_TOKEN, API_KEY, "Hunter2-secret", "Correct-Horse-9", "S3cret!pass", "audit-Passw0rd"];

static LOGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static LEAKS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Where the proxy's log lines go in tests: kept for assertions, scanned for secrets, and
/// shown on stderr when `SCIM_TEST_LOG` is set.
struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf).into_owned();
        if std::env::var_os("SCIM_TEST_LOG").is_some() {
            eprint!("{line}");
        }
        if contains_secret(&line) {
            LEAKS.lock().unwrap().push(line.clone());
        }
        let mut logs = LOGS.lock().unwrap();
        if logs.len() < 200_000 {
            logs.push(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// True when a line holds one of the secrets that must never be logged.
pub(crate) fn contains_secret(line: &str) -> bool {
    NEVER_LOGGED.iter().any(|secret| line.contains(secret))
}

/// Installs the capturing log subscriber (once per test binary), at debug level for the proxy
/// and for the Acme Directory crate (`acme`), the legacy side of the tests.
pub(crate) fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("scim_proxy=debug,acme=debug,info")
        .with_ansi(false)
        .with_writer(|| CaptureWriter)
        .try_init();
}

/// The log lines written so far that contain every one of `needles`.
pub(crate) fn log_lines_with(needles: &[&str]) -> Vec<String> {
    LOGS.lock().unwrap().iter().filter(|line| needles.iter().all(|n| line.contains(n))).cloned().collect()
}

/// Fails when a log line so far contained a secret.
pub(crate) fn assert_no_secret_logged() {
    let leaks = LEAKS.lock().unwrap();
    assert!(leaks.is_empty(), "secrets reached the log:\n{}", leaks.join(""));
}

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";
pub(crate) const OTHER_TOKEN: &str = "other-app-token-0123456789";
pub(crate) const API_KEY: &str = "acme-test-key";

/// Everything logged so far by any test of this binary, as one text.
pub(crate) fn logs() -> String {
    LOGS.lock().unwrap().concat()
}

/// The path of a file in the repository.
pub(crate) fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The demo script with the prefix of its group ids taken away, as it was before groups got
/// ids of their own: team 7 is group "7", the id of user 7. For tests of the shared-id warning.
pub(crate) fn demo_script_sharing_ids() -> String {
    let demo = std::fs::read_to_string(repo_file("scripts/demo.rhai")).unwrap();
    let prefix = r#"fn team_prefix() { "team-" }"#;
    assert!(demo.contains(prefix), "scripts/demo.rhai no longer has {prefix}");
    demo.replace(prefix, r#"fn team_prefix() { "" }"#)
}

/// The test configuration: the demo app and a second app with its own token and base path.
pub(crate) fn config_text(script: &std::path::Path) -> String {
    let script = script.display();
    format!(
        r#"
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
server:
  max_body_bytes: 65536
  # The demo script's health() would add a legacy call every 10 s to what tests count; the
  # tests of readiness turn it back on.
  health_interval: 0s
apps:
  - name: acme
    base_path: /scim/v2
    script: "{script}"
    auth:
      bearer_tokens: ["${{env.TOKEN}}"]
    legacy:
      base_url: "${{env.ACME_BASE_URL}}"
      headers:
        X-Api-Key: "${{env.ACME_API_KEY}}"
      timeout: 5s
    request_timeout: 10s
    list:
      max_scan: 2000
      max_results: 500
    schema:
      user_attributes: [userName, name, displayName, title, active, emails, phoneNumbers, password, groups]
      enterprise_user: [employeeNumber, department, manager]
  - name: other
    base_path: /other/scim
    script: "{script}"
    auth:
      bearer_tokens: ["${{env.OTHER_TOKEN}}"]
    legacy:
      base_url: "${{env.ACME_BASE_URL}}"
      headers:
        X-Api-Key: "${{env.ACME_API_KEY}}"
"#
    )
}

/// The error with which the proxy refuses to start on the configuration `text` (every
/// `${env…}` it uses set to a long secret, the legacy app unreachable); fails the test when it
/// starts.
pub(crate) async fn start_error(text: &str) -> String {
    let mut vars = Variables::default();
    for name in ["TOKEN", "OTHER_TOKEN", "ACME_API_KEY"] {
        vars.set(name, "a-long-enough-secret-0123456789");
    }
    vars.set("ACME_BASE_URL", "http://127.0.0.1:1/api");
    let config = Config::parse(text, "test.yaml", &vars).unwrap();
    match runtime::start(&config, None, None).await {
        Ok(_) => panic!("the proxy started on:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// An Acme Directory with a proxy in front of it.
pub(crate) struct TestEnv {
    pub legacy: AcmeHandle,
    pub proxy: Option<Running>,
    pub config: Config,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    /// The demo script and the test configuration.
    pub(crate) async fn start() -> Self {
        Self::start_with(|text| text).await
    }

    /// The test configuration after `edit`.
    pub(crate) async fn start_with(edit: impl FnOnce(String) -> String) -> Self {
        Self::start_script(None, edit).await
    }

    /// A script of the test's own (`Some`) or the demo script, and the configuration after `edit`.
    pub(crate) async fn start_script(script: Option<&str>, edit: impl FnOnce(String) -> String) -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let script_path = match script {
            Some(text) => {
                let path = dir.path().join("app.rhai");
                std::fs::write(&path, text).unwrap();
                path
            }
            None => repo_file("scripts/demo.rhai"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let legacy = acme::start(listener, AcmeConfig::new(API_KEY)).await.unwrap();
        let text = edit(config_text(&script_path));
        let config = Config::parse(&text, "test.yaml", &Self::variables(&legacy.base_url())).unwrap();
        let proxy = runtime::start(&config, None, None).await.unwrap();
        Self { legacy, proxy: Some(proxy), config, client: reqwest::Client::new(), _dir: dir }
    }

    /// The test configuration after `edit`, written to `proxy.yaml` in a temporary folder and
    /// loaded from there, so that the proxy can reload it (see `config_file`).
    pub(crate) async fn start_from_file(edit: impl FnOnce(String) -> String) -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let legacy = acme::start(listener, AcmeConfig::new(API_KEY)).await.unwrap();
        let file = dir.path().join("proxy.yaml");
        std::fs::write(&file, edit(config_text(&repo_file("scripts/demo.rhai")))).unwrap();
        let config = Config::load(&file, &Self::variables(&legacy.base_url())).unwrap();
        let proxy = runtime::start(&config, None, None).await.unwrap();
        Self { legacy, proxy: Some(proxy), config, client: reqwest::Client::new(), _dir: dir }
    }

    /// The file the configuration was loaded from (`start_from_file`).
    pub(crate) fn config_file(&self) -> PathBuf {
        self.config.file.clone()
    }

    /// The shipped `proxy.yaml` and demo script, as `scim-proxy demo` runs them.
    pub(crate) async fn start_shipped_config() -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let legacy = acme::start(listener, AcmeConfig::new(API_KEY)).await.unwrap();
        let mut vars = Self::variables(&legacy.base_url());
        vars.set("SCIM_TOKEN", TOKEN);
        let mut config = Config::load(&repo_file("proxy.yaml"), &vars).unwrap();
        // The demo's health() would add legacy calls to what tests count, at start and then
        // every 10 s.
        config.server.health_interval = std::time::Duration::ZERO;
        let any = Some("127.0.0.1:0".parse().unwrap());
        let proxy = runtime::start(&config, any, any).await.unwrap();
        Self { legacy, proxy: Some(proxy), config, client: reqwest::Client::new(), _dir: dir }
    }

    fn variables(base_url: &str) -> Variables {
        let mut vars = Variables::default();
        vars.set("TOKEN", TOKEN);
        vars.set("OTHER_TOKEN", OTHER_TOKEN);
        vars.set("ACME_BASE_URL", base_url);
        vars.set("ACME_API_KEY", API_KEY);
        vars
    }

    /// The path of the first app's script.
    pub(crate) fn script_path(&self) -> PathBuf {
        self.running().shared.state().apps[0].script.compiled().path().to_path_buf()
    }

    fn running(&self) -> &Running {
        self.proxy.as_ref().unwrap()
    }

    /// The SCIM base URL of the first app.
    pub(crate) fn base(&self) -> String {
        format!("http://{}/scim/v2", self.running().scim_addr)
    }

    /// The admin base URL.
    pub(crate) fn admin(&self) -> String {
        format!("http://{}", self.running().admin_addr)
    }

    /// Stops the proxy and starts a fresh one (cold caches) in front of the same legacy API.
    pub(crate) async fn restart_proxy(&mut self) {
        if let Some(running) = self.proxy.take() {
            running.shutdown().await;
        }
        let any = Some("127.0.0.1:0".parse().unwrap());
        self.proxy = Some(runtime::start(&self.config, any, any).await.unwrap());
    }

    /// Sends a request with the first app's token.
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send_as(TOKEN, method, &format!("{}{path}", self.base()), body).await
    }

    /// Sends a request to a full URL with a given token.
    pub(crate) async fn send_as(&self, token: &str, method: Method, url: &str, body: Option<Value>) -> Reply {
        send_scim(&self.client, token, method, url, body).await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// Creates a user through SCIM and returns its id.
    pub(crate) async fn create_user(&self, user_name: &str) -> String {
        let reply = self.post("/Users", user(user_name)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_no_secret_logged();
        }
    }
}

/// Sends a SCIM request to a full URL with a token (and a JSON body as `application/scim+json`).
pub(crate) async fn send_scim(
    client: &reqwest::Client,
    token: &str,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/scim+json").body(body.to_string());
    }
    Reply::read(request.send().await.unwrap()).await
}

/// A SCIM User body.
pub(crate) fn user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Given", "familyName": "Family"},
        "displayName": format!("{user_name} display"),
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub(crate) async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, headers, body, text }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a SCIM error with this status and scimType (`None`: no scimType).
    pub(crate) fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/scim+json"), "{}", self.text);
        assert_eq!(self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{}", self.text);
        assert_eq!(self.body["status"], status.to_string(), "{}", self.text);
        assert_eq!(self.body["scimType"].as_str(), scim_type, "{}", self.text);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", self.text);
    }
}

/// A legacy app written at the socket level: it records the head (request line and headers)
/// of every request exactly as received, and answers each with what `answer` makes of the
/// head. One request per connection.
pub(crate) struct RawLegacy {
    pub addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RawLegacy {
    pub(crate) async fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let answer = std::sync::Arc::new(answer);
        let (kept, counted) = (heads.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (heads, answer) = (kept.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buf = [0u8; 4096];
                    let head_end = loop {
                        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => received.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
                    heads.lock().unwrap().push(head.clone());
                    let reply = answer(&head);
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, heads, connections }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The heads received so far, in order.
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The request lines received so far (`GET /api/users/12 HTTP/1.1`).
    pub(crate) fn request_lines(&self) -> Vec<String> {
        self.heads().iter().map(|head| head.lines().next().unwrap_or("").to_owned()).collect()
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An HTTP/1.1 answer as bytes on the wire, closing the connection.
pub(crate) fn http_answer(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// Waits up to `within` for a log line containing every one of `needles` (lines written on
/// a script's thread may follow the answer by a moment), and returns the lines found.
pub(crate) async fn wait_for_log(needles: &[&str], within: std::time::Duration) -> Vec<String> {
    let until = std::time::Instant::now() + within;
    loop {
        let lines = log_lines_with(needles);
        if !lines.is_empty() || std::time::Instant::now() >= until {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Normal requests sent by several clients in a loop while a test does something hostile,
/// each timed.
pub(crate) struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<(StatusCode, std::time::Duration)>>>,
}

impl Traffic {
    /// `per_url` clients for each `(token, url)`, each sending GETs until [`Traffic::finish`].
    pub(crate) fn start(targets: &[(&str, String)], per_url: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = reqwest::Client::new();
        let mut clients = Vec::new();
        for (token, url) in targets {
            for _ in 0..per_url {
                let (stop, client, token, url) = (stop.clone(), client.clone(), token.to_string(), url.clone());
                clients.push(tokio::spawn(async move {
                    let mut done = Vec::new();
                    // at least one request each, however quick the hostile part was
                    while done.is_empty() || !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let started = std::time::Instant::now();
                        let status = match client.get(&url).bearer_auth(&token).send().await {
                            Ok(response) => response.status(),
                            Err(_) => StatusCode::IM_A_TEAPOT,
                        };
                        done.push((status, started.elapsed()));
                    }
                    done
                }));
            }
        }
        Self { stop, clients }
    }

    /// Stops the clients and asserts that every request they sent succeeded within `bound`;
    /// returns how many there were.
    pub(crate) async fn finish(self, bound: std::time::Duration) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut all = Vec::new();
        for client in self.clients {
            all.extend(client.await.unwrap());
        }
        let failed: Vec<_> = all.iter().filter(|(status, _)| *status != StatusCode::OK).collect();
        assert!(
            failed.is_empty(),
            "{} of {} normal requests failed: {:?}",
            failed.len(),
            all.len(),
            &failed[..failed.len().min(5)]
        );
        let slowest = all.iter().map(|(_, took)| *took).max().unwrap_or_default();
        assert!(slowest < bound, "the slowest of {} normal requests took {slowest:?}", all.len());
        all.len()
    }
}

/// Serves a fake in-house API on a fresh 127.0.0.1 port: `answer` gets the shared `state`
/// and each request. The task serves until aborted.
pub(crate) async fn serve_fake<S, F, Fut>(
    state: std::sync::Arc<S>,
    answer: F,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
where
    S: Send + Sync + 'static,
    F: Fn(std::sync::Arc<S>, hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (state, answer) = (state.clone(), answer.clone());
            let service = hyper::service::service_fn(move |request| {
                let (state, answer) = (state.clone(), answer.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(state, request).await) }
            });
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, task)
}

/// Reads (and discards) what the server sends until it closes the connection; the time from
/// `since` until then, or `None` when it was still open `within` after `since`.
pub(crate) async fn closed_after<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    since: std::time::Instant,
    within: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout_at((since + within).into(), read).await.ok().map(|()| since.elapsed())
}

/// The `scim-proxy` binary in a process of its own, running `config` (written by the test) in
/// front of the legacy app at `legacy_base_url`; returns it with its SCIM and admin addresses.
pub(crate) fn spawn_proxy_binary(
    config: &std::path::Path,
    legacy_base_url: &str,
) -> (std::process::Child, std::net::SocketAddr, std::net::SocketAddr) {
    spawn_proxy_binary_with(config, legacy_base_url, &[])
}

/// [`spawn_proxy_binary`] with more environment variables (`TOKIO_WORKER_THREADS`, say).
pub(crate) fn spawn_proxy_binary_with(
    config: &std::path::Path,
    legacy_base_url: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, std::net::SocketAddr, std::net::SocketAddr) {
    let scim = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["run", "--config"])
        .arg(config)
        .args(["--listen", &scim.to_string(), "--admin-listen", &admin.to_string()])
        .env("TOKEN", TOKEN)
        .env("OTHER_TOKEN", OTHER_TOKEN)
        .env("ACME_BASE_URL", legacy_base_url)
        .env("ACME_API_KEY", API_KEY)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, scim, admin)
}

/// `scim-proxy demo` on free ports, run in `dir`, its stdout read by [`DemoProcess::start`].
pub(crate) fn demo_command(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"));
    command
        .args(["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("SCIM_TOKEN")
        .env_remove("SCIM_ADMIN_TOKEN")
        .env_remove("ACME_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    command
}

/// A `scim-proxy demo` a test started, stopped when dropped (a failed assertion included).
pub(crate) struct DemoProcess {
    child: std::process::Child,
    /// What it printed, up to its `Try:` line.
    pub lines: Vec<String>,
}

impl DemoProcess {
    /// Starts the demo and reads what it prints until its `Try:` line; fails the test when it
    /// exits before. Blocking: call it from `spawn_blocking` in an async test.
    pub(crate) fn start(mut command: std::process::Command) -> Self {
        use std::io::BufRead as _;
        let child = command.spawn().unwrap();
        let mut demo = Self { child, lines: Vec::new() };
        let stdout = std::io::BufReader::new(demo.child.stdout.take().unwrap());
        for line in stdout.lines() {
            let line = line.unwrap();
            let last = line.starts_with("Try:");
            demo.lines.push(line);
            if last {
                return demo;
            }
        }
        let status = demo.child.wait().unwrap();
        panic!("the demo exited ({status}) after printing {:?}", demo.lines);
    }

    /// The rest of the line printed after `prefix` (`"SCIM endpoint: "`).
    pub(crate) fn printed(&self, prefix: &str) -> Option<&str> {
        self.lines.iter().find_map(|line| line.strip_prefix(prefix))
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app's entry in `/readyz`, polled until `done` holds, for at most `within`.
pub(crate) async fn readyz_until(
    env: &TestEnv,
    within: std::time::Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap().text().await.unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let app = body["apps"][0].clone();
        if done(&app) {
            return app;
        }
        let seen = [&app["script_reloads"], &app["script_reload_failures"], &app["script_error"]];
        assert!(std::time::Instant::now() < deadline, "not seen within {within:?}: reloads, failures, error: {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes a file whole at once, as an editor saving or a Kubernetes ConfigMap update does (a
/// new file renamed over the old): a watcher never reads it half-written.
pub(crate) fn write_whole(file: &std::path::Path, text: &str) {
    let mut next = file.as_os_str().to_owned();
    next.push(".next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, file).unwrap();
}
