//! Versions and preconditions: the version a resource's `ETag` carries, and `If-Match`
//! (RFC 7644 §3.14, RFC 7232).

use http::HeaderMap;
use serde_json::{Map, Value};

use super::text_at;
use crate::error::RequestError;

/// The fingerprint a resource's version is made of when the script gives none: that of the
/// resource as compact JSON, `meta` included, without its membership lists and location.
///
/// Membership lists are left out: a read that skips them (excludedAttributes=members) must
/// show the same version; their changes reach the version through lastModified. So is the
/// location: the same resource reached under two host names is one version. The JSON is fed
/// to the hash as it is written, not built (this runs for every resource answered).
pub(super) fn version_hash(object: &Map<String, Value>, meta: &Map<String, Value>) -> u64 {
    use std::io::Write as _;

    use crate::scim::Fingerprinter;
    let mut out = Fingerprinter::default();
    // Writing to a hasher cannot fail; serde_json writes maps as `{"key":value,…}` in key order.
    fn entry(out: &mut Fingerprinter, first: &mut bool, key: &str, value: &dyn Fn(&mut Fingerprinter)) {
        if !std::mem::take(first) {
            let _ = out.write_all(b",");
        }
        let _ = serde_json::to_writer(&mut *out, key);
        let _ = out.write_all(b":");
        value(out);
    }
    let write_meta = |out: &mut Fingerprinter| {
        let _ = out.write_all(b"{");
        let mut first = true;
        for (key, value) in meta.iter().filter(|(k, _)| k.as_str() != "location") {
            if !std::mem::take(&mut first) {
                let _ = out.write_all(b",");
            }
            let _ = serde_json::to_writer(&mut *out, key);
            let _ = out.write_all(b":");
            let _ = serde_json::to_writer(&mut *out, value);
        }
        let _ = out.write_all(b"}");
    };
    let _ = out.write_all(b"{");
    let mut first = true;
    let mut meta_written = false;
    for (key, value) in object.iter().filter(|(k, _)| !matches!(k.as_str(), "members" | "groups" | "meta")) {
        if !meta_written && key.as_str() > "meta" {
            entry(&mut out, &mut first, "meta", &write_meta);
            meta_written = true;
        }
        entry(&mut out, &mut first, key, &|out| {
            let _ = serde_json::to_writer(&mut *out, value);
        });
    }
    if !meta_written {
        entry(&mut out, &mut first, "meta", &write_meta);
    }
    let _ = out.write_all(b"}");
    out.finish()
}

/// Enforces `If-Match` against the current version (RFC 7644 §3.14).
pub(super) fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), RequestError> {
    let Some(wanted) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    let current = text_at(current, "/meta/version").unwrap_or_default();
    if etag_matches(wanted, &current) {
        Ok(())
    } else {
        Err(RequestError::PreconditionFailed { expected: wanted.to_str().unwrap_or("?").to_owned() })
    }
}

/// True when an `If-Match` / `If-None-Match` header names this ETag (weak comparison) or is `*`.
pub(super) fn etag_matches(header: &http::HeaderValue, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").trim_matches('"').to_owned();
    let mine = opaque(etag);
    header.to_str().unwrap_or("").split(',').any(|t| t.trim() == "*" || opaque(t) == mine)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn etags_compare_weakly() {
        let h = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert!(etag_matches(&h("W/\"abc\""), "W/\"abc\""));
        assert!(etag_matches(&h("\"abc\""), "W/\"abc\""));
        assert!(etag_matches(&h("\"x\", W/\"abc\""), "W/\"abc\""));
        assert!(etag_matches(&h("*"), "W/\"abc\""));
        assert!(!etag_matches(&h("W/\"abd\""), "W/\"abc\""));
    }

    #[test]
    fn versions_hash_the_json_without_members_groups_and_location() {
        let object = json!({"id": "1", "userName": "a", "members": [{"value": "2"}], "groups": [],
            "zeta": {"b": 1, "a": "x\"y"}, "active": true, "name": {"givenName": "Ä"}});
        let meta = json!({"resourceType": "User", "location": "http://x/Users/1", "lastModified": "2024"});
        let (Value::Object(object), Value::Object(meta)) = (object, meta) else { unreachable!() };
        // What it hashes: the resource as compact JSON, as serde_json writes it.
        let mut hashed = object.clone();
        hashed.remove("members");
        hashed.remove("groups");
        let mut hashed_meta = meta.clone();
        hashed_meta.remove("location");
        hashed.insert("meta".into(), Value::Object(hashed_meta));
        let expected = crate::scim::fingerprint(&serde_json::to_vec(&hashed).unwrap());
        assert_eq!(version_hash(&object, &meta), expected);
        let mut last = Map::new();
        last.insert("aaa".into(), json!(1));
        assert_eq!(
            version_hash(&last, &Map::new()),
            crate::scim::fingerprint(br#"{"aaa":1,"meta":{}}"#),
            "meta after every key before it"
        );
    }
}
