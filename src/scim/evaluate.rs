//! Filter evaluation: whether a SCIM resource, as JSON, matches a parsed filter (RFC 7644 §3.4.2.2).
//!
//! A filter is first resolved against the resource schema ([`Matcher::new`]); every problem
//! (unknown attribute, operator the type does not support) is found there, whatever the
//! data. Testing a resource afterwards cannot fail.

use std::sync::LazyLock;

use serde_json::Value;

use super::error::ScimError;
use super::filter::{CompareOp, Filter};
use super::path::AttrPath;
use super::schema::{AttrType, Attribute, Mutability, ResourceSchema, Returned, Uniqueness};
use super::value::{TypedValue, compare_typed, get_key, is_present, type_name};

/// Whether `resource` matches `filter`; an `InvalidFilter` error when the filter names an
/// attribute `schema` does not have or uses an operator its type does not support.
///
/// To test many resources against one filter, build a [`Matcher`] once instead.
pub fn matches(filter: &Filter, resource: &Value, schema: &ResourceSchema) -> Result<bool, ScimError> {
    Ok(Matcher::new(filter, schema)?.matches(resource))
}

/// Checks a filter against a resource schema without testing any resource, e.g. before
/// handing it to a mapping script, so a bad filter is a 400 whatever the script does.
#[cfg(test)]
pub(crate) fn validate(filter: &Filter, schema: &ResourceSchema) -> Result<(), ScimError> {
    Matcher::new(filter, schema).map(drop)
}

/// A filter resolved against a resource schema, ready to test any number of resources.
#[derive(Debug)]
pub struct Matcher<'s> {
    root: Node<'s>,
}

impl<'s> Matcher<'s> {
    /// Resolves every path of `filter` in `schema` and checks each operator against the
    /// attribute's type. Errors are `InvalidFilter` at position 0 (the tree keeps no
    /// positions) with the offending path in the detail.
    pub fn new(filter: &Filter, schema: &'s ResourceSchema) -> Result<Self, ScimError> {
        Ok(Self { root: compile(filter, Scope::Resource(schema))? })
    }

    /// Whether the resource (SCIM JSON; keys matched ignoring case, extension attributes
    /// under their schema URN) matches the filter.
    pub fn matches(&self, resource: &Value) -> bool {
        self.root.test(resource)
    }

    /// The top-level members of a resource the filter reads, each as its extension's URN (for
    /// extension attributes, read inside that member) and the attribute's name: a resource
    /// holding only these members matches as the whole resource does.
    pub fn reads(&self) -> Vec<(Option<&str>, &str)> {
        let mut reads = Vec::new();
        let mut nodes = vec![&self.root];
        while let Some(node) = nodes.pop() {
            match node {
                // What a `[ ]` filter reads lies inside the attribute it filters.
                Node::Compare { at, .. } | Node::Present { at } | Node::ValuePath { at, .. } => {
                    reads.push((at.extension, at.name));
                }
                Node::All(all) | Node::Any(all) => nodes.extend(all),
                Node::Not(inner) => nodes.push(inner),
            }
        }
        reads
    }
}

/// What a path is resolved in: the resource type, or the complex attribute of a `[ ]` filter.
#[derive(Clone, Copy)]
enum Scope<'s> {
    Resource(&'s ResourceSchema),
    Element(&'s Attribute),
}

#[derive(Debug)]
enum Node<'s> {
    Compare {
        at: Locator<'s>,
        op: CompareOp,
        literal: Literal,
    },
    Present {
        at: Locator<'s>,
    },
    /// A whole `and` chain: a list, so evaluation does not recurse once per term.
    All(Vec<Node<'s>>),
    /// A whole `or` chain.
    Any(Vec<Node<'s>>),
    Not(Box<Node<'s>>),
    ValuePath {
        at: Locator<'s>,
        inner: Box<Node<'s>>,
    },
}

/// The filter's literal, read once as the attribute's type.
#[derive(Debug)]
enum Literal {
    Null,
    Typed(TypedValue),
    /// A literal that does not read as the attribute's type (`active eq "yes"`): matches nothing.
    Mismatch,
}

/// Where an attribute's values sit in the JSON, and the definition they are read with.
#[derive(Debug, Clone, Copy)]
struct Locator<'s> {
    /// The schema URN whose object holds the attribute, for extension attributes.
    extension: Option<&'s str>,
    name: &'s str,
    /// The sub-attribute, written or implied (`emails co "x"` compares `emails.value`).
    sub: Option<&'s str>,
    /// The definition of the values located (the sub-attribute's when there is one).
    attr: &'s Attribute,
}

impl Locator<'_> {
    /// Every non-null value at this location; multi-valued attributes contribute each element.
    fn values<'v>(&self, object: &'v Value) -> Vec<&'v Value> {
        let base = match self.extension {
            Some(urn) => get_key(object, urn),
            None => Some(object),
        };
        let Some(top) = base.and_then(|base| get_key(base, self.name)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in elements(top) {
            match self.sub {
                Some(sub) => out.extend(get_key(item, sub).map(elements).unwrap_or_default()),
                None => out.push(item),
            }
        }
        out.retain(|value| !value.is_null());
        out
    }
}

/// The elements of an array, or the value itself.
fn elements(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// `schemas` is common to every resource (RFC 7643 §3) but often missing from schema
/// definitions; filters on it (`schemas eq "urn:…"`, an RFC example) resolve to this.
static SCHEMAS: LazyLock<Attribute> = LazyLock::new(|| Attribute {
    name: "schemas".into(),
    kind: AttrType::Reference,
    multi_valued: true,
    description: "the schema URIs the resource conforms to".into(),
    required: true,
    case_exact: false,
    mutability: Mutability::ReadOnly,
    returned: Returned::Always,
    uniqueness: Uniqueness::None,
    canonical_values: Vec::new(),
    reference_types: vec!["uri".into()],
    sub_attributes: Vec::new(),
});

fn invalid(detail: String) -> ScimError {
    ScimError::InvalidFilter { position: 0, detail }
}

fn compile<'s>(filter: &Filter, scope: Scope<'s>) -> Result<Node<'s>, ScimError> {
    match filter {
        Filter::Compare { path, op, value } => {
            let at = comparable(locate(path, scope)?, path)?;
            let allowed = match op {
                CompareOp::Eq | CompareOp::Ne => true,
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
                    matches!(at.attr.kind, AttrType::String | AttrType::Reference)
                }
                CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => matches!(
                    at.attr.kind,
                    AttrType::String | AttrType::Reference | AttrType::Integer | AttrType::Decimal | AttrType::DateTime
                ),
            };
            if !allowed {
                return Err(invalid(format!(
                    "{op} cannot be used on \"{path}\", a {} attribute",
                    type_name(at.attr.kind)
                )));
            }
            let literal = match value {
                Value::Null => Literal::Null,
                value => TypedValue::read(value, at.attr).map_or(Literal::Mismatch, Literal::Typed),
            };
            Ok(Node::Compare { at, op: *op, literal })
        }
        Filter::Present { path } => Ok(Node::Present { at: locate(path, scope)? }),
        Filter::And(..) => {
            filter.conjuncts().into_iter().map(|f| compile(f, scope)).collect::<Result<_, _>>().map(Node::All)
        }
        Filter::Or(..) => {
            filter.disjuncts().into_iter().map(|f| compile(f, scope)).collect::<Result<_, _>>().map(Node::Any)
        }
        Filter::Not(inner) => Ok(Node::Not(Box::new(compile(inner, scope)?))),
        Filter::ValuePath { path, filter: inner } => {
            if let Scope::Element(parent) = scope {
                return Err(invalid(format!(
                    "\"{path}\" inside the \"[ ]\" filter of {:?}: \"[ ]\" filters do not nest",
                    parent.name
                )));
            }
            if path.sub.is_some() {
                return Err(invalid(format!("\"{path}\" names a sub-attribute; \"[ ]\" filters a complex attribute")));
            }
            let at = locate(path, scope)?;
            if at.attr.kind != AttrType::Complex {
                return Err(invalid(format!("\"{path}\" is not a complex attribute, so it takes no \"[ ]\" filter")));
            }
            Ok(Node::ValuePath { at, inner: Box::new(compile(inner, Scope::Element(at.attr))?) })
        }
    }
}

fn locate<'s>(path: &AttrPath, scope: Scope<'s>) -> Result<Locator<'s>, ScimError> {
    match scope {
        Scope::Resource(schema) => {
            if let Some(resolved) = schema.resolve(path) {
                return Ok(Locator {
                    extension: resolved.in_extension.then_some(resolved.schema.id.as_str()),
                    name: resolved.attribute.name.as_str(),
                    sub: resolved.sub.map(|sub| sub.name.as_str()),
                    attr: resolved.target(),
                });
            }
            let is_schemas = path.sub.is_none()
                && path.name.eq_ignore_ascii_case("schemas")
                && path.urn.as_ref().is_none_or(|urn| urn.eq_ignore_ascii_case(&schema.core.id));
            if is_schemas {
                return Ok(Locator { extension: None, name: "schemas", sub: None, attr: &SCHEMAS });
            }
            Err(invalid(format!("unknown attribute {:?}", path.to_string())))
        }
        Scope::Element(parent) => {
            let full = format!("{}.{path}", parent.name);
            if path.urn.is_some() || path.sub.is_some() {
                return Err(invalid(format!(
                    "{full:?}: inside \"[ ]\" name a sub-attribute of {:?} without prefix",
                    parent.name
                )));
            }
            let sub = parent.sub_attribute(&path.name).ok_or_else(|| invalid(format!("unknown attribute {full:?}")))?;
            Ok(Locator { extension: None, name: sub.name.as_str(), sub: None, attr: sub })
        }
    }
}

/// A complex attribute compares through its `value` sub-attribute (RFC 7644 §3.4.2.2:
/// `emails co "x"` is `emails.value co "x"`); one without `value` cannot be compared.
fn comparable<'s>(at: Locator<'s>, path: &AttrPath) -> Result<Locator<'s>, ScimError> {
    if at.attr.kind != AttrType::Complex {
        return Ok(at);
    }
    match at.attr.sub_attribute("value") {
        Some(value) if at.sub.is_none() => Ok(Locator { sub: Some(value.name.as_str()), attr: value, ..at }),
        _ => Err(invalid(format!("{:?} is a complex attribute; compare one of its sub-attributes", path.to_string()))),
    }
}

impl Node<'_> {
    fn test(&self, object: &Value) -> bool {
        match self {
            Self::Compare { at, op, literal } => compare(&at.values(object), *op, literal, at.attr),
            Self::Present { at } => at.values(object).into_iter().any(is_present),
            Self::All(nodes) => nodes.iter().all(|node| node.test(object)),
            Self::Any(nodes) => nodes.iter().any(|node| node.test(object)),
            Self::Not(inner) => !inner.test(object),
            Self::ValuePath { at, inner } => at.values(object).into_iter().any(|element| inner.test(element)),
        }
    }
}

/// A comparison over the values found: true when any value satisfies it (multi-valued
/// attributes match on any element). With no value, only `ne` and `eq null` hold.
fn compare(values: &[&Value], op: CompareOp, literal: &Literal, attr: &Attribute) -> bool {
    match literal {
        Literal::Mismatch => false,
        Literal::Null => match op {
            CompareOp::Eq => values.is_empty(),
            CompareOp::Ne => !values.is_empty(),
            _ => false,
        },
        Literal::Typed(_) if values.is_empty() => op == CompareOp::Ne,
        Literal::Typed(expected) => {
            values.iter().filter_map(|value| TypedValue::read(value, attr)).any(|actual| holds(op, &actual, expected))
        }
    }
}

fn holds(op: CompareOp, actual: &TypedValue, expected: &TypedValue) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let order = compare_typed(actual, expected);
    match (op, actual, expected) {
        (CompareOp::Eq, ..) => order == Some(Equal),
        (CompareOp::Ne, ..) => order != Some(Equal),
        (CompareOp::Gt, ..) => order == Some(Greater),
        (CompareOp::Ge, ..) => matches!(order, Some(Greater | Equal)),
        (CompareOp::Lt, ..) => order == Some(Less),
        (CompareOp::Le, ..) => matches!(order, Some(Less | Equal)),
        (CompareOp::Co, TypedValue::Text(a), TypedValue::Text(e)) => a.contains(e.as_str()),
        (CompareOp::Sw, TypedValue::Text(a), TypedValue::Text(e)) => a.starts_with(e.as_str()),
        (CompareOp::Ew, TypedValue::Text(a), TypedValue::Text(e)) => a.ends_with(e.as_str()),
        (CompareOp::Co | CompareOp::Sw | CompareOp::Ew, ..) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::filter::parse_filter;
    use crate::scim::filter::tests::RFC_EXAMPLES;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, Schema, USER_SCHEMA};

    fn attr(name: &str, kind: AttrType) -> Attribute {
        Attribute {
            name: name.into(),
            kind,
            multi_valued: false,
            description: String::new(),
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: vec![],
            reference_types: vec![],
            sub_attributes: vec![],
        }
    }

    fn complex(name: &str, subs: Vec<Attribute>) -> Attribute {
        Attribute { sub_attributes: subs, ..attr(name, AttrType::Complex) }
    }

    fn multi(a: Attribute) -> Attribute {
        Attribute { multi_valued: true, ..a }
    }

    fn exact(a: Attribute) -> Attribute {
        Attribute { case_exact: true, ..a }
    }

    fn schema(id: &str, attributes: Vec<Attribute>) -> Schema {
        Schema {
            id: id.into(),
            name: id.rsplit(':').next().unwrap_or(id).into(),
            description: String::new(),
            attributes,
        }
    }

    /// A cut-down User with the enterprise extension, standing in for `definitions`.
    pub(crate) fn user_schema() -> ResourceSchema {
        use AttrType as T;
        let multi_complex = |name: &str| {
            multi(complex(
                name,
                vec![
                    attr("value", T::String),
                    attr("type", T::String),
                    attr("display", T::String),
                    attr("primary", T::Boolean),
                ],
            ))
        };
        let core = schema(
            USER_SCHEMA,
            vec![
                exact(attr("id", T::String)),
                exact(attr("externalId", T::String)),
                attr("userName", T::String),
                complex(
                    "name",
                    vec![attr("formatted", T::String), attr("familyName", T::String), attr("givenName", T::String)],
                ),
                attr("displayName", T::String),
                attr("title", T::String),
                attr("userType", T::String),
                attr("active", T::Boolean),
                attr("loginCount", T::Integer),
                attr("quota", T::Decimal),
                attr("certificate", T::Binary),
                attr("profileUrl", T::Reference),
                multi_complex("emails"),
                multi_complex("ims"),
                multi(attr("nicknames", T::String)),
                complex(
                    "meta",
                    vec![
                        attr("resourceType", T::String),
                        attr("created", T::DateTime),
                        attr("lastModified", T::DateTime),
                    ],
                ),
            ],
        );
        let enterprise = schema(
            ENTERPRISE_USER_SCHEMA,
            vec![
                attr("employeeNumber", T::String),
                attr("department", T::String),
                complex(
                    "manager",
                    vec![attr("value", T::String), exact(attr("$ref", T::Reference)), attr("displayName", T::String)],
                ),
            ],
        );
        ResourceSchema {
            name: "User".into(),
            endpoint: "/Users".into(),
            description: String::new(),
            core,
            extensions: vec![(enterprise, false)],
        }
    }

    /// Three users for the RFC examples: an employee, an intern (with the enterprise
    /// extension) and a contractor.
    pub(crate) fn users() -> [Value; 3] {
        [
            json!({
                "schemas": [USER_SCHEMA],
                "id": "2819c223", "userName": "bjensen", "title": "Tour Guide", "userType": "Employee",
                "name": {"familyName": "O'Malley", "givenName": "Barbara"},
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": true},
                    {"value": "babs@jensen.org", "type": "home"},
                ],
                "ims": [{"value": "someaimhandle", "type": "aim"}],
                "meta": {"created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T06:42:35+02:00"},
            }),
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "id": "7a1f", "userName": "jsmith", "userType": "Intern",
                "name": {"familyName": "Smith", "givenName": "Jo"},
                "emails": [{"value": "js@example.org", "type": "home"}],
                "meta": {"lastModified": "2011-05-13T04:42:34Z"},
                ENTERPRISE_USER_SCHEMA: {"department": "Sales", "manager": {"value": "2819c223"}},
            }),
            json!({
                "schemas": [USER_SCHEMA],
                "id": "c3", "userName": "cwong", "userType": "Contractor", "title": "",
                "name": {"familyName": "Wong"},
                "emails": [{"value": "c@other.net", "type": "work"}],
                "ims": [{"value": "c@foo.com", "type": "xmpp"}],
                "meta": {"lastModified": "2011-05-13T04:42:33Z"},
            }),
        ]
    }

    fn eval(text: &str, resource: &Value) -> Result<bool, ScimError> {
        let filter = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        matches(&filter, resource, &user_schema())
    }

    #[test]
    fn the_rfc_examples_select_the_right_users() {
        // [employee, intern, contractor] for each example, in the RFC's order
        let expected: [[bool; 3]; 17] = [
            [true, false, false],
            [true, false, false],
            [false, true, false],
            [false, true, false],
            [true, false, false],
            [true, false, false],
            [true, true, false],
            [false, false, true],
            [false, true, true],
            [true, false, false],
            [true, true, false],
            [false, true, false],
            [true, false, false],
            [false, false, true],
            [true, false, false],
            [true, false, false],
            [true, false, true],
        ];
        let users = users();
        for (text, row) in RFC_EXAMPLES.iter().zip(expected) {
            for (user, want) in users.iter().zip(row) {
                assert_eq!(eval(text, user), Ok(want), "{text} on {}", user["userName"]);
            }
            // the printed form means the same
            let printed = parse_filter(text).unwrap().to_string();
            for (user, want) in users.iter().zip(row) {
                assert_eq!(eval(&printed, user), Ok(want), "{printed}");
            }
        }
    }

    #[test]
    fn comparisons_follow_the_attribute_type() {
        let user = json!({
            "id": "AbC", "userName": "BJensen", "active": true, "loginCount": 10, "quota": 1.5,
            "name": {"givenName": "Élodie"},
            "nicknames": ["Babs", "B"],
            "profileUrl": "https://Example.com/bjensen",
            "emails": [{"value": "a@x.com", "type": "work"}, {"value": "b@y.com", "type": "home", "primary": "true"}],
            "meta": {"created": "2011-05-13T04:42:34Z"},
            ENTERPRISE_USER_SCHEMA: {"department": "Sales", "manager": {"value": "m-1"}},
        });
        let ent = ENTERPRISE_USER_SCHEMA;
        let cases: Vec<(String, bool)> = [
            (r#"userName eq "bjensen""#, true),
            (r#"userName eq "BJENSEN""#, true),
            (r#"id eq "abc""#, false),
            (r#"id eq "AbC""#, true),
            (r#"id sw "A""#, true),
            (r#"id co "B""#, false),
            (r#"name.givenName eq "ÉLODIE""#, true),
            (r#"name.givenName ew "DIE""#, true),
            (r#"userName gt "bj""#, true),
            (r#"userName lt "BJ""#, false),
            (r#"profileUrl sw "https://example.com""#, true),
            ("active eq true", true),
            ("active ne true", false),
            (r#"active eq "true""#, true),
            (r#"active eq "yes""#, false),
            (r#"active ne "yes""#, false),
            ("loginCount gt 9", true),
            ("loginCount eq 10.0", true),
            ("loginCount ge 10", true),
            ("loginCount lt 10", false),
            (r#"loginCount gt "5""#, true),
            ("quota le 2", true),
            ("quota gt 1.25e0", true),
            (r#"meta.created eq "2011-05-13T06:42:34+02:00""#, true),
            (r#"meta.created gt "2011-05-13T06:42:33+02:00""#, true),
            (r#"meta.created lt "2011-05-13T00:00:00-05:00""#, true),
            (r#"meta.created eq "last tuesday""#, false),
            (r#"nicknames eq "b""#, true),
            (r#"nicknames sw "bab""#, true),
            (r#"nicknames eq "c""#, false),
            (r#"nicknames ne "b""#, true),
            (r#"emails.type eq "home""#, true),
            (r#"emails co "@y.""#, true),
            (r#"emails ew ".org""#, false),
            (r#"emails[type eq "home" and primary eq true]"#, true),
            (r#"emails[type eq "work" and primary eq true]"#, false),
            (r#"emails[type eq "home"].value eq "b@y.com""#, true),
            (r#"emails[type eq "work"].value eq "b@y.com""#, false),
            (r#"emails[not (type eq "work")]"#, true),
            (r#"name[givenName sw "é"]"#, true),
            (r#"department eq "sales""#, true),
            (&format!(r#"{ent}:department eq "Sales""#), true),
            (&format!(r#"{ent}:manager.value eq "M-1""#), true),
            (&format!("{ent}:manager pr"), true),
            (&format!(r#"{ent}:manager eq "m-1""#), true),
            (&format!(r#"{ent}:manager[value eq "m-1"]"#), true),
            (&format!(r#"{USER_SCHEMA}:userName eq "bjensen""#), true),
            (r#"title ne "boss""#, true),
            (r#"title eq "boss""#, false),
            ("title eq null", true),
            ("title ne null", false),
            ("userName eq null", false),
            ("userName ne null", true),
            ("title pr", false),
            ("not (title pr)", true),
            ("ims pr", false),
            ("emails pr", true),
            ("name pr", true),
            ("USERNAME PR", true),
        ]
        .into_iter()
        .map(|(text, want)| (text.to_owned(), want))
        .collect();
        for (text, want) in cases {
            assert_eq!(eval(&text, &user), Ok(want), "{text}");
        }
    }

    #[test]
    fn json_keys_match_ignoring_case() {
        let user = json!({"username": "bjensen", "EMAILS": [{"VALUE": "a@x.com"}], "Name": {"givenname": "B"}});
        for text in [
            r#"userName eq "bjensen""#,
            r#"emails.value eq "a@x.com""#,
            r#"emails[value sw "a"]"#,
            r#"name.givenName eq "b""#,
        ] {
            assert_eq!(eval(text, &user), Ok(true), "{text}");
        }
    }

    #[test]
    fn presence_needs_a_non_empty_value() {
        for (user, want) in [
            (json!({}), false),
            (json!({"title": null}), false),
            (json!({"title": ""}), false),
            (json!({"title": "x"}), true),
            (json!({"emails": []}), false),
            (json!({"emails": [{}]}), false),
            (json!({"emails": [{"value": "a"}]}), true),
            (json!({"name": {}}), false),
            (json!({"name": {"givenName": ""}}), false),
        ] {
            let text = user.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_else(|| "title".into());
            assert_eq!(eval(&format!("{text} pr"), &user), Ok(want), "{user}");
        }
    }

    #[test]
    fn unusable_filters_are_invalid_filter_errors() {
        let user = &users()[0];
        let cases = [
            ("nickName eq \"b\"", "unknown attribute \"nickName\""),
            ("name.middle pr", "unknown attribute \"name.middle\""),
            ("urn:example:Ext:department eq \"x\"", "unknown attribute \"urn:example:Ext:department\""),
            ("emails[kind eq \"work\"]", "unknown attribute \"emails.kind\""),
            ("emails[type eq \"work\"].address eq \"x\"", "unknown attribute \"emails.address\""),
            ("name eq \"x\"", "\"name\" is a complex attribute"),
            ("meta gt \"x\"", "\"meta\" is a complex attribute"),
            ("active gt true", "gt cannot be used on \"active\", a boolean attribute"),
            ("active co \"t\"", "co cannot be used on"),
            ("certificate lt \"x\"", "lt cannot be used on \"certificate\", a binary attribute"),
            ("loginCount sw \"1\"", "sw cannot be used on"),
            ("meta.created co \"2011\"", "a dateTime attribute"),
            ("userName[value eq \"x\"]", "\"userName\" is not a complex attribute"),
        ];
        for (text, detail) in cases {
            match eval(text, user) {
                Err(ScimError::InvalidFilter { detail: got, .. }) => assert!(got.contains(detail), "{text}: {got}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // errors do not depend on the data
        assert!(eval("nickName pr", &json!({})).is_err());
        assert!(validate(&parse_filter("emails[kind pr]").unwrap(), &user_schema()).is_err());
        assert!(validate(&parse_filter("emails[type pr]").unwrap(), &user_schema()).is_ok());
    }

    #[test]
    fn trees_the_parser_cannot_build_are_refused_too() {
        let nested = Filter::ValuePath {
            path: AttrPath::simple("emails"),
            filter: Box::new(Filter::ValuePath {
                path: AttrPath::simple("type"),
                filter: Box::new(parse_filter("x pr").unwrap()),
            }),
        };
        let with_sub = Filter::ValuePath {
            path: AttrPath::parse("name.givenName").unwrap(),
            filter: Box::new(parse_filter("x pr").unwrap()),
        };
        let qualified_inner = Filter::ValuePath {
            path: AttrPath::simple("emails"),
            filter: Box::new(Filter::Present { path: AttrPath::parse("emails.value").unwrap() }),
        };
        for filter in [nested, with_sub, qualified_inner] {
            assert!(matches!(validate(&filter, &user_schema()), Err(ScimError::InvalidFilter { .. })), "{filter:?}");
        }
    }

    #[test]
    fn schemas_resolves_even_when_the_schema_does_not_list_it() {
        let users = users();
        assert_eq!(eval(&format!(r#"schemas eq "{}""#, ENTERPRISE_USER_SCHEMA.to_uppercase()), &users[1]), Ok(true));
        assert_eq!(eval(&format!(r#"schemas eq "{GROUP_SCHEMA}""#), &users[1]), Ok(false));
        assert_eq!(eval(&format!(r#"{USER_SCHEMA}:schemas pr"#), &users[0]), Ok(true));
        assert!(eval("schemas.value pr", &users[0]).is_err());
    }

    #[test]
    fn the_longest_chain_a_filter_can_hold_evaluates() {
        // 8 characters a term: the deepest tree that fits in the length limit
        let text = vec!["a pr"; 1 + (crate::scim::filter::MAX_FILTER_CHARS - 4) / 8].join(" or ");
        let filter = parse_filter(&text).unwrap();
        assert_eq!(filter.to_string(), text);
        assert_eq!(parse_filter(&filter.to_string()).unwrap(), filter.clone());
        assert_eq!(filter.to_json()["filters"].as_array().map(Vec::len), Some(512));
        assert!(matches!(matches(&filter, &json!({}), &user_schema()), Err(ScimError::InvalidFilter { .. })));
        let known = parse_filter(&vec!["id pr"; (crate::scim::filter::MAX_FILTER_CHARS + 4) / 9].join(" or ")).unwrap();
        assert_eq!(matches(&known, &json!({"id": "x"}), &user_schema()), Ok(true));
        assert_eq!(matches(&known, &json!({}), &user_schema()), Ok(false));
    }

    #[test]
    fn a_matcher_tests_many_resources() {
        let schema = user_schema();
        let filter = parse_filter(r#"emails[type eq "work"] or userType eq "Intern""#).unwrap();
        let matcher = Matcher::new(&filter, &schema).unwrap();
        let selected: Vec<bool> = users().iter().map(|u| matcher.matches(u)).collect();
        assert_eq!(selected, [true, true, true]);
        assert!(!matcher.matches(&json!("not an object")));
        assert!(!matcher.matches(&json!({"emails": "work"})));
    }

    /// What a filter reads is the top-level members it looks into: a `[ ]` filter's inner
    /// paths lie inside its attribute, an extension attribute inside the extension's member.
    #[test]
    fn a_matcher_names_the_members_it_reads() {
        let schema = user_schema();
        type Read<'a> = (Option<&'a str>, &'a str);
        let cases: &[(&str, &[Read<'_>])] = &[
            ("USERNAME eq \"x\"", &[(None, "userName")]),
            (
                "emails[type eq \"work\" and value co \"@\"] or not (name.familyName pr)",
                &[(None, "emails"), (None, "name")],
            ),
            (
                "title pr and (active eq true or userName sw \"a\")",
                &[(None, "title"), (None, "active"), (None, "userName")],
            ),
            (
                &format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber eq \"7\""),
                &[(Some(ENTERPRISE_USER_SCHEMA), "employeeNumber")],
            ),
            ("schemas eq \"x\"", &[(None, "schemas")]),
        ];
        for (text, expected) in cases {
            let filter = parse_filter(text).unwrap();
            let matcher = Matcher::new(&filter, &schema).unwrap();
            let mut reads = matcher.reads();
            reads.sort_unstable();
            let mut expected = expected.to_vec();
            expected.sort_unstable();
            assert_eq!(reads, expected, "{text}");
        }
    }
}
