//! Secrets of the configuration: a value never printed, and the check that a client's secret is not weak.

use serde::Deserialize;

/// Fewest characters of a secret a client presents (bearer token, Basic password, admin token).
pub(crate) const MIN_SECRET_CHARS: usize = 16;

/// What is wrong with a secret a client must present, wherever it comes from (inline, an
/// environment variable, a file): shorter than [`MIN_SECRET_CHARS`], or a placeholder left
/// from an example (`REPLACE_ME`, `changeme`), which anyone who read the example knows.
pub(crate) fn weak_secret(value: &str) -> Option<String> {
    let folded: String = value.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    if ["replaceme", "changeme"].iter().any(|placeholder| folded.contains(placeholder)) {
        return Some("is a placeholder from an example: set a long random secret".to_owned());
    }
    (value.chars().count() < MIN_SECRET_CHARS)
        .then(|| format!("is shorter than {MIN_SECRET_CHARS} characters: use a long random secret"))
}

/// A secret value, already expanded from `${env.NAME}` or `${file.PATH}`; never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a value that must not be printed.
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the places that must send or compare it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_short_ones_and_placeholders() {
        for weak in [
            "a",
            "0123456789abcde",
            "REPLACE_ME",
            "REPLACE_ME_WITH_A_LONG_TOKEN",
            "replace-me-0123456789",
            "changeme-0123456789",
        ] {
            assert!(weak_secret(weak).is_some(), "{weak}");
        }
        assert!(weak_secret("REPLACE_ME").is_some_and(|p| p.contains("placeholder")));
        assert!(weak_secret("short").is_some_and(|p| p.contains("shorter than 16 characters")));
        for strong in ["0123456789abcdef", "a-long-random-token-9f8e7d6c"] {
            assert_eq!(weak_secret(strong), None, "{strong}");
        }
    }
}
