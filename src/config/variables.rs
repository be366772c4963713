//! `${env.NAME}`, `${env.NAME:-default}` and `${file.PATH}` references, replaced in every string of `proxy.yaml`.

use std::collections::BTreeMap;

use super::KeyProblem;

/// Where `${env.NAME}` references take their values from.
///
/// The process environment, with overrides that win over it (the `demo` command uses them
/// to point the configuration at the bundled API it has just started).
#[derive(Debug, Default)]
pub struct Variables {
    overrides: BTreeMap<String, String>,
    /// Offline use (`check`, `test`): what is not set gets a placeholder, named here.
    placeholders: Option<std::sync::Mutex<Vec<String>>>,
}

impl Variables {
    /// For commands that need no real secrets: an unset `${env.NAME}` (without a default) or an
    /// unreadable `${file.PATH}` becomes a placeholder instead of an error.
    ///
    /// The placeholder is a URL, `http://unset.invalid/NAME`, because it must pass for a
    /// token, a header value and a base URL alike.
    pub fn offline() -> Self {
        Self { overrides: BTreeMap::new(), placeholders: Some(std::sync::Mutex::default()) }
    }

    /// Variables with these overrides (those a configuration was first read with).
    pub(crate) fn with_overrides(overrides: BTreeMap<String, String>) -> Self {
        Self { overrides, placeholders: None }
    }

    /// The references that got placeholders, in the order met.
    pub fn unset(&self) -> Vec<String> {
        self.placeholders.as_ref().and_then(|p| p.lock().ok().map(|names| names.clone())).unwrap_or_default()
    }

    /// Sets a value that wins over the environment variable of the same name.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.overrides.insert(name.into(), value.into());
    }

    /// The overrides, kept by a configuration so that a reload reads it the same way.
    pub(super) fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    fn placeholder(&self, reference: &str) -> Option<String> {
        let names = self.placeholders.as_ref()?;
        if let Ok(mut names) = names.lock() {
            if !names.iter().any(|n| n == reference) {
                names.push(reference.to_owned());
            }
        }
        let tail: String = reference.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        Some(format!("http://unset.invalid/{tail}"))
    }

    fn get(&self, name: &str) -> Option<String> {
        self.overrides.get(name).cloned().or_else(|| std::env::var(name).ok())
    }
}

/// Why one `${…}` could not be replaced.
#[derive(Debug, thiserror::Error)]
enum ReferenceError {
    #[error("unclosed ${{…}}: close it with '}}'")]
    Unclosed,
    #[error("environment variable {name} is not set: set it, or write ${{env.{name}:-default}}")]
    Unset { name: String },
    #[error("cannot read secret file {path}: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error("unknown reference ${{{reference}}}: use ${{env.NAME}} or ${{file.PATH}}")]
    Unknown { reference: String },
}

/// Replaces every reference in the strings of the tree, before it is deserialized. Each one
/// that cannot be replaced is a problem, and the rest goes on, so that one start names every
/// variable missing: the error is the first, with every other key named after it.
pub(super) fn expand(value: &mut serde_yaml_ng::Value, vars: &Variables) -> Result<(), KeyProblem> {
    let mut problems = Vec::new();
    expand_value(value, "", vars, &mut problems);
    let mut problems = problems.into_iter();
    let Some(first) = problems.next() else { return Ok(()) };
    let others: Vec<String> = problems.map(|problem| problem.to_string()).collect();
    if others.is_empty() {
        return Err(first);
    }
    Err(KeyProblem::new(first.key, format!("{}; also {}", first.detail, others.join("; "))))
}

fn expand_value(value: &mut serde_yaml_ng::Value, key: &str, vars: &Variables, problems: &mut Vec<KeyProblem>) {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => {
            if s.contains("${") {
                match expand_str(s, vars) {
                    Ok(expanded) => *s = expanded,
                    Err(error) => problems.push(KeyProblem::new(key, error.to_string())),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), vars, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().unwrap_or("?");
                let child = if key.is_empty() { name.to_owned() } else { format!("{key}.{name}") };
                expand_value(v, &child, vars, problems);
            }
        }
        Value::Tagged(tagged) => expand_value(&mut tagged.value, key, vars, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn expand_str(text: &str, vars: &Variables) -> Result<String, ReferenceError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(ReferenceError::Unclosed)?;
        let reference = &after[..end];
        out.push_str(&resolve_reference(reference, vars)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_reference(reference: &str, vars: &Variables) -> Result<String, ReferenceError> {
    if let Some(spec) = reference.strip_prefix("env.") {
        let (name, default) = match spec.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (spec, None),
        };
        return match (vars.get(name), default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.to_owned()),
            (None, None) => {
                vars.placeholder(&format!("env.{name}")).ok_or_else(|| ReferenceError::Unset { name: name.to_owned() })
            }
        };
    }
    if let Some(path) = reference.strip_prefix("file.") {
        return match std::fs::read_to_string(path) {
            Ok(text) => Ok(text.trim_end_matches(['\r', '\n']).to_owned()),
            Err(error) => {
                vars.placeholder(reference).ok_or_else(|| ReferenceError::Unreadable { path: path.to_owned(), error })
            }
        };
    }
    Err(ReferenceError::Unknown { reference: reference.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::testing::{MINIMAL, vars};
    use super::*;

    #[test]
    fn reads_secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "token-from-a-mounted-secret\n").unwrap();
        let text = MINIMAL.replace("${env.TEST_TOKEN}", &format!("${{file.{}}}", path.display()));
        let config = Config::parse(&text, "proxy.yaml", &vars()).unwrap();
        assert_eq!(config.apps[0].auth.bearer_tokens[0].expose(), "token-from-a-mounted-secret");
    }

    /// Each reference's message, word for word: the README quotes the first.
    #[test]
    fn a_reference_that_cannot_be_replaced_says_how_to_fix_it() {
        let vars = Variables::default();
        for (text, says) in [
            (
                "${env.NO_SUCH_VAR_Q}",
                "environment variable NO_SUCH_VAR_Q is not set: set it, or write ${env.NO_SUCH_VAR_Q:-default}",
            ),
            ("a ${env.X", "unclosed ${…}: close it with '}'"),
            ("${vault.x}", "unknown reference ${vault.x}: use ${env.NAME} or ${file.PATH}"),
        ] {
            assert_eq!(expand_str(text, &vars).unwrap_err().to_string(), says);
        }
        let error = expand_str("${file./no/such/secret}", &vars).unwrap_err().to_string();
        assert!(error.starts_with("cannot read secret file /no/such/secret: "), "{error}");
        assert_eq!(expand_str("x${env.NO_SUCH_VAR_Q:-d}y", &vars).unwrap(), "xdy");
        let offline = Variables::offline();
        assert_eq!(expand_str("${env.NO_SUCH_VAR_Q}", &offline).unwrap(), "http://unset.invalid/env_NO_SUCH_VAR_Q");
        assert_eq!(offline.unset(), ["env.NO_SUCH_VAR_Q"]);
    }
}
