//! The example mapping `scripts/examples/roles.rhai` with `roles.yaml`, in front of Roster: an
//! in-house API (served here) whose users carry their group memberships as a `roles` array.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use reqwest::{Method, StatusCode};
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime::{self, Running};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Reply, repo_file};
use crate::users::urlencode;

const TOKEN: &str = "roster-scim-token-0123456789";
const KEY: &str = "roster-test-key";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

// ---------------------------------------------------------------- Roster, the in-house API

/// A Roster user as the API shows it.
#[derive(Debug, Clone, Serialize)]
struct RosterUser {
    id: u64,
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    active: bool,
    roles: Vec<String>,
    version: u64,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
struct RosterRole {
    name: String,
    description: String,
    created_at: String,
}

#[derive(Default)]
struct Data {
    users: BTreeMap<u64, RosterUser>,
    roles: BTreeMap<String, RosterRole>,
    next_id: u64,
}

/// What the server shares between requests; tests read and seed it directly.
#[derive(Default)]
struct State {
    data: Mutex<Data>,
    /// Every request received, as `METHOD /path?query` (the query as sent).
    calls: Mutex<Vec<String>>,
    /// A change another administrator makes to a user just before the next PATCH of that
    /// user arrives: (user id, role granted).
    interference: Mutex<Option<(u64, String)>>,
}

/// Roster on 127.0.0.1, stopped when dropped.
struct Roster {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for Roster {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Roster {
    async fn start() -> Self {
        let state = Arc::new(State::default());
        let (addr, accept) =
            crate::support::serve_fake(state.clone(), |state, request| async move { handle(&state, request).await })
                .await;
        Self { addr, state, accept }
    }

    fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    fn role(&self, name: &str) -> &Self {
        let role = RosterRole { name: name.into(), description: format!("{name} role"), created_at: now() };
        self.state.data.lock().unwrap().roles.insert(name.into(), role);
        self
    }

    /// A user with these roles; returns its id as SCIM shows it.
    fn user(&self, username: &str, roles: &[&str]) -> String {
        let mut data = self.state.data.lock().unwrap();
        data.next_id += 1;
        let id = data.next_id;
        let user = RosterUser {
            id,
            username: username.into(),
            email: Some(format!("{username}@example.com")),
            full_name: None,
            active: true,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            version: 1,
            created_at: now(),
            updated_at: now(),
        };
        data.users.insert(id, user);
        id.to_string()
    }

    fn roles_of(&self, id: &str) -> Vec<String> {
        self.state.data.lock().unwrap().users[&id.parse::<u64>().unwrap()].roles.clone()
    }

    fn role_names(&self) -> Vec<String> {
        self.state.data.lock().unwrap().roles.keys().cloned().collect()
    }

    /// The requests received since the last call.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.calls.lock().unwrap())
    }

    /// Before the next PATCH of `id` is served, someone else grants it `role`.
    fn interfere(&self, id: &str, role: &str) {
        *self.state.interference.lock().unwrap() = Some((id.parse().unwrap(), role.into()));
    }
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

type Answer = Response<Full<Bytes>>;

fn answer(status: u16, body: &impl Serialize) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

/// Roster's own error shape.
fn error(status: u16, code: &str, message: &str) -> Answer {
    answer(status, &json!({"errorCode": code, "errorMessage": message}))
}

async fn handle(state: &State, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.to_string());
    state.calls.lock().unwrap().push(format!("{} {target}", parts.method));
    if parts.headers.get("x-roster-key").map(|v| v.as_bytes()) != Some(KEY.as_bytes()) {
        return error(401, "UNAUTHORIZED", "missing or wrong X-Roster-Key");
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let segments: Vec<String> = match parts.uri.path().strip_prefix("/api/") {
        Some(rest) => {
            rest.split('/').map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect()
        }
        None => return error(404, "NO_ROUTE", "no such endpoint"),
    };
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let if_match = parts.headers.get("if-match").and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_owned());
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut data = state.data.lock().unwrap();
    match (parts.method.as_str(), segments.as_slice()) {
        ("GET", ["users"]) => list_users(&data, &query),
        ("POST", ["users"]) => create_user(&mut data, &body),
        (method, ["users", id]) => {
            let Some(id) = id.parse::<u64>().ok().filter(|id| data.users.contains_key(id)) else {
                return error(404, "USER_NOT_FOUND", &format!("no user {id}"));
            };
            match method {
                "GET" => answer(200, &data.users[&id]),
                "PATCH" => {
                    let interference = state.interference.lock().unwrap().take_if(|(user, _)| *user == id);
                    if let Some((_, role)) = interference {
                        let user = data.users.get_mut(&id).unwrap();
                        user.roles.push(role);
                        user.version += 1;
                    }
                    patch_user(&mut data, id, &body, if_match.as_deref())
                }
                "DELETE" => {
                    data.users.remove(&id);
                    answer(204, &())
                }
                _ => error(405, "METHOD_NOT_ALLOWED", "use GET, PATCH or DELETE"),
            }
        }
        ("GET", ["roles"]) => answer(200, &data.roles.values().collect::<Vec<_>>()),
        ("POST", ["roles"]) => create_role(&mut data, &body),
        (method, ["roles", name]) => {
            let name = (*name).to_owned();
            if !data.roles.contains_key(&name) {
                return error(404, "ROLE_NOT_FOUND", &format!("no role {name}"));
            }
            match method {
                "GET" => answer(200, &data.roles[&name]),
                "DELETE" if data.users.values().any(|u| u.roles.contains(&name)) => {
                    error(409, "ROLE_IN_USE", &format!("role {name} is still assigned"))
                }
                "DELETE" => {
                    data.roles.remove(&name);
                    answer(204, &())
                }
                _ => error(405, "METHOD_NOT_ALLOWED", "use GET or DELETE"),
            }
        }
        _ => error(404, "NO_ROUTE", "no such endpoint"),
    }
}

fn list_users(data: &Data, query: &HashMap<String, String>) -> Answer {
    let number = |name: &str, default: usize| query.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (offset, limit) = (number("offset", 0), number("limit", 50).min(200));
    let matching: Vec<&RosterUser> = data
        .users
        .values()
        .filter(|u| query.get("username").is_none_or(|name| u.username.eq_ignore_ascii_case(name)))
        .filter(|u| query.get("role").is_none_or(|role| u.roles.contains(role)))
        .collect();
    let items: Vec<&&RosterUser> = matching.iter().skip(offset).take(limit).collect();
    answer(200, &json!({"items": items, "total": matching.len()}))
}

/// The roles of a body, checked against the catalogue; else Roster's error code and message.
fn checked_roles(data: &Data, value: &Value) -> Result<Vec<String>, (&'static str, String)> {
    let Some(items) = value.as_array() else {
        return Err(("INVALID_FIELD", "roles must be an array of role names".to_owned()));
    };
    let mut roles = Vec::new();
    for item in items {
        match item.as_str() {
            Some(name) if data.roles.contains_key(name) => roles.push(name.to_owned()),
            _ => return Err(("UNKNOWN_ROLE", format!("unknown role {item}"))),
        }
    }
    Ok(roles)
}

fn username_taken(data: &Data, name: &str, except: Option<u64>) -> bool {
    data.users.values().any(|u| Some(u.id) != except && u.username.eq_ignore_ascii_case(name))
}

fn create_user(data: &mut Data, body: &Value) -> Answer {
    let Some(username) = body["username"].as_str().filter(|n| !n.is_empty()) else {
        return error(422, "INVALID_FIELD", "username is required");
    };
    if username_taken(data, username, None) {
        return error(409, "USERNAME_TAKEN", &format!("username {username} is taken"));
    }
    let roles = match body.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => match checked_roles(data, value) {
            Ok(roles) => roles,
            Err((code, message)) => return error(422, code, &message),
        },
    };
    data.next_id += 1;
    let user = RosterUser {
        id: data.next_id,
        username: username.to_owned(),
        email: body["email"].as_str().map(str::to_owned),
        full_name: body["full_name"].as_str().map(str::to_owned),
        active: body["active"].as_bool().unwrap_or(true),
        roles,
        version: 1,
        created_at: now(),
        updated_at: now(),
    };
    data.users.insert(user.id, user.clone());
    answer(201, &user)
}

fn patch_user(data: &mut Data, id: u64, body: &Value, if_match: Option<&str>) -> Answer {
    let Some(fields) = body.as_object() else {
        return error(422, "INVALID_FIELD", "the body must be an object");
    };
    let mut user = data.users[&id].clone();
    if let Some(expected) = if_match {
        if expected != user.version.to_string() {
            return error(412, "VERSION_MISMATCH", &format!("user {id} is at version {}", user.version));
        }
    }
    for (name, value) in fields {
        match name.as_str() {
            "username" => match value.as_str().filter(|n| !n.is_empty()) {
                Some(n) if username_taken(data, n, Some(id)) => {
                    return error(409, "USERNAME_TAKEN", &format!("username {n} is taken"));
                }
                Some(n) => user.username = n.to_owned(),
                None => return error(422, "INVALID_FIELD", "username is required"),
            },
            "email" => user.email = value.as_str().map(str::to_owned),
            "full_name" => user.full_name = value.as_str().map(str::to_owned),
            "active" => user.active = value.as_bool().unwrap_or(true),
            "roles" => match checked_roles(data, value) {
                Ok(roles) => user.roles = roles,
                Err((code, message)) => return error(422, code, &message),
            },
            other => return error(422, "UNKNOWN_FIELD", &format!("unknown field {other}")),
        }
    }
    user.version += 1;
    user.updated_at = now();
    data.users.insert(id, user.clone());
    answer(200, &user)
}

fn create_role(data: &mut Data, body: &Value) -> Answer {
    let name = body["name"].as_str().unwrap_or("");
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return error(422, "INVALID_ROLE_NAME", "role names are lower-case letters, digits, - and _");
    }
    if data.roles.contains_key(name) {
        return error(409, "ROLE_EXISTS", &format!("role {name} exists"));
    }
    let description = body["description"].as_str().unwrap_or("").to_owned();
    let role = RosterRole { name: name.to_owned(), description, created_at: now() };
    data.roles.insert(name.to_owned(), role.clone());
    answer(201, &role)
}

// ---------------------------------------------------------------- the proxy in front of it

/// Roster, seeded with roles admin, billing and viewer, and the proxy with `roles.yaml`.
struct Env {
    roster: Roster,
    proxy: Running,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Self {
        crate::support::init_logs();
        let roster = Roster::start().await;
        roster.role("admin").role("billing").role("viewer");
        let mut vars = Variables::default();
        vars.set("SCIM_TOKEN", TOKEN);
        vars.set("ROSTER_API_KEY", KEY);
        vars.set("ROSTER_BASE_URL", roster.base_url());
        let config = Config::load(&repo_file("scripts/examples/roles.yaml"), &vars).unwrap();
        let any = Some("127.0.0.1:0".parse().unwrap());
        let proxy = runtime::start(&config, any, any).await.unwrap();
        Self { roster, proxy, client: reqwest::Client::new() }
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

    async fn patch_group(&self, id: &str, operations: Value) -> Reply {
        let body = json!({"schemas": [PATCH_OP], "Operations": operations});
        self.send(Method::PATCH, &format!("/Groups/{id}"), Some(body)).await
    }

    /// The SCIM ids of a list of members or groups.
    fn values(list: &Value) -> Vec<&str> {
        list.as_array().map_or_else(Vec::new, |items| items.iter().map(|m| m["value"].as_str().unwrap()).collect())
    }

    /// The ids of the resources of a list response.
    fn ids(reply: &Reply) -> Vec<&str> {
        reply.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
    }
}

fn group_body(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP], "displayName": name, "members": members})
}

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "displayName": format!("{user_name} Doe"),
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work", "primary": true}],
        "active": true
    })
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_read_replaced_and_deleted_and_keep_their_roles() {
    let env = Env::start().await;
    let created = env.send(Method::POST, "/Users", Some(user_body("dora"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["userName"], "dora");
    assert_eq!(created.body["displayName"], "dora Doe");
    assert_eq!(
        created.body["emails"],
        json!([{"value": "dora@example.com"}]),
        "type and primary are returned on request"
    );
    assert!(created.body.get("groups").is_none(), "no roles yet: {}", created.text);
    assert_eq!(created.body["meta"]["version"], "W/\"1\"", "Roster's version is the ETag");
    assert_eq!(created.header("location").unwrap(), format!("{}/Users/{id}", env.base()));

    env.send(Method::POST, "/Users", Some(user_body("DORA"))).await.assert_error(409, Some("uniqueness"));
    let mut named = user_body("eve");
    named["name"] = json!({"givenName": "Eve"});
    let refused = env.send(Method::POST, "/Users", Some(named)).await;
    refused.assert_error(400, Some("invalidValue"));
    assert!(refused.body["detail"].as_str().unwrap().contains("name"), "{}", refused.text);

    // Roles given in Roster show as groups; a PUT of the profile keeps them.
    env.roster.state.data.lock().unwrap().users.get_mut(&id.parse().unwrap()).unwrap().roles = vec!["billing".into()];
    let mut replaced = user_body("dora");
    replaced["displayName"] = json!("Dora Explorer");
    let put = env.send(Method::PUT, &format!("/Users/{id}"), Some(replaced)).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["displayName"], "Dora Explorer");
    assert_eq!(Env::values(&put.body["groups"]), vec!["billing"]);
    assert_eq!(env.roster.roles_of(&id), vec!["billing"]);

    let read = env.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["groups"][0]["$ref"], format!("{}/Groups/billing", env.base()));
    let found = env.get(&format!("/Users?filter={}", urlencode("userName eq \"Dora\""))).await;
    assert_eq!(Env::ids(&found), vec![id.as_str()], "{}", found.text);

    assert_eq!(env.send(Method::DELETE, &format!("/Users/{id}"), None).await.status, StatusCode::NO_CONTENT);
    env.get(&format!("/Users/{id}")).await.assert_error(404, None);
    env.send(Method::DELETE, &format!("/Users/{id}"), None).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_roles_and_their_members_the_users_holding_them() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &["admin", "billing"]);
    let bob = env.roster.user("bob", &["admin"]);
    env.roster.user("carol", &[]);

    let admin = env.get("/Groups/admin").await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text);
    assert_eq!(admin.body["id"], "admin");
    assert_eq!(admin.body["displayName"], "admin");
    assert_eq!(admin.body["meta"]["location"], format!("{}/Groups/admin", env.base()));
    assert_eq!(
        admin.body["members"],
        json!([
            {"value": alice, "type": "User", "$ref": format!("{}/Users/{alice}", env.base())},
            {"value": bob, "type": "User", "$ref": format!("{}/Users/{bob}", env.base())},
        ])
    );

    let all = env.get("/Groups").await;
    assert_eq!(all.body["totalResults"], 3, "{}", all.text);
    assert_eq!(Env::ids(&all), vec!["admin", "billing", "viewer"]);
    let members: Vec<Vec<&str>> =
        all.body["Resources"].as_array().unwrap().iter().map(|g| Env::values(&g["members"])).collect();
    assert_eq!(members, vec![vec![alice.as_str(), bob.as_str()], vec![alice.as_str()], vec![]]);

    let user = env.get(&format!("/Users/{alice}")).await;
    assert_eq!(
        user.body["groups"],
        json!([
            {"value": "admin", "display": "admin", "type": "direct", "$ref": format!("{}/Groups/admin", env.base())},
            {"value": "billing", "display": "billing", "type": "direct", "$ref": format!("{}/Groups/billing", env.base())},
        ])
    );
    let holders = env.get(&format!("/Users?filter={}&attributes=userName", urlencode("groups eq \"admin\""))).await;
    assert_eq!(Env::ids(&holders), vec![alice.as_str(), bob.as_str()], "{}", holders.text);

    env.get("/Groups/auditor").await.assert_error(404, None);
    env.get("/Groups/ADMIN").await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_read_without_members_never_read_a_user() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &["admin", "billing"]);
    env.roster.user("bob", &["admin"]);
    env.roster.take_calls();

    let one = env.get("/Groups/admin?excludedAttributes=members").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert!(one.body.get("members").is_none());
    assert_eq!(env.roster.take_calls(), vec!["GET /api/roles/admin"]);

    let all = env.get("/Groups?excludedAttributes=members").await;
    assert_eq!(all.body["totalResults"], 3, "{}", all.text);
    assert_eq!(env.roster.take_calls(), vec!["GET /api/roles"]);

    // Entra ID's membership check: one read of the user, none of the group's members.
    let filter = format!("id eq \"admin\" and members[value eq \"{alice}\"]");
    let check = env.get(&format!("/Groups?excludedAttributes=members&filter={}", urlencode(&filter))).await;
    assert_eq!(Env::ids(&check), vec!["admin"], "{}", check.text);
    assert_eq!(env.roster.take_calls(), vec![format!("GET /api/users/{alice}")]);

    // With members, one role is one search by role.
    let full = env.get("/Groups/admin").await;
    assert_eq!(full.body["members"].as_array().unwrap().len(), 2);
    let calls = env.roster.take_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1].starts_with("GET /api/users?") && calls[1].contains("role=admin"), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_name_and_member_filters_are_answered_exactly() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &["admin", "billing"]);
    let bob = env.roster.user("bob", &["viewer"]);
    let list = |filter: &str| format!("/Groups?filter={}", urlencode(filter));

    let admin = env.get(&list("displayName eq \"admin\"")).await;
    assert_eq!(admin.body["totalResults"], 1, "{}", admin.text);
    assert_eq!(admin.body["Resources"][0]["displayName"], "admin");
    assert_eq!(Env::values(&admin.body["Resources"][0]["members"]), vec![alice.as_str()]);
    // displayName is not case-exact (RFC 7643 §4.2); Roster's names are lower-case.
    assert_eq!(Env::ids(&env.get(&list("displayName eq \"ADMIN\"")).await), vec!["admin"]);
    assert_eq!(env.get(&list("displayName eq \"auditor\"")).await.body["totalResults"], 0);

    for filter in [format!("members.value eq \"{alice}\""), format!("members[value eq \"{alice}\"]")] {
        let groups = env.get(&format!("{}&excludedAttributes=members", list(&filter))).await;
        assert_eq!(Env::ids(&groups), vec!["admin", "billing"], "{filter}: {}", groups.text);
    }
    let both = env.get(&list(&format!("displayName eq \"billing\" and members.value eq \"{alice}\""))).await;
    assert_eq!(Env::ids(&both), vec!["billing"], "{}", both.text);
    let neither = env.get(&list(&format!("displayName eq \"billing\" and members.value eq \"{bob}\""))).await;
    assert_eq!(neither.body["totalResults"], 0, "{}", neither.text);
    assert_eq!(env.get(&list("members.value eq \"999\"")).await.body["totalResults"], 0);

    // The filter reaches the script as the client spelled it: any case, with or without the URN.
    env.roster.take_calls();
    let urn = env.get(&list("urn:ietf:params:scim:schemas:core:2.0:Group:DisplayName eq \"billing\"")).await;
    assert_eq!(Env::ids(&urn), vec!["billing"], "{}", urn.text);
    let calls = env.roster.take_calls();
    assert_eq!(calls[0], "GET /api/roles/billing", "answered by Roster, not by a listing: {calls:?}");

    // Anything else is evaluated by the proxy over every role.
    let others = env.get(&list("displayName sw \"b\" or displayName ew \"er\"")).await;
    assert_eq!(Env::ids(&others), vec!["billing", "viewer"], "{}", others.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_patches_rewrite_the_users_roles() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &["billing"]);
    let bob = env.roster.user("bob", &[]);

    // Entra ID and Okta: add with a value array.
    let added = env
        .patch_group("admin", json!([{"op": "add", "path": "members", "value": [{"value": alice}, {"value": bob}]}]))
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    assert_eq!(env.roster.roles_of(&alice), vec!["billing", "admin"]);
    assert_eq!(env.roster.roles_of(&bob), vec!["admin"]);
    let user = env.get(&format!("/Users/{alice}")).await;
    assert_eq!(Env::values(&user.body["groups"]), vec!["billing", "admin"]);

    // Okta: remove by a filter on the member's value.
    env.roster.take_calls();
    let removed =
        env.patch_group("admin", json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}])).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_eq!(env.roster.roles_of(&alice), vec!["billing"]);
    assert_eq!(env.roster.roles_of(&bob), vec!["admin"]);
    assert_eq!(
        env.roster.take_calls(),
        vec!["GET /api/roles/admin".to_owned(), format!("GET /api/users/{alice}"), format!("PATCH /api/users/{alice}")],
        "the group without members, then the one user read and written"
    );

    // Entra ID: remove with a value array. Adding a holder again, removing a non-holder: no write.
    let again = env
        .patch_group(
            "admin",
            json!([
                {"op": "Add", "path": "members", "value": [{"value": bob}]},
                {"op": "Remove", "path": "members", "value": [{"value": alice}]},
            ]),
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.text);
    assert!(env.roster.take_calls().iter().all(|c| !c.starts_with("PATCH")), "nothing to write");
    assert_eq!(env.roster.roles_of(&bob), vec!["admin"]);

    let group = env.get("/Groups/admin").await;
    assert_eq!(Env::values(&group.body["members"]), vec![bob.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_members_and_groups_change_nothing() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &[]);
    let reply = env
        .patch_group(
            "admin",
            json!([{"op": "add", "path": "members", "value": [{"value": alice}, {"value": "424242"}]}]),
        )
        .await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("424242"), "{}", reply.text);
    assert!(env.roster.roles_of(&alice).is_empty(), "alice was not added either");

    // A role id is not a user: roles hold users only.
    env.patch_group("admin", json!([{"op": "add", "path": "members", "value": [{"value": "billing"}]}]))
        .await
        .assert_error(400, Some("invalidValue"));

    // A member of another type is refused by the proxy (roles.yaml: members.type is User only).
    let typed = json!([{"op": "add", "path": "members", "value": [{"value": alice, "type": "Group"}]}]);
    env.patch_group("admin", typed).await.assert_error(400, Some("invalidValue"));
    assert!(env.roster.roles_of(&alice).is_empty());

    let typed = json!({"schemas": [GROUP], "displayName": "auditor", "members": [{"value": alice, "type": "Group"}]});
    env.send(Method::POST, "/Groups", Some(typed)).await.assert_error(400, Some("invalidValue"));
    assert_eq!(env.roster.role_names(), vec!["admin", "billing", "viewer"]);

    // Removing a user that does not exist removes nothing, and succeeds.
    let gone = env.patch_group("admin", json!([{"op": "remove", "path": "members[value eq \"424242\"]"}])).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);

    env.roster.take_calls();
    env.patch_group("auditor", json!([{"op": "add", "path": "members", "value": [{"value": alice}]}]))
        .await
        .assert_error(404, None);
    assert_eq!(
        env.roster.take_calls(),
        vec!["GET /api/roles/auditor"],
        "the unknown group is found before any user is read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_meanwhile_by_someone_else_is_not_lost() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &[]);
    env.roster.interfere(&alice, "viewer");
    env.roster.take_calls();
    let reply = env.patch_group("admin", json!([{"op": "add", "path": "members", "value": [{"value": alice}]}])).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(env.roster.roles_of(&alice), vec!["viewer", "admin"]);
    let writes = env.roster.take_calls().into_iter().filter(|c| c.starts_with("PATCH")).count();
    assert_eq!(writes, 2, "the first write was refused (412) and redone on a fresh read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_cannot_be_renamed() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &["admin"]);
    let bob = env.roster.user("bob", &[]);

    let put = env.send(Method::PUT, "/Groups/admin", Some(group_body("administrators", &[&alice]))).await;
    put.assert_error(400, Some("mutability"));
    let patch =
        env.patch_group("admin", json!([{"op": "replace", "path": "displayName", "value": "administrators"}])).await;
    patch.assert_error(400, Some("mutability"));
    assert_eq!(env.roster.role_names(), vec!["admin", "billing", "viewer"]);

    let schema = env.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group").await;
    let display_name =
        schema.body["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "displayName").unwrap();
    assert_eq!(display_name["mutability"], "immutable", "{}", schema.text);

    // The same name with a new member list, as a PUT and as a PATCH (what Okta sends), is fine.
    let put = env.send(Method::PUT, "/Groups/admin", Some(group_body("admin", &[&bob]))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(Env::values(&put.body["members"]), vec![bob.as_str()]);
    assert!(env.roster.roles_of(&alice).is_empty());
    let patch = env
        .patch_group(
            "admin",
            json!([
                {"op": "replace", "path": "displayName", "value": "admin"},
                {"op": "replace", "path": "members", "value": [{"value": alice}]},
            ]),
        )
        .await;
    assert_eq!(patch.status, StatusCode::NO_CONTENT, "{}", patch.text);
    assert_eq!(env.roster.roles_of(&alice), vec!["admin"]);
    assert!(env.roster.roles_of(&bob).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_deleting_a_group_creates_and_deletes_the_role() {
    let env = Env::start().await;
    let alice = env.roster.user("alice", &["viewer"]);

    let created = env.send(Method::POST, "/Groups", Some(group_body("auditor", &[&alice]))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["id"], "auditor");
    assert_eq!(created.header("location").unwrap(), format!("{}/Groups/auditor", env.base()));
    assert_eq!(Env::values(&created.body["members"]), vec![alice.as_str()]);
    assert_eq!(env.roster.roles_of(&alice), vec!["viewer", "auditor"]);

    env.send(Method::POST, "/Groups", Some(group_body("auditor", &[]))).await.assert_error(409, Some("uniqueness"));
    let spaced = env.send(Method::POST, "/Groups", Some(group_body("Sales Team", &[]))).await;
    spaced.assert_error(400, Some("invalidValue"));
    assert!(spaced.body["detail"].as_str().unwrap().contains("lower-case"), "{}", spaced.text);
    env.send(Method::POST, "/Groups", Some(group_body("ghosts", &["31337"])))
        .await
        .assert_error(400, Some("invalidValue"));
    assert_eq!(env.roster.role_names(), vec!["admin", "auditor", "billing", "viewer"], "no role for refused groups");

    let deleted = env.send(Method::DELETE, "/Groups/auditor", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(env.roster.role_names(), vec!["admin", "billing", "viewer"]);
    assert_eq!(env.roster.roles_of(&alice), vec!["viewer"], "the holder lost the role, kept the others");
    env.send(Method::DELETE, "/Groups/auditor", None).await.assert_error(404, None);
}

/// `scripts/examples/roles.test.yaml`, run as an integrator would.
#[test]
fn the_offline_test_file_passes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["test", "--config"])
        .arg(repo_file("scripts/examples/roles.yaml"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{text}");
    let summary = text.lines().find(|l| l.ends_with(" passed, 0 failed")).unwrap_or_default();
    assert!(!summary.is_empty() && !summary.starts_with("0 "), "{text}");
}
