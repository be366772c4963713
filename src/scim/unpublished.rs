//! Attributes a request names that its resource type does not publish: ignored and noted, or refused.
//!
//! Identity providers send what their default mappings say, not what `/Schemas` publishes
//! (Okta's `locale` and `password`, Entra ID's `name.formatted` and `roles: []`). An app
//! chooses per resource type's schema what happens to such attributes:
//! - `ignore` (the default): the attribute is dropped before the script sees the request
//!   and its path is noted, so the operation can name it in its audit record, a metric and
//!   a warning; a PATCH operation whose path names it changes nothing.
//! - `refuse`: the request fails with `400 invalidValue` (`invalidPath` for a PATCH path),
//!   for integrators who want the identity provider told.
//!
//! Only names are ever ignored: a malformed value of a published attribute is refused under
//! either policy, and readOnly attributes are ignored under both (RFC 7644 §3.3, §3.5.1).

use serde::Deserialize;

use super::error::{ScimError, echoed};

/// What happens to an attribute a request names that the app does not publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedAttributes {
    /// Drop it, note its path, and go on.
    #[default]
    Ignore,
    /// Fail the request with a `400` naming it.
    Refuse,
}

/// How many distinct ignored paths one request notes by name; past it they are only counted,
/// so a body of thousands of made-up attributes costs linear time and a bounded audit line.
pub(crate) const MAX_NOTED: usize = 32;

/// The unpublished attributes one request named, under the app's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpublished {
    policy: UnsupportedAttributes,
    /// Distinct paths, as [`echoed`]: at most [`MAX_NOTED`].
    ignored: Vec<String>,
    /// Paths ignored after `ignored` was full and not among them.
    more: usize,
}

impl Unpublished {
    /// Nothing noted yet.
    pub fn new(policy: UnsupportedAttributes) -> Self {
        Self { policy, ignored: Vec::new(), more: 0 }
    }

    /// Runs where a request names an attribute that is not published, at `path` (as the
    /// client wrote it, URN-qualified for extensions): under `ignore` notes the path and
    /// answers `Ok` (the caller skips the attribute); under `refuse` answers `refusal`.
    pub(crate) fn skip(&mut self, path: impl Into<String>, refusal: ScimError) -> Result<(), ScimError> {
        match self.policy {
            UnsupportedAttributes::Refuse => Err(refusal),
            UnsupportedAttributes::Ignore => {
                let path = echoed(&without_selectors(&path.into()));
                if self.ignored.iter().any(|p| p.eq_ignore_ascii_case(&path)) {
                    // already noted
                } else if self.ignored.len() < MAX_NOTED {
                    self.ignored.push(path);
                } else {
                    self.more += 1;
                }
                Ok(())
            }
        }
    }

    /// The paths ignored so far, each once, in the order they were met (the first
    /// [`MAX_NOTED`]; values from the request, escaped and bounded as [`echoed`] does).
    #[cfg(test)]
    pub(crate) fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// How many more paths were ignored than [`Self::ignored`] names.
    #[cfg(test)]
    pub(crate) fn more(&self) -> usize {
        self.more
    }

    /// The paths ignored, and how many more were not named.
    pub(crate) fn into_ignored(self) -> (Vec<String>, usize) {
        (self.ignored, self.more)
    }
}

/// A path without its value selectors (`emails[0].display`, `emails[type eq "work"].display`
/// → `emails.display`): the attribute, whichever of its values was meant.
fn without_selectors(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in path.chars() {
        match c {
            _ if in_string => match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            },
            '"' if depth > 0 => in_string = true,
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_notes_each_path_once_and_refuse_answers_the_refusal() {
        let refusal = || ScimError::invalid_value("locale", "no such attribute in User");
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        assert!(ignore.skip("locale", refusal()).is_ok());
        assert!(ignore.skip("LOCALE", refusal()).is_ok());
        assert!(ignore.skip("name.formatted", refusal()).is_ok());
        assert!(ignore.skip("emails[0].display", refusal()).is_ok());
        assert!(ignore.skip(r#"emails[type eq "a]\"b"].display"#, refusal()).is_ok());
        assert_eq!(ignore.ignored(), ["locale", "name.formatted", "emails.display"]);
        let mut refuse = Unpublished::new(UnsupportedAttributes::Refuse);
        assert_eq!(refuse.skip("locale", refusal()), Err(refusal()));
        assert!(refuse.into_ignored().0.is_empty());
    }

    #[test]
    fn many_paths_are_noted_up_to_a_bound_escaped_and_the_rest_counted() {
        let mut ignore = Unpublished::new(UnsupportedAttributes::Ignore);
        let long = "x".repeat(10_000);
        assert!(ignore.skip(format!("a\n{long}"), ScimError::invalid_syntax("-")).is_ok());
        for i in 0..50_000 {
            assert!(ignore.skip(format!("made{i}"), ScimError::invalid_syntax("-")).is_ok());
        }
        assert!(ignore.skip("made1", ScimError::invalid_syntax("-")).is_ok());
        assert_eq!(ignore.ignored().len(), MAX_NOTED);
        assert!(
            ignore.ignored()[0].starts_with("a\\nxxx")
                && ignore.ignored()[0].len() < super::super::error::ECHO_CHARS + 30,
            "{:?}",
            ignore.ignored()[0]
        );
        assert_eq!(ignore.more(), 50_000 - (MAX_NOTED - 1));
    }
}
