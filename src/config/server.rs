//! The listeners' sections: `server` (SCIM listener limits), `admin`, `script` bounds and `tls`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Secret, duration, secs};

/// The most requests `admin.recent_requests` may keep per app.
pub(crate) const MAX_RECENT_REQUESTS: usize = 10_000;
/// The default `server.max_body_bytes`, and `bulk.max_payload_bytes`'s.
pub(super) const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest `server.max_body_bytes`.
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024 * 1024;
/// The largest `script.max_bytes`: compiling 16 MiB of the worst statements takes hours.
pub(super) const MAX_SCRIPT_BYTES: usize = 16 * 1024 * 1024;

/// The admin listener's `/requests`: the last requests of each app, for the people who run it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The token `/requests` answers to (as a bearer token, or as the password of HTTP Basic
    /// with any user name); unset or empty turns `/requests` off. `/healthz`, `/readyz` and
    /// `/metrics` never ask for it.
    pub(crate) token: Option<Secret>,
    /// How many of each app's latest requests `/requests` keeps; `0` keeps none.
    pub(crate) recent_requests: usize,
    /// Connections the admin listener serves at once (1 to 4096). When it is full, the
    /// connection idle the longest is closed to make room, so probes are answered even then.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { token: None, recent_requests: 200, max_connections: 64 }
    }
}

impl AdminConfig {
    /// The token, when one is set (an empty one, as `${env.X:-}` gives, is none).
    pub(crate) fn token(&self) -> Option<&Secret> {
        self.token.as_ref().filter(|t| !t.expose().is_empty())
    }

    /// Whether requests are kept for `/requests`: a token to show them with and room for some.
    pub(crate) fn keeps_requests(&self) -> bool {
        self.token().is_some() && self.recent_requests > 0
    }
}

/// Limits of the SCIM listener, common to all apps.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body accepted; larger bodies are answered 413 before parsing. Also the
    /// request body bytes one connection may hold at once, over all its h2 streams.
    pub(crate) max_body_bytes: usize,
    /// Most JSON values (objects, arrays, strings, numbers, booleans, nulls) one request body
    /// may hold (1000 to 10,000,000); more is answered 413 while parsing. Each costs 42 to 340
    /// bytes once parsed, whatever its text.
    pub(crate) max_json_nodes: usize,
    /// Time a client has to send a complete request head: a new connection from its TCP
    /// accept (TLS handshake included), an idle one from its first byte. Both listeners.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open for the next request
    /// (HTTP/1.1 keep-alive and h2 alike; 1s to 1h). Both listeners.
    #[serde(with = "duration")]
    pub(crate) idle_timeout: Duration,
    /// h2 requests served at once on one connection (1 to 1000); more streams are refused.
    pub(crate) max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight requests before closing them.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Connections served at once by the SCIM listener; past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// On shutdown, how long `/readyz` fails while requests are still served, so that load
    /// balancers (a Kubernetes Service) stop sending new ones before the listener closes.
    #[serde(with = "duration")]
    pub shutdown_delay: Duration,
    /// Honour `X-Forwarded-Proto` / `X-Forwarded-Host` when building `meta.location`.
    pub(crate) trust_forwarded_headers: bool,
    /// How often scripts are checked for changes and reloaded; `0s` turns reloading off.
    #[serde(with = "duration")]
    pub(crate) script_reload_interval: Duration,
    /// How often each app's `health()` (when its script defines one) is called for `/readyz`.
    #[serde(with = "duration")]
    pub health_interval: Duration,
    /// How often `proxy.yaml` (and the secret files it references) is checked for changes
    /// and reloaded; `0s` turns it off (SIGHUP still reloads).
    #[serde(with = "duration")]
    pub(crate) config_reload_interval: Duration,
    /// Put the specifics of script and internal faults in the answer's detail instead of the
    /// generic text. Not a configuration key: only `scim-proxy test` sets it, for its report.
    #[serde(skip)]
    pub(crate) reveal_faults: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_json_nodes: 100_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 100,
            shutdown_grace: Duration::from_secs(20),
            shutdown_delay: Duration::ZERO,
            max_connections: 1024,
            trust_forwarded_headers: true,
            script_reload_interval: Duration::from_secs(2),
            health_interval: Duration::from_secs(10),
            config_reload_interval: Duration::from_secs(5),
            reveal_faults: false,
        }
    }
}

/// Bounds of a mapping script's source: what the proxy compiles at all, and for how long.
///
/// Rhai's compile time grows with the square of a script's statements and of its functions
/// (`docs/scripting.md`, *Limits*), so these are what keeps a huge file from holding a core.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScriptConfig {
    /// Largest script file, in bytes (1024 to 16 MiB); a larger one is refused before it is read.
    pub max_bytes: usize,
    /// Most functions (closures included) one script may define (1 to 100,000); the parser
    /// stops at the first one over.
    pub max_functions: usize,
    /// Longest a script's compile may take (100ms to 10m); past it the script is refused (at a
    /// reload, the previous one keeps serving).
    #[serde(with = "duration")]
    pub compile_timeout: Duration,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        Self {
            // 256 KiB: twelve times the largest example script; the worst text of that size
            // compiles in about 2.5 s (measured: `cargo bench --bench micro -- compile`).
            max_bytes: 256 * 1024,
            // Thirty times the example scripts' functions; 1000 compile in about 35 ms.
            max_functions: 1000,
            compile_timeout: Duration::from_secs(10),
        }
    }
}

/// TLS of the SCIM listener: the certificate it presents and the client certificates it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first; relative to the configuration file.
    pub(crate) cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub(crate) key: PathBuf,
    /// How often `cert` and `key` are checked for a new pair; `0s` turns reloading off.
    #[serde(default = "secs::<10>", with = "duration")]
    pub(crate) reload_interval: Duration,
    /// PEM bundle of the CAs whose client certificates are accepted; when set, clients are asked
    /// for a certificate (optional) and apps may authenticate by it.
    #[serde(default)]
    pub(crate) client_ca: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::testing::{MINIMAL, vars};
    use super::*;

    #[test]
    fn connection_limits_have_defaults_and_ranges_named_in_errors() {
        let config = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        let server = &config.server;
        assert_eq!((server.idle_timeout, server.max_concurrent_streams), (Duration::from_secs(60), 100));
        assert_eq!((server.max_json_nodes, config.admin.max_connections), (100_000, 64));
        let keys = "server:\n  idle_timeout: 5s\n  max_concurrent_streams: 8\n  max_json_nodes: 5000\nadmin:\n  max_connections: 4\n";
        let set = Config::parse(&format!("{keys}{MINIMAL}"), "proxy.yaml", &vars()).unwrap();
        assert_eq!((set.server.idle_timeout, set.server.max_concurrent_streams), (Duration::from_secs(5), 8));
        assert_eq!((set.server.max_json_nodes, set.admin.max_connections), (5000, 4));
        let cases = [
            ("server:\n  idle_timeout: 0s\n", "server.idle_timeout", "between 1s and 1h"),
            ("server:\n  idle_timeout: 2h\n", "server.idle_timeout", "between 1s and 1h"),
            ("server:\n  max_concurrent_streams: 0\n", "server.max_concurrent_streams", "between 1 and 1000"),
            ("server:\n  max_json_nodes: 10\n", "server.max_json_nodes", "between 1000 and 10000000"),
            ("server:\n  max_body_bytes: 2000000000\n", "server.max_body_bytes", "between 1024 and"),
            ("server:\n  max_connections: 0\n", "server.max_connections", "between 1 and 1000000"),
            ("admin:\n  max_connections: 0\n", "admin.max_connections", "between 1 and 4096"),
        ];
        for (section, key, detail) in cases {
            let err = Config::parse(&format!("{section}{MINIMAL}"), "proxy.yaml", &vars()).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(detail), "{err} should name {key} and say {detail}");
        }
    }

    #[test]
    fn the_admin_token_is_a_long_secret_reference_and_off_when_unset_or_empty() {
        let with = |admin: &str| format!("admin:\n{admin}{MINIMAL}");
        let off = Config::parse(MINIMAL, "proxy.yaml", &vars()).unwrap();
        assert_eq!((off.admin.token(), off.admin.recent_requests, off.admin.keeps_requests()), (None, 200, false));
        let empty = Config::parse(&with("  token: \"${env.UNSET_ADMIN_X:-}\"\n"), "proxy.yaml", &vars()).unwrap();
        assert!(empty.admin.token().is_none() && !empty.admin.keeps_requests());
        let mut v = vars();
        v.set("ADMIN", "an-admin-token-0123456789");
        let on = Config::parse(&with("  token: \"${env.ADMIN}\"\n  recent_requests: 5\n"), "p.yaml", &v).unwrap();
        assert_eq!(on.admin.token().map(Secret::expose), Some("an-admin-token-0123456789"));
        assert!(on.admin.keeps_requests() && on.admin.recent_requests == 5);
        assert!(!format!("{:?}", on.admin).contains("0123456789"), "the token is never printed");
        let cases = [
            ("  token: short\n", "admin.token", "shorter than 16 characters"),
            (
                "  token: an-admin-token-0123456789\n  recent_requests: 100000\n",
                "admin.recent_requests",
                "at most 10000",
            ),
            ("  tokn: an-admin-token-0123456789\n", "admin", "unknown field `tokn`"),
        ];
        for (admin, key, detail) in cases {
            let err = Config::parse(&with(admin), "proxy.yaml", &vars()).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(detail), "{err} should name {key} and say {detail}");
        }
    }
}
