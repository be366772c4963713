//! Matching an expected JSON value against an actual one, and showing the difference as a line diff.

use std::time::Duration;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

/// True when `actual` matches `expected`.
///
/// An expected object matches when every key it names matches (other keys are ignored, and
/// `null` means "absent or null"); arrays match element by element and must have the same
/// length; numbers compare by value; other scalars must be equal.
pub(crate) fn matches(expected: &Value, actual: Option<&Value>) -> bool {
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => true,
        (_, None) => false,
        (Value::Object(want), Some(Value::Object(have))) => want.iter().all(|(k, v)| matches(v, have.get(k))),
        (Value::Array(want), Some(Value::Array(have))) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| matches(w, Some(h)))
        }
        (Value::Number(want), Some(Value::Number(have))) => match (want.as_f64(), have.as_f64()) {
            (Some(w), Some(h)) => w == h,
            _ => want == have,
        },
        (want, Some(have)) => want == have,
    }
}

/// The actual value cut down to what `expected` names, so that a diff shows only what matters
/// (or whole, when it has none of what is expected).
pub(crate) fn prune(expected: &Value, actual: &Value) -> Value {
    let pruned = cut(expected, actual);
    match (&pruned, actual) {
        (Value::Object(p), Value::Object(a)) if p.is_empty() && !a.is_empty() => actual.clone(),
        _ => pruned,
    }
}

fn cut(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            let mut out = serde_json::Map::new();
            for (key, w) in want {
                match have.get(key) {
                    Some(h) => {
                        out.insert(key.clone(), cut(w, h));
                    }
                    None if w.is_null() => {
                        out.insert(key.clone(), Value::Null);
                    }
                    None => {}
                }
            }
            Value::Object(out)
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            Value::Array(want.iter().zip(have).map(|(w, h)| cut(w, h)).collect())
        }
        (Value::Number(want), Value::Number(have)) if matches(expected, Some(actual)) && want != have => {
            expected.clone()
        }
        _ => actual.clone(),
    }
}

/// Pretty JSON, the form diffs are made of.
pub(crate) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A line diff of two texts: unchanged lines indented, `-` for expected only, `+` for actual only.
///
/// `similar`'s Myers diff over lines (a line ending is no difference). Past a second, which only
/// texts far larger than a SCIM resource take, the rest is shown as removed, then added lines.
pub(crate) fn diff(expected: &str, actual: &str) -> String {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    let lines = TextDiff::configure().timeout(Duration::from_secs(1)).diff_slices(&expected, &actual);
    let mut out = String::new();
    for change in lines.iter_all_changes() {
        out.push_str(match change.tag() {
            ChangeTag::Equal => "  ",
            ChangeTag::Delete => "- ",
            ChangeTag::Insert => "+ ",
        });
        out.push_str(change.value());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_match_on_the_keys_named() {
        let actual = json!({"id": "7", "userName": "b", "meta": {"version": "W/\"1\""}, "n": 7.0});
        assert!(matches(&json!({"id": "7"}), Some(&actual)));
        assert!(matches(&json!({"meta": {}, "n": 7}), Some(&actual)));
        assert!(matches(&json!({"title": null}), Some(&actual)));
        assert!(!matches(&json!({"id": 7}), Some(&actual)), "a string is not a number");
        assert!(!matches(&json!({"id": "8"}), Some(&actual)));
        assert!(!matches(&json!({"title": "x"}), Some(&actual)));
        assert!(!matches(&json!({"userName": null}), Some(&actual)));
    }

    #[test]
    fn arrays_match_in_order_and_length() {
        let actual = json!([{"value": "1", "display": "a"}, {"value": "2"}]);
        assert!(matches(&json!([{"value": "1"}, {"value": "2"}]), Some(&actual)));
        assert!(!matches(&json!([{"value": "2"}, {"value": "1"}]), Some(&actual)));
        assert!(!matches(&json!([{"value": "1"}]), Some(&actual)));
    }

    #[test]
    fn prunes_to_the_expected_shape() {
        let expected = json!({"id": "7", "name": {"givenName": "B"}, "title": null});
        let actual = json!({"id": "7", "userName": "b", "name": {"givenName": "C", "familyName": "J"}});
        assert_eq!(prune(&expected, &actual), json!({"id": "7", "name": {"givenName": "C"}, "title": null}));
    }

    #[test]
    fn diffs_lines() {
        let expected = pretty(&json!({"a": 1, "b": 2, "c": 3}));
        let actual = pretty(&json!({"a": 1, "b": 5, "c": 3}));
        let d = diff(&expected, &actual);
        assert!(d.contains("-   \"b\": 2,\n"), "{d}");
        assert!(d.contains("+   \"b\": 5,\n"), "{d}");
        assert!(d.contains("    \"a\": 1,\n"), "{d}");
        assert_eq!(d.lines().filter(|l| l.starts_with(['+', '-'])).count(), 2, "{d}");
    }

    #[test]
    fn diffs_show_lines_missing_and_added_in_place() {
        let expected = "GET /users/7\nGET /users/7/roles\nGET /teams?member=7";
        let actual = "GET /users/7\nGET /teams?member=7\nGET /teams/3";
        assert_eq!(
            diff(expected, actual),
            "  GET /users/7\n- GET /users/7/roles\n  GET /teams?member=7\n+ GET /teams/3\n"
        );
        assert_eq!(diff("a\nb\n", "a\nb"), "  a\n  b\n", "a final line ending is no difference");
    }
}
