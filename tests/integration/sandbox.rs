//! The script sandbox: a hostile or broken mapping is stopped with a precise answer, the log
//! names the script and the line, and other requests keep being served meanwhile.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{OTHER_TOKEN, RawLegacy, TOKEN, TestEnv, Traffic, http_answer, wait_for_log};

/// One mapping for both apps: `get_user` does something hostile for a few ids, and for any
/// other id makes one legacy call and answers a user. `EVIL` becomes another server's address.
const SCRIPT: &str = r#"
fn get_user(id) {
    if id == "loop" { return spin(); }
    if id == "recurse" { return deeper(0); }
    if id == "string" { return grow_string(); }
    if id == "array" { return grow_array(); }
    if id == "map" { return grow_map(); }
    if id == "absolute" { return legacy.get("http://EVIL/stolen"); } // LINE:absolute
    if id == "scheme-relative" { return legacy.get("//EVIL/stolen"); } // LINE:scheme-relative
    if id == "import" { return load_module(); }
    if id == "files" { return read_file("/etc/passwd"); } // LINE:files
    if id == "env" { return env("HOME"); } // LINE:env
    if id == "names" { return names(id); }
    let response = legacy.get("/users", #{ page: 1, per_page: 1 });
    if response.status != 200 {
        throw #{ status: 502, detail: `the legacy app answered ${response.status}` };
    }
    #{ id: id, userName: `user${id}`, active: true }
}

fn names(id) {
    let seen = [1].map(|i| type_of(legacy) + "/" + type_of(id_cache));
    #{ id: id, userName: seen[0] + "/" + type_of_legacy(), active: true }
}

fn type_of_legacy() { type_of(legacy) }

fn spin() {
    let text = "";
    loop { text = `${text.len()}`; }
}

fn deeper(n) {
    deeper(n + 1)
}

fn grow_string() {
    let text = "x";
    loop { text += text; }
}

fn grow_array() {
    let items = [0];
    loop { items += items; }
}

fn grow_map() {
    let map = #{};
    let i = 0;
    loop { map[`key${i}`] = i; i += 1; }
}

fn load_module() {
    import "secrets" as secrets;
    secrets::token
}

fn list_users(query) { [] }
"#;

/// The 1-based line of the script marked `// LINE:{marker}`.
fn line_of(marker: &str) -> usize {
    let tag = format!("// LINE:{marker}");
    SCRIPT.lines().position(|line| line.trim_end().ends_with(&tag)).unwrap() + 1
}

/// How long a normal request may take while a hostile one runs, on a shared two-core machine.
const NORMAL_BOUND: Duration = Duration::from_secs(2);

/// A proxy running [`SCRIPT`] (with `evil` for `EVIL`) under a 2 s deadline.
async fn start(evil: &str, edit: impl FnOnce(String) -> String) -> TestEnv {
    let script = SCRIPT.replace("EVIL", evil);
    TestEnv::start_script(Some(&script), |text| edit(text.replacen("request_timeout: 10s", "request_timeout: 2s", 1)))
        .await
}

/// Normal requests to the other app and to the same app, 10 clients each.
fn traffic(env: &TestEnv) -> Traffic {
    let other = format!("http://{}/other/scim/Users/7", env.proxy.as_ref().unwrap().scim_addr);
    Traffic::start(&[(OTHER_TOKEN, other), (TOKEN, format!("{}/Users/8", env.base()))], 10)
}

/// Sends `GET /Users/{id}` with a request id of its own; returns the reply, the id and the time taken.
async fn hostile_get(env: &TestEnv, id: &str) -> (crate::support::Reply, String, Duration) {
    let request_id = format!("sandbox-{id}-{}", uuid());
    let started = Instant::now();
    let response = env
        .client
        .get(format!("{}/Users/{id}", env.base()))
        .bearer_auth(TOKEN)
        .header("x-request-id", &request_id)
        .send()
        .await
        .unwrap();
    let reply = crate::support::Reply::read(response).await;
    (reply, request_id, started.elapsed())
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Asserts the generic 500 of a script fault, which tells the client nothing of the script.
fn assert_generic_500(reply: &crate::support::Reply) {
    reply.assert_error(500, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert_eq!(detail, scim_proxy::error::GENERIC, "{detail}");
}

/// Asserts a log line of the request `request_id` naming the script file, `line` (when Rhai
/// knows it: it gives none for a stop by a limit or the deadline) and `says`.
async fn assert_logged(request_id: &str, line: Option<usize>, says: &str) {
    let lines = wait_for_log(&[request_id, "app.rhai", says], Duration::from_secs(5)).await;
    let at_line = |text: &String| {
        line.is_none_or(|line| text.contains(&format!("line {line}:")) || text.contains(&format!("line={line} ")))
    };
    assert!(
        lines.iter().any(at_line),
        "no log line names app.rhai, line {line:?} and {says:?} for {request_id}:\n{}",
        crate::support::log_lines_with(&[request_id]).join("")
    );
}

/// A script stopped by a limit answers 500 quickly (well before its 2 s deadline) while the
/// traffic keeps flowing; the log names the script, the line and the limit.
async fn stopped_by_a_limit(id: &str, line: Option<usize>, says: &str) {
    let env = start("127.0.0.1:9", |t| t).await;
    let traffic = traffic(&env);
    for _ in 0..3 {
        let (reply, request_id, took) = hostile_get(&env, id).await;
        assert_generic_500(&reply);
        assert!(took < Duration::from_secs(2), "{id}: stopped by its limit, not the deadline: {took:?}");
        assert_logged(&request_id, line, says).await;
    }
    let served = traffic.finish(NORMAL_BOUND).await;
    assert!(served >= 20, "{served}");
    assert_eq!(env.get("/Users/9").await.status, StatusCode::OK);
}

/// A script stopped at the deadline answers 504 at the deadline while the traffic keeps
/// flowing; the script's own log line names it and the line it was at.
async fn stopped_at_the_deadline(id: &str) {
    let env = start("127.0.0.1:9", |t| t).await;
    let traffic = traffic(&env);
    let (reply, request_id, took) = hostile_get(&env, id).await;
    reply.assert_error(504, None);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(took >= Duration::from_secs(2) && took < Duration::from_millis(3500), "{id}: answered after {took:?}");
    let served = traffic.finish(NORMAL_BOUND).await;
    assert!(served >= 40, "normal requests served during the 2 s: {served}");
    assert_logged(&request_id, None, "get_user: stopped: the request's deadline passed").await;
    assert_eq!(env.get("/Users/9").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_an_infinite_loop_is_stopped_at_the_deadline() {
    stopped_at_the_deadline("loop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_a_map_grown_one_key_at_a_time_is_stopped_at_the_deadline() {
    // Rhai re-measures the map on every insert, so it never reaches the size limit in time.
    stopped_at_the_deadline("map").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_deep_recursion_is_stopped_at_the_call_depth_limit() {
    stopped_by_a_limit("recurse", None, "get_user: stopped: calls nested deeper than 32 levels").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_a_string_doubled_towards_a_gigabyte_is_stopped_at_64_mib() {
    stopped_by_a_limit("string", None, "get_user: stopped: Length of string over its limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_an_array_doubled_without_end_is_stopped_at_a_million_elements() {
    stopped_by_a_limit("array", None, "get_user: stopped: Size of array/BLOB over its limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_import_fails_and_eval_does_not_compile() {
    stopped_by_a_limit("import", None, "get_user: stopped: import: scripts load no modules").await;
    let engine = scim_proxy::script::ScriptEngine::new();
    for text in
        ["fn get_user(id) { eval(\"1 + 1\") }", "fn get_user(id) { let code = `legacy.get(\"/x\")`; eval(code) }"]
    {
        let error = engine.compile(text, std::path::Path::new("evil.rhai")).unwrap_err();
        assert!(matches!(error, scim_proxy::script::ScriptError::Compile { .. }), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_there_is_no_function_to_read_files_or_the_environment() {
    for id in ["files", "env"] {
        stopped_by_a_limit(id, Some(line_of(id)), "Function not found").await;
    }
    assert!(!crate::support::logs().contains("root:x:0:0"), "a file's content reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_a_script_cannot_call_another_host() {
    let evil = RawLegacy::start(|_| http_answer(200, &[], "{\"stolen\": true}")).await;
    let env = start(&evil.addr.to_string(), |t| t).await;
    let traffic = traffic(&env);
    for id in ["absolute", "scheme-relative"] {
        let (reply, request_id, _) = hostile_get(&env, id).await;
        assert_generic_500(&reply);
        assert_logged(&request_id, Some(line_of(id)), "refused path").await;
    }
    traffic.finish(NORMAL_BOUND).await;
    assert_eq!(evil.connections(), 0, "the other host was reached: {:?}", evil.heads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_a_redirect_from_the_legacy_app_is_not_followed() {
    let elsewhere = RawLegacy::start(|_| http_answer(200, &[], "{\"data\": []}")).await;
    let target = format!("{}/stolen", elsewhere.url());
    let redirector = RawLegacy::start(move |_| http_answer(302, &[("location", &target)], "")).await;
    // The first app's legacy app redirects; the other app keeps its own, and its traffic flows.
    let base = format!("base_url: \"{}/api\"", redirector.url());
    let env = start("127.0.0.1:9", |text| text.replacen("base_url: \"${env.ACME_BASE_URL}\"", &base, 1)).await;
    let other = format!("http://{}/other/scim/Users/7", env.proxy.as_ref().unwrap().scim_addr);
    let traffic = Traffic::start(&[(OTHER_TOKEN, other)], 20);
    let (reply, _, _) = hostile_get(&env, "12").await;
    // The script sees the 302 itself, and says so.
    reply.assert_error(502, None);
    assert_eq!(reply.body["detail"], "the legacy app answered 302", "{}", reply.text);
    traffic.finish(NORMAL_BOUND).await;
    assert_eq!(redirector.request_lines(), ["GET /api/users?page=1&per_page=1 HTTP/1.1"]);
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed: {:?}", elsewhere.heads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_the_proxy_objects_names_cannot_be_taken_by_a_script() {
    let engine = scim_proxy::script::ScriptEngine::new();
    for (text, line, names) in [
        ("fn get_user(id) {\n    let legacy = #{};\n    legacy\n}", 2, "legacy"),
        ("fn get_user(id) {\n    const id_cache = 1;\n    id_cache\n}", 2, "id_cache"),
        ("fn helper(x) { x }\nfn get_user(legacy) { legacy }", 2, "parameter legacy of get_user"),
    ] {
        let error = engine.compile(text, std::path::Path::new("names.rhai")).unwrap_err();
        match &error {
            scim_proxy::script::ScriptError::Compile { line: at, message, .. } => {
                assert_eq!(*at, line, "{error}");
                assert!(message.contains(names), "{error}");
            }
            other => panic!("not a compile error: {other}"),
        }
    }
    // Everywhere else they are the proxy's objects: in functions, nested calls and closures.
    let text = "fn get_user(id) { helper(id) }\n\
                fn helper(id) { [id].map(|i| type_of(legacy) + \" \" + type_of(id_cache)) }";
    let compiled = engine.compile(text, std::path::Path::new("names.rhai")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(compiled.arity("get_user"), Some(1));
    let env = start("127.0.0.1:9", |t| t).await;
    let (reply, _, _) = hostile_get(&env, "names").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["userName"], "Legacy/Ids/Legacy");
}

/// `get_user` answers values nested as deep as the script can make them.
const DEEP_SCRIPT: &str = r#"
fn get_user(id) {
    if id == "map-10000" { return #{ id: id, userName: "deep", deep: nest(10000) }; }
    if id == "depth-128" { return #{ id: id, userName: "deep", deep: nest(126) }; }
    if id == "depth-129" { return #{ id: id, userName: "deep", deep: nest(127) }; }
    if id == "encoded-129" { return #{ id: id, userName: json_encode(nest(128)) }; }
    if id == "results-chain" {
        let chain = results();
        for i in 0..100000 { let next = results(); next.push(#{ a: chain }); chain = next; }
        return #{ id: id, userName: "chain", deep: chain };
    }
    if id == "results-down" {
        let top = results();
        let last = top;
        for i in 0..100000 { let next = results(); last.push(#{ a: next }); last = next; }
        return #{ id: id, userName: "chain", deep: top };
    }
    if id == "results-cycle" { let list = results(); list.push(#{ a: list }); return #{ id: id, userName: "cycle", deep: list }; }
    if id == "closure" { let f = || 1; return #{ id: id, userName: "closure", f: f }; }
    #{ id: id, userName: `user${id}`, active: true }
}

// A map holding a map … `levels` deep; `take` moves the value instead of copying it, which
// makes this as fast as a script can nest (Rhai still measures the whole map at each level).
fn nest(levels) {
    let m = #{};
    for i in 0..levels { m = #{ a: take(m) }; }
    m
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_values_nested_deeper_than_the_proxy_converts_are_refused_and_the_proxy_keeps_serving() {
    // A whole map 10,000 levels deep takes a few seconds to build: the deadline leaves room.
    let env = TestEnv::start_script(Some(DEEP_SCRIPT), |text| {
        text.replacen("request_timeout: 10s", "request_timeout: 60s", 1)
    })
    .await;
    // 128 levels (the user map and 127 below it) is what serde_json parses again: answered.
    let (reply, _, _) = hostile_get(&env, "depth-128").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    for id in ["depth-129", "encoded-129", "map-10000", "results-chain", "results-down", "results-cycle", "closure"] {
        let (reply, request_id, _) = hostile_get(&env, id).await;
        assert_generic_500(&reply);
        let says = match id {
            "encoded-129" => "nested deeper than 128 levels",
            "results-chain" | "results-down" | "results-cycle" => "results() lists nest one level at most",
            _ => "not plain data",
        };
        assert_logged(&request_id, None, says).await;
        // The process is still there, and answers.
        assert_eq!(env.get("/Users/9").await.status, StatusCode::OK, "after {id}");
    }
}
