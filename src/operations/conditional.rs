//! Versions and preconditions: the version a resource's `ETag` carries, and `If-Match`
//! (RFC 7644 §3.14, RFC 7232).

use std::io::Write as _;

use http::HeaderMap;
use serde_json::{Map, Value};

use super::meta_text;
use crate::error::RequestError;
use crate::scim::Fingerprinter;

/// The fingerprint a resource's version is made of when the script gives none: that of the
/// resource as compact JSON, `meta` included, without its membership lists and location.
///
/// Membership lists are left out: a read that skips them (excludedAttributes=members) must
/// show the same version; their changes reach the version through lastModified. So is the
/// location: the same resource reached under two host names is one version.
///
/// The text hashed is defined here, not by how a JSON library happens to order a map: every
/// object's members sorted by key, byte for byte, at every depth; strings and numbers written
/// as serde_json writes them. A version so stays the same across releases and replicas
/// whatever features the dependency graph turns on (`serde_json/preserve_order` keeps insertion
/// order, which would change every ETag). The text is fed to the hash as it is written, never
/// built (this runs for every resource answered).
pub(super) fn version_hash(object: &Map<String, Value>, meta: &Map<String, Value>) -> u64 {
    let mut out = Fingerprinter::default();
    let members = object
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "members" | "groups" | "meta"))
        .map(|(key, value)| (key.as_str(), Member::Value(value)))
        .chain(std::iter::once(("meta", Member::Meta(meta))))
        .collect();
    write_object(&mut out, members);
    out.finish()
}

/// A member of an object being hashed: a value, or the resource's `meta` (without `location`).
enum Member<'a> {
    Value(&'a Value),
    Meta(&'a Map<String, Value>),
}

/// Writes `{"key":value,…}` with the members in byte order of their keys.
fn write_object(out: &mut Fingerprinter, mut members: Vec<(&str, Member<'_>)>) {
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    write_members(out, members.into_iter());
}

/// Writes a map as [`write_object`] does, leaving out the key `skip` if any: as it iterates when its
/// keys already come in byte order (serde_json's default map, so no list is built for each
/// object of every resource answered), else sorted first.
fn write_map(out: &mut Fingerprinter, map: &Map<String, Value>, skip: Option<&str>) {
    let members = map.iter().filter(|(key, _)| Some(key.as_str()) != skip).map(|(k, v)| (k.as_str(), Member::Value(v)));
    if map.keys().is_sorted() {
        write_members(out, members);
    } else {
        write_object(out, members.collect());
    }
}

/// Writes members already in key order as `{"key":value,…}`.
fn write_members<'a>(out: &mut Fingerprinter, members: impl Iterator<Item = (&'a str, Member<'a>)>) {
    // Writing to a hasher cannot fail.
    let _ = out.write_all(b"{");
    for (index, (key, member)) in members.enumerate() {
        if index > 0 {
            let _ = out.write_all(b",");
        }
        write_string(out, key);
        let _ = out.write_all(b":");
        match member {
            Member::Value(value) => write_value(out, value),
            Member::Meta(meta) => write_map(out, meta, Some("location")),
        }
    }
    let _ = out.write_all(b"}");
}

/// Writes a value as compact JSON, its objects in key order.
fn write_value(out: &mut Fingerprinter, value: &Value) {
    match value {
        Value::Object(map) => write_map(out, map, None),
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    let _ = out.write_all(b",");
                }
                write_value(out, item);
            }
            let _ = out.write_all(b"]");
        }
        Value::String(text) => write_string(out, text),
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// Writes a string as serde_json writes it: as it is between quotes when nothing in it is
/// escaped (almost every string), else by serde_json.
fn write_string(out: &mut Fingerprinter, text: &str) {
    if crate::scim::first_escaped(text.as_bytes()).is_none() {
        out.update(b"\"");
        out.update(text.as_bytes());
        out.update(b"\"");
    } else {
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Enforces `If-Match` against the current version (RFC 7644 §3.14).
pub(super) fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), RequestError> {
    let Some(wanted) = headers.get(http::header::IF_MATCH) else {
        return Ok(());
    };
    let current = meta_text(current, "version").unwrap_or_default();
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

    /// The version hash of the resource below, as every release so far computed it.
    const PINNED: u64 = 4_756_263_033_788_759_188;

    #[test]
    fn a_version_is_the_hash_of_a_text_defined_here_and_fixed_across_releases() {
        // The keys of every object sorted byte for byte at every depth, whatever order the
        // map holds them in: this text, and this number, are what every ETag has been made
        // of. A change here changes the ETag of every resource an identity provider holds.
        let object = json!({"userName": "bjensen", "id": "2819c223", "emails": [{"value": "b@example.com",
            "type": "work", "primary": true}], "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "active": true, "groups": [{"value": "e9e30dba"}], "x": [1.5, -2, null, "é\u{1}"]});
        let meta = json!({"resourceType": "User", "lastModified": "2026-12-06T12:00:00Z",
            "location": "https://scim.example.com/Users/2819c223", "created": "2026-12-01T08:00:00Z"});
        let (Value::Object(object), Value::Object(meta)) = (object, meta) else { unreachable!() };
        let text = concat!(
            r#"{"active":true,"emails":[{"primary":true,"type":"work","value":"b@example.com"}],"id":"2819c223","#,
            r#""meta":{"created":"2026-12-01T08:00:00Z","lastModified":"2026-12-06T12:00:00Z","resourceType":"User"},"#,
            r#""name":{"familyName":"Jensen","givenName":"Barbara"},"userName":"bjensen","x":[1.5,-2,null,"é\u0001"]}"#
        );
        assert_eq!(version_hash(&object, &meta), crate::scim::fingerprint(text.as_bytes()));
        assert_eq!(version_hash(&object, &meta), PINNED, "the version of this resource changed: every ETag would");
    }
}
