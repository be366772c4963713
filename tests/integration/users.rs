//! The User lifecycle through the demo mapping: create, read, list, filter, replace, delete.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestEnv, user};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_replace_delete() {
    let env = TestEnv::start().await;
    let mut body = user("bjensen");
    body["externalId"] = json!("ext-bjensen");
    body["password"] = json!("t1meMa$heen");
    body["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]);
    body[ENTERPRISE] = json!({"department": "Tour Operations", "employeeNumber": "701984"});

    let created = env.post("/Users", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.header("content-type"), Some("application/scim+json"));
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = format!("{}/Users/{id}", env.base());
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(created.body["meta"]["location"], location);
    assert_eq!(created.body["meta"]["resourceType"], "User");
    assert!(created.body["meta"]["created"].is_string());
    assert!(created.body["meta"]["lastModified"].is_string());
    assert_eq!(created.header("etag"), created.body["meta"]["version"].as_str());
    assert_eq!(created.body["userName"], "bjensen");
    assert_eq!(created.body["externalId"], "ext-bjensen");
    assert_eq!(created.body[ENTERPRISE]["department"], "Tour Operations");
    assert!(created.body.get("password").is_none(), "password must never be returned");
    assert!(created.body["schemas"].as_array().unwrap().iter().any(|s| s == ENTERPRISE));

    // The legacy app really holds it, in its own shape.
    let stored = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    assert_eq!(stored.login, "bjensen");
    assert_eq!(stored.department.as_deref(), Some("Tour Operations"));

    let got = env.get(&format!("/Users/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["name"]["givenName"], "Given");
    assert_eq!(got.body["emails"][0]["value"], "bjensen@example.com");
    assert!(got.body.get("password").is_none());

    env.create_user("jsmith").await;
    let listed = env.get("/Users").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:ListResponse");
    assert_eq!(listed.body["totalResults"], 2);
    assert_eq!(listed.body["Resources"].as_array().unwrap().len(), 2);

    let filtered = env.get("/Users?filter=userName%20eq%20%22BJENSEN%22").await;
    assert_eq!(filtered.body["totalResults"], 1, "{}", filtered.text);
    assert_eq!(filtered.body["Resources"][0]["id"], id.as_str());

    let mut replacement = user("bjensen");
    replacement["displayName"] = json!("Babs Jensen");
    replacement["active"] = json!(false);
    let replaced = env.put(&format!("/Users/{id}"), replacement).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.body["displayName"], "Babs Jensen");
    assert_eq!(replaced.body["active"], false);
    assert_ne!(replaced.body["meta"]["version"], created.body["meta"]["version"]);
    let stored = env.legacy.store().get_user(id.parse().unwrap()).unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.department, None, "PUT replaces: attributes left out are cleared");

    let deleted = env.delete(&format!("/Users/{id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(env.legacy.store().get_user(id.parse().unwrap()).is_none());
    env.get(&format!("/Users/{id}")).await.assert_error(404, None);
    env.delete(&format!("/Users/{id}")).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_combine_and_are_evaluated_over_the_listing() {
    let env = TestEnv::start().await;
    for name in ["alice", "alfred", "bob", "carol"] {
        env.create_user(name).await;
    }
    let cases = [
        ("userName sw \"al\"", 2),
        ("userName co \"o\"", 2),
        ("userName ew \"ce\"", 1),
        ("userName eq \"bob\" or userName eq \"carol\"", 2),
        ("userName sw \"a\" and not (userName eq \"alice\")", 1),
        ("(userName eq \"bob\" or userName eq \"alice\") and active eq true", 2),
        ("title pr", 0),
        ("displayName pr", 4),
        ("userName ne \"bob\"", 3),
        ("emails.value co \"carol@\"", 1),
    ];
    for (filter, expected) in cases {
        let url = format!("/Users?filter={}", urlencode(filter));
        let reply = env.get(&url).await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.text);
        assert_eq!(reply.body["totalResults"], expected, "{filter}: {}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_one_based_and_counts_are_bounded() {
    let env = TestEnv::start().await;
    env.legacy.store().seed_users(250);
    let page = env.get("/Users?startIndex=101&count=50").await;
    assert_eq!(page.body["totalResults"], 250);
    assert_eq!(page.body["startIndex"], 101);
    assert_eq!(page.body["itemsPerPage"], 50);
    assert_eq!(page.body["Resources"][0]["id"], "101");
    let empty = env.get("/Users?count=0").await;
    assert_eq!(empty.body["totalResults"], 250);
    assert_eq!(empty.body["itemsPerPage"], 0);
    let beyond = env.get("/Users?startIndex=1000").await;
    assert_eq!(beyond.body["totalResults"], 250);
    assert_eq!(beyond.body["itemsPerPage"], 0);
    let sorted = env.get("/Users?sortBy=userName&sortOrder=descending&count=3").await;
    assert_eq!(sorted.status, StatusCode::OK, "{}", sorted.text);
    assert_eq!(sorted.body["totalResults"], 250);
    let first = sorted.body["Resources"][0]["userName"].as_str().unwrap();
    let second = sorted.body["Resources"][1]["userName"].as_str().unwrap();
    assert!(first > second, "{first} should sort after {second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_over_the_scan_bound_is_too_many_not_a_short_list() {
    let env = TestEnv::start().await;
    env.legacy.store().seed_users(2100); // the test config's max_scan is 2000
    let reply = env.get("/Users?filter=displayName%20co%20%22x%22").await;
    reply.assert_error(400, Some("tooMany"));
    // The same filter pushed down to the legacy search is still answered.
    let reply = env.get("/Users?filter=userName%20eq%20%22user00042%22").await;
    assert_eq!(reply.body["totalResults"], 1, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_and_excluded_attributes_project_the_response() {
    let env = TestEnv::start().await;
    let id = env.create_user("projected").await;
    let reply = env.get(&format!("/Users/{id}?attributes=userName")).await;
    assert_eq!(reply.body["userName"], "projected");
    assert_eq!(reply.body["id"], id.as_str());
    assert!(reply.body.get("emails").is_none(), "{}", reply.text);
    let reply = env.get(&format!("/Users/{id}?excludedAttributes=emails,name")).await;
    assert!(reply.body.get("emails").is_none() && reply.body.get("name").is_none(), "{}", reply.text);
    assert_eq!(reply.body["userName"], "projected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_make_conditional_requests_work() {
    let env = TestEnv::start().await;
    let id = env.create_user("etag").await;
    let got = env.get(&format!("/Users/{id}")).await;
    let etag = got.header("etag").unwrap().to_owned();
    let url = format!("{}/Users/{id}", env.base());
    let not_modified =
        env.client.get(&url).bearer_auth(crate::support::TOKEN).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    let stale = env
        .client
        .put(&url)
        .bearer_auth(crate::support::TOKEN)
        .header("if-match", "W/\"stale\"")
        .header("content-type", "application/scim+json")
        .body(user("etag").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
}

/// A listing filtered in the proxy builds `meta.location` and `meta.version` only for the page
/// it answers (and for every resource when the filter reads `meta`): either way they are what
/// `GET /Users/{id}` gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_filtered_in_the_proxy_carry_the_version_get_gives() {
    let env = TestEnv::start().await;
    env.legacy.store().seed_users(300);
    let got = env.get("/Users/142").await;
    let (version, location) = (got.body["meta"]["version"].clone(), got.body["meta"]["location"].clone());
    assert!(version.as_str().is_some_and(|v| v.starts_with("W/\"")), "{}", got.text);
    assert_eq!(got.header("etag"), version.as_str());
    let listed = env.get(&format!("/Users?filter={}&startIndex=2&count=2", urlencode("userName co \"42\""))).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["totalResults"], 3, "user00042, user00142, user00242: {}", listed.text);
    assert_eq!(listed.body["Resources"][0]["id"], "142", "{}", listed.text);
    assert_eq!(listed.body["Resources"][0]["meta"]["version"], version);
    assert_eq!(listed.body["Resources"][0]["meta"]["location"], location);
    assert_eq!(listed.body["Resources"][1]["id"], "242", "{}", listed.text);
    assert!(listed.body["Resources"][1]["meta"]["version"].as_str().is_some_and(|v| v != version), "{}", listed.text);
    let filter = format!("meta.version eq {version} and meta.location ew \"/Users/142\"");
    let by_meta = env.get(&format!("/Users?filter={}", urlencode(&filter))).await;
    assert_eq!(by_meta.body["totalResults"], 1, "{filter}: {}", by_meta.text);
    assert_eq!(by_meta.body["Resources"][0]["meta"]["version"], version);
}

pub(crate) fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Users a script lists without a legacy call; `get_user` makes one (to `/users/{id}`, whose
/// answer it ignores), so that a test can tell a read by id from a listing.
const LISTED: &str = r#"
    fn people() {
        [
            #{ id: 1, userName: "ann", displayName: "Ann", emails: [#{ value: "ann@example.com" }], title: "Chief" },
            #{ id: 2, userName: "bob", DisplayName: "Bob", emails: [#{ value: "bob@example.com" }],
               "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": #{ department: "R&D", manager: #{ value: "1" } } },
            #{ id: "3", userName: "cy", displayName: "Cy", externalId: "ext-cy", password: "never shown" },
        ]
    }
    fn get_user(id) {
        legacy.get(["users", id]);
        let found = people().filter(|p| p.id.to_string() == id);
        if found.len() == 0 { () } else { found[0] }
    }
    fn list_users(query) {
        let users = results();
        users += people();
        if query.filter_text == "displayName eq \"Broken\"" {
            users += [#{ id: 9, displayName: "no userName" }];
        }
        users
    }
"#;

/// A filter evaluated in the proxy is tested on the members of each listed resource it reads
/// before the resource is finished whole: the answer is the one finishing every resource first
/// gives — for filters the shortcut takes and for those it leaves (`id`, `meta`, `schemas`, a
/// never-returned attribute, `manager` and its `$ref`), attribute names in any case, extension
/// attributes with and without their URN — every listed resource's id and
/// name are still checked, and those that do not match still land in the ID cache.
///
/// The same whether the script gathers the listing in `results()` or in `results(query)`,
/// whose sieve drops what cannot match as it is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_filtered_in_the_proxy_answers_as_if_each_resource_were_finished_first() {
    for script in [LISTED.to_owned(), LISTED.replace("results()", "results(query)")] {
        listed_as_if_finished_first(&script).await;
    }
}

async fn listed_as_if_finished_first(script: &str) {
    let env = TestEnv::start_script(Some(script), |t| t).await;
    let cases: &[(&str, &[&str])] = &[
        ("userName sw \"a\"", &["1"]),
        ("USERNAME eq \"BOB\" or title pr", &["1", "2"]),
        ("emails co \"bob@\"", &["2"]),
        ("DISPLAYNAME eq \"Bob\"", &["2"]),
        ("emails[value ew \"example.com\"] and not (displayName eq \"Ann\")", &["2"]),
        ("externalId eq \"ext-cy\"", &["3"]),
        ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"R&D\"", &["2"]),
        ("department pr or userName eq \"cy\"", &["2", "3"]),
        ("manager.value eq \"1\"", &["2"]),
        ("manager.$ref ew \"/Users/1\"", &["2"]),
        ("id eq \"1\"", &["1"]),
        ("meta.resourceType eq \"User\" and displayName sw \"C\"", &["3"]),
        ("schemas eq \"urn:ietf:params:scim:schemas:core:2.0:User\" and userName co \"o\"", &["2"]),
        ("password pr", &[]),
    ];
    for (filter, ids) in cases {
        let reply = env.get(&format!("/Users?filter={}", urlencode(filter))).await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.text);
        let got: Vec<&str> =
            reply.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(&got, ids, "{filter}: {}", reply.text);
        for resource in reply.body["Resources"].as_array().unwrap() {
            let id = resource["id"].as_str().unwrap();
            let read = env.get(&format!("/Users/{id}")).await;
            assert_eq!(resource, &read.body, "{filter}: the listed resource is the one GET gives");
            assert!(resource.get("password").is_none(), "{filter}: {resource}");
        }
    }
    // A listed resource without a userName is the script's fault, matching or not.
    let broken = env.get(&format!("/Users?filter={}", urlencode("displayName eq \"Broken\""))).await;
    broken.assert_error(500, None);
    // Bob did not match `userName sw "a"`, but the listing taught the ID cache his name: a
    // lookup by name is one read by id, not a listing.
    let env2 = TestEnv::start_script(Some(script), |t| t).await;
    assert_eq!(env2.get(&format!("/Users?filter={}", urlencode("userName sw \"a\""))).await.body["totalResults"], 1);
    let before = env2.legacy.requests_served();
    let bob = env2.get(&format!("/Users?filter={}", urlencode("userName eq \"bob\""))).await;
    assert_eq!(bob.body["Resources"][0]["id"], "2", "{}", bob.text);
    assert_eq!(env2.legacy.requests_served() - before, 1, "a read by id (one legacy call), not a listing (none)");
}

/// A mapping that writes `()` for what a record lacks, and so leaves `name` and the
/// enterprise part with nothing but `()`; `COMPACTED` is the same mapping through `compact`.
const ABSENT_AS_UNIT: &str = r#"
    fn person(id) {
        #{
            id: id, userName: `user${id}`, title: if id == "1" { "Chief" },
            name: #{ givenName: (), familyName: if id == "1" { "Smith" } },
            emails: [(), #{ value: (), type: () }],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": #{ department: (), manager: #{ value: () } },
        }
    }
    fn get_user(id) { if id == "1" || id == "2" { person(id) } }
    fn list_users(query) { let users = results(query); users += [person("1"), person("2")]; users }
"#;

/// A resource whose mapping writes `()` for what the record lacks is the resource without
/// it, as `compact` would leave it: the same body, `schemas` and version for a read and a
/// listing, and the absent parts neither shown nor present to a filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_answers_as_if_its_absent_parts_were_never_written() {
    let compacted = ABSENT_AS_UNIT
        .replace("fn person(id) {\n        #{", "fn person(id) {\n        compact(#{")
        .replace("manager: #{ value: () } },\n        }", "manager: #{ value: () } },\n        })");
    assert!(compacted.contains("compact(#{") && compacted.contains("})\n    }"), "{compacted}");
    let units = TestEnv::start_script(Some(ABSENT_AS_UNIT), |t| t).await;
    let compact = TestEnv::start_script(Some(&compacted), |t| t).await;
    // The two proxies listen on ports of their own: `meta.location` is all that differs.
    let located = |text: &str, env: &TestEnv| text.replace(&env.base(), "BASE");
    for path in ["/Users/1", "/Users/2"] {
        let (got, expected) = (units.get(path).await, compact.get(path).await);
        assert_eq!(got.status, StatusCode::OK, "{}", got.text);
        assert_eq!(located(&got.text, &units), located(&expected.text, &compact), "{path}");
        assert_eq!(got.header("etag"), expected.header("etag"), "{path}");
    }
    let two = units.get("/Users/2").await.body;
    assert_eq!(two["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:User"]), "{two}");
    for absent in ["name", "emails", "title", ENTERPRISE] {
        assert!(two.get(absent).is_none(), "{absent}: {two}");
    }
    assert_eq!(units.get("/Users/1").await.body["name"], json!({"familyName": "Smith"}));
    let cases: &[(&str, &[&str])] = &[
        ("name pr", &["1"]),
        ("emails pr or department pr or manager pr", &[]),
        ("not (name.givenName pr) and userName sw \"user\"", &["1", "2"]),
        ("title pr", &["1"]),
    ];
    for (filter, ids) in cases {
        let (got, expected) = (
            units.get(&format!("/Users?filter={}", urlencode(filter))).await,
            compact.get(&format!("/Users?filter={}", urlencode(filter))).await,
        );
        assert_eq!(got.status, StatusCode::OK, "{filter}: {}", got.text);
        assert_eq!(located(&got.text, &units), located(&expected.text, &compact), "{filter}");
        let listed: Vec<&str> =
            got.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(&listed, ids, "{filter}: {}", got.text);
    }
}

/// A listing a script pages through: 200 pages of 10 users (2000, the test configuration's
/// `max_scan`), or 300 pages (past it) when the filter mentions `all`, each holding the same
/// 1 MiB string, which `results()` lists count for every user that holds it. Gathered in
/// `results()` when the filter mentions `held`, else in `results(query)`.
const PAGED: &str = r#"
    fn get_user(id) { () }
    fn list_users(query) {
        let big = "x";
        for i in 0..20 { big += big; }
        let filter = if query.filter_text == () { "" } else { query.filter_text };
        let users = if filter.contains("held") { results() } else { results(query) };
        let stop = if filter.contains("all") { 300 } else { 200 };
        for page in 0..stop {
            let listed = [];
            for i in 0..10 {
                let n = page * 10 + i;
                listed.push(#{ id: n, userName: `user${n}`, displayName: if n == 1234 { "sought" } else { "other" }, title: big });
            }
            users += listed;
            if users.len() > query.max_scan { break; }
        }
        users
    }
"#;

/// `results(query)` holds what can match the filter, not all it scanned: a listing whose
/// scanned users hold far more than a call's `results()` lists may (64 MiB of strings) answers
/// its one match, where the same listing in `results()` is refused. Its count is still of all
/// it scanned: past `max_scan` the listing is `tooMany` however few matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_in_results_of_the_query_holds_its_matches_and_counts_all_it_scanned() {
    let env = TestEnv::start_script(Some(PAGED), |t| t).await;
    let sought = env.get(&format!("/Users?filter={}", urlencode("displayName eq \"sought\""))).await;
    assert_eq!(sought.status, StatusCode::OK, "{}", sought.text);
    assert_eq!(sought.body["totalResults"], 1, "{}", sought.text);
    assert_eq!(sought.body["Resources"][0]["userName"], "user1234");
    assert_eq!(
        sought.body["Resources"][0]["title"].as_str().map(str::len),
        Some(1 << 20),
        "{}",
        &sought.text[..sought.text.len().min(600)]
    );

    let held =
        env.get(&format!("/Users?filter={}", urlencode("displayName eq \"sought\" or userName eq \"held\""))).await;
    held.assert_error(500, None);

    let all =
        env.get(&format!("/Users?filter={}", urlencode("displayName eq \"sought\" or userName eq \"all\""))).await;
    all.assert_error(400, Some("tooMany"));
}

/// A listing of 200 groups, each with its members in a `results()` list of their own: one
/// member whose `display` is the same 1 MiB string, 200 MiB in all where a call's lists may
/// hold 64 MiB.
const GROUPS_PAGED: &str = r#"
    fn get_user(id) { () }
    fn get_group(id) { () }
    fn list_groups(query) {
        let big = "x";
        for i in 0..20 { big += big; }
        let groups = results(query);
        for page in 0..20 {
            let listed = [];
            for i in 0..10 {
                let n = page * 10 + i;
                let members = results();
                members.push(#{ value: `${n}`, display: big });
                listed.push(#{ id: `g${n}`, displayName: if n == 123 { "sought" } else { `group${n}` }, members: members });
            }
            groups += listed;
        }
        groups
    }
"#;

/// The members of the groups a listing drops (they cannot match) are let go with them, and
/// what they held is given back: the listing answers its one match, though the members of
/// all it read would pass the call's bound, and a page of all 200 groups is answered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_gives_back_what_the_members_of_the_groups_it_drops_held() {
    let env = TestEnv::start_script(Some(GROUPS_PAGED), |t| t).await;
    let sought = env.get(&format!("/Groups?filter={}", urlencode("displayName eq \"sought\""))).await;
    assert_eq!(sought.status, StatusCode::OK, "{}", &sought.text[..sought.text.len().min(600)]);
    assert_eq!(sought.body["totalResults"], 1);
    assert_eq!(sought.body["Resources"][0]["id"], "g123");
    assert_eq!(sought.body["Resources"][0]["members"][0]["display"].as_str().map(str::len), Some(1 << 20));
    let page = env.get("/Groups?startIndex=11&count=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", &page.text[..page.text.len().min(600)]);
    assert_eq!(page.body["totalResults"], 200);
    let ids: Vec<&str> = page.body["Resources"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["g10", "g11"]);
}

/// Of the matches, `results(query)` holds those that can still make the page asked for, by
/// `sortBy`, else in the order listed: a page of a listing whose users together hold far more
/// than a call's `results()` lists may is answered, sorted or not, with every user counted in
/// `totalResults`; the same listing gathered in `results()` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_in_results_of_the_query_holds_only_what_can_make_the_page() {
    let env = TestEnv::start_script(Some(PAGED), |t| t).await;
    let names = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_owned()).collect()
    };
    let sorted = env.get("/Users?sortBy=userName&sortOrder=descending&count=3&attributes=userName").await;
    assert_eq!(sorted.status, StatusCode::OK, "{}", &sorted.text[..sorted.text.len().min(600)]);
    assert_eq!(sorted.body["totalResults"], 2000, "{}", sorted.text);
    assert_eq!(names(&sorted), ["user999", "user998", "user997"]);

    let filtered = env
        .get(&format!(
            "/Users?filter={}&sortBy=userName&startIndex=4&count=2&attributes=userName",
            urlencode("userName sw \"user1\"")
        ))
        .await;
    assert_eq!(filtered.status, StatusCode::OK, "{}", &filtered.text[..filtered.text.len().min(600)]);
    // user1, user10, user100, user1000: the fourth and fifth are user1000 and user1001.
    assert_eq!(filtered.body["totalResults"], 1111, "{}", filtered.text);
    assert_eq!(names(&filtered), ["user1000", "user1001"]);

    let first = env.get("/Users?startIndex=2&count=2&attributes=userName").await;
    assert_eq!(first.status, StatusCode::OK, "{}", &first.text[..first.text.len().min(600)]);
    assert_eq!(first.body["totalResults"], 2000, "{}", first.text);
    assert_eq!(names(&first), ["user1", "user2"]);

    let held = env
        .get(&format!(
            "/Users?filter={}&sortBy=userName&count=3",
            urlencode("userName sw \"user\" or userName eq \"held\"")
        ))
        .await;
    held.assert_error(500, None);
}

/// Users a script lists in pages of 100, gathered in `LIST`: sort values with ties (`title`
/// in two cases of one word), missing (`title`, the enterprise `department`, `name` for all),
/// multi-valued (`emails`, whose primary is not always first).
const SORTED: &str = r#"
    fn person(n) {
        let titles = ["Chief", "chief", "Engineer", "analyst", ()];
        let user = #{
            id: n, userName: `u${(n * 7919) % 1200}`, displayName: `D${n % 37}`,
            emails: [#{ value: `w${n % 11}@example.com`, type: "work" }, #{ value: `p${n % 13}@example.com`, primary: n % 3 == 0 }],
        };
        let title = titles[n % 5];
        if title != () { user.title = title; }
        if n % 4 != 0 { user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = #{ department: `dep${n % 7}` }; }
        user
    }
    fn get_user(id) { person(parse_int(id)) }
    fn list_users(query) {
        let users = LIST;
        for page in 0..12 {
            let listed = [];
            for i in 0..100 { listed.push(person(page * 100 + i)); }
            users += listed;
        }
        users
    }
"#;

/// A page of a listing gathered in `results(query)`, which holds only what can still make
/// the page, is the page of the same listing gathered whole in `results()`: for every kind of
/// sort value (ties in the order listed, missing ones last ascending and first descending,
/// multi-valued by their primary), with and without a filter, for pages at the start, in the
/// middle and past the end; `totalResults` counts every match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_listing_in_results_of_the_query_is_the_page_of_the_whole_listing() {
    let whole = TestEnv::start_script(Some(&SORTED.replace("LIST", "results()")), |t| t).await;
    let paged = TestEnv::start_script(Some(&SORTED.replace("LIST", "results(query)")), |t| t).await;
    let sorts = [
        "userName",
        "title",
        "displayName",
        "emails",
        "emails.value",
        "name.familyName",
        "department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "id",
    ];
    let pages = [(1, 10), (1, 0), (7, 3), (1195, 20), (250, 50), (1, 300)];
    let filters = [None, Some("title pr"), Some("displayName sw \"D1\""), Some("meta.resourceType eq \"User\"")];
    let mut queries = Vec::new();
    for (i, sort) in sorts.iter().enumerate() {
        for (j, order) in ["ascending", "descending"].iter().enumerate() {
            let (start, count) = pages[(2 * i + j) % pages.len()];
            let filter =
                filters[(i + j) % filters.len()].map(|f| format!("&filter={}", urlencode(f))).unwrap_or_default();
            queries.push(format!("/Users?sortBy={sort}&sortOrder={order}&startIndex={start}&count={count}{filter}"));
        }
    }
    for (start, count) in pages {
        queries.push(format!("/Users?startIndex={start}&count={count}&filter={}", urlencode("title pr")));
    }
    let (mut cut, mut sorted_pages) = (0, 0);
    for query in &queries {
        let (expected, got) = (whole.get(query).await, paged.get(query).await);
        assert_eq!(expected.status, StatusCode::OK, "{query}: {}", expected.text);
        assert_eq!(got.text.replace(&paged.base(), "BASE"), expected.text.replace(&whole.base(), "BASE"), "{query}");
        let shown = expected.body["Resources"].as_array().map_or(0, Vec::len);
        cut += usize::from(expected.body["totalResults"].as_u64().unwrap() as usize > shown + 300);
        sorted_pages += usize::from(query.contains("sortBy") && shown > 1);
    }
    assert!(cut >= 10 && sorted_pages >= 10, "{cut} pages of far fewer than their matches, {sorted_pages} sorted");
}

/// Acme keeps one e-mail and one phone: the demo keeps the one marked primary, else the first
/// work one, else the first, as Okta and Entra ID send them (primary not always first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_email_and_phone_are_kept_else_the_first_work_one_else_the_first() {
    let env = TestEnv::start().await;
    let mut body = user("pat");
    body["emails"] = json!([
        {"value": "pat@home.example", "type": "home"},
        {"value": "pat@work.example", "type": "work"},
        {"value": "pat@main.example", "type": "other", "primary": true}
    ]);
    body["phoneNumbers"] =
        json!([{"value": "+1 555 0101", "type": "mobile"}, {"value": "+1 555 0102", "type": "Work"}]);
    let created = env.post("/Users", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id: u64 = created.body["id"].as_str().unwrap().parse().unwrap();
    let stored = env.legacy.store().get_user(id).unwrap();
    assert_eq!(stored.mail.as_deref(), Some("pat@main.example"));
    assert_eq!(stored.phone.as_deref(), Some("+1 555 0102"), "type compared without case");

    body["emails"] =
        json!([{"value": "pat@home.example", "type": "home"}, {"value": "pat@work.example", "type": "work"}]);
    body["phoneNumbers"] = json!([{"value": "+1 555 0101", "type": "mobile"}]);
    let replaced = env.put(&format!("/Users/{id}"), body.clone()).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let stored = env.legacy.store().get_user(id).unwrap();
    assert_eq!(stored.mail.as_deref(), Some("pat@work.example"));
    assert_eq!(stored.phone.as_deref(), Some("+1 555 0101"));

    body["emails"] = json!([{"value": "pat@home.example", "type": "home"}]);
    body.as_object_mut().unwrap().remove("phoneNumbers");
    let replaced = env.put(&format!("/Users/{id}"), body).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let stored = env.legacy.store().get_user(id).unwrap();
    assert_eq!(stored.mail.as_deref(), Some("pat@home.example"));
    assert_eq!(stored.phone, None, "a replace without phoneNumbers clears the phone");
}

/// The enterprise manager reaches Acme as the number it stores; a manager id that is no number
/// is the client's mistake, a 400 `invalidValue` naming the attribute, and nothing is written,
/// on create and on replace. An empty one is no manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_is_written_as_a_number_and_one_that_is_none_is_refused() {
    let env = TestEnv::start().await;
    let boss = env.create_user("the-boss").await;
    let mut body = user("managed");
    body[ENTERPRISE] = json!({"employeeNumber": "E-9", "manager": {"value": boss}});
    let created = env.post("/Users", body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id: u64 = created.body["id"].as_str().unwrap().parse().unwrap();
    let stored = env.legacy.store().get_user(id).unwrap();
    assert_eq!(stored.manager_id, Some(boss.parse().unwrap()));
    assert_eq!(stored.employee_no.as_deref(), Some("E-9"));
    assert!(stored.enabled, "a user without `active` is enabled");
    assert_eq!(created.body[ENTERPRISE]["manager"]["value"], boss.as_str());

    let users = || env.legacy.store().list_users(&acme::store::UserQuery { per_page: 100, ..Default::default() }).total;
    let before = users();
    for (manager, shown) in
        [(json!({"value": "not-a-number"}), "\"not-a-number\""), (json!({"value": "7.5"}), "\"7.5\"")]
    {
        let mut bad = user("badly-managed");
        bad[ENTERPRISE] = json!({"manager": manager});
        let refused = env.post("/Users", bad.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
        assert_eq!(refused.body["scimType"], "invalidValue", "{}", refused.text);
        let detail = refused.body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("{ENTERPRISE}:manager.value: {shown} is not an integer")), "{detail}");
        assert_eq!(users(), before, "nothing was created");

        let replaced = env.put(&format!("/Users/{id}"), bad).await;
        assert_eq!(replaced.status, StatusCode::BAD_REQUEST, "{}", replaced.text);
        let stored = env.legacy.store().get_user(id).unwrap();
        assert_eq!((stored.login.as_str(), stored.manager_id), ("managed", Some(boss.parse().unwrap())), "unchanged");
    }

    body[ENTERPRISE] = json!({"manager": {"value": ""}});
    body["active"] = json!(false);
    let replaced = env.put(&format!("/Users/{id}"), body).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let stored = env.legacy.store().get_user(id).unwrap();
    assert_eq!((stored.manager_id, stored.enabled, stored.employee_no), (None, false, None));
}
