//! The HTTP client of one app's in-house API: pooled, confined to its base URL, bounded in time and size.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::config::LegacyConfig;

/// A legacy call that did not produce an HTTP answer the script can read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LegacyError {
    /// The script asked for a path the proxy refuses to send (escape attempts, bad characters).
    #[error("legacy {app}: refused path {path:?}: {detail}")]
    BadPath { app: String, path: String, detail: String },
    /// The script set a header name or value that is not valid HTTP.
    #[error("legacy {app}: refused header {name:?}: {detail}")]
    BadHeader { app: String, name: String, detail: String },
    /// The request body could not be encoded as JSON.
    #[error("legacy {app}: body is not encodable: {detail}")]
    BadBody { app: String, detail: String },
    /// No connection could be made (refused, DNS failure, unreachable).
    #[error("legacy {app}: {method} {path}: cannot connect: {detail}")]
    Connect { app: String, method: String, path: String, detail: String },
    /// No complete answer within the timeout.
    #[error("legacy {app}: {method} {path}: no answer within {timeout_ms} ms")]
    Timeout { app: String, method: String, path: String, timeout_ms: u128 },
    /// The connection broke or the answer was not valid HTTP.
    #[error("legacy {app}: {method} {path}: {detail}")]
    Transport { app: String, method: String, path: String, detail: String },
    /// The answer's body was larger than `legacy.max_response_bytes`.
    #[error("legacy {app}: {method} {path}: answer larger than {limit} bytes")]
    TooLarge { app: String, method: String, path: String, limit: usize },
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
    base: url::Url,
    headers: HeaderMap,
    timeout: Duration,
    max_response_bytes: usize,
}

impl LegacyClient {
    /// Builds the pooled client of an app; runs once at start.
    pub fn new(app: &str, config: &LegacyConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            // Scripts reach their own base URL only: a redirect could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("scim-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the legacy HTTP client: {e}"))?;
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
            base,
            headers,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
        })
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

    /// Sends one call and reads its whole answer, within `timeout` (at most the configured one).
    pub async fn send(
        &self,
        request: LegacyRequest,
        request_id: &str,
        timeout: Duration,
    ) -> Result<LegacyResponse, LegacyError> {
        let url = self.url_for(&request.path, &request.query)?;
        let method_name = request.method.to_string();
        let path_for_errors = url.path().to_owned();
        let timeout = timeout.min(self.timeout);
        let mut builder = self.client.request(request.method, url).headers(self.headers.clone());
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
            builder = builder.header(header, value);
        }
        if let Ok(id) = HeaderValue::from_str(request_id) {
            builder = builder.header("x-request-id", id);
        }
        builder = builder.header(http::header::ACCEPT, "application/json");
        if let Some(body) = &request.body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| LegacyError::BadBody { app: self.app.clone(), detail: e.to_string() })?;
            builder = builder.header(http::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        let started = Instant::now();
        let classify = |e: reqwest::Error| self.classify(e, &method_name, &path_for_errors, timeout);
        let exchange = async {
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            if response.content_length().is_some_and(|n| n > self.max_response_bytes as u64) {
                return Err(self.too_large(&method_name, &path_for_errors));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > self.max_response_bytes {
                    return Err(self.too_large(&method_name, &path_for_errors));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(LegacyResponse { status, headers, body: body.freeze() })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(LegacyError::Timeout {
                app: self.app.clone(),
                method: method_name,
                path: path_for_errors,
                timeout_ms: started.elapsed().as_millis(),
            }),
        }
    }

    fn too_large(&self, method: &str, path: &str) -> LegacyError {
        LegacyError::TooLarge {
            app: self.app.clone(),
            method: method.to_owned(),
            path: path.to_owned(),
            limit: self.max_response_bytes,
        }
    }

    fn classify(&self, e: reqwest::Error, method: &str, path: &str, timeout: Duration) -> LegacyError {
        let (app, method, path) = (self.app.clone(), method.to_owned(), path.to_owned());
        if e.is_timeout() {
            return LegacyError::Timeout { app, method, path, timeout_ms: timeout.as_millis() };
        }
        let detail = error_chain(&e);
        if e.is_connect() {
            LegacyError::Connect { app, method, path, detail }
        } else {
            LegacyError::Transport { app, method, path, detail }
        }
    }
}

/// The whole `source()` chain of an error, which is where reqwest keeps the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
        LegacyClient::new("acme", &config).unwrap()
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
