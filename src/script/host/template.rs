//! Templates: a mapping written as data, which the proxy fills in from each record.
//!
//! A template is a script function without parameters whose answer is a map of what the
//! mapped value holds: constants, nested maps and arrays, and `field("name")` for what the
//! record holds at that name (`field("a.b")` inside a nested map, `.as_text()` of it as
//! text). `record.fill(Fn("template"))` calls the function once for each compiled script,
//! keeps what it answered, and fills that in natively for every record after: a renaming of
//! a dozen fields costs a third of what the same map literal costs Rhai to evaluate.
//!
//! The record is a legacy app's (the template a SCIM resource) or the SCIM resource a request
//! carries (the template the legacy app's body): `field` names an extension's attributes under
//! their URN as SCIM does, `.preferred(type)` walks into a multi-valued attribute's preferred
//! item, `.as_int()` reads an integer from text, `.or(value)` is a default.
//!
//! What the record lacks is left out as `compact` would leave it out, with one rule of its
//! own: a map or an array of the template that reads the record is left out when nothing it
//! reads is there, constants beside them notwithstanding — so `[#{ value: field("mail"),
//! type: "work" }]` is no `emails` at all for a record without `mail`, not `[{type: work}]`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext};

use super::{current, runtime_error};
use crate::script::limits;

/// `field(name)` of a template: what a record holds at a name.
#[derive(Debug, Clone)]
pub(in crate::script) struct Field {
    /// The name as the template gave it.
    name: ImmutableString,
    /// The name, split into the keys of the maps walked, outermost first.
    path: Vec<ImmutableString>,
    /// How the value found is written.
    form: Form,
    /// `.preferred(type)`: an array met along the path is walked into at the item
    /// `preferred` chooses (`Some(None)` without a type); without it, at no item.
    pick: Option<Option<ImmutableString>>,
    /// `.or(value)`: the value when the record holds nothing there.
    default: Option<Dynamic>,
}

/// How a [`Field`] writes what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    AsIs,
    /// `.as_text()`: numbers and booleans written out, text as it is.
    Text,
    /// `.as_int()`: integers as they are, text of one read as it.
    Int,
}

impl Field {
    /// `field(name)`: keys joined by dots; a name starting with `urn:` is a SCIM extension's
    /// attribute as SCIM writes it (`urn:…:2.0:User:manager.value`): the schema URN, dots and
    /// all, up to its last colon, then keys joined by dots.
    pub(super) fn named(name: &str) -> Result<Self, Box<EvalAltResult>> {
        let (schema, rest) = match name.get(..4) {
            Some(scheme) if scheme.eq_ignore_ascii_case("urn:") => match name.rfind(':') {
                Some(colon) if colon > 3 => (Some(&name[..colon]), &name[colon + 1..]),
                _ => (None, name),
            },
            _ => (None, name),
        };
        let path: Vec<ImmutableString> = schema.into_iter().chain(rest.split('.')).map(ImmutableString::from).collect();
        if path.iter().any(|segment| segment.is_empty()) {
            return Err(runtime_error(format!(
                "field(\"{name}\"): a name, or names joined by dots (after `urn:…:` for an extension)"
            )));
        }
        Ok(Self { name: name.into(), path, form: Form::AsIs, pick: None, default: None })
    }

    /// `.as_text()`.
    pub(super) fn as_text(&mut self) -> Self {
        Self { form: Form::Text, ..self.clone() }
    }

    /// `.as_int()`.
    pub(super) fn as_int(&mut self) -> Self {
        Self { form: Form::Int, ..self.clone() }
    }

    /// `.preferred()`, `.preferred(type)`.
    pub(super) fn preferred(&mut self, kind: Option<&str>) -> Self {
        Self { pick: Some(kind.map(ImmutableString::from)), ..self.clone() }
    }

    /// `.or(value)`: a constant, like those a template holds.
    pub(super) fn or(&mut self, value: Dynamic) -> Result<Self, Box<EvalAltResult>> {
        if !is_constant(&value) {
            return Err(runtime_error(format!(
                "field(\"{}\").or(…): a text, number or boolean, not {}",
                self.name,
                value.type_name()
            )));
        }
        Ok(Self { default: Some(value), ..self.clone() })
    }

    /// What `record` holds at the field's name, written in the field's form; `None` when it
    /// holds nothing there (or `()`) and the field has no default.
    fn read(&self, record: &Map) -> Result<Option<Dynamic>, Box<EvalAltResult>> {
        let pick = self.pick.as_ref().map(|kind| kind.as_ref().map(ImmutableString::as_str));
        let found = lookup(record, &self.path, pick).filter(|value| !value.is_unit());
        let written = match (found, self.form) {
            (None, _) => None,
            (Some(value), Form::AsIs) => Some(value),
            (Some(value), Form::Text) => Some(self.as_text_of(value)?),
            (Some(value), Form::Int) => self.as_int_of(value)?,
        };
        Ok(written.or_else(|| self.default.clone()))
    }

    fn as_text_of(&self, value: Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
        if value.is_string() {
            return Ok(value);
        }
        if value.is_int() || value.is_float() || value.is_bool() || value.is_char() {
            return Ok(Dynamic::from(value.to_string()));
        }
        Err(runtime_error(format!(
            "field(\"{}\").as_text(): the record holds {} there, not a value to write as text",
            self.name,
            value.type_name()
        )))
    }

    /// An integer, or text of one; empty text is no value. Anything else is a value the
    /// record should not hold there: the record a template reads with `.as_int()` is what
    /// a client sent, so the request fails as invalid (400 `invalidValue`).
    fn as_int_of(&self, value: Dynamic) -> Result<Option<Dynamic>, Box<EvalAltResult>> {
        if value.is_int() {
            return Ok(Some(value));
        }
        if let Some(text) = value.read_lock::<ImmutableString>() {
            if text.is_empty() {
                return Ok(None);
            }
            if let Ok(number) = text.parse::<i64>() {
                return Ok(Some(Dynamic::from_int(number)));
            }
            return Err(invalid_value(format!("{}: \"{}\" is not an integer", self.name, text.as_str())));
        }
        Err(invalid_value(format!("{}: {} is not an integer", self.name, value.type_name())))
    }
}

/// A value a client sent that cannot be written where the template writes it, thrown as the
/// script would throw it.
fn invalid_value(detail: String) -> Box<EvalAltResult> {
    let mut error = Map::new();
    error.insert("status".into(), Dynamic::from_int(400));
    error.insert("scimType".into(), Dynamic::from("invalidValue"));
    error.insert("detail".into(), Dynamic::from(detail));
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from_map(error), rhai::Position::NONE))
}

/// True for what a template holds as a constant.
fn is_constant(value: &Dynamic) -> bool {
    value.is_string() || value.is_int() || value.is_float() || value.is_bool() || value.is_char()
}

/// The value at `path` within `map`, nested maps walked in place (only the value found is
/// copied); an array met before the path's end is walked into at its preferred item when
/// `pick` says so (with its type).
fn lookup(map: &Map, path: &[ImmutableString], pick: Option<Option<&str>>) -> Option<Dynamic> {
    let (first, rest) = path.split_first()?;
    let value = map.get(first.as_str())?;
    let items = pick.and_then(|_| value.read_lock::<Array>());
    let chosen = match (pick, &items) {
        (Some(kind), Some(items)) => super::preferred_item(items, kind)?,
        _ => value,
    };
    if rest.is_empty() {
        return Some(chosen.clone());
    }
    let inner = chosen.read_lock::<Map>()?;
    lookup(&inner, rest, pick)
}

/// A template as the proxy keeps it.
#[derive(Debug)]
enum Node {
    Field(Field),
    Constant(Dynamic),
    /// Members, and whether any of them reads the record.
    Map(Vec<(ImmutableString, Node)>, bool),
    /// Items, and whether any of them reads the record.
    Array(Vec<Node>, bool),
}

impl Node {
    /// The template a template function answered, found `depth` levels down.
    fn compile(value: &Dynamic, depth: usize) -> Result<Self, String> {
        if depth > limits::MAX_VALUE_DEPTH {
            return Err(crate::script::too_deep());
        }
        if let Some(field) = value.read_lock::<Field>() {
            return Ok(Self::Field(field.clone()));
        }
        if let Some(map) = value.read_lock::<Map>() {
            let mut members = Vec::with_capacity(map.len());
            for (key, value) in map.iter().filter(|(_, value)| !value.is_unit()) {
                members.push((ImmutableString::from(key.as_str()), Self::compile(value, depth + 1)?));
            }
            let reads = members.iter().any(|(_, node)| node.reads());
            return Ok(Self::Map(members, reads));
        }
        if let Some(items) = value.read_lock::<Array>() {
            let items = items
                .iter()
                .filter(|item| !item.is_unit())
                .map(|item| Self::compile(item, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            let reads = items.iter().any(Self::reads);
            return Ok(Self::Array(items, reads));
        }
        if is_constant(value) {
            return Ok(Self::Constant(value.clone()));
        }
        Err(format!("{} in a template: only maps, arrays, constants and field(…) are", value.type_name()))
    }

    fn reads(&self) -> bool {
        match self {
            Self::Field(_) => true,
            Self::Constant(_) => false,
            Self::Map(_, reads) | Self::Array(_, reads) => *reads,
        }
    }

    /// The node filled in from `record`; `None` when it reads the record and finds nothing.
    fn fill(&self, record: &Map) -> Result<Option<Dynamic>, Box<EvalAltResult>> {
        match self {
            Self::Field(field) => field.read(record),
            Self::Constant(value) => Ok(Some(value.clone())),
            Self::Map(members, reads) => {
                let mut map = Map::new();
                let found = fill_in(members.iter().map(|(key, node)| (node, key)), record, |key, value| {
                    map.insert(key.as_str().into(), value);
                })?;
                Ok((found || !reads).then(|| Dynamic::from_map(map)))
            }
            Self::Array(items, reads) => {
                let mut filled = Array::with_capacity(items.len());
                let found = fill_in(items.iter().map(|node| (node, ())), record, |(), value| filled.push(value))?;
                Ok((found || !reads).then(|| Dynamic::from_array(filled)))
            }
        }
    }
}

/// Fills in the members of a map or the items of an array, handing each that is there to
/// `keep` with its place; whether any of them read the record and found something.
fn fill_in<'a, T>(
    nodes: impl Iterator<Item = (&'a Node, T)>,
    record: &Map,
    mut keep: impl FnMut(T, Dynamic),
) -> Result<bool, Box<EvalAltResult>> {
    let mut found = false;
    for (node, place) in nodes {
        if let Some(value) = node.fill(record)? {
            found |= node.reads();
            keep(place, value);
        }
    }
    Ok(found)
}

/// How many records of an array `fill` fills between two looks at the request's deadline.
const DEADLINE_EVERY: usize = 4096;

/// A compiled script's templates, by the name of the function that answered each: a template
/// function is called once for each compiled script.
#[derive(Debug, Default)]
pub(crate) struct Templates(RwLock<HashMap<ImmutableString, Arc<Node>>>);

impl Templates {
    /// The template `function` answers, called now if it was not called before.
    fn get(&self, context: &NativeCallContext<'_>, function: &FnPtr) -> Result<Arc<Node>, Box<EvalAltResult>> {
        let name = function.fn_name();
        if let Some(node) = self.0.read().ok().and_then(|templates| templates.get(name).cloned()) {
            return Ok(node);
        }
        let node = Arc::new(compile(context, function)?);
        if let Ok(mut templates) = self.0.write() {
            templates.insert(name.into(), node.clone());
        }
        Ok(node)
    }
}

/// Calls a template function and keeps what it answered as a template.
fn compile(context: &NativeCallContext<'_>, function: &FnPtr) -> Result<Node, Box<EvalAltResult>> {
    let name = function.fn_name();
    if function.is_curried() {
        return Err(runtime_error(format!("fill: the template {name} takes no arguments")));
    }
    let answer: Dynamic = function.call_within_context(context, ())?;
    if !answer.is_map() {
        return Err(runtime_error(format!("fill: the template {name} answered {}, not a map", answer.type_name())));
    }
    Node::compile(&answer, 0).map_err(|e| runtime_error(format!("fill: the template {name}: {e}")))
}

/// The template of `function` for the call running now (kept with its compiled script), or
/// made afresh outside a call.
fn template(context: &NativeCallContext<'_>, function: &FnPtr) -> Result<Arc<Node>, Box<EvalAltResult>> {
    match current() {
        Ok(call) => call.templates.get(context, function),
        Err(_) => compile(context, function).map(Arc::new),
    }
}

/// `record.fill(Fn("template"))`: the template filled in from the record.
pub(super) fn fill(
    context: NativeCallContext<'_>,
    record: &mut Map,
    function: FnPtr,
) -> Result<Map, Box<EvalAltResult>> {
    let node = template(&context, &function)?;
    filled(&node, record)
}

/// `records.fill(Fn("template"))`: each record filled in, in order.
pub(super) fn fill_each(
    context: NativeCallContext<'_>,
    records: &mut Array,
    function: FnPtr,
) -> Result<Array, Box<EvalAltResult>> {
    let node = template(&context, &function)?;
    // Filling counts no script operations: the request's deadline is looked at here instead.
    let deadline = current().ok().map(|call| call.deadline);
    records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            if index % DEADLINE_EVERY == DEADLINE_EVERY - 1 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(runtime_error("the request's deadline passed"));
            }
            match record.read_lock::<Map>() {
                Some(record) => filled(&node, &record).map(Dynamic::from_map),
                None => Err(runtime_error(format!("fill: item {index} is {}, not a map", record.type_name()))),
            }
        })
        .collect::<Result<Array, _>>()
}

/// A template (always a map) filled in from one record.
fn filled(node: &Node, record: &Map) -> Result<Map, Box<EvalAltResult>> {
    Ok(node.fill(record)?.and_then(|value| value.try_cast::<Map>()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn eval(text: &str) -> Result<serde_json::Value, String> {
        let engine = crate::script::ScriptEngine::new();
        let value: rhai::Dynamic = engine.engine.eval(text).map_err(|e| e.to_string())?;
        crate::script::ScriptEngine::to_json(&value)
    }

    const USER: &str = r#"
        fn user() {
            #{
                id: field("id").as_text(),
                userName: field("login"),
                active: field("enabled"),
                name: #{ givenName: field("first"), familyName: field("last") },
                emails: [#{ value: field("mail"), type: "work", primary: true }, #{ value: field("home"), type: "home" }],
                meta: #{ resourceType: "User", created: field("times.created") },
                schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
                nothing: (),
                manager: #{ value: field("boss.id").as_text(), display: field("boss.name") },
            }
        }
    "#;

    #[test]
    fn a_template_is_filled_with_what_the_record_holds_and_leaves_out_what_it_lacks() {
        let full = eval(&format!(
            r#"{USER} let r = #{{ id: 7, login: "ann", enabled: false, first: "Ann", last: (), mail: "a@x",
                 times: #{{ created: "2026-01-01" }}, boss: #{{ id: 1.5, name: "Bo" }}, other: 1 }}; r.fill(Fn("user"))"#
        ))
        .unwrap();
        assert_eq!(
            full,
            json!({
                "id": "7", "userName": "ann", "active": false, "name": {"givenName": "Ann"},
                "emails": [{"value": "a@x", "type": "work", "primary": true}],
                "meta": {"resourceType": "User", "created": "2026-01-01"},
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "manager": {"value": "1.5", "display": "Bo"},
            })
        );
        // What reads the record and finds nothing is left out, constants beside it or not
        // (`meta`); what reads nothing (a constant map or array) stays.
        let bare =
            eval(&format!(r#"{USER} let r = #{{ login: "bo", times: "not a map" }}; r.fill(Fn("user"))"#)).unwrap();
        assert_eq!(bare, json!({"userName": "bo", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}));
        // An array of records is filled record by record.
        let each = eval(&format!(r#"{USER} let rs = [#{{ id: 1 }}, #{{ id: 2, mail: "b@x" }}]; rs.fill(Fn("user"))"#))
            .unwrap();
        assert_eq!(each[0]["id"], "1");
        assert_eq!(each[1]["emails"], json!([{"value": "b@x", "type": "work", "primary": true}]));
        assert_eq!(each.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_template_that_cannot_be_filled_says_why() {
        let cases = [
            (r#"fn t() { [field("a")] } #{}.fill(Fn("t"))"#, "answered array, not a map"),
            (r#"fn t() { #{ a: field("a"), b: Fn("t") } } #{}.fill(Fn("t"))"#, "in a template"),
            (r#"fn t() { #{ a: field("a").as_text() } } #{ a: [1] }.fill(Fn("t"))"#, "holds array there"),
            (r#"fn t(x) { #{ a: field("a") } } #{}.fill(Fn("t").curry(1))"#, "takes no arguments"),
            (r#"fn t() { #{ a: field("a") } } [#{}, 3].fill(Fn("t"))"#, "item 1 is i64, not a map"),
            (r#"fn t() { #{ a: field("a..b") } } #{}.fill(Fn("t"))"#, "names joined by dots"),
            (r#"#{}.fill(Fn("missing"))"#, "missing"),
            (r#"fn t() { #{ a: field("urn:x:") } } #{}.fill(Fn("t"))"#, "after `urn:…:` for an extension"),
            (r#"fn t() { #{ a: field("urn:x:y.") } } #{}.fill(Fn("t"))"#, "names joined by dots"),
            (r#"fn t() { #{ a: field("a").or([1]) } } #{}.fill(Fn("t"))"#, "a text, number or boolean, not array"),
            (r#"fn t() { #{ a: field("a").or(#{}) } } #{}.fill(Fn("t"))"#, "not map"),
        ];
        for (text, expected) in cases {
            let error = eval(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    /// The demo with `extra` after it, compiled: a call of one of its functions with one value.
    fn demo_with(extra: &str) -> impl Fn(&str, &serde_json::Value) -> rhai::Dynamic {
        let engine = crate::script::ScriptEngine::new();
        let demo = include_str!("../../../scripts/demo.rhai");
        let ast = engine.engine.compile_with_scope(&super::super::compile_scope(), format!("{demo}\n{extra}")).unwrap();
        move |function, value| {
            let argument = (crate::script::ScriptEngine::to_dynamic(value),);
            engine.engine.call_fn(&mut rhai::Scope::new(), &ast, function, argument).unwrap()
        }
    }

    /// The demo's `scim_user` template maps an Acme record as the map literal it replaced did,
    /// read as the proxy reads a resource: for a full record, a bare one, and those between.
    #[test]
    fn the_demo_template_maps_acme_records_as_its_map_literal_did() {
        let literal = r#"
            fn literal(u) {
                #{
                    id: u.id.to_string(), userName: u.login, active: u.enabled, externalId: u.external_ref,
                    displayName: u.display_name, title: u.title,
                    name: #{ givenName: u.first_name, familyName: u.last_name },
                    emails: if u.mail != () { [#{ value: u.mail, type: "work", primary: true }] },
                    phoneNumbers: if u.phone != () { [#{ value: u.phone, type: "work" }] },
                    meta: #{ created: u.created_at, lastModified: u.updated_at },
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": #{
                        employeeNumber: u.employee_no, department: u.department,
                        manager: if u.manager_id != () { #{ value: u.manager_id.to_string() } },
                    },
                }
            }
        "#;
        let full = json!({"id": 7, "login": "ann", "first_name": "Ann", "last_name": "Lee", "display_name": "Ann Lee",
            "mail": "ann@acme.example", "enabled": true, "department": "R&D", "title": "Chief", "employee_no": "E7",
            "manager_id": 1, "phone": "+1 555 0007", "external_ref": "x-7", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-02T00:00:00Z", "password": null});
        let mut records = vec![full.clone(), json!({"id": 8, "login": "bo", "enabled": false})];
        for key in ["first_name", "mail", "phone", "manager_id", "department", "employee_no", "created_at", "title"] {
            let mut partial = full.clone();
            partial[key] = serde_json::Value::Null;
            records.push(partial);
        }
        let call = demo_with(literal);
        for record in records {
            let map = |function: &str| crate::script::ScriptEngine::resource_to_json(&call(function, &record)).unwrap();
            assert_eq!(map("to_scim"), map("literal"), "{record}");
        }
    }

    /// A template reads a SCIM resource as well: extension attributes under their URN (dots
    /// and all), the preferred item of a multi-valued attribute, integers from text, defaults.
    #[test]
    fn a_template_reads_a_scim_resource() {
        let template = r#"
            fn body() {
                #{
                    login: field("userName"),
                    given: field("name.givenName"),
                    mail: field("emails.value").preferred("work"),
                    mail_any: field("emails.value").preferred(),
                    no_pick: field("emails.value"),
                    department: field("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
                    manager: field("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").as_int(),
                    enabled: field("active").or(true),
                    kind: field("userType").or("employee"),
                }
            }
        "#;
        let fill = |user: &str| eval(&format!("{template} let u = {user}; u.fill(Fn(\"body\"))"));
        let full = fill(
            r#"#{ userName: "ann", name: #{ givenName: "Ann" }, active: false,
                  emails: [#{ value: "home@x", type: "home" }, #{ value: "work@x", type: "Work" }],
                  phoneNumbers: [#{ value: 5550100 }],
                  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": #{ department: "R&D", manager: #{ value: "42" } } }"#,
        );
        assert_eq!(
            full.unwrap(),
            json!({"login": "ann", "given": "Ann", "mail": "work@x", "mail_any": "home@x", "department": "R&D",
                   "manager": 42, "enabled": false, "kind": "employee"})
        );
        // An item is no text: the template's fault, said so.
        let phone = eval(
            r#"fn t() { #{ p: field("phoneNumbers").preferred().as_text() } }
                            #{ phoneNumbers: [#{ value: "1" }] }.fill(Fn("t"))"#,
        )
        .unwrap_err();
        assert!(phone.contains(r#"field("phoneNumbers").as_text(): the record holds map there"#), "{phone}");
        // The primary item wins over the type; an empty manager is none; defaults fill in.
        let bare = fill(
            r#"#{ userName: "bo", emails: [#{ value: "a@x", type: "work" }, #{ value: "b@x", primary: true }],
                  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": #{ manager: #{ value: "" } } }"#,
        );
        assert_eq!(
            bare.unwrap(),
            json!({"login": "bo", "mail": "b@x", "mail_any": "b@x", "enabled": true, "kind": "employee"})
        );
    }

    /// `.as_int()` of text that is no integer is the client's mistake: thrown as the script
    /// would throw a 400 `invalidValue`, naming the attribute as SCIM does.
    #[test]
    fn a_value_that_is_no_integer_is_an_invalid_value() {
        let engine = crate::script::ScriptEngine::new();
        let template = r#"fn t() { #{ m: field("urn:x:y:2.0:User:manager.value").as_int() } }"#;
        for (value, shown) in [
            (r#""12a""#, r#""12a""#),
            ("1.5", "f64"),
            ("true", "bool"),
            (r#""9999999999999999999""#, r#""9999999999999999999""#),
        ] {
            let text =
                format!(r#"{template} #{{ "urn:x:y:2.0:User": #{{ manager: #{{ value: {value} }} }} }}.fill(Fn("t"))"#);
            let error = *engine.engine.eval::<rhai::Dynamic>(&text).unwrap_err();
            let rhai::EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = error else {
                let rhai::EvalAltResult::ErrorRuntime(thrown, _) = error else { panic!("{value}: {error}") };
                let thrown = crate::script::ScriptEngine::to_json(&thrown).unwrap();
                assert_eq!(thrown["status"], 400);
                assert_eq!(thrown["scimType"], "invalidValue");
                assert_eq!(thrown["detail"], format!("urn:x:y:2.0:User:manager.value: {shown} is not an integer"));
                continue;
            };
            panic!("{value}: raised in a function call: {inner}");
        }
    }

    /// The demo's `acme_user` template writes Acme's body as the map literal it replaced did,
    /// compared as JSON with null members dropped (Acme takes a missing field as null), for
    /// a full user, a bare one and those between.
    #[test]
    fn the_demo_template_writes_acme_bodies_as_its_map_literal_did() {
        let literal = r#"
            fn literal(user) {
                let ent = user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
                let manager = ent?.manager?.value;
                let record = #{
                    login: user.userName, first_name: user.name?.givenName, last_name: user.name?.familyName,
                    display_name: user.displayName, mail: user.emails.preferred("work")?.value,
                    phone: user.phoneNumbers.preferred("work")?.value, title: user.title,
                    enabled: user.active ?? true, external_ref: user.externalId,
                    employee_no: ent?.employeeNumber, department: ent?.department,
                    manager_id: if manager != () && manager != "" { parse_int(manager) },
                };
                if user.password != () { record.password = user.password; }
                record
            }
            fn template(user) { user.fill(Fn("acme_user")) }
        "#;
        let full = json!({"userName": "ann", "name": {"givenName": "Ann", "familyName": "Lee"}, "displayName": "Ann Lee",
            "emails": [{"value": "h@x", "type": "home"}, {"value": "w@x", "type": "work"}],
            "phoneNumbers": [{"value": "+1 555 0007", "type": "mobile", "primary": true}], "title": "Chief",
            "active": false, "externalId": "x-7", "password": "S3cret!",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                {"employeeNumber": "E7", "department": "R&D", "manager": {"value": "12"}}});
        let mut users = vec![full.clone(), json!({"userName": "bo"})];
        for key in ["name", "emails", "phoneNumbers", "active", "password", "displayName"] {
            let mut partial = full.clone();
            partial.as_object_mut().unwrap().remove(key);
            users.push(partial);
        }
        for manager in [json!({"value": ""}), json!({}), json!({"value": "0"})] {
            let mut other = full.clone();
            other["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"] = manager;
            users.push(other);
        }
        let mut ungiven = full.clone();
        ungiven["name"] = json!({"familyName": "Lee"});
        users.push(ungiven);
        let call = demo_with(literal);
        for user in users {
            let map = |function: &str| {
                let mut json = crate::script::ScriptEngine::to_json(&call(function, &user)).unwrap();
                json.as_object_mut().unwrap().retain(|_, v| !v.is_null());
                json
            };
            assert_eq!(map("template"), map("literal"), "{user}");
        }
    }
}
