//! The parameters of a list, search or read request (RFC 7644 §3.4.2, §3.4.3, §3.9): from the
//! query string or a SearchRequest body, validated.

use crate::scim::ScimError;

/// The query parameters of a list or search request (RFC 7644 §3.4.2), validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListParams {
    /// The `filter` expression, not yet parsed.
    pub filter: Option<String>,
    /// 1-based; values below 1 are taken as 1.
    pub start_index: usize,
    /// Page size, capped at the app's maximum; `None` means the default.
    pub count: Option<usize>,
    /// The `sortBy` attribute path, not yet parsed.
    pub sort_by: Option<String>,
    /// True for `sortOrder=descending`.
    pub descending: bool,
    /// The `attributes` parameter: the comma-separated attributes to return.
    pub attributes: Option<String>,
    /// The `excludedAttributes` parameter: the comma-separated attributes to leave out.
    pub excluded_attributes: Option<String>,
}

/// The `attributes` / `excludedAttributes` parameters of any request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProjectionParams {
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

/// Decodes `a=b&c=d` into pairs.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

/// Reads `attributes` and `excludedAttributes` from query pairs.
pub(crate) fn projection_params(pairs: &[(String, String)]) -> ProjectionParams {
    ProjectionParams {
        attributes: param(pairs, "attributes").map(str::to_owned),
        excluded_attributes: param(pairs, "excludedAttributes").map(str::to_owned),
    }
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads list parameters from query pairs (GET) or a SearchRequest body (POST `.search`).
pub fn list_params(pairs: &[(String, String)]) -> Result<ListParams, ScimError> {
    let integer = |name: &str| -> Result<Option<i64>, ScimError> {
        param(pairs, name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| ScimError::InvalidParameter {
                    name: name.to_owned(),
                    detail: format!("{v:?} is not an integer"),
                })
            })
            .transpose()
    };
    let descending = match param(pairs, "sortOrder").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("ascending") => false,
        Some("descending") => true,
        Some(other) => {
            return Err(ScimError::InvalidParameter {
                name: "sortOrder".into(),
                detail: format!("{other:?} is neither \"ascending\" nor \"descending\""),
            });
        }
    };
    let start_index = integer("startIndex")?.unwrap_or(1).max(1) as usize;
    let count = integer("count")?.map(|c| c.max(0) as usize);
    let text = |name| param(pairs, name).filter(|v| !v.trim().is_empty()).map(str::to_owned);
    Ok(ListParams {
        filter: text("filter"),
        start_index,
        count,
        sort_by: text("sortBy"),
        descending,
        attributes: text("attributes"),
        excluded_attributes: text("excludedAttributes"),
    })
}

/// Reads a SearchRequest body (RFC 7644 §3.4.3) into the same pairs a GET query would give.
pub fn search_request_pairs(body: &serde_json::Value) -> Result<Vec<(String, String)>, ScimError> {
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let object = body.as_object().ok_or_else(|| ScimError::invalid_syntax("a SearchRequest is a JSON object"))?;
    if !object.contains_key("schemas") {
        return Err(ScimError::invalid_value("schemas", format!("is required and must list {SEARCH}")));
    }
    let mut pairs = Vec::new();
    for (key, value) in object {
        let text = match (key.as_str(), value) {
            ("schemas", _) => {
                let listed = value.as_array().is_some_and(|a| a.iter().any(|s| s.as_str() == Some(SEARCH)));
                if !listed {
                    return Err(ScimError::invalid_value("schemas", format!("must list {SEARCH}")));
                }
                continue;
            }
            (_, serde_json::Value::Null) => continue,
            ("attributes" | "excludedAttributes", serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ScimError::invalid_value(key.as_str(), "must list strings"))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            (_, serde_json::Value::String(s)) => s.clone(),
            (_, serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(ScimError::invalid_value(key.as_str(), "has the wrong type")),
        };
        let known = ["filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes"];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            return Err(ScimError::invalid_value(key.as_str(), "is not a SearchRequest attribute"));
        }
        pairs.push((key.clone(), text));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(Some(q))
    }

    #[test]
    fn list_params_follow_the_rfc() {
        let p =
            list_params(&pairs("startIndex=0&count=-5&sortOrder=DESCENDING&filter=userName%20eq%20%22a%22")).unwrap();
        assert_eq!((p.start_index, p.count, p.descending), (1, Some(0), true));
        assert_eq!(p.filter.as_deref(), Some("userName eq \"a\""));
        assert!(matches!(list_params(&pairs("count=ten")), Err(ScimError::InvalidParameter { .. })));
        assert!(matches!(list_params(&pairs("sortOrder=up")), Err(ScimError::InvalidParameter { .. })));
    }

    #[test]
    fn search_requests_become_the_same_parameters() {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "attributes": ["userName", "name.familyName"], "filter": "userName sw \"a\"", "startIndex": 2, "count": 5
        });
        let p = list_params(&search_request_pairs(&body).unwrap()).unwrap();
        assert_eq!(p.attributes.as_deref(), Some("userName,name.familyName"));
        assert_eq!((p.start_index, p.count), (2, Some(5)));
        assert!(search_request_pairs(&serde_json::json!({"filter": "x"})).is_err());
    }
}
