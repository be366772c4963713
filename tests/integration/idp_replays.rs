//! What Microsoft Entra ID and Okta send during a provisioning cycle, request by request, replayed
//! against the demo configuration and against the full-fidelity `documents` example.
//!
//! The bodies, headers and PATCH shapes follow the IdPs' public documentation: Microsoft's
//! "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID" (its
//! request/response examples), and Okta's "SCIM 2.0 protocol reference" ("Okta and SCIM
//! Version 2.0"). Where the documentation and the wire differ, the wire wins and the comment
//! says so. Each step asserts what the IdP relies on: the status, the `id`, a match that finds
//! exactly the user, a deactivation visible on the next read, a 404 after a delete, group
//! membership visible from both sides.
//!
//! The demo application does not hold every attribute these IdPs send by default (Okta's
//! `locale`, Entra ID's `name.formatted`): under the default `unsupported_attributes: ignore`
//! the create succeeds and those attributes are simply not stored. The documents example
//! stores everything, so they come back.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Reply, TestEnv};
use crate::users::urlencode;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The identity provider being replayed: how it sends its requests.
#[derive(Clone, Copy)]
enum Idp {
    Entra,
    Okta,
}

impl Idp {
    /// Entra ID's documentation shows `application/json`; what it sends is
    /// `application/scim+json; charset=utf-8` (MicrosoftDocs/azure-docs#12728). Okta's reference
    /// says it sends `application/scim+json`.
    fn content_type(self) -> &'static str {
        match self {
            Idp::Entra => "application/scim+json; charset=utf-8",
            Idp::Okta => "application/scim+json",
        }
    }

    fn user_agent(self) -> &'static str {
        match self {
            Idp::Entra => "Microsoft.AAD.Provisioning",
            Idp::Okta => "Okta SCIM Client 1.0.0",
        }
    }
}

/// A SCIM endpoint to replay against, and what its application keeps.
struct Target {
    base: String,
    token: &'static str,
    client: reqwest::Client,
    /// True when the application stores every attribute (the documents example); false when
    /// it holds only what it publishes and the rest is ignored (the demo).
    stores_everything: bool,
}

impl Target {
    /// The demo as `scim-proxy demo` runs it: the shipped `proxy.yaml` and `scripts/demo.rhai`.
    fn demo(env: &TestEnv) -> Self {
        Self { base: env.base(), token: crate::support::TOKEN, client: env.client.clone(), stores_everything: false }
    }

    /// The documents example in front of Docstore.
    fn documents(env: &crate::example_documents::Env) -> Self {
        Self {
            base: env.base(),
            token: crate::example_documents::TOKEN,
            client: env.client.clone(),
            stores_everything: true,
        }
    }

    /// One request as `idp` sends it.
    async fn send(&self, idp: Idp, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .header("user-agent", idp.user_agent());
        if let Some(body) = body {
            request = request.header("content-type", idp.content_type()).body(body.to_string());
        }
        Reply::read(request.send().await.unwrap()).await
    }

    async fn get(&self, idp: Idp, path: &str) -> Reply {
        self.send(idp, Method::GET, path, None).await
    }

    async fn patch(&self, idp: Idp, path: &str, operations: Value) -> Reply {
        self.send(idp, Method::PATCH, path, Some(json!({"schemas": [PATCH_OP], "Operations": operations}))).await
    }
}

/// Asserts a successful PATCH: Entra ID and Okta accept `200` with the resource or `204`.
fn assert_patched(reply: &Reply, what: &str) {
    assert!(
        reply.status == StatusCode::OK || reply.status == StatusCode::NO_CONTENT,
        "{what}: {} {}",
        reply.status,
        reply.text
    );
}

/// The ids of a list response's resources, after checking `totalResults` agrees.
fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let resources = reply.body["Resources"].as_array().cloned().unwrap_or_default();
    assert_eq!(reply.body["totalResults"], resources.len(), "{}", reply.text);
    resources.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn values(list: &Value) -> Vec<String> {
    list.as_array()
        .map_or_else(Vec::new, |items| items.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
}

fn filter(path: &str, filter: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}filter={}", urlencode(filter))
}

// ---------------------------------------------------------------- Entra ID

/// Entra ID's create (the tutorial's "Create User" request): `name.formatted`, an empty
/// `roles`, and a `meta` the client should not send.
fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": format!("{user_name}@testuser.com")}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []
    })
}

/// Entra ID provisions a user: match, create, read, update, deactivate, delete.
async fn entra_user_cycle(target: &Target) {
    let idp = Idp::Entra;
    let user_name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1";
    let external_id = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef";

    // Before creating, Entra ID looks the user up by its matching attribute: nobody yet.
    let none = target.get(idp, &filter("/Users", &format!("userName eq \"{user_name}\""))).await;
    assert!(ids(&none).is_empty(), "{}", none.text);

    let created = target.send(idp, Method::POST, "/Users", Some(entra_user(user_name, external_id))).await;
    assert_eq!(created.status, StatusCode::CREATED, "Entra ID's verbatim create: {}", created.text);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    assert_eq!(created.body["userName"], user_name);
    assert_eq!(created.body["externalId"], external_id);
    assert_eq!(created.body["meta"]["resourceType"], "User");

    let read = target.get(idp, &format!("/Users/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["name"]["givenName"], "givenName");
    if target.stores_everything {
        assert_eq!(read.body["name"]["formatted"], "givenName familyName", "{}", read.text);
    } else {
        assert!(read.body["name"].get("formatted").is_none(), "ignored, not stored: {}", read.text);
    }
    assert!(read.body.get("roles").is_none(), "an empty roles is no value: {}", read.text);

    // The match by userName and by externalId finds exactly this user.
    let by_name = target.get(idp, &filter("/Users", &format!("userName eq \"{user_name}\""))).await;
    assert_eq!(ids(&by_name), vec![id.clone()]);
    let by_external = target.get(idp, &filter("/Users", &format!("externalId eq \"{external_id}\""))).await;
    assert_eq!(ids(&by_external), vec![id.clone()]);

    // "Update User [Multi-valued properties]" and "[Single-valued properties]", then an
    // attribute newly mapped (Entra ID sends Add for a value the user did not have).
    let multi = target
        .patch(
            idp,
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]),
        )
        .await;
    assert_patched(&multi, "multi-valued update");
    let renamed_user = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com";
    let single = target
        .patch(idp, &format!("/Users/{id}"), json!([{"op": "Replace", "path": "userName", "value": renamed_user}]))
        .await;
    assert_patched(&single, "single-valued update");
    let added = target
        .patch(
            idp,
            &format!("/Users/{id}"),
            json!([
                {"op": "Add", "path": "title", "value": "Tour Guide"},
                {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": "Tour Operations"}
            ]),
        )
        .await;
    assert_patched(&added, "add of new attributes");
    let read = target.get(idp, &format!("/Users/{id}")).await;
    assert_eq!(read.body["userName"], renamed_user, "{}", read.text);
    assert_eq!(read.body["emails"][0]["value"], "updatedEmail@microsoft.com", "{}", read.text);
    assert_eq!(read.body["name"]["familyName"], "updatedFamilyName");
    assert_eq!(read.body["title"], "Tour Guide");
    assert_eq!(read.body[ENTERPRISE]["department"], "Tour Operations", "{}", read.text);
    let by_new_name = target.get(idp, &filter("/Users", &format!("userName eq \"{renamed_user}\""))).await;
    assert_eq!(ids(&by_new_name), vec![id.clone()]);
    let by_old_name = target.get(idp, &filter("/Users", &format!("userName eq \"{user_name}\""))).await;
    assert!(ids(&by_old_name).is_empty(), "{}", by_old_name.text);

    // "Disable User": Entra ID sends the boolean as the string "False".
    let disabled = target
        .patch(idp, &format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "False"}]))
        .await;
    assert_patched(&disabled, "disable");
    let read = target.get(idp, &format!("/Users/{id}")).await;
    assert_eq!(read.body["active"], false, "{}", read.text);

    // "Delete User", after the soft-delete period.
    let deleted = target.send(idp, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    target.get(idp, &format!("/Users/{id}")).await.assert_error(404, None);
    let gone = target.get(idp, &filter("/Users", &format!("externalId eq \"{external_id}\""))).await;
    assert!(ids(&gone).is_empty(), "{}", gone.text);
}

/// Entra ID provisions a group: match, create (with its own schema URN), read without members,
/// add members, check membership, remove members both ways, rename, delete.
async fn entra_group_cycle(target: &Target) {
    let idp = Idp::Entra;
    let mut members = Vec::new();
    for (name, external) in [("Test_User_grp_1", "8d4a9b8e-0001"), ("Test_User_grp_2", "8d4a9b8e-0002")] {
        let created = target.send(idp, Method::POST, "/Users", Some(entra_user(name, external))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        members.push(created.body["id"].as_str().unwrap().to_owned());
    }
    let display_name = "7a9e2ad0-5a31-4b4b-8a73-3c3e0f4b3d50";

    let none = target
        .get(idp, &filter("/Groups?excludedAttributes=members", &format!("displayName eq \"{display_name}\"")))
        .await;
    assert!(ids(&none).is_empty(), "{}", none.text);

    let body = json!({
        "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": display_name,
        "meta": {"resourceType": "Group"}
    });
    let created = target.send(idp, Method::POST, "/Groups", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "Entra ID's verbatim group create: {}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["displayName"], display_name);

    let read = target.get(idp, &format!("/Groups/{id}?excludedAttributes=members")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert!(read.body.get("members").is_none(), "{}", read.text);
    let found = target
        .get(idp, &filter("/Groups?excludedAttributes=members", &format!("displayName eq \"{display_name}\"")))
        .await;
    assert_eq!(ids(&found), vec![id.clone()]);

    // "Update Group [Add Members]": a value array, with Entra ID's `$ref: null`.
    let added = target
        .patch(
            idp,
            &format!("/Groups/{id}"),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": members[0]}, {"$ref": null, "value": members[1]}]}]),
        )
        .await;
    assert_patched(&added, "add members");
    let check = |member: &str| {
        filter("/Groups?excludedAttributes=members", &format!("id eq \"{id}\" and members[value eq \"{member}\"]"))
    };
    assert_eq!(ids(&target.get(idp, &check(&members[0])).await), vec![id.clone()]);
    let group = target.get(idp, &format!("/Groups/{id}")).await;
    assert_eq!(values(&group.body["members"]), members, "{}", group.text);
    let user = target.get(idp, &format!("/Users/{}", members[1])).await;
    assert_eq!(values(&user.body["groups"]), vec![id.clone()], "{}", user.text);

    // "Update Group [Remove Members]" as a value array, then as a filter on the member.
    let removed = target
        .patch(
            idp,
            &format!("/Groups/{id}"),
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": members[0]}]}]),
        )
        .await;
    assert_patched(&removed, "remove a member by value");
    let removed = target
        .patch(
            idp,
            &format!("/Groups/{id}"),
            json!([{"op": "Remove", "path": format!("members[value eq \"{}\"]", members[1])}]),
        )
        .await;
    assert_patched(&removed, "remove a member by filter");
    assert!(ids(&target.get(idp, &check(&members[0])).await).is_empty());
    let group = target.get(idp, &format!("/Groups/{id}")).await;
    assert!(values(&group.body["members"]).is_empty(), "{}", group.text);

    // "Update Group [Non-member attributes]".
    let new_name = format!("{display_name}updatedDisplayName");
    let renamed = target
        .patch(idp, &format!("/Groups/{id}"), json!([{"op": "Replace", "path": "displayName", "value": new_name}]))
        .await;
    assert_patched(&renamed, "rename");
    let found =
        target.get(idp, &filter("/Groups?excludedAttributes=members", &format!("displayName eq \"{new_name}\""))).await;
    assert_eq!(ids(&found), vec![id.clone()]);

    let deleted = target.send(idp, Method::DELETE, &format!("/Groups/{id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    target.get(idp, &format!("/Groups/{id}?excludedAttributes=members")).await.assert_error(404, None);
}

// ---------------------------------------------------------------- Okta

/// Okta's create (the reference's "Create the User" request): `locale`, a `password`, an empty
/// `groups`.
fn okta_user(user_name: &str, given: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given, "familyName": "User"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{given} User"),
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// Okta provisions a user: match (with Okta's paging parameters), create, read, replace with
/// PUT, deactivate and reactivate by PATCH. Okta never deletes a user; it deactivates it.
async fn okta_user_cycle(target: &Target) {
    let idp = Idp::Okta;
    let user_name = "test.user@okta.local";
    let lookup = format!("{}&startIndex=1&count=100", filter("/Users", &format!("userName eq \"{user_name}\"")));

    let none = target.get(idp, &lookup).await;
    assert!(ids(&none).is_empty(), "{}", none.text);

    let created =
        target.send(idp, Method::POST, "/Users", Some(okta_user(user_name, "Test", "00ujl29u0le5T6Aj10h7"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "Okta's verbatim create: {}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(created.body.get("password").is_none(), "{}", created.text);

    let read = target.get(idp, &format!("/Users/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["userName"], user_name);
    assert_eq!(read.body["active"], true);
    if target.stores_everything {
        assert_eq!(read.body["locale"], "en-US", "{}", read.text);
    } else {
        assert!(read.body.get("locale").is_none(), "ignored, not stored: {}", read.text);
    }
    assert_eq!(ids(&target.get(idp, &lookup).await), vec![id.clone()]);
    let by_external = target.get(idp, &filter("/Users", "externalId eq \"00ujl29u0le5T6Aj10h7\"")).await;
    assert_eq!(ids(&by_external), vec![id.clone()]);

    // "Update a specific User (PUT)": the whole user again, with its id, groups and password.
    let mut replacement = okta_user(user_name, "Another", "00ujl29u0le5T6Aj10h7");
    replacement["id"] = json!(id);
    replacement["meta"] = json!({"resourceType": "User"});
    let put = target.send(idp, Method::PUT, &format!("/Users/{id}"), Some(replacement)).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["id"], id);
    let read = target.get(idp, &format!("/Users/{id}")).await;
    assert_eq!(read.body["name"]["givenName"], "Another", "{}", read.text);
    assert_eq!(read.body["displayName"], "Another User");

    // "Deactivate a specific User": a replace without a path.
    let deactivated =
        target.patch(idp, &format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}])).await;
    assert_patched(&deactivated, "deactivate");
    let read = target.get(idp, &format!("/Users/{id}")).await;
    assert_eq!(read.body["active"], false, "{}", read.text);
    // A deactivated user is still found by the match, so reassigning reactivates it.
    assert_eq!(ids(&target.get(idp, &lookup).await), vec![id.clone()]);
    let reactivated =
        target.patch(idp, &format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": true}}])).await;
    assert_patched(&reactivated, "reactivate");
    assert_eq!(target.get(idp, &format!("/Users/{id}")).await.body["active"], true);
}

/// Okta pushes a group: match, create, read, rename (a replace whose value repeats the id),
/// add a member (sent with the unchanged name), remove it by filter, delete.
async fn okta_group_cycle(target: &Target) {
    let idp = Idp::Okta;
    let user =
        target.send(idp, Method::POST, "/Users", Some(okta_user("push.user@okta.local", "Push", "00upush0000"))).await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.text);
    let member = user.body["id"].as_str().unwrap().to_owned();
    let name = "Test SCIMv2";
    let lookup = format!("{}&startIndex=1&count=100", filter("/Groups", &format!("displayName eq \"{name}\"")));

    assert!(ids(&target.get(idp, &lookup).await).is_empty());
    let created = target
        .send(idp, Method::POST, "/Groups", Some(json!({"schemas": [GROUP], "displayName": name, "members": []})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&target.get(idp, &lookup).await), vec![id.clone()]);
    let read = target.get(idp, &format!("/Groups/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["displayName"], name);

    // "Update a specific Group name".
    let new_name = "Test SCIMv2 renamed";
    let renamed = target
        .patch(idp, &format!("/Groups/{id}"), json!([{"op": "replace", "value": {"id": id, "displayName": new_name}}]))
        .await;
    assert_patched(&renamed, "rename");
    assert_eq!(target.get(idp, &format!("/Groups/{id}")).await.body["displayName"], new_name);

    // "Update specific Group membership": the name again, and the member to add.
    let added = target
        .patch(
            idp,
            &format!("/Groups/{id}"),
            json!([
                {"op": "replace", "value": {"id": id, "displayName": new_name}},
                {"op": "add", "path": "members", "value": [{"value": member, "display": "push.user@okta.local"}]}
            ]),
        )
        .await;
    assert_patched(&added, "add a member");
    let group = target.get(idp, &format!("/Groups/{id}")).await;
    assert_eq!(values(&group.body["members"]), vec![member.clone()], "{}", group.text);
    assert_eq!(group.body["displayName"], new_name);
    let user = target.get(idp, &format!("/Users/{member}")).await;
    assert_eq!(values(&user.body["groups"]), vec![id.clone()], "{}", user.text);

    let removed = target
        .patch(
            idp,
            &format!("/Groups/{id}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]),
        )
        .await;
    assert_patched(&removed, "remove a member");
    let group = target.get(idp, &format!("/Groups/{id}")).await;
    assert!(values(&group.body["members"]).is_empty(), "{}", group.text);

    // "Delete a specific Group".
    let deleted = target.send(idp, Method::DELETE, &format!("/Groups/{id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    target.get(idp, &format!("/Groups/{id}")).await.assert_error(404, None);
    assert!(ids(&target.get(idp, &lookup).await).is_empty());
}

// ---------------------------------------------------------------- the replays

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_user_cycle_against_the_demo() {
    let env = TestEnv::start_shipped_config().await;
    entra_user_cycle(&Target::demo(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_group_cycle_against_the_demo() {
    let env = TestEnv::start_shipped_config().await;
    entra_group_cycle(&Target::demo(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_user_cycle_against_the_demo() {
    let env = TestEnv::start_shipped_config().await;
    okta_user_cycle(&Target::demo(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_group_cycle_against_the_demo() {
    let env = TestEnv::start_shipped_config().await;
    okta_group_cycle(&Target::demo(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_user_cycle_against_the_documents_example() {
    let env = crate::example_documents::Env::start().await;
    entra_user_cycle(&Target::documents(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_group_cycle_against_the_documents_example() {
    let env = crate::example_documents::Env::start().await;
    entra_group_cycle(&Target::documents(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_user_cycle_against_the_documents_example() {
    let env = crate::example_documents::Env::start().await;
    okta_user_cycle(&Target::documents(&env)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_group_cycle_against_the_documents_example() {
    let env = crate::example_documents::Env::start().await;
    okta_group_cycle(&Target::documents(&env)).await;
}

// On a runtime with one worker (a proxy on one core) the script calls run in fibers on the
// worker, suspended at each legacy call: the same cycles, the same answers.

#[tokio::test]
async fn entra_id_user_cycle_against_the_demo_on_one_worker() {
    let env = TestEnv::start_shipped_config().await;
    entra_user_cycle(&Target::demo(&env)).await;
}

#[tokio::test]
async fn entra_id_group_cycle_against_the_demo_on_one_worker() {
    let env = TestEnv::start_shipped_config().await;
    entra_group_cycle(&Target::demo(&env)).await;
}

#[tokio::test]
async fn okta_user_cycle_against_the_demo_on_one_worker() {
    let env = TestEnv::start_shipped_config().await;
    okta_user_cycle(&Target::demo(&env)).await;
}

#[tokio::test]
async fn okta_group_cycle_against_the_demo_on_one_worker() {
    let env = TestEnv::start_shipped_config().await;
    okta_group_cycle(&Target::demo(&env)).await;
}
