//! Micro-benchmarks of the steps of a request: filter parse and evaluation, PATCH apply,
//! projection, JSON ↔ Rhai conversion and a Rhai call, recording metrics, and the whole request
//! path in-process.
//!
//! Run with `cargo bench --bench micro` (optionally a name filter: `cargo bench --bench micro
//! -- patch`). Each figure is the median of 11 timed batches of ~50 ms after a warm-up;
//! compare the rows of one run. `cargo bench --bench micro -- compile` times one compile of
//! scripts of growing size instead (the figures behind the `script.*` defaults).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acme::AcmeConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use scim_proxy::app::App;
use scim_proxy::config::{Config, Variables};
use scim_proxy::observe::metrics::Metrics;
use scim_proxy::runtime;
use scim_proxy::scim::evaluate::Matcher;
use scim_proxy::scim::filter::parse_filter;
use scim_proxy::scim::patch::{apply_patch, parse_patch};
use scim_proxy::scim::projection::Projection;
use scim_proxy::scim::schema::ResourceKind;
use scim_proxy::scim::unpublished::{Unpublished, UnsupportedAttributes};
use scim_proxy::script::{CallScope, CallStats, ScriptEngine};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "bench-token-0123456789abcdef";

/// The allocator the `scim-proxy` binary runs with, so that figures match production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Times `f`: warm-up, then the median and the fastest of 11 batches, in ns per call.
fn measure(filter: &str, name: &str, mut f: impl FnMut()) {
    if !name.contains(filter) {
        return;
    }
    let warm = Instant::now();
    let mut calls = 0u64;
    while warm.elapsed() < Duration::from_millis(200) {
        f();
        calls += 1;
    }
    let per_call = warm.elapsed().as_secs_f64() / calls as f64;
    let batch = ((0.05 / per_call) as u64).max(1);
    let mut samples: Vec<f64> = (0..11)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..batch {
                f();
            }
            started.elapsed().as_secs_f64() * 1e9 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    println!("{name:<52} {:>12.0} {:>12.0} {:>9}", samples[5], samples[0], batch);
}

/// A user as the demo mapping returns it, finished by the proxy.
fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "4242", "userName": "user04242", "active": true, "displayName": "Grace Hopper",
        "title": "Engineer", "name": {"givenName": "Grace", "familyName": "Hopper"},
        "emails": [{"value": "grace.hopper4242@acme.example", "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+1 555 4242", "type": "work"}],
        "groups": [{"value": "7", "display": "Engineering", "type": "direct"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
            {"employeeNumber": "E004242", "department": "Engineering"},
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z",
                 "lastModified": "2024-01-01T00:00:00Z", "location": "http://x/scim/v2/Users/4242",
                 "version": "W/\"0123456789abcdef\""}
    })
}

/// An Acme user record, what the legacy API answers.
fn acme_record() -> Value {
    json!({"id": 4242, "login": "user04242", "first_name": "Grace", "last_name": "Hopper",
        "display_name": "Grace Hopper", "mail": "grace.hopper4242@acme.example", "enabled": true,
        "department": "Engineering", "title": "Engineer", "employee_no": "E004242", "manager_id": null,
        "phone": "+1 555 4242", "external_ref": null, "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z"})
}

fn config(base_url: &str) -> Config {
    // The demo, with a function that writes Acme's body for a user as `create_user` does.
    let demo_script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.rhai")).unwrap();
    let path = std::env::temp_dir().join(format!("scim-micro-{}.rhai", std::process::id()));
    std::fs::write(&path, format!("{demo_script}\nfn to_acme(user) {{ user.fill(Fn(\"acme_user\")) }}\n")).unwrap();
    let script = path.to_str().unwrap();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml")).unwrap();
    let app = demo.split_once("apps:\n").unwrap().1.replace("scripts/demo.rhai", script);
    let text = format!("apps:\n{app}");
    let mut vars = Variables::default();
    vars.set("SCIM_TOKEN", TOKEN.to_owned());
    vars.set("ACME_API_KEY", "bench-key".to_owned());
    vars.set("ACME_BASE_URL", base_url.to_owned());
    Config::parse(&text, "bench.yaml", &vars).unwrap()
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let config = config("http://127.0.0.1:9/api/v1");
    let engine = Arc::new(ScriptEngine::new());
    let app = App::build(&config, &config.apps[0], engine).unwrap();
    let rs = app.resource(ResourceKind::User).unwrap();
    let user = user();
    println!("{:<52} {:>12} {:>12} {:>9}", "step", "median ns", "fastest ns", "batch");

    let text =
        r#"emails[type eq "work" and value co "@acme.example"] or (userName eq "bjensen" and not (active eq false))"#;
    measure(&filter, "filter: parse (compound, value path)", || {
        black_box(parse_filter(black_box(text)).unwrap());
    });
    let parsed = parse_filter(text).unwrap();
    let matcher = Matcher::new(&parsed, rs).unwrap();
    measure(&filter, "filter: evaluate (compound, value path) on a user", || {
        black_box(matcher.matches(black_box(&user)));
    });
    let eq = parse_filter(r#"userName eq "user04242""#).unwrap();
    let eq_matcher = Matcher::new(&eq, rs).unwrap();
    measure(&filter, "filter: evaluate userName eq on a user", || {
        black_box(eq_matcher.matches(black_box(&user)));
    });

    let patch_body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Admiral"}]});
    measure(&filter, "patch: parse one replace", || {
        black_box(
            parse_patch(black_box(&patch_body), rs, &mut Unpublished::new(UnsupportedAttributes::Refuse)).unwrap(),
        );
    });
    let ops = parse_patch(&patch_body, rs, &mut Unpublished::new(UnsupportedAttributes::Refuse)).unwrap();
    measure(&filter, "patch: apply one replace to a user", || {
        black_box(apply_patch(rs, black_box(&user), &ops).unwrap());
    });
    let entra = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "g@acme.example"},
                       {"op": "Replace", "path": "active", "value": "False"}]});
    let entra_ops = parse_patch(&entra, rs, &mut Unpublished::new(UnsupportedAttributes::Refuse)).unwrap();
    measure(&filter, "patch: apply Entra's value-path replace + active", || {
        black_box(apply_patch(rs, black_box(&user), &entra_ops).unwrap());
    });

    let default = Projection::parse(rs, None, None).unwrap();
    measure(&filter, "projection: default attributes of a user", || {
        black_box(default.apply(rs, black_box(&user)));
    });
    let named = Projection::parse(rs, Some("userName,emails"), None).unwrap();
    measure(&filter, "projection: attributes=userName,emails", || {
        black_box(named.apply(rs, black_box(&user)));
    });
    measure(&filter, "projection: parse attributes=userName,emails", || {
        black_box(Projection::parse(rs, Some("userName,emails"), None).unwrap());
    });

    let record = acme_record();
    measure(&filter, "json: Acme record JSON → Dynamic", || {
        let _ = black_box(ScriptEngine::to_dynamic(black_box(&record)));
    });
    let dynamic = ScriptEngine::to_dynamic(&user);
    measure(&filter, "json: SCIM user Dynamic → JSON", || {
        black_box(ScriptEngine::to_json(black_box(&dynamic)).unwrap());
    });
    let bytes = serde_json::to_vec(&record).unwrap();
    measure(&filter, "json: Acme record bytes → Value → Dynamic", || {
        let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
        let _ = black_box(ScriptEngine::to_dynamic(&v));
    });
    measure(&filter, "json: Acme record bytes → Dynamic", || {
        let _ = black_box(ScriptEngine::parse_json(black_box(std::str::from_utf8(&bytes).unwrap())).unwrap());
    });
    // A listing page as Acme answers it: 100 records.
    let page = serde_json::to_vec(&json!({"data": vec![record.clone(); 100], "total": 10_000})).unwrap();
    measure(&filter, "json: a 100-record page bytes → Dynamic", || {
        let _ = black_box(ScriptEngine::parse_json(black_box(std::str::from_utf8(&page).unwrap())).unwrap());
    });
    let scim_page = ScriptEngine::to_dynamic(&Value::Array(vec![user.clone(); 100]));
    measure(&filter, "json: 100 SCIM users Dynamic → JSON", || {
        black_box(ScriptEngine::to_json(black_box(&scim_page)).unwrap());
    });
    let scope = CallScope {
        request_id: Arc::from("bench"),
        deadline: Instant::now() + Duration::from_secs(3600),
        stats: Arc::new(CallStats::default()),
        journal: None,
        metrics: Arc::new(Metrics::default()),
        trace: scim_proxy::observe::trace::TraceScope::default(),
    };
    // From this thread, not a runtime worker: the figures include handing each call to a worker
    // and back, which a request's call does not pay.
    measure(&filter, "rhai: script call to_scim(record) from outside, to JSON", || {
        let args = vec![ScriptEngine::to_dynamic(&record)];
        let out = runtime.block_on(app.script.call("to_scim", args, &scope)).unwrap();
        black_box(ScriptEngine::to_json(&out).unwrap());
    });
    measure(&filter, "rhai: script call to_acme(user) (acme_user filled) from outside, to JSON", || {
        let args = vec![ScriptEngine::to_dynamic(&user)];
        let out = runtime.block_on(app.script.call("to_acme", args, &scope)).unwrap();
        black_box(ScriptEngine::to_json(&out).unwrap());
    });

    // What a GET /Users/{id} records: in flight, the request, its script call, two legacy calls.
    let metrics = Metrics::default();
    let elapsed = Duration::from_micros(1500);
    measure(&filter, "metrics: record a request (count + histogram)", || {
        metrics.request(black_box("acme"), black_box("get_user"), black_box(200), elapsed);
    });
    measure(&filter, "metrics: record a GET /Users/{id}'s series", || {
        let in_flight = metrics.in_flight(black_box("acme"));
        metrics.script_call(black_box("acme"), black_box("get_user"), elapsed);
        metrics.legacy_call(black_box("acme"), black_box("GET"), elapsed);
        metrics.legacy_call(black_box("acme"), black_box("GET"), elapsed);
        metrics.request(black_box("acme"), black_box("get_user"), black_box(200), elapsed);
        drop(in_flight);
    });
    measure(&filter, "metrics: render /metrics (one app's series)", || {
        black_box(metrics.render(&scim_proxy::observe::metrics::Gauges::default()));
    });

    let whole = ["request: GET /Users/{id} in-process", "request: GET /Users?filter=userName eq in-process"];
    if whole.iter().any(|name| name.contains(&filter)) {
        runtime.block_on(whole_request(&filter));
    }
    // A minute and a half: only when asked for by name.
    if !filter.is_empty() && "compile: a script".contains(&filter) {
        compile_times();
    }
}

/// How long Rhai takes to compile scripts of growing size, once each (seconds, not batches):
/// the figures behind the defaults of `script.max_bytes` and `script.max_functions`.
fn compile_times() {
    let engine = ScriptEngine::with_bounds(&scim_proxy::config::ScriptConfig {
        max_bytes: 16 * 1024 * 1024,
        max_functions: 100_000,
        compile_timeout: Duration::from_secs(600),
    });
    let time = |name: String, text: String| {
        let started = Instant::now();
        let compiled = engine.compile(&text, std::path::Path::new("bench.rhai")).unwrap();
        let took = started.elapsed().as_secs_f64() * 1000.0;
        println!("{name:<52} {took:>12.1} ms {:>8} bytes {:>6} functions", text.len(), compiled.functions().count());
    };
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.rhai")).unwrap();
    time("compile: a script, scripts/demo.rhai".into(), demo);
    for n in [1000, 2000, 4000, 8000, 16000, 32000] {
        let text = (0..n).map(|i| format!("fn f{i}(x) {{ x + {i} }}\n")).collect();
        time(format!("compile: a script of {n} one-line functions"), text);
    }
    // Statements without effect, which the optimiser drops one at a time from their block.
    for kib in [64, 128, 256, 512, 1024] {
        let text = format!("fn big(x) {{\n{}}}\n", "x;".repeat(kib * 512));
        time(format!("compile: a script of {kib} KiB of `x;` in one function"), text);
    }
    for kib in [128, 256, 512] {
        let text = format!("fn big(x) {{\n{}}}\n", "let y = x;".repeat(kib * 1024 / 10));
        time(format!("compile: a script of {kib} KiB of `let y = x;`"), text);
    }
}

/// The whole request path: the proxy and Acme in this process, over loopback HTTP/1.1 with
/// keep-alive, one request at a time.
async fn whole_request(filter: &str) {
    let legacy =
        acme::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), AcmeConfig::new("bench-key")).await.unwrap();
    let logins: Vec<String> =
        legacy.store().seed_users(10_000).into_iter().map(|id| legacy.store().get_user(id).unwrap().login).collect();
    let config = config(&legacy.base_url());
    let any = Some("127.0.0.1:0".parse().unwrap());
    let running = runtime::start(&config, any, any).await.unwrap();
    let stream = TcpStream::connect(running.scim_addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let host = running.scim_addr.to_string();
    let handle = tokio::runtime::Handle::current();
    // `measure` is synchronous: each call blocks this thread on one request.
    let mut get = |target: &str| {
        let request = http::Request::get(target)
            .header("host", &host)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        handle.block_on(async {
            sender.ready().await.unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert!(response.status().is_success());
            black_box(response.into_body().collect().await.unwrap());
        });
    };
    tokio::task::block_in_place(|| {
        let mut i = 0u64;
        measure(filter, "request: GET /Users/{id} in-process", || {
            i += 1;
            get(&format!("/scim/v2/Users/{}", i % 10_000 + 1));
        });
        let mut i = 0u64;
        measure(filter, "request: GET /Users?filter=userName eq in-process", || {
            i += 1;
            get(&format!("/scim/v2/Users?filter=userName%20eq%20%22{}%22", logins[(i % 10_000) as usize]));
        });
    });
    running.shutdown().await;
    legacy.shutdown().await;
}
