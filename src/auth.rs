//! Inbound authentication: the bearer tokens of each app, compared in constant time.

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::RequestError;

/// Accepts the request when its `Authorization: Bearer` token is one of `tokens`.
///
/// Every configured token is compared, whether or not an earlier one matched, so the time
/// taken does not tell which token (or how much of one) was right.
pub fn check_bearer(headers: &HeaderMap, tokens: &[Secret]) -> Result<(), RequestError> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(RequestError::Unauthorized)?;
    let mut matched = subtle::Choice::from(0u8);
    for token in tokens {
        matched |= token.expose().as_bytes().ct_eq(presented.as_bytes());
    }
    if bool::from(matched) { Ok(()) } else { Err(RequestError::Unauthorized) }
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
        assert!(check_bearer(&headers("Bearer first-token-0123456789"), &tokens).is_ok());
        assert!(check_bearer(&headers("bearer second-token-0123456789"), &tokens).is_ok());
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
