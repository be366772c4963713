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
    // The demo defines health(): readiness covers Acme, and check has nothing to warn of.
    assert!(text.contains("health/0") && !text.contains("warning"), "{text}");
}

#[test]
fn check_whose_reader_goes_away_ends_quietly() {
    let dir = project(None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(["check", "--config"])
        .arg(dir.path().join("proxy.yaml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `check … | head -0`: the reader is gone before the first line is written.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn check_warns_when_readiness_does_not_cover_the_legacy_app() {
    let demo = std::fs::read_to_string(repo_file("scripts/demo.rhai")).unwrap();
    let dir = project(Some(&demo.replace("fn health() {", "fn unused_health() {")));
    let (ok, text) = check(&dir.path().join("proxy.yaml"));
    assert!(ok, "a warning, not a failure: {text}");
    assert!(
        text.contains("app acme: warning: the script defines no health(): /readyz does not cover the legacy app"),
        "{text}"
    );
    let dir = project(None);
    let path = dir.path().join("proxy.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replacen("server:\n", "server:\n  health_interval: 0s\n", 1);
    std::fs::write(&path, text).unwrap();
    let (ok, text) = check(&path);
    assert!(ok && text.contains("warning: server.health_interval is 0s"), "{text}");
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

/// Runs `scim-proxy` with `args` in `dir` (no `SCIM_PROXY_CONFIG` unless given in `env`) until
/// it exits; answers its exit code, stdout and stderr.
fn scim_proxy_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .args(args)
        .current_dir(dir)
        .env_remove("SCIM_PROXY_CONFIG")
        .env_remove("RUST_LOG")
        .env("SCIM_TOKEN", "check-token-0123456789abcdef")
        .env("ACME_API_KEY", "key")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn a_configuration_that_cannot_be_read_is_one_line_with_its_cause_once_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().unwrap();
    let cause = "(No such file or directory (os error 2))";
    // Arguments, environment, the file the error names.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        (&["run", "--config", missing], &[], missing),
        (&["--config", missing], &[], missing),
        // A bare `scim-proxy` reads the file SCIM_PROXY_CONFIG names, as `run` does.
        (&[], &[("SCIM_PROXY_CONFIG", missing)], missing),
        (&[], &[], "proxy.yaml"),
        (&["check", "--config", missing], &[], missing),
        (&["test", "--config", missing], &[], missing),
        (&["demo", "--config", missing, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], &[], missing),
    ];
    for (args, env, file) in cases {
        let (code, _, stderr) = scim_proxy_in(dir.path(), args, env);
        assert_eq!(stderr, format!("error: {file}: cannot read {cause}\n"), "{args:?} {env:?}");
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
    }
}

#[test]
fn an_address_in_use_is_one_line_with_its_cause_once_and_exit_code_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = project(None);
    let config = dir.path().join("proxy.yaml");
    let config = config.to_str().unwrap();
    let expected = format!("error: cannot listen on {addr} (Address already in use (os error 98))");
    let cases: [&[&str]; 3] = [
        &["run", "--config", config, "--listen", &addr, "--admin-listen", "127.0.0.1:0"],
        &["run", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", &addr],
        &[
            "demo",
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--legacy-listen",
            &addr,
        ],
    ];
    for args in cases {
        let (code, stdout, stderr) = scim_proxy_in(dir.path(), args, &[]);
        assert_eq!(stderr.lines().last(), Some(expected.as_str()), "{args:?}: {stderr}");
        assert_eq!(format!("{stdout}{stderr}").matches("Address already in use").count(), 1, "{args:?}: {stderr}");
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
}

#[test]
fn an_invalid_configuration_is_one_line_naming_file_key_and_fix() {
    let dir = project(None);
    let path = dir.path().join("proxy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("request_timeout: 30s", "request_timeout: 0s", 1)).unwrap();
    let config = path.to_str().unwrap();
    let expected = format!("error: {config}: apps[0].request_timeout: must be from 100ms to 1h\n");
    for (args, exit_code) in [
        (&["run", "--config", config][..], 2),
        (&["demo", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"][..], 2),
        (&["test", "--config", config][..], 2),
        // `check` ran, and what it found is the answer.
        (&["check", "--config", config][..], 1),
    ] {
        let (code, _, stderr) = scim_proxy_in(dir.path(), args, &[]);
        assert_eq!(stderr, expected, "{args:?}");
        assert_eq!(code, Some(exit_code), "{args:?}: {stderr}");
    }
}

/// The exit codes `scim-proxy --help` lists, word for word in the README's "Command line".
#[test]
fn the_exit_codes_are_in_help_and_in_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let (code, help, _) = scim_proxy_in(dir.path(), &["--help"], &[]);
    assert_eq!(code, Some(0));
    let codes: Vec<&str> = help.lines().skip_while(|line| *line != "Exit codes:").collect();
    assert!(codes.len() > 4 && codes.iter().any(|l| l.starts_with("  2  ")), "{help}");
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let section = readme.split("\n## Command line\n").nth(1).and_then(|rest| rest.split("\n## ").next());
    let section = section.expect("README.md has a section \"Command line\"");
    let lines: Vec<&str> = section.lines().collect();
    assert!(
        lines.windows(codes.len()).any(|window| window == codes),
        "README.md's \"Command line\" lacks:\n{}",
        codes.join("\n")
    );
}

/// The demo from a directory outside the repository, with no proxy.yaml: the configuration and
/// script built into the binary serve a create and a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_its_built_in_configuration_where_there_is_no_proxy_yaml() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!dir.path().starts_with(env!("CARGO_MANIFEST_DIR")));
    let command = crate::support::demo_command(dir.path());
    let demo = tokio::task::spawn_blocking(move || crate::support::DemoProcess::start(command)).await.unwrap();
    let source = demo.printed("Configuration: ").unwrap_or_default();
    assert!(source.starts_with("built in (proxy.yaml and scripts/demo.rhai as shipped"), "{:?}", demo.lines);
    let endpoint = demo.printed("SCIM endpoint: ").unwrap().to_owned();
    let token = demo.printed("Bearer token: ").unwrap().to_owned();
    let client = reqwest::Client::new();
    let created = crate::support::send_scim(
        &client,
        &token,
        reqwest::Method::POST,
        &format!("{endpoint}/Users"),
        Some(crate::support::user("anywhere")),
    )
    .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text);
    let location = created.header("location").unwrap().to_owned();
    let read = crate::support::send_scim(&client, &token, reqwest::Method::GET, &location, None).await;
    assert_eq!(read.status.as_u16(), 200, "{}", read.text);
    assert_eq!(read.body["userName"], "anywhere", "{}", read.text);
}

/// A proxy.yaml in the working directory is the demo's configuration, `--config` wins over it,
/// and the first line printed names the file used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_takes_proxy_yaml_from_the_working_directory_and_config_over_it() {
    let dir = project(None);
    let local = dir.path().join("proxy.yaml");
    let text = std::fs::read_to_string(&local).unwrap();
    assert!(text.contains("base_path: /scim/v2"));
    std::fs::write(&local, text.replacen("base_path: /scim/v2", "base_path: /local/v2", 1)).unwrap();
    let given = dir.path().join("given.yaml");
    std::fs::write(&given, text.replacen("base_path: /scim/v2", "base_path: /given/v2", 1)).unwrap();
    for (config, base_path) in [(None, "/local/v2"), (Some(given.clone()), "/given/v2")] {
        let mut command = crate::support::demo_command(dir.path());
        if let Some(config) = &config {
            command.arg("--config").arg(config);
        }
        let demo = tokio::task::spawn_blocking(move || crate::support::DemoProcess::start(command)).await.unwrap();
        let named = config.unwrap_or_else(|| dir.path().join("proxy.yaml"));
        assert_eq!(demo.printed("Configuration: "), Some(named.to_str().unwrap()), "{:?}", demo.lines);
        let endpoint = demo.printed("SCIM endpoint: ").unwrap();
        assert!(endpoint.ends_with(base_path), "{:?}", demo.lines);
    }
}

/// With `log.format: json`, a start that fails writes JSON lines only: whatever stops it (an
/// unknown key, a variable not set, a script that does not compile, an address in use), every
/// line of stderr parses strictly as one JSON object, and the failure is in one of them.
#[test]
fn with_json_logs_a_failed_start_writes_json_lines_only() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&str, Option<&str>, &str, &str); 4] = [
        ("unknown key", None, "", "unknown field `bogus_key`"),
        ("variable not set", None, "SCIM_TOKEN", "SCIM_TOKEN is not set"),
        ("script", Some("fn get_user(id) {\n    let x = ;\n}\n"), "", "demo.rhai"),
        ("address in use", None, "", "cannot listen"),
    ];
    for (case, script, unset, says) in cases {
        let dir = project(script);
        let path = dir.path().join("proxy.yaml");
        let mut text = std::fs::read_to_string(&path).unwrap().replacen("format: pretty", "format: json", 1);
        if case == "unknown key" {
            text.push_str("\nbogus_key: 1\n");
        }
        std::fs::write(&path, text).unwrap();
        let listen = if case == "address in use" { taken.as_str() } else { "127.0.0.1:0" };
        let mut command = Command::new(env!("CARGO_BIN_EXE_scim-proxy"));
        command
            .args(["run", "--listen", listen, "--admin-listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env("SCIM_TOKEN", "check-token-0123456789abcdef")
            .env("ACME_API_KEY", "key")
            .env_remove("RUST_LOG");
        if !unset.is_empty() {
            command.env_remove(unset);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{case}");
        assert!(output.stdout.is_empty(), "{case}: {}", String::from_utf8_lossy(&output.stdout));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.is_empty(), "{case}");
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|line| match serde_json::from_str::<crate::observability::Strict>(line) {
                Ok(strict) => strict.0,
                Err(e) => panic!("{case}: not a JSON line ({e}): {line}"),
            })
            .collect();
        let failure = lines.last().unwrap();
        assert_eq!(
            (&failure["level"], &failure["message"]),
            (&"ERROR".into(), &"cannot run".into()),
            "{case}: {stderr}"
        );
        assert!(failure["error"].as_str().is_some_and(|e| e.contains(says)), "{case}: {stderr}");
        assert!(failure["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{case}: {stderr}");
    }
}

/// What `run` refuses when it builds an app or the listener's TLS, `check` refuses too, by the
/// same code: a JWT key file that is not there, a certificate that cannot be read.
#[test]
fn check_refuses_what_run_refuses_when_it_builds_the_app_and_the_listener() {
    let cases = [
        (
            "      bearer_tokens:\n",
            "      jwt: {issuer: \"https://idp.example\", audiences: [scim], algorithms: [RS256], keys: [{pem_file: missing-key.pem}]}\n      bearer_tokens:\n",
            "missing-key.pem",
        ),
        ("apps:\n", "tls: {cert: missing.crt, key: missing.key}\napps:\n", "missing.crt"),
    ];
    for (from, to, says) in cases {
        let dir = project(None);
        let path = dir.path().join("proxy.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "proxy.yaml no longer has {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (ok, output) = run_until_exit(&path).unwrap_or_else(|| panic!("{to}: the proxy started"));
        assert!(!ok && output.contains(says), "run: {to}: {output}");
        let (ok, output) = check(&path);
        assert!(!ok && output.contains(says), "check: {to}: {output}");
    }
}
