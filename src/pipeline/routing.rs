//! Routing: which app a request is for, by the longest base path that prefixes its path.
//! Which operation the rest of the path names is `crate::operations::operation::route`.

/// Finds the app whose base path prefixes `path` (the longest one wins); returns its index
/// and the rest of the path.
pub(crate) fn find_app<'a>(base_paths: impl Iterator<Item = &'a str>, path: &'a str) -> Option<(usize, &'a str)> {
    base_paths
        .enumerate()
        .filter_map(|(i, base)| {
            let rest = if base == "/" { path } else { path.strip_prefix(base)? };
            (rest.is_empty() || rest.starts_with('/')).then_some((i, base.len(), rest))
        })
        .max_by_key(|(_, len, _)| *len)
        .map(|(i, _, rest)| (i, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_longest_base_path() {
        let bases = ["/scim/v2", "/scim/v2/hr", "/other"];
        assert_eq!(find_app(bases.iter().copied(), "/scim/v2/Users"), Some((0, "/Users")));
        assert_eq!(find_app(bases.iter().copied(), "/scim/v2/hr/Users"), Some((1, "/Users")));
        assert_eq!(find_app(bases.iter().copied(), "/scim/v2hr/Users"), None);
        assert_eq!(find_app(bases.iter().copied(), "/nothing"), None);
    }
}
