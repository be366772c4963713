//! JSON in and out of script values: legacy answers parsed into them, resources converted
//! both ways, on every script call.

use std::fmt;

use rhai::{Array, Dynamic};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{host, limits, too_deep};

/// The key type of a script map, which Rhai does not name outside its internals.
type Identifier = <rhai::Map as Keyed>::Key;

/// Names the key type of a map.
trait Keyed {
    type Key;
}

impl<K, V> Keyed for std::collections::BTreeMap<K, V> {
    type Key = K;
}

/// A JSON number as a script value: an integer that fits is `INT`, any other number `FLOAT`.
fn number(n: &serde_json::Number) -> Dynamic {
    match n.as_i64() {
        Some(i) => Dynamic::from_int(i),
        None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// [`ScriptEngine::to_dynamic`](super::ScriptEngine::to_dynamic): iterative, so no nesting can
/// exhaust the stack of the thread converting.
pub(super) fn to_dynamic(value: &Value) -> Dynamic {
    /// A container being filled: its remaining children, and what is converted so far.
    enum Open<'v> {
        Array(std::slice::Iter<'v, Value>, Array),
        // Members gathered in order and built into a map at once when the object ends.
        Object(serde_json::map::Iter<'v>, Vec<(Identifier, Dynamic)>, Option<&'v str>),
    }
    let leaf = |value: &Value| match value {
        Value::Null => Some(Dynamic::UNIT),
        Value::Bool(b) => Some(Dynamic::from_bool(*b)),
        Value::Number(n) => Some(number(n)),
        Value::String(s) => Some(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => None,
    };
    fn open(value: &Value) -> Open<'_> {
        match value {
            Value::Array(items) => Open::Array(items.iter(), Array::with_capacity(items.len())),
            Value::Object(map) => Open::Object(map.iter(), Vec::with_capacity(map.len()), None),
            _ => Open::Array([].iter(), Array::new()),
        }
    }
    if let Some(done) = leaf(value) {
        return done;
    }
    let mut stack = vec![open(value)];
    loop {
        let Some(top) = stack.last_mut() else { return Dynamic::UNIT };
        let next = match top {
            Open::Array(items, _) => items.next(),
            Open::Object(entries, _, key) => entries.next().map(|(k, v)| {
                *key = Some(k.as_str());
                v
            }),
        };
        let finished = match next {
            Some(child) => match leaf(child) {
                Some(done) => done,
                None => {
                    stack.push(open(child));
                    continue;
                }
            },
            None => match stack.pop() {
                Some(Open::Array(_, items)) => Dynamic::from_array(items),
                Some(Open::Object(_, members, _)) => Dynamic::from_map(members.into_iter().collect()),
                None => return Dynamic::UNIT,
            },
        };
        match stack.last_mut() {
            None => return finished,
            Some(Open::Array(_, items)) => items.push(finished),
            Some(Open::Object(_, members, key)) => members.push((key.take().unwrap_or_default().into(), finished)),
        }
    }
}

/// [`ScriptEngine::parse_json`](super::ScriptEngine::parse_json). `serde_json` refuses text
/// nested deeper than 127 levels before the visitor below recurses further.
pub(super) fn from_str(text: &str) -> Result<Dynamic, serde_json::Error> {
    // From text already known to be UTF-8: the parser then does not check each string again.
    let mut parser = serde_json::Deserializer::from_str(text);
    let value = Script.deserialize(&mut parser)?;
    parser.end()?;
    Ok(value)
}

/// Reads one JSON value as a script value.
#[derive(Clone, Copy)]
struct Script;

impl<'de> DeserializeSeed<'de> for Script {
    type Value = Dynamic;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Dynamic, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Script {
    type Value = Dynamic;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Dynamic, E> {
        Ok(Dynamic::from_bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Dynamic, E> {
        Ok(Dynamic::from_int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Dynamic, E> {
        Ok(number(&u.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Dynamic, E> {
        Ok(Dynamic::from_float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Dynamic, E> {
        Ok(s.into())
    }

    fn visit_unit<E>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::UNIT)
    }

    fn visit_none<E>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::UNIT)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Dynamic, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
        let mut items = Array::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Dynamic::from_array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dynamic, A::Error> {
        let mut entries = rhai::Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            // Of a key given twice, the last value is kept, as `serde_json` keeps it.
            entries.insert(key, map.next_value_seed(self)?);
        }
        Ok(Dynamic::from_map(entries))
    }
}

/// Reads an object's key straight into a map key (short keys are kept inline, not allocated).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Identifier;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Identifier, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Identifier;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, s: &str) -> Result<Identifier, E> {
        Ok(s.into())
    }
}

/// [`ScriptEngine::to_json`]: every value kept, `()` as `null`.
pub(super) fn to_json_within(value: &Dynamic, depth: usize) -> Result<Value, String> {
    Ok(convert(value, depth, false)?.unwrap_or(Value::Null))
}

/// [`ScriptEngine::resource_to_json`]: what a resource lacks left out at every depth, as
/// `compact` leaves it out — `()` map entries and array items, and the maps that leaves empty
/// (a map at the top stays, even empty).
pub(super) fn resource_to_json_within(value: &Dynamic, depth: usize) -> Result<Value, String> {
    if value.is_shared() {
        return resource_to_json_within(&value.flatten_clone(), depth);
    }
    match convert(value, depth, true)? {
        Some(json) => Ok(json),
        None if value.is_map() => Ok(Value::Object(serde_json::Map::new())),
        None => Ok(Value::Null),
    }
}

/// A member of a resource as [`resource_to_json_within`] converts it; `None` when it is absent.
pub(super) fn resource_member_within(value: &Dynamic, depth: usize) -> Result<Option<Value>, String> {
    convert(value, depth, true)
}

/// One value as JSON, nested `depth` levels down; with `leave_out`, `None` for what is absent
/// (`()`, and a map with nothing left in it), and each map and array without its absent parts.
fn convert(value: &Dynamic, depth: usize, leave_out: bool) -> Result<Option<Value>, String> {
    if value.is_unit() {
        return Ok((!leave_out).then_some(Value::Null));
    }
    if value.is_shared() {
        return convert(&value.flatten_clone(), depth, leave_out);
    }
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        return Ok(Some(Value::String(s.as_str().to_owned())));
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Some(Value::Bool(b)));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Some(Value::from(i)));
    }
    if let Ok(f) = value.as_float() {
        return Ok(Some(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)));
    }
    if depth >= limits::MAX_VALUE_DEPTH {
        return Err(too_deep());
    }
    let items = |items: &[Dynamic]| -> Result<Option<Value>, String> {
        let mut array = Vec::with_capacity(items.len());
        for item in items {
            array.extend(convert(item, depth + 1, leave_out)?);
        }
        Ok(Some(Value::Array(array)))
    };
    if let Some(list) = value.read_lock::<Array>() {
        return items(&list);
    }
    if let Some(map) = value.read_lock::<rhai::Map>() {
        // The members come in key order, which is the object's: collected, they are laid out
        // at once instead of each searched for a place.
        let mut members = Vec::with_capacity(map.len());
        for (k, v) in map.iter() {
            if let Some(json) = convert(v, depth + 1, leave_out)? {
                members.push((k.as_str().to_owned(), json));
            }
        }
        let object: serde_json::Map<String, Value> = members.into_iter().collect();
        return Ok((!leave_out || !object.is_empty()).then_some(Value::Object(object)));
    }
    if let Some(results) = value.read_lock::<host::Results>() {
        return results.with_items(|list| items(list))?;
    }
    rhai::serde::from_dynamic(value).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{from_str, to_dynamic, to_json_within};

    /// Parsing text gives the value converting its parsed JSON gives, numbers and repeated
    /// keys included.
    #[test]
    fn text_parses_to_the_value_its_json_converts_to() {
        let cases: &[&str] = &[
            r#"{"id": 7, "login": "bjensen", "enabled": true, "phone": null, "score": 1.5}"#,
            r#"{"big": 18446744073709551615, "neg": -9223372036854775808, "exp": 1e3, "one": 1.0}"#,
            r#"{"a": 1, "a": 2, "b": [{"x": "y", "x": "z"}], "c": {}, "d": []}"#,
            r#"[1, "two", [3, [4, [5]]], {"k\u00e9y": "v\n\"q\""}]"#,
            r#""just a string""#,
            "42",
            "null",
        ];
        for text in cases {
            let parsed = from_str(text).unwrap();
            let via_value = to_dynamic(&serde_json::from_str(text).unwrap());
            assert_eq!(format!("{parsed:?}"), format!("{via_value:?}"), "{text}");
            assert_eq!(to_json_within(&parsed, 0).unwrap(), to_json_within(&via_value, 0).unwrap(), "{text}");
        }
        assert_eq!(from_str("18446744073709551615").unwrap().as_float(), Ok(18_446_744_073_709_551_615.0));
        assert_eq!(from_str(r#"{"a": 1, "a": 2}"#).unwrap().cast::<rhai::Map>()["a"].as_int(), Ok(2));
        // A larger object, keys given again near its start and at its end: the last value is
        // kept, by the parse and by the conversion of a `serde_json` value alike.
        let mut members: Vec<String> = (0..104).map(|i| format!(r#""k{i}": {i}"#)).collect();
        members.insert(32, r#""k3": "again, near the start""#.to_owned());
        members.push(r#""k5": "again, at the end""#.to_owned());
        members.push(r#""k74": "again, at the end""#.to_owned());
        let text = format!("{{{}}}", members.join(", "));
        let parsed = from_str(&text).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", to_dynamic(&serde_json::from_str(&text).unwrap())));
        let map = parsed.cast::<rhai::Map>();
        assert_eq!(map.len(), 104);
        assert_eq!(map["k3"].clone().into_string().unwrap(), "again, near the start");
        assert_eq!(map["k5"].clone().into_string().unwrap(), "again, at the end");
        assert_eq!(map["k74"].clone().into_string().unwrap(), "again, at the end");
        assert_eq!(map["k100"].as_int(), Ok(100));
    }

    /// What `serde_json` refuses is refused: trailing text, bad syntax, nesting past its limit.
    #[test]
    fn what_is_not_json_is_refused() {
        for text in ["{\"a\": 1} x", "{\"a\": }", "[1, 2", "", "\u{feff}{}"] {
            assert!(from_str(text).is_err(), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(from_str(&deep).is_err());
        let fits = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(from_str(&fits).is_ok());
        assert_eq!(
            to_json_within(&from_str(r#"{"a": [null, {"b": false}]}"#).unwrap(), 0).unwrap(),
            json!({"a": [null, {"b": false}]})
        );
    }
}
