//! The example mapping `scripts/examples/documents.rhai` with `documents.yaml`, in front of
//! Docstore (`examples/docstore`): every attribute a client sends is stored and read back.

use reqwest::{Method, StatusCode};
use scim_proxy::config::{Config, Variables};
use scim_proxy::runtime::{self, Running};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::docstore::Docstore;
use crate::support::{Reply, repo_file};
use crate::users::urlencode;

/// The bearer token the identity provider sends.
pub(crate) const TOKEN: &str = "docstore-scim-token-0123456789";
const KEY: &str = "docstore-test-key";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Docstore, empty, and the proxy with `documents.yaml` in front of it.
pub(crate) struct Env {
    pub docstore: Docstore,
    pub proxy: Running,
    pub client: reqwest::Client,
}

impl Env {
    pub(crate) async fn start() -> Self {
        crate::support::init_logs();
        let docstore = Docstore::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), Some(KEY.into())).unwrap();
        let mut vars = Variables::default();
        vars.set("SCIM_TOKEN", TOKEN);
        vars.set("DOCSTORE_TOKEN", KEY);
        vars.set("DOCSTORE_BASE_URL", docstore.base_url());
        let config = Config::load(&repo_file("scripts/examples/documents.yaml"), &vars).unwrap();
        let any = Some("127.0.0.1:0".parse().unwrap());
        let proxy = runtime::start(&config, any, any).await.unwrap();
        Self { docstore, proxy, client: reqwest::Client::new() }
    }

    /// The SCIM base URL.
    pub(crate) fn base(&self) -> String {
        format!("http://{}/scim/v2", self.proxy.scim_addr)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        crate::support::send_scim(&self.client, TOKEN, method, &format!("{}{path}", self.base()), body).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, operations: Value) -> Reply {
        self.send(Method::PATCH, path, Some(json!({"schemas": [PATCH_OP], "Operations": operations}))).await
    }

    /// Creates a resource through SCIM and returns its id.
    async fn create(&self, path: &str, body: Value) -> String {
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["id"].as_str().unwrap().to_owned()
    }
}

fn user(user_name: &str) -> Value {
    json!({"schemas": [USER], "userName": user_name, "externalId": format!("ext-{user_name}"),
           "emails": [{"value": format!("{user_name}@example.com"), "type": "work"}]})
}

fn group(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP], "displayName": name, "members": members})
}

/// The ids of the resources of a list response.
fn ids(reply: &Reply) -> Vec<&str> {
    reply.body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

/// The `value`s of a list of members or groups.
fn values(list: &Value) -> Vec<&str> {
    list.as_array().map_or_else(Vec::new, |items| items.iter().map(|m| m["value"].as_str().unwrap()).collect())
}

/// RFC 7643 §8.3's full User, with every Enterprise User attribute.
fn full_user(manager: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara",
                 "middleName": "Jane", "honorificPrefix": "Ms.", "honorificSuffix": "III"},
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "profileUrl": "https://login.example.com/bjensen",
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                   {"value": "babs@jensen.org", "type": "home"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                       "region": "CA", "postalCode": "91608", "country": "USA",
                       "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA", "primary": true},
                      {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood",
                       "region": "CA", "postalCode": "91608", "country": "USA",
                       "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA"}],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}, {"value": "555-555-4444", "type": "mobile"}],
        "ims": [{"value": "someaimhandle", "type": "aim"}],
        "photos": [{"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"}],
        "userType": "Employee",
        "title": "Tour Guide",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        "password": "t1meMa$heen",
        "entitlements": [{"value": "building-access", "primary": true}],
        "roles": [{"value": "tour-guide", "display": "Tour Guide", "type": "staff"}],
        "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
        ENTERPRISE: {"employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
                     "division": "Theme Park", "department": "Tour Operations", "manager": {"value": manager}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attribute_of_a_user_is_stored_and_read_back() {
    let env = Env::start().await;
    let boss = env.create("/Users", user("boss")).await;
    let sent = full_user(&boss);
    let created = env.post("/Users", sent.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("etag"), Some("W/\"1\""), "Docstore's version is the ETag");

    let read = env.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    for (name, value) in sent.as_object().unwrap() {
        match name.as_str() {
            "password" => assert!(read.body.get("password").is_none(), "never returned: {}", read.text),
            "schemas" => assert_eq!(read.body["schemas"], json!([USER, ENTERPRISE])),
            ENTERPRISE => {
                let mut expected = value.clone();
                expected["manager"]["$ref"] = json!(format!("{}/Users/{boss}", env.base()));
                assert_eq!(read.body[name], expected, "{}", read.text);
            }
            _ => assert_eq!(&read.body[name], value, "{name} came back changed: {}", read.text),
        }
    }
    let document = env.docstore.document("users", &id).unwrap();
    assert!(document.get("password").is_none(), "the password is not stored: {document}");
    assert_eq!(document["name"]["honorificSuffix"], "III", "the document is the SCIM user: {document}");

    // A PUT replaces the whole document: what it leaves out is gone.
    let mut replaced = sent.clone();
    replaced.as_object_mut().unwrap().remove("addresses");
    replaced["nickName"] = json!("Barb");
    let put = env.send(Method::PUT, &format!("/Users/{id}"), Some(replaced)).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["nickName"], "Barb");
    assert!(put.body.get("addresses").is_none(), "{}", put.text);
    assert_eq!(put.header("etag"), Some("W/\"2\""));
    assert!(env.docstore.document("users", &id).unwrap().get("addresses").is_none());

    // A PATCH of a sub-attribute deep in a multi-valued one, as Entra ID sends it.
    let patched = env
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555-555-0000"}]),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        env.docstore.document("users", &id).unwrap()["phoneNumbers"],
        json!([{"value": "555-555-5555", "type": "work"}, {"value": "555-555-0000", "type": "mobile"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_go_to_docstore_and_the_proxy_checks_what_comes_back() {
    let env = Env::start().await;
    // Written straight into Docstore, as the application's own screens would: the proxy's ID
    // cache knows none of them, so each search below reaches Docstore.
    let stored = |name: &str| {
        let mut document = user(name);
        document.as_object_mut().unwrap().remove("schemas");
        env.docstore.insert("users", document).unwrap()
    };
    let (alice, bob, _carol) = (stored("alice"), stored("bob"), stored("carol"));

    let list = |filter: &str| format!("/Users?excludedAttributes=groups&filter={}", urlencode(filter));
    let found = env.get(&list("userName eq \"ALICE\"")).await;
    assert_eq!(ids(&found), vec![alice.as_str()], "{}", found.text);
    assert_eq!(env.docstore.take_calls(), vec!["GET /v1/users?limit=100&offset=0&userName=ALICE"]);

    // externalId is case-exact: Docstore's case-blind match is narrowed by the proxy.
    assert_eq!(ids(&env.get(&list("externalId eq \"ext-bob\"")).await), vec![bob.as_str()]);
    assert_eq!(env.get(&list("externalId eq \"EXT-BOB\"")).await.body["totalResults"], 0);

    // Entra ID's matching on the work e-mail address, and the plain value filter.
    env.docstore.take_calls();
    for filter in ["emails[type eq \"work\"].value eq \"bob@example.com\"", "emails[value eq \"bob@example.com\"]"] {
        let by_mail = env.get(&list(filter)).await;
        assert_eq!(ids(&by_mail), vec![bob.as_str()], "{filter}: {}", by_mail.text);
        let calls = env.docstore.take_calls();
        assert_eq!(calls, vec!["GET /v1/users?emails.value=bob%40example.com&limit=100&offset=0"], "{filter}");
    }
    let home = env.get(&list("emails[type eq \"home\"].value eq \"bob@example.com\"")).await;
    assert_eq!(home.body["totalResults"], 0, "the proxy checks the type Docstore did not: {}", home.text);

    // What Docstore cannot search, the proxy filters over every user.
    let others = env.get(&list("userName sw \"b\" or userName ew \"ol\"")).await;
    assert_eq!(others.body["totalResults"], 2, "{}", others.text);

    // An unfiltered page is one call, paged by Docstore.
    env.docstore.take_calls();
    let page = env.get("/Users?startIndex=2&count=1&excludedAttributes=groups").await;
    assert_eq!(page.body["totalResults"], 3, "{}", page.text);
    assert_eq!(ids(&page), vec![bob.as_str()]);
    assert_eq!(env.docstore.take_calls(), vec!["GET /v1/users?limit=1&offset=1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_hold_their_members_and_users_show_their_groups() {
    let env = Env::start().await;
    let alice = env.create("/Users", user("alice")).await;
    let bob = env.create("/Users", user("bob")).await;
    let guides = env.create("/Groups", group("Tour Guides", &[&alice])).await;
    let staff = env.create("/Groups", group("Staff", &[&guides, &bob])).await;

    // Display names are the app's (readOnly), shown when asked for.
    let plain = env.get(&format!("/Groups/{staff}")).await;
    assert!(plain.body["members"].as_array().unwrap().iter().all(|m| m.get("display").is_none()), "{}", plain.text);
    let read = env.get(&format!("/Groups/{staff}?attributes=displayName,members,members.display")).await;
    assert_eq!(
        read.body["members"],
        json!([{"value": guides, "type": "Group", "display": "Tour Guides", "$ref": format!("{}/Groups/{guides}", env.base())},
               {"value": bob, "type": "User", "display": "bob", "$ref": format!("{}/Users/{bob}", env.base())}]),
        "{}",
        read.text
    );
    let user = env.get(&format!("/Users/{alice}")).await;
    assert_eq!(values(&user.body["groups"]), vec![guides.as_str()], "{}", user.text);
    let members_of = env
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            urlencode(&format!("members[value eq \"{bob}\"]"))
        ))
        .await;
    assert_eq!(ids(&members_of), vec![staff.as_str()], "{}", members_of.text);

    // Member PATCHes go through the hooks: an unknown id changes nothing.
    let refused = env
        .patch(
            &format!("/Groups/{guides}"),
            json!([{"op": "add", "path": "members", "value": [{"value": bob}, {"value": "nobody"}]}]),
        )
        .await;
    refused.assert_error(400, Some("invalidValue"));
    assert_eq!(values(&env.docstore.document("groups", &guides).unwrap()["members"]), vec![alice.as_str()]);
    let added = env
        .patch(&format!("/Groups/{guides}"), json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]))
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    assert_eq!(
        values(&env.docstore.document("groups", &guides).unwrap()["members"]),
        vec![alice.as_str(), bob.as_str()]
    );

    // A rename keeps the members, though the hooks read the group without them.
    let renamed = env
        .patch(&format!("/Groups/{guides}"), json!([{"op": "replace", "path": "displayName", "value": "Guides"}]))
        .await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.text);
    let stored = env.docstore.document("groups", &guides).unwrap();
    assert_eq!(stored["displayName"], "Guides");
    assert_eq!(values(&stored["members"]), vec![alice.as_str(), bob.as_str()]);
    env.post("/Groups", group("guides", &[])).await.assert_error(409, Some("uniqueness"));

    // Deleting a user takes it out of every group.
    assert_eq!(env.send(Method::DELETE, &format!("/Users/{bob}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(values(&env.docstore.document("groups", &guides).unwrap()["members"]), vec![alice.as_str()]);
    assert_eq!(values(&env.docstore.document("groups", &staff).unwrap()["members"]), vec![guides.as_str()]);
    env.get(&format!("/Users/{bob}")).await.assert_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_lose_each_others_changes() {
    let env = Env::start().await;
    let alice = env.create("/Users", user("alice")).await;
    let bob = env.create("/Users", user("bob")).await;
    let guides = env.create("/Groups", group("Tour Guides", &[])).await;

    // Another writer adds bob between the hook's read and its write: 412, read again, both kept.
    let bob_entry = json!({"value": bob, "type": "User"});
    env.docstore.interfere("groups", &guides, move |data| data["members"] = json!([bob_entry]));
    let added = env
        .patch(&format!("/Groups/{guides}"), json!([{"op": "add", "path": "members", "value": [{"value": alice}]}]))
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    assert_eq!(
        values(&env.docstore.document("groups", &guides).unwrap()["members"]),
        vec![bob.as_str(), alice.as_str()]
    );

    // A replace over a change made since the proxy read the user is refused, not applied.
    env.docstore.interfere("users", &alice, |data| data["title"] = json!("set elsewhere"));
    let mut replaced = user("alice");
    replaced["nickName"] = json!("Al");
    let put = env.send(Method::PUT, &format!("/Users/{alice}"), Some(replaced)).await;
    put.assert_error(412, None);
    let stored = env.docstore.document("users", &alice).unwrap();
    assert_eq!(stored["title"], "set elsewhere");
    assert!(stored.get("nickName").is_none(), "{stored}");
}

/// `scripts/examples/documents.test.yaml`, run as an integrator would.
#[test]
fn the_offline_test_file_passes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["test", "--config"])
        .arg(repo_file("scripts/examples/documents.yaml"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{text}");
    let summary = text.lines().find(|l| l.ends_with(" passed, 0 failed")).unwrap_or_default();
    assert!(!summary.is_empty() && !summary.starts_with("0 "), "{text}");
}

/// `cargo run --example docstore`, as a person or a CI job starts it: it prints its address,
/// requires its key, and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docstore_example_runs_on_its_own() {
    use std::io::BufRead;
    // Built by `cargo test`; a run limited to this test binary builds it here, in the same
    // profile (target/<profile>/deps/integration-… → target/<profile>/examples/docstore).
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let binary = profile_dir.join("examples").join(format!("docstore{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", "docstore", "--profile", &profile, "--manifest-path"])
            .arg(repo_file("Cargo.toml"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut child = std::process::Command::new(&binary)
        .args(["--listen", "127.0.0.1:0", "--api-key", "k-0123"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("Docstore API: ").unwrap_or_else(|| panic!("printed {line:?}")).to_owned();
    let client = reqwest::Client::new();
    let refused = client.get(format!("{base}/users")).send().await.unwrap();
    let created = client.post(format!("{base}/users")).bearer_auth("k-0123").body(r#"{"userName":"ada"}"#).send().await;
    let listed = client.get(format!("{base}/users?userName=ADA")).bearer_auth("k-0123").send().await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(created.unwrap().status(), StatusCode::CREATED);
    let listed: Value = listed.unwrap().json().await.unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["data"], json!({"userName": "ada"}));
}
