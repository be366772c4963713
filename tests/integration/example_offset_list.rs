//! Example (b): `scripts/examples/offset_list.rhai` in front of a roster API that only lists, with offset/limit.
//!
//! The API below is the in-house app of the example: no search, no read by id, people
//! listed 50 at a most. The tests run the shipped example configuration through the real
//! proxy and show the proxy filtering, sorting and paging what the script lists, the
//! unfiltered listing paged natively, and the scan bound answering `tooMany`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use reqwest::{Method, StatusCode};
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime::{self, Running};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Reply, TOKEN, repo_file};

const API_KEY: &str = "roster-test-key";
const CONFIG: &str = "scripts/examples/offset_list.yaml";
/// The example configuration's `list.max_scan`.
const MAX_SCAN: usize = 5000;

// ---------------------------------------------------------------- the roster API

/// A person as the API stores and shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Person {
    id: u64,
    username: String,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<String>,
    status: String,
    sso_ref: Option<String>,
}

/// The body of POST and PUT.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonBody {
    username: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<String>,
    status: Option<String>,
    sso_ref: Option<String>,
}

/// The API's data and the calls it received.
#[derive(Default)]
struct Roster {
    people: BTreeMap<u64, Person>,
    last_id: u64,
    calls: Vec<String>,
}

impl Roster {
    /// Adds people `person001`… as someone working in the app would: odd numbers get an
    /// `@odd.example` address, even ones `@even.example`, every fifth is suspended.
    fn seed(&mut self, count: u64) {
        for n in 1..=count {
            self.last_id += 1;
            let username = format!("person{n:03}");
            let domain = if n % 2 == 1 { "odd" } else { "even" };
            let person = Person {
                id: self.last_id,
                email: Some(format!("{username}@{domain}.example")),
                username,
                given_name: None,
                family_name: None,
                status: if n % 5 == 0 { "suspended" } else { "active" }.to_owned(),
                sso_ref: None,
            };
            self.people.insert(self.last_id, person);
        }
    }

    fn taken(&self, username: &str, except: u64) -> bool {
        self.people.values().any(|p| p.id != except && p.username.to_lowercase() == username.to_lowercase())
    }

    fn answer(&mut self, method: &Method, path: &str, query: &str, body: &[u8]) -> (StatusCode, Value) {
        let Some(rest) = path.strip_prefix("/v2/people") else {
            return error(StatusCode::NOT_FOUND, "no_route", "no such route");
        };
        match (method, rest) {
            (&Method::GET, "") => self.list(query),
            (&Method::POST, "") => self.write(None, body),
            (method, segment) if segment.starts_with('/') && !segment[1..].contains('/') => {
                let id = segment[1..].parse::<u64>().ok().filter(|id| self.people.contains_key(id));
                match (method, id) {
                    (&Method::PUT, Some(id)) => self.write(Some(id), body),
                    (&Method::DELETE, Some(id)) => {
                        self.people.remove(&id);
                        (StatusCode::NO_CONTENT, Value::Null)
                    }
                    (&Method::PUT | &Method::DELETE, None) => {
                        error(StatusCode::NOT_FOUND, "not_found", "no such person")
                    }
                    _ => error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use PUT or DELETE"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no_route", "no such route"),
        }
    }

    /// People in id order from `offset`, `limit` (default 20, at most 50) at a time.
    fn list(&self, query: &str) -> (StatusCode, Value) {
        let query: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let number = |name: &str, default: usize| query.get(name).map_or(Ok(default), |v| v.parse::<usize>());
        let (Ok(offset), Ok(limit)) = (number("offset", 0), number("limit", 20)) else {
            return error(StatusCode::BAD_REQUEST, "bad_paging", "offset and limit are whole numbers");
        };
        let people: Vec<&Person> = self.people.values().skip(offset).take(limit.min(50)).collect();
        (StatusCode::OK, json!({"total": self.people.len(), "people": people}))
    }

    /// POST (`id` None) or PUT.
    fn write(&mut self, id: Option<u64>, body: &[u8]) -> (StatusCode, Value) {
        let body: PersonBody = match serde_json::from_slice(body) {
            Ok(body) => body,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", &e.to_string()),
        };
        let Some(username) = body.username.filter(|u| !u.is_empty()) else {
            return error(StatusCode::BAD_REQUEST, "username_required", "username is required");
        };
        let status = body.status.unwrap_or_else(|| "active".to_owned());
        if status != "active" && status != "suspended" {
            return error(StatusCode::BAD_REQUEST, "bad_status", "status is active or suspended");
        }
        if self.taken(&username, id.unwrap_or(0)) {
            return error(StatusCode::CONFLICT, "duplicate_username", &format!("username {username} is taken"));
        }
        let (id, created) = match id {
            Some(id) => (id, StatusCode::OK),
            None => {
                self.last_id += 1;
                (self.last_id, StatusCode::CREATED)
            }
        };
        let person = Person {
            id,
            username,
            given_name: body.given_name,
            family_name: body.family_name,
            email: body.email,
            status,
            sso_ref: body.sso_ref,
        };
        self.people.insert(id, person.clone());
        (created, json!(person))
    }
}

/// The API's own error shape.
fn error(status: StatusCode, code: &str, detail: &str) -> (StatusCode, Value) {
    (status, json!({"errors": [{"code": code, "detail": detail}]}))
}

/// The roster API on 127.0.0.1:0; stops when dropped.
struct RosterApi {
    addr: SocketAddr,
    roster: Arc<Mutex<Roster>>,
    task: JoinHandle<()>,
}

impl Drop for RosterApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RosterApi {
    async fn start() -> Self {
        let roster = Arc::new(Mutex::new(Roster::default()));
        let (addr, task) =
            crate::support::serve_fake(roster.clone(), |roster, request| async move { serve(&roster, request).await })
                .await;
        Self { addr, roster, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Roster) -> T) -> T {
        f(&mut self.roster.lock().unwrap())
    }

    fn person(&self, id: &str) -> Option<Person> {
        self.with(|r| r.people.get(&id.parse().unwrap()).cloned())
    }

    /// The calls received since the last time they were taken, as `METHOD /path?query`.
    fn take_calls(&self) -> Vec<String> {
        self.with(|r| std::mem::take(&mut r.calls))
    }
}

async fn serve(roster: &Mutex<Roster>, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let authorized = parts.headers.get("x-roster-key").and_then(|v| v.to_str().ok()) == Some(API_KEY);
    let (status, value) = {
        let mut roster = roster.lock().unwrap();
        roster.calls.push(format!("{} {}", parts.method, parts.uri));
        if authorized {
            roster.answer(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or(""), &body)
        } else {
            error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong X-Roster-Key")
        }
    };
    let body = if value.is_null() { Bytes::new() } else { Bytes::from(value.to_string()) };
    hyper::Response::builder().status(status).header("content-type", "application/json").body(Full::new(body)).unwrap()
}

// ---------------------------------------------------------------- the proxy in front of it

/// The API and the proxy running the example configuration in front of it.
struct Env {
    api: RosterApi,
    proxy: Running,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Self {
        crate::support::init_logs();
        let api = RosterApi::start().await;
        let mut vars = Variables::default();
        vars.set("ROSTER_BASE_URL", api.base_url());
        vars.set("SCIM_TOKEN", TOKEN);
        vars.set("ROSTER_API_KEY", API_KEY);
        let config = Config::load(&repo_file(CONFIG), &vars).unwrap();
        assert_eq!(config.apps[0].list.max_scan, MAX_SCAN);
        let any = Some("127.0.0.1:0".parse().unwrap());
        let proxy = runtime::start(&config, any, any).await.unwrap();
        Self { api, proxy, client: reqwest::Client::new() }
    }

    fn base(&self) -> String {
        format!("http://{}/scim/v2", self.proxy.scim_addr)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        crate::support::send_scim(&self.client, TOKEN, method, &format!("{}{path}", self.base()), body).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// A listing that must succeed, and the userNames of its page.
    async fn list(&self, query: &str) -> (Reply, Vec<String>) {
        let reply = self.get(&format!("/Users?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
        let names = reply.body["Resources"]
            .as_array()
            .map(|users| users.iter().map(|u| u["userName"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        (reply, names)
    }
}

fn user(username: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": username,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{username}@corp.example"), "type": "work", "primary": true}],
        "active": true
    })
}

fn filter(text: &str) -> String {
    format!("filter={}", url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>())
}

fn names(range: impl Iterator<Item = u64>) -> Vec<String> {
    range.map(|n| format!("person{n:03}")).collect()
}

/// The legacy listing calls reading the whole roster of `total` people, 50 at a time.
fn full_scan(total: u64) -> Vec<String> {
    (0..total.div_ceil(50)).map(|page| format!("GET /v2/people?limit=50&offset={}", page * 50)).collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_replace_patch_delete() {
    let env = Env::start().await;
    env.api.with(|r| r.seed(60));
    let mut body = user("bjensen");
    body["externalId"] = json!("sso-bjensen");
    let created = env.send(Method::POST, "/Users", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["id"], "61");
    assert_eq!(created.header("location"), Some(format!("{}/Users/61", env.base()).as_str()));
    assert_eq!(
        (created.body["userName"].as_str(), created.body["externalId"].as_str()),
        (Some("bjensen"), Some("sso-bjensen"))
    );
    assert_eq!(created.body["active"], true);
    let stored = env.api.person("61").unwrap();
    assert_eq!((stored.email.as_deref(), stored.status.as_str()), (Some("bjensen@corp.example"), "active"));
    assert_eq!(stored.sso_ref.as_deref(), Some("sso-bjensen"));
    assert_eq!(env.api.take_calls(), ["POST /v2/people"]);

    // No read by id: the listing is scanned until the id turns up (the 61st person, page 2).
    let got = env.get("/Users/61").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.body["name"], json!({"givenName": "Given", "familyName": "Family"}));
    assert_eq!(got.body["emails"], json!([{"value": "bjensen@corp.example"}]), "type and primary on request only");
    assert_eq!(env.api.take_calls(), full_scan(61));

    let mut replacement = user("babs");
    replacement["active"] = json!(false);
    replacement["name"] = json!({"givenName": "Barbara"});
    let replaced = env.send(Method::PUT, "/Users/61", Some(replacement)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!((replaced.body["userName"].as_str(), replaced.body["active"].as_bool()), (Some("babs"), Some(false)));
    assert!(replaced.body.get("externalId").is_none(), "PUT replaces: {}", replaced.text);
    let stored = env.api.person("61").unwrap();
    assert_eq!((stored.username.as_str(), stored.status.as_str()), ("babs", "suspended"));
    assert_eq!((stored.family_name, stored.sso_ref), (None, None));
    assert_eq!(env.api.take_calls(), [full_scan(61), vec!["PUT /v2/people/61".to_owned()]].concat());

    let operations = json!([
        {"op": "replace", "path": "active", "value": true},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@corp.example"}
    ]);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
    let patched = env.send(Method::PATCH, "/Users/61", Some(patch)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["emails"], json!([{"value": "barbara@corp.example"}]));
    let stored = env.api.person("61").unwrap();
    assert_eq!((stored.email.as_deref(), stored.status.as_str()), (Some("barbara@corp.example"), "active"));
    assert_eq!((stored.username.as_str(), stored.given_name.as_deref()), ("babs", Some("Barbara")));

    env.api.take_calls();
    let deleted = env.send(Method::DELETE, "/Users/61", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(env.api.take_calls(), ["DELETE /v2/people/61"], "a delete needs no scan");
    assert_eq!(env.api.person("61"), None);
    env.get("/Users/61").await.assert_error(404, None);
    env.send(Method::DELETE, "/Users/61", None).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404_and_a_taken_user_name_is_409() {
    let env = Env::start().await;
    env.api.with(|r| r.seed(3));
    env.get("/Users/999").await.assert_error(404, None);
    assert_eq!(env.api.take_calls(), full_scan(3));
    env.get("/Users/bjensen").await.assert_error(404, None);
    assert!(env.api.take_calls().is_empty(), "an id that is no number costs no scan");
    env.send(Method::PUT, "/Users/999", Some(user("x"))).await.assert_error(404, None);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]});
    env.send(Method::PATCH, "/Users/999", Some(patch)).await.assert_error(404, None);
    env.send(Method::DELETE, "/Users/999", None).await.assert_error(404, None);
    assert_eq!(env.api.take_calls().last().map(String::as_str), Some("DELETE /v2/people/999"));

    let taken = env.send(Method::POST, "/Users", Some(user("Person002"))).await;
    taken.assert_error(409, Some("uniqueness"));
    assert_eq!(taken.body["detail"], "username Person002 is taken");
    env.send(Method::PUT, "/Users/1", Some(user("person003"))).await.assert_error(409, Some("uniqueness"));
    assert_eq!(env.api.person("1").unwrap().username, "person001");

    let mut two = user("two");
    two["emails"] = json!([{"value": "a@corp.example"}, {"value": "b@corp.example"}]);
    env.send(Method::POST, "/Users", Some(two)).await.assert_error(400, Some("invalidValue"));
    assert_eq!(env.api.with(|r| r.people.len()), 3);
    // No title in the schema: ignored, not stored.
    let mut with_title = user("titled");
    with_title["title"] = json!("Boss");
    let created = env.send(Method::POST, "/Users", Some(with_title)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.body.get("title").is_none(), "{}", created.text);
    assert_eq!(env.api.with(|r| r.people.len()), 4);

    // An e-mail is not required: a user without one is a person without one.
    let mut bare = user("bare");
    bare.as_object_mut().unwrap().remove("emails");
    let created = env.send(Method::POST, "/Users", Some(bare)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.body.get("emails").is_none(), "{}", created.text);
    assert_eq!(env.api.person("5").unwrap().email, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_filters_over_every_legacy_page() {
    let env = Env::start().await;
    env.api.with(|r| r.seed(120));

    let (reply, found) = env.list(&filter("userName eq \"PERSON077\"")).await;
    assert_eq!(found, ["person077"], "{}", reply.text);
    assert_eq!(reply.body["Resources"][0]["id"], "77");
    assert_eq!(env.api.take_calls(), full_scan(120), "no search: every page is read");

    let (reply, found) = env.list(&format!("{}&count=100", filter("emails.value co \"@odd.example\""))).await;
    assert_eq!(reply.body["totalResults"], 60);
    assert_eq!(found, names((1..=119).step_by(2)));
    assert_eq!(env.api.take_calls(), full_scan(120));

    let (_, found) = env.list(&filter("active eq false and emails.value ew \"odd.example\"")).await;
    assert_eq!(found, names((5..=115).step_by(10)), "odd multiples of 5, from pages 1, 2 and 3");

    let (_, found) = env.list(&filter("emails[type eq \"work\" and value sw \"person11\"]")).await;
    assert_eq!(found, names(110..=119));

    // The proxy sorts and pages the superset.
    let query =
        format!("{}&sortBy=userName&sortOrder=descending&startIndex=11&count=5", filter("emails.value co \"odd\""));
    let (reply, found) = env.list(&query).await;
    assert_eq!(found, names([99, 97, 95, 93, 91].into_iter()));
    assert_eq!((reply.body["totalResults"].as_u64(), reply.body["startIndex"].as_u64()), (Some(60), Some(11)));
    assert_eq!(reply.body["itemsPerPage"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfiltered_pages_map_onto_offset_and_limit() {
    let env = Env::start().await;
    env.api.with(|r| r.seed(120));

    let (reply, found) = env.list("startIndex=40&count=70").await;
    assert_eq!(found, names(40..=109));
    assert_eq!(
        (reply.body["totalResults"].as_u64(), reply.body["startIndex"].as_u64(), reply.body["itemsPerPage"].as_u64()),
        (Some(120), Some(40), Some(70))
    );
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=50&offset=39", "GET /v2/people?limit=20&offset=89"]);

    let (reply, found) = env.list("startIndex=101&count=50").await;
    assert_eq!(found, names(101..=120));
    assert_eq!((reply.body["totalResults"].as_u64(), reply.body["itemsPerPage"].as_u64()), (Some(120), Some(20)));
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=50&offset=100"]);

    let (reply, found) = env.list("count=0").await;
    assert!(found.is_empty());
    assert_eq!((reply.body["totalResults"].as_u64(), reply.body["itemsPerPage"].as_u64()), (Some(120), Some(0)));
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=1&offset=0"]);

    let (reply, found) = env.list("startIndex=500").await;
    assert!(found.is_empty());
    assert_eq!(reply.body["totalResults"], 120);
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=50&offset=499"]);

    // Without count, the configuration's default_count (100): two legacy pages.
    let (_, found) = env.list("").await;
    assert_eq!(found, names(1..=100));
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=50&offset=0", "GET /v2/people?limit=50&offset=50"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_scan_a_filter_is_too_many_after_one_call() {
    let env = Env::start().await;
    env.api.with(|r| r.seed(MAX_SCAN as u64 + 1));

    let reply = env.get(&format!("/Users?{}", filter("emails.value co \"odd\""))).await;
    reply.assert_error(400, Some("tooMany"));
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=50&offset=0"]);
    env.get("/Users?sortBy=userName").await.assert_error(400, Some("tooMany"));
    env.api.take_calls();

    // Unfiltered paging does not scan, so it works at any size.
    let (reply, found) = env.list("startIndex=4990&count=20").await;
    assert_eq!(found, names(4990..=5001));
    assert_eq!(reply.body["totalResults"], MAX_SCAN + 1);
    assert_eq!(env.api.take_calls(), ["GET /v2/people?limit=20&offset=4989"]);

    // One fewer person, and the same filter is answered: the bound is the roster's size.
    env.api.with(|r| r.people.pop_last());
    let (reply, _) = env.list(&filter("emails.value co \"odd\"")).await;
    assert_eq!(reply.body["totalResults"], MAX_SCAN / 2);
    assert_eq!(env.api.take_calls(), full_scan(MAX_SCAN as u64));
}

#[test]
fn the_offline_test_file_passes() {
    // `scim-proxy test` runs scripts/examples/offset_list.test.yaml against its stand-in legacy app.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["test", "--config"])
        .arg(repo_file(CONFIG))
        .env_remove("SCIM_TOKEN")
        .env_remove("ROSTER_API_KEY")
        .env_remove("ROSTER_BASE_URL")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{report}{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("11 passed, 0 failed"), "{report}");
}
