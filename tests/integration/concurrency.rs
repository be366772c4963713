//! Writes under concurrency and cancellation: concurrent writers to one resource, conditional
//! writes racing each other, and creates whose request goes away before the legacy app answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TOKEN, TestEnv, log_lines_with, serve_fake};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn patch_body(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

async fn send(env: &TestEnv, method: Method, path: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    let mut request = env
        .client
        .request(method, format!("{}{path}", env.base()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::read(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_different_attributes_keep_every_change() {
    concurrent_patches_keep_every_change().await;
}

/// The same on a runtime with one worker, where each PATCH's script calls run in fibers on
/// the worker, suspended at their legacy calls, interleaved with the others'.
#[tokio::test]
async fn concurrent_patches_on_one_worker_keep_every_change() {
    concurrent_patches_keep_every_change().await;
}

async fn concurrent_patches_keep_every_change() {
    let env = Arc::new(TestEnv::start().await);
    let id = env.create_user("busy").await;
    let paths = ["title", "displayName", "name.givenName", "name.familyName", "externalId"];
    for round in 0..5 {
        let writers: Vec<_> = paths
            .iter()
            .map(|path| {
                let (env, id) = (env.clone(), id.clone());
                let body = patch_body(json!([{"op": "replace", "path": path, "value": format!("{path}-{round}")}]));
                tokio::spawn(async move { send(&env, Method::PATCH, &format!("/Users/{id}"), &[], body).await })
            })
            .collect();
        for writer in writers {
            let reply = writer.await.unwrap();
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        }
        let read = env.get(&format!("/Users/{id}")).await;
        let at = |path: &str| {
            path.split('.').fold(&read.body, |value, name| &value[name]).as_str().unwrap_or_default().to_owned()
        };
        let kept: Vec<String> = paths.iter().map(|path| at(path)).collect();
        let expected: Vec<String> = paths.iter().map(|path| format!("{path}-{round}")).collect();
        assert_eq!(kept, expected, "round {round}: every writer was answered 200, so every change must stay");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_with_the_same_if_match_give_one_success() {
    let env = Arc::new(TestEnv::start().await);
    let id = env.create_user("guarded").await;
    let etag = env.get(&format!("/Users/{id}")).await.header("etag").unwrap().to_owned();
    let writers: Vec<_> = (0..6)
        .map(|n| {
            let (env, id, etag) = (env.clone(), id.clone(), etag.clone());
            let body = patch_body(json!([{"op": "replace", "path": "title", "value": format!("writer {n}")}]));
            tokio::spawn(async move {
                send(&env, Method::PATCH, &format!("/Users/{id}"), &[("if-match", etag.as_str())], body).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for writer in writers {
        statuses.push(writer.await.unwrap().status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412]);
}

/// A directory that keeps users the moment it receives them but answers a create only after
/// `post_delay`, and accepts duplicate logins: the proxy alone must keep an identity
/// provider's retry from making a second account.
#[derive(Default)]
struct SlowDirectory {
    users: Mutex<Vec<String>>,
    post_delay: Mutex<Duration>,
    /// The members of its one team (team 1), each kept the moment it is received and answered
    /// after `post_delay`.
    members: Mutex<Vec<u64>>,
}

impl SlowDirectory {
    fn logins(&self) -> Vec<String> {
        self.users.lock().unwrap().clone()
    }
}

async fn slow_directory(
    state: Arc<SlowDirectory>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let json = |status: u16, value: Value| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap()
    };
    let record = |index: usize, login: &str| json!({"id": index + 1, "login": login});
    let path = parts.uri.path().trim_start_matches("/api");
    match (parts.method.as_str(), path) {
        ("POST", "/users") => {
            let login = serde_json::from_slice::<Value>(&body).unwrap()["login"].as_str().unwrap().to_owned();
            let index = {
                let mut users = state.users.lock().unwrap();
                users.push(login.clone());
                users.len() - 1
            };
            let delay = *state.post_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            json(201, record(index, &login))
        }
        ("GET", "/teams/1") => json(200, json!({"id": 1, "name": "Team"})),
        ("POST", "/teams/1/members") => {
            let user = serde_json::from_slice::<Value>(&body).unwrap()["user_id"].as_u64().unwrap();
            state.members.lock().unwrap().push(user);
            let delay = *state.post_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            json(201, json!({"user_id": user}))
        }
        ("GET", "/users") => {
            let users = state.logins();
            json(200, Value::Array(users.iter().enumerate().map(|(i, login)| record(i, login)).collect()))
        }
        ("GET", path) => {
            let users = state.logins();
            let found = path.strip_prefix("/users/").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1);
            match found.and_then(|n| users.get(n - 1).map(|login| record(n - 1, login))) {
                Some(user) => json(200, user),
                None => json(404, json!({"error": "not found"})),
            }
        }
        _ => json(404, json!({"error": "no route"})),
    }
}

const SLOW_SCRIPT: &str = r#"
fn create_user(user) {
    let response = legacy.post("/users", #{ login: user.userName });
    if response.status != 201 { throw legacy.unexpected(response); }
    log_info(`created ${response.json.login}`);
    #{ id: response.json.id.to_string(), userName: response.json.login }
}
fn get_user(id) {
    let response = legacy.get(["users", id]);
    if response.status == 404 { return (); }
    #{ id: response.json.id.to_string(), userName: response.json.login }
}
fn list_users(query) {
    legacy.get("/users").json.map(|u| #{ id: u.id.to_string(), userName: u.login })
}
fn get_group(id, wanted) {
    let response = legacy.get(["teams", id]);
    if response.status == 404 { return (); }
    #{ id: response.json.id.to_string(), displayName: response.json.name }
}
fn list_groups(query) { [] }
fn add_members(group_id, ids) {
    for id in ids {
        let response = legacy.post(["teams", group_id, "members"], #{ user_id: parse_int(id) });
        if response.status != 201 { throw legacy.unexpected(response); }
        log_info(`added ${id}`);
    }
}
"#;

async fn slow_env(directory: &Arc<SlowDirectory>) -> TestEnv {
    let (addr, _server) = serve_fake(directory.clone(), slow_directory).await;
    let url = format!("http://{addr}/api");
    TestEnv::start_script(Some(SLOW_SCRIPT), move |text| {
        text.replacen("  - name: acme\n", "  - name: slowdir\n", 1)
            .replacen("base_url: \"${env.ACME_BASE_URL}\"", &format!("base_url: \"{url}\""), 1)
            .replacen("    request_timeout: 10s\n", "    request_timeout: 1s\n", 1)
    })
    .await
}

fn new_user(user_name: &str) -> Value {
    json!({"schemas": [USER], "userName": user_name})
}

/// The audit line of a request, once it is written (the write goes on after its answer).
async fn audit_line(request_id: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some(line) = log_lines_with(&["audit", request_id]).into_iter().next() {
            return line;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no audit record for {request_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cut_off_by_its_deadline_is_audited_and_its_retry_makes_no_second_account() {
    create_cut_off_by_its_deadline().await;
}

/// The same on a runtime with one worker, where the script call runs on the worker itself
/// (its legacy call made there as a task of its own) rather than on a script thread.
#[tokio::test]
async fn a_create_cut_off_by_its_deadline_on_one_worker_makes_no_second_account() {
    create_cut_off_by_its_deadline().await;
}

async fn create_cut_off_by_its_deadline() {
    let directory = Arc::new(SlowDirectory::default());
    *directory.post_delay.lock().unwrap() = Duration::from_millis(2500);
    let env = slow_env(&directory).await;
    let first = format!("deadline-{}", uuid::Uuid::new_v4());
    let cut = send(&env, Method::POST, "/Users", &[("x-request-id", first.as_str())], new_user("late.ada")).await;
    cut.assert_error(504, None);
    let detail = cut.body["detail"].as_str().unwrap();
    assert!(detail.contains("may or may not have been made"), "{detail}");

    // The identity provider retries at once: the proxy finds the account the first made.
    let retry = env.post("/Users", new_user("late.ada")).await;
    retry.assert_error(409, Some("uniqueness"));
    assert_eq!(directory.logins(), ["late.ada"], "one account");

    let audit = audit_line(&first).await;
    assert!(audit.contains("legacy_writes=1"), "{audit}");
    assert!(audit.contains("outcome=\"failed\""), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_client_hangs_up_is_finished_and_remembered() {
    create_whose_client_hangs_up().await;
}

/// The same with the script call on the runtime's one worker: the request's future is dropped
/// with its connection, the call's task goes on.
#[tokio::test]
async fn a_create_whose_client_hangs_up_on_one_worker_is_finished_and_remembered() {
    create_whose_client_hangs_up().await;
}

async fn create_whose_client_hangs_up() {
    let directory = Arc::new(SlowDirectory::default());
    *directory.post_delay.lock().unwrap() = Duration::from_millis(600);
    let env = slow_env(&directory).await;
    let first = format!("hangup-{}", uuid::Uuid::new_v4());
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
    let gone = impatient
        .post(format!("{}/Users", env.base()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .header("x-request-id", first.as_str())
        .body(new_user("gone.grace").to_string())
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the answer");

    // The create went on without its client: audited as a success, and the ID cache knows
    // the account, so the retry is refused without a listing.
    let audit = audit_line(&first).await;
    assert!(audit.contains("outcome=\"success\"") && audit.contains("status=201"), "{audit}");
    let retry = env.post("/Users", new_user("gone.grace")).await;
    retry.assert_error(409, Some("uniqueness"));
    assert_eq!(directory.logins(), ["gone.grace"], "one account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_cut_off_by_its_deadline_reports_what_it_did() {
    let directory = Arc::new(SlowDirectory::default());
    *directory.post_delay.lock().unwrap() = Duration::from_millis(400);
    let env = slow_env(&directory).await;
    let operations: Vec<Value> = (0..6)
        .map(|n| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{n}"), "data": new_user(&format!("bulk.{n}"))}))
        .collect();
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations});
    let reply = env.post("/Bulk", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let results = reply.body["Operations"].as_array().unwrap();
    let made = directory.logins();
    assert!(made.len() < 6, "the deadline stopped it: {made:?}");
    // Every account made is in the answer, as created or as a change that may have been made.
    let created: Vec<&Value> = results.iter().filter(|r| r["status"] == "201").collect();
    let unsure: Vec<&Value> = results.iter().filter(|r| r["status"] == "504").collect();
    assert!(created.len() + unsure.len() >= made.len(), "{made:?} made, answered {}", reply.text);
    assert!(!created.is_empty(), "{}", reply.text);
    for result in &unsure {
        let detail = result["response"]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("may or may not"), "{result}");
    }
}

/// An h2 client that resets its stream while the create's legacy call is out, on a runtime
/// with one worker (the script call runs in a fiber on it, suspended at its legacy call):
/// the write still runs to its end — the legacy call is not cut in half, the script
/// goes on after it, and the proxy learns the account.
#[tokio::test]
async fn a_create_whose_h2_stream_is_reset_on_one_worker_is_finished() {
    let directory = Arc::new(SlowDirectory::default());
    *directory.post_delay.lock().unwrap() = Duration::from_millis(600);
    let env = slow_env(&directory).await;
    let request_id = format!("reset-{}", uuid::Uuid::new_v4());
    let tcp = tokio::net::TcpStream::connect(env.proxy.as_ref().unwrap().scim_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("{}/Users", env.base()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json")
        .header("x-request-id", request_id.as_str())
        .body(())
        .unwrap();
    let (response, mut body) = client.ready().await.unwrap().send_request(request, false).unwrap();
    body.send_data(Bytes::from(new_user("reset.rosa").to_string()), true).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    body.send_reset(h2::Reason::CANCEL);
    drop(response);
    // The legacy app answers after its 600 ms, and the script goes on to its end: the line
    // it logs after the write is there, under the request's id.
    let started = Instant::now();
    while log_lines_with(&[request_id.as_str(), "created reset.rosa"]).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the script stopped with its request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retry = env.post("/Users", new_user("reset.rosa")).await;
    retry.assert_error(409, Some("uniqueness"));
    assert_eq!(directory.logins(), ["reset.rosa"], "one account");
}

/// A one-member PATCH of a group (what Entra ID and Okta send), its client gone before the
/// legacy app answers the add: the add goes on to its end, is audited as done, and is made
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_add_whose_client_hangs_up_is_finished_once() {
    let directory = Arc::new(SlowDirectory::default());
    *directory.post_delay.lock().unwrap() = Duration::from_millis(600);
    let env = slow_env(&directory).await;
    let request_id = format!("member-hangup-{}", uuid::Uuid::new_v4());
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
    let body = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": "7"}]}]));
    let gone = impatient
        .patch(format!("{}/Groups/1", env.base()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .header("x-request-id", request_id.as_str())
        .body(body.to_string())
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up before the answer");
    let audit = audit_line(&request_id).await;
    assert!(audit.contains("outcome=\"success\"") && audit.contains("status=204"), "{audit}");
    assert!(audit.contains("legacy_writes=1"), "{audit}");
    assert!(!log_lines_with(&[request_id.as_str(), "added 7"]).is_empty(), "the script ran to its end");
    assert_eq!(*directory.members.lock().unwrap(), [7], "one add");
}

/// One-member PATCHes of one group at the same time, some adding the same user: each is
/// answered 204 and each add reaches the legacy app once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_member_adds_to_one_group_each_reach_the_legacy_app() {
    let directory = Arc::new(SlowDirectory::default());
    *directory.post_delay.lock().unwrap() = Duration::from_millis(30);
    let env = Arc::new(slow_env(&directory).await);
    let users: [u64; 8] = [1, 2, 3, 4, 5, 6, 3, 3];
    let writers: Vec<_> = users
        .iter()
        .map(|user| {
            let env = env.clone();
            let body = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": user.to_string()}]}]));
            tokio::spawn(async move { send(&env, Method::PATCH, "/Groups/1", &[], body).await })
        })
        .collect();
    for writer in writers {
        let reply = writer.await.unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    }
    let mut added = directory.members.lock().unwrap().clone();
    added.sort_unstable();
    assert_eq!(added, [1, 2, 3, 3, 3, 4, 5, 6], "every add made, once");
}
