//! Scripts too big to serve: `script.max_bytes`, `script.max_functions` and
//! `script.compile_timeout` refuse them at start, in `check` and `test`, and at a reload (the
//! previous script serving on), and a compile that takes too long holds up neither later
//! edits nor shutdown.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{TestEnv, readyz_until, repo_file, write_whole};

const VERSION_ONE: &str = r#"fn get_user(id) { #{ id: id, userName: "one" } }"#;
const VERSION_TWO: &str = r#"fn get_user(id) { #{ id: id, userName: "two" } }"#;
/// The `get_user` of the scripts over a bound: never served.
const OVER: &str = r#"fn get_user(id) { #{ id: id, userName: "over" } }"#;

/// About `bytes` of statements without effect in one function: Rhai's compile time grows with
/// the square of their number (some 10 s for 512 KiB, a minute for 1 MiB).
fn slow_to_compile(bytes: usize) -> String {
    format!("{OVER}\nfn big(x) {{\n{}}}\n", "x;".repeat(bytes / 2))
}

/// `n` one-line functions, `get_user` the first, as a generated script has them: the first
/// one over a bound of 1000 is on line 1001.
fn many_functions(n: usize) -> String {
    let functions: String = (1..n).map(|i| format!("fn f{i}(x) {{ x + {i} }}\n")).collect();
    format!("{OVER}\n{functions}")
}

/// Runs `scim-proxy <command> --config <config>` and waits at most `within` for it to exit;
/// `None` when it was still running then (it is killed).
fn run_command(command: &str, config: &Path, within: Duration) -> Option<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args([command, "--config"])
        .arg(config)
        .env("SCIM_TOKEN", "check-token-0123456789abcdef")
        .env("ACME_API_KEY", "key")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), text))
}

/// The shipped `proxy.yaml` and the demo's test file in a temporary folder, with `script` as
/// the demo script.
fn project(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/demo.rhai"), script).unwrap();
    std::fs::copy(repo_file("scripts/demo.test.yaml"), dir.path().join("scripts/demo.test.yaml")).unwrap();
    std::fs::copy(repo_file("proxy.yaml"), dir.path().join("proxy.yaml")).unwrap();
    dir
}

#[test]
fn script_bounds_check_and_test_refuse_a_script_over_the_bounds_at_once_naming_file_and_bound() {
    // 1.2 MB that took a minute to compile: refused by its size before it is compiled.
    let big = project(&slow_to_compile(1_200_000));
    let size = std::fs::metadata(big.path().join("scripts/demo.rhai")).unwrap().len();
    // A generated script of 1,001 functions, within the size bound.
    let many = project(&many_functions(1001));
    let says = [
        (&big, format!("scripts/demo.rhai: {size} bytes, over script.max_bytes (262144)")),
        (
            &many,
            "scripts/demo.rhai:1001:1: more than 1000 functions (closures included), over script.max_functions".into(),
        ),
    ];
    for (dir, says) in says {
        for command in ["check", "test"] {
            let (ok, output) = run_command(command, &dir.path().join("proxy.yaml"), Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{command} still running after 10 s ({says})"));
            assert!(!ok, "{command}: {output}");
            assert!(output.contains(&says), "{command} should say {says}: {output}");
        }
    }
    // The bounds are configuration: raised, the generated script passes.
    let text = std::fs::read_to_string(many.path().join("proxy.yaml")).unwrap();
    std::fs::write(many.path().join("proxy.yaml"), format!("script:\n  max_functions: 2000\n{text}")).unwrap();
    let (ok, output) = run_command("check", &many.path().join("proxy.yaml"), Duration::from_secs(30)).unwrap();
    assert!(ok, "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_bounds_the_proxy_does_not_start_on_a_script_over_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("app.rhai");
    let config = crate::support::config_text(&script);
    // 13,000 small functions: over both bounds, and quick to compile when there were none.
    std::fs::write(&script, many_functions(13_000)).unwrap();
    let error = crate::support::start_error(&config).await;
    assert!(error.contains("app.rhai: ") && error.contains("bytes, over script.max_bytes (262144)"), "{error}");
    std::fs::write(&script, many_functions(1001)).unwrap();
    let error = crate::support::start_error(&config).await;
    assert!(error.contains("app.rhai:1001:1: more than 1000 functions"), "{error}");
    assert!(error.contains("over script.max_functions"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_bounds_a_reload_over_the_bounds_is_refused_and_the_previous_script_serves() {
    let env = TestEnv::start_script(Some(VERSION_ONE), |t| {
        t.replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms")
    })
    .await;
    let script = env.script_path();
    let cases = [
        (many_functions(13_000), "bytes, over script.max_bytes (262144)"),
        (many_functions(1001), "app.rhai:1001:1: more than 1000 functions"),
    ];
    for (failures, (text, says)) in (1..).zip(cases) {
        write_whole(&script, &text);
        let app = readyz_until(&env, Duration::from_secs(10), |app| app["script_reload_failures"] == failures).await;
        let error = app["script_error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        let reply = env.get("/Users/1").await;
        assert_eq!(
            (reply.status, &reply.body["userName"]),
            (StatusCode::OK, &"one".into()),
            "the previous script serves"
        );
        let logged = crate::support::wait_for_log(&["script reload refused", says], Duration::from_secs(5)).await;
        assert!(!logged.is_empty(), "the log names the bound: {says}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_bounds_a_good_script_after_one_too_slow_to_compile_is_served_while_that_compile_runs_on() {
    let env = TestEnv::start_script(Some(VERSION_ONE), |t| {
        let server = t.replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms");
        format!("script:\n  max_bytes: 1048576\n  compile_timeout: 300ms\n{server}")
    })
    .await;
    let script = env.script_path();
    // Within the raised size bound, but some 10 s to compile: abandoned at the timeout.
    write_whole(&script, &slow_to_compile(512 * 1024));
    let app = readyz_until(&env, Duration::from_secs(10), |app| app["script_reload_failures"] == 1).await;
    let error = app["script_error"].as_str().unwrap();
    assert!(error.contains("not compiled within script.compile_timeout (300ms)"), "{error}");
    assert_eq!(env.get("/Users/1").await.body["userName"], "one", "the previous script serves");
    // The good edit is compiled beside the abandoned compile, not after it.
    write_whole(&script, VERSION_TWO);
    readyz_until(&env, Duration::from_secs(5), |app| app["script_reloads"] == 1).await;
    assert_eq!(env.get("/Users/1").await.body["userName"], "two");
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_bounds_sigterm_during_a_long_compile_exits_at_once() {
    let env = TestEnv::start().await; // only for its Acme Directory
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("app.rhai");
    std::fs::write(&script, VERSION_ONE).unwrap();
    let file = dir.path().join("proxy.yaml");
    // Bounds raised so far that the compile runs for minutes.
    let text = crate::support::config_text(&script).replacen(
        "server:\n",
        "script:\n  max_bytes: 4194304\n  compile_timeout: 10m\nserver:\n  script_reload_interval: 50ms\n",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let (mut child, scim, _) = crate::support::spawn_proxy_binary(&file, &env.legacy.base_url());
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("http://{scim}/scim/v2/Users/1")).bearer_auth(crate::support::TOKEN).send().await.is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(10), "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_whole(&script, &slow_to_compile(2 * 1024 * 1024));
    let compiling = Instant::now();
    while !thread_names(child.id()).iter().any(|name| name == "scim-compile") {
        assert!(compiling.elapsed() < Duration::from_secs(10), "no compile started: {:?}", thread_names(child.id()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let signalled = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if signalled.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("still running 5 s after SIGTERM, during a compile");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_bounds_a_configuration_refused_for_a_slow_script_does_not_compile_it_again_at_every_tick() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.rhai");
    std::fs::write(&slow, slow_to_compile(512 * 1024)).unwrap();
    let env = TestEnv::start_from_file(|text| {
        let server = text.replacen("server:\n", "server:\n  config_reload_interval: 100ms\n", 1);
        format!("script:\n  max_bytes: 1048576\n  compile_timeout: 300ms\n{server}")
    })
    .await;
    let file = env.config_file();
    let text = std::fs::read_to_string(&file).unwrap();
    let demo = repo_file("scripts/demo.rhai").display().to_string();
    std::fs::write(&file, text.replace(&demo, &slow.display().to_string())).unwrap();
    let refused = crate::support::wait_for_log(
        &["configuration reload refused", "slow.rhai: not compiled within script.compile_timeout (300ms)"],
        Duration::from_secs(10),
    )
    .await;
    assert!(!refused.is_empty(), "the slow script is refused");
    // Twenty ticks on: the edit is still refused, and its script was compiled once, not at
    // each tick (each would have left a compile of some 10 s running).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let compiling = thread_names(std::process::id()).iter().filter(|name| *name == "scim-compile").count();
    assert!(compiling <= 3, "{compiling} compiles running");
    assert_eq!(env.get("/Users?count=1").await.status, StatusCode::OK, "the running configuration serves");
}
