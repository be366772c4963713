//! Templates: a mapping written as data, which the proxy fills in from each record.
//!
//! A template is a script function without parameters whose answer is a map of what the
//! mapped value holds: constants, nested maps and arrays, and `field("name")` for what the
//! record holds at that name (`field("a.b")` inside a nested map, `.as_text()` of it as
//! text). `record.fill(Fn("template"))` calls the function once for each compiled script,
//! keeps what it answered, and fills that in natively for every record after: a renaming of
//! a dozen fields costs a third of what the same map literal costs Rhai to evaluate.
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
    /// The name, split at its dots: each but the last names a map within the one before.
    path: Vec<ImmutableString>,
    /// The value as text (numbers and booleans written out, text as it is).
    text: bool,
}

impl Field {
    /// `field(name)`.
    pub(super) fn named(name: &str) -> Result<Self, Box<EvalAltResult>> {
        let path: Vec<ImmutableString> = name.split('.').map(ImmutableString::from).collect();
        if path.iter().any(|segment| segment.is_empty()) {
            return Err(runtime_error(format!("field(\"{name}\"): a name, or names joined by dots")));
        }
        Ok(Self { path, text: false })
    }

    /// `.as_text()`.
    pub(super) fn as_text(&mut self) -> Self {
        Self { path: self.path.clone(), text: true }
    }

    fn name(&self) -> String {
        self.path.iter().map(ImmutableString::as_str).collect::<Vec<_>>().join(".")
    }

    /// What `record` holds at the field's name; `None` when it holds nothing there (or `()`).
    fn read(&self, record: &Map) -> Result<Option<Dynamic>, String> {
        let Some(value) = lookup(record, &self.path) else { return Ok(None) };
        if value.is_unit() || !self.text || value.is_string() {
            return Ok((!value.is_unit()).then_some(value));
        }
        if value.is_int() || value.is_float() || value.is_bool() || value.is_char() {
            return Ok(Some(Dynamic::from(value.to_string())));
        }
        Err(format!(
            "field(\"{}\").as_text(): the record holds {} there, not a value to write as text",
            self.name(),
            value.type_name()
        ))
    }
}

/// The value at `path` within `map`, nested maps walked in place.
fn lookup(map: &Map, path: &[ImmutableString]) -> Option<Dynamic> {
    let (first, rest) = path.split_first()?;
    let value = map.get(first.as_str())?;
    if rest.is_empty() {
        return Some(value.clone());
    }
    let inner = value.read_lock::<Map>()?;
    lookup(&inner, rest)
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
        if value.is_string() || value.is_int() || value.is_float() || value.is_bool() || value.is_char() {
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
    fn fill(&self, record: &Map) -> Result<Option<Dynamic>, String> {
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
) -> Result<bool, String> {
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
    filled(&node, record).map_err(runtime_error)
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
                return Err("the request's deadline passed".to_owned());
            }
            match record.read_lock::<Map>() {
                Some(record) => filled(&node, &record).map(Dynamic::from_map),
                None => Err(format!("fill: item {index} is {}, not a map", record.type_name())),
            }
        })
        .collect::<Result<Array, _>>()
        .map_err(runtime_error)
}

/// A template (always a map) filled in from one record.
fn filled(node: &Node, record: &Map) -> Result<Map, String> {
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
        ];
        for (text, expected) in cases {
            let error = eval(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
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
        let engine = crate::script::ScriptEngine::new();
        let demo = include_str!("../../../scripts/demo.rhai");
        let ast =
            engine.engine.compile_with_scope(&super::super::compile_scope(), format!("{demo}\n{literal}")).unwrap();
        for record in records {
            let map = |function: &str| {
                let value: rhai::Dynamic = engine
                    .engine
                    .call_fn(
                        &mut rhai::Scope::new(),
                        &ast,
                        function,
                        (crate::script::ScriptEngine::to_dynamic(&record),),
                    )
                    .unwrap();
                crate::script::ScriptEngine::resource_to_json(&value).unwrap()
            };
            assert_eq!(map("to_scim"), map("literal"), "{record}");
        }
    }
}
