//! Matching an expected JSON value against an actual one, and showing the difference as a line diff.

use serde_json::Value;

/// True when `actual` matches `expected`.
///
/// An expected object matches when every key it names matches (other keys are ignored, and
/// `null` means "absent or null"); arrays match element by element and must have the same
/// length; numbers compare by value; other scalars must be equal.
pub fn matches(expected: &Value, actual: Option<&Value>) -> bool {
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
pub fn prune(expected: &Value, actual: &Value) -> Value {
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
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A line diff of two texts: unchanged lines indented, `-` for expected only, `+` for actual only.
///
/// Longest common subsequence over lines; texts too large for that are shown whole, one after the other.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        for line in &a {
            out.push_str(&format!("- {line}\n"));
        }
        for line in &b {
            out.push_str(&format!("+ {line}\n"));
        }
        return out;
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
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
}
