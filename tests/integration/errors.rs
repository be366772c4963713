//! Every kind of bad request and failure gets its precise SCIM error.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{OTHER_TOKEN, TOKEN, TestEnv, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_open_only_their_own_app() {
    let env = TestEnv::start().await;
    let users = format!("{}/Users", env.base());
    for token in ["", "wrong-token-0123456789abcdef", OTHER_TOKEN] {
        let reply = env.send_as(token, Method::GET, &users, None).await;
        reply.assert_error(401, None);
        assert!(reply.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));
    }
    let no_header = crate::support::Reply::read(env.client.get(&users).send().await.unwrap()).await;
    no_header.assert_error(401, None);
    // The other app's token opens the other app, and only it.
    let other = format!("http://{}/other/scim/Users", env.proxy.as_ref().unwrap().scim_addr);
    assert_eq!(env.send_as(OTHER_TOKEN, Method::GET, &other, None).await.status, StatusCode::OK);
    env.send_as(TOKEN, Method::GET, &other, None).await.assert_error(401, None);
    // An unauthenticated client learns nothing of the routes either.
    env.send_as("nope-nope-nope-nope", Method::GET, &format!("{}/Nowhere", env.base()), None)
        .await
        .assert_error(401, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_ids_and_methods() {
    let env = TestEnv::start().await;
    env.get("/Nowhere").await.assert_error(404, None);
    env.get("/Users/99999").await.assert_error(404, None);
    env.get("/Users/not-a-number").await.assert_error(404, None);
    env.put("/Users/424242", user("ghost")).await.assert_error(404, None);
    let root = env
        .send_as(TOKEN, Method::GET, &format!("http://{}/elsewhere", env.proxy.as_ref().unwrap().scim_addr), None)
        .await;
    root.assert_error(404, None);
    let reply = env.send(Method::PUT, "/Users", Some(user("x"))).await;
    reply.assert_error(405, None);
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    env.send(Method::DELETE, "/ServiceProviderConfig", None).await.assert_error(405, None);
    env.send(Method::POST, "/Schemas", Some(json!({}))).await.assert_error(405, None);
    env.send(Method::PUT, "/ResourceTypes/User", Some(json!({}))).await.assert_error(405, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_bodies() {
    let env = TestEnv::start().await;
    let url = format!("{}/Users", env.base());
    let raw = |body: &'static str, content_type: &'static str| {
        let request = env.client.post(&url).bearer_auth(TOKEN).header("content-type", content_type).body(body);
        async move { crate::support::Reply::read(request.send().await.unwrap()).await }
    };
    raw("{\"userName\": ", "application/scim+json").await.assert_error(400, Some("invalidSyntax"));
    raw("[1, 2]", "application/json").await.assert_error(400, Some("invalidSyntax"));
    raw("", "application/json").await.assert_error(400, Some("invalidSyntax"));
    raw("<user/>", "application/xml").await.assert_error(415, None);

    let mut wrong_type = user("typed");
    wrong_type["active"] = json!({"yes": 1});
    let reply = env.post("/Users", wrong_type).await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("active"), "{}", reply.text);

    let mut not_string = user("typed");
    not_string["userName"] = json!(42);
    env.post("/Users", not_string).await.assert_error(400, Some("invalidValue"));

    let mut missing = user("x");
    missing.as_object_mut().unwrap().remove("userName");
    env.post("/Users", missing).await.assert_error(400, Some("invalidValue"));

    let huge = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "big", "displayName": "x".repeat(70_000)});
    env.post("/Users", huge).await.assert_error(413, None);
    assert_eq!(env.legacy.store().user_count(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_user_name_is_a_uniqueness_conflict_raised_by_the_script() {
    let env = TestEnv::start().await;
    env.create_user("bjensen").await;
    let reply = env.post("/Users", user("BJensen")).await;
    reply.assert_error(409, Some("uniqueness"));
    assert_eq!(env.legacy.store().user_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filters_and_parameters() {
    let env = TestEnv::start().await;
    for filter in ["userName%20eq", "userName%20xx%20%22a%22", "(userName%20eq%20%22a%22", "nosuchattr%20eq%20%22a%22"]
    {
        env.get(&format!("/Users?filter={filter}")).await.assert_error(400, Some("invalidFilter"));
    }
    env.get("/Users?count=ten").await.assert_error(400, Some("invalidValue"));
    env.get("/Users?sortOrder=sideways").await.assert_error(400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_features_say_so() {
    let env = TestEnv::start().await;
    env.get("/Me").await.assert_error(501, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_legacy_app_is_a_retryable_503() {
    // A port that was free a moment ago: nothing listens there now.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let env = TestEnv::start_with(|text| {
        text.replace("base_url: \"${env.ACME_BASE_URL}\"", &format!("base_url: \"http://{dead}/api/v1\""))
    })
    .await;
    let reply = env.get("/Users/1").await;
    reply.assert_error(503, None);
    assert!(reply.header("retry-after").is_some());
    let reply = env.post("/Users", user("lost")).await;
    reply.assert_error(503, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runtime_error_is_a_generic_500() {
    let script = r#"
        fn get_user(id) { let x = #{}; x.nothing.deeper + 1 }
        fn list_users(query) { throw "not a scim error" }
        fn create_user(user) { throw #{ status: 400, scimType: "invalidValue", detail: "no thanks" } }
    "#;
    let env = TestEnv::start_script(Some(script), |t| t).await;
    let reply = env.get("/Users/1").await;
    reply.assert_error(500, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(!detail.contains("nothing") && !detail.contains("rhai"), "internals leaked: {detail}");
    assert!(reply.header("x-request-id").is_some());
    env.get("/Users").await.assert_error(500, None);
    let reply = env.post("/Users", user("x")).await;
    reply.assert_error(400, Some("invalidValue"));
    assert_eq!(reply.body["detail"], "no thanks");
    // Functions the script does not define are unsupported operations, not failures; a
    // mapping without groups publishes no Group resource type.
    env.delete("/Users/1").await.assert_error(501, None);
    env.get("/Groups").await.assert_error(501, None);
    assert_eq!(env.get("/ResourceTypes").await.body["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_still_running_at_the_deadline_is_stopped_with_504() {
    let script = "fn get_user(id) { let n = 0; loop { n += 1; } }\nfn list_users(query) { [] }\n";
    let env =
        TestEnv::start_script(Some(script), |text| text.replacen("request_timeout: 10s", "request_timeout: 1s", 1))
            .await;
    let started = std::time::Instant::now();
    let reply = env.get("/Users/1").await;
    reply.assert_error(504, None);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "stopped at the deadline: {:?}", started.elapsed());
    // The proxy keeps serving.
    assert_eq!(env.get("/Users").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_answering_another_resource_is_a_script_fault() {
    let script = r#"
fn get_user(id) { #{ id: id, userName: "u" + id, active: true } }
fn list_users(query) { [] }
fn replace_user(id, user) { user.id = "999"; user }
"#;
    let env = TestEnv::start_script(Some(script), |text| text).await;
    let mut body = user("u1");
    body["id"] = json!("1");
    env.put("/Users/1", body).await.assert_error(500, None);
}
