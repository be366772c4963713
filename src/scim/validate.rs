//! Checks a POST or PUT body against its resource type's schemas (RFC 7644 §3.3, §3.5.1).
//!
//! Decisions where the RFC leaves room:
//! - An attribute the resource type does not publish (a top-level name, a sub-attribute, or
//!   data under an extension URN the app does not offer) goes to [`Unpublished`]: under the
//!   app's `ignore` policy it is dropped and noted, under `refuse` it is `invalidValue` naming
//!   it. `id`, `externalId`, `meta` and `schemas` are always known. A name that belongs to a
//!   published extension but is sent outside its URN object is refused under both policies:
//!   the app could hold it, so dropping it would lose data the client meant to write.
//! - readOnly values (`id`, `meta`, `groups`, `manager.displayName`, …) are removed without
//!   looking at them, as RFC 7644 §3.3 and §3.5.1 say they SHALL be ignored.
//! - `schemas` is required (RFC 7643 §3) and must list the core schema; URNs in it that are
//!   not extensions of this resource type are dropped, since IdPs list extensions an app
//!   may not have configured. Data under an unknown URN key is rejected.
//! - Booleans sent as the strings `"true"`/`"false"` (any case) are converted, as real IdPs
//!   send them; a single value where an array is expected is wrapped; `null` and empty
//!   arrays and objects are unassigned (RFC 7643 §2.5) and removed.
//! - canonicalValues are not enforced (RFC 7643 §7 calls them suggestions).

use crate::scim::value::kind_of;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{ScimError, quoted};
use super::path::AttrPath;
use super::schema::{AttrType, Attribute, Mutability, ResourceSchema, Returned, Schema};
use super::unpublished::Unpublished;

/// Which write the body is for; both are validated alike (see [`validate_resource`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// `POST /Users`: a new resource.
    Create,
    /// `PUT /Users/{id}`: a full replacement.
    Replace,
}

/// Checks a POST or PUT body and returns the resource as the script should see it.
///
/// The result has attribute names in the schema's spelling, readOnly and null values
/// removed, `"True"`/`"False"` strings turned into booleans, single values wrapped where
/// arrays are expected, and `schemas` listing the core schema and the extensions present.
/// Create and Replace follow the same rules (RFC 7644 §3.3 and §3.5.1 treat readOnly and
/// required attributes alike); whether an immutable value changed needs the stored
/// resource, which [`check_immutable`] compares. Attributes the resource type does not
/// publish go to `unpublished`, which drops and notes them or refuses them.
pub fn validate_resource(
    rs: &ResourceSchema,
    body: &Value,
    _mode: WriteMode,
    unpublished: &mut Unpublished,
) -> Result<Value, ScimError> {
    let Some(body) = body.as_object() else {
        return Err(ScimError::invalid_syntax(format!("a {} must be a JSON object", rs.name)));
    };
    reject_duplicates(body, &At::Body)?;
    let listed = listed_schemas(rs, body)?;
    let mut out = Map::new();
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rs.extension(key) {
            let Some(object) = value_object(value, &ext.id)? else { continue };
            let cleaned =
                clean_members(object, &ext.name, &|name| ext.attribute(name), &At::Extension(&ext.id), unpublished)?;
            if !cleaned.is_empty() {
                out.insert(ext.id.clone(), Value::Object(cleaned));
            }
            continue;
        }
        let Some(attribute) = rs.core_attribute(key) else {
            match unknown_attribute(rs, key) {
                Unknown::Misplaced(error) => return Err(error),
                Unknown::Unpublished(error) => {
                    unpublished.skip(key.as_str(), error)?;
                    continue;
                }
            }
        };
        if let Some(cleaned) = clean_value(attribute, value, &At::Body.member(&attribute.name), unpublished)? {
            out.insert(attribute.name.clone(), cleaned);
        }
    }
    check_required(rs.core.attributes.iter(), &out, &|name| name.to_owned())?;
    for (ext, required) in &rs.extensions {
        match out.get(&ext.id).and_then(Value::as_object) {
            Some(data) => check_required(ext.attributes.iter(), data, &|name| format!("{}:{name}", ext.id))?,
            None if *required => {
                return Err(ScimError::invalid_value(&ext.id, format!("the {} extension is required", ext.name)));
            }
            None => {}
        }
    }
    let schemas: Vec<Value> = rs
        .schemas()
        .filter(|s| {
            s.id == rs.core.id || out.contains_key(&s.id) || listed.iter().any(|l| l.eq_ignore_ascii_case(&s.id))
        })
        .map(|s| Value::from(s.id.as_str()))
        .collect();
    out.insert("schemas".to_owned(), Value::Array(schemas));
    Ok(Value::Object(out))
}

/// Fails with a `mutability` error when `after` gives an immutable attribute a value other
/// than the one `before` (the stored resource) already has (RFC 7644 §3.5.1). Runs on PUT,
/// after [`validate_resource`].
///
/// Leaving an immutable attribute out is not a change: like an omitted readWrite value it
/// is "not asserted" by the client. Immutable sub-attributes of multi-valued attributes
/// (`members.value`) are not compared: values may be added and removed as a whole, and
/// there is no key to pair old and new ones.
pub(crate) fn check_immutable(rs: &ResourceSchema, before: &Value, after: &Value) -> Result<(), ScimError> {
    let changed = |old: Option<&Value>, new: Option<&Value>| match (old, new) {
        (Some(old), Some(new)) => !old.is_null() && !new.is_null() && old != new,
        _ => false,
    };
    let compare = |schema: &Schema, before: Option<&Value>, after: Option<&Value>, prefix: &str| {
        let error = |path: String| ScimError::Mutability {
            attribute: format!("{prefix}{path}"),
            detail: "an immutable attribute cannot be changed once set".to_owned(),
        };
        for attribute in &schema.attributes {
            let old = before.and_then(|b| get_ignore_case(b, &attribute.name));
            let new = after.and_then(|a| get_ignore_case(a, &attribute.name));
            if attribute.mutability == Mutability::Immutable && changed(old, new) {
                return Err(error(attribute.name.clone()));
            }
            if attribute.kind != AttrType::Complex || attribute.multi_valued {
                continue;
            }
            for sub in attribute.sub_attributes.iter().filter(|s| s.mutability == Mutability::Immutable) {
                let (old, new) =
                    (old.and_then(|o| get_ignore_case(o, &sub.name)), new.and_then(|n| get_ignore_case(n, &sub.name)));
                if changed(old, new) {
                    return Err(error(format!("{}.{}", attribute.name, sub.name)));
                }
            }
        }
        Ok(())
    };
    compare(&rs.core, Some(before), Some(after), "")?;
    for (ext, _) in &rs.extensions {
        let prefix = format!("{}:", ext.id);
        compare(ext, get_ignore_case(before, &ext.id), get_ignore_case(after, &ext.id), &prefix)?;
    }
    Ok(())
}

/// Removes, in place, every attribute and sub-attribute whose `returned` is `never` (such
/// as `password`) from a resource. Runs on every resource before it leaves the proxy.
pub(crate) fn without_never_returned(rs: &ResourceSchema, resource: &mut Value) {
    let Some(object) = resource.as_object_mut() else { return };
    object.retain(|key, value| {
        if let Some(ext) = rs.extension(key) {
            if let Some(data) = value.as_object_mut() {
                data.retain(|name, value| keep_returned(ext.attribute(name), value));
            }
            return true;
        }
        keep_returned(rs.core_attribute(key), value)
    });
}

/// Whether [`without_never_returned`] would take anything out of `object` (a resource's
/// members): a `returned: never` attribute or sub-attribute the resource holds.
pub(crate) fn has_never_returned(rs: &ResourceSchema, object: &Map<String, Value>) -> bool {
    let never = |attribute: Option<&Attribute>, value: &Value| {
        let Some(attribute) = attribute else { return false };
        if attribute.returned == Returned::Never {
            return true;
        }
        let holds = |item: &Value| {
            item.as_object().is_some_and(|object| {
                object.keys().any(|name| attribute.sub_attribute(name).is_some_and(|s| s.returned == Returned::Never))
            })
        };
        match value {
            Value::Array(items) => items.iter().any(holds),
            item => holds(item),
        }
    };
    object.iter().any(|(key, value)| match rs.extension(key) {
        Some(ext) => value.as_object().is_some_and(|data| data.iter().any(|(name, v)| never(ext.attribute(name), v))),
        None => never(rs.core_attribute(key), value),
    })
}

/// False for a `returned: never` attribute; strips `never` sub-attributes from the value in place.
fn keep_returned(attribute: Option<&Attribute>, value: &mut Value) -> bool {
    let Some(attribute) = attribute else { return true };
    if attribute.returned == Returned::Never {
        return false;
    }
    let strip = |item: &mut Value| {
        if let Some(object) = item.as_object_mut() {
            object.retain(|name, _| attribute.sub_attribute(name).is_none_or(|s| s.returned != Returned::Never));
        }
    };
    match value {
        Value::Array(items) => items.iter_mut().for_each(strip),
        item => strip(item),
    }
    true
}

/// The URNs listed in `schemas`, after checking it is an array of strings naming the core schema.
fn listed_schemas<'a>(rs: &ResourceSchema, body: &'a Map<String, Value>) -> Result<Vec<&'a str>, ScimError> {
    let schemas = body.iter().find(|(k, _)| k.eq_ignore_ascii_case("schemas")).map(|(_, v)| v);
    let Some(schemas) = schemas else {
        return Err(ScimError::invalid_value("schemas", format!("missing; a {} must list {}", rs.name, rs.core.id)));
    };
    let listed: Option<Vec<&str>> = match schemas {
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    let Some(listed) = listed else {
        return Err(ScimError::invalid_value("schemas", "must be an array of schema URNs"));
    };
    if !listed.iter().any(|urn| urn.eq_ignore_ascii_case(&rs.core.id)) {
        return Err(ScimError::invalid_value("schemas", format!("a {} must list {}", rs.name, rs.core.id)));
    }
    Ok(listed)
}

/// A top-level key that names no core or common attribute.
enum Unknown {
    /// An attribute of a published extension, sent outside its URN object.
    Misplaced(ScimError),
    /// Not published at all; the error is what `refuse` answers.
    Unpublished(ScimError),
}

/// Why a top-level key no schema of the resource type defines is unknown, with the error
/// that names it (pointing to the URN key when the name belongs to an extension).
fn unknown_attribute(rs: &ResourceSchema, key: &str) -> Unknown {
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
        return Unknown::Unpublished(ScimError::invalid_value(key, format!("not a schema extension of {}", rs.name)));
    }
    match rs.extensions.iter().find(|(s, _)| s.attribute(key).is_some()) {
        Some((ext, _)) => Unknown::Misplaced(ScimError::invalid_value(
            key,
            format!("an attribute of {}; send it inside the object under that key", ext.id),
        )),
        None => Unknown::Unpublished(ScimError::invalid_value(key, format!("no such attribute in {}", rs.name))),
    }
}

/// Where a value sits in the body, as the errors about it name it (`emails[0].value`,
/// `urn:…:User:manager.value`): written out only when an error is raised, since every value
/// of a body is cleaned and few are wrong.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    /// The body itself.
    Body,
    /// The object of an extension, under its URN.
    Extension(&'a str),
    /// A member of an object.
    Member(&'a At<'a>, &'a str),
    /// An element of an array.
    Element(&'a At<'a>, usize),
}

impl At<'_> {
    fn member<'b>(&'b self, name: &'b str) -> At<'b> {
        At::Member(self, name)
    }

    /// The path, as errors name it.
    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// What the names of this object's members follow: `emails[0].`, `urn:…:User:`.
    fn prefix(&self) -> String {
        let mut out = self.text();
        if matches!(self, At::Member(..) | At::Element(..)) {
            out.push('.');
        }
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            At::Body => {}
            At::Extension(urn) => {
                out.push_str(urn);
                out.push(':');
            }
            At::Member(parent, name) => {
                parent.write(out);
                if matches!(parent, At::Member(..) | At::Element(..)) {
                    out.push('.');
                }
                out.push_str(name);
            }
            At::Element(parent, index) => {
                parent.write(out);
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
}

/// Cleans the members of a JSON object (the one at `at`) against the attributes `lookup`
/// finds; members `lookup` does not find go to `unpublished`.
fn clean_members<'a>(
    object: &Map<String, Value>,
    owner: &str,
    lookup: &dyn Fn(&str) -> Option<&'a Attribute>,
    at: &At<'_>,
    unpublished: &mut Unpublished,
) -> Result<Map<String, Value>, ScimError> {
    reject_duplicates(object, at)?;
    let mut out = Map::new();
    for (key, value) in object {
        let Some(attribute) = lookup(key) else {
            let at = at.member(key).text();
            let refusal = ScimError::invalid_value(at.as_str(), format!("no such attribute in {owner}"));
            unpublished.skip(at, refusal)?;
            continue;
        };
        if let Some(cleaned) = clean_value(attribute, value, &at.member(&attribute.name), unpublished)? {
            out.insert(attribute.name.clone(), cleaned);
        }
    }
    Ok(out)
}

/// Cleans one attribute's value; `None` when it ends up unassigned (null, empty, readOnly).
fn clean_value(
    attribute: &Attribute,
    value: &Value,
    at: &At<'_>,
    unpublished: &mut Unpublished,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() || attribute.mutability == Mutability::ReadOnly {
        return Ok(None);
    }
    if !attribute.multi_valued {
        if value.is_array() {
            return Err(ScimError::invalid_value(at.text(), "expected a single value, not an array"));
        }
        return clean_single(attribute, value, at, unpublished);
    }
    let items = match value {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(item) = clean_single(attribute, item, &At::Element(at, index), unpublished)? {
            out.push(item);
        }
    }
    let primaries = out.iter().filter(|item| item.get("primary") == Some(&Value::Bool(true))).count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(
            at.text(),
            format!("{primaries} values are marked primary; at most one may be"),
        ));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// Checks and normalises one value (one element of a multi-valued attribute) against its type.
fn clean_single(
    attribute: &Attribute,
    value: &Value,
    at: &At<'_>,
    unpublished: &mut Unpublished,
) -> Result<Option<Value>, ScimError> {
    let wrong = |expected: &str| {
        Err(ScimError::invalid_value(at.text(), format!("expected {expected}, got {}", kind_of(value))))
    };
    let ok = |value: &Value| Ok(Some(value.clone()));
    match (attribute.kind, value) {
        (_, Value::Null) => Ok(None),
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(_)) => ok(value),
        (AttrType::String, _) => wrong("a string"),
        (AttrType::Reference, _) => wrong("a reference (URI string)"),
        (AttrType::Binary, _) => wrong("base64-encoded binary as a string"),
        (AttrType::Boolean, Value::Bool(_)) => ok(value),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
        (AttrType::Boolean, _) => wrong("a boolean"),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => ok(value),
        (AttrType::Integer, _) => wrong("an integer"),
        (AttrType::Decimal, Value::Number(_)) => ok(value),
        (AttrType::Decimal, _) => wrong("a decimal number"),
        (AttrType::DateTime, Value::String(s)) if OffsetDateTime::parse(s, &Rfc3339).is_ok() => ok(value),
        (AttrType::DateTime, _) => wrong("a date and time such as 2015-09-30T12:00:00Z"),
        (AttrType::Complex, Value::Object(object)) => {
            let cleaned =
                clean_members(object, &attribute.name, &|name| attribute.sub_attribute(name), at, unpublished)?;
            if cleaned.is_empty() {
                return Ok(None);
            }
            check_required(attribute.sub_attributes.iter(), &cleaned, &|name| at.member(name).text())?;
            Ok(Some(Value::Object(cleaned)))
        }
        (AttrType::Complex, _) => wrong("an object"),
    }
}

/// Fails on the first required, client-writable attribute missing from `present`.
fn check_required<'a>(
    attributes: impl Iterator<Item = &'a Attribute>,
    present: &Map<String, Value>,
    path: &dyn Fn(&str) -> String,
) -> Result<(), ScimError> {
    for attribute in attributes {
        if attribute.required && attribute.mutability != Mutability::ReadOnly && !present.contains_key(&attribute.name)
        {
            return Err(ScimError::invalid_value(path(&attribute.name), "required, but missing"));
        }
    }
    Ok(())
}

/// The object under an extension key, `None` for null; anything else is an error.
fn value_object<'a>(value: &'a Value, urn: &str) -> Result<Option<&'a Map<String, Value>>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(object) => Ok(Some(object)),
        other => {
            Err(ScimError::invalid_value(urn, format!("extension data must be an object, got {}", kind_of(other))))
        }
    }
}

/// Fails when two keys of one object differ only in case: names are case-insensitive
/// (RFC 7643 §2.1), so they would name the same attribute twice.
fn reject_duplicates(object: &Map<String, Value>, at: &At<'_>) -> Result<(), ScimError> {
    let duplicate = |key: &String| {
        ScimError::invalid_value(format!("{}{key}", at.prefix()), "given more than once (names are case-insensitive)")
    };
    let keys: Vec<&String> = object.keys().collect();
    // Pairwise for the objects SCIM bodies hold; a set for a body of thousands of names, so
    // that it costs linear time.
    if keys.len() <= 32 {
        for (i, key) in keys.iter().enumerate() {
            if keys[i + 1..].iter().any(|other| other.eq_ignore_ascii_case(key)) {
                return Err(duplicate(key));
            }
        }
        return Ok(());
    }
    let mut seen = std::collections::HashMap::with_capacity(keys.len());
    for key in keys {
        if let Some(first) = seen.insert(key.to_ascii_lowercase(), key) {
            return Err(duplicate(first));
        }
    }
    Ok(())
}

/// The member of an object whose key matches `name` case-insensitively.
fn get_ignore_case<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Refuses values outside the `canonicalValues` of the attributes at `paths`: the ones an app
/// declared as the only values it knows (RFC 7643's own canonical values stay suggestions).
/// Runs on the resource a POST, PUT or PATCH would write.
pub(crate) fn check_canonical(rs: &ResourceSchema, resource: &Value, paths: &[AttrPath]) -> Result<(), ScimError> {
    for path in paths {
        let Some(resolved) = rs.resolve(path) else { continue };
        let target = resolved.target();
        if target.canonical_values.is_empty() {
            continue;
        }
        let container =
            if resolved.in_extension { get_ignore_case(resource, &resolved.schema.id) } else { Some(resource) };
        let Some(value) = container.and_then(|c| get_ignore_case(c, &resolved.attribute.name)) else { continue };
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for item in values {
            let candidate = match resolved.sub {
                Some(sub) => get_ignore_case(item, &sub.name),
                None => Some(item),
            };
            let Some(Value::String(text)) = candidate else { continue };
            let known = target
                .canonical_values
                .iter()
                .any(|c| if target.case_exact { c == text } else { c.to_lowercase() == text.to_lowercase() });
            if !known {
                return Err(ScimError::invalid_value(
                    path.to_string(),
                    format!("{} is not one of {}", quoted(text), target.canonical_values.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::definitions::{
        custom_schema_from_json, enterprise_user_schema, group_resource, rfc_examples, user_resource,
    };
    use crate::scim::unpublished::UnsupportedAttributes;

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const ACME: &str = "urn:example:scim:acme:1.0:User";

    fn acme() -> Schema {
        custom_schema_from_json(&json!({
            "id": ACME,
            "attributes": [
                { "name": "badge", "mutability": "immutable" },
                { "name": "level", "type": "integer" },
                { "name": "ratio", "type": "decimal" },
                { "name": "hired", "type": "dateTime" },
                { "name": "pin", "mutability": "writeOnly", "returned": "never" },
                { "name": "site", "type": "complex", "subAttributes": [
                    { "name": "code", "required": true, "mutability": "immutable" },
                    { "name": "secret", "returned": "never" }
                ] }
            ]
        }))
        .unwrap()
    }

    fn refuse() -> Unpublished {
        Unpublished::new(UnsupportedAttributes::Refuse)
    }

    fn users() -> ResourceSchema {
        user_resource(vec![(enterprise_user_schema(), false), (acme(), false)])
    }

    fn user(extra: Value) -> Value {
        let mut body = json!({ "schemas": [CORE], "userName": "bjensen" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    }

    #[test]
    fn unpublished_attributes_are_ignored_and_noted_or_refused() {
        let core = crate::scim::definitions::restrict(
            &crate::scim::definitions::user_schema(),
            &["name.givenName".to_owned(), "name.familyName".to_owned(), "emails".to_owned(), "active".to_owned()],
        )
        .unwrap();
        let mut rs = user_resource(vec![]);
        rs.core = core;
        // Entra ID's create with its default mapping, plus an extension the app does not offer.
        let body = json!({
            "schemas": [CORE, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0a21f0f2",
            "userName": "Test_User",
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": "t@example.com", "Nickname": "x"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}
        });
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        let cleaned = validate_resource(&rs, &body, WriteMode::Create, &mut ignore).unwrap();
        assert_eq!(
            cleaned,
            json!({
                "schemas": [CORE], "externalId": "0a21f0f2", "userName": "Test_User", "active": true,
                "emails": [{"primary": true, "type": "work", "value": "t@example.com"}],
                "name": {"familyName": "Family", "givenName": "Given"}
            })
        );
        assert_eq!(
            ignore.ignored(),
            [
                "emails.Nickname",
                "name.formatted",
                "roles",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ]
        );
        let err = validate_resource(&rs, &body, WriteMode::Create, &mut refuse()).unwrap_err();
        assert!(
            matches!(&err, ScimError::InvalidValue { attribute, .. } if attribute == "emails[0].Nickname"),
            "{err}"
        );
        // A published attribute with a malformed value is refused whatever the policy.
        let mut bad = body.clone();
        bad["active"] = json!("maybe");
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        let err = validate_resource(&rs, &bad, WriteMode::Create, &mut ignore).unwrap_err();
        assert!(matches!(&err, ScimError::InvalidValue { attribute, .. } if attribute == "active"), "{err}");
        // An attribute of a published extension sent outside its object is refused too: the
        // app could hold it.
        let misplaced = user(json!({ "department": "Sales" }));
        let err = validate_resource(&users(), &misplaced, WriteMode::Create, &mut ignore).unwrap_err();
        assert!(err.to_string().contains("inside the object"), "{err}");
    }

    #[test]
    fn rfc_full_user_validates_and_loses_its_read_only_parts() {
        let example = rfc_examples::full_user();
        for mode in [WriteMode::Create, WriteMode::Replace] {
            let cleaned = validate_resource(&users(), &example, mode, &mut refuse()).unwrap();
            let mut expected = example.clone();
            for read_only in ["id", "meta", "groups"] {
                expected.as_object_mut().unwrap().remove(read_only);
            }
            assert_eq!(cleaned, expected);
        }
        let enterprise =
            validate_resource(&users(), &rfc_examples::enterprise_user(), WriteMode::Create, &mut refuse()).unwrap();
        assert_eq!(enterprise["schemas"], json!([CORE, ENTERPRISE]));
        assert_eq!(
            enterprise[ENTERPRISE]["manager"],
            json!({
                "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
            }),
            "manager.displayName is readOnly"
        );
        assert_eq!(enterprise[ENTERPRISE]["department"], "Tour Operations");
        let group =
            validate_resource(&group_resource(vec![]), &rfc_examples::group(), WriteMode::Replace, &mut refuse())
                .unwrap();
        assert_eq!(group["members"].as_array().unwrap().len(), 2);
        assert_eq!(group["members"][1]["display"], "Mandy Pepperidge");
        assert!(group.get("id").is_none() && group.get("meta").is_none());
    }

    #[test]
    fn normalises_what_idps_send() {
        let cases = [
            (json!({ "active": "True" }), json!({ "active": true })),
            (json!({ "active": "false" }), json!({ "active": false })),
            (json!({ "ACTIVE": "FALSE" }), json!({ "active": false })),
            (
                json!({ "Emails": [{ "VALUE": "b@example.com", "Primary": "true" }] }),
                json!({ "emails": [{ "value": "b@example.com", "primary": true }] }),
            ),
            (json!({ "emails": { "value": "b@example.com" } }), json!({ "emails": [{ "value": "b@example.com" }] })),
            (
                json!({ "emails": [{ "value": "b@example.com", "primary": true }, { "value": "c@example.com", "primary": false }] }),
                json!({ "emails": [{ "value": "b@example.com", "primary": true }, { "value": "c@example.com", "primary": false }] }),
            ),
            (json!({ "displayName": null, "name": {}, "emails": [], "phoneNumbers": [null] }), json!({})),
            (
                json!({ "name": { "givenName": null, "familyName": "Jensen" } }),
                json!({ "name": { "familyName": "Jensen" } }),
            ),
            (
                json!({ "password": "t1meMa$heen", "externalId": "701984" }),
                json!({ "password": "t1meMa$heen", "externalId": "701984" }),
            ),
            (json!({ "id": "client-chosen", "meta": { "version": 1 }, "groups": "anything" }), json!({})),
            (
                json!({ "emails": [{ "value": "b@example.com", "type": "private" }] }),
                json!({ "emails": [{ "value": "b@example.com", "type": "private" }] }),
            ),
        ];
        for (extra, expected) in cases {
            let cleaned = validate_resource(&users(), &user(extra.clone()), WriteMode::Create, &mut refuse()).unwrap();
            let mut want = json!({ "schemas": [CORE], "userName": "bjensen" });
            want.as_object_mut().unwrap().extend(expected.as_object().unwrap().clone());
            assert_eq!(cleaned, want, "{extra}");
        }
    }

    #[test]
    fn extension_data_is_checked_and_listed() {
        let cases = [
            // Data under the URN key adds the URN to schemas when the client forgot it.
            (json!({ "schemas": [CORE], ENTERPRISE: { "department": "Tours" } }), json!([CORE, ENTERPRISE])),
            // URNs of extensions this app does not have are dropped from schemas.
            (json!({ "schemas": [CORE, "urn:example:other:1.0:User"] }), json!([CORE])),
            // A listed known extension without data stays listed.
            (json!({ "schemas": [CORE.to_uppercase(), ENTERPRISE] }), json!([CORE, ENTERPRISE])),
            (
                json!({ "schemas": [CORE], ENTERPRISE.to_lowercase(): { "DEPARTMENT": "Tours" } }),
                json!([CORE, ENTERPRISE]),
            ),
            (json!({ "schemas": [CORE], ENTERPRISE: { "manager": { "displayName": "read only" } } }), json!([CORE])),
            (json!({ "schemas": [CORE], ENTERPRISE: null }), json!([CORE])),
        ];
        for (body, schemas) in cases {
            let mut body = body;
            body["userName"] = json!("bjensen");
            let cleaned = validate_resource(&users(), &body, WriteMode::Create, &mut refuse()).unwrap();
            assert_eq!(cleaned["schemas"], schemas, "{body}");
        }
        let cleaned = validate_resource(
            &users(),
            &user(json!({ ACME: { "level": 3, "ratio": 0.5, "hired": "2015-09-30T12:00:00.5+02:00", "site": { "code": "HQ" } } })),
            WriteMode::Replace,
            &mut refuse(),
        )
        .unwrap();
        assert_eq!(
            cleaned[ACME],
            json!({ "level": 3, "ratio": 0.5, "hired": "2015-09-30T12:00:00.5+02:00", "site": { "code": "HQ" } })
        );
        assert_eq!(cleaned["schemas"], json!([CORE, ACME]));
        let required = user_resource(vec![(enterprise_user_schema(), true)]);
        let err = validate_resource(&required, &user(json!({})), WriteMode::Create, &mut refuse()).unwrap_err();
        assert!(matches!(&err, ScimError::InvalidValue { attribute, .. } if attribute == ENTERPRISE), "{err}");
    }

    #[test]
    fn rejects_bad_bodies_naming_the_attribute() {
        let enterprise = |name: &str| format!("{ENTERPRISE}:{name}");
        let acme = |name: &str| format!("{ACME}:{name}");
        let cases: Vec<(Value, String)> = vec![
            (json!({ "schemas": [CORE] }), "userName".into()),
            (json!({ "schemas": [CORE], "userName": null }), "userName".into()),
            (json!({ "userName": "bjensen" }), "schemas".into()),
            (json!({ "schemas": CORE, "userName": "bjensen" }), "schemas".into()),
            (json!({ "schemas": [ENTERPRISE], "userName": "bjensen" }), "schemas".into()),
            (json!({ "schemas": [CORE, 7], "userName": "bjensen" }), "schemas".into()),
            (user(json!({ "userName": 5 })), "userName".into()),
            (user(json!({ "displayName": ["Babs"] })), "displayName".into()),
            (user(json!({ "active": "yes" })), "active".into()),
            (user(json!({ "active": 1 })), "active".into()),
            (user(json!({ "name": "Barbara Jensen" })), "name".into()),
            (user(json!({ "name": { "givenName": 7 } })), "name.givenName".into()),
            (user(json!({ "name": { "nick": "Babs" } })), "name.nick".into()),
            (user(json!({ "emails": [{ "value": "b@example.com" }, { "value": 5 }] })), "emails[1].value".into()),
            (user(json!({ "emails": ["b@example.com"] })), "emails[0]".into()),
            (
                user(json!({ "emails": [{ "value": "a@x", "primary": true }, { "value": "b@x", "primary": "True" }] })),
                "emails".into(),
            ),
            (user(json!({ "profileUrl": 42 })), "profileUrl".into()),
            (user(json!({ "x509Certificates": [{ "value": false }] })), "x509Certificates[0].value".into()),
            (user(json!({ "favouriteColour": "blue" })), "favouriteColour".into()),
            (user(json!({ "USERNAME": "again" })), "USERNAME".into()),
            (user(json!({ "employeeNumber": "701984" })), "employeeNumber".into()),
            (user(json!({ "urn:example:other:1.0:User": { "x": 1 } })), "urn:example:other:1.0:User".into()),
            (user(json!({ ENTERPRISE: "Tours" })), ENTERPRISE.into()),
            (user(json!({ ENTERPRISE: { "department": 5 } })), enterprise("department")),
            (user(json!({ ENTERPRISE: { "building": "B" } })), enterprise("building")),
            (user(json!({ ENTERPRISE: { "manager": { "value": 26118915 } } })), enterprise("manager.value")),
            (user(json!({ ACME: { "level": 1.5 } })), acme("level")),
            (user(json!({ ACME: { "level": "3" } })), acme("level")),
            (user(json!({ ACME: { "ratio": "0.5" } })), acme("ratio")),
            (user(json!({ ACME: { "hired": "yesterday" } })), acme("hired")),
            (user(json!({ ACME: { "hired": "2015-09-30" } })), acme("hired")),
            (user(json!({ ACME: { "site": { "secret": "x" } } })), acme("site.code")),
            // names given twice, at every depth, named with the path to them
            (user(json!({ "name": { "givenName": "a", "GIVENNAME": "b" } })), "name.GIVENNAME".into()),
            (
                user(json!({ "emails": [{ "value": "a@x" }, { "value": "b@x", "VALUE": "c@x" }] })),
                "emails[1].VALUE".into(),
            ),
            (user(json!({ ENTERPRISE: { "department": "a", "Department": "b" } })), enterprise("Department")),
            (user(json!({ ENTERPRISE: { "manager": { "value": "1", "Value": "2" } } })), enterprise("manager.Value")),
        ];
        // the same with a body of many names, which is checked through a set
        let mut many = user(json!({ "USERNAME": "again" }));
        many.as_object_mut().unwrap().extend((0..2000).map(|i| (format!("made{i}"), json!(1))));
        let many = vec![(many, "USERNAME".to_owned())];
        for (body, attribute) in cases.into_iter().chain(many) {
            let err = validate_resource(&users(), &body, WriteMode::Create, &mut refuse()).unwrap_err();
            assert!(matches!(&err, ScimError::InvalidValue { attribute: a, .. } if *a == attribute), "{body}: {err}");
        }
        let err =
            validate_resource(&users(), &json!(["not", "an", "object"]), WriteMode::Create, &mut refuse()).unwrap_err();
        assert!(matches!(err, ScimError::InvalidSyntax { .. }));
        let group = json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "members": [] });
        let err = validate_resource(&group_resource(vec![]), &group, WriteMode::Create, &mut refuse()).unwrap_err();
        assert!(matches!(&err, ScimError::InvalidValue { attribute, .. } if attribute == "displayName"), "{err}");
    }

    #[test]
    fn never_returned_attributes_are_stripped() {
        let mut resource = json!({
            "schemas": [CORE, ACME],
            "id": "1",
            "userName": "bjensen",
            "password": "t1meMa$heen",
            ACME: { "pin": "1234", "badge": "B-7", "site": { "code": "HQ", "secret": "s" } },
            "emails": [{ "value": "b@example.com" }],
        });
        without_never_returned(&users(), &mut resource);
        assert_eq!(
            resource,
            json!({
                "schemas": [CORE, ACME],
                "id": "1",
                "userName": "bjensen",
                ACME: { "badge": "B-7", "site": { "code": "HQ" } },
                "emails": [{ "value": "b@example.com" }],
            })
        );
    }

    #[test]
    fn has_never_returned_says_whether_stripping_would_change_anything() {
        let cases = [
            (json!({ "userName": "bjensen", "password": "p" }), true),
            (json!({ "userName": "bjensen", ACME: { "pin": "1234" } }), true),
            (json!({ "userName": "bjensen", ACME: { "site": { "secret": "s" } } }), true),
            (json!({ "userName": "bjensen", ACME: { "badge": "B-7", "site": { "code": "HQ" } } }), false),
            (json!({ "userName": "bjensen", "emails": [{ "value": "b@example.com" }] }), false),
        ];
        for (mut resource, expected) in cases {
            let before = resource.clone();
            assert_eq!(has_never_returned(&users(), resource.as_object().unwrap()), expected, "{before}");
            without_never_returned(&users(), &mut resource);
            assert_eq!(resource != before, expected, "{before}");
            assert!(!has_never_returned(&users(), resource.as_object().unwrap()), "{resource}");
        }
    }

    #[test]
    fn immutable_values_cannot_change_once_set() {
        let badge = |value: &str| json!({ ACME: { "badge": value } });
        let cases = [
            (badge("B-7"), badge("B-9"), true),
            (badge("B-7"), json!({ ACME.to_lowercase(): { "BADGE": "B-8" } }), true),
            (badge("B-7"), badge("B-7"), false),
            (badge("B-7"), json!({ ACME: { "level": 2 } }), false),
            (badge("B-7"), json!({}), false),
            (json!({}), badge("B-9"), false),
            (json!({ ACME: { "site": { "code": "HQ" } } }), json!({ ACME: { "site": { "code": "LAB" } } }), true),
            (json!({ ACME: { "site": { "code": "HQ" } } }), json!({ ACME: { "site": { "code": "HQ" } } }), false),
        ];
        for (before, after, fails) in cases {
            let (before, after) = (user(before), user(after));
            let result = check_immutable(&users(), &before, &after);
            assert_eq!(result.is_err(), fails, "{before} -> {after}");
            if let Err(err) = result {
                assert!(
                    matches!(&err, ScimError::Mutability { attribute, .. } if attribute.starts_with(ACME)),
                    "{err}"
                );
            }
        }
    }
}
