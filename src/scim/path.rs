//! Attribute paths (`name.givenName`, `urn:…:enterprise:2.0:User:manager.value`), RFC 7644 §3.10.

use std::fmt;

use super::error::{ScimError, quoted};

/// A parsed attribute path: an optional schema URN, an attribute and an optional sub-attribute.
///
/// Names keep the case they were written in; comparisons against the schema are
/// case-insensitive (RFC 7643 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN prefix, when the path was written fully qualified.
    pub(crate) urn: Option<String>,
    /// The top-level attribute name.
    pub(crate) name: String,
    /// The sub-attribute name of a complex attribute.
    pub(crate) sub: Option<String>,
}

impl AttrPath {
    /// A path to a top-level attribute of the core schema.
    pub(crate) fn simple(name: impl Into<String>) -> Self {
        Self { urn: None, name: name.into(), sub: None }
    }

    /// Parses `[URN ":"] ATTRNAME ["." subAttr]`.
    ///
    /// A URN is recognised by its `urn:` prefix; the attribute starts after its last `:`.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScimError::invalid_path(text, "empty attribute path"));
        }
        let (urn, rest) = split_urn(text);
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        if !is_attr_name(name) {
            return Err(ScimError::invalid_path(text, format!("{} is not an attribute name", quoted(name))));
        }
        if let Some(sub) = sub {
            if !is_attr_name(sub) {
                return Err(ScimError::invalid_path(text, format!("{} is not a sub-attribute name", quoted(sub))));
            }
        }
        Ok(Self { urn: urn.map(str::to_owned), name: name.to_owned(), sub: sub.map(str::to_owned) })
    }
}

/// Splits a leading schema URN (`urn:…:Name:`) from the attribute part of a path.
pub(crate) fn split_urn(text: &str) -> (Option<&str>, &str) {
    if text.len() > 4 && text.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
        match text.rfind(':') {
            Some(i) if i > 3 => (Some(&text[..i]), &text[i + 1..]),
            _ => (None, text),
        }
    } else {
        (None, text)
    }
}

/// `ATTRNAME = ALPHA *(nameChar)`, `nameChar = "-" / "_" / DIGIT / ALPHA`, plus `$ref`.
pub(crate) fn is_attr_name(name: &str) -> bool {
    if name == "$ref" {
        return true;
    }
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_path_forms() {
        let cases = [
            ("userName", None, "userName", None),
            ("name.givenName", None, "name", Some("givenName")),
            ("members.$ref", None, "members", Some("$ref")),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
                "department",
                None,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
                "manager",
                Some("value"),
            ),
        ];
        for (text, urn, name, sub) in cases {
            let path = AttrPath::parse(text).unwrap();
            assert_eq!(path.urn.as_deref(), urn, "{text}");
            assert_eq!(path.name, name, "{text}");
            assert_eq!(path.sub.as_deref(), sub, "{text}");
            assert_eq!(path.to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_paths() {
        for text in ["", "1abc", "name.", "name.given.name", "na me", "urn:x:", "prÉ\\", "urnÉ:a"] {
            assert!(matches!(AttrPath::parse(text), Err(ScimError::InvalidPath { .. })), "{text}");
        }
    }
}
