//! Sending a legacy call: prepared once, tried within the request's deadline (retried where
//! that is safe, past the circuit breaker), its answer read to a bound and its failure named.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::plain::{self, PlainClient, PlainError};
use super::{Call, LegacyClient, LegacyError, LegacyRequest, LegacyResponse, Prepared, Sent, TlsFailure, host_of};
use crate::config::LegacyConfig;
use crate::legacy::auth::{Authorization, Credentials, TokenError};
use crate::legacy::body::{BodyError, read_bounded};
use crate::legacy::breaker::{Breaker, Verdict};
use crate::legacy::retry::{MIN_ATTEMPT_TIME, transient_status};
use crate::legacy::tls::{TlsSettings, find_tls_error, tls_fault, tls_reason};
use crate::observe::error_chain;
use crate::observe::trace::TraceHeaders;

/// How an app's HTTP clients are built: once for the process at start, and once more on each
/// thread that keeps its own legacy connections (see [`keep_connections_on_this_thread`]).
pub(super) struct Recipe {
    connect_timeout: Duration,
    tls: TlsSettings,
    /// The base URL is plain HTTP: calls go out on hyper's client (see [`super::plain`]).
    plain: bool,
}

/// The clients a call is made with: reqwest's (HTTPS calls, tokens), and hyper's for a
/// plain-HTTP base URL.
#[derive(Debug, Clone)]
pub(super) struct Clients {
    web: reqwest::Client,
    plain: Option<PlainClient>,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipe").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

impl Recipe {
    /// Pooled clients whose idle connections are kept for `idle`.
    fn build(&self, idle: Duration) -> Result<Clients, String> {
        let plain = self.plain.then(|| plain::build(self.connect_timeout, idle));
        Ok(Clients { web: self.build_web(idle)?, plain })
    }

    /// reqwest's pooled client, whose idle connections are kept for `idle`.
    fn build_web(&self, idle: Duration) -> Result<reqwest::Client, String> {
        let builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            // Scripts reach their own base URL only: a redirect could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(plain::USER_AGENT);
        self.tls.apply(builder).build().map_err(|e| format!("cannot build the legacy HTTP client: {}", error_chain(&e)))
    }
}

/// How long the process's shared client keeps an idle connection.
const SHARED_IDLE: Duration = Duration::from_secs(60);

/// How long a thread's own client keeps an idle connection. Its connections are watched only
/// while the thread makes calls, so a legacy server that closed one while the thread was idle
/// is seen closing it only when the connection is next wanted; kept this short, a connection
/// idle longer than a legacy server's keep-alive timeout (2 s and up for common servers) is
/// not used again but replaced.
const THREAD_IDLE: Duration = Duration::from_secs(1);

/// A thread's own clients, one an app, each with the recipe it was built from, and how long
/// they keep an idle connection.
struct OwnClients {
    idle: Duration,
    clients: Vec<(Weak<Recipe>, Clients)>,
}

thread_local! {
    /// The clients of a thread that keeps its own legacy connections; `None` on every other
    /// thread.
    static OWN_CLIENTS: RefCell<Option<OwnClients>> = const { RefCell::new(None) };
}

/// Makes this thread keep its own legacy connections: the legacy calls made on it use
/// clients of its own, whose connections are driven by the thread's own runtime, not another
/// thread's, so that an answer wakes no other thread. For threads that run every legacy call
/// to its end on a runtime of their own: serving threads, whose runtime always turns
/// (`watched`), and script threads, whose runtime turns only while they make a call (their
/// idle connections are kept [`THREAD_IDLE`]).
pub(crate) fn keep_connections_on_this_thread(watched: bool) {
    let idle = if watched { SHARED_IDLE } else { THREAD_IDLE };
    OWN_CLIENTS.with(|own| {
        own.borrow_mut().get_or_insert_with(|| OwnClients { idle, clients: Vec::new() });
    });
}

impl LegacyClient {
    /// Builds the pooled client of an app; runs once at start. `resolve` turns the paths of
    /// the configuration (CA and client certificate files) into paths to open.
    pub(crate) fn new(app: &str, config: &LegacyConfig, resolve: impl Fn(&Path) -> PathBuf) -> Result<Self, String> {
        let recipe = Arc::new(Recipe {
            connect_timeout: config.connect_timeout,
            tls: TlsSettings::load(config, resolve)?,
            plain: config.base_url.scheme() == "http",
        });
        let clients = recipe.build(SHARED_IDLE)?;
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
            clients,
            recipe,
            credentials,
            base,
            headers,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
            retry: config.retry.clone(),
            breaker: Arc::new(Breaker::new(app, &config.breaker)),
        })
    }

    /// The client for a call made on this thread: the thread's own when it keeps its own
    /// connections, else the process's.
    fn http(&self) -> Clients {
        OWN_CLIENTS.with(|own| {
            let mut own = own.borrow_mut();
            let Some(own) = own.as_mut() else { return self.clients.clone() };
            let recipe = Arc::as_ptr(&self.recipe);
            if let Some((_, client)) = own.clients.iter().find(|(r, _)| r.as_ptr() == recipe) {
                return client.clone();
            }
            // Clients of apps that a reload replaced go with them.
            own.clients.retain(|(r, _)| r.strong_count() > 0);
            match self.recipe.build(own.idle) {
                Ok(client) => {
                    own.clients.push((Arc::downgrade(&self.recipe), client.clone()));
                    client
                }
                // It was built once already with the same settings: not expected to fail.
                Err(_) => self.clients.clone(),
            }
        })
    }

    /// The app's circuit breaker.
    pub(crate) fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Takes over another client's breaker (a configuration reload that kept the app's legacy
    /// base URL and breaker settings), so that an open breaker stays open.
    pub(crate) fn keep_breaker(&mut self, previous: &LegacyClient) {
        if previous.base == self.base && previous.breaker.config() == self.breaker.config() {
            self.breaker = previous.breaker.clone();
        }
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
    pub(crate) async fn send(
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
    pub(crate) async fn send_past_breaker(
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
        let call = Call { method: request.method.to_string(), path: url.path().to_owned(), write };
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

    /// One try of a call, within `left` and the configured timeout.
    async fn try_once(&self, prepared: &Prepared, left: Duration) -> Result<LegacyResponse, LegacyError> {
        let timeout = left.min(self.timeout);
        let call = &prepared.call;
        let started = Instant::now();
        let token_error = |source: TokenError| LegacyError::Token { app: self.app.clone(), source };
        let clients = self.http();
        let client = &clients.web;
        let exchange = async {
            let authorization = self.credentials.authorization(client).await.map_err(token_error)?;
            let send = async |authorization: Option<Authorization>| {
                let mut headers = prepared.headers.clone();
                if let Some(authorization) = authorization {
                    headers.insert(http::header::AUTHORIZATION, authorization.value);
                }
                if let Some(plain) = &clients.plain {
                    return self.exchange_plain(plain, prepared, headers, timeout).await;
                }
                let mut builder = client.request(prepared.method.clone(), prepared.url.clone()).headers(headers);
                if let Some(body) = &prepared.body {
                    builder = builder.body(body.clone());
                }
                self.exchange(builder, call, timeout).await
            };
            let response = send(authorization.clone()).await?;
            if response.status == 401 {
                if let Some(used) = &authorization {
                    if let Some(renewed) = self.credentials.renew(client, used).await.map_err(token_error)? {
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

    /// Sends one prepared request on hyper's client and reads its whole answer, bounded in
    /// size; its failures named as [`Self::classify`] names reqwest's.
    async fn exchange_plain(
        &self,
        client: &PlainClient,
        prepared: &Prepared,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<LegacyResponse, LegacyError> {
        let call = &prepared.call;
        let answer = plain::exchange(
            client,
            prepared.method.clone(),
            &prepared.url,
            headers,
            prepared.body.clone(),
            self.max_response_bytes,
        )
        .await;
        let (app, method, path) = (self.app.clone(), call.method.clone(), call.path.clone());
        match answer {
            Ok(answer) => Ok(LegacyResponse { status: answer.status, headers: answer.headers, body: answer.body }),
            Err(PlainError::TooLarge) => Err(self.too_large(call)),
            Err(PlainError::Uri(e)) => Err(LegacyError::BadPath { app, path, detail: e.to_string() }),
            // A connect timeout sent nothing: it is a connection failure, not a slow answer.
            Err(PlainError::Send(e)) if e.is_connect() => {
                Err(LegacyError::Connect { app, method, path, detail: error_chain(&e) })
            }
            Err(PlainError::Send(e)) => Err(self.failed(call, error_chain(&e), is_parse_error(&e))),
            Err(PlainError::Body(e)) if e.is_timeout() => {
                Err(LegacyError::Timeout { app, method, path, timeout_ms: timeout.as_millis(), write: call.write })
            }
            Err(PlainError::Body(e)) => Err(self.failed(call, error_chain(&e), is_parse_error(&e))),
        }
    }

    /// A call that failed on the way: the answer was not HTTP (`malformed`), or the
    /// connection failed.
    fn failed(&self, call: &Call, detail: String, malformed: bool) -> LegacyError {
        let (app, method, path) = (self.app.clone(), call.method.clone(), call.path.clone());
        if malformed {
            LegacyError::Malformed { app, method, path, detail }
        } else {
            LegacyError::Transport { app, method, path, detail, write: call.write }
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
            // Every call goes to the base URL's host (`url_for` refuses any other).
            let host = host_of(&self.base);
            tracing::warn!(app, host, reason, "TLS with the legacy app failed");
            let failure = Box::new(TlsFailure { host, reason, fault });
            return LegacyError::Tls { app, method, path, failure };
        }
        // A connect timeout sent nothing: it is a connection failure, not a slow answer.
        if e.is_connect() {
            return LegacyError::Connect { app, method, path, detail: error_chain(&e) };
        }
        if e.is_timeout() {
            return LegacyError::Timeout { app, method, path, timeout_ms: timeout.as_millis(), write: call.write };
        }
        self.failed(call, error_chain(&e), is_parse_error(&e))
    }
}

/// What a call's outcome says about the legacy app's availability, for its circuit breaker.
pub(super) fn verdict(result: &Result<LegacyResponse, LegacyError>) -> Verdict {
    match result {
        Ok(response) if transient_status(response.status) => Verdict::Down,
        Ok(_) | Err(LegacyError::TooLarge { .. }) => Verdict::Up,
        Err(LegacyError::Connect { .. } | LegacyError::Timeout { .. } | LegacyError::Transport { .. }) => Verdict::Down,
        Err(_) => Verdict::Unknown,
    }
}

/// True when the answer could not be parsed as HTTP (the peer speaks something else).
pub(super) fn is_parse_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(error) = current {
        if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse) {
            return true;
        }
        current = error.source();
    }
    false
}

/// Why a request got no answer, for a log line, and whether TLS is what failed (a fault of
/// configuration, which no retry mends).
pub(crate) fn transport_failure(e: &reqwest::Error) -> (String, bool) {
    match find_tls_error(e) {
        Some(tls) => (tls_reason(tls), true),
        None => (error_chain(e), false),
    }
}
