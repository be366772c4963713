//! `POST /Bulk` (RFC 7644 §3.7): several writes in one request, `bulkId` references resolved.

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::error::{Error, RequestError, answer};
use crate::operations::operation::{self, Operation};
use crate::operations::{self, Call, Reply};
use crate::scim::ScimError;

/// The BulkRequest message URN.
pub(crate) const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// The BulkResponse message URN.
pub(crate) const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// One operation of a BulkRequest, as sent.
#[derive(Debug, Clone)]
struct BulkOp {
    method: String,
    path: String,
    bulk_id: Option<String>,
    version: Option<String>,
    data: Option<Value>,
}

/// Performs a BulkRequest: each operation in dependency order, until `failOnErrors` errors.
pub(crate) async fn perform(call: &Call<'_>) -> Result<Reply, Error> {
    let (max_operations, max_payload) = call
        .app
        .capabilities
        .bulk
        .ok_or_else(|| ScimError::NotImplemented { feature: "/Bulk for this application".into() })?;
    if call.body_bytes > max_payload {
        return Err(RequestError::TooLarge { limit: max_payload }.into());
    }
    let body = call.body.as_ref().ok_or_else(|| ScimError::invalid_syntax("a BulkRequest body is required"))?;
    let (ops, fail_on_errors) = parse_request(body)?;
    if ops.len() > max_operations {
        return Err(RequestError::TooManyOperations { limit: max_operations, given: ops.len() }.into());
    }

    let defined: BTreeSet<&str> = ops.iter().filter_map(|op| op.bulk_id.as_deref()).collect();
    let mut created: BTreeMap<String, String> = BTreeMap::new();
    let mut failed_ids: BTreeSet<String> = BTreeSet::new();
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut errors = 0usize;
    let mut pending: Vec<usize> = (0..ops.len()).collect();

    // Each pass runs the operations whose references are all resolved; a pass that runs
    // none leaves only failed or circular references behind.
    let mut out_of_time = false;
    while !pending.is_empty() && fail_on_errors.is_none_or(|limit| errors < limit) && !out_of_time {
        let mut progressed = false;
        let mut waiting = Vec::new();
        for index in pending {
            if fail_on_errors.is_some_and(|limit| errors >= limit) {
                break;
            }
            // Past the request's deadline no operation is started: the answer lists those
            // that ran, so the client knows which changes were made.
            if std::time::Instant::now() >= call.scope.deadline {
                out_of_time = true;
                break;
            }
            let op = &ops[index];
            let references = references(op);
            if let Some(missing) = references.iter().find(|r| !defined.contains(r.as_str())) {
                let error =
                    ScimError::invalid_value("bulkId", format!("bulkId:{missing} is not defined in this request"));
                results[index] = Some(failure(op, &error.into()));
                errors += 1;
                progressed = true;
                continue;
            }
            if let Some(dead) = references.iter().find(|r| failed_ids.contains(r.as_str())) {
                results[index] = Some(conflict(op, &format!("the operation with bulkId {dead} failed")));
                remember_failure(op, &mut failed_ids);
                errors += 1;
                progressed = true;
                continue;
            }
            if references.iter().any(|r| !created.contains_key(r)) {
                waiting.push(index);
                continue;
            }
            progressed = true;
            let (outcome, location) = match target(op, &created) {
                Ok(operation) => {
                    let location = location(&call.base_url, &operation);
                    (run(call, operation, op, &created).await, location)
                }
                Err(error) => (Err(error), None),
            };
            match outcome {
                Ok(reply) => {
                    if let (Some(bulk_id), Some(id)) = (&op.bulk_id, reply.body.as_ref().and_then(|b| b.get("id"))) {
                        if let Some(id) = id.as_str() {
                            created.insert(bulk_id.clone(), id.to_owned());
                        }
                    }
                    results[index] = Some(success(op, &reply, location));
                }
                Err(error) => {
                    let mut result = failure(op, &error);
                    if let Some(location) = location {
                        result["location"] = json!(location);
                    }
                    results[index] = Some(result);
                    remember_failure(op, &mut failed_ids);
                    errors += 1;
                }
            }
        }
        pending = waiting;
        if !progressed && !out_of_time {
            for &index in &pending {
                results[index] = Some(conflict(&ops[index], "circular bulkId references could not be resolved"));
                errors += 1;
            }
            pending.clear();
        }
    }
    // Operations not run because failOnErrors was reached, or because the request's deadline
    // passed, are left out, as RFC 7644 §3.7.3 allows for the former.
    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(Reply {
        status: StatusCode::OK,
        body: Some(json!({"schemas": [BULK_RESPONSE], "Operations": operations})),
        etag: None,
        location: None,
    })
}

fn remember_failure(op: &BulkOp, failed: &mut BTreeSet<String>) {
    if let Some(id) = &op.bulk_id {
        failed.insert(id.clone());
    }
}

/// Reads a BulkRequest message.
fn parse_request(body: &Value) -> Result<(Vec<BulkOp>, Option<usize>), ScimError> {
    let object = body.as_object().ok_or_else(|| ScimError::invalid_syntax("a BulkRequest is a JSON object"))?;
    let listed = object
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|u| u.as_str() == Some(BULK_REQUEST)));
    if !listed {
        return Err(ScimError::invalid_value("schemas", format!("must list {BULK_REQUEST}")));
    }
    let fail_on_errors = match object.get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => n.as_u64().map(|n| n as usize),
        Some(_) => return Err(ScimError::invalid_value("failOnErrors", "must be an integer of at least 1")),
    };
    let operations = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::invalid_value("Operations", "is required and must be an array"))?;
    let mut ops = Vec::with_capacity(operations.len());
    let mut ids = BTreeSet::new();
    for (i, op) in operations.iter().enumerate() {
        let attribute = |name: &str| format!("Operations[{i}].{name}");
        let object = op.as_object().ok_or_else(|| ScimError::invalid_value(attribute(""), "must be an object"))?;
        let text = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
        let method = text("method").ok_or_else(|| ScimError::invalid_value(attribute("method"), "is required"))?;
        let path = text("path").ok_or_else(|| ScimError::invalid_value(attribute("path"), "is required"))?;
        let bulk_id = text("bulkId");
        if let Some(id) = &bulk_id {
            if !ids.insert(id.clone()) {
                return Err(ScimError::invalid_value(attribute("bulkId"), format!("{id:?} is used twice")));
            }
        }
        ops.push(BulkOp { method, path, bulk_id, version: text("version"), data: object.get("data").cloned() });
    }
    Ok((ops, fail_on_errors))
}

/// The bulkIds an operation refers to in its path or data (`"bulkId:qwerty"`).
fn references(op: &BulkOp) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for segment in op.path.split('/') {
        if let Some(id) = segment.strip_prefix("bulkId:") {
            found.insert(id.to_owned());
        }
    }
    if let Some(data) = &op.data {
        collect_references(data, &mut found);
    }
    found
}

fn collect_references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                found.insert(id.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

fn substitute(value: &mut Value, created: &BTreeMap<String, String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|r| created.get(r)) {
                *s = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, created)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, created)),
        _ => {}
    }
}

/// The write an operation asks for, its `bulkId:` references in the path resolved.
fn target(op: &BulkOp, created: &BTreeMap<String, String>) -> Result<Operation, Error> {
    let method = Method::from_bytes(op.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ScimError::invalid_value("method", format!("{:?} is not an HTTP method", op.method)))?;
    if !matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return Err(ScimError::invalid_value("method", "a bulk operation is POST, PUT, PATCH or DELETE").into());
    }
    if method == Method::POST && op.bulk_id.is_none() {
        return Err(ScimError::invalid_value("bulkId", "is required for POST").into());
    }
    let path: Vec<String> = op
        .path
        .split('/')
        .map(|segment| match segment.strip_prefix("bulkId:").and_then(|r| created.get(r)) {
            Some(id) => crate::legacy::path::encode_segment(id).into_owned(),
            None => segment.to_owned(),
        })
        .collect();
    let path = path.join("/");
    let operation = operation::route(&method, &path, &path)?;
    if !matches!(
        operation,
        Operation::Create(_) | Operation::Replace(..) | Operation::Patch(..) | Operation::Delete(..)
    ) {
        return Err(ScimError::invalid_value(
            "path",
            format!("{} is not a resource a bulk operation can write", op.path),
        )
        .into());
    }
    Ok(operation)
}

/// The endpoint URL of the resource an operation writes, which its result carries whether
/// it succeeds or fails; `None` for a POST, whose resource has no URL until it exists
/// (RFC 7644 §3.7.3).
fn location(base_url: &str, operation: &Operation) -> Option<String> {
    match operation {
        Operation::Replace(kind, id) | Operation::Patch(kind, id) | Operation::Delete(kind, id) => {
            Some(super::finish::resource_url(base_url.trim_end_matches('/'), kind.endpoint(), id))
        }
        _ => None,
    }
}

/// Runs one operation through the same code as a single request.
async fn run(
    call: &Call<'_>,
    operation: Operation,
    op: &BulkOp,
    created: &BTreeMap<String, String>,
) -> Result<Reply, Error> {
    let mut headers = HeaderMap::new();
    if let Some(version) = op.version.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(http::header::IF_MATCH, version);
    }
    let mut data = op.data.clone();
    if let Some(data) = &mut data {
        substitute(data, created);
    }
    let sub = Call {
        app: call.app,
        base_url: call.base_url.clone(),
        headers: &headers,
        principal: call.principal.clone(),
        query: Vec::new(),
        body: data,
        body_bytes: 0,
        scope: call.scope.clone(),
    };
    Box::pin(operations::perform(&operation, &sub)).await
}

/// The result of an operation that succeeded: its location is the resource's own
/// `meta.location` when it answered one (a create, a replace), else `location` (a delete).
fn success(op: &BulkOp, reply: &Reply, location: Option<String>) -> Value {
    let mut result = json!({"method": op.method, "status": reply.status.as_u16().to_string()});
    if let Some(id) = &op.bulk_id {
        result["bulkId"] = json!(id);
    }
    let location = reply.body.as_ref().and_then(|b| b.pointer("/meta/location")).cloned().or(location.map(Value::from));
    if let Some(location) = location {
        result["location"] = location;
    }
    if let Some(version) = &reply.etag {
        result["version"] = json!(version);
    }
    result
}

fn failure(op: &BulkOp, error: &Error) -> Value {
    let answer = answer(error);
    let mut response = json!({
        "schemas": [crate::error::ERROR_SCHEMA],
        "status": answer.status.as_u16().to_string(),
        "detail": answer.detail,
    });
    if let Some(scim_type) = answer.scim_type {
        response["scimType"] = json!(scim_type);
    }
    let mut result = json!({"method": op.method, "status": answer.status.as_u16().to_string(), "response": response});
    if let Some(id) = &op.bulk_id {
        result["bulkId"] = json!(id);
    }
    result
}

fn conflict(op: &BulkOp, detail: &str) -> Value {
    let error = Error::from(crate::error::RequestError::Conflict { detail: detail.to_owned() });
    failure(op, &error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_substitutes_bulk_id_references() {
        let op = BulkOp {
            method: "POST".into(),
            path: "/Groups".into(),
            bulk_id: Some("g".into()),
            version: None,
            data: Some(json!({"members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}, {"value": "7"}]})),
        };
        assert_eq!(references(&op), ["u1".to_owned(), "u2".to_owned()].into_iter().collect());
        let mut data = op.data.clone().unwrap();
        let created: BTreeMap<String, String> = [("u1".to_owned(), "41".to_owned())].into_iter().collect();
        substitute(&mut data, &created);
        assert_eq!(data["members"][0]["value"], "41");
        assert_eq!(data["members"][1]["value"], "bulkId:u2");
    }

    #[test]
    fn parses_bulk_requests_strictly() {
        let good = json!({"schemas": [BULK_REQUEST], "failOnErrors": 1,
            "Operations": [{"method": "POST", "path": "/Users", "bulkId": "a", "data": {}}]});
        let (ops, fail) = parse_request(&good).unwrap();
        assert_eq!((ops.len(), fail), (1, Some(1)));
        for bad in [
            json!({"Operations": []}),
            json!({"schemas": [BULK_REQUEST]}),
            json!({"schemas": [BULK_REQUEST], "failOnErrors": 0, "Operations": []}),
            json!({"schemas": [BULK_REQUEST], "Operations": [{"path": "/Users"}]}),
            json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "a"}, {"method": "POST", "path": "/Users", "bulkId": "a"}]}),
        ] {
            assert!(parse_request(&bad).is_err(), "{bad}");
        }
    }
}
