//! Load benchmark: the proxy under N concurrent keep-alive connections, against two
//! references on the same legacy API — the equivalent Acme calls made directly, and a
//! minimal proxy that only forwards bytes. Prints one table.
//!
//! Run with `cargo bench --bench load`. Environment:
//! - `LOAD_SECONDS` (default 5): measured seconds of each run; `LOAD_SECONDS=2` is a quick mode.
//! - `LOAD_WARMUP` (default 1): seconds of warm-up before each run, not measured.
//! - `LOAD_CONNECTIONS` (default `1,32`): the connection counts.
//! - `LOAD_SOAK` (seconds, unset by default): instead of the table, a long run of every case
//!   against the proxy at 32 connections, printing its resident memory as it goes (e.g.
//!   `LOAD_SOAK=300` for five minutes).
//! - `LOAD_LOG` (default `info`, as in production): the proxy's log level.
//! - `LOAD_PROXY_BIN`: another `scim-proxy` binary to measure (say, the build before a change).
//! - `LOAD_PROXY_SCRIPT`: the mapping it runs instead of `scripts/demo.rhai` (the demo as it
//!   was, for a build that predates what the mapping now uses; the cycle's A/B needs it).
//! - `LOAD_BASELINE_BIN`: a second `scim-proxy` binary measured in the same run as a fourth
//!   target, `baseline`, beside the proxy in every round (the two swap places every other
//!   round) and taking turns with it in the in-proxy listing runs: an A/B of two builds on one
//!   machine at one time, the only comparison a shared machine allows.
//! - `LOAD_BASELINE_SCRIPT`: the mapping the baseline runs instead of `scripts/demo.rhai`
//!   (the demo's mapping as it was, for a build that predates what the mapping now uses).
//! - `LOAD_ROUNDS` (default 1): every case is run this many times, round after round, and
//!   each figure of the table is the median over the rounds (memory: the first round's).
//! - `LOAD_CASES` (a word of the request column, e.g. `POST`) and `LOAD_TARGETS` (e.g.
//!   `scim-proxy`): only the runs that match, say to profile one case.
//! - `LOAD_CYCLE` (a number of users, e.g. `10000`): instead of the table, an initial
//!   provisioning cycle shaped as Entra ID runs it, one user after another — `GET
//!   /Users?filter=userName eq "…"` (not found), `POST /Users` with Entra's default body, then
//!   `PATCH /Groups/{id}` adding the new user to a group — and the same legacy calls made
//!   directly; total time, CPU seconds of the proxy and of Acme, legacy calls.
//! - `LOAD_LISTINGS` (default 6): how many times the in-proxy filter over the full listing
//!   is timed, and the sorted page of it with the proxy's peak memory (a larger number, with
//!   `LOAD_CASES=none`, to profile those listings alone).
//! - `LOAD_PIN=1`: the sidecar layout. The proxy, the byte-forwarding reference and the Acme
//!   instances are pinned to CPU 0 (a sidecar and its app sharing one core), the load
//!   generator to CPU 1 with one runtime thread (`taskset`). Unset, nothing is pinned.
//!
//! Processes: this process runs the load generator. The two Acme Directory instances (one
//! with 10,000 users, one with a 50,000-member group) run in a child process of their own
//! (`LOAD_ROLE=acme`), so that they can share the proxy's core. The proxy under test is the
//! release `scim-proxy run` binary, a child process; the byte-forwarding reference is this
//! same executable re-run as a child (`LOAD_ROLE=reference`). Their CPU time (`utime + stime`
//! from `/proc/<pid>/stat`, all threads), context switches (voluntary and not, summed over
//! `/proc/<pid>/task/*/status`) and memory (`VmRSS`/`VmHWM` from `/proc/<pid>/status`) are
//! read around each measured run, so they are theirs alone and not the generator's or Acme's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acme::{AcmeConfig, store::NewTeam};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "load-token-0123456789abcdef";
const API_KEY: &str = "load-key";
const USERS: u64 = 10_000;
const MEMBERS: usize = 50_000;
/// Users of the group instance that are not members at the start: what the PATCHes add.
const SPARE: usize = 20_000;

// ------------------------------------------------------------------ the reference proxy

/// The reference: a hyper server whose every request is sent on, body unread, by a pooled
/// hyper client to `/a/…` → Acme A, `/b/…` → Acme B, and whose answer is streamed back.
async fn reference_proxy() {
    let a: SocketAddr = std::env::var("LOAD_UPSTREAM_A").unwrap().parse().unwrap();
    let b: SocketAddr = std::env::var("LOAD_UPSTREAM_B").unwrap().parse().unwrap();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let client = client.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let client = client.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let (upstream, rest) = match path_and_query.get(..3) {
                    Some("/a/") => (a, &path_and_query[2..]),
                    _ => (b, &path_and_query[2..]),
                };
                parts.uri = format!("http://{upstream}{rest}").parse().unwrap();
                parts.headers.remove(http::header::HOST);
                match client.request(Request::from_parts(parts, body)).await {
                    Ok(response) => Ok::<_, Infallible>(response.map(http_body_util::Either::Left)),
                    Err(_) => {
                        let mut response = Response::new(http_body_util::Either::Right(Full::new(Bytes::new())));
                        *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                        Ok(response)
                    }
                }
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

// ------------------------------------------------------------------ child processes

/// CPU time and memory of a child process, from `/proc`.
struct Proc {
    pid: u32,
    ticks_per_second: f64,
}

impl Proc {
    fn new(pid: u32) -> Self {
        let ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0);
        Self { pid, ticks_per_second: ticks }
    }

    /// User plus system CPU seconds of every thread so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // The command name may hold spaces: the fields are counted after its closing ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
        (field(11) + field(12)) / self.ticks_per_second
    }

    /// Context switches of every live thread so far, voluntary and not, by thread id.
    fn context_switches(&self) -> BTreeMap<String, u64> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else { return BTreeMap::new() };
        let mut by_thread = BTreeMap::new();
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let mut total = 0;
            for line in status.lines() {
                if line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:") {
                    total += line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                }
            }
            by_thread.insert(task.file_name().to_string_lossy().into_owned(), total);
        }
        by_thread
    }

    fn status_mib(&self, key: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }

    fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    fn peak_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resets the peak mark (`clear_refs` 5), so that the next peak reading covers what follows.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True in the sidecar layout (`LOAD_PIN=1`).
fn pinned() -> bool {
    std::env::var("LOAD_PIN").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A command for a child of the system under test: on CPU 0 in the sidecar layout.
fn on_system_core(program: &str) -> Command {
    if pinned() {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", program]);
        command
    } else {
        Command::new(program)
    }
}

/// The two Acme instances, in their child process.
struct Legacy {
    _child: Killed,
    process: Proc,
    a: SocketAddr,
    b: SocketAddr,
    team: u64,
    spare_first: u64,
    /// A team of instance A, empty at the start: the group of the provisioning cycle.
    cycle_team: u64,
    control: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
}

impl Legacy {
    fn start() -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = on_system_core(exe.to_str().unwrap())
            .env("LOAD_ROLE", "acme")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"acme"), "the Acme child did not start: {line}");
        let process = Proc::new(child.id());
        Self {
            _child: Killed(child),
            process,
            a: fields[1].parse().unwrap(),
            b: fields[2].parse().unwrap(),
            team: fields[3].parse().unwrap(),
            spare_first: fields[4].parse().unwrap(),
            cycle_team: fields[5].parse().unwrap(),
            control: Mutex::new((stdin, stdout)),
        }
    }

    fn addr(&self, instance: char) -> SocketAddr {
        if instance == 'a' { self.a } else { self.b }
    }

    fn base_url(&self, instance: char) -> String {
        format!("http://{}/api/v1", self.addr(instance))
    }

    /// Requests the instance has served so far.
    fn served(&self, instance: char) -> u64 {
        let mut control = self.control.lock().unwrap();
        let (stdin, stdout) = &mut *control;
        writeln!(stdin, "{instance}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }
}

/// `LOAD_ROLE=acme`: both instances seeded, their addresses printed, then one line a question
/// (`a` or `b`) answered with the requests that instance has served.
async fn legacy_role() {
    let listen = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let a = acme::start(listen().await, AcmeConfig::new(API_KEY)).await.unwrap();
    a.store().seed_users(USERS as usize);
    let b = acme::start(listen().await, AcmeConfig::new(API_KEY)).await.unwrap();
    let b_users = b.store().seed_users(MEMBERS + SPARE);
    let team = b.store().create_team(NewTeam { name: "Everyone".into(), ..Default::default() }).unwrap();
    b.store().seed_team_members(team.id, &b_users[..MEMBERS]).unwrap();
    let provisioned = a.store().create_team(NewTeam { name: "Provisioned".into(), ..Default::default() }).unwrap();
    println!("acme {} {} {} {} {}", a.addr(), b.addr(), team.id, b_users[MEMBERS], provisioned.id);
    std::io::stdout().flush().unwrap();
    let questions = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::stdin().lock().lines();
        while let Some(Ok(line)) = lines.next() {
            let served = if line.trim() == "a" { a.requests_served() } else { b.requests_served() };
            println!("{served}");
            std::io::stdout().flush().unwrap();
        }
    });
    // Ends when the orchestrator closes stdin, or kills this process.
    let _ = questions.await;
}

/// The demo's mapping, which the proxy runs unless told otherwise.
const DEMO_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.rhai");

/// Starts `binary` with the demo's settings and `script`, its configuration written to
/// `dir/{name}.yaml`: a file of its own, since the proxy reloads its file when it changes.
fn start_proxy(dir: &std::path::Path, name: &str, binary: &str, script: &str, legacy: &Legacy) -> (Killed, SocketAddr) {
    let demo_config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml")).unwrap();
    // The demo's app settings (schema, limits, cache), pointed at the two Acme instances.
    let app = demo_config.split_once("apps:\n").unwrap().1;
    let app = app.replace("scripts/demo.rhai", script);
    let users = app.replace("${env.ACME_BASE_URL:-http://127.0.0.1:7070/api/v1}", &legacy.base_url('a'));
    let groups = app
        .replace("${env.ACME_BASE_URL:-http://127.0.0.1:7070/api/v1}", &legacy.base_url('b'))
        .replace("name: acme", "name: acme-groups")
        .replace("base_path: /scim/v2", "base_path: /scim/groups");
    let level = std::env::var("LOAD_LOG").unwrap_or_else(|_| "info".into());
    let text = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog: {{format: json, level: {level}}}\n\
         server: {{max_body_bytes: 1048576}}\napps:\n{users}{groups}"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    // A free port picked here, so that any log level works (the proxy's own "listening" line
    // is at `info`).
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = on_system_core(binary)
        .args(["run", "--config"])
        .arg(&path)
        .args(["--listen", &addr.to_string()])
        .env("SCIM_TOKEN", TOKEN)
        .env("ACME_API_KEY", API_KEY)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log goes on being written (one line a request at `info`): read and drop it.
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64 * 1024];
        while stderr.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the proxy exited before listening");
        assert!(started.elapsed() < Duration::from_secs(30), "the proxy did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Killed(child), addr)
}

fn start_reference(legacy: &Legacy) -> (Killed, SocketAddr) {
    let exe = std::env::current_exe().unwrap();
    let mut child = on_system_core(exe.to_str().unwrap())
        .env("LOAD_ROLE", "reference")
        .env("LOAD_UPSTREAM_A", legacy.a.to_string())
        .env("LOAD_UPSTREAM_B", legacy.b.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening ").expect("the reference did not start").parse().unwrap();
    (Killed(child), addr)
}

// ------------------------------------------------------------------ requests

/// One HTTP call: method, path and query, body.
#[derive(Clone)]
struct Call {
    method: Method,
    target: String,
    body: Option<Value>,
}

fn call(method: Method, target: String, body: Option<Value>) -> Call {
    Call { method, target, body }
}

/// What one measured request is against one target: a SCIM request (the proxy), or the Acme
/// calls the proxy makes for it (direct, and through the reference).
type Plan = Arc<dyn Fn(u64, u64) -> Vec<Call> + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Target {
    Proxy,
    Baseline,
    Reference,
    Direct,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Proxy => "scim-proxy",
            Target::Baseline => "baseline",
            Target::Reference => "byte proxy",
            Target::Direct => "direct",
        }
    }
}

struct Case {
    name: &'static str,
    /// The SCIM request; its legacy calls are counted.
    scim: Plan,
    /// The equivalent Acme calls, with paths under `/api/v1`, and which instance they go to.
    legacy: Plan,
    instance: char,
}

/// An Acme record as the demo script writes it for a create or a replace.
fn acme_record(login: &str, id: u64, title: &str) -> Value {
    json!({"login": login, "first_name": "Ada", "last_name": "Lovelace", "display_name": "Ada Lovelace",
        "mail": format!("ada{id}@acme.example"), "phone": "+1 555 0100", "title": title, "enabled": true,
        "external_ref": null, "employee_no": format!("E{id:06}"), "department": "Engineering", "manager_id": null})
}

fn scim_user(login: &str, id: u64, title: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": login, "active": true, "displayName": "Ada Lovelace", "title": title,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": format!("ada{id}@acme.example"), "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
            {"employeeNumber": format!("E{id:06}"), "department": "Engineering"}})
}

/// A user id of instance A, spread over all of them: `worker` and `i` number the request.
fn user_of(worker: u64, i: u64) -> u64 {
    (worker * 7_919 + i * 13) % USERS + 1
}

/// The cases the targets name.
const GET_ONE_CALL: &str = "GET /Users/{id} excluding groups";
const GET: &str = "GET /Users/{id}";
const POST: &str = "POST /Users";

/// A title no request wrote before, so that every PATCH and PUT changes the user: a title
/// already set, as a later round or target would send again, makes the proxy skip the write.
fn fresh_title(worker: u64, i: u64) -> String {
    format!("Title {worker}-{i}-{}", RUN.fetch_add(1, Ordering::Relaxed))
}

fn cases(team: u64, spare_first: u64) -> Vec<Case> {
    let login = |id: u64| format!("user{id:05}");
    let spare = move |worker: u64, i: u64| spare_first + (worker * 1_009 + i * 37) % SPARE as u64;
    // PATCH and PUT both read the user, then replace the whole record.
    let read_then_replace: Plan = Arc::new(move |w, i| {
        let id = user_of(w, i);
        vec![
            call(Method::GET, format!("/api/v1/users/{id}"), None),
            call(Method::PUT, format!("/api/v1/users/{id}"), Some(acme_record(&login(id), id, "T"))),
        ]
    });
    vec![
        Case {
            name: GET_ONE_CALL,
            scim: Arc::new(|w, i| {
                vec![call(Method::GET, format!("/scim/v2/Users/{}?excludedAttributes=groups", user_of(w, i)), None)]
            }),
            // Without `groups` the demo reads the user only.
            legacy: Arc::new(|w, i| vec![call(Method::GET, format!("/api/v1/users/{}", user_of(w, i)), None)]),
            instance: 'a',
        },
        Case {
            name: GET,
            scim: Arc::new(|w, i| vec![call(Method::GET, format!("/scim/v2/Users/{}", user_of(w, i)), None)]),
            // The demo reads the user, and its teams for `groups` (returned by default).
            legacy: Arc::new(|w, i| {
                let id = user_of(w, i);
                vec![
                    call(Method::GET, format!("/api/v1/users/{id}"), None),
                    call(Method::GET, format!("/api/v1/teams?member={id}&per_page=100"), None),
                ]
            }),
            instance: 'a',
        },
        Case {
            name: "GET /Users?filter=userName eq",
            scim: Arc::new(move |w, i| {
                let target = format!("/scim/v2/Users?filter=userName%20eq%20%22{}%22", login(user_of(w, i)));
                vec![call(Method::GET, target, None)]
            }),
            // The legacy search by login, as `list_users` pushes it down, and the user's teams
            // for `groups` (the proxy answers from the ID cache once it knows the name: the
            // read by id and the teams, two calls as well).
            legacy: Arc::new(move |w, i| {
                let id = user_of(w, i);
                vec![
                    call(Method::GET, format!("/api/v1/users?login={}&page=1&per_page=100", login(id)), None),
                    call(Method::GET, format!("/api/v1/teams?member={id}&per_page=100"), None),
                ]
            }),
            instance: 'a',
        },
        Case {
            name: "PATCH /Users/{id} (replace title)",
            scim: Arc::new(|w, i| {
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "title", "value": fresh_title(w, i)}]});
                vec![call(Method::PATCH, format!("/scim/v2/Users/{}", user_of(w, i)), Some(body))]
            }),
            legacy: read_then_replace.clone(),
            instance: 'a',
        },
        Case {
            name: "PUT /Users/{id}",
            scim: Arc::new(move |w, i| {
                let id = user_of(w, i);
                let body = scim_user(&login(id), id, &fresh_title(w, i));
                vec![call(Method::PUT, format!("/scim/v2/Users/{id}"), Some(body))]
            }),
            legacy: read_then_replace.clone(),
            instance: 'a',
        },
        Case {
            name: "PATCH /Groups/{id} (add 1 of 50k)",
            scim: Arc::new(move |w, i| {
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": spare(w, i).to_string()}]}]});
                vec![call(Method::PATCH, format!("/scim/groups/Groups/team-{team}"), Some(body))]
            }),
            // The group read without members, the new member checked, then added.
            legacy: Arc::new(move |w, i| {
                let user = spare(w, i);
                vec![
                    call(Method::GET, format!("/api/v1/teams/{team}"), None),
                    call(Method::GET, format!("/api/v1/users/{user}"), None),
                    call(Method::POST, format!("/api/v1/teams/{team}/members"), Some(json!({"user_id": user}))),
                ]
            }),
            instance: 'b',
        },
        Case {
            name: POST,
            scim: Arc::new(move |w, i| {
                let login = format!("p{w}-{i}-{}", RUN.fetch_add(1, Ordering::Relaxed));
                vec![call(Method::POST, "/scim/v2/Users".into(), Some(scim_user(&login, i, "New")))]
            }),
            legacy: Arc::new(move |w, i| {
                let login = format!("d{w}-{i}-{}", RUN.fetch_add(1, Ordering::Relaxed));
                vec![call(Method::POST, "/api/v1/users".into(), Some(acme_record(&login, i, "New")))]
            }),
            instance: 'a',
        },
    ]
}

/// Makes every created login unique across runs.
static RUN: AtomicU64 = AtomicU64::new(0);

// ------------------------------------------------------------------ the load generator

struct Outcome {
    requests: u64,
    errors: u64,
    /// Every request's latency in µs, sorted.
    latencies: Vec<u32>,
    seconds: f64,
    first_error: Option<String>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }
}

/// One keep-alive connection sending one request after another.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Self { sender, host: addr.to_string() }
    }

    /// Sends one call and reads the whole answer; `Err` names an unexpected status.
    async fn send(&mut self, call: &Call, prefix: &str, target: Target) -> Result<(), String> {
        self.exchange(call, prefix, target).await.map(drop)
    }

    /// Sends one call to the proxy and gives its answer's JSON.
    async fn send_reading(&mut self, call: &Call) -> Result<Value, String> {
        self.send_reading_to(call, "", Target::Proxy).await
    }

    /// Sends one call and gives its answer's JSON.
    async fn send_reading_to(&mut self, call: &Call, prefix: &str, target: Target) -> Result<Value, String> {
        let bytes = self.exchange(call, prefix, target).await?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{} {}: not JSON: {e}", call.method, call.target))
    }

    /// Sends one call and reads the whole answer; `Err` names an unexpected status.
    async fn exchange(&mut self, call: &Call, prefix: &str, target: Target) -> Result<Bytes, String> {
        let body = call.body.as_ref().map_or_else(Bytes::new, |b| Bytes::from(serde_json::to_vec(b).unwrap()));
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(format!("{prefix}{}", call.target))
            .header(http::header::HOST, &self.host);
        request = match target {
            Target::Proxy | Target::Baseline => request.header(http::header::AUTHORIZATION, format!("Bearer {TOKEN}")),
            _ => request.header("x-api-key", API_KEY),
        };
        if call.body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/scim+json");
        }
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response =
            self.sender.send_request(request.body(Full::new(body)).unwrap()).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(format!("{} {} → {status}: {}", call.method, call.target, String::from_utf8_lossy(&bytes)))
        }
    }
}

/// Runs `plan` on `connections` connections for `duration`, after `warmup`.
#[allow(clippy::too_many_arguments)] // one call site a target; a struct would only rename them
async fn run(
    addr: SocketAddr,
    prefix: &'static str,
    target: Target,
    plan: Plan,
    connections: u64,
    warmup: Duration,
    duration: Duration,
    on_start: impl FnOnce(),
) -> Outcome {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..connections {
        let (plan, measuring, stop) = (plan.clone(), measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await;
            let (mut requests, mut errors, mut latencies, mut first_error) = (0u64, 0u64, Vec::new(), None);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let calls = plan(worker, i);
                i += 1;
                let started = Instant::now();
                let mut failed = None;
                for call in &calls {
                    if let Err(e) = connection.send(call, prefix, target).await {
                        failed = Some(e);
                        break;
                    }
                }
                let elapsed = started.elapsed();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                requests += 1;
                latencies.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                if let Some(e) = failed {
                    errors += 1;
                    first_error.get_or_insert(e);
                    // A failed exchange may leave the connection unusable.
                    connection = Connection::open(addr).await;
                }
            }
            (requests, errors, latencies, first_error)
        }));
    }
    tokio::time::sleep(warmup).await;
    on_start();
    measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::SeqCst);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let mut outcome = Outcome { requests: 0, errors: 0, latencies: Vec::new(), seconds, first_error: None };
    for worker in workers {
        let (requests, errors, latencies, first_error) = worker.await.unwrap();
        outcome.requests += requests;
        outcome.errors += errors;
        outcome.latencies.extend(latencies);
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.latencies.sort_unstable();
    outcome
}

// ------------------------------------------------------------------ the run

struct Row {
    case: &'static str,
    connections: u64,
    target: Target,
    /// Requests a second, and latency percentiles in ms.
    rate: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    /// CPU µs of the process per request (the proxy or the reference).
    cpu_us: Option<f64>,
    /// Context switches of the process per request.
    switches: Option<f64>,
    /// CPU µs of the Acme process per request (both instances).
    app_cpu_us: f64,
    /// Legacy calls per request.
    calls: f64,
    rss: Option<f64>,
    peak: Option<f64>,
}

impl Row {
    /// One row of several rounds of the same run: the median of each figure, the sum of the
    /// errors, and the first round's memory (later rounds of every case run after the POSTs
    /// of the earlier ones have filled the ID cache).
    fn median(mut rounds: Vec<Row>) -> Row {
        fn mid(mut values: Vec<f64>) -> f64 {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        }
        let of = |rounds: &[Row], figure: fn(&Row) -> f64| mid(rounds.iter().map(figure).collect());
        let optional = |rounds: &[Row], figure: fn(&Row) -> Option<f64>| {
            let values: Vec<f64> = rounds.iter().filter_map(figure).collect();
            (!values.is_empty()).then(|| mid(values))
        };
        let mut row = Row {
            rate: of(&rounds, |r| r.rate),
            p50: of(&rounds, |r| r.p50),
            p99: of(&rounds, |r| r.p99),
            errors: rounds.iter().map(|r| r.errors).sum(),
            cpu_us: optional(&rounds, |r| r.cpu_us),
            switches: optional(&rounds, |r| r.switches),
            app_cpu_us: of(&rounds, |r| r.app_cpu_us),
            calls: of(&rounds, |r| r.calls),
            // The rest, memory included, is the first round's.
            ..rounds.swap_remove(0)
        };
        row.rate = if row.rate.is_finite() { row.rate } else { 0.0 };
        row
    }
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn orchestrate() {
    let seconds = env_number("LOAD_SECONDS", 5.0);
    let warmup = Duration::from_secs_f64(env_number("LOAD_WARMUP", 1.0));
    let duration = Duration::from_secs_f64(seconds);
    let connections: Vec<u64> = std::env::var("LOAD_CONNECTIONS")
        .unwrap_or_else(|_| "1,32".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let soak = std::env::var("LOAD_SOAK").ok().and_then(|v| v.parse::<f64>().ok());

    let legacy = Legacy::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = std::env::var("LOAD_PROXY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_scim-proxy").to_owned());
    let script = std::env::var("LOAD_PROXY_SCRIPT").unwrap_or_else(|_| DEMO_SCRIPT.to_owned());
    let (proxy_child, proxy_addr) = start_proxy(dir.path(), "proxy", &binary, &script, &legacy);
    let baseline = std::env::var("LOAD_BASELINE_BIN").ok().filter(|b| !b.is_empty()).map(|binary| {
        let script = std::env::var("LOAD_BASELINE_SCRIPT").unwrap_or_else(|_| DEMO_SCRIPT.to_owned());
        let (child, addr) = start_proxy(dir.path(), "baseline", &binary, &script, &legacy);
        let process = Proc::new(child.0.id());
        (child, addr, process)
    });
    let rounds = env_number("LOAD_ROUNDS", 1.0).max(1.0) as usize;
    let (reference_child, reference_addr) = start_reference(&legacy);
    let proxy = Proc::new(proxy_child.0.id());
    let reference = Proc::new(reference_child.0.id());
    let ready_rss = proxy.rss_mib();

    println!(
        "scim-proxy load benchmark: {USERS} users (Acme A), a group of {MEMBERS} members (Acme B); \
         demo mapping; release build; {seconds} s a run after {} s of warm-up; median of {rounds} round(s); {}{}",
        warmup.as_secs_f64(),
        if pinned() { "pinned: proxy, reference and Acme on CPU 0, the generator on CPU 1" } else { "not pinned" },
        if baseline.is_some() { "; baseline: LOAD_BASELINE_BIN" } else { "" }
    );
    let http = reqwest::Client::new();
    // The in-proxy filter over a full listing, before POSTs add users: a few runs, one
    // connection. The baseline is put through the same, so that both start the cases alike.
    let listing = |addr: SocketAddr| format!("http://{addr}/scim/v2/Users?filter=userName%20co%20%2242%22&count=10");
    let before = legacy.served('a');
    let mut urls = vec![listing(proxy_addr)];
    if let Some((_, addr, _)) = &baseline {
        urls.push(listing(*addr));
    }
    let mut all_times = in_proxy_listing(&http, &urls).await;
    let times = all_times.remove(0);
    let listing_calls = (legacy.served('a') - before) / (times.len() * urls.len()) as u64;
    let baseline_times = all_times.pop();
    let idle_rss = proxy.rss_mib();
    // A sorted page of every user: the proxy reads the whole listing and answers ten. Its
    // peak memory is what it holds meanwhile.
    let sorted =
        |addr: SocketAddr| format!("http://{addr}/scim/v2/Users?sortBy=userName&sortOrder=descending&count=10");
    let mut sorted_urls = vec![sorted(proxy_addr)];
    proxy.reset_peak();
    if let Some((_, addr, process)) = &baseline {
        sorted_urls.push(sorted(*addr));
        process.reset_peak();
    }
    let sorted_times = in_proxy_listing(&http, &sorted_urls).await;
    let sorted_peaks = (proxy.peak_mib(), baseline.as_ref().map(|(_, _, process)| process.peak_mib()));

    if let Some(users) = std::env::var("LOAD_CYCLE").ok().and_then(|v| v.parse::<u64>().ok()) {
        provisioning_cycle(users, proxy_addr, &proxy, reference_addr, &reference, &legacy).await;
        return;
    }
    let cases = cases(legacy.team, legacy.spare_first);
    if let Some(soak) = soak {
        soak_run(&cases, proxy_addr, &proxy, Duration::from_secs_f64(soak)).await;
        return;
    }
    let only_cases = std::env::var("LOAD_CASES").unwrap_or_default();
    let only_targets = std::env::var("LOAD_TARGETS").unwrap_or_default();
    // Rounds outermost: each figure's median is taken over runs spread across the whole
    // benchmark, so ratios between cases are not those of two moments of a noisy machine.
    let mut measured: BTreeMap<(usize, u64, Target), Vec<Row>> = BTreeMap::new();
    for round in 0..rounds {
        for (index, case) in cases.iter().enumerate().filter(|(_, c)| c.name.contains(only_cases.as_str())) {
            let instance = case.instance;
            let prefix = if case.instance == 'a' { "/a" } else { "/b" };
            for &n in &connections {
                // The two builds swap places every other round: neither always runs first.
                let order = if round % 2 == 0 {
                    [Target::Proxy, Target::Baseline, Target::Reference, Target::Direct]
                } else {
                    [Target::Baseline, Target::Proxy, Target::Reference, Target::Direct]
                };
                for target in order {
                    if !only_targets.is_empty() && !only_targets.contains(target.name()) {
                        continue;
                    }
                    let (addr, prefix, plan, process) = match target {
                        Target::Proxy => (proxy_addr, "", case.scim.clone(), Some(&proxy)),
                        Target::Baseline => match &baseline {
                            Some((_, addr, process)) => (*addr, "", case.scim.clone(), Some(process)),
                            None => continue,
                        },
                        // The reference gets the Acme calls with the instance's prefix instead of
                        // nothing: it rewrites `/a/api/v1/…` to `/api/v1/…` on instance A.
                        Target::Reference => (reference_addr, prefix, case.legacy.clone(), Some(&reference)),
                        Target::Direct => (legacy.addr(instance), "", case.legacy.clone(), None),
                    };
                    let before = Mutex::new(Counters::default());
                    let outcome = run(addr, prefix, target, plan, n, warmup, duration, || {
                        if let Some(p) = process {
                            p.reset_peak();
                        }
                        *before.lock().unwrap() = Counters::read(process, &legacy, instance);
                    })
                    .await;
                    let before = before.into_inner().unwrap();
                    let after = Counters::read(process, &legacy, instance);
                    let requests = outcome.requests.max(1) as f64;
                    let calls = (after.calls - before.calls) as f64 / requests;
                    let cpu_us = process.map(|_| (after.cpu - before.cpu) * 1e6 / requests);
                    // Per thread: a thread that ended during the run (an idle script thread)
                    // takes its count with it, and one started during it counts from zero.
                    let switched: u64 = after
                        .switches
                        .iter()
                        .map(|(thread, n)| n.saturating_sub(before.switches.get(thread).copied().unwrap_or(0)))
                        .sum();
                    let switches = process.map(|_| switched as f64 / requests);
                    let app_cpu_us = (after.app_cpu - before.app_cpu) * 1e6 / requests;
                    if let Some(e) = &outcome.first_error {
                        eprintln!("{} {} x{n}: {} errors, first: {e}", case.name, target.name(), outcome.errors);
                    }
                    measured.entry((index, n, target)).or_default().push(Row {
                        case: case.name,
                        connections: n,
                        target,
                        rate: outcome.rate(),
                        p50: outcome.percentile_ms(0.5),
                        p99: outcome.percentile_ms(0.99),
                        errors: outcome.errors,
                        cpu_us,
                        switches,
                        app_cpu_us,
                        calls,
                        rss: process.map(Proc::rss_mib),
                        peak: process.map(Proc::peak_mib),
                    });
                }
            }
        }
    }
    let rows: Vec<Row> = measured.into_values().map(Row::median).collect();
    print_table(&rows);
    println!();
    println!(
        "in-proxy filter over the full listing (GET /Users?filter=userName co \"42\"&count=10, {USERS} users, \
         {listing_calls} legacy calls): p50 {:.1} ms, max {:.1} ms over {} runs",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    if let Some(times) = &baseline_times {
        println!(
            "baseline: the same in-proxy filter p50 {:.1} ms, max {:.1} ms",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    for (at, (times, peak)) in sorted_times.iter().zip([Some(sorted_peaks.0), sorted_peaks.1]).enumerate() {
        println!(
            "{}sorted page of the full listing (GET /Users?sortBy=userName&sortOrder=descending&count=10, \
             {USERS} users): p50 {:.1} ms, max {:.1} ms over {} runs, peak RSS {:.1} MiB",
            if at == 0 { "" } else { "baseline: the same " },
            times[times.len() / 2],
            times[times.len() - 1],
            times.len(),
            peak.unwrap_or(0.0)
        );
    }
    println!(
        "scim-proxy RSS: {ready_rss:.1} MiB at start, {idle_rss:.1} MiB idle after the listing, {:.1} MiB at the end \
         (peak of each run in the table)",
        proxy.rss_mib()
    );
    print_targets(&rows);
    drop(reference_child);
    drop(proxy_child);
    drop(legacy);
}

/// What is read around a measured run.
#[derive(Default)]
struct Counters {
    cpu: f64,
    switches: BTreeMap<String, u64>,
    app_cpu: f64,
    calls: u64,
}

impl Counters {
    fn read(process: Option<&Proc>, legacy: &Legacy, instance: char) -> Self {
        Self {
            cpu: process.map_or(0.0, Proc::cpu_seconds),
            switches: process.map_or_else(BTreeMap::new, Proc::context_switches),
            app_cpu: legacy.process.cpu_seconds(),
            calls: legacy.served(instance),
        }
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<34} {:>5} {:<10} {:>9} {:>8} {:>8} {:>7} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8} {:>8}",
        "request",
        "conns",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "calls",
        "CPU µs",
        "cs/req",
        "app µs",
        "RSS MiB",
        "peak",
        "errors",
        "×ref r/s",
        "×ref p99"
    );
    let mut references = BTreeMap::new();
    for row in rows.iter().filter(|r| r.target == Target::Reference) {
        references.insert((row.case, row.connections), row);
    }
    for row in rows {
        let reference = references.get(&(row.case, row.connections));
        let opt = |v: Option<f64>, digits: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
        let ratio_rate = reference.map(|r| row.rate / r.rate);
        let ratio_p99 = reference.map(|r| row.p99 / r.p99);
        println!(
            "{:<34} {:>5} {:<10} {:>9.0} {:>8.3} {:>8.2} {:>7.1} {:>8} {:>7} {:>7.0} {:>8} {:>7} {:>7} {:>8} {:>8}",
            row.case,
            row.connections,
            row.target.name(),
            row.rate,
            row.p50,
            row.p99,
            row.calls,
            opt(row.cpu_us, 0),
            opt(row.switches, 2),
            row.app_cpu_us,
            opt(row.rss, 1),
            opt(row.peak, 1),
            row.errors,
            opt(ratio_rate, 2),
            opt(ratio_p99, 2),
        );
    }
}

/// Times in ms of a few runs of a listing the proxy filters itself, sorted, for each of `urls`
/// (this build, and the baseline if any). The builds take turns run after run, so that a
/// noisy spell of the machine falls on both.
async fn in_proxy_listing(http: &reqwest::Client, urls: &[String]) -> Vec<Vec<f64>> {
    let runs = std::env::var("LOAD_LISTINGS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(6).max(1);
    let mut times = vec![Vec::new(); urls.len()];
    for _ in 0..runs {
        for (url, times) in urls.iter().zip(&mut times) {
            let started = Instant::now();
            let response = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
            assert!(response.status().is_success(), "in-proxy filter: {}", response.status());
            let _ = response.bytes().await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for times in &mut times {
        times.sort_by(f64::total_cmp);
    }
    times
}

/// The targets, each as measured in this run.
fn print_targets(rows: &[Row]) {
    let find = |case: &str, n: u64, target: Target| {
        rows.iter().find(|r| r.case.starts_with(case) && r.connections == n && r.target == target)
    };
    let exact = |case: &str, n: u64, target: Target| {
        rows.iter().find(|r| r.case == case && r.connections == n && r.target == target)
    };
    println!();
    println!("targets (ratios from this run, against the byte-forwarding proxy):");
    let cpu = |p: &Row, r: &Row| p.cpu_us.unwrap_or(0.0) / r.cpu_us.unwrap_or(1.0);
    if pinned() {
        if let (Some(p), Some(r)) = (exact(GET_ONE_CALL, 32, Target::Proxy), exact(GET_ONE_CALL, 32, Target::Reference))
        {
            println!(
                "  {GET_ONE_CALL} x32: throughput {:.2}× (≥ 0.30), CPU/request {:.2}× (≤ 4): {:.0} µs against {:.0} µs",
                p.rate / r.rate,
                cpu(p, r),
                p.cpu_us.unwrap_or(0.0),
                r.cpu_us.unwrap_or(0.0)
            );
        }
        if let (Some(p), Some(r)) = (exact(GET_ONE_CALL, 1, Target::Proxy), exact(GET_ONE_CALL, 1, Target::Reference)) {
            println!(
                "  {GET_ONE_CALL} x1: p50 {:.0} µs against {:.0} µs, +{:.0} µs (≤ +120)",
                p.p50 * 1000.0,
                r.p50 * 1000.0,
                (p.p50 - r.p50) * 1000.0
            );
        }
        if let Some(p) = exact(GET, 32, Target::Proxy) {
            println!("  {GET} x32 (2 legacy calls): proxy CPU/request {:.0} µs (< 127)", p.cpu_us.unwrap_or(0.0));
        }
        if let (Some(p), Some(r)) = (exact(POST, 32, Target::Proxy), exact(POST, 32, Target::Reference)) {
            println!("  {POST} x32: throughput {:.2}× (≥ 0.25), CPU/request {:.2}×", p.rate / r.rate, cpu(p, r));
        }
    } else {
        for (case, floor) in [(GET, 0.40), (POST, 0.35)] {
            if let (Some(p), Some(r)) = (exact(case, 32, Target::Proxy), exact(case, 32, Target::Reference)) {
                println!(
                    "  {case} x32: throughput {:.2}× (≥ {floor:.2}), p99 {:.2}× (≤ 2.5), CPU/request {:.2}×",
                    p.rate / r.rate,
                    p.p99 / r.p99,
                    cpu(p, r)
                );
            }
        }
    }
    for base in rows.iter().filter(|r| r.target == Target::Baseline) {
        if let Some(p) = exact(base.case, base.connections, Target::Proxy) {
            println!(
                "  this build ÷ baseline, {} x{}: throughput {:.2}×, p99 {:.2}×, CPU/request {:.2}×",
                base.case,
                base.connections,
                p.rate / base.rate,
                p.p99 / base.p99,
                p.cpu_us.unwrap_or(0.0) / base.cpu_us.unwrap_or(1.0)
            );
        }
    }
    for n in [1, 32] {
        let get = exact(GET, n, Target::Proxy);
        if let (Some(f), Some(g)) = (find("GET /Users?filter", n, Target::Proxy), get) {
            println!("  filtered GET x{n}: {:.2}× the throughput of GET by id (within 10%: ≥ 0.9)", f.rate / g.rate);
        }
        if let (Some(m), Some(g)) = (find("PATCH /Groups", n, Target::Proxy), get) {
            println!(
                "  one-member PATCH of a {MEMBERS}-member group x{n}: {:.1} legacy calls, {:.2}× the throughput of GET by id (≥ 0.5)",
                m.calls,
                m.rate / g.rate
            );
        }
    }
}

/// The body Entra ID's default attribute mappings send to create a user (Microsoft's SCIM
/// provisioning reference).
fn entra_user(login: &str, n: u64) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": format!("0a21f0f2-8d2a-4f8e-bf98-{n:012}"),
        "userName": login,
        "active": true,
        "displayName": format!("Entra User {n}"),
        "emails": [{"primary": true, "type": "work", "value": login}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": format!("Entra User {n}"), "familyName": "User", "givenName": "Entra"},
        "roles": []
    })
}

/// One user of the cycle through the proxy: the three requests Entra ID sends; `Err` names
/// the first that failed.
async fn cycle_through_proxy(connection: &mut Connection, login: &str, n: u64, team: u64) -> Result<(), String> {
    let filter = format!("/scim/v2/Users?filter=userName+eq+%22{}%22", login.replace('@', "%40"));
    connection.send(&call(Method::GET, filter, None), "", Target::Proxy).await?;
    let created =
        connection.send_reading(&call(Method::POST, "/scim/v2/Users".into(), Some(entra_user(login, n)))).await?;
    let id = created["id"].as_str().ok_or("POST /Users answered no id")?.to_owned();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": id}]}]});
    connection.send(&call(Method::PATCH, format!("/scim/v2/Groups/team-{team}"), Some(patch)), "", Target::Proxy).await
}

/// One user of the cycle straight to Acme (or through the byte proxy): the search by login,
/// the create, and the membership.
async fn cycle_direct(
    connection: &mut Connection,
    prefix: &str,
    target: Target,
    login: &str,
    n: u64,
    team: u64,
) -> Result<(), String> {
    let search = format!("/api/v1/users?login={}&page=1&per_page=100", login.replace('@', "%40"));
    connection.send(&call(Method::GET, search, None), prefix, target).await?;
    let record = json!({"login": login, "mail": login, "first_name": "Entra", "last_name": "User",
        "display_name": format!("Entra User {n}"), "external_ref": format!("0a21f0f2-8d2a-4f8e-bf98-{n:012}"), "enabled": true});
    let created =
        connection.send_reading_to(&call(Method::POST, "/api/v1/users".into(), Some(record)), prefix, target).await?;
    let id = created["id"].as_u64().ok_or("POST /users answered no id")?;
    let member = json!({"user_id": id});
    connection.send(&call(Method::POST, format!("/api/v1/teams/{team}/members"), Some(member)), prefix, target).await
}

/// `LOAD_CYCLE`: the provisioning cycle through the proxy, through the byte proxy, and
/// straight to Acme, one connection each, one user after another.
async fn provisioning_cycle(
    users: u64,
    proxy_addr: SocketAddr,
    proxy: &Proc,
    reference_addr: SocketAddr,
    reference: &Proc,
    legacy: &Legacy,
) {
    println!(
        "provisioning cycle shaped as Entra ID's: {users} users, one after another; for each GET ?filter=userName eq, POST /Users, PATCH /Groups add member"
    );
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>9} {:>10} {:>9}",
        "target", "seconds", "users/s", "CPU s", "Acme CPU", "calls/user", "errors"
    );
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    for target in [Target::Proxy, Target::Reference, Target::Direct] {
        let (addr, process) = match target {
            Target::Proxy => (proxy_addr, Some(proxy)),
            Target::Reference => (reference_addr, Some(reference)),
            _ => (legacy.addr('a'), None),
        };
        let mut connection = Connection::open(addr).await;
        let (cpu, app_cpu, calls) =
            (process.map_or(0.0, Proc::cpu_seconds), legacy.process.cpu_seconds(), legacy.served('a'));
        let started = Instant::now();
        let (mut errors, mut first_error) = (0u64, None);
        for n in 0..users {
            let login = format!("entra{run}-{}-{n}@contoso.example", target.name().replace(' ', "-"));
            let result = match target {
                Target::Proxy => cycle_through_proxy(&mut connection, &login, n, legacy.cycle_team).await,
                Target::Reference => cycle_direct(&mut connection, "/a", target, &login, n, legacy.cycle_team).await,
                _ => cycle_direct(&mut connection, "", target, &login, n, legacy.cycle_team).await,
            };
            if let Err(e) = result {
                errors += 1;
                first_error.get_or_insert(e);
                connection = Connection::open(addr).await;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = process.map(|p| format!("{:.2}", p.cpu_seconds() - cpu)).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:>9.2} {:>10.0} {:>10} {:>9.2} {:>10.1} {:>9}",
            target.name(),
            seconds,
            users as f64 / seconds,
            cpu,
            legacy.process.cpu_seconds() - app_cpu,
            (legacy.served('a') - calls) as f64 / users as f64,
            errors
        );
        if let Some(e) = first_error {
            eprintln!("{}: {errors} users failed, first: {e}", target.name());
        }
    }
}

/// Every case against the proxy at 32 connections, round after round, with its memory.
async fn soak_run(cases: &[Case], addr: SocketAddr, proxy: &Proc, total: Duration) {
    println!("soak: every case at 32 connections for {} s; scim-proxy memory as it goes", total.as_secs());
    println!("{:>8} {:<34} {:>9} {:>9} {:>9}", "elapsed", "case", "req/s", "RSS MiB", "peak MiB");
    let started = Instant::now();
    let slice = Duration::from_secs(10);
    while started.elapsed() < total {
        for case in cases {
            let outcome = run(addr, "", Target::Proxy, case.scim.clone(), 32, Duration::ZERO, slice, || {}).await;
            println!(
                "{:>7.0}s {:<34} {:>9.0} {:>9.1} {:>9.1}",
                started.elapsed().as_secs_f64(),
                case.name,
                outcome.rate(),
                proxy.rss_mib(),
                proxy.peak_mib()
            );
            if started.elapsed() >= total {
                break;
            }
        }
    }
}

fn main() {
    let role = std::env::var("LOAD_ROLE").unwrap_or_default();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if role.is_empty() && pinned() {
        // The generator: one runtime thread, alone on CPU 1 (its children are started on CPU 0).
        let status = Command::new("taskset").args(["-pc", "1", &std::process::id().to_string()]).output().unwrap();
        assert!(status.status.success(), "taskset: {}", String::from_utf8_lossy(&status.stderr));
        builder.worker_threads(1);
    }
    let runtime = builder.enable_all().build().unwrap();
    match role.as_str() {
        "reference" => runtime.block_on(reference_proxy()),
        "acme" => runtime.block_on(legacy_role()),
        _ => runtime.block_on(orchestrate()),
    }
}
