//! The credentials of one app's legacy calls: fixed Basic or bearer, or OAuth2 client-credentials tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderValue;
use tokio::sync::Mutex;

use crate::config::{ClientAuth, LegacyAuthConfig, OAuth2Config, Secret};

/// Why no access token could be had from the token endpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token endpoint {host}: {detail}")]
pub(crate) struct TokenError {
    /// The host of the token endpoint.
    pub host: String,
    /// What went wrong, without the token or the secret.
    pub detail: String,
    /// True when a later retry may succeed (unreachable, slow, 5xx, 429).
    pub retryable: bool,
}

/// The `Authorization` value of one call, and which token it carries.
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    pub value: HeaderValue,
    /// The token's number, for OAuth2; `None` for fixed credentials, which a 401 cannot renew.
    generation: Option<u64>,
}

/// How an app authenticates to its legacy app.
#[derive(Debug)]
pub(crate) enum Credentials {
    /// Nothing beyond `legacy.headers`.
    None,
    /// The same `Authorization` value on every call (Basic or bearer).
    Fixed(HeaderValue),
    /// A bearer token from a token endpoint, cached and renewed.
    OAuth2(Box<TokenSource>),
}

impl Credentials {
    /// Builds an app's credentials from its configuration; runs once at start.
    pub(crate) fn new(app: &str, config: Option<&LegacyAuthConfig>) -> Result<Self, String> {
        let Some(config) = config else { return Ok(Self::None) };
        if let Some(basic) = &config.basic {
            let pair = format!("{}:{}", basic.username.expose(), basic.password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            return sensitive(&format!("Basic {encoded}"))
                .map(Self::Fixed)
                .map_err(|_| "auth.basic: cannot encode".into());
        }
        if let Some(bearer) = &config.bearer {
            return sensitive(&format!("Bearer {}", bearer.token.expose()))
                .map(Self::Fixed)
                .map_err(|_| "auth.bearer.token: has characters not allowed in a header".into());
        }
        if let Some(oauth2) = &config.oauth2 {
            return Ok(Self::OAuth2(Box::new(TokenSource::new(app, oauth2))));
        }
        Ok(Self::None)
    }

    /// The `Authorization` value for the next call, fetching a token first when none is fresh.
    pub(crate) async fn authorization(&self, client: &reqwest::Client) -> Result<Option<Authorization>, TokenError> {
        match self {
            Self::None => Ok(None),
            Self::Fixed(value) => Ok(Some(Authorization { value: value.clone(), generation: None })),
            Self::OAuth2(source) => source.current(client, None).await.map(Some),
        }
    }

    /// After the legacy app answered 401 to `used`: a new token to retry with once, or `None`
    /// when the credentials are fixed and a retry would change nothing.
    pub(crate) async fn renew(
        &self,
        client: &reqwest::Client,
        used: &Authorization,
    ) -> Result<Option<Authorization>, TokenError> {
        match (self, used.generation) {
            (Self::OAuth2(source), Some(generation)) => source.current(client, Some(generation)).await.map(Some),
            _ => Ok(None),
        }
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut value = HeaderValue::from_str(text)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Access tokens of one app: fetched from the token endpoint when needed, one fetch at a time.
pub(crate) struct TokenSource {
    app: String,
    token_url: url::Url,
    client_id: Secret,
    client_secret: Secret,
    client_auth: ClientAuth,
    /// The form parameters other than the client credentials.
    params: Vec<(String, String)>,
    refresh_before: Duration,
    /// `oauth2.max_response_bytes`: the largest answer read.
    max_response_bytes: usize,
    /// Held while a token is fetched, so concurrent calls wait for that one fetch.
    state: Mutex<TokenState>,
    /// Fetches finished, successful or not.
    fetches: AtomicU64,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("app", &self.app).field("token_url", &self.token_url.as_str()).finish()
    }
}

#[derive(Default)]
struct TokenState {
    token: Option<Token>,
    /// Tokens fetched so far; the current one has this number.
    generation: u64,
    /// The last fetch, when it failed: its number among all fetches, and why.
    failure: Option<(u64, TokenError)>,
}

struct Token {
    value: HeaderValue,
    /// When the token must be replaced; `None` when the endpoint gave no lifetime (then only
    /// a 401 replaces it).
    renew_at: Option<Instant>,
}

/// The parts of a token endpoint's answer the proxy reads (RFC 6749 §5.1, §5.2).
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
}

impl TokenSource {
    fn new(app: &str, config: &OAuth2Config) -> Self {
        let mut params = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        if let Some(scope) = &config.scope {
            params.push(("scope".into(), scope.clone()));
        }
        if let Some(audience) = &config.audience {
            params.push(("audience".into(), audience.clone()));
        }
        params.extend(config.extra_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self {
            app: app.to_owned(),
            token_url: config.token_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            client_auth: config.client_auth,
            params,
            refresh_before: config.refresh_before,
            max_response_bytes: config.max_response_bytes,
            state: Mutex::new(TokenState::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// The current token, fetched when there is none, when it is due for renewal, or when it
    /// is the `rejected` one. A token fetched by a concurrent call meanwhile is taken as is.
    ///
    /// A fetch that failed while this call waited for it fails this call too: callers queued
    /// behind a failing token endpoint do not each try it again.
    async fn current(&self, client: &reqwest::Client, rejected: Option<u64>) -> Result<Authorization, TokenError> {
        let finished_before = self.fetches.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(token) = &state.token {
            let due = token.renew_at.is_some_and(|at| now >= at);
            if !due && rejected != Some(state.generation) {
                return Ok(Authorization { value: token.value.clone(), generation: Some(state.generation) });
            }
        }
        if let Some((fetch, error)) = &state.failure {
            if *fetch > finished_before {
                return Err(error.clone());
            }
        }
        state.token = None;
        let fetched = self.fetch(client).await;
        let fetch = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        match fetched {
            Ok(token) => {
                state.failure = None;
                state.generation += 1;
                let value = token.value.clone();
                state.token = Some(token);
                Ok(Authorization { value, generation: Some(state.generation) })
            }
            Err(error) => {
                state.failure = Some((fetch, error.clone()));
                Err(error)
            }
        }
    }

    /// Asks the token endpoint for a new token.
    async fn fetch(&self, client: &reqwest::Client) -> Result<Token, TokenError> {
        let host = crate::legacy::host_of(&self.token_url);
        // Built apart: the serializer is not `Send`, and must not live across an await.
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &self.params {
                form.append_pair(name, value);
            }
            if matches!(self.client_auth, ClientAuth::Body) {
                form.append_pair("client_id", self.client_id.expose());
                form.append_pair("client_secret", self.client_secret.expose());
            }
            form.finish()
        };
        let mut request = client
            .post(self.token_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        match self.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: both are form-encoded before they are joined.
                let id: String = url::form_urlencoded::byte_serialize(self.client_id.expose().as_bytes()).collect();
                let secret: String =
                    url::form_urlencoded::byte_serialize(self.client_secret.expose().as_bytes()).collect();
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
                let value = sensitive(&format!("Basic {encoded}"))
                    .map_err(|_| self.failure(&host, "cannot encode the client credentials", None, false))?;
                request = request.header(http::header::AUTHORIZATION, value);
            }
            ClientAuth::Body => {}
        }
        let asked = Instant::now();
        let response = request.body(form).send().await.map_err(|e| {
            let (reason, tls) = crate::legacy::client::transport_failure(&e);
            self.failure(&host, &format!("no answer: {reason}"), None, !tls)
        })?;
        let status = response.status();
        if status.is_redirection() {
            // The legacy client follows no redirect, and the token request carries the client
            // secret: it goes to the configured URL only.
            let detail = format!(
                "answered {}: redirects are not followed (set oauth2.token_url to the endpoint's own URL)",
                status.as_u16()
            );
            return Err(self.failure(&host, &detail, Some(status.as_u16()), false));
        }
        let body = crate::legacy::body::read_bounded(response, self.max_response_bytes).await.map_err(|e| match e {
            crate::legacy::body::BodyError::TooLarge => {
                let detail =
                    format!("the answer is larger than {} bytes (oauth2.max_response_bytes)", self.max_response_bytes);
                self.failure(&host, &detail, Some(status.as_u16()), false)
            }
            crate::legacy::body::BodyError::Transport(e) => {
                let (reason, tls) = crate::legacy::client::transport_failure(&e);
                self.failure(&host, &format!("the answer broke off: {reason}"), Some(status.as_u16()), !tls)
            }
        })?;
        let answer: Option<TokenAnswer> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let code = answer.as_ref().and_then(|a| a.error.as_deref()).and_then(error_code);
            let retryable = status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS;
            let detail = match &code {
                Some(code) => format!("answered {} with error {code}", status.as_u16()),
                None => format!("answered {}", status.as_u16()),
            };
            return Err(self.failure_with_code(&host, &detail, Some(status.as_u16()), code.as_deref(), retryable));
        }
        let Some(answer) = answer else {
            return Err(self.failure(&host, "the answer is not a JSON token response", Some(status.as_u16()), false));
        };
        let Some(access_token) = answer.access_token.filter(|t| !t.is_empty()) else {
            return Err(self.failure(&host, "the answer has no access_token", Some(status.as_u16()), false));
        };
        if let Some(kind) = answer.token_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("bearer")) {
            let kind = error_code(kind).unwrap_or_else(|| "(unreadable)".into());
            return Err(self.failure(
                &host,
                &format!("token_type {kind} is not supported: only bearer tokens are"),
                Some(status.as_u16()),
                false,
            ));
        }
        let value = sensitive(&format!("Bearer {access_token}")).map_err(|_| {
            self.failure(&host, "the access_token has characters not allowed in a header", Some(status.as_u16()), false)
        })?;
        let lifetime = answer.expires_in.as_ref().and_then(lifetime);
        // Renew ahead of expiry, but never so early that a token is not used at all: a token of
        // no lifetime serves the call it was fetched for, and the next call fetches another.
        let renew_at =
            lifetime.map(|life| asked.checked_add(life - self.refresh_before.min(life / 2)).unwrap_or(asked));
        tracing::info!(
            app = self.app,
            token_host = host,
            expires_in_s = lifetime.map(|l| l.as_secs()),
            "access token for the legacy app fetched"
        );
        if answer.expires_in.as_ref().is_some_and(|given| !given.is_null() && lifetime.is_none()) {
            tracing::warn!(
                app = self.app,
                token_host = host,
                "the token endpoint's expires_in is not a number: the token is kept until the legacy app refuses it"
            );
        }
        Ok(Token { value, renew_at })
    }

    fn failure(&self, host: &str, detail: &str, status: Option<u16>, retryable: bool) -> TokenError {
        self.failure_with_code(host, detail, status, None, retryable)
    }

    /// A fetch failure, logged with the app, the endpoint's host, status and error code.
    fn failure_with_code(
        &self,
        host: &str,
        detail: &str,
        status: Option<u16>,
        code: Option<&str>,
        retryable: bool,
    ) -> TokenError {
        tracing::warn!(
            app = self.app,
            token_host = host,
            status,
            error_code = code,
            reason = detail,
            "cannot get an access token for the legacy app"
        );
        TokenError { host: host.to_owned(), detail: detail.to_owned(), retryable }
    }
}

/// An OAuth2 `error` code as it may be shown: RFC 6749 §5.2 characters only, bounded in length.
fn error_code(text: &str) -> Option<String> {
    let allowed = |c: char| matches!(c, '\u{20}'..='\u{21}' | '\u{23}'..='\u{5b}' | '\u{5d}'..='\u{7e}');
    (!text.is_empty() && text.len() <= 64 && text.chars().all(allowed)).then(|| text.to_owned())
}

/// The longest lifetime a token is believed to have, whatever its `expires_in` says: a token
/// endpoint answering `1e20` or `18446744073709551615` (which overflowed the renewal time)
/// gets its token renewed once a day.
pub(crate) const LONGEST_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// `expires_in` as a lifetime from 0 to [`LONGEST_TOKEN_LIFETIME`]: a number, whole or not,
/// or a string of one as some servers send it; a negative one is 0 (expired already). `None`
/// when it is not a number at all.
fn lifetime(value: &serde_json::Value) -> Option<Duration> {
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    // `inf` and `NaN` parse from a string, and would make `from_secs_f64` panic.
    .filter(|s| s.is_finite())?;
    Some(Duration::from_secs_f64(seconds.clamp(0.0, LONGEST_TOKEN_LIFETIME.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_shown_only_when_harmless() {
        assert_eq!(error_code("invalid_client").as_deref(), Some("invalid_client"));
        assert_eq!(error_code("a\"b"), None);
        assert_eq!(error_code(&"x".repeat(65)), None);
        assert_eq!(error_code("line\nbreak"), None);
    }

    #[test]
    fn expiry_reads_numbers_and_digit_strings_clamped_to_a_day() {
        use serde_json::json;
        let day = LONGEST_TOKEN_LIFETIME;
        let cases = [
            (json!(3600), Some(Duration::from_secs(3600))),
            (json!("120"), Some(Duration::from_secs(120))),
            (json!(" 90 "), Some(Duration::from_secs(90))),
            (json!(2.5), Some(Duration::from_millis(2500))),
            (json!("2.5"), Some(Duration::from_millis(2500))),
            (json!(0), Some(Duration::ZERO)),
            (json!(-1), Some(Duration::ZERO)),
            (json!(-1e300), Some(Duration::ZERO)),
            (json!(86_400), Some(day)),
            (json!(86_401), Some(day)),
            (json!(1e20), Some(day)),
            (json!(u64::MAX), Some(day)),
            (json!(i64::MIN), Some(Duration::ZERO)),
            (json!("18446744073709551616"), Some(day)),
            (json!("inf"), None),
            (json!("NaN"), None),
            (json!("soon"), None),
            (json!(null), None),
            (json!(true), None),
            (json!([3600]), None),
        ];
        for (given, expected) in cases {
            assert_eq!(lifetime(&given), expected, "{given}");
        }
    }

    #[test]
    fn fixed_credentials_are_encoded_once() {
        let config: LegacyAuthConfig =
            serde_yaml_ng::from_str("basic: {username: svc, password: \"p@ss:word\"}").unwrap();
        let Credentials::Fixed(value) = Credentials::new("a", Some(&config)).unwrap() else { panic!("fixed") };
        assert_eq!(value.to_str().unwrap(), "Basic c3ZjOnBAc3M6d29yZA==");
        assert!(value.is_sensitive());
        let config: LegacyAuthConfig = serde_yaml_ng::from_str("bearer: {token: abc}").unwrap();
        let Credentials::Fixed(value) = Credentials::new("a", Some(&config)).unwrap() else { panic!("fixed") };
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
    }
}
