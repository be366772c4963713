//! The checks run after deserialization: relations between keys, and the range of every duration and size.

use std::time::Duration;

use super::duration::{DAY, HOUR, written};
use super::server::{MAX_BODY_BYTES, MAX_SCRIPT_BYTES};
use super::{Config, KeyProblem, MAX_RECENT_REQUESTS, weak_secret};

impl Config {
    /// Checks the relations between fields that deserialization alone cannot; run by every
    /// load, after `${…}` expansion. The first problem found is the one reported.
    pub(crate) fn validate(&self) -> Result<(), KeyProblem> {
        // Checked here, not only when the logger is installed, so that `check` refuses what
        // `run` would.
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(KeyProblem::new("log.level", format!("{:?} is not a valid filter: {error}", self.log.level)));
        }
        if self.apps.is_empty() {
            return Err(KeyProblem::new("apps", "no app is configured: add at least one entry under apps"));
        }
        self.validate_ranges()?;
        self.traces.validate().map_err(|problem| problem.under("traces"))?;
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(KeyProblem::new(
                "admin_listen",
                "must differ from listen: give the admin listener its own port",
            ));
        }
        if let Some(problem) = self.admin.token().and_then(|t| weak_secret(t.expose())) {
            return Err(KeyProblem::new(
                "admin.token",
                format!("{problem}, e.g. token: \"${{env.SCIM_ADMIN_TOKEN}}\""),
            ));
        }
        if self.admin.recent_requests > MAX_RECENT_REQUESTS {
            return Err(KeyProblem::new(
                "admin.recent_requests",
                format!("must be at most {MAX_RECENT_REQUESTS}: each kept request holds up to 16 KiB"),
            ));
        }
        self.metrics.validate().map_err(|problem| problem.under("metrics"))?;
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(KeyProblem::new("server.max_connections", "must be between 1 and 1000000"));
        }
        if !(1..=4096).contains(&self.admin.max_connections) {
            return Err(KeyProblem::new("admin.max_connections", "must be between 1 and 4096"));
        }
        if !(1024..=MAX_BODY_BYTES).contains(&self.server.max_body_bytes) {
            return Err(KeyProblem::new(
                "server.max_body_bytes",
                format!("must be between 1024 and {MAX_BODY_BYTES} bytes (1 GiB)"),
            ));
        }
        if !(1000..=10_000_000).contains(&self.server.max_json_nodes) {
            return Err(KeyProblem::new("server.max_json_nodes", "must be between 1000 and 10000000"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.server.idle_timeout) {
            return Err(KeyProblem::new("server.idle_timeout", "must be between 1s and 1h"));
        }
        if !(1..=1000).contains(&self.server.max_concurrent_streams) {
            return Err(KeyProblem::new("server.max_concurrent_streams", "must be between 1 and 1000"));
        }
        if let Some(tls) = &self.tls {
            if tls.reload_interval.as_millis() > 0 && tls.reload_interval < Duration::from_millis(100) {
                return Err(KeyProblem::new(
                    "tls.reload_interval",
                    "must be at least 100ms (or 0s to turn reloading off)",
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut paths: Vec<(usize, &str)> = Vec::new();
        for (i, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            if app.name.is_empty() || !app.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(KeyProblem::new(key("name"), "use letters, digits, '-' and '_' only"));
            }
            if !names.insert(app.name.as_str()) {
                return Err(KeyProblem::new(
                    key("name"),
                    format!("{:?} is used by another app: app names must be unique", app.name),
                ));
            }
            let bp = app.base_path.as_str();
            if !bp.starts_with('/')
                || (bp.len() > 1 && bp.ends_with('/'))
                || bp.contains("//")
                || bp.contains(['?', '#', ' '])
            {
                return Err(KeyProblem::new(
                    key("base_path"),
                    format!("{bp:?} must start with '/', not end with '/', e.g. /scim/v2"),
                ));
            }
            if let Some((j, _)) = paths.iter().find(|(_, p)| *p == bp) {
                return Err(KeyProblem::new(
                    key("base_path"),
                    format!("{bp:?} is also the base path of apps[{j}]: each app needs its own"),
                ));
            }
            paths.push((i, bp));
            app.auth.validate(self.tls.as_ref()).map_err(|problem| problem.under(&key("auth")))?;
            app.legacy.validate().map_err(|problem| problem.under(&key("legacy")))?;
            if app.list.max_results == 0 || app.list.default_count > app.list.max_results {
                return Err(KeyProblem::new(
                    key("list.default_count"),
                    "must be at most list.max_results, which must be at least 1",
                ));
            }
            if app.list.max_scan < app.list.max_results {
                return Err(KeyProblem::new(key("list.max_scan"), "must be at least list.max_results"));
            }
        }
        Ok(())
    }

    /// Checks every duration and size against its range, so that no value
    /// can stop every request (a zero timeout), overflow a deadline (`Instant + Duration`) or
    /// make a library panic (moka's builder past 1000 years, a semaphore past its permits).
    fn validate_ranges(&self) -> Result<(), KeyProblem> {
        let server = &self.server;
        check_duration("server.header_read_timeout", server.header_read_timeout, (100, HOUR))?;
        check_duration("server.shutdown_grace", server.shutdown_grace, (0, HOUR))?;
        check_duration("server.shutdown_delay", server.shutdown_delay, (0, HOUR))?;
        check_interval("server.script_reload_interval", server.script_reload_interval)?;
        check_interval("server.health_interval", server.health_interval)?;
        check_interval("server.config_reload_interval", server.config_reload_interval)?;
        check_size("script.max_bytes", self.script.max_bytes, (1024, MAX_SCRIPT_BYTES))?;
        check_size("script.max_functions", self.script.max_functions, (1, 100_000))?;
        // Lines waiting longer are lost when the process is killed, and an operator watching
        // the log waits for them.
        check_duration("log.flush_interval", self.log.flush_interval, (0, 10_000))?;
        check_duration("script.compile_timeout", self.script.compile_timeout, (100, 10 * 60_000))?;
        if let Some(tls) = &self.tls {
            check_interval("tls.reload_interval", tls.reload_interval)?;
        }
        for (i, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            let duration = |field: &str, value: Duration, range| check_duration(&key(field), value, range);
            let size = |field: &str, value: usize, range| check_size(&key(field), value, range);
            // The script threads' stack is sized for the nesting a script reaches within 1 h.
            duration("request_timeout", app.request_timeout, (100, HOUR))?;
            duration("legacy.timeout", app.legacy.timeout, (10, HOUR))?;
            duration("legacy.connect_timeout", app.legacy.connect_timeout, (10, HOUR))?;
            duration("legacy.retry.base_delay", app.legacy.retry.base_delay, (0, HOUR))?;
            duration("legacy.retry.max_delay", app.legacy.retry.max_delay, (0, HOUR))?;
            duration("legacy.breaker.open_for", app.legacy.breaker.open_for, (0, DAY))?;
            // moka's builder panics past 1000 years; a day of entries not seen again is plenty.
            duration("cache.ttl", app.cache.ttl, (1000, 365 * DAY))?;
            let entries = usize::try_from(app.cache.max_entries).unwrap_or(usize::MAX);
            size("cache.max_entries", entries, (1, 100_000_000))?;
            size("legacy.max_response_bytes", app.legacy.max_response_bytes, (1024, 1 << 30))?;
            // Each script call running holds a script thread, which reserves its stack.
            size("max_concurrent_scripts", app.max_concurrent_scripts, (1, 1024))?;
            size("max_queued_requests", app.max_queued_requests, (0, 1_000_000))?;
            size("list.max_results", app.list.max_results, (1, 100_000))?;
            size("list.max_scan", app.list.max_scan, (1, 100_000_000))?;
            size("bulk.max_operations", app.bulk.max_operations, (1, 100_000))?;
            size("bulk.max_payload_bytes", app.bulk.max_payload_bytes, (1, 1 << 30))?;
            if let Some(oauth2) = app.legacy.auth.as_ref().and_then(|auth| auth.oauth2.as_ref()) {
                duration("legacy.auth.oauth2.refresh_before", oauth2.refresh_before, (0, DAY))?;
                size("legacy.auth.oauth2.max_response_bytes", oauth2.max_response_bytes, (1024, 16 << 20))?;
            }
            if let Some(jwt) = &app.auth.jwt {
                duration("auth.jwt.jwks_max_age", jwt.jwks_max_age, (1000, 30 * DAY))?;
                duration("auth.jwt.leeway", jwt.leeway, (0, DAY))?;
                size("auth.jwt.jwks_max_bytes", jwt.jwks_max_bytes, (1024, 16 << 20))?;
            }
            // Refused rather than redacted: a URL is printed by logs, errors and `/readyz`, and
            // every place would have to remember to redact it; `legacy.auth` keeps secrets
            // out of URLs and sends them only as the header they belong in.
            let urls = [
                ("legacy.base_url", Some(&app.legacy.base_url), "put them in legacy.auth (basic, bearer or oauth2)"),
                (
                    "legacy.auth.oauth2.token_url",
                    app.legacy.auth.as_ref().and_then(|a| a.oauth2.as_ref()).map(|o| &o.token_url),
                    "put them in legacy.auth.oauth2.client_id and client_secret",
                ),
                (
                    "auth.jwt.jwks_url",
                    app.auth.jwt.as_ref().and_then(|j| j.jwks_url.as_ref()),
                    "a JWKS document is public: remove them",
                ),
            ];
            for (field, url, fix) in urls {
                if url.is_some_and(holds_credentials) {
                    return Err(KeyProblem::new(
                        key(field),
                        format!("must not hold credentials (user:password@): {fix}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks that a duration lies from `min` to `max` milliseconds; the error names the key and the range.
pub(super) fn check_duration(key: &str, value: Duration, (min, max): (u64, u64)) -> Result<(), KeyProblem> {
    let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    if (min..=max).contains(&ms) {
        return Ok(());
    }
    Err(KeyProblem::new(key, format!("must be from {} to {}", written(min), written(max))))
}

/// Checks how often something is done: `0s` (never), or from 10ms to a day.
fn check_interval(key: &str, value: Duration) -> Result<(), KeyProblem> {
    let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 || (10..=DAY).contains(&ms) {
        return Ok(());
    }
    Err(KeyProblem::new(key, format!("must be 0s (off) or from 10ms to {}", written(DAY))))
}

/// Checks that a count or a number of bytes lies from `min` to `max`.
pub(super) fn check_size(key: &str, value: usize, (min, max): (usize, usize)) -> Result<(), KeyProblem> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(KeyProblem::new(key, format!("must be from {min} to {max}")))
}

/// Whether a URL carries a user name or a password (`user:password@`).
pub(super) fn holds_credentials(url: &url::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, app_with, legacy_at, legacy_with, refusal, vars};
    use super::*;

    #[test]
    fn every_duration_and_size_is_checked_against_its_range() {
        let server = |yaml: &str| MINIMAL.replacen("apps:", &format!("server:\n{yaml}apps:"), 1);
        let script = |yaml: &str| MINIMAL.replacen("apps:", &format!("script:\n{yaml}apps:"), 1);
        let cases: &[(String, &str, &str)] = &[
            // Values that once made every request fail, or panicked.
            (app_with("    request_timeout: 0s\n"), "apps[0].request_timeout", "must be from 100ms to 1h"),
            (app_with("    request_timeout: 9999999999h\n"), "apps[0].request_timeout", "must be from 100ms to 1h"),
            (app_with("    cache: {ttl: 9000000h}\n"), "apps[0].cache.ttl", "must be from 1s to 8760h"),
            (app_with("    cache: {ttl: 0s}\n"), "apps[0].cache.ttl", "must be from 1s to 8760h"),
            (app_with("    cache: {max_entries: 0}\n"), "apps[0].cache.max_entries", "must be from 1 to 100000000"),
            (app_with("    max_concurrent_scripts: 0\n"), "apps[0].max_concurrent_scripts", "must be from 1 to 1024"),
            (
                app_with("    max_concurrent_scripts: 18446744073709551615\n"),
                "apps[0].max_concurrent_scripts",
                "must be from 1 to 1024",
            ),
            (
                app_with("    max_queued_requests: 2000000\n"),
                "apps[0].max_queued_requests",
                "must be from 0 to 1000000",
            ),
            (app_with("    list: {max_results: 1000000}\n"), "apps[0].list.max_results", "must be from 1 to 100000"),
            (app_with("    bulk: {max_operations: 0}\n"), "apps[0].bulk.max_operations", "must be from 1 to 100000"),
            (legacy_with("      timeout: 0s\n"), "apps[0].legacy.timeout", "must be from 10ms to 1h"),
            (
                legacy_with("      connect_timeout: 100000h\n"),
                "apps[0].legacy.connect_timeout",
                "must be from 10ms to 1h",
            ),
            (
                legacy_with("      max_response_bytes: 10\n"),
                "apps[0].legacy.max_response_bytes",
                "must be from 1024 to 1073741824",
            ),
            (
                legacy_with("      breaker: {open_for: 48h}\n"),
                "apps[0].legacy.breaker.open_for",
                "must be from 0s to 24h",
            ),
            (
                MINIMAL.replace(
                    "      headers:\n        X-Api-Key: \"${env.TEST_KEY}\"\n",
                    "      auth:\n        oauth2: {token_url: \"https://login.example/token\", client_id: id, client_secret: \"${env.TEST_KEY}\", max_response_bytes: 1000}\n",
                ),
                "apps[0].legacy.auth.oauth2.max_response_bytes",
                "must be from 1024 to 16777216",
            ),
            (
                MINIMAL.replace(
                    "      bearer_tokens:",
                    "      jwt: {issuer: https://idp, audiences: [scim], algorithms: [RS256], jwks_url: \"https://idp.example/keys\", jwks_max_bytes: 1073741824}\n      bearer_tokens:",
                ),
                "apps[0].auth.jwt.jwks_max_bytes",
                "must be from 1024 to 16777216",
            ),
            (server("  header_read_timeout: 0s\n"), "server.header_read_timeout", "must be from 100ms to 1h"),
            (server("  shutdown_grace: 2h\n"), "server.shutdown_grace", "must be from 0s to 1h"),
            (server("  health_interval: 5ms\n"), "server.health_interval", "must be 0s (off) or from 10ms to 24h"),
            (server("  script_reload_interval: 25h\n"), "server.script_reload_interval", "must be 0s (off)"),
            (script("  max_bytes: 100\n"), "script.max_bytes", "must be from 1024 to 16777216"),
            (script("  max_bytes: 100000000\n"), "script.max_bytes", "must be from 1024 to 16777216"),
            (script("  max_functions: 0\n"), "script.max_functions", "must be from 1 to 100000"),
            (script("  compile_timeout: 50ms\n"), "script.compile_timeout", "must be from 100ms to 10m"),
            (script("  compile_timeout: 1h\n"), "script.compile_timeout", "must be from 100ms to 10m"),
            (script("  max_size: 1000\n"), "script.max_size", "unknown field `max_size`"),
        ];
        for (text, key, says) in cases {
            let (got_key, detail) = refusal(text);
            assert_eq!((got_key.as_str(), detail.contains(says)), (*key, true), "{detail}\n{text}");
        }
        // The ends of each range are accepted, and 0s turns an interval off.
        for yaml in [
            "    request_timeout: 100ms\n",
            "    request_timeout: 1h\n",
            "    cache: {ttl: 1s, max_entries: 1}\n",
            "    cache: {ttl: 8760h}\n",
        ] {
            Config::parse(&app_with(yaml), "proxy.yaml", &vars()).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        }
        Config::parse(&server("  health_interval: 0s\n  script_reload_interval: 10ms\n"), "proxy.yaml", &vars())
            .unwrap();
        let defaults = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap().script;
        assert_eq!((defaults.max_bytes, defaults.max_functions), (256 * 1024, 1000));
        assert_eq!(defaults.compile_timeout, Duration::from_secs(10));
        let ends = "  max_bytes: 16777216\n  max_functions: 100000\n  compile_timeout: 10m\n";
        let set = Config::parse(&script(ends), "proxy.yaml", &vars()).unwrap().script;
        assert_eq!((set.max_bytes, set.max_functions), (16 * 1024 * 1024, 100_000));
        Config::parse(&script("  max_bytes: 1024\n  max_functions: 1\n  compile_timeout: 100ms\n"), "p.yaml", &vars())
            .unwrap();
    }

    #[test]
    fn credentials_inside_urls_are_refused_with_where_they_belong() {
        let oauth2 = |url: &str| {
            MINIMAL.replace(
                "      headers:\n        X-Api-Key: \"${env.TEST_KEY}\"\n",
                &format!(
                    "      auth:\n        oauth2: {{token_url: \"{url}\", client_id: id, client_secret: \"${{env.TEST_KEY}}\"}}\n"
                ),
            )
        };
        let jwks = |url: &str| {
            MINIMAL.replace(
                "      bearer_tokens:",
                &format!(
                    "      jwt: {{issuer: https://idp, audiences: [scim], algorithms: [RS256], jwks_url: \"{url}\"}}\n      bearer_tokens:"
                ),
            )
        };
        let cases = [
            (legacy_at("http://hr:Hunter2@127.0.0.1:7070/api"), "apps[0].legacy.base_url", "put them in legacy.auth"),
            (legacy_at("http://token@127.0.0.1:7070/api"), "apps[0].legacy.base_url", "put them in legacy.auth"),
            (oauth2("https://id:secret@login.example/token"), "apps[0].legacy.auth.oauth2.token_url", "client_secret"),
            (jwks("https://u:p@idp.example/keys"), "apps[0].auth.jwt.jwks_url", "public"),
        ];
        for (text, key, says) in &cases {
            let (got_key, detail) = refusal(text);
            assert_eq!(got_key, *key, "{detail}");
            assert!(detail.contains("must not hold credentials") && detail.contains(says), "{detail}");
            assert!(!detail.contains("Hunter2") && !detail.contains("secret@"), "{detail}");
        }
        Config::parse(&oauth2("https://login.example/token"), "proxy.yaml", &vars()).unwrap();
        Config::parse(&jwks("https://idp.example/keys"), "proxy.yaml", &vars()).unwrap();
    }

    #[test]
    fn rejects_duplicate_names_and_base_paths() {
        let two = format!("{MINIMAL}{}", MINIMAL.replace("apps:\n", ""));
        let err = Config::parse(&two, "p.yaml", &vars()).unwrap_err().to_string();
        assert!(err.contains("apps[1].name"), "{err}");
        let two = two.replacen("name: acme", "name: other", 1);
        let err = Config::parse(&two, "p.yaml", &vars()).unwrap_err().to_string();
        assert!(err.contains("apps[1].base_path"), "{err}");
    }
}
