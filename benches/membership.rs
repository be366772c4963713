//! Benchmark: one member added to / removed from a 50,000-member group, through the member
//! hooks and by read-modify-replace. Prints legacy calls, latency and peak memory.
//!
//! Run with `cargo bench --bench membership`. Figures vary with the machine; compare the two
//! rows of one run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use acme::{AcmeConfig, store::NewTeam};
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime;
use serde_json::json;
use tokio::net::TcpListener;

const MEMBERS: usize = 50_000;
const TOKEN: &str = "bench-token-0123456789abcdef";

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Resets the peak-memory mark (Linux `clear_refs` 5), so the next reading covers what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

struct Row {
    mode: &'static str,
    operation: &'static str,
    /// Resident memory once the data is loaded and the proxy started, before the run.
    settled: f64,
    calls: f64,
    p50: f64,
    p99: f64,
    peak: f64,
}

async fn measure(mode: &'static str, script: &str, iterations: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("bench.rhai");
    std::fs::write(&script_path, script).unwrap();
    let legacy =
        acme::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), AcmeConfig::new("bench-key")).await.unwrap();
    let store = legacy.store();
    let users = store.seed_users(MEMBERS + iterations);
    let team = store.create_team(NewTeam { name: "Everyone".into(), ..Default::default() }).unwrap();
    store.seed_team_members(team.id, &users[..MEMBERS]).unwrap();
    let text = format!(
        r#"
apps:
  - name: bench
    base_path: /scim/v2
    script: "{}"
    auth: {{bearer_tokens: ["{TOKEN}"]}}
    legacy: {{base_url: "{}", headers: {{X-Api-Key: bench-key}}, timeout: 60s}}
    request_timeout: 120s
    list: {{max_scan: 100000}}
"#,
        script_path.display(),
        legacy.base_url()
    );
    let config = Config::parse(&text, "bench.yaml", &Variables::default()).unwrap();
    let any = Some("127.0.0.1:0".parse().unwrap());
    let running = runtime::start(&config, any, any).await.unwrap();
    let url = format!("http://{}/scim/v2/Groups/team-{}", running.scim_addr, team.id);
    reset_peak();
    let settled = peak_rss_mib();
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (operation, op) in [("add one member", "add"), ("remove one member", "remove")] {
        reset_peak();
        let before = legacy.requests_served();
        let mut latencies = Vec::with_capacity(iterations);
        for i in 0..iterations {
            let member = users[MEMBERS + i].to_string();
            let body = if op == "add" {
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]})
            } else {
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]})
            };
            let started = Instant::now();
            let response = client.patch(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
            let status = response.status();
            let _ = response.bytes().await;
            latencies.push(started.elapsed());
            assert!(status.is_success(), "{mode} {operation}: {status}");
        }
        latencies.sort();
        rows.push(Row {
            mode,
            operation,
            settled,
            calls: (legacy.requests_served() - before) as f64 / iterations as f64,
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            peak: peak_rss_mib(),
        });
    }
    running.shutdown().await;
    legacy.shutdown().await;
    rows
}

#[tokio::main]
async fn main() {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.rhai")).unwrap();
    // The same mapping without the member hooks: the proxy reads, applies and replaces.
    let without_hooks = demo
        .replace("fn add_members(", "fn unused_add_members(")
        .replace("fn remove_members(", "fn unused_remove_members(");
    println!("group of {MEMBERS} members; release build; proxy and Acme Directory in this process");
    println!("baseline RSS before any run: {:.1} MiB", peak_rss_mib());
    let mut rows = measure("member hooks", &demo, 200).await;
    rows.extend(measure("read-modify-replace", &without_hooks, 5).await);
    println!(
        "{:<20} {:<18} {:>13} {:>10} {:>10} {:>14} {:>14}",
        "mode", "operation", "legacy calls", "p50 ms", "p99 ms", "RSS before MiB", "peak RSS MiB"
    );
    for r in &rows {
        println!(
            "{:<20} {:<18} {:>13.1} {:>10.2} {:>10.2} {:>14.1} {:>14.1}",
            r.mode, r.operation, r.calls, r.p50, r.p99, r.settled, r.peak
        );
    }
}
