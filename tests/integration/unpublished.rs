//! Attributes a request names that the app does not publish: ignored and accounted for by
//! default, refused when the app says so; and unknown ids answered 404 before a bad body.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TOKEN, TestEnv, log_lines_with};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Okta's create with its default SCIM 2.0 attribute mapping, as its SCIM reference shows it.
fn okta_create(user_name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// A request with an `X-Request-Id` of the test's choosing, to find its log lines among
/// those of the tests running beside it.
async fn send_with_id(env: &TestEnv, id: &str, method: Method, path: &str, body: Value) -> Reply {
    let response = env
        .client
        .request(method, format!("{}{path}", env.base()))
        .bearer_auth(TOKEN)
        .header("x-request-id", id)
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    Reply::read(response).await
}

async fn metrics(env: &TestEnv) -> String {
    reqwest::get(format!("{}/metrics", env.admin())).await.unwrap().text().await.unwrap()
}

fn patch_body(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_demo_does_not_publish_is_ignored_named_counted_and_warned_about_once() {
    let env = TestEnv::start_shipped_config().await;
    let first = format!("unpublished-{}", uuid::Uuid::new_v4());
    let created = send_with_id(&env, &first, Method::POST, "/Users", okta_create("okta.one@example.com")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(created.body.get("locale").is_none(), "Acme has no locale: {}", created.text);
    assert!(created.body.get("password").is_none(), "never returned: {}", created.text);
    let stored = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    assert_eq!((stored.first_name.as_deref(), stored.enabled), (Some("Test"), true));

    let audit = log_lines_with(&["audit", first.as_str()]);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains("ignored=\"locale\""), "{}", audit[0]);
    let warned = log_lines_with(&["attribute ignored", first.as_str()]);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("WARN") && warned[0].contains("attribute=locale"), "{}", warned[0]);
    assert!(warned[0].contains("identity provider's attribute mapping"), "says what to do: {}", warned[0]);

    // The same attribute again: counted and audited, not warned about a second time.
    let second = format!("unpublished-{}", uuid::Uuid::new_v4());
    let again = send_with_id(&env, &second, Method::POST, "/Users", okta_create("okta.two@example.com")).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(log_lines_with(&["audit", second.as_str(), "ignored=\"locale\""]).len(), 1);
    assert!(log_lines_with(&["attribute ignored", second.as_str()]).is_empty());

    // A name no schema defines counts as `other`; an unpublished enterprise attribute by its path.
    let mut odd = okta_create("okta.three@example.com");
    odd["frobnicate"] = json!("x");
    odd["schemas"] = json!([USER, ENTERPRISE]);
    odd[ENTERPRISE] = json!({"costCenter": "4130", "department": "Tour Operations"});
    let third = format!("unpublished-{}", uuid::Uuid::new_v4());
    let created = send_with_id(&env, &third, Method::POST, "/Users", odd).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body[ENTERPRISE]["department"], "Tour Operations", "{}", created.text);
    assert!(created.body[ENTERPRISE].get("costCenter").is_none(), "{}", created.text);
    let audit = log_lines_with(&["audit", third.as_str()]);
    assert!(audit[0].contains(&format!("ignored=\"frobnicate,locale,{ENTERPRISE}:costCenter\"")), "{}", audit[0]);

    let exposition = metrics(&env).await;
    let series = |attribute: &str| {
        format!("scim_proxy_ignored_attributes_total{{app=\"acme\",resource=\"User\",attribute=\"{attribute}\"}}")
    };
    assert!(exposition.contains(&format!("{} 3", series("locale"))), "{exposition}");
    assert!(exposition.contains(&format!("{} 1", series("other"))), "{exposition}");
    assert!(exposition.contains(&format!("{} 1", series(&format!("{ENTERPRISE}:costCenter")))), "{exposition}");
    assert!(!exposition.contains("frobnicate"), "invented names do not become series");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_of_an_unpublished_attribute_changes_nothing_and_reaches_no_write() {
    let env = TestEnv::start_shipped_config().await;
    let id = env.create_user("patched").await;
    let before = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    let url = format!("/Users/{id}");
    let calls = env.legacy.requests_served();
    let read = env.get(&url).await;
    let read_calls = env.legacy.requests_served() - calls;
    let calls = env.legacy.requests_served();
    let reply = env
        .send(
            Method::PATCH,
            &url,
            Some(patch_body(json!([
                {"op": "Replace", "path": "preferredLanguage", "value": "en-GB"},
                {"op": "Add", "path": "name.formatted", "value": "Pat Ched"},
                {"op": "replace", "value": {"locale": "en-GB", "nickName": "P"}}
            ]))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["userName"], "patched");
    assert!(reply.header("etag").is_some());
    assert_eq!(env.legacy.requests_served() - calls, read_calls, "the reads of a GET, no write");
    assert_eq!(env.legacy.store().get_user(id.parse().unwrap()).unwrap(), before);
    assert_eq!(reply.body, read.body, "answered as a GET would");

    // Mixed with a published change, only that change is written.
    let reply = env
        .send(
            Method::PATCH,
            &url,
            Some(patch_body(json!([
                {"op": "replace", "value": {"locale": "en-GB", "displayName": "Patricia"}},
                {"op": "replace", "path": "name", "value": {"formatted": "Patricia Ched", "givenName": "Patricia"}}
            ]))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["displayName"], "Patricia");
    assert_eq!(reply.body["name"]["givenName"], "Patricia");
    assert!(reply.body["name"].get("formatted").is_none(), "{}", reply.text);

    // A malformed value of a published attribute is still refused.
    env.send(Method::PATCH, &url, Some(patch_body(json!([{"op": "replace", "path": "active", "value": "maybe"}]))))
        .await
        .assert_error(400, Some("invalidValue"));
    let mut malformed = okta_create("malformed@example.com");
    malformed["name"] = json!("Test User");
    env.post("/Users", malformed).await.assert_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_answers_400_naming_the_attribute() {
    let env = TestEnv::start_with(|text| {
        text.replacen("    schema:\n", "    schema:\n      unsupported_attributes: refuse\n", 1).replacen(
            "[userName, name,",
            "[userName, name.givenName, name.familyName,",
            1,
        )
    })
    .await;
    let mut body = okta_create("refused@example.com");
    body["locale"] = json!("en-US");
    let refused = env.post("/Users", body).await;
    refused.assert_error(400, Some("invalidValue"));
    assert!(refused.body["detail"].as_str().unwrap().contains("locale"), "{}", refused.text);
    assert_eq!(env.legacy.requests_served(), 0, "nothing reached the app");

    let mut entra = json!({
        "schemas": [USER], "userName": "entra@example.com", "active": true,
        "name": {"formatted": "Ent Ra", "givenName": "Ent", "familyName": "Ra"}
    });
    let refused = env.post("/Users", entra.clone()).await;
    refused.assert_error(400, Some("invalidValue"));
    assert!(refused.body["detail"].as_str().unwrap().contains("name.formatted"), "{}", refused.text);

    entra["name"] = json!({"givenName": "Ent", "familyName": "Ra"});
    let id = env.post("/Users", entra).await.body["id"].as_str().unwrap().to_owned();
    let url = format!("/Users/{id}");
    env.send(Method::PATCH, &url, Some(patch_body(json!([{"op": "replace", "path": "locale", "value": "x"}]))))
        .await
        .assert_error(400, Some("invalidPath"));
    env.send(Method::PATCH, &url, Some(patch_body(json!([{"op": "replace", "value": {"locale": "x"}}]))))
        .await
        .assert_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_404_before_any_400_about_the_body() {
    let env = TestEnv::start_shipped_config().await;
    let bad_user = json!({"schemas": [USER], "userName": "ghost", "active": "maybe"});
    let bad_patch = patch_body(json!([{"op": "replace", "path": "active", "value": {"not": "a boolean"}}]));
    env.put("/Users/424242", bad_user.clone()).await.assert_error(404, None);
    env.send(Method::PATCH, "/Users/424242", Some(bad_patch.clone())).await.assert_error(404, None);
    env.send(Method::PATCH, "/Users/424242", Some(json!({"Operations": "nope"}))).await.assert_error(404, None);
    env.delete("/Users/424242").await.assert_error(404, None);

    // The same bodies for a user that exists are what is wrong with them.
    let id = env.create_user("present").await;
    env.put(&format!("/Users/{id}"), bad_user).await.assert_error(400, Some("invalidValue"));
    env.send(Method::PATCH, &format!("/Users/{id}"), Some(bad_patch)).await.assert_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_makes_an_active_account_when_active_is_not_sent() {
    let env = TestEnv::start_shipped_config().await;
    let created = env.post("/Users", json!({"schemas": [USER], "userName": "no.active@example.com"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["active"], true, "{}", created.text);
    let id: u64 = created.body["id"].as_str().unwrap().parse().unwrap();
    assert!(env.legacy.store().get_user(id).unwrap().enabled);
    // A create that says otherwise is taken at its word.
    let inactive = json!({"schemas": [USER], "userName": "inactive@example.com", "active": "False"});
    assert_eq!(env.post("/Users", inactive).await.body["active"], false);

    // Acme cannot hold an account without the flag: /Schemas says it is required, so it
    // cannot be removed.
    let schema = env.get(&format!("/Schemas/{USER}")).await;
    let active = schema.body["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "active").unwrap().clone();
    assert_eq!(active["required"], true, "{active}");
    env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch_body(json!([{"op": "remove", "path": "active"}]))))
        .await
        .assert_error(400, Some("mutability"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_must_suit_its_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("app.rhai");
    std::fs::write(&script, "fn get_user(id) { () }").unwrap();
    for (default, expected) in [
        ("active: {default: maybe}", "schema.overrides: active.default"),
        ("name.givenName: {default: Ann}", "only a published top-level attribute"),
    ] {
        let text = crate::support::config_text(&script).replacen(
            "      enterprise_user: [employeeNumber, department, manager]\n",
            &format!(
                "      enterprise_user: [employeeNumber, department, manager]\n      overrides:\n        {default}\n"
            ),
            1,
        );
        let error = crate::support::start_error(&text).await;
        assert!(error.contains(expected), "{default}: {error}");
    }
}
