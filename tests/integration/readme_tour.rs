//! The README's curl tour, run as written with the real `curl` against `scim-proxy demo`
//! started in a directory outside the repository.

use std::path::Path;

use serde_json::Value;

use crate::support::{DemoProcess, demo_command, repo_file};

/// The status each curl command of the tour answers, in order, with a piece of the command
/// that names it: a command added to the tour or moved in it must be added here too.
const TOUR: &[(&str, u16)] = &[
    ("$S/ServiceProviderConfig", 200),
    ("$S/Schemas", 200),
    ("$S/ResourceTypes/User", 200),
    ("\"userName\": \"ada\"", 201),
    ("$S/Users/4\n", 200),
    ("userName%20eq%20%22ada%22", 200),
    ("sortOrder=descending", 200),
    ("startIndex=2&count=1", 200),
    ("$S/Users/.search", 200),
    ("$S/Users/4?attributes=emails", 200),
    ("-X PATCH", 200),
    ("-X PUT", 200),
    ("-X DELETE", 204),
    ("grep -i '^etag'", 200),
    ("If-Match", 412),
    ("$S/Bulk", 200),
    ("okta.user@acme.example", 201),
    ("userName%20eq\"", 400),
    ("curl -s $S/Users", 401),
];

/// The fenced ```sh blocks of the README, in order.
fn sh_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in text.lines() {
        match open.as_mut() {
            Some(_) if line.starts_with("```") => blocks.extend(open.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line == "```sh" => open = Some(String::new()),
            None => {}
        }
    }
    blocks
}

/// The ```sh block that follows `heading` in the README.
fn block_after(heading: &str) -> String {
    let text = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let after = text.split(&format!("\n{heading}\n")).nth(1).unwrap_or_else(|| panic!("README.md has no {heading}"));
    let block = after.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next());
    block.unwrap_or_else(|| panic!("no ```sh block after {heading}")).to_owned()
}

/// A block's lines split into its `export` lines and its curl commands (a command runs on
/// until a blank line, a comment line or the next command).
fn parse(block: &str) -> (Vec<String>, Vec<String>) {
    let (mut exports, mut commands) = (Vec::new(), Vec::<String>::new());
    let mut open = false;
    for line in block.lines() {
        if line.starts_with("export ") {
            exports.push(line.to_owned());
            open = false;
        } else if line.starts_with("curl ") {
            commands.push(format!("{line}\n"));
            open = true;
        } else if line.is_empty() || line.starts_with('#') {
            open = false;
        } else if open {
            commands.last_mut().unwrap().push_str(&format!("{line}\n"));
        }
    }
    (exports, commands)
}

/// The variables an `export` line sets and the placeholders it gives them, `NAME='<…>'`.
fn exported(line: &str) -> Vec<(String, String)> {
    let rest = line.strip_prefix("export ").unwrap();
    rest.split("' ")
        .map(|pair| {
            let (name, value) = pair.split_once("='").unwrap_or_else(|| panic!("{line}: NAME='…' pairs"));
            (name.to_owned(), value.trim_end_matches('\'').to_owned())
        })
        .collect()
}

/// Runs one tour command with bash, `curl` writing the response headers to `headers` as well;
/// answers the HTTP status of the last response and what the command printed.
fn run(command: &str, env: &[(String, String)], headers: &Path) -> (u16, String) {
    let _ = std::fs::remove_file(headers);
    let script = format!("curl() {{ command curl -D \"$TOUR_HEADERS\" \"$@\"; }}\n{command}");
    let output = std::process::Command::new("bash")
        .args(["-c", &script])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("TOUR_HEADERS", headers)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let seen = std::fs::read_to_string(headers).unwrap_or_default();
    let status = seen
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no answer to:\n{command}\n{}", String::from_utf8_lossy(&output.stderr)));
    (status, printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written_against_the_demo() {
    let (tour_exports, tour) = parse(&block_after("## A five-minute tour with curl"));
    let acme_block = sh_blocks().into_iter().find(|b| b.contains("X-Api-Key")).expect("the README's Acme block");
    let (acme_exports, acme) = parse(&acme_block);
    let started_as = acme_block.lines().next().unwrap();
    let key = started_as.strip_prefix("ACME_API_KEY=").and_then(|rest| rest.split(' ').next()).unwrap();
    assert!(started_as.ends_with(" cargo run --release -- demo"), "{started_as}");

    let dir = tempfile::tempdir().unwrap();
    let mut command = demo_command(dir.path());
    command.env("ACME_API_KEY", key);
    let demo = tokio::task::spawn_blocking(move || DemoProcess::start(command)).await.unwrap();
    let printed = |prefix: &str| demo.printed(prefix).unwrap_or_else(|| panic!("{prefix}: {:?}", demo.lines));
    // The placeholders of the `export` lines, filled in with what the demo printed.
    let mut env = Vec::new();
    for line in tour_exports.iter().chain(&acme_exports) {
        for (name, placeholder) in exported(line) {
            let value = match placeholder.as_str() {
                "Bearer <the printed token>" => format!("Bearer {}", printed("Bearer token: ")),
                "<the printed SCIM endpoint>" => printed("SCIM endpoint: ").to_owned(),
                "<the printed Acme Directory API address>" => printed("Acme Directory API: ").to_owned(),
                other => panic!("{line}: {name}={other} is no placeholder for a printed value"),
            };
            env.push((name, value));
        }
    }

    assert_eq!(tour.len(), TOUR.len(), "the tour's curl commands:\n{}", tour.join("\n"));
    let headers = dir.path().join("headers");
    for (command, (names, status)) in tour.iter().zip(TOUR) {
        assert!(command.contains(names), "expected the command with {names:?}, found:\n{command}");
        let (answered, body) = run(command, &env, &headers);
        assert_eq!(answered, *status, "{command}{body}");
        let json: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
        // What the prose around the commands says of their answers.
        match *names {
            "$S/Users/4\n" => {
                assert_eq!(json["emails"], serde_json::json!([{"value": "ada@acme.example"}]), "{body}");
            }
            "$S/Users/4?attributes=emails" => {
                assert_eq!(json["emails"][0]["type"], "work", "{body}");
                assert_eq!(json["emails"][0]["primary"], true, "{body}");
            }
            "-X PUT" => {
                let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
                for cleared in ["name", "emails", enterprise] {
                    assert!(json.get(cleared).is_none(), "PUT left {cleared}: {body}");
                }
            }
            "-X DELETE" => assert_eq!(body.trim(), "204"),
            "grep -i '^etag'" => assert!(body.to_lowercase().starts_with("etag: w/\""), "{body}"),
            "userName%20eq\"" => assert_eq!(json["scimType"], "invalidFilter", "{body}"),
            _ => {}
        }
    }
    assert_eq!(acme.len(), 1, "{acme_block}");
    let (answered, body) = run(&acme[0], &env, &headers);
    assert_eq!(answered, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let logins: Vec<&str> = listed["data"]
        .as_array()
        .map(|users| users.iter().filter_map(|u| u["login"].as_str()).collect())
        .unwrap_or_default();
    // The tour's users, as Acme keeps them: ada was deleted, the bulk and Okta users created.
    assert!(logins.contains(&"grace") && logins.contains(&"okta.user@acme.example"), "{body}");
    assert!(!logins.contains(&"ada"), "{body}");
}
