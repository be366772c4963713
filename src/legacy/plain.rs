//! Legacy calls to a plain-HTTP base URL, on hyper's pooled client: what reqwest adds over it
//! (its redirect layer parses every URL again, though redirects are off; its response parses
//! it once more) costs each call and buys these calls nothing. HTTPS base URLs, token
//! endpoints and JWKS documents keep reqwest.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::Bounded;

/// A pooled HTTP/1.1 client for plain-HTTP legacy calls.
pub(super) type PlainClient = Client<HttpConnector, Full<Bytes>>;

/// Builds a pooled client as [`super::client::Recipe`] builds reqwest's: the same connect
/// timeout, idle time and idle connections a host, `TCP_NODELAY`.
pub(super) fn build(connect_timeout: Duration, idle: Duration) -> PlainClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(64)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Why a plain-HTTP call got no whole answer.
#[derive(Debug)]
pub(super) enum PlainError {
    /// The URL is not one hyper can send to.
    Uri(http::uri::InvalidUri),
    /// No answer: the connection could not be made, or failed before the answer's head.
    Send(hyper_util::client::legacy::Error),
    /// The answer's body failed while it was read.
    Body(hyper::Error),
    /// The body is larger than the limit, or its `Content-Length` says it is.
    TooLarge,
}

/// An answer read whole.
pub(super) struct PlainAnswer {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// Sends one request and reads its whole answer, holding at most `limit` bytes of it (as
/// [`super::body::read_bounded`] does for reqwest's answers).
pub(super) async fn exchange(
    client: &PlainClient,
    method: Method,
    url: &url::Url,
    headers: HeaderMap,
    body: Option<Bytes>,
    limit: usize,
) -> Result<PlainAnswer, PlainError> {
    let uri: Uri = url.as_str().parse().map_err(PlainError::Uri)?;
    let mut request = http::Request::new(Full::new(body.unwrap_or_default()));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request.headers_mut().entry(http::header::USER_AGENT).or_insert(HeaderValue::from_static(USER_AGENT));
    let response = client.request(request).await.map_err(PlainError::Send)?;
    let (head, mut incoming) = response.into_parts();
    let declared = head.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = Bounded::new(limit, declared).ok_or(PlainError::TooLarge)?;
    while let Some(frame) = incoming.frame().await {
        if let Ok(chunk) = frame.map_err(PlainError::Body)?.into_data() {
            if !body.push(&chunk) {
                return Err(PlainError::TooLarge);
            }
        }
    }
    Ok(PlainAnswer { status: head.status.as_u16(), headers: head.headers, body: body.finish() })
}

/// What every legacy call says it is, on either client.
pub(super) const USER_AGENT: &str = concat!("scim-proxy/", env!("CARGO_PKG_VERSION"));
