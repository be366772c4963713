//! The stand-in legacy app of a mapping test: a real HTTP server on 127.0.0.1 that answers
//! scripted replies in order and writes down what it was sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::listener::server::{self, ConnLimits};
use crate::recording::fixture::Reply;

/// A call the stand-in received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub method: String,
    /// Path below the base URL, and query, as sent: `/users/7?x=1`.
    pub target: String,
    /// The body: JSON when it parses, else its text; `None` when empty.
    pub body: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    replies: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// A running stand-in legacy app.
#[derive(Debug)]
pub(crate) struct MockLegacy {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the stand-in answers a call the test file did not script.
pub(crate) const UNSCRIPTED: &str = "scim-proxy test: the test file scripts no answer for this call";

impl MockLegacy {
    /// Starts the stand-in; `base_path` is the path of the app's `legacy.base_url`.
    pub(crate) async fn start(base_path: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let (stop, stopped) = watch::channel(false);
        let prefix: Arc<str> = Arc::from(base_path.trim_end_matches('/'));
        let handler_state = state.clone();
        let handler = move |request: Request<Incoming>, _connection: server::Connection| {
            let state = handler_state.clone();
            let prefix = prefix.clone();
            async move { answer(&state, &prefix, request).await }
        };
        let limits = ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(1),
            max_concurrent_streams: 100,
            body_budget: 1024 * 1024,
        };
        let task = tokio::spawn(server::serve(
            listener,
            "mock-legacy",
            handler,
            cut_short,
            limits,
            server::Connections::new(64),
            None,
            stopped,
        ));
        Ok(Self { addr, state, stop, task })
    }

    /// Sets the replies of the next calls, in order (replacing any left over).
    pub(crate) fn script(&self, replies: Vec<Reply>) {
        *lock(&self.state.replies) = replies.into();
        lock(&self.state.received).clear();
    }

    /// The calls received since the last `script`.
    pub(crate) fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Stops the stand-in.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn answer(state: &State, prefix: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path();
    let below = path.strip_prefix(prefix).filter(|rest| rest.is_empty() || rest.starts_with('/')).unwrap_or(path);
    let below = if below.is_empty() { "/" } else { below };
    let target = match parts.uri.query() {
        Some(query) => format!("{below}?{query}"),
        None => below.to_owned(),
    };
    let body = if bytes.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    };
    lock(&state.received).push(Received { method: parts.method.to_string(), target, body });
    let next = lock(&state.replies).pop_front();
    let Some(reply) = next else {
        let body = serde_json::json!({ "error": UNSCRIPTED }).to_string();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    };
    let (body, content_type) = match &reply.body {
        None => (Bytes::new(), None),
        Some(Value::String(text)) => (Bytes::from(text.clone()), Some("text/plain; charset=utf-8")),
        Some(json) => (Bytes::from(json.to_string()), Some("application/json")),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    response
}

/// The mock's answer to a call still running when it stops: a bare `503`.
fn cut_short(_: &http::Method, _: http::Version, _: &str) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
}
