//! Inbound authentication: the bearer tokens of each app, compared in constant time.

use http::HeaderMap;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::Secret;
use crate::error::RequestError;

/// Who a request was authenticated as: the credential, never its secret (`bearer token #2`).
/// Audit records and logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Accepts the request when its `Authorization: Bearer` token is one of `tokens`; answers
/// which one (`bearer token #N`, counting from 1 in the configuration's order).
///
/// Every configured token is compared, whether or not an earlier one matched, so the time
/// taken does not tell which token (or how much of one) was right.
pub fn check_bearer(headers: &HeaderMap, tokens: &[Secret]) -> Result<Principal, RequestError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(RequestError::Unauthorized)?;
    let mut matched = 0u32;
    for (index, token) in tokens.iter().enumerate() {
        let equal = token.expose().as_bytes().ct_eq(presented.as_bytes());
        matched = u32::conditional_select(&matched, &(index as u32 + 1), equal);
    }
    if matched == 0 {
        return Err(RequestError::Unauthorized);
    }
    Ok(Principal(format!("bearer token #{matched}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn accepts_any_configured_token_and_nothing_else() {
        let tokens: Vec<Secret> =
            serde_json::from_str(r#"["first-token-0123456789", "second-token-0123456789"]"#).unwrap();
        assert_eq!(check_bearer(&headers("Bearer first-token-0123456789"), &tokens).unwrap().0, "bearer token #1");
        assert_eq!(check_bearer(&headers("bearer second-token-0123456789"), &tokens).unwrap().0, "bearer token #2");
        for bad in [
            "Bearer first-token-012345678",
            "Bearer first-token-01234567890",
            "Basic first-token-0123456789",
            "Bearer",
            "",
        ] {
            assert!(check_bearer(&headers(bad), &tokens).is_err(), "{bad}");
        }
        assert!(check_bearer(&HeaderMap::new(), &tokens).is_err());
    }
}
