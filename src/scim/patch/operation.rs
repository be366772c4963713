//! The PATCH operation in normal form: its kind, its path and its value, as the engine and mapping scripts see them.

use std::fmt;

use serde_json::{Value, json};

use crate::scim::filter::Filter;
use crate::scim::path::AttrPath;

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PatchKind {
    Add,
    Remove,
    Replace,
}

impl PatchKind {
    /// The operation's name in lowercase, as printed and handed to mapping scripts.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Replace => "replace",
        }
    }

    /// The operation an `op` names, in any case (`add`, `Add`); `None` for any other word.
    pub(crate) fn from_keyword(word: &str) -> Option<Self> {
        [Self::Add, Self::Remove, Self::Replace].into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for PatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The target of an operation: `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub`, any
/// of them URN-qualified, or a bare extension URN.
///
/// As [`parse_patch_path`](super::parse_patch_path) returns it, names are in the schema's spelling, `attr.urn` is the
/// extension URN for extension attributes and `None` for core ones, and a bare extension URN
/// is `attr.name` (the JSON key its object sits under) with no URN, filter or sub.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute, with its sub-attribute when there is no filter (`name.givenName`).
    pub attr: AttrPath,
    /// The value selection filter of `attr[filter]`; its paths are sub-attribute names.
    pub filter: Option<Filter>,
    /// The sub-attribute after a filter: `value` in `emails[type eq "work"].value`.
    pub sub: Option<String>,
}

/// Prints the path so that [`parse_patch_path`](super::parse_patch_path) reads it back to the same path:
/// `emails[type eq "work"].value`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub(crate) kind: PatchKind,
    /// The target; `None` means the resource itself (add and replace only).
    pub(crate) path: Option<PatchPath>,
    /// The value as sent (an explicit JSON `null` is `Some(Value::Null)`); normalised to the
    /// attribute's type and shape in operations [`parse_patch`](super::parse_patch) returns.
    pub(crate) value: Option<Value>,
}

impl PatchOp {
    /// The operation as mapping scripts see it:
    /// `{"op":"add","path":"emails[type eq \"work\"].value","value":"bjensen@example.com"}`.
    ///
    /// `op` is lowercase, `path` is the canonical text of [`PatchPath`]'s `Display` (or null),
    /// and `value` is null for a removal unless it names the values to remove.
    pub fn to_json(&self) -> Value {
        json!({
            "op": self.kind.as_str(),
            "path": self.path.as_ref().map(ToString::to_string),
            "value": self.value.clone().unwrap_or(Value::Null),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_kinds_read_in_any_case() {
        for (word, kind) in [("add", PatchKind::Add), ("Remove", PatchKind::Remove), ("REPLACE", PatchKind::Replace)] {
            assert_eq!(PatchKind::from_keyword(word), Some(kind));
            assert_eq!(kind.to_string(), word.to_lowercase());
        }
        assert_eq!(PatchKind::from_keyword("copy"), None);
    }
}
