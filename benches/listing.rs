//! Benchmark: listing 10,000 users with a filter pushed down to the legacy search and with a
//! filter evaluated in the proxy over a full listing. Prints legacy calls and latency.
//!
//! The last row is the stall: a `GET /Users/{id}` measured while two in-proxy filtered
//! listings of all 10,000 users run back to back on other connections (the runtime's worker
//! threads are then busy converting and filtering).
//!
//! Run with `cargo bench --bench listing`; compare the rows of one run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use acme::AcmeConfig;
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime;
use tokio::net::TcpListener;

/// The allocator the `scim-proxy` binary runs with, so that figures match production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: usize = 10_000;
const TOKEN: &str = "bench-token-0123456789abcdef";

fn ms(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let legacy =
        acme::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), AcmeConfig::new("bench-key")).await.unwrap();
    legacy.store().seed_users(USERS);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.rhai");
    let text = format!(
        r#"
apps:
  - name: bench
    base_path: /scim/v2
    script: "{script}"
    auth: {{bearer_tokens: ["{TOKEN}"]}}
    legacy: {{base_url: "{}", headers: {{X-Api-Key: bench-key}}}}
    list: {{max_scan: 20000}}
"#,
        legacy.base_url()
    );
    let config = Config::parse(&text, "bench.yaml", &Variables::default()).unwrap();
    let any = Some("127.0.0.1:0".parse().unwrap());
    let running = runtime::start(&config, any, any).await.unwrap();
    let base = format!("http://{}/scim/v2", running.scim_addr);
    let client = reqwest::Client::new();
    println!("{USERS} users in Acme Directory; demo mapping; release build; one connection");
    println!("{:<44} {:>8} {:>13} {:>10} {:>10}", "request", "runs", "legacy calls", "p50 ms", "p99 ms");
    let cases = [
        ("GET /Users/{id}", "/Users/4242".to_owned(), 200),
        ("filter userName eq (pushed down)", "/Users?filter=userName%20eq%20%22user04242%22".to_owned(), 200),
        (
            "filter userName co (in the proxy), count=10",
            "/Users?filter=userName%20co%20%2242%22&count=10".to_owned(),
            10,
        ),
    ];
    for (name, path, runs) in cases {
        let before = legacy.requests_served();
        let mut latencies = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let response = client.get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.unwrap();
            assert!(response.status().is_success(), "{name}: {}", response.status());
            let _ = response.bytes().await;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let calls = (legacy.requests_served() - before) as f64 / runs as f64;
        println!("{name:<44} {runs:>8} {calls:>13.1} {:>10.2} {:>10.2}", ms(&latencies, 0.5), ms(&latencies, 0.99));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listers: Vec<_> = (0..2)
        .map(|_| {
            let (client, base, stop) = (reqwest::Client::new(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = "/Users?filter=userName%20co%20%2242%22&count=10";
                    let response = client.get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.unwrap();
                    let _ = response.bytes().await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let response = client.get(format!("{base}/Users/4242")).bearer_auth(TOKEN).send().await.unwrap();
        let _ = response.bytes().await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut listings = 0;
    for lister in listers {
        listings += lister.await.unwrap();
    }
    latencies.sort();
    println!(
        "{:<44} {:>8} {:>13} {:>10.2} {:>10.2}   max {:.2} ms, {listings} listings meanwhile",
        "GET /Users/{id} beside 2 in-proxy listings",
        latencies.len(),
        "-",
        ms(&latencies, 0.5),
        ms(&latencies, 0.99),
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );
    running.shutdown().await;
    legacy.shutdown().await;
}
