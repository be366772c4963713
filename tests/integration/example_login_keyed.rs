//! Example (a): `scripts/examples/login_keyed.rhai` in front of an accounts API keyed by login name.
//!
//! The API below is the in-house app of the example: accounts addressed by login, a stable
//! `uid` no URL accepts, renames by PUT. The tests run the shipped example configuration
//! through the real proxy and show the SCIM id (the uid) surviving renames, restarts and
//! renames behind the proxy's back.

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

const API_TOKEN: &str = "accounts-test-token";
const CONFIG: &str = "scripts/examples/login_keyed.yaml";

// ---------------------------------------------------------------- the accounts API

/// An account as the API stores and shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Account {
    uid: u64,
    login: String,
    first_name: Option<String>,
    last_name: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
    disabled: bool,
    external_key: Option<String>,
}

/// The body of POST and PUT; a uid, when sent, must be the account's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    uid: Option<u64>,
    login: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
    disabled: Option<bool>,
    external_key: Option<String>,
}

type Hook = Box<dyn FnOnce(&mut Directory) + Send>;

/// The API's data, the calls it received, and a change to make just before the next PUT.
#[derive(Default)]
struct Directory {
    accounts: BTreeMap<u64, Account>,
    last_uid: u64,
    calls: Vec<String>,
    before_next_put: Option<Hook>,
}

impl Directory {
    fn by_login(&self, login: &str) -> Option<&Account> {
        self.accounts.values().find(|a| a.login.to_lowercase() == login.to_lowercase())
    }

    /// Adds an account as someone working in the app itself would; returns its uid.
    fn insert(&mut self, login: &str) -> u64 {
        self.last_uid = self.last_uid.max(1000) + 1;
        let account = Account {
            uid: self.last_uid,
            login: login.to_owned(),
            first_name: None,
            last_name: None,
            display_name: None,
            email: Some(format!("{login}@accounts.example")),
            disabled: false,
            external_key: None,
        };
        self.accounts.insert(self.last_uid, account);
        self.last_uid
    }

    /// Renames an account behind the proxy's back.
    fn rename(&mut self, uid: u64, login: &str) {
        self.accounts.get_mut(&uid).unwrap().login = login.to_owned();
    }

    fn answer(&mut self, method: &Method, path: &str, query: &str, body: &[u8]) -> (StatusCode, Value) {
        let Some(rest) = path.strip_prefix("/api/accounts") else {
            return error(StatusCode::NOT_FOUND, "no_route", "no such route");
        };
        let query: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        match (method, rest) {
            (&Method::GET, "") => self.list(&query),
            (&Method::POST, "") => self.create(body),
            (method, segment) if segment.starts_with('/') && !segment[1..].contains('/') => {
                let login = percent_encoding::percent_decode_str(&segment[1..]).decode_utf8_lossy().into_owned();
                match *method {
                    Method::GET => match self.by_login(&login) {
                        Some(account) => (StatusCode::OK, json!(account)),
                        None => error(StatusCode::NOT_FOUND, "not_found", "no such account"),
                    },
                    Method::PUT => {
                        if let Some(hook) = self.before_next_put.take() {
                            hook(self);
                        }
                        self.replace(&login, body)
                    }
                    Method::DELETE => match self.by_login(&login).map(|a| a.uid) {
                        Some(uid) => {
                            self.accounts.remove(&uid);
                            (StatusCode::NO_CONTENT, Value::Null)
                        }
                        None => error(StatusCode::NOT_FOUND, "not_found", "no such account"),
                    },
                    _ => error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use GET, PUT or DELETE"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no_route", "no such route"),
        }
    }

    /// Accounts in login order after `after`, `limit` (default 50, at most 100) at a time.
    fn list(&self, query: &BTreeMap<String, String>) -> (StatusCode, Value) {
        let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
            None => 50,
            Some(Ok(limit)) => limit.min(100),
            Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "bad_limit", "limit is not a number"),
        };
        let after = query.get("after").map(|a| a.to_lowercase());
        let mut sorted: Vec<&Account> = self.accounts.values().collect();
        sorted.sort_by_key(|a| a.login.to_lowercase());
        let rest: Vec<&Account> =
            sorted.into_iter().filter(|a| after.as_ref().is_none_or(|after| a.login.to_lowercase() > *after)).collect();
        let page = &rest[..limit.min(rest.len())];
        let next_after = (rest.len() > page.len()).then(|| page.last().map(|a| a.login.clone())).flatten();
        (StatusCode::OK, json!({"accounts": page, "next_after": next_after}))
    }

    fn create(&mut self, body: &[u8]) -> (StatusCode, Value) {
        let body = match parse_body(body) {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let login = match body.login.as_deref() {
            Some(login) if !login.is_empty() => login.to_owned(),
            _ => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_login", "login is required"),
        };
        if self.by_login(&login).is_some() {
            return error(StatusCode::CONFLICT, "login_taken", &format!("login {login} is taken"));
        }
        let uid = self.insert(&login);
        let account = self.accounts.get_mut(&uid).unwrap();
        fill(account, body);
        (StatusCode::CREATED, json!(account))
    }

    fn replace(&mut self, login: &str, body: &[u8]) -> (StatusCode, Value) {
        let body = match parse_body(body) {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let Some(uid) = self.by_login(login).map(|a| a.uid) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such account");
        };
        if body.uid.is_some_and(|sent| sent != uid) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "uid_mismatch", "the uid of an account cannot change");
        }
        let new_login = match body.login.as_deref() {
            Some(new) if !new.is_empty() => new.to_owned(),
            _ => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_login", "login is required"),
        };
        if self.by_login(&new_login).is_some_and(|other| other.uid != uid) {
            return error(StatusCode::CONFLICT, "login_taken", &format!("login {new_login} is taken"));
        }
        let account = self.accounts.get_mut(&uid).unwrap();
        account.login = new_login;
        fill(account, body);
        (StatusCode::OK, json!(account))
    }
}

fn fill(account: &mut Account, body: AccountBody) {
    account.first_name = body.first_name;
    account.last_name = body.last_name;
    account.display_name = body.display_name;
    account.email = body.email;
    account.disabled = body.disabled.unwrap_or(false);
    account.external_key = body.external_key;
}

fn parse_body(body: &[u8]) -> Result<AccountBody, (StatusCode, Value)> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()))
}

/// The API's own error shape.
fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"error": code, "message": message}))
}

/// The accounts API on 127.0.0.1:0; stops when dropped.
struct AccountsApi {
    addr: SocketAddr,
    directory: Arc<Mutex<Directory>>,
    task: JoinHandle<()>,
}

impl Drop for AccountsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AccountsApi {
    async fn start() -> Self {
        let directory = Arc::new(Mutex::new(Directory::default()));
        let (addr, task) = crate::support::serve_fake(directory.clone(), |directory, request| async move {
            serve(&directory, request).await
        })
        .await;
        Self { addr, directory, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Directory) -> T) -> T {
        f(&mut self.directory.lock().unwrap())
    }

    fn account(&self, uid: u64) -> Option<Account> {
        self.with(|d| d.accounts.get(&uid).cloned())
    }

    /// The calls received since the last time they were taken, as `METHOD /path?query`.
    fn take_calls(&self) -> Vec<String> {
        self.with(|d| std::mem::take(&mut d.calls))
    }
}

async fn serve(directory: &Mutex<Directory>, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let authorized =
        parts.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Token {API_TOKEN}").as_str());
    let (status, value) = {
        let mut directory = directory.lock().unwrap();
        directory.calls.push(format!("{} {}", parts.method, parts.uri));
        if authorized {
            directory.answer(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or(""), &body)
        } else {
            error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong token")
        }
    };
    let body = if value.is_null() { Bytes::new() } else { Bytes::from(value.to_string()) };
    hyper::Response::builder().status(status).header("content-type", "application/json").body(Full::new(body)).unwrap()
}

// ---------------------------------------------------------------- the proxy in front of it

/// The API and the proxy running the example configuration in front of it.
struct Env {
    api: AccountsApi,
    config: Config,
    proxy: Option<Running>,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Self {
        crate::support::init_logs();
        let api = AccountsApi::start().await;
        let mut vars = Variables::default();
        vars.set("ACCOUNTS_BASE_URL", api.base_url());
        vars.set("SCIM_TOKEN", TOKEN);
        vars.set("ACCOUNTS_API_TOKEN", API_TOKEN);
        let config = Config::load(&repo_file(CONFIG), &vars).unwrap();
        let mut env = Self { api, config, proxy: None, client: reqwest::Client::new() };
        env.restart_proxy().await;
        env
    }

    /// Stops the proxy, if running, and starts a fresh one: an empty ID cache, as a new replica has.
    async fn restart_proxy(&mut self) {
        if let Some(running) = self.proxy.take() {
            running.shutdown().await;
        }
        let any = Some("127.0.0.1:0".parse().unwrap());
        self.proxy = Some(runtime::start(&self.config, any, any).await.unwrap());
    }

    fn base(&self) -> String {
        format!("http://{}/scim/v2", self.proxy.as_ref().unwrap().scim_addr)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        crate::support::send_scim(&self.client, TOKEN, method, &format!("{}{path}", self.base()), body).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// Creates a user through SCIM and returns its id.
    async fn create(&self, login: &str) -> String {
        let reply = self.send(Method::POST, "/Users", Some(user(login))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// The users a filter finds, by userName.
    async fn find(&self, filter: &str) -> Vec<String> {
        let reply = self.get(&format!("/Users?filter={}&count=500", encode(filter))).await;
        assert_eq!(reply.status, StatusCode::OK, "{filter}: {}", reply.text);
        let names: Vec<String> = reply.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(reply.body["totalResults"], names.len(), "{filter}: {}", reply.text);
        names
    }
}

fn user(login: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": login,
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"value": format!("{login}@corp.example"), "type": "work", "primary": true}],
        "active": true
    })
}

fn patch(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn uid(id: &str) -> u64 {
    id.parse().unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_id_is_the_uid_and_stays_while_the_login_changes() {
    let env = Env::start().await;
    let mut body = user("bjensen");
    body["externalId"] = json!("ext-77");
    body["displayName"] = json!("Barbara Jensen");
    let created = env.send(Method::POST, "/Users", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "1001", "the SCIM id is the account's uid");
    assert_eq!(created.header("location"), Some(format!("{}/Users/1001", env.base()).as_str()));
    assert_eq!(created.body["userName"], "bjensen");
    assert_eq!(created.body["externalId"], "ext-77");
    assert_eq!(created.body["emails"], json!([{"value": "bjensen@corp.example"}]), "type and primary on request only");
    let stored = env.api.account(1001).unwrap();
    assert_eq!((stored.login.as_str(), stored.email.as_deref()), ("bjensen", Some("bjensen@corp.example")));
    assert_eq!((stored.external_key.as_deref(), stored.disabled), (Some("ext-77"), false));
    assert_eq!(env.api.take_calls(), ["POST /api/accounts"]);

    // The create taught the cache uid 1001 -> bjensen: a read by id is one call.
    let got = env.get("/Users/1001").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(
        (got.body["userName"].as_str(), got.body["displayName"].as_str()),
        (Some("bjensen"), Some("Barbara Jensen"))
    );
    assert_eq!(got.body["name"], json!({"givenName": "Given", "familyName": "Family"}));
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/bjensen"]);

    // PUT with a new userName renames the account: the key changes, the id does not.
    let mut replacement = user("babs");
    replacement["active"] = json!(false);
    let replaced = env.send(Method::PUT, "/Users/1001", Some(replacement)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!((replaced.body["id"].as_str(), replaced.body["userName"].as_str()), (Some("1001"), Some("babs")));
    assert_eq!(replaced.body["active"], false);
    assert!(replaced.body.get("externalId").is_none() && replaced.body.get("displayName").is_none(), "PUT replaces");
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/bjensen", "PUT /api/accounts/bjensen"]);
    let stored = env.api.account(1001).unwrap();
    assert_eq!((stored.login.as_str(), stored.disabled, stored.display_name), ("babs", true, None));
    assert!(env.api.with(|d| d.by_login("bjensen").is_none()), "the old login no longer names anyone");

    let got = env.get("/Users/1001").await;
    assert_eq!(got.body["userName"], "babs", "{}", got.text);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/babs"], "the rename updated the cached login");

    // PATCH (read, applied by the proxy, replaced) renames too.
    let operations = json!([
        {"op": "replace", "path": "userName", "value": "barbara"},
        {"op": "replace", "path": "active", "value": true},
        {"op": "add", "path": "displayName", "value": "Barbara"}
    ]);
    let patched = env.send(Method::PATCH, "/Users/1001", Some(patch(operations))).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        (patched.body["id"].as_str(), patched.body["userName"].as_str(), patched.body["displayName"].as_str()),
        (Some("1001"), Some("barbara"), Some("Barbara"))
    );
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/babs", "PUT /api/accounts/babs"]);
    let stored = env.api.account(1001).unwrap();
    assert_eq!(
        (stored.login.as_str(), stored.disabled, stored.display_name.as_deref()),
        ("barbara", false, Some("Barbara"))
    );

    let deleted = env.send(Method::DELETE, "/Users/1001", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/barbara", "DELETE /api/accounts/barbara"]);
    assert_eq!(env.api.account(1001), None);
    env.get("/Users/1001").await.assert_error(404, None);
    env.send(Method::DELETE, "/Users/1001", None).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_eq_is_one_call_and_other_filters_scan_the_listing() {
    let env = Env::start().await;
    env.api.with(|d| {
        for n in 1..=150 {
            d.insert(&format!("user{n:03}"));
        }
    });
    env.create("alice").await;
    env.api.take_calls();

    // Neither the proxy nor the script has seen user042: the login goes straight to the API,
    // whose logins compare case-insensitively as SCIM userNames do.
    assert_eq!(env.find("userName eq \"User042\"").await, ["user042"]);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/User042"]);
    assert!(env.find("userName eq \"nobody\"").await.is_empty());
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/nobody"]);
    assert!(env.find("userName eq \"user042\" and active eq false").await.is_empty());
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/user042"], "the proxy checks the rest of the filter");

    // Anything else reads all 151 accounts, two pages, and the proxy filters.
    assert_eq!(env.find("emails.value co \"@corp.example\"").await, ["alice"]);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts?limit=100", "GET /api/accounts?after=user099&limit=100"]);
    let found = env.find("userName sw \"USER00\" or userName eq \"alice\"").await;
    assert_eq!(found.len(), 10, "{found:?}");
    assert!(found.contains(&"alice".to_owned()) && found.contains(&"user009".to_owned()), "{found:?}");

    // The proxy sorts and pages the superset.
    let page = env
        .get(&format!(
            "/Users?filter={}&sortBy=userName&sortOrder=descending&startIndex=3&count=2",
            encode("emails.value co \"user1\"")
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!((page.body["totalResults"].as_u64(), page.body["itemsPerPage"].as_u64()), (Some(51), Some(2)));
    let names: Vec<&str> =
        page.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect();
    assert_eq!(names, ["user148", "user147"]);
    assert_eq!(page.body["Resources"][0]["id"], "1148", "user148 was the 148th account created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404_and_a_taken_login_is_409() {
    let env = Env::start().await;
    env.get("/Users/4242").await.assert_error(404, None);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts?limit=100"], "an unknown uid costs a scan");
    env.get("/Users/bjensen").await.assert_error(404, None);
    assert!(env.api.take_calls().is_empty(), "an id that is no uid costs nothing");
    env.send(Method::PUT, "/Users/4242", Some(user("x"))).await.assert_error(404, None);
    env.send(Method::PATCH, "/Users/4242", Some(patch(json!([{"op": "replace", "path": "active", "value": false}]))))
        .await
        .assert_error(404, None);
    env.send(Method::DELETE, "/Users/4242", None).await.assert_error(404, None);
    assert!(env.api.with(|d| d.calls.iter().all(|c| c.starts_with("GET "))), "nothing was written");

    let bjensen = env.create("bjensen").await;
    let taken = env.send(Method::POST, "/Users", Some(user("BJensen"))).await;
    taken.assert_error(409, Some("uniqueness"));
    // The proxy knows the name already (it created it): it answers without a legacy call.
    assert!(taken.body["detail"].as_str().unwrap().contains("\"BJensen\" exists already"), "{}", taken.text);
    let jsmith = env.create("jsmith").await;
    env.send(Method::PUT, &format!("/Users/{jsmith}"), Some(user("bjensen")))
        .await
        .assert_error(409, Some("uniqueness"));
    assert_eq!(env.api.account(uid(&jsmith)).unwrap().login, "jsmith");
    assert_eq!(env.api.account(uid(&bjensen)).unwrap().login, "bjensen");

    // The app keeps one e-mail: a second is refused by the script, never silently dropped.
    // It has no title: the schema does not publish one, so a title is ignored, not stored.
    let mut two = user("two");
    two["emails"] = json!([{"value": "a@corp.example"}, {"value": "b@corp.example"}]);
    env.send(Method::POST, "/Users", Some(two)).await.assert_error(400, Some("invalidValue"));
    assert_eq!(env.api.with(|d| d.accounts.len()), 2);
    let mut titled = user("titled");
    titled["title"] = json!("Boss");
    let created = env.send(Method::POST, "/Users", Some(titled)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.body.get("title").is_none(), "{}", created.text);
    assert_eq!(env.api.with(|d| d.accounts.len()), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_finds_renamed_users_by_the_same_id() {
    let mut env = Env::start().await;
    env.api.with(|d| {
        for n in 1..=150 {
            d.insert(&format!("user{n:03}"));
        }
    });
    let id = env.create("zoe").await;
    let renamed = env
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(json!([{"op": "replace", "path": "userName", "value": "zoe.adams"}]))),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    env.restart_proxy().await;
    env.api.take_calls();

    // Cold cache: the uid is found by scanning the listing (zoe.adams sorts after user150).
    let got = env.get(&format!("/Users/{id}")).await;
    assert_eq!((got.status, got.body["userName"].as_str()), (StatusCode::OK, Some("zoe.adams")), "{}", got.text);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts?limit=100", "GET /api/accounts?after=user100&limit=100"]);
    // Warm again: one call.
    let got = env.get(&format!("/Users/{id}")).await;
    assert_eq!(got.body["id"], id.as_str());
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/zoe.adams"]);

    // A scan remembers every account it read: another user of the first page is one call too.
    let other = env.get("/Users/1042").await;
    assert_eq!(other.body["userName"], "user042", "{}", other.text);
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/user042"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_behind_the_proxys_back_never_serves_the_wrong_account() {
    let env = Env::start().await;
    let first = uid(&env.create("alice").await);
    // In the app itself: alice becomes alice.old, and a new colleague gets the login alice.
    let second = env.api.with(|d| {
        d.rename(first, "alice.old");
        d.insert("alice")
    });
    env.api.take_calls();

    let got = env.get(&format!("/Users/{first}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(
        (got.body["id"].as_str(), got.body["userName"].as_str()),
        (Some(first.to_string().as_str()), Some("alice.old"))
    );
    assert_eq!(
        env.api.take_calls(),
        ["GET /api/accounts/alice", "GET /api/accounts?limit=100"],
        "the cached login named another uid: dropped, then a scan"
    );
    let got = env.get(&format!("/Users/{first}")).await;
    assert_eq!(got.body["userName"], "alice.old");
    assert_eq!(env.api.take_calls(), ["GET /api/accounts/alice.old"]);

    // Writes reach the right account too.
    let mut body = user("alice.old");
    body["displayName"] = json!("Alice (old)");
    let replaced = env.send(Method::PUT, &format!("/Users/{first}"), Some(body)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(env.api.account(first).unwrap().display_name.as_deref(), Some("Alice (old)"));
    assert_eq!(env.api.account(second).unwrap().display_name, None);

    // Renamed again behind the proxy's back; DELETE must not take the login's new owner.
    env.api.with(|d| {
        d.rename(first, "al");
        d.rename(second, "alice.old");
    });
    let deleted = env.send(Method::DELETE, &format!("/Users/{first}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(env.api.account(first), None);
    assert_eq!(env.api.account(second).unwrap().login, "alice.old", "the other account is untouched");

    // Deleted behind the proxy's back: 404, not an answer from a stale entry.
    let got = env.get(&format!("/Users/{second}")).await;
    assert_eq!(got.body["userName"], "alice.old", "{}", got.text);
    env.api.with(|d| d.accounts.remove(&second));
    env.get(&format!("/Users/{second}")).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_between_the_read_and_the_write_is_caught_by_the_uid() {
    let env = Env::start().await;
    let first = uid(&env.create("alice").await);
    // Just before the proxy's PUT arrives, alice is renamed and her login given to someone else.
    env.api.with(|d| {
        d.before_next_put = Some(Box::new(move |d: &mut Directory| {
            d.rename(first, "alice.moved");
            d.insert("alice");
        }))
    });
    env.api.take_calls();
    let mut body = user("alice.moved");
    body["displayName"] = json!("Alice Moved");
    let replaced = env.send(Method::PUT, &format!("/Users/{first}"), Some(body)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.body["userName"], "alice.moved");
    assert_eq!(
        env.api.take_calls(),
        [
            "GET /api/accounts/alice",
            "PUT /api/accounts/alice",
            "GET /api/accounts?limit=100",
            "PUT /api/accounts/alice.moved"
        ],
        "the first PUT reached the new alice and was refused for its uid; the account was found again"
    );
    let second = env.api.with(|d| d.by_login("alice").unwrap().uid);
    assert_eq!(env.api.account(first).unwrap().display_name.as_deref(), Some("Alice Moved"));
    let other = env.api.account(second).unwrap();
    assert_eq!((other.login.as_str(), other.display_name), ("alice", None), "the new alice is untouched");
}

#[test]
fn the_offline_test_file_passes() {
    // `scim-proxy test` runs scripts/examples/login_keyed.test.yaml against its stand-in legacy app.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["test", "--config"])
        .arg(repo_file(CONFIG))
        .env_remove("SCIM_TOKEN")
        .env_remove("ACCOUNTS_API_TOKEN")
        .env_remove("ACCOUNTS_BASE_URL")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{report}{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("12 passed, 0 failed"), "{report}");
}
