//! Soak run: mixed SCIM load for a fixed time through the proxy (its own process, so its
//! memory is its own) in front of the bundled Acme Directory, with 1 % of legacy calls
//! failing (500, 503 with Retry-After, a dropped connection, or a stall past the legacy
//! timeout). Prints requests served, answers by status, and the proxy's RSS over time.
//!
//! Beside the mixed load, [`HOT_WRITERS`] writers PATCH the same [`HOT_USERS`] users all the
//! time, each its own attribute: at the end every user must show, for every attribute, the
//! last value its writer was answered `200` for (or a later one whose answer was lost to a
//! fault). Any other value is a lost update, counted and printed.
//!
//! Run with `cargo bench --bench soak` (10 minutes); `SOAK_SECONDS=60` for a short run.
//! Not part of `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acme::AcmeConfig;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::json;
use tokio::net::TcpListener;

const TOKEN: &str = "soak-token-0123456789abcdef";
const API_KEY: &str = "soak-key";
const WORKERS: usize = 8;
const FAULT_PER_MILLE: u64 = 10;
/// Writers that all change the same users, each its own attribute.
const HOT_WRITERS: usize = 4;
/// The users they change: ids 1 to this.
const HOT_USERS: u64 = 3;
/// The attribute each hot writer owns.
const HOT_PATHS: [&str; HOT_WRITERS] = ["title", "displayName", "name.givenName", "name.familyName"];

/// A small xorshift: enough randomness for fault injection and load mixing.
struct Dice(AtomicU64);

impl Dice {
    fn new(seed: u64) -> Self {
        Dice(AtomicU64::new(seed))
    }

    fn roll(&self, sides: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % sides
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos) | 1
}

/// A forwarding layer in front of Acme that fails 1 % of calls, in one of four ways.
async fn faulty_front(acme: String, faults: Arc<BTreeMap<&'static str, AtomicU64>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let origin = acme.trim_end_matches("/api/v1").to_owned();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (client, origin, faults) = (client.clone(), origin.clone(), faults.clone());
            tokio::spawn(async move {
                let dice = Dice::new(seed());
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (client, origin, faults) = (client.clone(), origin.clone(), faults.clone());
                    let fault = (dice.roll(1000) < FAULT_PER_MILLE).then(|| dice.roll(4));
                    async move {
                        let respond = |status: u16, extra: Option<(&'static str, &'static str)>| {
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from_static(b"{\"error\":\"injected\"}")));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if let Some((name, value)) = extra {
                                response.headers_mut().insert(name, hyper::header::HeaderValue::from_static(value));
                            }
                            response
                        };
                        let count = |kind: &str| faults[kind].fetch_add(1, Ordering::Relaxed);
                        match fault {
                            Some(0) => {
                                count("500");
                                return Ok::<_, std::io::Error>(respond(500, None));
                            }
                            Some(1) => {
                                count("503");
                                return Ok(respond(503, Some(("retry-after", "1"))));
                            }
                            Some(2) => {
                                count("reset");
                                return Err(std::io::Error::other("injected reset"));
                            }
                            Some(_) => {
                                count("stall");
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            None => {}
                        }
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let mut forwarded = client.request(parts.method, format!("{origin}{}", parts.uri)).body(body);
                        for (name, value) in &parts.headers {
                            if name != hyper::header::HOST {
                                forwarded = forwarded.header(name, value);
                            }
                        }
                        let answer = forwarded.send().await.map_err(std::io::Error::other)?;
                        let status = answer.status();
                        let content_type = answer.headers().get("content-type").cloned();
                        let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
                        let mut response = hyper::Response::new(Full::new(bytes));
                        *response.status_mut() = status;
                        if let Some(content_type) = content_type {
                            response.headers_mut().insert("content-type", content_type);
                        }
                        Ok(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    url
}

/// The resident set size of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let acme = acme::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), AcmeConfig::new(API_KEY)).await.unwrap();
    acme.store().seed_users(2_000);
    let faults: Arc<BTreeMap<&'static str, AtomicU64>> =
        Arc::new(["500", "503", "reset", "stall"].into_iter().map(|k| (k, AtomicU64::new(0))).collect());
    let front = faulty_front(acme.base_url(), faults.clone()).await;

    let dir = std::env::temp_dir().join(format!("scim-proxy-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.yaml");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.rhai");
    std::fs::write(
        &config,
        format!(
            // The ID cache is bounded by configuration (max_entries per index): kept small here so
            // that growth the soak sees is not the cache filling up to its bound.
            "log: {{level: warn, format: json}}\napps:\n  - name: soak\n    base_path: /scim/v2\n    script: \"{script}\"\n    auth: {{bearer_tokens: [\"{TOKEN}\"]}}\n    legacy: {{base_url: \"{front}\", headers: {{X-Api-Key: {API_KEY}}}, timeout: 2s}}\n    request_timeout: 10s\n    cache: {{max_entries: 2000}}\n"
        ),
    )
    .unwrap();
    let scim = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &scim.to_string(), "--admin-listen", &admin.to_string()])
        .stderr(std::fs::File::create(dir.join("proxy.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://{scim}/scim/v2");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    while client.get(format!("http://{admin}/readyz")).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id();
    println!(
        "soak: {seconds} s, {WORKERS} workers, mixed create/get/filter/patch/list/delete, {FAULT_PER_MILLE}‰ legacy faults"
    );
    println!("{:>8} {:>10} {:>10}", "seconds", "requests", "RSS MiB");
    let start_rss = rss_mib(pid);
    println!("{:>8} {:>10} {:>10.1}", 0, 0, start_rss);

    let statuses: Arc<std::sync::Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let served = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (client, base, statuses, served) = (client.clone(), base.clone(), statuses.clone(), served.clone());
        workers.push(tokio::spawn(async move {
            let dice = Dice::new(seed() ^ ((worker as u64 + 1) * 0x9e37_79b9));
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let name = format!("soak-{worker}-{n}");
                // The hot users are the hot writers' alone: their check must see only theirs.
                let existing = 1 + HOT_USERS + dice.roll(2_000 - HOT_USERS);
                let request = match dice.roll(6) {
                    0 => client.post(format!("{base}/Users")).header("content-type", "application/scim+json").body(
                        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": true})
                            .to_string(),
                    ),
                    1 => client.get(format!("{base}/Users/{existing}")),
                    2 => client.get(format!("{base}/Users?filter=userName%20eq%20%22user{existing:05}%22")),
                    3 => client.patch(format!("{base}/Users/{existing}")).header("content-type", "application/scim+json").body(
                        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                               "Operations": [{"op": "replace", "path": "title", "value": format!("t{n}")}]})
                        .to_string(),
                    ),
                    4 => client.get(format!("{base}/Users?startIndex={}&count=20", 1 + dice.roll(1_900))),
                    _ => client.delete(format!("{base}/Users/{}", 2_000 + dice.roll(5_000))),
                };
                let status = match request.bearer_auth(TOKEN).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Per hot writer and user: the last value answered 200, and the values sent after it whose
    // answer was lost (they may or may not have been made).
    type Acknowledged = Vec<(Option<String>, Vec<String>)>;
    let mut hot = Vec::new();
    for (writer, path) in HOT_PATHS.iter().enumerate() {
        let (client, base) = (client.clone(), base.clone());
        hot.push(tokio::spawn(async move {
            let mut known: Acknowledged = vec![(None, Vec::new()); HOT_USERS as usize];
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let user = 1 + n % HOT_USERS;
                let value = format!("w{writer}-{n}");
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                  "Operations": [{"op": "replace", "path": path, "value": value}]});
                let sent = client
                    .patch(format!("{base}/Users/{user}"))
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await;
                let slot = &mut known[(user - 1) as usize];
                match sent.map(|r| r.status().as_u16()) {
                    Ok(200) => *slot = (Some(value), Vec::new()),
                    // Refused before anything was sent (4xx) changes nothing; anything else may have.
                    Ok(status) if (400..500).contains(&status) => {}
                    _ => slot.1.push(value),
                }
            }
            known
        }));
    }
    let mut samples = vec![(0.0, start_rss)];
    let every = Duration::from_secs((seconds / 10).clamp(1, 60));
    while Instant::now() < deadline {
        tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
        let t = started.elapsed().as_secs_f64();
        let rss = rss_mib(pid);
        samples.push((t, rss));
        println!("{:>8.0} {:>10} {:>10.1}", t, served.load(Ordering::Relaxed), rss);
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let mut lost = Vec::new();
    let mut checked = 0;
    let mut acknowledged: Vec<Acknowledged> = Vec::new();
    for writer in hot {
        acknowledged.push(writer.await.unwrap());
    }
    for user in 1..=HOT_USERS {
        let read = client.get(format!("{base}/Users/{user}")).bearer_auth(TOKEN).send().await.unwrap();
        let read: serde_json::Value = read.json().await.unwrap();
        for (writer, path) in HOT_PATHS.iter().enumerate() {
            let (last, unsure) = &acknowledged[writer][(user - 1) as usize];
            let Some(last) = last else { continue };
            let shown = path.split('.').fold(&read, |v, name| &v[name]).as_str().unwrap_or_default().to_owned();
            checked += 1;
            if &shown != last && !unsure.contains(&shown) {
                lost.push(format!("user {user} {path}: {shown:?} where {last:?} was answered 200"));
            }
        }
    }
    let end_rss = rss_mib(pid);
    // Least-squares slope of RSS over the second half (after warm-up), in MiB per minute.
    let half: Vec<&(f64, f64)> = samples.iter().skip(samples.len() / 2).collect();
    let n = half.len() as f64;
    let (mx, my) = (half.iter().map(|s| s.0).sum::<f64>() / n, half.iter().map(|s| s.1).sum::<f64>() / n);
    let num: f64 = half.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    let den: f64 = half.iter().map(|s| (s.0 - mx).powi(2)).sum();
    let slope = if den > 0.0 { num / den * 60.0 } else { 0.0 };
    let total = served.load(Ordering::Relaxed);
    println!();
    println!("requests served: {total} ({:.0}/s)", total as f64 / started.elapsed().as_secs_f64());
    println!("answers by status (0 = no answer): {:?}", statuses.lock().unwrap());
    let injected: Vec<String> = faults.iter().map(|(k, v)| format!("{k}={}", v.load(Ordering::Relaxed))).collect();
    println!("legacy faults injected: {}", injected.join(", "));
    println!("proxy RSS: start {start_rss:.1} MiB, end {end_rss:.1} MiB, second-half trend {slope:+.2} MiB/min");
    println!(
        "lost updates: {} of {checked} attributes written by {HOT_WRITERS} concurrent writers to {HOT_USERS} users{}",
        lost.len(),
        if lost.is_empty() { String::new() } else { format!(": {}", lost.join("; ")) }
    );
    let _ = child.kill();
    let _ = child.wait();
    // What the failed requests were, by the proxy's own log.
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if let Some(error) = line.get("error").and_then(|e| e.as_str()) {
            // Ids and paths vary: keep the shape of the reason.
            let shape: String = error.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(110).collect();
            *reasons.entry(format!("{} {shape}", line["status"])).or_default() += 1;
        }
    }
    let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!("failed requests by reason (proxy log):");
    for (reason, count) in reasons.iter().take(8) {
        println!("  {count:>7}  {reason}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    acme.shutdown().await;
}
