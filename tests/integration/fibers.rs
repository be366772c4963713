//! Script calls in fibers on the runtime's workers: at each legacy call a script asks for, its
//! fiber is suspended, the call is made without holding the thread, and the script is resumed
//! where it stopped with the answer. Nothing of a script runs twice: each legacy call, log line,
//! ID cache write and clock reading happens once, and a script may decide its calls from
//! anything, Rhai's own clock included. A long script goes on on a script thread from where it
//! was; one making many calls or mapping a body before its call stays on the worker. What the
//! proxy does with a long listing once its script has ended is done in turns, between which the
//! worker serves other requests.
//!
//! Each test's runtime has one worker (a proxy on one core), but the last one's, which has two.

use std::sync::Arc;

use crate::support::{Reply, TestEnv, log_lines_with};

/// `get_user` takes its steps from the id: `taped-<tag>` makes three calls with a log line,
/// an ID cache write and clock readings between them; `drift-<tag>` asks for a call whose
/// query is read from Rhai's own clock; `long-<tag>` computes between two calls for longer
/// than a call on a worker may; `many-<tag>` makes twelve calls; `body-<tag>` maps a body (a
/// few hundred operations) before each of its two calls.
const SCRIPT: &str = r#"
fn get_user(id) {
    let kind = id.split("-")[0];
    if kind == "drift" {
        // Rhai's own clock is not the proxy's: it reads differently in every run.
        let moment = timestamp().elapsed;
        legacy.get("/users", #{ page: 1, per_page: 1, at: moment.to_string() });
        return #{ id: id, userName: id, active: true };
    }
    if kind == "long" {
        legacy.get("/users", #{ page: 1, per_page: 1 });
        let sum = 0;
        for i in 0..30000 { sum += i; }
        legacy.get("/users", #{ page: 2, per_page: 1 });
        return #{ id: id, userName: `${id}-${sum}`, active: true };
    }
    if kind == "many" {
        for page in 1..=12 { legacy.get("/users", #{ page: page, per_page: 1 }); }
        return #{ id: id, userName: id, active: true };
    }
    if kind == "body" {
        let pages = [];
        for round in 1..=2 {
            let mapped = #{};
            for i in 0..60 { mapped[`k${i}`] = `${id}-${i}`; }
            let answer = legacy.get("/users", #{ page: round, per_page: mapped.len() - 59 });
            pages.push(answer.status);
        }
        return #{ id: id, userName: `${id}-${pages[0]}-${pages[1]}`, active: true };
    }
    log_info(`before the first call of ${id}`);
    let first_stamp = now();
    let seconds = unix_time();
    let first = legacy.get("/users", #{ page: 1, per_page: 1 });
    id_cache.set("replay", id, `${first.status}`);
    log_info(`between the calls of ${id}`);
    // Both readings go into the calls: a run that read them afresh would ask for other calls.
    legacy.get("/users", #{ page: 2, per_page: 1, at: first_stamp });
    legacy.get("/users", #{ page: 3, per_page: 1, at: seconds });
    #{ id: id, userName: `${id}-${id_cache.get("replay", id)}`, active: true, title: first_stamp }
}
"#;

async fn env() -> TestEnv {
    TestEnv::start_script(Some(SCRIPT), |text| text).await
}

/// The lines logged for a request, by its id.
fn lines_of(request_id: &str, needle: &str) -> Vec<String> {
    log_lines_with(&[request_id, needle])
}

#[tokio::test]
async fn each_call_log_line_and_cache_write_happens_once() {
    let env = env().await;
    let before = env.legacy.requests_served();
    let reply = env.get("/Users/taped-a").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(env.legacy.requests_served() - before, 3, "each of the three calls made once");
    assert_eq!(reply.body["userName"], "taped-a-200", "the cache write is read back: {}", reply.text);
    let stamp = reply.body["title"].as_str().unwrap_or_default();
    assert!(stamp.len() >= 20 && stamp.ends_with('Z'), "{}", reply.text);
    let request_id = reply.header("x-request-id").unwrap_or_default().to_owned();
    assert_eq!(lines_of(&request_id, "before the first call of taped-a").len(), 1);
    assert_eq!(lines_of(&request_id, "between the calls of taped-a").len(), 1);
    assert!(
        lines_of(&request_id, "script call runs on a script thread").is_empty(),
        "a short script making three calls runs where it is made"
    );
}

/// `count` GETs of `taped-<tag><i>` sent at once, so that all start before any has ended: their
/// replies in order, and the legacy calls they made.
async fn taped_at_once(tag: &str, count: usize) -> (Vec<Reply>, u64) {
    let env = Arc::new(env().await);
    let before = env.legacy.requests_served();
    let callers: Vec<_> = (0..count)
        .map(|i| {
            let (env, path) = (env.clone(), format!("/Users/taped-{tag}{i}"));
            tokio::spawn(async move { env.get(&path).await })
        })
        .collect();
    let mut replies = Vec::new();
    for caller in callers {
        replies.push(caller.await.unwrap());
    }
    (replies, env.legacy.requests_served() - before)
}

#[tokio::test]
async fn concurrent_calls_of_one_script_each_make_their_own_calls_once() {
    // Each runs in a fiber of its own on the one worker, the others running while it waits for
    // its legacy answers.
    let (replies, calls) = taped_at_once("c", 24).await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["userName"], format!("taped-c{i}-200"), "{}", reply.text);
    }
    assert_eq!(calls, 24 * 3);
}

#[tokio::test]
async fn a_script_that_reads_rhai_s_own_clock_for_its_call_is_served() {
    // A script run again from its start would ask for another call there: a fiber is not.
    let env = env().await;
    let before = env.legacy.requests_served();
    let reply = env.get("/Users/drift-a").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["userName"], "drift-a", "{}", reply.text);
    assert_eq!(env.legacy.requests_served() - before, 1);
}

#[tokio::test]
async fn a_long_script_goes_on_on_a_script_thread_and_makes_each_call_once() {
    let env = env().await;
    let before = env.legacy.requests_served();
    let reply = env.get("/Users/long-a").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["userName"], format!("long-a-{}", (0..30000).sum::<i64>()), "{}", reply.text);
    assert_eq!(env.legacy.requests_served() - before, 2);
    let request_id = reply.header("x-request-id").unwrap_or_default().to_owned();
    let moved = lines_of(&request_id, "script call runs on a script thread");
    assert!(moved.len() == 1 && moved[0].contains("long_run"), "{moved:?}");
}

#[tokio::test]
async fn a_script_making_many_calls_stays_on_the_worker_and_makes_each_once() {
    let env = env().await;
    let before = env.legacy.requests_served();
    let reply = env.get("/Users/many-a").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(env.legacy.requests_served() - before, 12);
    let request_id = reply.header("x-request-id").unwrap_or_default().to_owned();
    let moved = lines_of(&request_id, "script call runs on a script thread");
    assert!(moved.is_empty(), "{moved:?}");
}

#[tokio::test]
async fn a_script_mapping_bodies_before_its_calls_stays_on_the_worker_call_after_call() {
    // Work before a legacy call is done once, in the fiber: nothing makes the function's later
    // calls start anywhere else.
    let env = env().await;
    let before = env.legacy.requests_served();
    for i in 0..4 {
        let reply = env.get(&format!("/Users/body-{i}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["userName"], format!("body-{i}-200-200"), "{}", reply.text);
        let request_id = reply.header("x-request-id").unwrap_or_default().to_owned();
        let moved = lines_of(&request_id, "script call runs on a script thread");
        assert!(moved.is_empty(), "{moved:?}");
    }
    assert_eq!(env.legacy.requests_served() - before, 4 * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_workers_calls_run_in_fibers_and_make_each_call_once() {
    // Either worker may resume a fiber the other one started.
    let (replies, calls) = taped_at_once("w", 24).await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["userName"], format!("taped-w{i}-200"), "{}", reply.text);
        let request_id = reply.header("x-request-id").unwrap_or_default().to_owned();
        assert!(lines_of(&request_id, "script call runs on a script thread").is_empty());
        assert_eq!(lines_of(&request_id, &format!("between the calls of taped-w{i}")).len(), 1);
    }
    assert_eq!(calls, 24 * 3);
}

/// `list_users` lists 20,000 users without asking the legacy app for them, then makes one
/// legacy call just before it ends; `get_user` makes none.
const LISTING_SCRIPT: &str = r#"
fn get_user(id) { #{ id: id, userName: `user-${id}` } }
fn list_users(query) {
    let users = results();
    for chunk in 0..40 {
        let page = [];
        for i in 0..500 { let n = chunk * 500 + i; page.push(#{ id: `${n}`, userName: `user-${n}`, title: "listed" }); }
        users += page;
    }
    legacy.get("/users", #{ page: 1, per_page: 1 });
    users
}
"#;

#[tokio::test]
async fn a_long_listing_is_read_in_turns_between_which_other_requests_are_served() {
    let env =
        Arc::new(TestEnv::start_script(Some(LISTING_SCRIPT), |t| t.replace("max_scan: 2000", "max_scan: 20000")).await);
    let before = env.legacy.requests_served();
    let listing = {
        let env = env.clone();
        tokio::spawn(async move { env.get("/Users?count=1").await })
    };
    // GETs one after the other until the listing is answered. Those answered after the
    // listing's script made its last legacy call were served while the proxy read its 20,000
    // users: read at once, the listing would hold the one worker for all of that.
    let mut after_the_script = 0;
    loop {
        let reply = env.get("/Users/7").await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["userName"], "user-7", "{}", reply.text);
        if listing.is_finished() {
            break;
        }
        if env.legacy.requests_served() > before {
            after_the_script += 1;
        }
    }
    let listed = listing.await.unwrap();
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body["totalResults"], 20_000, "{}", listed.text);
    assert_eq!(listed.body["Resources"][0]["userName"], "user-0", "{}", listed.text);
    assert!(after_the_script >= 5, "{after_the_script} requests served while the listing was read");
}
