//! Writing SCIM responses: `application/scim+json` bodies, headers, and the error message format.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::Response;
use serde_json::json;

use crate::error::Answer;
use crate::error::ERROR_SCHEMA;
use crate::operations::Reply;

/// The media type of every SCIM response (RFC 7644 §3.1).
pub(crate) const SCIM_JSON: &str = "application/scim+json";

/// Builds the HTTP response of a successful operation.
pub(crate) fn reply(reply: Reply, request_id: &str) -> Response<Full<Bytes>> {
    let body = reply.body.map(|b| Bytes::from(serde_json::to_vec(&b).unwrap_or_default())).unwrap_or_default();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if reply.status != StatusCode::NO_CONTENT && reply.status != StatusCode::NOT_MODIFIED {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    }
    if let Some(etag) = reply.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(location) = reply.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    set_request_id(&mut response, request_id);
    response
}

/// Builds a SCIM error response (RFC 7644 §3.12).
pub(crate) fn error(answer: &Answer, request_id: &str) -> Response<Full<Bytes>> {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": answer.status.as_u16().to_string(),
        "detail": answer.detail,
    });
    if let Some(scim_type) = answer.scim_type {
        body["scimType"] = json!(scim_type);
    }
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(seconds) = answer.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    set_request_id(&mut response, request_id);
    response
}

/// The answer to a request still running when shutdown's grace time ran out: `503`, saying
/// whether a change may have been made; over HTTP/1.1 with `Connection: close` (h2 has had its
/// `GOAWAY`, and forbids the header).
pub(crate) fn cut_short(method: &http::Method, version: http::Version, request_id: &str) -> Response<Full<Bytes>> {
    let write = !matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    let shut_down = crate::error::Error::from(crate::error::RequestError::ShutDown { write });
    let mut response = error(&crate::error::answer(&shut_down), request_id);
    if version < http::Version::HTTP_2 {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn set_request_id(response: &mut Response<Full<Bytes>>, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
}

/// A plain JSON response for the admin listener.
pub(crate) fn plain_json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
