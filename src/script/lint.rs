//! Checking a mapping before it serves: contract arities, likely typos, and what each SCIM operation will do.

use super::{CONTRACT, Compiled};

/// Something `scim-proxy check` reports about a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line of the function it is about (0 when unknown).
    pub line: usize,
    /// What is wrong and the fix, in one line.
    pub message: String,
}

/// Contract functions with parameters the proxy cannot pass, and functions whose names look
/// like a contract function the script does not define (`get_usr` for `get_user`).
pub fn lint(compiled: &Compiled, text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, arity) in compiled.functions() {
        if CONTRACT.iter().any(|(n, _)| *n == name) {
            if let Some(message) = arity_problem(name, arity) {
                findings.push(Finding { line: line_of(text, name), message });
            }
            continue;
        }
        let near =
            CONTRACT.iter().map(|(n, _)| *n).filter(|n| compiled.arity(n).is_none()).find(|n| distance(n, name) <= 2);
        if let Some(intended) = near {
            findings.push(Finding {
                line: line_of(text, name),
                message: format!("{name} is not a function the proxy calls; did you mean {intended}?"),
            });
        }
    }
    findings.sort_by_key(|f| f.line);
    findings
}

/// The problem with a contract function defined with parameters the proxy cannot pass.
pub(crate) fn arity_problem(name: &str, arity: usize) -> Option<String> {
    let (_, arities) = CONTRACT.iter().find(|(n, _)| *n == name)?;
    if arities.contains(&arity) {
        return None;
    }
    let expected: Vec<String> = arities.iter().map(usize::to_string).collect();
    Some(format!("{name} takes {arity} parameters; the proxy calls it with {}", expected.join(" or ")))
}

/// How each SCIM operation will be served by this script: by the script, emulated by the
/// proxy from other functions, or not at all (`501`).
pub fn operations(compiled: &Compiled, deactivate_on_delete: bool) -> Vec<(&'static str, String)> {
    let has = |name: &str| compiled.arity(name).is_some();
    let by = |name: &str| if has(name) { format!("script ({name})") } else { "not supported (501)".to_owned() };
    let mut rows = vec![
        ("POST /Users", by("create_user")),
        ("GET /Users/{id}", by("get_user")),
        (
            "GET /Users, POST /Users/.search",
            if has("list_users") {
                "script (list_users); the proxy completes filter, sort and paging".to_owned()
            } else {
                by("list_users")
            },
        ),
        (
            "PUT /Users/{id}",
            if has("get_user") { by("replace_user") } else { "not supported (501): needs get_user".to_owned() },
        ),
        ("PATCH /Users/{id}", patch(&has, "patch_user", "get_user", "replace_user")),
        (
            "DELETE /Users/{id}",
            if deactivate_on_delete {
                if has("get_user") && has("replace_user") {
                    "emulated: active set to false through replace_user".to_owned()
                } else {
                    "not supported (501): user_delete: deactivate needs get_user and replace_user".to_owned()
                }
            } else {
                by("delete_user")
            },
        ),
    ];
    if has("get_group") {
        rows.extend([
            ("POST /Groups", by("create_group")),
            ("GET /Groups/{id}", by("get_group")),
            ("GET /Groups", by("list_groups")),
            ("PUT /Groups/{id}", by("replace_group")),
            ("PATCH /Groups/{id}", patch(&has, "patch_group", "get_group", "replace_group")),
            (
                "PATCH /Groups/{id} members",
                match (has("add_members"), has("remove_members")) {
                    (true, true) => "script hooks (add_members, remove_members), members not read".to_owned(),
                    (true, false) => "add: add_members; remove: emulated as for PATCH".to_owned(),
                    (false, true) => "remove: remove_members; add: emulated as for PATCH".to_owned(),
                    (false, false) => "emulated as for PATCH (reads every member)".to_owned(),
                },
            ),
            ("DELETE /Groups/{id}", by("delete_group")),
        ]);
    } else {
        rows.push(("/Groups", "not served: the script defines no get_group".to_owned()));
    }
    rows.push((
        "/readyz",
        if has("health") {
            "also waits for the script's health() to pass".to_owned()
        } else {
            "config and script loaded (no health() to ask)".to_owned()
        },
    ));
    rows
}

fn patch(has: &dyn Fn(&str) -> bool, own: &str, get: &str, replace: &str) -> String {
    if has(own) && has(get) {
        format!("script ({own}), after {get}")
    } else if has(get) && has(replace) {
        format!("emulated: {get}, operations applied by the proxy, {replace}")
    } else {
        format!("not supported (501): needs {own} or {get} and {replace}")
    }
}

/// The line where `fn name(` is defined.
fn line_of(text: &str, name: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start().strip_prefix("private ").unwrap_or(line.trim_start());
            line.strip_prefix("fn ").is_some_and(|rest| {
                rest.trim_start().strip_prefix(name).is_some_and(|after| after.trim_start().starts_with('('))
            })
        })
        .map_or(0, |i| i + 1)
}

/// Levenshtein distance, for names of a few characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb { previous } else { 1 + previous.min(row[j]).min(current) };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::script::ScriptEngine;

    fn compile(text: &str) -> Compiled {
        ScriptEngine::new().compile(text, Path::new("app.rhai")).unwrap()
    }

    #[test]
    fn reports_typos_and_arities_with_lines() {
        let text =
            "fn create_user(u) { u }\n\nfn get_usr(id) { () }\nfn replace_user(id) { () }\nfn to_scim(u) { u }\n";
        let findings = lint(&compile(text), text);
        assert_eq!(
            findings,
            vec![
                Finding {
                    line: 3,
                    message: "get_usr is not a function the proxy calls; did you mean get_user?".into()
                },
                Finding {
                    line: 4,
                    message: "replace_user takes 1 parameters; the proxy calls it with 2 or 3 or 4".into()
                },
            ]
        );
    }

    #[test]
    fn tells_what_each_operation_does() {
        let text = "fn get_user(id) { () }\nfn replace_user(id, u) { u }\n";
        let rows = operations(&compile(text), false);
        let row = |op: &str| rows.iter().find(|(o, _)| *o == op).map(|(_, how)| how.clone()).unwrap();
        assert_eq!(row("POST /Users"), "not supported (501)");
        assert!(row("PATCH /Users/{id}").starts_with("emulated"));
        assert!(row("/Groups").starts_with("not served"));
        assert_eq!(distance("get_usr", "get_user"), 1);
    }
}
