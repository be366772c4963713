//! PATCH through the demo mapping: RFC 7644 §3.5.2 operations and what real IdPs send, all or none.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TOKEN, TestEnv};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn patch_body(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

async fn patch(env: &TestEnv, id: &str, operations: Value) -> crate::support::Reply {
    env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch_body(operations))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_entra_id_sends_is_applied_to_the_legacy_app() {
    let env = TestEnv::start().await;
    let manager = env.create_user("boss").await;
    let id = env.create_user("bjensen").await;
    let reply = patch(
        &env,
        &id,
        json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"},
            {"op": "Replace", "value": {
                "name.givenName": "Barbara",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Tour Operations",
                "id": "ignored-read-only"
            }},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": manager},
        ]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["active"], false);
    assert_eq!(reply.body["id"], id.as_str());
    assert_eq!(reply.body[ENTERPRISE]["manager"]["value"], manager.as_str());
    let stored = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.mail.as_deref(), Some("babs@example.com"));
    assert_eq!(stored.first_name.as_deref(), Some("Barbara"));
    assert_eq!(stored.last_name.as_deref(), Some("Family"), "untouched attributes stay");
    assert_eq!(stored.department.as_deref(), Some("Tour Operations"));
    assert_eq!(stored.manager_id, Some(manager.parse().unwrap()));
    assert_eq!(reply.header("etag"), reply.body["meta"]["version"].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_and_replace_with_paths_and_projection() {
    let env = TestEnv::start().await;
    let id = env.create_user("pat").await;
    let reply = env
        .send(
            Method::PATCH,
            &format!("/Users/{id}?attributes=displayName"),
            Some(patch_body(json!([
                {"op": "remove", "path": "name.familyName"},
                {"op": "replace", "path": "displayName", "value": "Pat Q."},
                {"op": "add", "path": "title", "value": "Tour Guide"},
            ]))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["displayName"], "Pat Q.");
    assert!(reply.body.get("title").is_none(), "attributes=displayName projects the response: {}", reply.text);
    let stored = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    assert_eq!(stored.last_name, None);
    assert_eq!(stored.title.as_deref(), Some("Tour Guide"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_patches_change_nothing() {
    let env = TestEnv::start().await;
    let id = env.create_user("steady").await;
    let before = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    let cases: &[(Value, u16, &str)] = &[
        // The first operation is valid, the second is not: none is applied.
        (
            json!([{"op": "replace", "path": "title", "value": "x"}, {"op": "replace", "path": "name..x", "value": 1}]),
            400,
            "invalidPath",
        ),
        (json!([{"op": "replace", "path": "id", "value": "42"}]), 400, "mutability"),
        (json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x@y"}]), 400, "noTarget"),
        (json!([{"op": "remove"}]), 400, "noTarget"),
        (json!([{"op": "replace", "path": "active", "value": {"not": "a boolean"}}]), 400, "invalidValue"),
        (json!([{"op": "replace", "path": "emails[type eq ]", "value": "x"}]), 400, "invalidFilter"),
        (json!([{"op": "jump", "path": "title", "value": "x"}]), 400, "invalidSyntax"),
        (json!([]), 400, "invalidSyntax"),
    ];
    for (operations, status, scim_type) in cases {
        patch(&env, &id, operations.clone()).await.assert_error(*status, Some(scim_type));
    }
    let no_schema = env.send(Method::PATCH, &format!("/Users/{id}"), Some(json!({"Operations": []}))).await;
    assert_eq!(no_schema.status, StatusCode::BAD_REQUEST);
    assert_eq!(env.legacy.store().get_user(id.parse().unwrap()).unwrap(), before);
    patch(&env, "31337", json!([{"op": "replace", "path": "title", "value": "x"}])).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_changes_nothing_writes_nothing_and_if_match_is_enforced() {
    let env = TestEnv::start().await;
    let id = env.create_user("same").await;
    let calls = env.legacy.requests_served();
    let reply = patch(&env, &id, json!([{"op": "replace", "path": "userName", "value": "same"}])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(env.legacy.requests_served() - calls, 1, "one read, no write");

    let url = format!("{}/Users/{id}", env.base());
    let body = patch_body(json!([{"op": "replace", "path": "title", "value": "x"}])).to_string();
    let stale = env
        .client
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("if-match", "W/\"old\"")
        .header("content-type", "application/scim+json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let current = env.get(&format!("/Users/{id}")).await.header("etag").unwrap().to_owned();
    let fresh = env
        .client
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("if-match", current)
        .header("content-type", "application/scim+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_with_patch_user_receives_the_operations_and_both_states() {
    let script = r#"
        fn get_user(id) { #{ id: id, userName: "fixed", title: "before" } }
        fn patch_user(id, ops, before, after) {
            let result = after;
            result.displayName = `${ops.len()} ops: ${ops[0].op} ${ops[0].path}; was ${before.title}, now ${after.title}`;
            result
        }
    "#;
    let env = TestEnv::start_script(Some(script), |t| t).await;
    let reply = patch(&env, "7", json!([{"op": "Replace", "path": "title", "value": "after"}])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["displayName"], "1 ops: replace title; was before, now after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_configuration_takes_what_entra_id_sends() {
    let env = TestEnv::start_shipped_config().await;
    let created = env
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7a2ee3bd4ab1",
                "userName": "AlexW@contoso.example",
                "active": true,
                "displayName": "Alex Wilber",
                "emails": [{"primary": true, "type": "work", "value": "AlexW@contoso.example"}],
                "name": {"formatted": "Alex Wilber", "familyName": "Wilber", "givenName": "Alex"},
                ENTERPRISE: {"department": "Retail"}
            }),
        )
        .await;
    // name.formatted is not something Acme can hold: the app does not publish it, so it is
    // ignored (and named in the audit record) rather than failing the create.
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["name"], json!({"familyName": "Wilber", "givenName": "Alex"}), "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.body["emails"],
        json!([{"value": "AlexW@contoso.example"}]),
        "type and primary are shown on request"
    );
    let asked = env.get(&format!("/Users/{id}?attributes=emails")).await;
    assert_eq!(asked.body["emails"][0]["type"], "work", "{}", asked.text);

    let filter = crate::users::urlencode("emails[type eq \"work\" and value eq \"alexw@contoso.example\"]");
    assert_eq!(env.get(&format!("/Users?filter={filter}")).await.body["totalResults"], 1);
    let reply = patch(
        &env,
        &id,
        json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alex.wilber@contoso.example"},
            {"op": "Replace", "path": "displayName", "value": "Alex W."},
        ]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        env.legacy.store().get_user(id.parse().unwrap()).unwrap().mail.as_deref(),
        Some("alex.wilber@contoso.example")
    );

    // A user without a mail gets one through the same path.
    let bare = env
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nomail", "active": true}),
        )
        .await;
    let bare_id = bare.body["id"].as_str().unwrap().to_owned();
    let reply = patch(
        &env,
        &bare_id,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "first@contoso.example"}]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        env.legacy.store().get_user(bare_id.parse().unwrap()).unwrap().mail.as_deref(),
        Some("first@contoso.example")
    );

    // Deprovisioning: Entra sets active to "False".
    let reply = patch(&env, &id, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!(reply.body["active"], false, "{}", reply.text);
    assert!(!env.legacy.store().get_user(id.parse().unwrap()).unwrap().enabled);
}
