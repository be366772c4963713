//! The errors of the SCIM core: every way a SCIM request can be wrong, before any I/O.

/// A client mistake found by the SCIM core. The HTTP status and `scimType` of each
/// variant are chosen in one place, `crate::error`, not here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScimError {
    /// A filter expression that does not parse, or that names something unusable.
    #[error("invalid filter at position {position}: {detail}")]
    InvalidFilter {
        /// Where in the filter text the problem is, counted in characters from 0.
        position: usize,
        /// What is wrong there.
        detail: String,
    },
    /// An attribute path (in a PATCH, `sortBy`, `attributes`) that does not parse or resolve.
    #[error("invalid path {}: {detail}", quoted(.path))]
    InvalidPath {
        /// The path as written.
        path: String,
        /// Why it does not parse or resolve.
        detail: String,
    },
    /// A request body that is not the JSON or the SCIM message it should be.
    #[error("invalid syntax: {detail}")]
    InvalidSyntax {
        /// What is wrong with the body.
        detail: String,
    },
    /// A value of the wrong type, a missing required attribute, a value outside canonical values.
    #[error("invalid value for {}: {detail}", echoed(.attribute))]
    InvalidValue {
        /// The attribute whose value is wrong.
        attribute: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An attempt to change a readOnly attribute or an immutable one once set.
    #[error("attribute {} cannot be changed: {detail}", echoed(.attribute))]
    Mutability {
        /// The attribute the request tried to change.
        attribute: String,
        /// Why it cannot be changed.
        detail: String,
    },
    /// A PATCH path whose filter matched nothing where a match is required.
    #[error("no target for path {}", quoted(.path))]
    NoTarget {
        /// The PATCH path as written.
        path: String,
    },
    /// More results than the service provider will process.
    #[error("too many results: {detail}")]
    TooMany {
        /// The limit the request would pass, and how to narrow it.
        detail: String,
    },
    /// The request would create a duplicate of a unique attribute.
    #[error("uniqueness violated: {detail}")]
    Uniqueness {
        /// Which value is already taken.
        detail: String,
    },
    /// A query parameter with an unusable value (`count=abc`, `sortOrder=sideways`).
    #[error("invalid parameter {}: {detail}", echoed(.name))]
    InvalidParameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with its value.
        detail: String,
    },
    /// A SCIM feature this proxy does not implement (answered 501, never faked).
    #[error("not implemented: {feature}")]
    NotImplemented {
        /// The feature asked for, as the message names it.
        feature: String,
    },
}

impl ScimError {
    /// Shorthand for an `invalidValue` error about one attribute.
    pub(crate) fn invalid_value(attribute: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidValue { attribute: attribute.into(), detail: detail.into() }
    }

    /// Shorthand for an `invalidPath` error.
    pub(crate) fn invalid_path(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidPath { path: path.into(), detail: detail.into() }
    }

    /// Shorthand for an `invalidSyntax` error.
    pub(crate) fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::InvalidSyntax { detail: detail.into() }
    }
}

/// How many characters of a value from a request are echoed in a log field or an error detail.
pub(crate) const ECHO_CHARS: usize = 128;

/// A value from a request as it may be echoed in a log line or an error detail: quotes,
/// backslashes and control characters escaped, and cut after [`ECHO_CHARS`] characters with its
/// full length said, so that a client cannot write megabytes into the log or the answer, nor
/// start a line of its own in a text log.
pub(crate) fn echoed(text: &str) -> String {
    cut(text, ECHO_CHARS, |c| c.escape_debug().collect())
}

/// The most characters of a longer text an error detail carries (what a script throws, which
/// may quote a request).
pub(crate) const DETAIL_CHARS: usize = 1024;

/// A script's text as an error detail or a log field carries it: control characters escaped
/// (no line of its own in a text log), cut after [`DETAIL_CHARS`] with its full length said.
pub(crate) fn bounded_detail(text: &str) -> String {
    cut(text, DETAIL_CHARS, |c| if c.is_control() { c.escape_debug().collect() } else { c.to_string() })
}

/// `text`'s first `max` characters, each written by `write`, then its length when longer.
fn cut(text: &str, max: usize, write: impl Fn(char) -> String) -> String {
    let mut out: String = text.chars().take(max).map(write).collect();
    if text.chars().nth(max).is_some() {
        out.push_str(&format!("… ({} bytes)", text.len()));
    }
    out
}

/// [`echoed`] in double quotes: a name or a path from a request, as a detail quotes it.
pub(crate) fn quoted(text: &str) -> String {
    format!("\"{}\"", echoed(text))
}
