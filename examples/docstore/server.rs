//! Docstore: a small in-memory JSON-document REST API, the legacy app of `scripts/examples/documents.rhai`.
//!
//! Two collections, `users` and `groups`, hold arbitrary JSON objects under ids the server
//! assigns. Every document is answered in an envelope:
//!
//! ```text
//! {"id": "3f0c…", "version": 2, "created": "2026-12-06T06:40:00Z", "updated": "…", "data": {…}}
//! ```
//!
//! Endpoints, under `/v1` (with an API key, every request needs `Authorization: Bearer <key>`):
//!
//! ```text
//! GET    /v1/{collection}?offset=&limit=&<field>=<value>   {"items": [...], "total": n, "offset", "limit"};
//!                                                          `limit` 50 by default, at most 100; a field
//!                                                          search matches a string equal to the value
//!                                                          ignoring ASCII case (in arrays: any element)
//! POST   /v1/{collection}                                  201, the envelope and `Location`
//! GET    /v1/{collection}/{id}                             the envelope; 404 not_found
//! PUT    /v1/{collection}/{id}                             replaces `data`; `If-Match: <version>` makes it
//!                                                          conditional (412 version_mismatch)
//! DELETE /v1/{collection}/{id}                             204; 404 not_found
//! errors: {"error": {"code": "duplicate", "message": "…"}}
//! ```
//!
//! Searchable fields: `users` by `userName`, `externalId`, `emails.value`; `groups` by
//! `displayName`, `externalId`, `members.value`. `userName` and a group's `displayName` are
//! unique, ignoring ASCII case (409 duplicate). Another search field is 400 unknown_field.
//!
//! The same file is the `docstore` Cargo example (`cargo run --example docstore`) and the
//! legacy app of the integration tests, which read and seed the data directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Largest request body accepted; a bigger one is 413.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Page size of a listing without `limit`.
const DEFAULT_LIMIT: usize = 50;
/// Largest page a listing answers, whatever `limit` asks.
const MAX_LIMIT: usize = 100;

/// What a collection can be searched by, and which field must be unique in it.
struct Collection {
    name: &'static str,
    searchable: &'static [&'static str],
    unique: &'static str,
}

const COLLECTIONS: &[Collection] = &[
    Collection { name: "users", searchable: &["userName", "externalId", "emails.value"], unique: "userName" },
    Collection { name: "groups", searchable: &["displayName", "externalId", "members.value"], unique: "displayName" },
];

/// One stored document and its bookkeeping.
#[derive(Debug, Clone)]
struct Document {
    id: String,
    version: u64,
    created: String,
    updated: String,
    data: Value,
}

impl Document {
    fn envelope(&self) -> Value {
        json!({"id": self.id, "version": self.version, "created": self.created, "updated": self.updated, "data": self.data})
    }
}

/// A change another writer makes to a document just before the next `PUT` of it is served.
type Interference = Box<dyn FnOnce(&mut Value) + Send>;

/// The documents of every collection, in creation order, and the requests seen.
#[derive(Default)]
struct Data {
    /// collection → documents; a `Vec` keeps listings in creation order.
    documents: BTreeMap<&'static str, Vec<Document>>,
    /// Every request received, as `METHOD /path?query`.
    calls: Vec<String>,
    /// (collection, id, change): see [`Docstore::interfere`].
    interference: Option<(String, String, Interference)>,
}

/// A running Docstore on 127.0.0.1 (or any address), stopped when dropped.
pub(crate) struct Docstore {
    /// The address it listens on.
    pub addr: SocketAddr,
    data: Arc<Mutex<Data>>,
    accept: JoinHandle<()>,
}

impl Drop for Docstore {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A failure answered to the client: status, code and message.
struct Failure(StatusCode, &'static str, String);

type Answer = Response<Full<Bytes>>;

impl Docstore {
    /// Serves the API on `listener`; `api_key`, when given, is required as a bearer token.
    pub(crate) fn start(listener: TcpListener, api_key: Option<String>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let data = Arc::new(Mutex::new(Data::default()));
        let key: Arc<Option<String>> = Arc::new(api_key);
        let shared = data.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (data, key) = (shared.clone(), key.clone());
                let service = hyper::service::service_fn(move |request| {
                    let (data, key) = (data.clone(), key.clone());
                    async move { Ok::<_, std::convert::Infallible>(handle(&data, key.as_deref(), request).await) }
                });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr, data, accept })
    }

    /// `http://ADDR/v1`, the base URL a mapping is given.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        lock(&self.data)
    }

    /// The `data` of a stored document, or `None`.
    pub(crate) fn document(&self, collection: &str, id: &str) -> Option<Value> {
        let data = self.data();
        data.documents.get(collection)?.iter().find(|d| d.id == id).map(|d| d.data.clone())
    }

    /// The `data` of every document of a collection, in creation order.
    pub(crate) fn documents(&self, collection: &str) -> Vec<Value> {
        self.data()
            .documents
            .get(collection)
            .map_or_else(Vec::new, |docs| docs.iter().map(|d| d.data.clone()).collect())
    }

    /// Stores a document as a client's `POST` would (no uniqueness check); returns its id.
    pub(crate) fn insert(&self, collection: &str, document: Value) -> Option<String> {
        let spec = COLLECTIONS.iter().find(|c| c.name == collection)?;
        let document = new_document(document);
        let id = document.id.clone();
        self.data().documents.entry(spec.name).or_default().push(document);
        Some(id)
    }

    /// The requests received since the last call, as `METHOD /path?query`.
    pub(crate) fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.data().calls)
    }

    /// Before the next `PUT` of this document is served, another writer changes its data
    /// with `change` (and its version goes up), as a second replica or an administrator would.
    pub(crate) fn interfere(&self, collection: &str, id: &str, change: impl FnOnce(&mut Value) + Send + 'static) {
        self.data().interference = Some((collection.to_owned(), id.to_owned(), Box::new(change)));
    }
}

/// Locks the data; a panic while it was held (a test failing) leaves it usable.
fn lock(data: &Mutex<Data>) -> MutexGuard<'_, Data> {
    data.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn new_document(data: Value) -> Document {
    let at = now();
    Document { id: uuid::Uuid::new_v4().to_string(), version: 1, created: at.clone(), updated: at, data }
}

fn answer(status: StatusCode, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

fn failure(Failure(status, code, message): Failure) -> Answer {
    answer(status, &json!({"error": {"code": code, "message": message}}))
}

/// Serves one request.
async fn handle(data: &Mutex<Data>, key: Option<&str>, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.to_string());
    lock(data).calls.push(format!("{} {target}", parts.method));
    if let Some(key) = key {
        let sent = parts.headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {key}").as_str()) {
            return failure(Failure(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token".into()));
        }
    }
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return failure(Failure(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is over 1 MiB".into())),
    };
    let segments: Vec<String> = match parts.uri.path().strip_prefix("/v1/") {
        Some(rest) => {
            rest.split('/').map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect()
        }
        None => return failure(Failure(StatusCode::NOT_FOUND, "no_route", "no such endpoint".into())),
    };
    let Some(spec) = COLLECTIONS.iter().find(|c| c.name == segments[0]) else {
        return failure(Failure(StatusCode::NOT_FOUND, "no_route", format!("no collection {}", segments[0])));
    };
    let if_match = parts
        .headers
        .get(hyper::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let mut data = lock(data);
    let outcome = match (parts.method.as_str(), segments.get(1).map(String::as_str), segments.len()) {
        ("GET", None, 1) => list(&data, spec, &query),
        ("POST", None, 1) => parse(&body).and_then(|document| create(&mut data, spec, document)),
        ("GET", Some(id), 2) => find(&data, spec, id).map(|d| (StatusCode::OK, d.envelope())),
        ("PUT", Some(id), 2) => {
            parse(&body).and_then(|document| replace(&mut data, spec, id, document, if_match.as_deref()))
        }
        ("DELETE", Some(id), 2) => delete(&mut data, spec, id),
        _ => Err(Failure(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "no such operation".into())),
    };
    match outcome {
        Ok((status, body)) if status == StatusCode::CREATED => {
            let mut response = answer(status, &body);
            let location = format!("/v1/{}/{}", spec.name, body["id"].as_str().unwrap_or_default());
            if let Ok(value) = hyper::header::HeaderValue::from_str(&location) {
                response.headers_mut().insert(hyper::header::LOCATION, value);
            }
            response
        }
        Ok((status, _)) if status == StatusCode::NO_CONTENT => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            response
        }
        Ok((status, body)) => answer(status, &body),
        Err(fail) => failure(fail),
    }
}

/// A request body that must be one JSON object.
fn parse(body: &[u8]) -> Result<Value, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(Failure(StatusCode::BAD_REQUEST, "bad_request", "a document is a JSON object".into())),
        Err(error) => Err(Failure(StatusCode::BAD_REQUEST, "bad_request", format!("not JSON: {error}"))),
    }
}

fn find<'d>(data: &'d Data, spec: &Collection, id: &str) -> Result<&'d Document, Failure> {
    data.documents
        .get(spec.name)
        .and_then(|docs| docs.iter().find(|d| d.id == id))
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "not_found", format!("no document {id} in {}", spec.name)))
}

/// The strings found at a dotted path, looking into arrays on the way.
fn strings_at<'v>(value: &'v Value, path: &str) -> Vec<&'v str> {
    let mut found = vec![value];
    for name in path.split('.') {
        found = found
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(|item| item.get(name)).collect::<Vec<_>>(),
                other => other.get(name).into_iter().collect(),
            })
            .collect();
    }
    found
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
            other => other.as_str().into_iter().collect(),
        })
        .collect()
}

fn matches(document: &Document, path: &str, wanted: &str) -> bool {
    strings_at(&document.data, path).iter().any(|s| s.eq_ignore_ascii_case(wanted))
}

/// Refuses a document whose unique field another document (not `except`) already has.
fn check_unique(data: &Data, spec: &Collection, document: &Value, except: Option<&str>) -> Result<(), Failure> {
    let Some(value) = document.get(spec.unique).and_then(Value::as_str) else {
        return Ok(());
    };
    let taken = data
        .documents
        .get(spec.name)
        .is_some_and(|docs| docs.iter().any(|d| Some(d.id.as_str()) != except && matches(d, spec.unique, value)));
    if taken {
        return Err(Failure(
            StatusCode::CONFLICT,
            "duplicate",
            format!("{} {value} exists in {}", spec.unique, spec.name),
        ));
    }
    Ok(())
}

fn list(data: &Data, spec: &Collection, query: &[(String, String)]) -> Result<(StatusCode, Value), Failure> {
    let mut offset = 0;
    let mut limit = DEFAULT_LIMIT;
    let mut search = Vec::new();
    for (name, value) in query {
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| Failure(StatusCode::BAD_REQUEST, "bad_request", format!("{name} is not a number")))
        };
        match name.as_str() {
            "offset" => offset = number()?,
            "limit" => limit = number()?.min(MAX_LIMIT),
            field if spec.searchable.contains(&field) => search.push((field, value.as_str())),
            field => {
                let known = spec.searchable.join(", ");
                return Err(Failure(
                    StatusCode::BAD_REQUEST,
                    "unknown_field",
                    format!("{} can be searched by {known}, not {field}", spec.name),
                ));
            }
        }
    }
    let empty = Vec::new();
    let matching: Vec<&Document> = data
        .documents
        .get(spec.name)
        .unwrap_or(&empty)
        .iter()
        .filter(|d| search.iter().all(|(field, value)| matches(d, field, value)))
        .collect();
    let items: Vec<Value> = matching.iter().skip(offset).take(limit).map(|d| d.envelope()).collect();
    Ok((StatusCode::OK, json!({"items": items, "total": matching.len(), "offset": offset, "limit": limit})))
}

fn create(data: &mut Data, spec: &Collection, document: Value) -> Result<(StatusCode, Value), Failure> {
    check_unique(data, spec, &document, None)?;
    let document = new_document(document);
    let envelope = document.envelope();
    data.documents.entry(spec.name).or_default().push(document);
    Ok((StatusCode::CREATED, envelope))
}

fn replace(
    data: &mut Data,
    spec: &Collection,
    id: &str,
    document: Value,
    if_match: Option<&str>,
) -> Result<(StatusCode, Value), Failure> {
    find(data, spec, id)?;
    if let Some((_, _, change)) = data.interference.take_if(|(c, i, _)| c == spec.name && i == id) {
        if let Some(stored) = data.documents.get_mut(spec.name).and_then(|docs| docs.iter_mut().find(|d| d.id == id)) {
            change(&mut stored.data);
            stored.version += 1;
        }
    }
    check_unique(data, spec, &document, Some(id))?;
    let stored = data
        .documents
        .get_mut(spec.name)
        .and_then(|docs| docs.iter_mut().find(|d| d.id == id))
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, "not_found", format!("no document {id}")))?;
    if let Some(expected) = if_match {
        if expected != stored.version.to_string() {
            let message = format!("{id} is at version {}, not {expected}", stored.version);
            return Err(Failure(StatusCode::PRECONDITION_FAILED, "version_mismatch", message));
        }
    }
    stored.data = document;
    stored.version += 1;
    stored.updated = now();
    Ok((StatusCode::OK, stored.envelope()))
}

fn delete(data: &mut Data, spec: &Collection, id: &str) -> Result<(StatusCode, Value), Failure> {
    find(data, spec, id)?;
    if let Some(docs) = data.documents.get_mut(spec.name) {
        docs.retain(|d| d.id != id);
    }
    Ok((StatusCode::NO_CONTENT, Value::Object(Map::new())))
}
