//! Where a legacy call may go: paths under the app's base URL only, segments encoded, nothing
//! that navigates or smuggles.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::{LegacyClient, LegacyError, LegacyPath};

/// Characters encoded in one path segment: everything but unreserved and a few safe sub-delims.
pub(super) const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'&')
    .add(b'+')
    .add(b';')
    .add(b'=');

/// Encodes a value for use as one path segment (borrowed when nothing in it needs encoding,
/// as almost no id does).
pub(crate) fn encode_segment(segment: &str) -> std::borrow::Cow<'_, str> {
    utf8_percent_encode(segment, SEGMENT).into()
}

impl LegacyClient {
    /// Builds the absolute URL of a call, refusing anything that would leave the base URL.
    pub(crate) fn url_for(&self, path: &LegacyPath, query: &[(String, String)]) -> Result<url::Url, LegacyError> {
        let relative = match path {
            LegacyPath::Segments(segments) => {
                // URL parsers treat "." and ".." (even percent-encoded) as navigation: no id is one.
                if let Some(dot) = segments.iter().find(|s| s.as_str() == "." || s.as_str() == "..") {
                    return Err(self.bad_path(dot, "a path segment cannot be '.' or '..'"));
                }
                segments.iter().map(|s| encode_segment(s)).collect::<Vec<_>>().join("/")
            }
            LegacyPath::Text(text) => {
                check_text_path(text).map_err(|detail| self.bad_path(text, detail))?;
                text.trim_start_matches('/').to_owned()
            }
        };
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path(), relative);
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        // Defence in depth: whatever the path was, the result stays under the base URL (its
        // scheme, host and port compared as they are, where `origin()` would copy them twice).
        let same_origin = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default();
        if !same_origin || !url.path().starts_with(self.base.path()) {
            return Err(self.bad_path(&relative, "leaves the legacy base URL"));
        }
        Ok(url)
    }

    /// The part of a URL built by [`Self::url_for`] below the base URL: `/users/12?login=x`.
    pub(crate) fn relative(&self, url: &url::Url) -> String {
        let below = url.path().strip_prefix(self.base.path()).unwrap_or(url.path());
        match url.query() {
            Some(query) => format!("/{below}?{query}"),
            None => format!("/{below}"),
        }
    }

    pub(super) fn bad_path(&self, path: &str, detail: &str) -> LegacyError {
        LegacyError::BadPath { app: self.app.clone(), path: path.to_owned(), detail: detail.to_owned() }
    }
}

/// Refuses text paths that could navigate or smuggle: dot segments, query, fragment, controls.
pub(super) fn check_text_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/' (it is relative to the legacy base URL)");
    }
    if path.starts_with("//") {
        return Err("must not start with '//'");
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '\\')) {
        return Err(
            "must not contain '?', '#', '\\', spaces or control characters: pass query parameters as a map and values as path segments",
        );
    }
    for segment in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\\') {
            return Err("must not contain '.' or '..' segments or encoded slashes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::config::LegacyConfig;

    fn client(base: &str) -> LegacyClient {
        let config: LegacyConfig = serde_yaml_ng::from_str(&format!("base_url: {base}")).unwrap();
        LegacyClient::new("acme", &config, Path::to_path_buf).unwrap()
    }

    #[test]
    fn builds_urls_under_the_base() {
        let c = client("http://legacy.local:7070/api/v1");
        let url = c.url_for(&LegacyPath::Text("/users/12".into()), &[("login".into(), "a b&c".into())]).unwrap();
        assert_eq!(url.as_str(), "http://legacy.local:7070/api/v1/users/12?login=a+b%26c");
        let hostile = ["../admin", "a/b", "x?y=1", "#frag", "...", "\r\nHost: evil", "%2F"];
        for id in hostile {
            let url = c.url_for(&LegacyPath::Segments(vec!["users".into(), id.into()]), &[]).unwrap();
            let path = url.path();
            assert!(path.starts_with("/api/v1/users/"), "{id}: {url}");
            assert_eq!(path.matches('/').count(), 4, "{id} must stay one segment: {url}");
            assert!(url.query().is_none() && url.fragment().is_none(), "{id}: {url}");
        }
        for dots in [".", ".."] {
            let result = c.url_for(&LegacyPath::Segments(vec!["users".into(), dots.into()]), &[]);
            assert!(matches!(result, Err(LegacyError::BadPath { .. })), "{dots}");
        }
    }

    #[test]
    fn refuses_text_paths_that_escape() {
        let c = client("http://legacy.local/api");
        for path in ["/../etc", "/users/%2e%2e/x", "users", "//evil.example/x", "/a?b", "/a#b", "/a\r\nb", "/a%2Fb"] {
            assert!(
                matches!(c.url_for(&LegacyPath::Text(path.into()), &[]), Err(LegacyError::BadPath { .. })),
                "{path}"
            );
        }
    }
}
