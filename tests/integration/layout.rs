//! The source tree keeps the shape `src/lib.rs` describes: every top-level module imports only
//! modules listed after it (the request path reads top to bottom), apart from `config`,
//! `observe` and `scim`, which every stage may use, and the tools off the request path, which
//! nothing on it may use. A circle between modules fails here with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::repo_file;

/// Modules every stage may use; they import only each other, downwards in this order.
const FOUNDATION: [&str; 3] = ["observe", "config", "scim"];

/// Modules off the request path: they may import anything, and nothing on the path imports them.
const OFF_PATH: [&str; 2] = ["authoring", "demo"];

fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string(repo_file("src/lib.rs")).unwrap();
    lib.lines()
        // `pub mod x;` for the modules outside callers use, `pub(crate) mod x;` for the rest.
        .filter_map(|line| line.strip_prefix("pub mod").or_else(|| line.strip_prefix("pub(crate) mod")))
        .map(|rest| rest.trim().trim_end_matches(';').to_owned())
        .collect()
}

fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The top-level modules `module`'s code names as `crate::name` or in `crate::{…}`, comments aside.
fn imports(module: &str, known: &[String]) -> BTreeSet<String> {
    let mut texts = Vec::new();
    let file = repo_file(&format!("src/{module}.rs"));
    if file.exists() {
        texts.push(std::fs::read_to_string(&file).unwrap());
    }
    let dir = repo_file(&format!("src/{module}"));
    if dir.is_dir() {
        sources(&dir, &mut texts);
    }
    let mut names = BTreeSet::new();
    for text in &texts {
        let code: String = text
            .lines()
            .map(|line| match line.find("//") {
                // A URL's `://` is not a comment.
                Some(at) if !line[..at].ends_with(':') => &line[..at],
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let items: Vec<&str> = match rest.strip_prefix('{') {
                Some(inner) => inner.split('}').next().unwrap_or_default().split(',').collect(),
                None => vec![rest],
            };
            for item in items {
                let name: String = item.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if known.contains(&name) && name != module {
                    names.insert(name);
                }
            }
        }
    }
    names
}

#[test]
fn layout_each_module_imports_only_what_comes_after_it_in_lib_rs() {
    let order = modules();
    for module in FOUNDATION.iter().chain(&OFF_PATH).chain(&["runtime", "pipeline", "operations", "script", "legacy"]) {
        assert!(order.iter().any(|m| m == module), "src/lib.rs no longer lists {module}");
    }
    let graph: BTreeMap<String, BTreeSet<String>> = order.iter().map(|m| (m.clone(), imports(m, &order))).collect();
    let rank = |m: &str| -> usize {
        // Foundation modules rank below every stage, in their own order; the off-path tools above.
        if let Some(i) = FOUNDATION.iter().position(|f| *f == m) {
            return 1000 + i;
        }
        if OFF_PATH.contains(&m) {
            return 0;
        }
        10 + order.iter().position(|o| o == m).unwrap()
    };
    let mut wrong = Vec::new();
    for (module, names) in &graph {
        for name in names {
            let allowed = rank(name) > rank(module)
                || (OFF_PATH.contains(&module.as_str()) && OFF_PATH.contains(&name.as_str()) && name != "demo");
            if !allowed {
                wrong.push(format!("{module} imports {name}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the order of src/lib.rs (a circle, or a stage reaching up): {wrong:?}\nwhole graph: {graph:#?}"
    );
    // The graph a reviewer relies on: the request path really goes through these stages.
    for (from, to) in
        [("runtime", "pipeline"), ("pipeline", "operations"), ("operations", "script"), ("script", "legacy")]
    {
        assert!(graph[from].contains(to), "{from} no longer imports {to}: update src/lib.rs and this test");
    }
}

#[test]
fn layout_every_source_file_says_its_job_on_its_first_line() {
    let mut missing = Vec::new();
    fn walk(dir: &Path, missing: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, missing);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if !text.starts_with("//!") {
                    missing.push(path.display().to_string());
                }
            }
        }
    }
    walk(&repo_file("src"), &mut missing);
    assert!(missing.is_empty(), "files without a `//!` first line saying their job: {missing:?}");
}
