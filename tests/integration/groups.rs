//! Groups through the demo mapping: lifecycle, membership at scale through the hooks, reads without members.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestEnv, user};
use crate::users::urlencode;

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn group(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP], "displayName": name, "members": members})
}

fn patch_body(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

async fn patch(env: &TestEnv, id: &str, operations: Value) -> crate::support::Reply {
    env.send(Method::PATCH, &format!("/Groups/{id}"), Some(patch_body(operations))).await
}

/// The Acme team number behind a demo group id: `team-7` is team 7.
fn team_number(group_id: &str) -> u64 {
    group_id
        .strip_prefix("team-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a demo group id: {group_id}"))
}

fn members_of(env: &TestEnv, group_id: &str) -> Vec<u64> {
    let page = acme::store::PageRequest { page: 1, per_page: 100_000 };
    let members = env.legacy.store().list_members(team_number(group_id), page).unwrap().data;
    members.into_iter().map(|m| m.user_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_read_rename_and_delete_a_group() {
    let env = TestEnv::start().await;
    let alice = env.create_user("alice").await;
    let bob = env.create_user("bob").await;
    let mut body = group("Engineering", &[&alice, &bob]);
    body["externalId"] = json!("grp-1");
    let created = env.post("/Groups", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["meta"]["resourceType"], "Group");
    assert_eq!(created.header("location").unwrap(), format!("{}/Groups/{id}", env.base()));
    let members = created.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["$ref"], format!("{}/Users/{alice}", env.base()));
    assert_eq!(members[0]["display"], "alice display");
    assert_eq!(members_of(&env, &id), vec![alice.parse::<u64>().unwrap(), bob.parse().unwrap()]);

    // The user's groups, when the app publishes them, come back on the user.
    let read = env.get(&format!("/Users/{alice}")).await;
    assert_eq!(read.body["groups"][0]["value"], id.as_str(), "{}", read.text);
    assert_eq!(read.body["groups"][0]["$ref"], format!("{}/Groups/{id}", env.base()));

    env.post("/Groups", group("engineering", &[])).await.assert_error(409, Some("uniqueness"));

    let mut renamed = group("Platform", &[&alice]);
    renamed["externalId"] = json!("grp-1");
    let replaced = env.put(&format!("/Groups/{id}"), renamed).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.body["displayName"], "Platform");
    assert_eq!(members_of(&env, &id), vec![alice.parse::<u64>().unwrap()]);

    for filter in ["displayName eq \"platform\"", "externalId eq \"grp-1\"", &format!("members.value eq \"{alice}\"")] {
        let found = env.get(&format!("/Groups?filter={}&excludedAttributes=members", urlencode(filter))).await;
        assert_eq!(found.body["totalResults"], 1, "{filter}: {}", found.text);
        assert!(found.body["Resources"][0].get("members").is_none(), "{filter}: {}", found.text);
    }
    let none = env.get(&format!("/Groups?filter={}", urlencode(&format!("members.value eq \"{bob}\"")))).await;
    assert_eq!(none.body["totalResults"], 0);

    assert_eq!(env.delete(&format!("/Groups/{id}")).await.status, StatusCode::NO_CONTENT);
    env.get(&format!("/Groups/{id}")).await.assert_error(404, None);
    assert_eq!(env.legacy.store().team_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_change_in_every_patch_shape_without_reading_the_members() {
    let env = TestEnv::start().await;
    let users: Vec<String> = {
        let mut ids = Vec::new();
        for name in ["u1", "u2", "u3", "u4"] {
            ids.push(env.create_user(name).await);
        }
        ids
    };
    let id = env.post("/Groups", group("Crew", &[&users[0]])).await.body["id"].as_str().unwrap().to_owned();
    let shapes = [
        // add to members: a value array
        (json!([{"op": "add", "path": "members", "value": [{"value": users[1]}, {"value": users[2]}]}]), vec![0, 1, 2]),
        // remove with a filter
        (json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", users[1])}]), vec![0, 2]),
        // remove with a value array (what Entra ID sends)
        (json!([{"op": "Remove", "path": "members", "value": [{"value": users[0]}]}]), vec![2]),
        // replace of members
        (
            json!([{"op": "replace", "path": "members", "value": [{"value": users[3]}, {"value": users[1]}]}]),
            vec![1, 3],
        ),
    ];
    for (operations, expected) in shapes {
        let before = env.legacy.requests_served();
        let reply = patch(&env, &id, operations.clone()).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{operations}: {}", reply.text);
        let mut want: Vec<u64> = expected.iter().map(|i: &usize| users[*i].parse().unwrap()).collect();
        want.sort_unstable();
        assert_eq!(members_of(&env, &id), want, "{operations}");
        // One read of the group without members, then one call per member changed (an add of
        // several also reads each user first): never a listing of members.
        assert!(
            env.legacy.requests_served() - before <= 5,
            "{operations}: {} legacy calls",
            env.legacy.requests_served() - before
        );
    }

    // A rename together with member changes, and a read-only id echoed in the value.
    let reply = patch(
        &env,
        &id,
        json!([
            {"op": "replace", "value": {"id": id, "displayName": "Renamed Crew"}},
            {"op": "add", "path": "members", "value": [{"value": users[0]}]},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", users[3])},
        ]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(env.legacy.store().get_team(team_number(&id)).unwrap().name, "Renamed Crew");
    let mut want: Vec<u64> = vec![users[0].parse().unwrap(), users[1].parse().unwrap()];
    want.sort_unstable();
    assert_eq!(members_of(&env, &id), want);

    // Asking for attributes gets the group back.
    let reply = env
        .send(
            Method::PATCH,
            &format!("/Groups/{id}?attributes=displayName"),
            Some(patch_body(json!([{"op": "add", "path": "members", "value": [{"value": users[2]}]}]))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["displayName"], "Renamed Crew");
    assert!(reply.body.get("members").is_none());

    // Replace with an empty list empties the group.
    let reply = patch(&env, &id, json!([{"op": "replace", "path": "members", "value": []}])).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    assert!(members_of(&env, &id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_for_unknown_users_or_groups_change_nothing() {
    let env = TestEnv::start().await;
    let alice = env.create_user("alice").await;
    let id = env.post("/Groups", group("Solo", &[&alice])).await.body["id"].as_str().unwrap().to_owned();
    let bob = env.create_user("bob").await;
    let reply =
        patch(&env, &id, json!([{"op": "add", "path": "members", "value": [{"value": bob}, {"value": "424242"}]}]))
            .await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("424242"), "{}", reply.text);
    assert_eq!(members_of(&env, &id), vec![alice.parse::<u64>().unwrap()], "bob was not added either");
    // One member alone, as Entra ID and Okta add them: the legacy app's own refusal of an
    // unknown user is the same 400, and nothing is added; a known one takes two calls, the
    // group's read and the add.
    let before = env.legacy.requests_served();
    let reply = patch(&env, &id, json!([{"op": "add", "path": "members", "value": [{"value": "424242"}]}])).await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("424242"), "{}", reply.text);
    assert_eq!(members_of(&env, &id), vec![alice.parse::<u64>().unwrap()]);
    assert_eq!(env.legacy.requests_served() - before, 2, "the group's read and the refused add");
    let before = env.legacy.requests_served();
    let reply = patch(&env, &id, json!([{"op": "add", "path": "members", "value": [{"value": bob}]}])).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(env.legacy.requests_served() - before, 2, "the group's read and the add");
    let mut both = vec![alice.parse::<u64>().unwrap(), bob.parse::<u64>().unwrap()];
    both.sort_unstable();
    assert_eq!(members_of(&env, &id), both);
    env.legacy.store().remove_member(team_number(&id), bob.parse().unwrap()).unwrap();
    // An unknown team, and the team's own number without the prefix of group ids.
    for unknown in ["team-9999", &team_number(&id).to_string()] {
        patch(&env, unknown, json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]))
            .await
            .assert_error(404, None);
    }
    assert_eq!(members_of(&env, &id), vec![alice.parse::<u64>().unwrap()]);
    env.post("/Groups", group("Ghosts", &["31337"])).await.assert_error(400, Some("invalidValue"));
    assert_eq!(env.legacy.store().team_count(), 1, "a group whose members are refused is not created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_all_groups_reads_the_members_of_its_own_groups_only() {
    // Okta imports groups page after page, unfiltered: each page must cost the legacy calls of
    // its own groups, not of every group before and after it.
    let env = TestEnv::start().await;
    let ids = env.legacy.store().seed_users(30);
    for n in 0..12 {
        let team = env
            .legacy
            .store()
            .create_team(acme::store::NewTeam { name: format!("Team {n:02}"), ..Default::default() })
            .unwrap();
        env.legacy.store().seed_team_members(team.id, &ids[n..n + 3]).unwrap();
    }
    let before = env.legacy.requests_served();
    let page = env.get("/Groups?startIndex=4&count=3").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.body["totalResults"], 12);
    assert_eq!(page.body["startIndex"], 4);
    let groups = page.body["Resources"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["displayName"].as_str().unwrap()).collect();
    assert_eq!(names, ["Team 03", "Team 04", "Team 05"]);
    for (n, group) in (3..6).zip(groups) {
        let mut members: Vec<u64> = group["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().parse().unwrap())
            .collect();
        members.sort_unstable();
        assert_eq!(members, ids[n..n + 3], "{}", group["displayName"]);
    }
    assert_eq!(env.legacy.requests_served() - before, 4, "one page of teams, then the members of three teams");
    // Past the end: the total, nothing else.
    let past = env.get("/Groups?startIndex=13&count=5").await;
    assert_eq!(
        (past.body["totalResults"].as_u64(), past.body["Resources"].as_array().map(Vec::len)),
        (Some(12), Some(0))
    );
    let counted = env.get("/Groups?count=0").await;
    assert_eq!(counted.body["totalResults"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_without_members_does_not_fetch_them() {
    let env = TestEnv::start().await;
    let ids = env.legacy.store().seed_users(250);
    let team =
        env.legacy.store().create_team(acme::store::NewTeam { name: "Big".into(), ..Default::default() }).unwrap();
    env.legacy.store().seed_team_members(team.id, &ids).unwrap();
    let before = env.legacy.requests_served();
    let reply = env.get(&format!("/Groups/team-{}?excludedAttributes=members", team.id)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.body.get("members").is_none());
    assert_eq!(env.legacy.requests_served() - before, 1, "the team only, no member pages");
    let before = env.legacy.requests_served();
    let reply = env.get(&format!("/Groups/team-{}?attributes=displayName", team.id)).await;
    assert_eq!(reply.body["displayName"], "Big");
    assert_eq!(env.legacy.requests_served() - before, 1);
    let full = env.get(&format!("/Groups/team-{}", team.id)).await;
    assert_eq!(full.body["members"].as_array().unwrap().len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_removes_its_memberships_and_deactivation_keeps_it_readable() {
    let env = TestEnv::start().await;
    let alice = env.create_user("alice").await;
    let bob = env.create_user("bob").await;
    let id = env.post("/Groups", group("Pair", &[&alice, &bob])).await.body["id"].as_str().unwrap().to_owned();
    assert_eq!(env.delete(&format!("/Users/{alice}")).await.status, StatusCode::NO_CONTENT);
    let read = env.get(&format!("/Groups/{id}")).await;
    let members: Vec<&str> =
        read.body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, vec![bob.as_str()]);

    let soft = TestEnv::start_with(|t| {
        t.replacen("    request_timeout: 10s", "    request_timeout: 10s\n    user_delete: deactivate", 1)
    })
    .await;
    let carol = soft.create_user("carol").await;
    assert_eq!(soft.delete(&format!("/Users/{carol}")).await.status, StatusCode::NO_CONTENT);
    let read = soft.get(&format!("/Users/{carol}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["active"], false);
    assert!(!soft.legacy.store().get_user(carol.parse().unwrap()).unwrap().enabled);
    let _ = user("unused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups_of_the_demo_have_ids_of_their_own() {
    let env = TestEnv::start_with(|text| text.replacen("name: acme", "name: own-ids", 1)).await;
    // Acme numbers teams apart from users: user 1 and team 1 are both the first.
    let user = env.create_user("own-ada").await;
    let created = env.post("/Groups", group("own-team", &[&user])).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let group = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!((user.as_str(), group.as_str()), ("1", "team-1"));
    assert_eq!(created.body["members"][0]["value"], user.as_str());
    let read = env.get(&format!("/Users/{user}")).await;
    assert_eq!(read.body["groups"][0]["value"], group.as_str(), "{}", read.text);
    // Each id names one resource: the other type has nothing under it.
    env.get(&format!("/Groups/{user}")).await.assert_error(404, None);
    env.get(&format!("/Users/{group}")).await.assert_error(404, None);
    let found = env.get(&format!("/Groups?filter={}", urlencode(&format!("id eq \"{group}\"")))).await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.text);
    assert_eq!(found.body["Resources"][0]["id"], group.as_str());
    let shared = crate::support::log_lines_with(&["a user and a group share an id", "app=\"own-ids\""]);
    assert!(shared.is_empty(), "{shared:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_id_is_a_user_s_is_reported_once_per_id() {
    let script = crate::support::demo_script_sharing_ids();
    let env = TestEnv::start_script(Some(&script), |text| text.replacen("name: acme", "name: shared-ids", 1)).await;
    let shared = |id: &str| {
        crate::support::log_lines_with(&["a user and a group share an id", "app=\"shared-ids\""])
            .into_iter()
            .filter(|line| line.contains(&format!(" id={id} ")))
            .count()
    };
    let first_user = env.create_user("shared-ada").await;
    // Acme numbers teams apart from users, so without the prefix the first team gets the first user's id.
    let created = env.post("/Groups", group("shared-team", &[])).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let team = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(team, first_user);
    assert_eq!(shared(&team), 1, "{}", crate::support::logs());
    // Read again from either side: reported already.
    assert_eq!(env.get(&format!("/Groups/{team}")).await.status, StatusCode::OK);
    assert_eq!(env.get(&format!("/Users/{first_user}")).await.status, StatusCode::OK);
    assert_eq!(shared(&team), 1);
    // A team whose id no user has is nothing to report; the user who then takes it is.
    let second = env.post("/Groups", group("shared-team-2", &[])).await.body["id"].as_str().unwrap().to_owned();
    assert_eq!(shared(&second), 0);
    assert_eq!(env.create_user("shared-bob").await, second);
    assert_eq!(shared(&second), 1);
}
