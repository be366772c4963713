//! Reading the PatchOp message (RFC 7644 §3.5.2): `schemas`, the `Operations` array and each
//! operation's `op`, `path` and `value`, found in any case.

use serde_json::{Map, Value};

use super::operation::{PatchKind, PatchOp};
use super::prepare::prepare;
use super::target::resolve_patch_path;
use crate::scim::error::{ScimError, quoted};
use crate::scim::schema::ResourceSchema;
use crate::scim::unpublished::Unpublished;
use crate::scim::value::kind_of;

/// The URN a PATCH body must list in `schemas` (RFC 7644 §3.5.2).
pub(crate) const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one PATCH body may carry; more is an `invalidValue` error on `Operations`.
pub(crate) const MAX_OPERATIONS: usize = 1000;

/// Reads a PATCH request body (RFC 7644 §3.5.2) and checks every operation against the
/// resource type, before the stored resource is read.
///
/// The operations come back in normal form: each has a path (pathless add and replace are
/// expanded into one operation per attribute, ignoring `id`, `meta` and `schemas`), values
/// have the schema's names and types, single values for multi-valued attributes are arrays,
/// and a `replace` with `null` is a `remove`. Errors name the operation as `Operations[i]`.
///
/// Attributes the resource type does not publish go to `unpublished`: under `ignore` an
/// operation whose path names one is left out, as is a key of a value naming one; under
/// `refuse` they fail as `invalidPath` (a path) or `invalidValue` (a key of a value). The
/// result may then be empty: a PATCH that changes nothing the app holds.
pub fn parse_patch(
    body: &Value,
    rs: &ResourceSchema,
    unpublished: &mut Unpublished,
) -> Result<Vec<PatchOp>, ScimError> {
    let Some(body) = body.as_object() else {
        return Err(ScimError::invalid_syntax("a PATCH body must be a JSON object with schemas and Operations"));
    };
    let listed = member(body, "schemas")?.and_then(Value::as_array).is_some_and(|schemas| {
        schemas.iter().filter_map(Value::as_str).any(|urn| urn.trim().eq_ignore_ascii_case(PATCH_OP_SCHEMA))
    });
    if !listed {
        return Err(ScimError::invalid_syntax(format!("schemas must be an array listing {PATCH_OP_SCHEMA}")));
    }
    let Some(operations) = member(body, "Operations")? else {
        return Err(ScimError::invalid_syntax("Operations is missing"));
    };
    let Some(operations) = operations.as_array() else {
        return Err(ScimError::invalid_syntax("Operations must be an array of operations"));
    };
    if operations.is_empty() {
        return Err(ScimError::invalid_syntax("Operations must hold at least one operation"));
    }
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(
            "Operations",
            format!("{} operations; at most {MAX_OPERATIONS} are accepted in one request", operations.len()),
        ));
    }
    let mut out = Vec::with_capacity(operations.len());
    for (index, raw) in operations.iter().enumerate() {
        let prepared = match read_operation(raw, rs, unpublished) {
            Ok(Some(op)) => prepare(rs, op.kind, op.path.as_ref(), op.value.as_ref(), &mut out, unpublished),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        prepared.map_err(|error| in_operation(error, index))?;
    }
    Ok(out)
}

/// The member of `object` called `name` in any case; two spellings of it are an error.
fn member<'v>(object: &'v Map<String, Value>, name: &str) -> Result<Option<&'v Value>, ScimError> {
    let mut found = object.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value);
    let first = found.next();
    if found.next().is_some() {
        return Err(ScimError::invalid_syntax(format!("{name} is given more than once (names are case-insensitive)")));
    }
    Ok(first)
}

/// One element of `Operations` as sent: `op` checked, `path` parsed, `value` untouched;
/// `None` when its path names an attribute that `unpublished` ignores.
fn read_operation(
    raw: &Value,
    rs: &ResourceSchema,
    unpublished: &mut Unpublished,
) -> Result<Option<PatchOp>, ScimError> {
    let Some(raw) = raw.as_object() else {
        return Err(ScimError::invalid_syntax("an operation must be an object with op, path and value"));
    };
    let kind = match member(raw, "op")? {
        Some(Value::String(word)) => PatchKind::from_keyword(word.trim())
            .ok_or_else(|| ScimError::invalid_syntax(format!("op {} is not add, remove or replace", quoted(word))))?,
        Some(_) => return Err(ScimError::invalid_syntax("op must be a string: add, remove or replace")),
        None => return Err(ScimError::invalid_syntax("op is missing: add, remove or replace")),
    };
    let path = match member(raw, "path")? {
        None | Some(Value::Null) => None,
        // IdPs send "" for "no path"
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => match resolve_patch_path(text, rs, unpublished)? {
            Some(path) => Some(path),
            None => return Ok(None),
        },
        Some(other) => {
            return Err(ScimError::invalid_path("", format!("path must be a string, got {}", kind_of(other))));
        }
    };
    Ok(Some(PatchOp { kind, path, value: member(raw, "value")?.cloned() }))
}

/// Prefixes an error's detail with the operation it came from.
fn in_operation(mut error: ScimError, index: usize) -> ScimError {
    let prefix = format!("Operations[{index}]: ");
    match &mut error {
        ScimError::InvalidFilter { detail, .. }
        | ScimError::InvalidPath { detail, .. }
        | ScimError::InvalidSyntax { detail }
        | ScimError::InvalidValue { detail, .. }
        | ScimError::Mutability { detail, .. } => detail.insert_str(0, &prefix),
        _ => {}
    }
    error
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::definitions::rfc_examples;
    use crate::scim::patch::fixtures::{
        ACME, BABS, CORE, ENTERPRISE, JAMES, Rng, bjensen, body, groups, member, refuse, scim_type, users, with,
    };
    use crate::scim::patch::{apply_patch, member_changes, parse_patch_path};

    #[test]
    fn each_mistake_gets_its_scim_type() {
        let user = with(bjensen(), |u| u[ACME] = json!({ "badge": "B-7" }));
        let group = rfc_examples::group();
        let too_many: Vec<Value> =
            (0..=MAX_OPERATIONS).map(|_| json!({ "op": "add", "path": "title", "value": "x" })).collect();
        let op = |op: Value| body(json!([op]));
        let cases: Vec<(&str, bool, Value, &str)> = vec![
            ("body not an object", true, json!([]), "invalidSyntax"),
            ("no schemas", true, json!({ "Operations": [{ "op": "remove", "path": "title" }] }), "invalidSyntax"),
            ("wrong schema", true, json!({ "schemas": [CORE], "Operations": [] }), "invalidSyntax"),
            ("no Operations", true, json!({ "schemas": [PATCH_OP_SCHEMA] }), "invalidSyntax"),
            (
                "Operations not an array",
                true,
                json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": {} }),
                "invalidSyntax",
            ),
            ("empty Operations", true, body(json!([])), "invalidSyntax"),
            (
                "Operations twice",
                true,
                json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": [], "operations": [] }),
                "invalidSyntax",
            ),
            ("unknown op", true, op(json!({ "op": "copy", "path": "title" })), "invalidSyntax"),
            ("no op", true, op(json!({ "path": "title", "value": "x" })), "invalidSyntax"),
            ("op not a string", true, op(json!({ "op": 1, "path": "title" })), "invalidSyntax"),
            ("operation not an object", true, body(json!(["add"])), "invalidSyntax"),
            ("too many operations", true, body(Value::Array(too_many)), "invalidValue"),
            ("boolean as yes", true, op(json!({ "op": "replace", "path": "active", "value": "yes" })), "invalidValue"),
            ("string as number", true, op(json!({ "op": "replace", "path": "userName", "value": 5 })), "invalidValue"),
            (
                "integer as string",
                true,
                op(json!({ "op": "add", "path": format!("{ACME}:level"), "value": "3" })),
                "invalidValue",
            ),
            ("add without value", true, op(json!({ "op": "add", "path": "emails" })), "invalidValue"),
            ("add with null", true, op(json!({ "op": "add", "path": "title", "value": null })), "invalidValue"),
            ("pathless add of a string", true, op(json!({ "op": "add", "value": "Babs" })), "invalidValue"),
            (
                "pathless unknown key",
                true,
                op(json!({ "op": "replace", "value": { "favouriteColour": "blue" } })),
                "invalidValue",
            ),
            (
                "pathless filter key",
                true,
                op(json!({ "op": "replace", "value": { "emails[type eq \"work\"].value": "x" } })),
                "invalidValue",
            ),
            (
                "pathless key twice",
                true,
                op(json!({ "op": "replace", "value": { "title": "a", "TITLE": "b" } })),
                "invalidValue",
            ),
            (
                "two primaries",
                true,
                op(
                    json!({ "op": "add", "path": "emails", "value": [{ "value": "a@x", "primary": true }, { "value": "b@x", "primary": true }] }),
                ),
                "invalidValue",
            ),
            (
                "a complex value as a string",
                true,
                op(json!({ "op": "add", "path": "emails", "value": ["a@x"] })),
                "invalidValue",
            ),
            (
                "unknown sub-attribute in a value",
                true,
                op(json!({ "op": "add", "path": "name", "value": { "nick": "B" } })),
                "invalidValue",
            ),
            (
                "a selected value replaced by a string",
                true,
                op(json!({ "op": "replace", "path": "addresses[type eq \"work\"]", "value": "x" })),
                "invalidValue",
            ),
            (
                "primary on every matched value",
                true,
                op(json!({ "op": "replace", "path": "emails[value pr].primary", "value": true })),
                "invalidValue",
            ),
            (
                "unknown attribute",
                true,
                op(json!({ "op": "replace", "path": "favouriteColour", "value": "blue" })),
                "invalidPath",
            ),
            (
                "unknown extension attribute",
                true,
                op(json!({ "op": "remove", "path": format!("{ENTERPRISE}:nope") })),
                "invalidPath",
            ),
            (
                "unbalanced bracket",
                true,
                op(json!({ "op": "remove", "path": "emails[type eq \"work\"" })),
                "invalidPath",
            ),
            ("stray bracket", true, op(json!({ "op": "remove", "path": "emails]" })), "invalidPath"),
            (
                "junk after the filter",
                true,
                op(json!({ "op": "remove", "path": "emails[type eq \"work\"]x" })),
                "invalidPath",
            ),
            ("sub-sub-attribute", true, op(json!({ "op": "remove", "path": "name.givenName.x" })), "invalidPath"),
            (
                "sub-attribute of a simple attribute",
                true,
                op(json!({ "op": "remove", "path": "userName.x" })),
                "invalidPath",
            ),
            (
                "filter on a singular attribute",
                true,
                op(json!({ "op": "remove", "path": "name[givenName eq \"x\"]" })),
                "invalidPath",
            ),
            (
                "sub-attribute of all values on add",
                true,
                op(json!({ "op": "add", "path": "emails.type", "value": "work" })),
                "invalidPath",
            ),
            ("path not a string", true, op(json!({ "op": "remove", "path": 5 })), "invalidPath"),
            (
                "unknown sub-attribute in a filter",
                true,
                op(json!({ "op": "remove", "path": "emails[typo eq \"work\"]" })),
                "invalidFilter",
            ),
            (
                "filter missing its value",
                true,
                op(json!({ "op": "remove", "path": "emails[type eq]" })),
                "invalidFilter",
            ),
            (
                "operator unfit for the type",
                true,
                op(json!({ "op": "remove", "path": "emails[primary co \"x\"]" })),
                "invalidFilter",
            ),
            ("remove without path", true, op(json!({ "op": "remove" })), "noTarget"),
            (
                "replace through a filter matching nothing",
                true,
                op(json!({ "op": "replace", "path": "emails[type eq \"other\"].value", "value": "x" })),
                "noTarget",
            ),
            (
                "add through a filter that cannot build a value",
                true,
                op(json!({ "op": "add", "path": "emails[value co \"zzz\"].type", "value": "work" })),
                "noTarget",
            ),
            ("replace id", true, op(json!({ "op": "replace", "path": "id", "value": "1" })), "mutability"),
            (
                "replace meta",
                true,
                op(json!({ "op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z" })),
                "mutability",
            ),
            (
                "add groups",
                true,
                op(json!({ "op": "add", "path": "groups", "value": [{ "value": "g" }] })),
                "mutability",
            ),
            (
                "groups in a pathless value",
                true,
                op(json!({ "op": "add", "value": { "groups": [{ "value": "g" }] } })),
                "mutability",
            ),
            (
                "manager displayName",
                true,
                op(json!({ "op": "replace", "path": "manager.displayName", "value": "Boss" })),
                "mutability",
            ),
            ("remove a required attribute", true, op(json!({ "op": "remove", "path": "userName" })), "mutability"),
            (
                "unassign a required attribute",
                true,
                op(json!({ "op": "replace", "path": "userName", "value": null })),
                "mutability",
            ),
            (
                "change schemas",
                true,
                op(json!({ "op": "add", "path": "schemas", "value": [ENTERPRISE] })),
                "mutability",
            ),
            (
                "change an immutable value",
                true,
                op(json!({ "op": "replace", "path": format!("{ACME}:badge"), "value": "B-9" })),
                "mutability",
            ),
            (
                "remove an immutable value",
                true,
                op(json!({ "op": "remove", "path": format!("{ACME}:badge") })),
                "mutability",
            ),
            (
                "remove a group's required displayName",
                false,
                op(json!({ "op": "remove", "path": "displayName" })),
                "mutability",
            ),
            (
                "change a member's immutable display",
                false,
                op(
                    json!({ "op": "replace", "path": format!("members[value eq \"{BABS}\"].display"), "value": "Barbara" }),
                ),
                "mutability",
            ),
        ];
        for (name, is_user, body, want) in cases {
            let (rs, resource) = if is_user { (users(), &user) } else { (groups(), &group) };
            let result = parse_patch(&body, &rs, &mut refuse()).and_then(|ops| apply_patch(&rs, resource, &ops));
            match result {
                Err(error) => assert_eq!(scim_type(&error), want, "{name}: {error}"),
                Ok(value) => panic!("{name}: expected {want}, got {value}"),
            }
        }
    }

    #[test]
    fn errors_name_the_operation_and_the_attribute() {
        let ops = json!([
            { "op": "replace", "path": "title", "value": "Boss" },
            { "op": "Replace", "path": "active", "value": "maybe" }
        ]);
        let error = parse_patch(&body(ops), &users(), &mut refuse()).unwrap_err();
        assert!(
            matches!(&error, ScimError::InvalidValue { attribute, detail } if attribute == "active" && detail.starts_with("Operations[1]: ")),
            "{error}"
        );
        let error = parse_patch_path("emails[type eq \"work\" and ]", &users()).unwrap_err();
        assert!(matches!(error, ScimError::InvalidFilter { position, .. } if position >= 7), "{error:?}");
    }

    #[test]
    fn mutated_bodies_and_paths_never_panic() {
        let seeds: Vec<(bool, String)> = vec![
            (
                true,
                body(json!([{ "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "a@b" }]))
                    .to_string(),
            ),
            (true, body(json!([{ "op": "add", "value": { "name.givenName": "B", "active": "False" } }])).to_string()),
            (
                true,
                body(json!([{ "op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]" }]))
                    .to_string(),
            ),
            (false, body(json!([{ "op": "Remove", "path": "members", "value": [{ "value": BABS }] }])).to_string()),
            (
                false,
                body(json!([{ "op": "replace", "path": "members", "value": [member(JAMES, "James")] }])).to_string(),
            ),
        ];
        let alphabet: Vec<char> = "[]{}\":,. \\abetqwork0129eqprandor$urn:Uv".chars().collect();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let (user, group) = (bjensen(), rfc_examples::group());
        for _ in 0..4000 {
            let (is_user, seed) = rng.pick(&seeds);
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(chars.len());
                match rng.below(3) {
                    0 => chars[at] = rng.pick(&alphabet),
                    1 => chars.insert(at, rng.pick(&alphabet)),
                    _ => drop(chars.remove(at)),
                }
            }
            let text: String = chars.into_iter().collect();
            let Ok(mutated) = serde_json::from_str::<Value>(&text) else { continue };
            let (rs, resource) = if is_user { (users(), &user) } else { (groups(), &group) };
            if let Ok(ops) = parse_patch(&mutated, &rs, &mut refuse()) {
                let _ = apply_patch(&rs, resource, &ops);
                let _ = member_changes(&ops);
            }
        }
        let tokens = [
            "emails",
            "[",
            "]",
            "type",
            " eq ",
            "\"work\"",
            ".",
            "value",
            ENTERPRISE,
            ":",
            "manager",
            "name",
            "givenName",
            " and ",
            " or ",
            "not",
            "(",
            ")",
            "members",
            "\\",
            "\"",
            " pr",
            "1",
            "$ref",
            "urn:",
            "É",
            " ",
            "abc",
        ];
        for _ in 0..6000 {
            let text: String = (0..1 + rng.below(8)).map(|_| rng.pick(&tokens)).collect();
            if let Ok(path) = parse_patch_path(&text, &users()) {
                assert_eq!(parse_patch_path(&path.to_string(), &users()).as_ref(), Ok(&path), "{text}");
            }
        }
    }
}
