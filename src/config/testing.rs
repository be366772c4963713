//! The configuration the unit tests of every section start from, and helpers to vary it.

use super::{Config, ConfigError, Variables};

pub(super) const MINIMAL: &str = r#"
apps:
  - name: acme
    base_path: /scim/v2
    script: scripts/demo.rhai
    auth:
      bearer_tokens: ["${env.TEST_TOKEN}"]
    legacy:
      base_url: "${env.TEST_BASE:-http://127.0.0.1:7070/api/v1}"
      headers:
        X-Api-Key: "${env.TEST_KEY}"
"#;

/// The variables `MINIMAL` refers to.
pub(super) fn vars() -> Variables {
    let mut v = Variables::default();
    v.set("TEST_TOKEN", "a-token-of-sufficient-length");
    v.set("TEST_KEY", "key");
    v
}

/// `MINIMAL` with `yaml` added under the app (indented as its keys are).
pub(super) fn app_with(yaml: &str) -> String {
    MINIMAL.replace("    base_path: /scim/v2\n", &format!("    base_path: /scim/v2\n{yaml}"))
}

/// `MINIMAL` with `yaml` added under the app's `legacy` (indented as its keys are).
pub(super) fn legacy_with(yaml: &str) -> String {
    MINIMAL.replace("      headers:", &format!("{yaml}      headers:"))
}

/// `MINIMAL` with the legacy app at `url`.
pub(super) fn legacy_at(url: &str) -> String {
    MINIMAL.replace("${env.TEST_BASE:-http://127.0.0.1:7070/api/v1}", url)
}

/// The key and message a configuration is refused with.
pub(super) fn refusal(text: &str) -> (String, String) {
    match Config::parse(text, "proxy.yaml", &vars()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(ConfigError::Key { key, detail, .. }) => (key, detail),
        Err(other) => ("".into(), other.to_string()),
    }
}
