//! The `scim-proxy` command line: `check` reports configuration and script errors precisely.

use std::process::Command;

use crate::support::repo_file;

fn check(config: &std::path::Path) -> (bool, String) {
    check_with(config, &[])
}

fn check_with(config: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["check", "--config"])
        .arg(config)
        .args(extra)
        .env("SCIM_TOKEN", "check-token-0123456789abcdef")
        .env("ACME_API_KEY", "key")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A copy of `proxy.yaml` in a temporary folder, with the demo script or a given one beside it.
fn project(script: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    let text = script.map_or_else(|| std::fs::read_to_string(repo_file("scripts/demo.rhai")).unwrap(), str::to_owned);
    std::fs::write(dir.path().join("scripts/demo.rhai"), text).unwrap();
    std::fs::copy(repo_file("proxy.yaml"), dir.path().join("proxy.yaml")).unwrap();
    dir
}

#[test]
fn check_accepts_the_shipped_configuration() {
    let dir = project(None);
    let (ok, text) = check(&dir.path().join("proxy.yaml"));
    assert!(ok, "{text}");
    assert!(text.contains("create_user/1") && text.contains("list_users/1"), "{text}");
}

#[test]
fn check_names_file_line_and_column_of_a_syntax_error() {
    let dir = project(Some("fn get_user(id) {\n    let x = ;\n}\n"));
    let (ok, text) = check(&dir.path().join("proxy.yaml"));
    assert!(!ok, "{text}");
    assert!(text.contains("scripts/demo.rhai:2:13"), "{text}");
}

#[test]
fn check_reports_contract_functions_with_the_wrong_arity() {
    let dir = project(Some("fn get_user(id, extra, more) { () }\n"));
    let (ok, text) = check(&dir.path().join("proxy.yaml"));
    assert!(!ok, "{text}");
    assert!(text.contains("scripts/demo.rhai:1: get_user takes 3 parameters"), "{text}");
}

#[test]
fn check_reports_likely_typos_and_what_each_operation_does() {
    let dir = project(Some("fn get_user(id) { () }\n\nfn replace_usr(id, user) { user }\n"));
    let (ok, text) = check(&dir.path().join("proxy.yaml"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("scripts/demo.rhai:3: replace_usr is not a function the proxy calls; did you mean replace_user?"),
        "{text}"
    );
    assert!(text.contains("POST /Users") && text.contains("not supported (501)"), "{text}");
}

#[test]
fn check_names_the_key_of_a_configuration_error() {
    let dir = project(None);
    let path = dir.path().join("proxy.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap().replace("max_concurrent_scripts: 16", "max_concurent_scripts: 16");
    std::fs::write(&path, text).unwrap();
    let (ok, text) = check(&path);
    assert!(!ok, "{text}");
    assert!(text.contains("proxy.yaml: apps[0]") && text.contains("unknown field `max_concurent_scripts`"), "{text}");
}

/// The verdict `check --idp` printed for an attribute of a resource type: the heading
/// (`store`, `ignore`, `refuse`) of the group its line is in.
fn verdict<'t>(report: &'t str, kind: &str, attribute: &str) -> Option<&'t str> {
    let mut heading = None;
    for line in report.lines() {
        if let Some(word) = line.strip_prefix("  ").and_then(|l| l.split(" (").next()) {
            if ["store", "ignore", "refuse"].contains(&word) {
                heading = Some(word);
                continue;
            }
        }
        let mut words = line.split_whitespace();
        if line.starts_with("    ") && words.next() == Some(kind) && words.next() == Some(attribute) {
            return heading;
        }
    }
    None
}

/// Fails unless each `(resource type, attribute)` got its verdict in the report.
fn assert_verdicts(report: &str, expected: &[(&str, &str, &str)]) {
    for (kind, attribute, wanted) in expected {
        assert_eq!(verdict(report, kind, attribute), Some(*wanted), "{kind} {attribute}:\n{report}");
    }
}

#[test]
fn check_idp_says_what_the_demo_stores_ignores_and_refuses_of_each_idps_defaults() {
    let dir = project(None);
    let config = dir.path().join("proxy.yaml");
    let (ok, okta) = check_with(&config, &["--idp", "okta"]);
    assert!(ok, "{okta}");
    assert!(okta.contains("app acme: what Okta sends by default (schema.unsupported_attributes: ignore)"), "{okta}");
    assert_verdicts(
        &okta,
        &[
            ("User", "userName", "store"),
            ("User", "password", "store"),
            ("User", "locale", "ignore"),
            ("User", "groups", "ignore"),
            ("Group", "displayName", "store"),
        ],
    );
    assert!(okta.contains("add locale to schema.user_attributes"), "{okta}");

    let (ok, entra) = check_with(&config, &["--idp", "entra"]);
    assert!(ok, "{entra}");
    assert_verdicts(
        &entra,
        &[
            ("User", "userName", "store"),
            ("User", "name.formatted", "ignore"),
            ("User", "roles", "ignore"),
            ("User", "meta.resourceType", "ignore"),
            ("User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "store"),
            ("Group", "externalId", "store"),
        ],
    );

    // Under `refuse`, what the app does not publish fails the create; readOnly stays ignored.
    let text = std::fs::read_to_string(&config).unwrap();
    let refusing = text.replacen("unsupported_attributes: ignore", "unsupported_attributes: refuse", 1);
    assert_ne!(refusing, text);
    std::fs::write(&config, refusing).unwrap();
    let (ok, okta) = check_with(&config, &["--idp", "okta"]);
    assert!(ok, "refusals are advice, not a broken configuration: {okta}");
    assert_verdicts(
        &okta,
        &[("User", "locale", "refuse"), ("User", "userName", "store"), ("User", "groups", "ignore")],
    );
    assert!(okta.contains("or set schema.unsupported_attributes: ignore"), "{okta}");

    let (ok, text) = check_with(&config, &["--idp", "onelogin"]);
    assert!(!ok && text.contains("entra") && text.contains("okta"), "{text}");
}

/// Starts `scim-proxy run` on free ports and waits (at most 30 s) for it to exit; `None` when
/// it is still running then (it is stopped).
fn run_until_exit(config: &std::path::Path) -> Option<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["run", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("SCIM_TOKEN", "check-token-0123456789abcdef")
        .env("ACME_API_KEY", "key")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), text))
}

#[test]
fn values_that_once_panicked_or_failed_every_request_stop_the_start_naming_the_key() {
    let cases = [
        ("request_timeout: 30s", "request_timeout: 0s", "apps[0].request_timeout: must be from 100ms to 1h"),
        ("request_timeout: 30s", "request_timeout: 9999999999h", "apps[0].request_timeout: must be from 100ms to 1h"),
        ("request_timeout: 30s", "request_timeout: 18446744073709551615h", "is too long"),
        ("ttl: 1h", "ttl: 9000000h", "apps[0].cache.ttl: must be from 1s to 8760h"),
        (
            "base_url: \"${env.ACME_BASE_URL:-http://127.0.0.1:7070/api/v1}\"",
            "base_url: \"http://hr:S3cret!pass@127.0.0.1:7070/api/v1\"",
            "apps[0].legacy.base_url: must not hold credentials (user:password@): put them in legacy.auth",
        ),
    ];
    for (from, to, says) in cases {
        let dir = project(None);
        let path = dir.path().join("proxy.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "proxy.yaml no longer has {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (ok, output) = run_until_exit(&path).unwrap_or_else(|| panic!("{to}: the proxy started"));
        assert!(!ok, "{to}: {output}");
        assert!(output.contains(says), "{to}: {output}");
        assert!(!output.contains("panicked") && !output.contains("S3cret!pass"), "{to}: {output}");
    }
}

#[test]
fn check_names_the_key_of_a_malformed_certificate_subject_or_a_wildcard_dns_name() {
    for (accepted, key, says) in [
        (r#"subjects: ["CN=a,,O=b"]"#, "apps[0].auth.client_certificates.subjects[0]", "no attribute"),
        (r#"subjects: ["CN=ok", "CN=a;O=b"]"#, "apps[0].auth.client_certificates.subjects[1]", r"escape it as \;"),
        (r#"subjects: ["CN=#0C03616263"]"#, "apps[0].auth.client_certificates.subjects[0]", "#"),
        (r#"subjects: ["Name=x"]"#, "apps[0].auth.client_certificates.subjects[0]", "unknown attribute type"),
        (r#"subjects: ['CN=a\x']"#, "apps[0].auth.client_certificates.subjects[0]", r"\x"),
        (r#"dns_names: ["*.example.com"]"#, "apps[0].auth.client_certificates.dns_names[0]", "wildcard"),
    ] {
        let dir = project(None);
        let path = dir.path().join("proxy.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let tokens = "      bearer_tokens:\n        - \"${env.SCIM_TOKEN}\"\n";
        assert!(text.contains(tokens));
        let text = text.replacen(tokens, &format!("      client_certificates:\n        {accepted}\n"), 1);
        let text = format!("{text}\ntls:\n  cert: tls.crt\n  key: tls.key\n  client_ca: client-ca.pem\n");
        std::fs::write(&path, text).unwrap();
        let (ok, text) = check(&path);
        assert!(!ok, "{accepted}: {text}");
        assert!(text.contains(&format!("proxy.yaml: {key}")) && text.contains(says), "{accepted}: {text}");
    }
}
