//! What a response shows: `attributes`, `excludedAttributes` and `returned` (RFC 7644 §3.4.2.5, §3.9).
//!
//! Decisions where the RFC leaves room:
//! - A well-formed name the schemas do not define is ignored (nothing to return or leave
//!   out); a malformed one, such as a filter, is an `invalidPath` error.
//! - `attributes` and `excludedAttributes` are mutually exclusive (RFC 7644 §3.9) without a
//!   prescribed error; when both are given, `attributes` wins, as it replaces the default
//!   set that `excludedAttributes` would subtract from.
//! - Naming a complex attribute or a whole extension URN names everything in it, including
//!   `returned: request` sub-attributes; `never` is never returned.
//! - Attributes a resource carries that its schemas do not define are dropped, so the IdP
//!   only sees what `/Schemas` publishes.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::path::AttrPath;
use super::schema::{Attribute, ResourceSchema, Returned};

/// What a client asked to see of each resource, resolved against a resource type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Projection {
    mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Mode {
    /// Neither parameter: the attributes returned by default.
    #[default]
    Default,
    /// `attributes`: the always-returned ones plus these.
    Only(Vec<Selector>),
    /// `excludedAttributes`: the default set minus these (always-returned ones stay).
    Except(Vec<Selector>),
    /// Everything the schemas define but `never` attributes: the resource as the proxy
    /// works on it, not as a client sees it.
    All,
}

/// One resolved entry of `attributes` or `excludedAttributes`, in the schema's spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// A whole schema, written as its bare URN.
    Schema(String),
    /// An attribute of a schema, or one of its sub-attributes.
    Attribute { schema: String, name: String, sub: Option<String> },
}

/// How much of one attribute is selected.
enum Named<'s> {
    Not,
    Whole,
    Subs(Vec<&'s str>),
}

/// Which sub-attributes of a kept attribute stay.
enum Keep<'s> {
    /// All but `never`: the attribute was named as a whole.
    All,
    /// `always` and `default` ones.
    Default,
    /// `always` ones and those named.
    Named(Vec<&'s str>),
    /// `always` and `default` ones, less those excluded.
    DefaultExcept(Vec<&'s str>),
}

impl Projection {
    /// Reads the `attributes` and `excludedAttributes` parameters (comma-separated paths,
    /// URN-qualified or not, or a bare extension URN). Runs once per request, before the
    /// script is called, so [`Projection::wants`] can tell it what to fetch.
    pub fn parse(
        rs: &ResourceSchema,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Projection, ScimError> {
        let attributes = attributes.filter(|t| !t.trim().is_empty());
        let excluded = excluded.filter(|t| !t.trim().is_empty());
        let mode = match (attributes, excluded) {
            (Some(list), _) => Mode::Only(selectors(rs, list)?),
            (None, Some(list)) => Mode::Except(selectors(rs, list)?),
            (None, None) => Mode::Default,
        };
        Ok(Projection { mode })
    }

    /// Every attribute the resource type defines, `request`-returned ones included, and
    /// nothing else: what PATCH applies to.
    pub(crate) fn everything() -> Projection {
        Projection { mode: Mode::All }
    }

    /// The resource as the client asked to see it. Runs on every resource in a response.
    ///
    /// `schemas` and `returned: always` attributes (`id`) are always kept, `never` ones
    /// (`password`) never; `default` ones unless left out; `request` ones only when named.
    /// Extension objects left empty are dropped.
    pub fn apply(&self, rs: &ResourceSchema, resource: &Value) -> Value {
        self.apply_owned(rs, resource.clone())
    }

    /// [`Projection::apply`] to a resource no longer needed otherwise: what is kept is moved,
    /// not copied.
    pub(crate) fn apply_owned(&self, rs: &ResourceSchema, resource: Value) -> Value {
        let Value::Object(mut object) = resource else { return resource };
        // Projected where it is: the members left out are removed, the kept ones stay in their
        // nodes, and no map is built again for each resource of every answer.
        let mut respelt = Vec::new();
        object.retain(|key, value| {
            if key.eq_ignore_ascii_case("schemas") {
                return true;
            }
            let (kept, name) = if let Some(ext) = rs.extension(key) {
                let kept = match value {
                    Value::Object(data) => {
                        project_members(data, |name| {
                            let attribute = ext.attribute(name)?;
                            Some((attribute, self.keep(&ext.id, attribute)?))
                        });
                        !data.is_empty()
                    }
                    _ => false,
                };
                (kept, ext.id.as_str())
            } else if let Some(attribute) = rs.core_attribute(key) {
                let kept = self.keep(&rs.core.id, attribute).is_some_and(|keep| project(attribute, value, &keep));
                (kept, attribute.name.as_str())
            } else {
                (false, "")
            };
            respell(kept, key, name, value, &mut respelt)
        });
        put_respelt(&mut object, respelt);
        Value::Object(object)
    }

    /// [`Projection::wants`] for a top-level attribute of the resource's core schema, without
    /// looking it up by name again.
    pub(crate) fn wants_core(&self, rs: &ResourceSchema, attribute: &Attribute) -> bool {
        attribute.name.eq_ignore_ascii_case("schemas") || self.keep(&rs.core.id, attribute).is_some()
    }

    /// Whether a top-level attribute of `schema` is kept and which of its sub-attributes.
    fn keep<'s>(&'s self, schema: &str, attribute: &Attribute) -> Option<Keep<'s>> {
        let returned = attribute.returned;
        match (&self.mode, returned) {
            (_, Returned::Never) => None,
            (Mode::All, _) => Some(Keep::All),
            (Mode::Default, Returned::Always | Returned::Default) => Some(Keep::Default),
            (Mode::Default, Returned::Request) => None,
            (Mode::Only(selectors), _) => match named(selectors, schema, &attribute.name) {
                Named::Whole => Some(Keep::All),
                Named::Subs(subs) => Some(Keep::Named(subs)),
                Named::Not => (returned == Returned::Always).then_some(Keep::Default),
            },
            (Mode::Except(selectors), _) => match (named(selectors, schema, &attribute.name), returned) {
                (_, Returned::Always) => Some(Keep::Default),
                (_, Returned::Request) | (Named::Whole, _) => None,
                (Named::Subs(subs), _) => Some(Keep::DefaultExcept(subs)),
                (Named::Not, _) => Some(Keep::Default),
            },
        }
    }
}

/// Parses and resolves a comma-separated list of attribute names, skipping unknown ones.
fn selectors(rs: &ResourceSchema, list: &str) -> Result<Vec<Selector>, ScimError> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if let Some(schema) = rs.schemas().find(|s| s.id.eq_ignore_ascii_case(item)) {
            out.push(Selector::Schema(schema.id.clone()));
            continue;
        }
        let path = AttrPath::parse(item)?;
        if let Some(resolved) = rs.resolve(&path) {
            out.push(Selector::Attribute {
                schema: resolved.schema.id.clone(),
                name: resolved.attribute.name.clone(),
                sub: resolved.sub.map(|s| s.name.clone()),
            });
        }
    }
    Ok(out)
}

/// How much of `schema`'s attribute `name` the selectors name.
fn named<'s>(selectors: &'s [Selector], schema: &str, name: &str) -> Named<'s> {
    let mut subs = Vec::new();
    for selector in selectors {
        match selector {
            Selector::Schema(id) if id == schema => return Named::Whole,
            Selector::Attribute { schema: s, name: n, sub } if s == schema && n == name => match sub {
                None => return Named::Whole,
                Some(sub) => subs.push(sub.as_str()),
            },
            _ => {}
        }
    }
    if subs.is_empty() { Named::Not } else { Named::Subs(subs) }
}

/// Whether a sub-attribute of a kept attribute stays.
fn keeps_sub(keep: &Keep<'_>, sub: &Attribute) -> bool {
    let listed = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(&sub.name));
    match (sub.returned, keep) {
        (Returned::Never, _) => false,
        (Returned::Always, _) | (_, Keep::All) => true,
        (returned, Keep::Default) => returned == Returned::Default,
        (_, Keep::Named(names)) => listed(names),
        (returned, Keep::DefaultExcept(names)) => returned == Returned::Default && !listed(names),
    }
}

/// Keeps of one attribute's value what `keep` keeps, in place; false when nothing of it is
/// left.
fn project(attribute: &Attribute, value: &mut Value, keep: &Keep<'_>) -> bool {
    if attribute.sub_attributes.is_empty() {
        return !value.is_null();
    }
    let one = |item: &mut Value| -> bool {
        let Value::Object(item) = item else { return false };
        project_members(item, |name| {
            let sub = attribute.sub_attribute(name)?;
            keeps_sub(keep, sub).then_some((sub, Keep::All))
        });
        !item.is_empty()
    };
    match value {
        Value::Array(items) => {
            items.retain_mut(one);
            !items.is_empty()
        }
        item => one(item),
    }
}

/// Keeps the members of an object that `kept` finds an attribute and a [`Keep`] for, each
/// projected, null ones dropped, and spelt as the schema spells them.
fn project_members<'a, 's>(object: &mut Map<String, Value>, kept: impl Fn(&str) -> Option<(&'a Attribute, Keep<'s>)>) {
    let mut respelt = Vec::new();
    object.retain(|name, value| {
        let Some((attribute, keep)) = kept(name) else { return false };
        let kept = !value.is_null() && project(attribute, value, &keep);
        respell(kept, name, &attribute.name, value, &mut respelt)
    });
    put_respelt(object, respelt);
}

/// Whether a kept member stays where it is: one spelt otherwise than the schema spells it
/// (`username` for `userName`) is taken out with its schema spelling, to be put back by
/// [`put_respelt`].
fn respell(kept: bool, given: &str, name: &str, value: &mut Value, respelt: &mut Vec<(String, String, Value)>) -> bool {
    if !kept {
        return false;
    }
    if given == name {
        return true;
    }
    respelt.push((given.to_owned(), name.to_owned(), std::mem::take(value)));
    false
}

/// Puts back the members [`respell`] took out, under the schema's spelling. Where several
/// spellings of one name were kept, the last in the map's (byte) order wins.
fn put_respelt(object: &mut Map<String, Value>, respelt: Vec<(String, String, Value)>) {
    let mut filled: Vec<String> = Vec::new();
    // `respelt` is in the map's order, so each one comes after those put back before it.
    for (given, name, value) in respelt {
        if !object.contains_key(&name) || filled.contains(&name) || given > name {
            filled.push(name.clone());
            object.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::definitions::{
        custom_schema_from_json, enterprise_user_schema, group_resource, rfc_examples, user_resource,
    };

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const ACME: &str = "urn:example:scim:acme:1.0:User";
    const ID: &str = "2819c223-7f76-453a-919d-413861904646";

    fn users() -> ResourceSchema {
        let acme = custom_schema_from_json(&json!({
            "id": ACME,
            "attributes": [
                { "name": "badge" },
                { "name": "clearance", "returned": "request" },
                { "name": "site", "type": "complex", "subAttributes": [
                    { "name": "code" }, { "name": "floorPlan", "returned": "request" }, { "name": "key", "returned": "always" }
                ] }
            ]
        }))
        .unwrap();
        user_resource(vec![(enterprise_user_schema(), false), (acme, false)])
    }

    fn resource() -> Value {
        let mut user = rfc_examples::enterprise_user();
        user["schemas"].as_array_mut().unwrap().push(json!(ACME));
        user[ACME] = json!({ "badge": "B-7", "clearance": "secret", "site": { "code": "HQ", "floorPlan": "f.pdf", "key": "k1" } });
        user
    }

    fn project(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        let rs = users();
        Projection::parse(&rs, attributes, excluded).unwrap().apply(&rs, &resource())
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn default_projection_returns_default_and_always_attributes() {
        let shown = project(None, None);
        let mut expected = resource();
        let object = expected.as_object_mut().unwrap();
        object.remove("password");
        object[ACME] = json!({ "badge": "B-7", "site": { "code": "HQ", "key": "k1" } });
        assert_eq!(shown, expected, "password is never returned, request-returned values only on request");
        assert_eq!(project(Some(" "), Some("")), expected, "empty parameters are absent ones");
    }

    #[test]
    fn members_come_back_as_the_schema_spells_them_the_last_of_two_spellings_winning() {
        let rs = users();
        let given = json!({
            "schemas": [CORE, ACME],
            "id": ID,
            // 'U' sorts before 'u': "USERNAME" comes first, the schema's spelling last
            "USERNAME": "first", "userName": "last",
            // the other way round: "userName" is before "username", which wins
            "displayName": "Babs", "DISPLAYNAME": "Babs Jensen", "displayname": "B. Jensen",
            "NAME": { "GIVENNAME": "Barbara", "familyName": "Jensen", "unknown": 1, "middleName": null },
            "emails": [{ "VALUE": "b@example.com", "Type": "work" }, "not an object", { "display": null }],
            "phoneNumbers": [{ "value": null }],
            "password": "never shown",
            "title": null,
            "urn:example:scim:acme:1.0:user": { "Badge": "B-7", "Clearance": "secret", "site": { "CODE": "HQ" } },
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": null }
        });
        let shown = Projection::parse(&rs, None, None).unwrap().apply(&rs, &given);
        let expected = json!({
            "schemas": [CORE, ACME],
            "id": ID,
            "userName": "last",
            "displayName": "B. Jensen",
            "name": { "givenName": "Barbara", "familyName": "Jensen" },
            "emails": [{ "value": "b@example.com", "type": "work" }],
            ACME: { "badge": "B-7", "site": { "code": "HQ" } }
        });
        assert_eq!(shown, expected);
        assert_eq!(Projection::parse(&rs, None, None).unwrap().apply_owned(&rs, given), expected, "owned or not");
    }

    #[test]
    fn attributes_parameter_selects() {
        let cases: [(&str, Value); 11] = [
            ("userName", json!({ "userName": "bjensen@example.com" })),
            ("USERNAME, displayName", json!({ "userName": "bjensen@example.com", "displayName": "Babs Jensen" })),
            ("name.givenName", json!({ "name": { "givenName": "Barbara" } })),
            ("emails.value", json!({ "emails": [{ "value": "bjensen@example.com" }, { "value": "babs@jensen.org" }] })),
            ("password", json!({})),
            ("id", json!({})),
            ("favouriteColour", json!({})),
            (&format!("{ENTERPRISE}:department"), json!({ ENTERPRISE: { "department": "Tour Operations" } })),
            (
                "department,manager.value",
                json!({ ENTERPRISE: {
                "department": "Tour Operations", "manager": { "value": "26118915-6090-4610-87e4-49d8ca9f808d" }
            } }),
            ),
            (
                &format!("{ACME}:clearance,{ACME}:site.floorPlan"),
                json!({ ACME: { "clearance": "secret", "site": { "floorPlan": "f.pdf", "key": "k1" } } }),
            ),
            (
                &format!("meta.version,{CORE}:externalId"),
                json!({ "meta": { "version": "W/\"a330bc54f0671c9\"" }, "externalId": "701984" }),
            ),
        ];
        for (attributes, extra) in cases {
            let mut expected = json!({ "schemas": resource()["schemas"], "id": ID });
            expected.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            assert_eq!(project(Some(attributes), None), expected, "attributes={attributes}");
        }
        let whole = project(Some(ENTERPRISE), None);
        assert_eq!(keys(&whole), ["id", "schemas", ENTERPRISE]);
        assert_eq!(whole[ENTERPRISE], resource()[ENTERPRISE]);
        let acme = project(Some(&ACME.to_lowercase()), None);
        assert_eq!(acme[ACME], resource()[ACME], "naming an extension names its request-returned attributes too");
    }

    #[test]
    fn excluded_attributes_parameter_removes() {
        let cases: [(&str, &[&str]); 4] = [
            ("emails", &["emails", "password"]),
            ("id,emails,Name", &["emails", "name", "password"]),
            ("schemas,password,nope", &["password"]),
            (ENTERPRISE, &[ENTERPRISE, "password"]),
        ];
        for (excluded, gone) in cases {
            let shown = project(None, Some(excluded));
            assert_eq!(shown["id"], ID, "id is always returned: {excluded}");
            assert!(shown.get("schemas").is_some());
            for key in keys(&resource()) {
                assert_eq!(shown.get(key).is_none(), gone.contains(&key), "{key} with excludedAttributes={excluded}");
            }
        }
        let shown =
            project(None, Some(&format!("name.givenName,{ENTERPRISE}:manager.$ref,{ACME}:site.key,{ACME}:site.code")));
        assert_eq!(
            keys(&shown["name"]),
            ["familyName", "formatted", "honorificPrefix", "honorificSuffix", "middleName"]
        );
        assert_eq!(keys(&shown[ENTERPRISE]["manager"]), ["displayName", "value"]);
        assert_eq!(shown[ACME]["site"], json!({ "key": "k1" }), "always-returned sub-attributes stay");
        assert_eq!(project(Some("userName"), Some("userName")), project(Some("userName"), None), "attributes wins");
    }

    #[test]
    fn bad_paths_and_unknown_attributes() {
        let rs = users();
        for bad in ["emails[type eq \"work\"]", "name.given.name", "1st"] {
            let err = Projection::parse(&rs, Some(bad), None).unwrap_err();
            assert!(matches!(err, ScimError::InvalidPath { .. }), "{bad}");
            assert!(Projection::parse(&rs, None, Some(bad)).is_err(), "{bad}");
        }
        let mut resource = resource();
        resource["favouriteColour"] = json!("blue");
        resource[ENTERPRISE]["building"] = json!("B");
        resource["urn:example:unknown:1.0:User"] = json!({ "x": 1 });
        let shown = Projection::default().apply(&rs, &resource);
        assert!(shown.get("favouriteColour").is_none() && shown.get("urn:example:unknown:1.0:User").is_none());
        assert!(shown[ENTERPRISE].get("building").is_none());
        let only_unknown =
            Projection::parse(&rs, Some("favouriteColour,urn:example:unknown:1.0:User:x"), None).unwrap();
        assert_eq!(keys(&only_unknown.apply(&rs, &resource)), ["id", "schemas"]);
    }

    #[test]
    fn wants_core_tells_the_script_what_to_fetch() {
        let groups = group_resource(vec![]);
        let rs = users();
        // (resource type, attributes, excludedAttributes, core attribute, wanted)
        let cases = [
            (&groups, None, None, "members", true),
            (&groups, Some("displayName"), None, "members", false),
            (&groups, None, Some("members"), "members", false),
            (&groups, None, Some("members.display"), "members", true),
            (&groups, Some("members.value"), None, "members", true),
            (&groups, Some("MEMBERS"), None, "members", true),
            (&rs, None, None, "password", false),
            (&rs, Some("password"), None, "password", false),
            (&rs, None, None, "groups", true),
            (&rs, Some("userName"), None, "groups", false),
            (&rs, Some("groups.display"), None, "groups", true),
            (&rs, None, Some("groups"), "groups", false),
            (&rs, Some(ENTERPRISE), None, "emails", false),
            (&rs, None, Some(ENTERPRISE), "emails", true),
            (&rs, Some(&format!("{ENTERPRISE}:manager")), None, "userName", false),
        ];
        for (resource_type, attributes, excluded, name, wanted) in cases {
            let projection = Projection::parse(resource_type, attributes, excluded).unwrap();
            let attribute = resource_type.core.attributes.iter().find(|a| a.name == name).expect(name);
            assert_eq!(
                projection.wants_core(resource_type, attribute),
                wanted,
                "{name} with {attributes:?} / {excluded:?}"
            );
        }
    }
}
