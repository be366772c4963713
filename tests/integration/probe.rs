//! `scim-proxy probe ready|live`, the container health check: the real binary asks a running
//! proxy's admin listener and says so by its exit code, in one line.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::TestEnv;

/// Runs `scim-proxy probe ARGS…` and returns its output and how long it took.
pub(crate) fn probe(args: &[&str], admin: Option<&str>) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scim-proxy"));
    command.arg("probe").args(args).env_remove("SCIM_PROXY_ADMIN");
    if let Some(admin) = admin {
        command.env("SCIM_PROXY_ADMIN", admin);
    }
    let output = command.output().unwrap();
    (output, started.elapsed())
}

/// The one line a probe wrote (to stdout when it passed, to stderr when not).
fn said(output: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let (written, silent) = if output.status.success() { (stdout, stderr) } else { (stderr, stdout) };
    assert!(silent.is_empty(), "{silent}");
    assert_eq!(written.lines().count(), 1, "one line: {written:?}");
    written.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_proxy_passes_both_probes() {
    let env = TestEnv::start().await;
    let admin = env.admin();
    let (ready, _) = tokio::task::spawn_blocking(move || probe(&["ready", "--admin", &admin], None)).await.unwrap();
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert_eq!(said(&ready), format!("probe ready: {}/readyz: answered 200 (ready)", env.admin()));
    // The admin URL from the environment, as a container's HEALTHCHECK would set it.
    let admin = env.admin();
    let (live, _) = tokio::task::spawn_blocking(move || probe(&["live"], Some(&admin))).await.unwrap();
    assert_eq!(live.status.code(), Some(0), "{live:?}");
    assert_eq!(said(&live), format!("probe live: {}/healthz: answered 200 (alive)", env.admin()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_cannot_serve_fails_the_ready_probe_but_not_the_live_one() {
    let script = "fn get_user(id) { () }\nfn list_users(query) { [] }\nfn health() { \"the directory is down\" }\n";
    // The tests' configuration turns health() checks off; readiness needs them here.
    let env = TestEnv::start_script(Some(script), |text| {
        text.replacen("  health_interval: 0s\n", "  health_interval: 1s\n", 1)
    })
    .await;
    let admin = env.admin();
    let (ready, live) = tokio::task::spawn_blocking(move || {
        (probe(&["ready", "--admin", &admin], None).0, probe(&["live", "--admin", &admin], None).0)
    })
    .await
    .unwrap();
    assert_eq!(ready.status.code(), Some(1), "{ready:?}");
    assert_eq!(said(&ready), format!("error: probe ready: {}/readyz: answered 503 (not ready)", env.admin()));
    assert_eq!(live.status.code(), Some(0), "{live:?}");
}

#[test]
fn nothing_listening_fails_at_once_and_a_silent_listener_within_the_timeout() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("http://127.0.0.1:{port}");
    let (output, took) = probe(&["ready", "--admin", &admin], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line = said(&output);
    assert!(line.starts_with(&format!("error: probe ready: {admin}/readyz: cannot connect (")), "{line}");
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A listener that accepts and never answers: the probe gives up at its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = format!("http://{}", silent.local_addr().unwrap());
    let (output, took) = probe(&["live", "--admin", &admin, "--timeout", "300ms"], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(said(&output), format!("error: probe live: {admin}/healthz: no answer within 300 ms"));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drop(silent);
}
