//! Hot reload of scripts: an edit is served without restart; a broken edit is refused and reported.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::{TestEnv, readyz_until, write_whole};

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
    let replace = |text: &str| write_whole(&script, text);
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

const WITH_GROUPS: &str = r#"fn get_user(id) { #{ id: id, userName: "one" } }
fn get_group(id) { #{ id: id, displayName: "Team " + id } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_script_brings_its_groups_and_takes_them_away_with_it() {
    let env = TestEnv::start_script(Some(VERSION_ONE), |t| {
        t.replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms")
    })
    .await;
    let types = |body: &serde_json::Value| -> Vec<String> {
        body["Resources"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(types(&env.get("/ResourceTypes").await.body), ["User"]);
    assert_eq!(env.get("/Groups/7").await.status, StatusCode::NOT_IMPLEMENTED);

    // The script now reads groups: the app is built again around it, Groups and all.
    write_whole(&env.script_path(), WITH_GROUPS);
    readyz_until(&env, Duration::from_secs(10), |app| app["script_reloads"] == 1).await;
    assert_eq!(types(&env.get("/ResourceTypes").await.body), ["User", "Group"]);
    let group = env.get("/Groups/7").await;
    assert_eq!(group.status, StatusCode::OK, "{}", group.text);
    assert_eq!(group.body["displayName"], "Team 7");
    let schemas = env.get("/Schemas").await.body;
    assert!(schemas.to_string().contains("urn:ietf:params:scim:schemas:core:2.0:Group"), "{schemas}");

    // And without get_group again, Groups go with it.
    write_whole(&env.script_path(), VERSION_TWO);
    readyz_until(&env, Duration::from_secs(10), |app| app["script_reloads"] == 2).await;
    assert_eq!(types(&env.get("/ResourceTypes").await.body), ["User"]);
    assert_eq!(env.get("/Groups/7").await.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(env.get("/Users/1").await.body["userName"], "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_script_file_is_reported_and_the_loaded_script_keeps_serving() {
    let env = TestEnv::start_script(Some(VERSION_ONE), |t| {
        t.replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms")
    })
    .await;
    let script = env.script_path();
    std::fs::remove_file(&script).unwrap();
    let app = readyz_until(&env, Duration::from_secs(10), |app| !app["script_error"].is_null()).await;
    let error = app["script_error"].as_str().unwrap();
    assert!(error.contains("cannot read the script file"), "{error}");
    assert_eq!(app["script_reload_failures"], 0, "not an edit refused: {app}");
    assert_eq!(env.get("/Users/1").await.body["userName"], "one", "the loaded script keeps serving");
    let lines =
        crate::support::log_lines_with(&["script file cannot be read", "app=\"acme\"", &script.display().to_string()]);
    assert_eq!(lines.len(), 1, "logged once, not at every look: {lines:?}");

    // Back, unchanged: nothing to report any more, nothing reloaded.
    write_whole(&script, VERSION_ONE);
    let app = readyz_until(&env, Duration::from_secs(10), |app| app["script_error"].is_null()).await;
    assert_eq!(app["script_reloads"], 0, "{app}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_reload_under_way_does_not_give_the_app_a_second_set_of_slots() {
    let url = crate::operations::slow_legacy_api(Duration::from_millis(2500)).await;
    let slow = |name: &str| {
        format!(
            "fn get_user(id) {{ let r = legacy.get([\"users\", id]); #{{ id: id, userName: \"{name}\", active: true }} }}\nfn list_users(query) {{ [] }}\n"
        )
    };
    let env = TestEnv::start_script(Some(&slow("one")), |text| {
        text.replacen("${env.ACME_BASE_URL}", &url, 2)
            .replacen(
                "    request_timeout: 10s\n",
                "    request_timeout: 10s\n    max_concurrent_scripts: 1\n    max_queued_requests: 0\n",
                1,
            )
            .replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms")
    })
    .await;
    // One request holds the app's only slot, on the script loaded first.
    let (client, first_url) = (env.client.clone(), format!("{}/Users/1", env.base()));
    let first = tokio::spawn(async move {
        crate::support::Reply::read(client.get(first_url).bearer_auth(crate::support::TOKEN).send().await.unwrap())
            .await
    });
    let metrics = format!("{}/metrics", env.admin());
    let in_use =
        |text: &str| text.lines().any(|l| l.starts_with("scim_proxy_script_slots_in_use{") && l.ends_with(" 1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !in_use(&env.client.get(&metrics).send().await.unwrap().text().await.unwrap()) {
        assert!(std::time::Instant::now() < deadline, "the first request never took its slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_whole(&env.script_path(), &slow("two"));
    readyz_until(&env, Duration::from_secs(10), |app| app["script_reloads"] == 1).await;

    // The reloaded app shares the slot the first request holds: a second is refused at once.
    let second = env.get("/Users/2").await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{}", second.text);
    let first = first.await.unwrap();
    assert_eq!((first.status, first.body["userName"].as_str()), (StatusCode::OK, Some("one")), "{}", first.text);
    // Given back, the slot serves the new script.
    assert_eq!(env.get("/Users/3").await.body["userName"], "two");
}

/// A template as a script answers it: `fill` keeps it with the compiled script.
fn templated(user_name: &str) -> String {
    format!(
        r#"fn shape() {{ #{{ id: field("id").as_text(), userName: "{user_name}", title: field("title") }} }}
fn get_user(id) {{ #{{ id: parse_int(id), title: "T" + id }}.fill(Fn("shape")) }}
"#
    )
}

/// A template is kept with the script that answered it: many requests making it at once all
/// get it, and a reloaded script's template is its own, not the one kept before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_is_made_once_per_script_and_a_reload_brings_its_own() {
    let env = TestEnv::start_script(Some(&templated("one")), |t| {
        t.replace("  max_body_bytes: 65536", "  max_body_bytes: 65536\n  script_reload_interval: 50ms")
    })
    .await;
    let mut at_once = tokio::task::JoinSet::new();
    for id in 1..=16 {
        let (client, url) = (env.client.clone(), format!("{}/Users/{id}", env.base()));
        at_once.spawn(async move {
            let reply = client.get(url).bearer_auth(crate::support::TOKEN).send().await.unwrap();
            (id, reply.status(), reply.json::<serde_json::Value>().await.unwrap())
        });
    }
    while let Some(answer) = at_once.join_next().await {
        let (id, status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["id"], &body["userName"], &body["title"]),
            (&id.to_string().into(), &"one".into(), &format!("T{id}").into())
        );
    }
    write_whole(&env.script_path(), &templated("two"));
    readyz_until(&env, Duration::from_secs(10), |app| app["script_reloads"] == 1).await;
    assert_eq!(env.get("/Users/3").await.body["userName"], "two");
}
