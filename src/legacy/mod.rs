//! The HTTP client of one app's in-house API: pooled, confined to its base URL, bounded in time and size.

pub mod auth;
pub mod breaker;

use crate::observe::error_chain;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::config::{LegacyConfig, RetryConfig};
use crate::legacy::auth::{Authorization, Credentials, TokenError};
use crate::legacy::breaker::{Breaker, Verdict};
use crate::observe::trace::TraceHeaders;

/// A legacy call that did not produce an HTTP answer the script can read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LegacyError {
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
    pub fn not_sent(&self) -> bool {
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
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout { write: true, .. } | Self::Transport { write: true, .. })
    }
}

/// What failed in a TLS handshake with the legacy app.
#[derive(Debug, Clone)]
pub struct TlsFailure {
    /// `host` or `host:port` of the legacy app.
    pub host: String,
    /// In words an operator can act on, then the TLS library's own.
    pub reason: String,
    pub fault: TlsFault,
}

/// Which side of a TLS handshake gave up, as far as the proxy can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFault {
    /// The proxy does not trust the legacy app's certificate (unknown CA, wrong name, expired).
    Untrusted,
    /// The legacy app refused the proxy's client certificate, or wanted one and got none.
    ClientCertificateRefused,
    /// Anything else (no common protocol version or cipher suite, a broken handshake).
    Other,
}

/// The path of a legacy call: text (`/users/12`) or segments (`["users", id]`), which are encoded.
#[derive(Debug, Clone)]
pub enum LegacyPath {
    Text(String),
    Segments(Vec<String>),
}

/// A request a script makes to the legacy app.
#[derive(Debug, Clone)]
pub struct LegacyRequest {
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
pub struct Sent {
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
pub struct LegacyResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Characters encoded in one path segment: everything but unreserved and a few safe sub-delims.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'+')
    .add(b';')
    .add(b'=');

/// Encodes a value for use as one path segment.
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// The client of one app's in-house API.
#[derive(Debug)]
pub struct LegacyClient {
    app: String,
    client: reqwest::Client,
    credentials: Credentials,
    base: url::Url,
    headers: HeaderMap,
    timeout: Duration,
    max_response_bytes: usize,
    retry: RetryConfig,
    breaker: Arc<Breaker>,
}

/// Statuses after which a call safe to repeat is retried, and which count against the breaker.
fn transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A retry is not worth making with less time than this left before the deadline.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(50);

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

impl LegacyClient {
    /// Builds the pooled client of an app; runs once at start. `resolve` turns the paths of
    /// the configuration (CA and client certificate files) into paths to open.
    pub fn new(app: &str, config: &LegacyConfig, resolve: impl Fn(&Path) -> PathBuf) -> Result<Self, String> {
        let builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            // Scripts reach their own base URL only: a redirect could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("scim-proxy/", env!("CARGO_PKG_VERSION")));
        let client = with_tls(builder, config, resolve)?
            .build()
            .map_err(|e| format!("cannot build the legacy HTTP client: {}", error_chain(&e)))?;
        if config.insecure_skip_verify {
            tracing::warn!(
                app,
                host = config.base_url.host_str().unwrap_or(""),
                "legacy.insecure_skip_verify is on: the legacy app's TLS certificate is not checked, so anyone on the way can read and change its traffic"
            );
        }
        let credentials = Credentials::new(app, config.auth.as_ref())?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|e| format!("header {name}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut base = config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            app: app.to_owned(),
            client,
            credentials,
            base,
            headers,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
            retry: config.retry.clone(),
            breaker: Arc::new(Breaker::new(app, &config.breaker)),
        })
    }

    /// The app's circuit breaker.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Takes over another client's breaker (a configuration reload that kept the app's legacy
    /// base URL and breaker settings), so that an open breaker stays open.
    pub fn keep_breaker(&mut self, previous: &LegacyClient) {
        if previous.base == self.base && previous.breaker.config() == self.breaker.config() {
            self.breaker = previous.breaker.clone();
        }
    }

    /// The app's configured per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Builds the absolute URL of a call, refusing anything that would leave the base URL.
    pub fn url_for(&self, path: &LegacyPath, query: &[(String, String)]) -> Result<url::Url, LegacyError> {
        let relative = match path {
            LegacyPath::Segments(segments) => {
                // URL parsers treat "." and ".." (even percent-encoded) as navigation: no id is one.
                if let Some(dot) = segments.iter().find(|s| s.as_str() == "." || s.as_str() == "..") {
                    return Err(self.bad_path(dot, "a path segment cannot be '.' or '..'"));
                }
                segments.iter().map(|s| encode_segment(s)).collect::<Vec<_>>().join("/")
            }
            LegacyPath::Text(text) => {
                check_text_path(text).map_err(|detail| self.bad_path(text, detail))?;
                text.trim_start_matches('/').to_owned()
            }
        };
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path(), relative);
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        // Defence in depth: whatever the path was, the result stays under the base URL.
        if url.origin() != self.base.origin() || !url.path().starts_with(self.base.path()) {
            return Err(self.bad_path(&relative, "leaves the legacy base URL"));
        }
        Ok(url)
    }

    /// The part of a URL built by [`Self::url_for`] below the base URL: `/users/12?login=x`.
    pub fn relative(&self, url: &url::Url) -> String {
        let below = url.path().strip_prefix(self.base.path()).unwrap_or(url.path());
        match url.query() {
            Some(query) => format!("/{below}?{query}"),
            None => format!("/{below}"),
        }
    }

    fn bad_path(&self, path: &str, detail: &str) -> LegacyError {
        LegacyError::BadPath { app: self.app.clone(), path: path.to_owned(), detail: detail.to_owned() }
    }

    /// Sends one call and reads its whole answer, within `timeout` (the time left before the
    /// request's deadline), each try within the configured `legacy.timeout` as well.
    ///
    /// While the app's circuit breaker is open the call is not sent. A call safe to repeat is
    /// retried after a transient failure (see [`Self::retry_wait`]); a write that may have
    /// reached the legacy app never is, unless the script marked it idempotent.
    ///
    /// With OAuth2 credentials, a token is fetched first when none is fresh, and a 401 answer
    /// renews the token and sends the call once more: only a second 401 reaches the script.
    ///
    /// `trace` (the call's span, or the caller's passed on) goes as `traceparent` and `tracestate`.
    pub async fn send(
        &self,
        request: LegacyRequest,
        request_id: &str,
        trace: Option<&TraceHeaders>,
        timeout: Duration,
    ) -> Sent {
        let prepared = match self.prepare(request, request_id, trace) {
            Ok(prepared) => prepared,
            Err(fault) => return fault.into(),
        };
        let ticket = match self.breaker.admit() {
            Ok(ticket) => ticket,
            Err(retry_after) => {
                let Call { method, path, .. } = prepared.call;
                return LegacyError::BreakerOpen { app: self.app.clone(), method, path, retry_after }.into();
            }
        };
        let sent = self.send_prepared(&prepared, timeout).await;
        ticket.record(verdict(&sent.result));
        sent
    }

    /// Sends one call as [`Self::send`] does, whatever the circuit breaker says, and without
    /// telling it the outcome: for readiness checks, which must see the legacy app itself.
    pub async fn send_past_breaker(
        &self,
        request: LegacyRequest,
        request_id: &str,
        trace: Option<&TraceHeaders>,
        timeout: Duration,
    ) -> Sent {
        match self.prepare(request, request_id, trace) {
            Ok(prepared) => self.send_prepared(&prepared, timeout).await,
            Err(fault) => fault.into(),
        }
    }

    /// Checks a call and builds what every try of it sends.
    fn prepare(
        &self,
        request: LegacyRequest,
        request_id: &str,
        trace: Option<&TraceHeaders>,
    ) -> Result<Prepared, LegacyError> {
        let url = self.url_for(&request.path, &request.query)?;
        let write = !matches!(request.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let call = Call { method: request.method.to_string(), host: host_of(&url), path: url.path().to_owned(), write };
        let mut headers = self.headers.clone();
        for (name, value) in &request.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| LegacyError::BadHeader {
                app: self.app.clone(),
                name: name.clone(),
                detail: e.to_string(),
            })?;
            let value = HeaderValue::from_str(value).map_err(|e| LegacyError::BadHeader {
                app: self.app.clone(),
                name: name.clone(),
                detail: e.to_string(),
            })?;
            headers.append(header, value);
        }
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.append("x-request-id", id);
        }
        // The proxy's trace context replaces any a script set: the legacy app has one parent.
        if let Some(trace) = trace {
            headers.insert("traceparent", trace.traceparent.clone());
            match &trace.tracestate {
                Some(state) => headers.insert("tracestate", state.clone()),
                None => headers.remove("tracestate"),
            };
        }
        headers.append(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        let body = match &request.body {
            Some(body) => {
                let bytes = serde_json::to_vec(body)
                    .map_err(|e| LegacyError::BadBody { app: self.app.clone(), detail: e.to_string() })?;
                headers.append(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Some(Bytes::from(bytes))
            }
            None => None,
        };
        let idempotent = request.idempotent || !write;
        Ok(Prepared { method: request.method, url, call, headers, body, idempotent })
    }

    /// Tries a call until it succeeds, fails in a way a retry cannot mend, runs out of tries,
    /// or would run past `timeout`.
    async fn send_prepared(&self, prepared: &Prepared, timeout: Duration) -> Sent {
        let deadline = Instant::now() + timeout;
        let mut retries = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = self.try_once(prepared, left).await;
            let Some((wait, reason)) = self.retry_wait(prepared, &result, retries + 1) else {
                return Sent { result, retries };
            };
            // Never past the deadline: the answer in hand is better than none.
            let left = deadline.saturating_duration_since(Instant::now());
            if wait.saturating_add(MIN_ATTEMPT_TIME) > left {
                return Sent { result, retries };
            }
            retries += 1;
            tracing::info!(
                app = self.app,
                method = prepared.call.method,
                path = prepared.call.path,
                retry = retries,
                reason,
                delay_ms = wait.as_millis() as u64,
                "legacy call retried"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// How long to wait before trying a call again after try number `tried`, and why; `None`
    /// when it must not be tried again.
    ///
    /// No connection means nothing was sent: any call may be tried again. A reset, a timeout
    /// and a 502, 503, 504 or 429 answer are retried only for calls safe to repeat. The wait is
    /// the legacy app's `Retry-After` when it sent one, else a random time up to
    /// `base_delay × 2^(tried-1)`, capped at `max_delay` ("full jitter": clients that failed
    /// together do not come back together).
    fn retry_wait(
        &self,
        prepared: &Prepared,
        result: &Result<LegacyResponse, LegacyError>,
        tried: u32,
    ) -> Option<(Duration, &'static str)> {
        if tried >= self.retry.attempts {
            return None;
        }
        let ceiling = self.retry.base_delay.saturating_mul(1 << (tried - 1).min(20)).min(self.retry.max_delay);
        let backoff = Duration::from_nanos(fastrand::u64(0..=u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX)));
        match result {
            Err(LegacyError::Connect { .. }) => Some((backoff, "connect")),
            Err(LegacyError::Timeout { .. }) if prepared.idempotent => Some((backoff, "timeout")),
            Err(LegacyError::Transport { .. }) if prepared.idempotent => Some((backoff, "transport")),
            Ok(response) if prepared.idempotent && transient_status(response.status) => {
                let asked = response.headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
                let reason = if response.status == 429 { "http_429" } else { "http_5xx" };
                Some((asked.and_then(retry_after).unwrap_or(backoff), reason))
            }
            _ => None,
        }
    }

    /// One try of a call, within `left` and the configured timeout.
    async fn try_once(&self, prepared: &Prepared, left: Duration) -> Result<LegacyResponse, LegacyError> {
        let timeout = left.min(self.timeout);
        let call = &prepared.call;
        let started = Instant::now();
        let token_error = |source: TokenError| LegacyError::Token { app: self.app.clone(), source };
        let exchange = async {
            let authorization = self.credentials.authorization(&self.client).await.map_err(token_error)?;
            let send = |authorization: Option<Authorization>| {
                let mut headers = prepared.headers.clone();
                if let Some(authorization) = authorization {
                    headers.insert(http::header::AUTHORIZATION, authorization.value);
                }
                let mut builder = self.client.request(prepared.method.clone(), prepared.url.clone()).headers(headers);
                if let Some(body) = &prepared.body {
                    builder = builder.body(body.clone());
                }
                self.exchange(builder, call, timeout)
            };
            let response = send(authorization.clone()).await?;
            if response.status == 401 {
                if let Some(used) = &authorization {
                    if let Some(renewed) = self.credentials.renew(&self.client, used).await.map_err(token_error)? {
                        tracing::info!(
                            app = self.app,
                            "the legacy app refused the access token: retrying once with a new one"
                        );
                        return send(Some(renewed)).await;
                    }
                }
            }
            Ok(response)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(LegacyError::Timeout {
                app: self.app.clone(),
                method: call.method.clone(),
                path: call.path.clone(),
                timeout_ms: started.elapsed().as_millis(),
                write: call.write,
            }),
        }
    }

    /// Sends one prepared request and reads its whole answer, bounded in size.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        call: &Call,
        timeout: Duration,
    ) -> Result<LegacyResponse, LegacyError> {
        let classify = |e: reqwest::Error| self.classify(e, call, timeout);
        let mut response = builder.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        match read_bounded(response, self.max_response_bytes).await {
            Ok(body) => Ok(LegacyResponse { status, headers, body }),
            Err(BodyError::TooLarge) => Err(self.too_large(call)),
            Err(BodyError::Transport(e)) => Err(classify(e)),
        }
    }

    fn too_large(&self, call: &Call) -> LegacyError {
        LegacyError::TooLarge {
            app: self.app.clone(),
            method: call.method.clone(),
            path: call.path.clone(),
            limit: self.max_response_bytes,
        }
    }

    fn classify(&self, e: reqwest::Error, call: &Call, timeout: Duration) -> LegacyError {
        let (app, method, path) = (self.app.clone(), call.method.clone(), call.path.clone());
        if let Some(tls) = find_tls_error(&e) {
            let (fault, reason) = (tls_fault(tls), tls_reason(tls));
            tracing::warn!(app, host = call.host, reason, "TLS with the legacy app failed");
            let failure = Box::new(TlsFailure { host: call.host.clone(), reason, fault });
            return LegacyError::Tls { app, method, path, failure };
        }
        // A connect timeout sent nothing: it is a connection failure, not a slow answer.
        if e.is_connect() {
            return LegacyError::Connect { app, method, path, detail: error_chain(&e) };
        }
        if e.is_timeout() {
            return LegacyError::Timeout { app, method, path, timeout_ms: timeout.as_millis(), write: call.write };
        }
        let detail = error_chain(&e);
        if is_parse_error(&e) {
            LegacyError::Malformed { app, method, path, detail }
        } else {
            LegacyError::Transport { app, method, path, detail, write: call.write }
        }
    }
}

/// What a call's outcome says about the legacy app's availability, for its circuit breaker.
fn verdict(result: &Result<LegacyResponse, LegacyError>) -> Verdict {
    match result {
        Ok(response) if transient_status(response.status) => Verdict::Down,
        Ok(_) | Err(LegacyError::TooLarge { .. }) => Verdict::Up,
        Err(LegacyError::Connect { .. } | LegacyError::Timeout { .. } | LegacyError::Transport { .. }) => Verdict::Down,
        Err(_) => Verdict::Unknown,
    }
}

/// The longest wait a `Retry-After` is read as. A legacy app may send any number of seconds
/// (`18446744073709551615` overflowed the retry arithmetic) or a date in the year 9999; the
/// identity provider is told at most `error::MAX_RETRY_AFTER` of it anyway.
pub const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date, as a wait from now, at
/// most [`LONGEST_RETRY_AFTER`]. A date in the past is no wait; anything else unreadable
/// (a sign, a fraction, a word) is `None`.
pub fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still a number of seconds: a long one.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(LONGEST_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).min(LONGEST_RETRY_AFTER))
}

/// Why the body of an answer was not read whole.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is larger than the limit, or its `Content-Length` says it is.
    TooLarge,
    /// The connection failed or timed out while it was read.
    Transport(reqwest::Error),
}

/// Reads the body of an answer as it streams in, holding at most `limit` bytes: a larger
/// `Content-Length` is refused before a byte of the body is read, and a body that grows past
/// the limit is dropped there, which closes its connection; the rest is never read. For the
/// legacy app's answers, the token endpoint's and the JWKS document.
pub(crate) async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(BodyError::TooLarge);
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        let needed = body.len() + chunk.len();
        if needed > limit {
            return Err(BodyError::TooLarge);
        }
        if needed > body.capacity() {
            // Doubling, as a Vec grows, but never reserving past the limit.
            let grown = needed.max(body.capacity().saturating_mul(2)).min(limit);
            body.reserve_exact(grown - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// True when the answer could not be parsed as HTTP (the peer speaks something else).
fn is_parse_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(error) = current {
        if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse) {
            return true;
        }
        current = error.source();
    }
    false
}

/// What a legacy error says about the call it failed: for messages and logs.
struct Call {
    method: String,
    /// `host` or `host:port` of the URL.
    host: String,
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

/// Applies an app's TLS settings (trusted CAs, client certificate, verification) to its client.
fn with_tls(
    mut builder: reqwest::ClientBuilder,
    config: &LegacyConfig,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<reqwest::ClientBuilder, String> {
    let read = |key: &str, path: &Path| {
        let path = resolve(path);
        std::fs::read(&path)
            .map(|bytes| (bytes, path.clone()))
            .map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))
    };
    if let Some(ca_file) = &config.ca_file {
        let (pem, path) = read("ca_file", ca_file)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: not a PEM certificate bundle: {}", path.display(), error_chain(&e)))?;
        if certificates.is_empty() {
            return Err(format!(
                "ca_file {}: holds no certificate: expected PEM blocks starting -----BEGIN CERTIFICATE-----",
                path.display()
            ));
        }
        // A private CA is trusted instead of the public ones, not besides them.
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some(client) = &config.client_certificate {
        let (mut pem, cert_path) = read("client_certificate.cert", &client.cert)?;
        let (key, key_path) = read("client_certificate.key", &client.key)?;
        pem.push(b'\n');
        pem.extend_from_slice(&key);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "client_certificate: {} and {} are not a PEM certificate and an unencrypted PEM private key: {}",
                cert_path.display(),
                key_path.display(),
                error_chain(&e)
            )
        })?;
        builder = builder.identity(identity);
    }
    if config.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

/// The TLS error somewhere in a failed call's chain of causes, if TLS is what failed.
///
/// `io::Error` does not list the error it wraps as its `source()`, so each one is opened.
fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(tls) = find_tls_error(inner) {
                return Some(tls);
            }
        }
        current = error.source();
    }
    None
}

fn tls_fault(e: &rustls::Error) -> TlsFault {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => TlsFault::Untrusted,
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => TlsFault::ClientCertificateRefused,
        _ => TlsFault::Other,
    }
}

/// A TLS failure in words an operator can act on, with the TLS library's own words after it.
fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let plain = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the legacy app's certificate is not signed by a trusted CA (see legacy.ca_file)".to_owned()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the legacy app's certificate is not valid for the host name in the URL".to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the legacy app's certificate has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(_) => "the legacy app's certificate is not acceptable".to_owned(),
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the legacy app requires a client certificate (see legacy.client_certificate)".to_owned()
        }
        _ if tls_fault(e) == TlsFault::ClientCertificateRefused => {
            "the legacy app refused the proxy's client certificate".to_owned()
        }
        _ => "the TLS handshake failed".to_owned(),
    };
    format!("{plain}: {e}")
}

/// Why a request got no answer, for a log line, and whether TLS is what failed (a fault of
/// configuration, which no retry mends).
pub(crate) fn transport_failure(e: &reqwest::Error) -> (String, bool) {
    match find_tls_error(e) {
        Some(tls) => (tls_reason(tls), true),
        None => (error_chain(e), false),
    }
}

/// Refuses text paths that could navigate or smuggle: dot segments, query, fragment, controls.
fn check_text_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/' (it is relative to the legacy base URL)");
    }
    if path.starts_with("//") {
        return Err("must not start with '//'");
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '\\')) {
        return Err(
            "must not contain '?', '#', '\\', spaces or control characters: pass query parameters as a map and values as path segments",
        );
    }
    for segment in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\\') {
            return Err("must not contain '.' or '..' segments or encoded slashes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> LegacyClient {
        let config: LegacyConfig = serde_yaml_ng::from_str(&format!("base_url: {base}")).unwrap();
        LegacyClient::new("acme", &config, Path::to_path_buf).unwrap()
    }

    #[test]
    fn builds_urls_under_the_base() {
        let c = client("http://legacy.local:7070/api/v1");
        let url = c.url_for(&LegacyPath::Text("/users/12".into()), &[("login".into(), "a b&c".into())]).unwrap();
        assert_eq!(url.as_str(), "http://legacy.local:7070/api/v1/users/12?login=a+b%26c");
        let hostile = ["../admin", "a/b", "x?y=1", "#frag", "...", "\r\nHost: evil", "%2F"];
        for id in hostile {
            let url = c.url_for(&LegacyPath::Segments(vec!["users".into(), id.into()]), &[]).unwrap();
            let path = url.path();
            assert!(path.starts_with("/api/v1/users/"), "{id}: {url}");
            assert_eq!(path.matches('/').count(), 4, "{id} must stay one segment: {url}");
            assert!(url.query().is_none() && url.fragment().is_none(), "{id}: {url}");
        }
        for dots in [".", ".."] {
            let result = c.url_for(&LegacyPath::Segments(vec!["users".into(), dots.into()]), &[]);
            assert!(matches!(result, Err(LegacyError::BadPath { .. })), "{dots}");
        }
    }

    #[test]
    fn reads_retry_after_as_seconds_or_a_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&soon).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO), "a date gone by");
        for unreadable in ["", "-1", "1.5", "+5", "soon"] {
            assert_eq!(retry_after(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn a_huge_retry_after_is_read_as_a_day_at_most() {
        for huge in ["86401", "18446744073709551615", "99999999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
            assert_eq!(retry_after(huge), Some(LONGEST_RETRY_AFTER), "{huge}");
        }
        assert_eq!(retry_after("86400"), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn refuses_text_paths_that_escape() {
        let c = client("http://legacy.local/api");
        for path in ["/../etc", "/users/%2e%2e/x", "users", "//evil.example/x", "/a?b", "/a#b", "/a\r\nb", "/a%2Fb"] {
            assert!(
                matches!(c.url_for(&LegacyPath::Text(path.into()), &[]), Err(LegacyError::BadPath { .. })),
                "{path}"
            );
        }
    }
}
