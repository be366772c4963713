//! The mapping test file format: a SCIM request, the legacy calls it must cause with their
//! answers, and the SCIM response expected. Read by `scim-proxy test`, written by recordings.
//!
//! The format is documented in `docs/testing-mappings.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The host the test requests name, so `meta.location` is the same on every machine (and in
/// every recording).
pub(crate) const TEST_HOST: &str = "scim.test";

/// One test file: the cases of one app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestFile {
    /// The app of the configuration under test; by default the app whose script the file is beside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub cases: Vec<Case>,
}

/// One case: a single step written inline, or several `steps` sharing one proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Vec<LegacyCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

/// One SCIM request, the legacy calls it must make, and the answer expected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Step {
    pub request: Request,
    #[serde(default)]
    pub legacy: Vec<LegacyCall>,
    pub expect: Expect,
}

/// The SCIM request of a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Request {
    /// `METHOD /path?query`, the path relative to the app's base path.
    pub call: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// A legacy call the mapping must make, and what the legacy app answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LegacyCall {
    /// `METHOD /path?query`, the path relative to `legacy.base_url`, as sent.
    pub call: String,
    /// The JSON body the mapping must send (matched like response bodies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default)]
    pub reply: Reply,
}

/// A scripted legacy answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reply {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON, sent as `application/json`; a string is sent as it is, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl Default for Reply {
    fn default() -> Self {
        Self { status: ok(), headers: BTreeMap::new(), body: None }
    }
}

fn ok() -> u16 {
    200
}

/// The SCIM answer a step expects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl Case {
    /// The steps of the case, whichever way it was written.
    pub(crate) fn steps(&self) -> Result<Vec<Step>, String> {
        match (&self.request, &self.expect, self.steps.is_empty()) {
            (Some(request), Some(expect), true) => Ok(vec![Step {
                request: request.clone(),
                legacy: self.legacy.clone().unwrap_or_default(),
                expect: expect.clone(),
            }]),
            (None, None, false) if self.legacy.is_none() => Ok(self.steps.clone()),
            (_, _, false) => Err("has both `steps` and a `request`/`legacy`/`expect`: use one or the other".into()),
            (None, _, true) => Err("has no `request` (or `steps`)".into()),
            (Some(_), None, true) => Err("has no `expect`".into()),
        }
    }
}

/// Splits `METHOD /path?query` into its method and target.
pub(crate) fn split_call(call: &str) -> Result<(http::Method, &str), String> {
    let (method, target) = call
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("{call:?}: write the method, a space and the path, e.g. \"GET /Users/7\""))?;
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| format!("{call:?}: invalid method"))?;
    let target = target.trim();
    if !target.starts_with('/') {
        return Err(format!("{call:?}: the path must start with '/'"));
    }
    Ok((method, target))
}

/// Reads and parses a test file.
pub(crate) fn load(path: &Path) -> Result<TestFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let file: TestFile =
        serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).map_err(|e| {
            let at = e.path().to_string();
            format!("{}: {at}: {}", path.display(), e.into_inner())
        })?;
    for (i, case) in file.cases.iter().enumerate() {
        let steps = case.steps().map_err(|e| format!("{}: cases[{i}] ({}): {e}", path.display(), case.name))?;
        for step in &steps {
            split_call(&step.request.call)
                .map_err(|e| format!("{}: cases[{i}] ({}): {e}", path.display(), case.name))?;
            for call in &step.legacy {
                split_call(&call.call).map_err(|e| format!("{}: cases[{i}] ({}): {e}", path.display(), case.name))?;
            }
        }
    }
    Ok(file)
}

/// The test file kept beside a script: `scripts/demo.rhai` → `scripts/demo.test.yaml`.
pub(crate) fn beside(script: &Path) -> PathBuf {
    script.with_extension("test.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_single_step_and_multi_step_cases() {
        let text = r#"
app: acme
cases:
  - name: one
    request: {call: GET /Users/7}
    legacy:
      - call: GET /users/7
        reply: {body: {id: 7}}
    expect: {status: 200, body: {id: "7"}}
  - name: two
    steps:
      - request: {call: DELETE /Users/7}
        expect: {status: 204}
"#;
        let file: TestFile = serde_yaml_ng::from_str(text).unwrap();
        let one = file.cases[0].steps().unwrap();
        assert_eq!(one[0].legacy[0].reply.status, 200);
        assert_eq!(one[0].legacy[0].reply.body, Some(serde_json::json!({"id": 7})));
        assert_eq!(file.cases[1].steps().unwrap().len(), 1);
        let bad = Case { name: "x".into(), ..Case::default() };
        assert!(bad.steps().unwrap_err().contains("no `request`"));
    }

    #[test]
    fn splits_calls() {
        assert_eq!(split_call("GET /users?login=a").unwrap(), (http::Method::GET, "/users?login=a"));
        assert!(split_call("/users").is_err());
        assert!(split_call("GET users").is_err());
        assert_eq!(beside(Path::new("scripts/demo.rhai")), PathBuf::from("scripts/demo.test.yaml"));
    }
}
