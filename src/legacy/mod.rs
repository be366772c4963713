//! The HTTP client of one app's in-house API: pooled, confined to its base URL, bounded in time and size.
//!
//! May import: the foundation only (`config`, `observe`, `scim`).

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod breaker;
mod client;
mod plain;
mod retry;
mod tls;
pub(crate) mod path;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::config::RetryConfig;
use crate::legacy::auth::{Credentials, TokenError};
use crate::legacy::breaker::Breaker;

pub(crate) use client::keep_connections_on_this_thread;
pub(crate) use retry::retry_after;

/// A legacy call that did not produce an HTTP answer the script can read.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LegacyError {
    /// The script asked for a path the proxy refuses to send (escape attempts, bad characters).
    #[error("legacy {app}: refused path {}: {detail}", crate::scim::error::quoted(.path))]
    BadPath { app: String, path: String, detail: String },
    /// The script set a header name or value that is not valid HTTP.
    #[error("legacy {app}: refused header {}: {detail}", crate::scim::error::quoted(.name))]
    BadHeader { app: String, name: String, detail: String },
    /// The request body could not be encoded as JSON.
    #[error("legacy {app}: body is not encodable: {detail}")]
    BadBody { app: String, detail: String },
    /// No connection could be made (refused, DNS failure, unreachable, connect timeout):
    /// nothing was sent.
    #[error("legacy {app}: {method} {path}: cannot connect: {detail}")]
    Connect { app: String, method: String, path: String, detail: String },
    /// No complete answer within the timeout. For a `write` (any method but GET, HEAD and
    /// OPTIONS) the legacy app may or may not have made the change.
    #[error("legacy {app}: {method} {path}: no answer within {timeout_ms} ms")]
    Timeout { app: String, method: String, path: String, timeout_ms: u128, write: bool },
    /// The connection broke (reset, closed before the answer was complete). For a `write`
    /// the legacy app may or may not have made the change.
    #[error("legacy {app}: {method} {path}: the connection broke: {detail}")]
    Transport { app: String, method: String, path: String, detail: String, write: bool },
    /// What came back was not HTTP.
    #[error("legacy {app}: {method} {path}: the answer is not valid HTTP: {detail}")]
    Malformed { app: String, method: String, path: String, detail: String },
    /// The answer's body was larger than `legacy.max_response_bytes`.
    #[error("legacy {app}: {method} {path}: answer larger than {limit} bytes")]
    TooLarge { app: String, method: String, path: String, limit: usize },
    /// The TLS handshake with the legacy app failed: its certificate is not trusted, or it
    /// refused the proxy's.
    #[error("legacy {app}: {method} {path}: TLS with {} failed: {}", failure.host, failure.reason)]
    Tls { app: String, method: String, path: String, failure: Box<TlsFailure> },
    /// No access token could be had from the app's OAuth2 token endpoint.
    #[error("legacy {app}: cannot get an access token: {source}")]
    Token { app: String, source: TokenError },
    /// The app's circuit breaker is open: the call was not sent.
    #[error("legacy {app}: {method} {path}: not sent: the circuit breaker is open for {} ms more", retry_after.as_millis())]
    BreakerOpen { app: String, method: String, path: String, retry_after: Duration },
    /// The script handed an answer it cannot use to the proxy (`legacy.unexpected(response)`).
    #[error("legacy {app}: unexpected answer {status}{}: {reason}", if what.is_empty() { String::new() } else { format!(" to {what}") })]
    Unexpected {
        app: String,
        /// The legacy app's status.
        status: u16,
        /// What the script was doing, for the log.
        what: String,
        /// Why the answer is not usable, for the log.
        reason: String,
        /// The legacy app's own `Retry-After`, in seconds, when it sent a readable one.
        retry_after: Option<u64>,
    },
}

impl LegacyError {
    /// True when the call certainly did not reach the legacy app: refused before it was sent,
    /// no connection, no TLS session, no token, or an open circuit breaker.
    pub(crate) fn not_sent(&self) -> bool {
        matches!(
            self,
            Self::BadPath { .. }
                | Self::BadHeader { .. }
                | Self::BadBody { .. }
                | Self::Connect { .. }
                | Self::Tls { .. }
                | Self::Token { .. }
                | Self::BreakerOpen { .. }
        )
    }

    /// True when the legacy app may have made a change although the call failed.
    pub(crate) fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout { write: true, .. } | Self::Transport { write: true, .. })
    }
}

/// What failed in a TLS handshake with the legacy app.
#[derive(Debug, Clone)]
pub(crate) struct TlsFailure {
    /// `host` or `host:port` of the legacy app.
    pub host: String,
    /// In words an operator can act on, then the TLS library's own.
    pub reason: String,
    pub fault: TlsFault,
}

/// Which side of a TLS handshake gave up, as far as the proxy can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFault {
    /// The proxy does not trust the legacy app's certificate (unknown CA, wrong name, expired).
    Untrusted,
    /// The legacy app refused the proxy's client certificate, or wanted one and got none.
    ClientCertificateRefused,
    /// Anything else (no common protocol version or cipher suite, a broken handshake).
    Other,
}

/// The path of a legacy call: text (`/users/12`) or segments (`["users", id]`), which are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LegacyPath {
    Text(String),
    Segments(Vec<String>),
}

impl std::fmt::Display for LegacyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LegacyPath::Text(text) => f.write_str(text),
            LegacyPath::Segments(segments) => write!(f, "{segments:?}"),
        }
    }
}

/// A request a script makes to the legacy app.
#[derive(Debug, Clone)]
pub(crate) struct LegacyRequest {
    pub method: Method,
    pub path: LegacyPath,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    /// The script says repeating this call is harmless: a write that may be retried.
    /// GET, HEAD and OPTIONS always may.
    pub idempotent: bool,
}

/// What became of a call: its answer or fault, and how many times it was retried.
#[derive(Debug)]
pub(crate) struct Sent {
    pub result: Result<LegacyResponse, LegacyError>,
    pub retries: u32,
}

impl From<LegacyError> for Sent {
    fn from(fault: LegacyError) -> Self {
        Self { result: Err(fault), retries: 0 }
    }
}

/// What the legacy app answered.
#[derive(Debug, Clone)]
pub(crate) struct LegacyResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The client of one app's in-house API.
#[derive(Debug)]
pub(crate) struct LegacyClient {
    app: String,
    clients: client::Clients,
    recipe: Arc<client::Recipe>,
    credentials: Credentials,
    base: url::Url,
    headers: HeaderMap,
    timeout: Duration,
    max_response_bytes: usize,
    retry: RetryConfig,
    breaker: Arc<Breaker>,
}

/// A call ready to be sent, as many times as it is tried.
struct Prepared {
    method: Method,
    url: url::Url,
    call: Call,
    headers: HeaderMap,
    body: Option<Bytes>,
    /// Safe to send again after it may have reached the legacy app.
    idempotent: bool,
}

/// What a legacy error says about the call it failed: for messages and logs.
struct Call {
    method: String,
    path: String,
    /// Any method but GET, HEAD and OPTIONS: a change may have been made when it fails.
    write: bool,
}

/// `host` or `host:port` of a URL, as logs name the legacy app.
pub(crate) fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}
