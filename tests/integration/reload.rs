//! Hot reload of scripts: an edit is served without restart; a broken edit is refused and reported.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{TestEnv, readyz_until};

const VERSION_ONE: &str = r#"fn get_user(id) { #{ id: id, userName: "one" } }"#;
const VERSION_TWO: &str = r#"fn get_user(id) { #{ id: id, userName: "two" } }"#;
const BROKEN: &str = "fn get_user(id) {\n    #{ id: id, userName: \"three\" \n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_served_and_a_broken_edit_keeps_the_previous_script() {
    let env = TestEnv::start_script(Some(VERSION_ONE), |t| {
        t.replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms")
    })
    .await;
    assert_eq!(env.get("/Users/1").await.body["userName"], "one");
    let script = env.script_path();

    // Written whole at once (as an editor or a ConfigMap update does): a watcher that looked
    // at a half-written file would see an empty script, which compiles.
    let replace = |text: &str| {
        let next = script.with_extension("rhai.next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &script).unwrap();
    };
    replace(VERSION_TWO);
    readyz_until(&env, Duration::from_secs(10), |app| app["script_reloads"] == 1).await;
    assert_eq!(env.get("/Users/1").await.body["userName"], "two");

    replace(BROKEN);
    let app = readyz_until(&env, Duration::from_secs(10), |app| app["script_reload_failures"] == 1).await;
    let error = app["script_error"].as_str().unwrap();
    assert!(error.contains("app.rhai:4:1"), "the error names file, line and column: {error}");
    let reply = env.get("/Users/1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["userName"], "two", "the previous script keeps serving");
}
