//! Traces: one identity provider request followed through the proxy's spans into the legacy app, exported to an OTLP receiver the test runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{self, RawLegacy, Reply, TOKEN, TestEnv, http_answer};

/// A mapping whose `get_user` makes two legacy calls: the user, then its teams.
const TWO_CALLS: &str = r#"
fn get_user(id) {
    let found = legacy.get(["users", id]);
    if found.status != 200 { return (); }
    legacy.get(["users", id, "teams"]);
    #{ id: id, userName: `u${id}`, active: true }
}
fn list_users(query) { [] }
fn create_user(user) { user.id = "1"; user }
"#;

/// The caller's trace in the tests: the W3C specification's example ids.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One request to the receiver, as it came.
struct Export {
    path: String,
    content_type: String,
    body: Value,
}

/// An OTLP/HTTP receiver on 127.0.0.1: keeps every export it is sent and answers `200 {}`.
struct Receiver {
    addr: std::net::SocketAddr,
    exports: Arc<(Mutex<Vec<Export>>, tokio::sync::Notify)>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        use http_body_util::BodyExt as _;
        let exports = Arc::new((Mutex::new(Vec::new()), tokio::sync::Notify::new()));
        let (addr, task) = support::serve_fake(exports.clone(), |exports, request: hyper::Request<_>| async move {
            let path = request.uri().path().to_owned();
            let content_type =
                request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let bytes = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            exports.0.lock().unwrap().push(Export { path, content_type, body });
            exports.1.notify_waiters();
            let mut answer = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")));
            answer.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
            answer
        })
        .await;
        Self { addr, exports, _task: task }
    }

    /// The configuration's `traces` section pointing at this receiver.
    fn traces(&self, more: &str) -> String {
        format!("traces:\n  otlp_endpoint: \"http://{}\"\n  service_name: scim-proxy-test\n{more}", self.addr)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let exports = self.exports.0.lock().unwrap();
        let mut spans = Vec::new();
        for export in exports.iter() {
            assert_eq!((export.path.as_str(), export.content_type.as_str()), ("/v1/traces", "application/json"));
            let resource = &export.body["resourceSpans"][0];
            let service = &resource["resource"]["attributes"][0];
            assert_eq!(service["key"], "service.name", "{}", export.body);
            assert_eq!(service["value"]["stringValue"], "scim-proxy-test", "{}", export.body);
            for scope in resource["scopeSpans"].as_array().unwrap() {
                spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
            }
        }
        spans
    }

    /// The spans of a trace, once `count` of them have arrived (within 10 s).
    async fn trace(&self, trace_id: &str, count: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.exports.1.notified();
            let spans: Vec<Value> = self.spans().into_iter().filter(|s| s["traceId"] == trace_id).collect();
            if spans.len() >= count {
                return spans;
            }
            if tokio::time::timeout_at(until.into(), arrived).await.is_err() {
                panic!("{} of {count} spans of trace {trace_id} arrived: {spans:#?}", spans.len());
            }
        }
    }
}

/// A span's attribute, as the text of its value (OTLP JSON writes 64-bit integers as strings).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let found = span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let value = &found["value"];
    value["stringValue"].as_str().or(value["intValue"].as_str()).map(str::to_owned)
}

fn nanos(span: &Value, key: &str) -> u64 {
    span[key].as_str().unwrap().parse().unwrap()
}

/// The spans of one kind (1 internal, 2 server, 3 client).
fn of_kind(spans: &[Value], kind: u64) -> Vec<&Value> {
    spans.iter().filter(|s| s["kind"] == kind).collect()
}

/// The proxy running [`TWO_CALLS`] with `traces` (none: traces off) in front of a raw legacy
/// app that answers every call `200` and keeps the heads it receives.
async fn start(traces: Option<String>) -> (TestEnv, RawLegacy) {
    let legacy =
        RawLegacy::start(|_| http_answer(200, &[("content-type", "application/json")], "{\"id\": \"7\"}")).await;
    let base = format!("base_url: \"{}/api\"", legacy.url());
    let env = TestEnv::start_script(Some(TWO_CALLS), |text| {
        let text = text.replace("base_url: \"${env.ACME_BASE_URL}\"", &base);
        match traces {
            Some(traces) => format!("{traces}{text}"),
            None => text,
        }
    })
    .await;
    (env, legacy)
}

/// `GET /Users/{id}` with these extra headers.
async fn get_user(env: &TestEnv, id: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = env.client.get(format!("{}/Users/{id}", env.base())).bearer_auth(TOKEN);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = Reply::read(request.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply
}

/// The value of a header in a request head, as received.
fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The heads the legacy app received for the user `id` (its record and its teams).
fn heads_for(legacy: &RawLegacy, id: &str) -> Vec<String> {
    let prefix = format!("GET /api/users/{id}");
    legacy
        .heads()
        .into_iter()
        .filter(|h| h.starts_with(&format!("{prefix} ")) || h.starts_with(&format!("{prefix}/")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_follow_an_idp_request_through_the_script_into_the_legacy_app() {
    let receiver = Receiver::start().await;
    let (env, legacy) = start(Some(receiver.traces("  export_interval: 100ms\n"))).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    get_user(
        &env,
        "7",
        &[("traceparent", &traceparent), ("tracestate", "idp=t61rcWkgMzE"), ("x-request-id", "traced-7")],
    )
    .await;

    let spans = receiver.trace(CALLER_TRACE, 4).await;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let (requests, scripts, calls) = (of_kind(&spans, 2), of_kind(&spans, 1), of_kind(&spans, 3));
    assert_eq!((requests.len(), scripts.len(), calls.len()), (1, 1, 2), "{spans:#?}");
    let (request, script) = (requests[0], scripts[0]);

    // The request continues the identity provider's span.
    assert_eq!(request["parentSpanId"], CALLER_SPAN);
    assert_eq!(request["name"], "GET /scim/v2/Users/{id}");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/scim/v2/Users/{id}"),
        ("http.response.status_code", "200"),
        ("scim.app", "acme"),
        ("scim.operation", "get_user"),
        ("scim.request_id", "traced-7"),
        ("scim.legacy_calls", "2"),
        ("client.address", "127.0.0.1"),
    ] {
        assert_eq!(attribute(request, key).as_deref(), Some(value), "{key}: {request:#}");
    }
    assert!(request.get("status").is_none(), "{request:#}");

    // The script call is its child, and the legacy calls are the script call's.
    assert_eq!(script["parentSpanId"], request["spanId"]);
    assert_eq!(script["name"], "script get_user");
    assert_eq!(attribute(script, "code.function.name").as_deref(), Some("get_user"));
    let mut paths = Vec::new();
    for call in &calls {
        assert_eq!(call["parentSpanId"], script["spanId"], "{call:#}");
        assert_eq!(call["name"], "GET");
        assert_eq!(attribute(call, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(attribute(call, "http.response.status_code").as_deref(), Some("200"));
        assert_eq!(attribute(call, "server.address").as_deref(), Some("127.0.0.1"));
        paths.push(attribute(call, "url.path").unwrap());
    }
    paths.sort();
    assert_eq!(paths, ["/api/users/7", "/api/users/7/teams"]);
    let ids: std::collections::BTreeSet<&str> = spans.iter().map(|s| s["spanId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "every span has its own id");

    // Each span lies within its parent's time.
    let within = |child: &Value, parent: &Value| {
        nanos(parent, "startTimeUnixNano") <= nanos(child, "startTimeUnixNano")
            && nanos(child, "endTimeUnixNano") <= nanos(parent, "endTimeUnixNano")
    };
    assert!(within(script, request), "{script:#} {request:#}");
    assert!(calls.iter().all(|call| within(call, script)), "{calls:#?} {script:#}");

    // The legacy app was told which call each request is: the trace, and that call's span.
    let heads = heads_for(&legacy, "7");
    assert_eq!(heads.len(), 2, "{heads:#?}");
    for head in &heads {
        let path = head.split(' ').nth(1).unwrap();
        let call = calls.iter().find(|c| attribute(c, "url.path").as_deref() == Some(path)).unwrap();
        let expected = format!("00-{CALLER_TRACE}-{}-01", call["spanId"].as_str().unwrap());
        assert_eq!(header_in(head, "traceparent"), Some(expected.as_str()), "{head}");
        assert_eq!(header_in(head, "tracestate"), Some("idp=t61rcWkgMzE"), "{head}");
        assert_eq!(header_in(head, "x-request-id"), Some("traced-7"), "{head}");
    }
    // The request's log lines carry its trace id.
    let lines = support::log_lines_with(&["traced-7", "request done"]);
    assert!(lines.iter().any(|line| line.contains(&format!("trace_id={CALLER_TRACE}"))), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_start_where_no_caller_did_and_an_unsampled_trace_is_passed_on_not_exported() {
    let receiver = Receiver::start().await;
    let (env, legacy) = start(Some(receiver.traces("  export_interval: 100ms\n"))).await;

    // No traceparent: a new trace, whose root is the request.
    get_user(&env, "8", &[]).await;
    let head = heads_for(&legacy, "8").into_iter().next().unwrap();
    let sent = header_in(&head, "traceparent").unwrap().to_owned();
    let fields: Vec<&str> = sent.split('-').collect();
    assert_eq!((fields.len(), fields[0], fields[3]), (4, "00", "01"), "{sent}");
    let spans = receiver.trace(fields[1], 4).await;
    let request = of_kind(&spans, 2)[0];
    assert!(request.get("parentSpanId").is_none_or(|p| p == ""), "{request:#}");
    assert!(of_kind(&spans, 3).iter().any(|call| call["spanId"] == fields[2]), "{spans:#?}");

    // A caller that does not record its trace: the legacy app still learns of it, with the
    // proxy's span as the parent, and nothing is exported.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    get_user(&env, "9", &[("traceparent", &format!("00-{unsampled}-b7ad6b7169203331-00"))]).await;
    for head in heads_for(&legacy, "9") {
        let sent = header_in(&head, "traceparent").unwrap();
        assert!(sent.starts_with(&format!("00-{unsampled}-")) && sent.ends_with("-00"), "{sent}");
        assert!(!sent.contains("b7ad6b7169203331"), "{sent}");
    }
    // A sampled request after it: once its spans are in, the unsampled one's would have been.
    get_user(&env, "10", &[("traceparent", &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))]).await;
    receiver.trace(CALLER_TRACE, 4).await;
    let exported: Vec<Value> = receiver.spans().into_iter().filter(|s| s["traceId"] == unsampled).collect();
    assert!(exported.is_empty(), "{exported:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_of_the_last_requests_are_sent_at_shutdown() {
    let receiver = Receiver::start().await;
    // Nothing would be sent for a minute but for the shutdown.
    let (mut env, _legacy) = start(Some(receiver.traces("  export_interval: 1m\n"))).await;
    get_user(&env, "11", &[("traceparent", &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))]).await;
    assert!(receiver.spans().is_empty());
    env.proxy.take().unwrap().shutdown().await;
    let spans: Vec<Value> = receiver.spans().into_iter().filter(|s| s["traceId"] == CALLER_TRACE).collect();
    assert_eq!(spans.len(), 4, "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_a_request_its_client_abandons_ends_as_abandoned() {
    let receiver = Receiver::start().await;
    // A legacy app that answers after a second.
    let (slow, _task) = support::serve_fake(Arc::new(()), |_, _| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut answer = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")));
        answer.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
        answer
    })
    .await;
    let base = format!("base_url: \"http://{slow}/api\"");
    let traces = receiver.traces("  export_interval: 100ms\n");
    let env = TestEnv::start_script(Some(TWO_CALLS), |text| {
        format!("{traces}{}", text.replace("base_url: \"${env.ACME_BASE_URL}\"", &base))
    })
    .await;
    // h2: the client's giving up resets the stream, and the proxy drops the request.
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let request = client
        .get(format!("{}/Users/15", env.base()))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send();
    assert!(tokio::time::timeout(Duration::from_millis(300), request).await.is_err());
    let spans = receiver.trace(CALLER_TRACE, 1).await;
    let request = of_kind(&spans, 2)[0].clone();
    assert_eq!(attribute(&request, "error.type").as_deref(), Some("abandoned"), "{request:#}");
    assert_eq!(request["status"]["code"], 2, "{request:#}");
    assert_eq!(request["name"], "GET");
    // The script runs on to its end, and its spans still hang below the request's.
    let spans = receiver.trace(CALLER_TRACE, 4).await;
    assert!(of_kind(&spans, 1).iter().all(|script| script["parentSpanId"] == request["spanId"]), "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_off_the_callers_traceparent_reaches_the_legacy_app_unchanged() {
    let (env, legacy) = start(None).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    get_user(&env, "12", &[("traceparent", &traceparent), ("tracestate", "idp=1,other=2")]).await;
    let heads = heads_for(&legacy, "12");
    assert_eq!(heads.len(), 2, "{heads:#?}");
    for head in &heads {
        assert_eq!(header_in(head, "traceparent"), Some(traceparent.as_str()), "{head}");
        assert_eq!(header_in(head, "tracestate"), Some("idp=1,other=2"), "{head}");
    }
    // Without one, or with one that is not valid, none is sent.
    get_user(&env, "13", &[]).await;
    get_user(&env, "14", &[("traceparent", "00-not-a-trace-01"), ("tracestate", "idp=1")]).await;
    for id in ["13", "14"] {
        for head in heads_for(&legacy, id) {
            assert_eq!((header_in(&head, "traceparent"), header_in(&head, "tracestate")), (None, None), "{head}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_a_collector_that_never_answers_slows_no_request_and_is_logged_once() {
    // A collector that accepts connections and never answers: each export waits for its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let _collector = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let traces = format!(
        "traces:\n  otlp_endpoint: \"{endpoint}\"\n  export_interval: 100ms\n  export_timeout: 1500ms\n  batch_size: 4\n  queue_size: 8\n"
    );
    let (env, _legacy) = start(Some(traces)).await;

    // Requests answer at their usual speed while exports hang, and spans past the queue are dropped.
    for i in 0..40 {
        let started = Instant::now();
        get_user(&env, &format!("{}", 100 + i), &[]).await;
        assert!(started.elapsed() < Duration::from_secs(1), "request {i} took {:?}", started.elapsed());
    }
    let needles = ["trace export failed", endpoint.as_str()];
    let failed = support::wait_for_log(&needles, Duration::from_secs(10)).await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(!support::wait_for_log(&["trace spans dropped", &endpoint], Duration::from_secs(10)).await.is_empty());
    // More requests, more exports that fail, and no more lines. The exporter tries one export
    // at a time, so once a third connection after the warning is accepted the two before it
    // have failed.
    let after = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < after + 3 {
        assert!(Instant::now() < until, "no further export was tried");
        let started = Instant::now();
        get_user(&env, &format!("{}", 200 + i), &[]).await;
        assert!(started.elapsed() < Duration::from_secs(1), "request {i} took {:?}", started.elapsed());
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(support::log_lines_with(&needles).len(), 1);
}
