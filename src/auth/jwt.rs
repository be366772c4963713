//! JWT bearer tokens: signature by an allowed algorithm and a configured key, issuer, audience
//! and validity period.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::JwtConfig;

/// How often, at most, the JWKS URL is fetched again for a key id it did not hold.
const REFETCH_EVERY: Duration = Duration::from_secs(60);

/// How long one fetch of the JWKS document may take, its whole body included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a token was refused; goes to the log and the error detail, never the token itself.
pub(super) type Refusal = String;

/// The keys and rules of one app's JWT validation.
#[derive(Debug)]
pub(crate) struct JwtValidator {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    /// Keys from files and the shared secret, read at start.
    fixed: Vec<Key>,
    /// Shared with the background task that refreshes it.
    remote: Option<Arc<Remote>>,
}

/// A verification key.
struct Key {
    kid: Option<String>,
    kind: Kind,
    /// The algorithm the key is declared for, when its JWK says.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("kind", &self.kind).finish()
    }
}

/// Key families: a key verifies only algorithms of its own family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    Ec,
    Ed,
    Hmac,
}

fn kind_of(alg: Algorithm) -> Kind {
    use Algorithm as A;
    match alg {
        A::HS256 | A::HS384 | A::HS512 => Kind::Hmac,
        A::ES256 | A::ES384 => Kind::Ec,
        A::EdDSA => Kind::Ed,
        A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => Kind::Rsa,
    }
}

/// A JWKS document fetched over HTTP.
#[derive(Debug)]
struct Remote {
    url: url::Url,
    client: reqwest::Client,
    held: RwLock<Held>,
    /// Held during every fetch, so that there is one at a time; says when a fetch for a key
    /// id not held may next start (`None` before the first fetch).
    next_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// True while a background refresh is under way or about to start.
    refreshing: AtomicBool,
    /// `jwt.jwks_max_age`: older keys are fetched again, in the background.
    max_age: Duration,
    /// `jwt.jwks_max_bytes`: the largest document read.
    max_bytes: usize,
}

/// What the last fetches of a JWKS left.
#[derive(Debug, Default)]
struct Held {
    keys: Arc<Vec<Key>>,
    /// Counts the key sets stored, so a caller can tell that keys came in while it waited.
    generation: u64,
    /// When the keys held are to be fetched again; `None` before the first successful fetch.
    due: Option<Instant>,
    /// Why the last fetch failed, until one succeeds.
    failure: Option<FetchError>,
}

/// Why a JWKS document could not be had.
#[derive(Debug, Clone, thiserror::Error)]
enum FetchError {
    #[error("no answer: {0}")]
    NoAnswer(String),
    #[error("answered {0}: redirects are not followed (set jwt.jwks_url to the document's own URL)")]
    Redirect(u16),
    #[error("answered {0}")]
    Status(u16),
    #[error("the answer is larger than {0} bytes (jwt.jwks_max_bytes)")]
    TooLarge(usize),
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
}

impl FetchError {
    /// The reason as a refused token's detail may say it: without the URL or the host, which a
    /// transport error's text names.
    fn for_refusal(&self) -> String {
        match self {
            Self::NoAnswer(_) => "no answer".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The claims the proxy reads; everything else in the token is ignored.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
}

impl JwtValidator {
    /// Reads the key files; `resolve` turns a configured path into a readable one. The error
    /// names the key (`jwt.keys[1]`) and the reason.
    pub(crate) fn new(
        config: &JwtConfig,
        resolve: impl Fn(&Path) -> std::path::PathBuf,
    ) -> Result<Self, (String, String)> {
        let mut fixed = Vec::new();
        for (i, source) in config.keys.iter().enumerate() {
            let at = |detail: String| (format!("jwt.keys[{i}]"), detail);
            if let Some(path) = &source.pem_file {
                let path = resolve(path);
                let pem = std::fs::read(&path).map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
                fixed.push(
                    pem_key(&pem).ok_or_else(|| {
                        at(format!("{} is not a PEM public key (RSA, EC or Ed25519)", path.display()))
                    })?,
                );
            }
            if let Some(path) = &source.jwks_file {
                let path = resolve(path);
                let text = std::fs::read(&path).map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
                let set: JwkSet = serde_json::from_slice(&text)
                    .map_err(|e| at(format!("{} is not a JWKS document: {e}", path.display())))?;
                let keys = jwks_keys(&set);
                if keys.is_empty() {
                    return Err(at(format!("{} holds no usable public key", path.display())));
                }
                fixed.extend(keys);
            }
        }
        if let Some(secret) = &config.shared_secret {
            fixed.push(Key {
                kid: None,
                kind: Kind::Hmac,
                alg: None,
                key: DecodingKey::from_secret(secret.expose().as_bytes()),
            });
        }
        let remote = match &config.jwks_url {
            None => None,
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    // As for the legacy client: the configured URL is the only place keys come
                    // from, and a redirect could lead anywhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| ("jwt.jwks_url".to_owned(), e.to_string()))?;
                Some(Arc::new(Remote {
                    url: url.clone(),
                    client,
                    held: RwLock::default(),
                    next_fetch: tokio::sync::Mutex::new(None),
                    refreshing: AtomicBool::new(false),
                    max_age: config.jwks_max_age,
                    max_bytes: config.jwks_max_bytes,
                }))
            }
        };
        Ok(Self {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            algorithms: config.algorithms.clone(),
            leeway: config.leeway,
            fixed,
            remote,
        })
    }

    /// Whether `token` looks like a JWT at all (three parts, a JSON header naming an `alg`);
    /// other bearer tokens are not this validator's business.
    pub(crate) fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && header_alg(token).is_some()
    }

    /// Validates a token; answers `(sub, iss)` or why it was refused.
    pub(crate) async fn validate(&self, app: &str, token: &str) -> Result<(String, String), Refusal> {
        // The allow-list is checked on the raw header first, so `none` and unknown names are
        // refused by name before any parsing of the rest.
        let alg = header_alg(token).unwrap_or_default();
        let allowed = self.algorithms.iter().any(|a| serde_json::to_value(a).is_ok_and(|name| name == alg.as_str()));
        if !allowed {
            return Err(format!("algorithm \"{}\" is not allowed", crate::error::echoed(&alg)));
        }
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood, or the token refused;
        // this proxy understands none (and an empty list is not allowed either).
        if raw_header(token).is_some_and(|h| h.get("crit").is_some()) {
            return Err("the token's header lists critical extensions (crit) this proxy does not understand".to_owned());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let kid = header.kid.as_deref();
        let mut outcome = self.try_keys(&self.fixed, header.alg, kid, token);
        // A configured key that did not verify the signature (a PEM without `kid` fits every
        // token) does not end the search: the JWKS keys are tried too, and only when none
        // verifies is the token refused, with the first key's reason.
        let mut fetch_failure = None;
        if let (Some(remote), Err(Miss::NoKey | Miss::BadSignature(_))) = (&self.remote, &outcome) {
            if remote.is_stale() {
                // The keys held go on serving while they are fetched again: no request waits
                // for a slow identity provider once keys are held.
                remote.refresh_in_background(app);
            }
            let (keys, generation) = remote.keys();
            let fixed = std::mem::replace(&mut outcome, self.try_keys(&keys, header.alg, kid, token));
            if matches!(outcome, Err(Miss::NoKey)) && remote.fetch_for_unknown_key(app, generation).await {
                outcome = self.try_keys(&remote.keys().0, header.alg, kid, token);
            }
            if let (Err(Miss::NoKey), Err(Miss::BadSignature(first))) = (&outcome, fixed) {
                outcome = Err(Miss::BadSignature(first));
            }
            fetch_failure = remote.failure();
        }
        match outcome {
            Ok(claims) => Ok((claims.sub.unwrap_or_default(), claims.iss.unwrap_or_default())),
            Err(Miss::BadSignature(refusal) | Miss::Refused(refusal)) => Err(refusal),
            Err(Miss::NoKey) => {
                let mut refusal = match kid {
                    Some(kid) => {
                        format!("no key with id \"{}\" for algorithm {:?}", crate::error::echoed(kid), header.alg)
                    }
                    None => format!("no key for algorithm {:?}", header.alg),
                };
                if let Some(failure) = fetch_failure {
                    refusal.push_str(&format!("; the JWKS could not be fetched: {}", failure.for_refusal()));
                }
                Err(refusal)
            }
        }
    }

    /// Tries every key that may have signed the token, those naming its `kid` first.
    fn try_keys(&self, keys: &[Key], alg: Algorithm, kid: Option<&str>, token: &str) -> Result<Claims, Miss> {
        let mut refusal = None;
        let mut candidates: Vec<&Key> = keys
            .iter()
            .filter(|k| {
                k.kind == kind_of(alg)
                    && k.alg.is_none_or(|a| a == alg)
                    && match (kid, &k.kid) {
                        (Some(wanted), Some(have)) => wanted == have,
                        _ => true,
                    }
            })
            .collect();
        candidates.sort_by_key(|k| k.kid.is_none());
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(alg)) {
                Ok(data) => return Ok(data.claims),
                Err(error) => {
                    let reason = describe(&error);
                    // Another key may still fit; a claim problem is the same for every key.
                    if !matches!(error.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) {
                        return Err(Miss::Refused(reason));
                    }
                    refusal.get_or_insert(reason);
                }
            }
        }
        Err(refusal.map_or(Miss::NoKey, Miss::BadSignature))
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation
    }
}

impl Remote {
    fn held(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held_mut(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keys held and their generation.
    fn keys(&self) -> (Arc<Vec<Key>>, u64) {
        let held = self.held();
        (held.keys.clone(), held.generation)
    }

    /// Why the last fetch failed, unless one succeeded since.
    fn failure(&self) -> Option<FetchError> {
        self.held().failure.clone()
    }

    /// True when keys are held and are due to be fetched again (`jwks_max_age`, or a minute
    /// after a failed fetch of due keys).
    fn is_stale(&self) -> bool {
        self.held().due.is_some_and(|at| Instant::now() >= at)
    }

    /// Starts fetching the JWKS again in a task of its own, unless such a task is already
    /// under way; returns at once. A failure is logged, leaves the keys held in use, and is
    /// tried again by the first request a minute on (or `jwks_max_age`, when shorter).
    fn refresh_in_background(self: &Arc<Self>, app: &str) {
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        // Made before the task, so that a task dropped unstarted (the runtime shutting down)
        // still lets the next refresh start.
        let refreshing = Refreshing(self.clone());
        let app = app.to_owned();
        tokio::spawn(async move {
            let remote = &refreshing.0;
            let mut next = remote.next_fetch.lock().await;
            // A fetch for an unknown key id may have brought fresh keys meanwhile.
            if remote.is_stale() {
                remote.fetch(&app, &mut next).await;
            }
        });
    }

    /// Fetches the JWKS for a token whose key is not held (`generation` is that of the keys it
    /// was tried with): the first time whenever needed, after that at most once a minute (a
    /// failed fetch and a refresh count), so that tokens naming unknown key ids cannot make
    /// the proxy hammer the identity provider. Concurrent callers wait for one fetch. True
    /// when other keys than those tried are held now.
    async fn fetch_for_unknown_key(&self, app: &str, generation: u64) -> bool {
        let mut next = self.next_fetch.lock().await;
        // Keys may have come in while this caller waited for another fetch.
        if self.keys().1 != generation {
            return true;
        }
        if next.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        self.fetch(app, &mut next).await
    }

    /// One fetch of the JWKS, with `next` (the fetch lock) held; true when new keys were stored.
    async fn fetch(&self, app: &str, next: &mut Option<Instant>) -> bool {
        let first = next.is_none();
        *next = Some(Instant::now() + REFETCH_EVERY);
        match self.download().await {
            Ok(set) => {
                if first {
                    // Loading is not refreshing: the first unknown key id may still fetch again.
                    *next = Some(Instant::now());
                }
                let keys = jwks_keys(&set);
                tracing::info!(app, url = %self.url, keys = keys.len(), "jwks fetched");
                let mut held = self.held_mut();
                held.keys = Arc::new(keys);
                held.generation += 1;
                held.due = Some(Instant::now() + self.max_age);
                held.failure = None;
                true
            }
            Err(failure) => {
                let reason = failure.to_string();
                tracing::warn!(app, url = %self.url, reason, "jwks fetch failed; the keys held before stay in use");
                let mut held = self.held_mut();
                if held.due.is_some() {
                    held.due = Some(Instant::now() + REFETCH_EVERY.min(self.max_age));
                }
                held.failure = Some(failure);
                false
            }
        }
    }

    /// Asks the JWKS URL for its document: a redirect is not followed, and no more than
    /// `jwks_max_bytes` of the answer is read.
    async fn download(&self) -> Result<JwkSet, FetchError> {
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| FetchError::NoAnswer(crate::observe::error_chain(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let body = crate::legacy::body::read_bounded(response, self.max_bytes).await.map_err(|e| match e {
            crate::legacy::body::BodyError::TooLarge => FetchError::TooLarge(self.max_bytes),
            crate::legacy::body::BodyError::Transport(e) => FetchError::NoAnswer(crate::observe::error_chain(&e)),
        })?;
        serde_json::from_slice(&body).map_err(|e| FetchError::NotJwks(e.to_string()))
    }
}

/// Marks a background refresh as over when dropped: finished, failed or never started.
struct Refreshing(Arc<Remote>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::SeqCst);
    }
}

/// The `alg` named by a token's header, without checking anything else.
fn header_alg(token: &str) -> Option<String> {
    raw_header(token)?.get("alg")?.as_str().map(str::to_owned)
}

/// A token's header as JSON, as sent.
fn raw_header(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why a set of keys did not accept a token.
enum Miss {
    /// No key of the set may have signed it.
    NoKey,
    /// Keys that may have signed it did not verify the signature (another set may).
    BadSignature(Refusal),
    /// A key verified the signature and the claims are wrong: the same for every key.
    Refused(Refusal),
}

/// A PEM public key of any supported family.
fn pem_key(pem: &[u8]) -> Option<Key> {
    let key = |kind, key| Key { kid: None, kind, alg: None, key };
    DecodingKey::from_rsa_pem(pem)
        .map(|k| key(Kind::Rsa, k))
        .or_else(|_| DecodingKey::from_ec_pem(pem).map(|k| key(Kind::Ec, k)))
        .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| key(Kind::Ed, k)))
        .ok()
}

/// The public keys of a JWKS; symmetric (`oct`) keys are never taken from one.
fn jwks_keys(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kind = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Kind::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Kind::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Kind::Ed,
                AlgorithmParameters::OctetKey(_) => return None,
            };
            let alg = jwk.common.key_algorithm.and_then(algorithm_of);
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Key { kid: jwk.common.key_id.clone(), kind, alg, key })
        })
        .collect()
}

fn algorithm_of(alg: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match alg {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A short reason for the log, without the token.
fn describe(error: &jsonwebtoken::errors::Error) -> Refusal {
    use jsonwebtoken::errors::ErrorKind as E;
    match error.kind() {
        E::InvalidSignature => "bad signature".into(),
        E::ExpiredSignature => "expired".into(),
        E::ImmatureSignature => "not valid yet (nbf)".into(),
        E::InvalidAudience => "wrong audience".into(),
        E::InvalidIssuer => "wrong issuer".into(),
        E::InvalidAlgorithm => "algorithm does not fit the key".into(),
        E::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        _ => format!("invalid token: {error}"),
    }
}
