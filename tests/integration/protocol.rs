//! RFC 7644 protocol features through the demo: search at the root, Bulk, scale of filtering, extensions.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestEnv, user};
use crate::users::urlencode;

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_at_the_root_is_a_search_of_every_resource_type() {
    let env = TestEnv::start().await;
    for name in ["root-a", "root-b", "other"] {
        env.create_user(name).await;
    }
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName sw \"root\"", "sortBy": "userName", "sortOrder": "descending", "attributes": ["userName"]});
    let reply = env.post("/.search", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["totalResults"], 2);
    assert_eq!(reply.body["Resources"][0]["userName"], "root-b");
    assert!(reply.body["Resources"][0].get("emails").is_none());
    env.get("/.search").await.assert_error(405, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_resolves_bulk_ids_and_reports_each_operation() {
    let env = TestEnv::start().await;
    let existing = env.create_user("bulk-existing").await;
    let mut manager = user("bulk-manager");
    manager["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
    let mut report = user("bulk-report");
    report["schemas"] = json!([
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    ]);
    report["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = json!({"manager": {"value": "bulkId:boss"}});
    let request = json!({"schemas": [BULK], "Operations": [
        // Refers to an operation further down: the proxy orders them.
        {"method": "POST", "path": "/Users", "bulkId": "report", "data": report},
        {"method": "POST", "path": "/Users", "bulkId": "boss", "data": manager},
        {"method": "PUT", "path": "/Users/bulkId:boss", "data": user("bulk-manager-renamed")},
        {"method": "DELETE", "path": format!("/Users/{existing}")},
        {"method": "DELETE", "path": "/Users/987654"},
        {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user("bulk-existing-2")},
    ]});
    let reply = env.post("/Bulk", request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:BulkResponse");
    let ops = reply.body["Operations"].as_array().unwrap();
    let status = |i: usize| ops[i]["status"].as_str().unwrap().to_owned();
    assert_eq!(
        [status(0), status(1), status(2), status(3), status(4), status(5)],
        ["201", "201", "200", "204", "404", "201"]
    );
    assert_eq!(ops[4]["response"]["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    let boss_id = ops[1]["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let report_id = ops[0]["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let stored = env.legacy.store().get_user(report_id.parse().unwrap()).unwrap();
    assert_eq!(stored.manager_id, Some(boss_id.parse().unwrap()), "bulkId:boss became the manager's id");
    assert_eq!(env.legacy.store().get_user(boss_id.parse().unwrap()).unwrap().login, "bulk-manager-renamed");
    assert!(env.legacy.store().get_user(existing.parse().unwrap()).is_none());
    // Every result but a POST's carries the resource's URL, a DELETE's and a failure's too (RFC 7644 §3.7.3).
    assert_eq!(ops[2]["location"], ops[1]["location"]);
    assert_eq!(ops[3]["location"], json!(format!("{}/Users/{existing}", env.base())), "{}", reply.text);
    assert_eq!(ops[4]["location"], json!(format!("{}/Users/987654", env.base())), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_stops_after_fail_on_errors_and_refuses_circles_and_oversize() {
    let env = TestEnv::start().await;
    let request = json!({"schemas": [BULK], "failOnErrors": 1, "Operations": [
        {"method": "DELETE", "path": "/Users/999"},
        {"method": "POST", "path": "/Users", "bulkId": "never", "data": user("never-created")},
    ]});
    let reply = env.post("/Bulk", request).await;
    assert_eq!(reply.body["Operations"].as_array().unwrap().len(), 1, "{}", reply.text);
    assert_eq!(env.legacy.store().user_count(), 0);

    let mut a = user("circle-a");
    a["externalId"] = json!("bulkId:b");
    let mut b = user("circle-b");
    b["externalId"] = json!("bulkId:a");
    let request = json!({"schemas": [BULK], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": a},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": b},
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"userName": "x", "externalId": "bulkId:nowhere"}},
    ]});
    let reply = env.post("/Bulk", request).await;
    let statuses: Vec<&str> =
        reply.body["Operations"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["409", "409", "400"], "{}", reply.text);
    assert_eq!(env.legacy.store().user_count(), 0);

    let many: Vec<Value> = (0..101).map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")})).collect();
    env.post("/Bulk", json!({"schemas": [BULK], "Operations": many})).await.assert_error(413, None);
    let spc = env.get("/ServiceProviderConfig").await.body;
    assert_eq!(spc["bulk"]["supported"], true);
    assert_eq!(spc["bulk"]["maxOperations"], 100);
    assert_eq!(spc["bulk"]["maxPayloadSize"], 65536);
}

/// Every user of the store whose login contains `needle`, by id.
fn expected_ids(env: &TestEnv, needle: &str) -> Vec<String> {
    let page = acme::store::UserQuery { per_page: 100_000, ..Default::default() };
    let mut ids: Vec<u64> = env
        .legacy
        .store()
        .list_users(&page)
        .data
        .into_iter()
        .filter(|u| u.login.to_lowercase().contains(needle))
        .map(|u| u.id)
        .collect();
    ids.sort_unstable();
    ids.into_iter().map(|i| i.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_are_filtered_and_paged_in_the_proxy_within_the_scan_bound() {
    let env = TestEnv::start_with(|t| t.replace("max_scan: 2000", "max_scan: 10000")).await;
    env.legacy.store().seed_users(10_000);
    let expected = expected_ids(&env, "7");
    assert!(expected.len() > 100, "the seed data should give many matches");
    let filter = urlencode("userName co \"7\"");
    let reply = env.get(&format!("/Users?filter={filter}&startIndex=11&count=5&attributes=id")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["totalResults"], expected.len());
    let ids: Vec<&str> =
        reply.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected[10..15].iter().map(String::as_str).collect::<Vec<_>>());

    let env = TestEnv::start_with(|t| t.replace("max_scan: 2000", "max_scan: 9999")).await;
    env.legacy.store().seed_users(10_000);
    env.get(&format!("/Users?filter={filter}")).await.assert_error(400, Some("tooMany"));
}

/// A mapping that cannot search: the proxy evaluates every filter itself.
const LIST_ALL: &str = r#"
    fn to_scim(u) {
        let user = #{ id: u.id.to_string(), userName: u.login, active: u.enabled, displayName: u.display_name };
        if u.external_ref != () { user.externalId = u.external_ref; }
        user
    }
    fn get_user(id) { let r = legacy.get(["users", id]); if r.status == 200 { to_scim(r.json) } else { () } }
    fn list_users(query) {
        let all = [];
        let page = 1;
        loop {
            let r = legacy.get("/users", #{ page: page, per_page: 100 });
            for u in r.json.data { all.push(to_scim(u)); }
            if r.json.data.len() < 100 { break; }
            page += 1;
        }
        all
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_in_the_proxy_agrees_with_push_down() {
    let pushed = TestEnv::start().await;
    pushed.legacy.store().seed_users(300);
    let scanned = TestEnv::start_script(Some(LIST_ALL), |t| t).await;
    scanned.legacy.store().seed_users(300);
    for filter in [
        "userName eq \"user00042\"",
        "userName eq \"USER00042\"",
        "userName eq \"nobody\"",
        "userName eq \"user00042\" and active eq true",
        "userName eq \"user00042\" or userName eq \"user00043\"",
        "userName co \"9\" and userName sw \"user001\"",
        "externalId pr",
    ] {
        let path = format!("/Users?filter={}&attributes=id&count=1000", urlencode(filter));
        let a = pushed.get(&path).await;
        let b = scanned.get(&path).await;
        assert_eq!(a.status, StatusCode::OK, "{filter}: {}", a.text);
        assert_eq!(a.body["totalResults"], b.body["totalResults"], "{filter}");
        let ids = |r: &crate::support::Reply| -> Vec<Value> {
            r.body["Resources"].as_array().unwrap().iter().map(|u| u["id"].clone()).collect()
        };
        assert_eq!(ids(&a), ids(&b), "{filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_extensions_are_published_and_validated() {
    let extension = r#"
    user_extensions:
      - required: false
        schema:
          id: "urn:example:params:scim:schemas:extension:acme:2.0:User"
          name: AcmeUser
          description: Acme specifics
          attributes:
            - {name: badge, type: integer}
            - {name: site, canonicalValues: [north, south]}
"#;
    let env = TestEnv::start_with(|t| {
        t.replace(
            "      enterprise_user: [employeeNumber, department, manager]",
            &format!(
                "      enterprise_user: [employeeNumber, department, manager]\n{}",
                extension.trim_start_matches('\n').lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
            ),
        )
    })
    .await;
    let schema = env.get("/Schemas/urn:example:params:scim:schemas:extension:acme:2.0:User").await;
    assert_eq!(schema.status, StatusCode::OK, "{}", schema.text);
    assert_eq!(schema.body["attributes"][0]["type"], "integer");
    let types = env.get("/ResourceTypes/User").await;
    let extensions: Vec<&str> =
        types.body["schemaExtensions"].as_array().unwrap().iter().map(|e| e["schema"].as_str().unwrap()).collect();
    assert!(extensions.contains(&"urn:example:params:scim:schemas:extension:acme:2.0:User"), "{extensions:?}");
    let mut body = user("badged");
    body["urn:example:params:scim:schemas:extension:acme:2.0:User"] = json!({"badge": "not a number"});
    let reply = env.post("/Users", body).await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("badge"), "{}", reply.text);
    // Canonical values an app declares are the only ones it takes.
    let mut body = user("sited");
    body["urn:example:params:scim:schemas:extension:acme:2.0:User"] = json!({"site": "west"});
    let reply = env.post("/Users", body).await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("north, south"), "{}", reply.text);
}
