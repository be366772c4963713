//! The script reference's examples: every ```rhai block in docs/scripting.md compiles with the
//! proxy's engine, and its complete example serves Users in front of the Acme Directory.

use std::path::Path;

use reqwest::{Method, StatusCode};
use scim_proxy::script::lint::lint;
use scim_proxy::script::{ScriptEngine, ScriptError};
use serde_json::json;

use crate::support::{TestEnv, repo_file, user};

const DOC: &str = "docs/scripting.md";

/// The first line of the one block that `docs_examples_the_complete_example_serves_users` runs.
const COMPLETE: &str = "// Complete example:";

/// A ```rhai block of the doc: the 1-based line of its opening fence, and its text.
struct Block {
    fence_line: usize,
    text: String,
}

fn rhai_blocks() -> Vec<Block> {
    let doc = std::fs::read_to_string(repo_file(DOC)).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in doc.lines().enumerate() {
        let fence = line.trim_start();
        if let Some(block) = open.as_mut() {
            if fence.starts_with("```") {
                blocks.extend(open.take());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if fence.starts_with("```rhai") {
            open = Some(Block { fence_line: index + 1, text: String::new() });
        }
    }
    assert!(open.is_none(), "{DOC}: a ```rhai block is never closed");
    blocks
}

#[test]
fn docs_examples_every_rhai_block_compiles() {
    let blocks = rhai_blocks();
    // The reference has dozens of examples: finding few means the fences were not recognised.
    assert!(blocks.len() >= 20, "{DOC}: only {} ```rhai blocks found", blocks.len());
    let engine = ScriptEngine::new();
    let mut failures = Vec::new();
    for block in &blocks {
        let name = format!("{DOC}:{}", block.fence_line);
        match engine.compile(&block.text, Path::new(&name)) {
            // What `scim-proxy check` would report: wrong arities and near-miss contract names.
            Ok(compiled) => failures.extend(
                lint(&compiled, &block.text)
                    .into_iter()
                    .map(|finding| format!("{DOC}:{}: {}", block.fence_line + finding.line, finding.message)),
            ),
            Err(ScriptError::Compile { line, column, message, .. }) => {
                failures.push(format!("{DOC}:{}:{column}: {message}", block.fence_line + line));
            }
            Err(other) => failures.push(format!("{name}: {other}")),
        }
    }
    assert!(failures.is_empty(), "```rhai blocks that the proxy would refuse:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_examples_the_complete_example_serves_users() {
    let blocks = rhai_blocks();
    let complete: Vec<&Block> = blocks.iter().filter(|b| b.text.starts_with(COMPLETE)).collect();
    assert_eq!(complete.len(), 1, "{DOC}: exactly one block must start with {COMPLETE:?}");
    // The app publishes what the example maps, as the doc's configuration says.
    let env = TestEnv::start_script(Some(&complete[0].text), |text| {
        text.replace(
            "user_attributes: [userName, name, displayName, title, active, emails, phoneNumbers, password, groups]",
            "user_attributes: [userName, name.givenName, name.familyName, displayName, title, active, emails, password]",
        )
        .replace("      enterprise_user: [employeeNumber, department, manager]\n", "")
    })
    .await;

    let created = env.post("/Users", user("ada")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["emails"][0]["value"], "ada@example.com", "{}", created.text);
    assert!(created.header("location").is_some_and(|l| l.ends_with(&format!("/Users/{id}"))));
    env.post("/Users", user("ADA")).await.assert_error(409, Some("uniqueness"));
    let mut unmapped = user("phoney");
    unmapped["phoneNumbers"] = json!([{"value": "+1 555 0100"}]);
    let ignored = env.post("/Users", unmapped).await;
    assert_eq!(ignored.status, StatusCode::CREATED, "not published, so ignored: {}", ignored.text);
    assert!(ignored.body.get("phoneNumbers").is_none(), "{}", ignored.text);

    let read = env.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["name"]["givenName"], "Given");
    env.get("/Users/424242").await.assert_error(404, None);

    env.create_user("grace").await;
    let found = env.get("/Users?filter=userName%20eq%20%22ADA%22").await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.text);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    let sorted =
        env.get("/Users?filter=name.familyName%20eq%20%22Family%22&sortBy=userName&sortOrder=descending").await;
    assert_eq!(sorted.body["totalResults"], 3, "{}", sorted.text);
    let names: Vec<&str> =
        sorted.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect();
    assert_eq!(names, ["phoney", "grace", "ada"]);

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "title", "value": "Countess"}]});
    let patched = env.send(Method::PATCH, &format!("/Users/{id}"), Some(patch)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(env.get(&format!("/Users/{id}")).await.body["title"], "Countess");

    assert_eq!(env.delete(&format!("/Users/{id}")).await.status, StatusCode::NO_CONTENT);
    env.get(&format!("/Users/{id}")).await.assert_error(404, None);
    env.delete(&format!("/Users/{id}")).await.assert_error(404, None);
}

/// The fenced blocks of a markdown file with this language tag, in order.
fn fenced(file: &str, language: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_file(file)).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in text.lines() {
        match open.as_mut() {
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.trim_start() == format!("```{language}") => open = Some(String::new()),
            None => {}
        }
    }
    blocks
}

/// The README's "Adding an application" walkthrough, followed as written: its configuration,
/// its script and its test file, put in a folder, pass `scim-proxy check` and `scim-proxy test`.
#[test]
fn readme_walkthrough_passes_check_and_its_own_test_file() {
    let yaml = fenced("README.md", "yaml");
    let config = yaml.iter().find(|b| b.contains("name: hr")).expect("the walkthrough's configuration");
    let tests = yaml.iter().find(|b| b.contains("POST /employees")).expect("the walkthrough's test file");
    let rhai = fenced("README.md", "rhai");
    let script = rhai.iter().find(|b| b.contains("fn create_user")).expect("the walkthrough's script");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("proxy.yaml"), config).unwrap();
    std::fs::write(dir.path().join("scripts/hr.rhai"), script).unwrap();
    std::fs::write(dir.path().join("scripts/hr.test.yaml"), tests).unwrap();
    let config_path = dir.path().join("proxy.yaml");
    for command in ["check", "test"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
            .args([command, "--config"])
            .arg(&config_path)
            .env_remove("HR_SCIM_TOKEN")
            .env_remove("HR_API_TOKEN")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "scim-proxy {command}:\n{text}");
        if command == "test" {
            assert!(text.contains("2 passed, 0 failed"), "{text}");
        }
    }
}

/// The one ```rhai block of docs/scripting.md that defines `function`.
fn block_defining(function: &str) -> String {
    let defining: Vec<Block> =
        rhai_blocks().into_iter().filter(|b| b.text.contains(&format!("fn {function}("))).collect();
    assert_eq!(defining.len(), 1, "{DOC}: exactly one ```rhai block must define {function}");
    defining.into_iter().next().map(|b| b.text).unwrap_or_default()
}

/// What the doc says of `?[`: it gives `()` when there are no `emails` at all (as
/// scripts/examples/offset_list.rhai relies on), but not for an empty list, whose `[0]` is an
/// error; and a chain that goes on after it (`user.emails?[0]?.value`) fails where there are no
/// `emails`. The doc's own function runs in a mapping whose `get_user` reports what it gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_examples_question_mark_indexing_is_unit_only_at_the_end_of_a_chain() {
    let example = block_defining("first_email_value");
    let script = format!(
        r#"{example}
// The form the doc warns against.
fn chained(user) {{
    user.emails?[0]?.value
}}

fn get_user(id) {{
    let records = #{{
        "1": #{{ userName: "none" }},
        "2": #{{ userName: "listed", emails: [#{{ value: "ada@example.com" }}] }},
        "3": #{{ userName: "empty", emails: [] }},
        "4": #{{ userName: "chained" }},
    }};
    let record = records[id];
    if record == () {{ return (); }}
    let value = if id == "4" {{ chained(record) }} else {{ first_email_value(record) }};
    #{{ id: id, userName: record.userName, title: if value == () {{ "unit" }} else {{ value }} }}
}}
"#
    );
    let env = TestEnv::start_script(Some(&script), |text| text).await;
    let none = env.get("/Users/1").await;
    assert_eq!((none.status, &none.body["title"]), (StatusCode::OK, &json!("unit")), "{}", none.text);
    let listed = env.get("/Users/2").await;
    assert_eq!((listed.status, &listed.body["title"]), (StatusCode::OK, &json!("ada@example.com")), "{}", listed.text);
    let empty = env.get("/Users/3").await;
    assert_eq!(empty.status, StatusCode::INTERNAL_SERVER_ERROR, "an empty list's [0] is an error: {}", empty.text);
    let chained = env.get("/Users/4").await;
    assert_eq!(chained.status, StatusCode::INTERNAL_SERVER_ERROR, "?[0]?.value fails on (): {}", chained.text);
    let logged = crate::support::log_lines_with(&["chained: line", "Indexer unavailable: () [i64]"]);
    assert_eq!(logged.len(), 1, "{}", crate::support::logs());
}

/// What docs/testing-mappings.md says of an empty page: `Resources: []`. Its example case runs
/// against the demo mapping with `scim-proxy test`, and the proxy in front of the real Acme
/// Directory answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_examples_an_empty_page_is_an_empty_resources_list() {
    const TESTING: &str = "docs/testing-mappings.md";
    let examples: Vec<String> = fenced(TESTING, "yaml").into_iter().filter(|b| b.contains("Resources: []")).collect();
    assert_eq!(examples.len(), 1, "{TESTING}: exactly one yaml example must expect `Resources: []`");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.test.yaml");
    std::fs::write(&file, &examples[0]).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["test", "--config"])
        .arg(repo_file("proxy.yaml"))
        .arg("--file")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("1 passed, 0 failed"), "{text}");

    let env = TestEnv::start().await;
    let page = env.get("/Users?filter=userName%20eq%20%22nobody%22").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!((&page.body["totalResults"], &page.body["Resources"]), (&json!(0), &json!([])), "{}", page.text);
}
