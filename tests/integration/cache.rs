//! The ID-mapping cache is a hint: it saves legacy calls, and a cold or stale cache changes nothing else.

use serde_json::json;

use crate::support::{TestEnv, user};

/// A mapping over an API that cannot search: every listing reads all users.
const LIST_ALL: &str = r#"
    fn to_scim(u) { #{ id: u.id.to_string(), userName: u.login, active: u.enabled } }
    fn create_user(user) {
        let r = legacy.post("/users", #{ login: user.userName });
        if r.status != 201 { throw #{ status: 409, scimType: "uniqueness", detail: "taken" }; }
        to_scim(r.json)
    }
    fn get_user(id) {
        let r = legacy.get(["users", id]);
        if r.status == 200 { to_scim(r.json) } else { () }
    }
    fn list_users(query) {
        let r = legacy.get("/users", #{ per_page: 100 });
        r.json.data.map(|u| to_scim(u))
    }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_replica_answers_like_a_warm_one() {
    let mut env = TestEnv::start().await;
    let mut body = user("coldstart");
    body["externalId"] = json!("ext-cold");
    let id = env.post("/Users", body).await.body["id"].as_str().unwrap().to_owned();
    let warm = env.get("/Users?filter=userName%20eq%20%22coldstart%22").await.body;
    let warm_ext = env.get("/Users?filter=externalId%20eq%20%22ext-cold%22").await.body;
    env.restart_proxy().await;
    let cold = env.get("/Users?filter=userName%20eq%20%22coldstart%22").await.body;
    let cold_ext = env.get("/Users?filter=externalId%20eq%20%22ext-cold%22").await.body;
    assert_eq!(cold["Resources"][0]["id"], id.as_str());
    assert_eq!(warm["totalResults"], cold["totalResults"]);
    assert_eq!(warm["Resources"][0]["id"], cold["Resources"][0]["id"]);
    assert_eq!(warm_ext["Resources"][0]["id"], cold_ext["Resources"][0]["id"]);
    assert_eq!(env.get(&format!("/Users/{id}")).await.body["userName"], "coldstart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_saves_the_listing_when_the_api_cannot_search() {
    let env = TestEnv::start_script(Some(LIST_ALL), |t| t).await;
    env.legacy.store().seed_users(150);
    let id = env.create_user("findme").await;
    let before = env.legacy.requests_served();
    let found = env.get("/Users?filter=userName%20eq%20%22FindMe%22").await;
    assert_eq!(found.body["Resources"][0]["id"], id.as_str(), "{}", found.text);
    assert_eq!(env.legacy.requests_served() - before, 1, "one get_user, no listing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_leads_to_a_fresh_lookup_not_a_wrong_answer() {
    let env = TestEnv::start_script(Some(LIST_ALL), |t| t).await;
    let id = env.create_user("oldname").await;
    // Renamed behind the proxy's back: the cache still maps "oldname" to this id.
    let patch = acme::store::UserPatch { login: Some("newname".into()), ..Default::default() };
    env.legacy.store().patch_user(id.parse().unwrap(), patch).unwrap();
    let old = env.get("/Users?filter=userName%20eq%20%22oldname%22").await;
    assert_eq!(old.body["totalResults"], 0, "{}", old.text);
    let new = env.get("/Users?filter=userName%20eq%20%22newname%22").await;
    assert_eq!(new.body["Resources"][0]["id"], id.as_str(), "{}", new.text);
    // Deleted behind the proxy's back: the entry is dropped, the answer is empty.
    env.legacy.store().delete_user(id.parse().unwrap()).unwrap();
    assert_eq!(env.get("/Users?filter=userName%20eq%20%22newname%22").await.body["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_external_id_or_group_name_finds_every_holder() {
    let env = TestEnv::start().await;
    let mut ids = Vec::new();
    for name in ["twin.a", "twin.b", "twin.c"] {
        let mut body = user(name);
        body["externalId"] = json!("shared-ext");
        let created = env.post("/Users", body).await;
        assert_eq!(created.status, reqwest::StatusCode::CREATED, "{}", created.text);
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    // The cache saw three users with one externalId: it is no key, and the answer is all three.
    let found = env.get("/Users?filter=externalId%20eq%20%22shared-ext%22").await;
    assert_eq!(found.body["totalResults"], 3, "{}", found.text);
    let mut listed: Vec<&str> =
        found.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
}
