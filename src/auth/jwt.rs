//! JWT bearer tokens: signature by an allowed algorithm and a configured key, issuer, audience
//! and validity period.

use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::JwtConfig;

/// How often, at most, the JWKS URL is fetched again for a key id it did not hold.
const REFETCH_EVERY: Duration = Duration::from_secs(60);

/// Why a token was refused; goes to the log and the error detail, never the token itself.
pub type Refusal = String;

/// The keys and rules of one app's JWT validation.
#[derive(Debug)]
pub struct JwtValidator {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    /// Keys from files and the shared secret, read at start.
    fixed: Vec<Key>,
    remote: Option<Remote>,
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
    keys: RwLock<std::sync::Arc<Vec<Key>>>,
    /// When the next fetch may start; `None` before the first.
    next_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// When the keys held are to be fetched again; `None` before the first fetch.
    due: RwLock<Option<Instant>>,
    /// `jwt.jwks_max_age`: older keys are fetched again before they are used.
    max_age: Duration,
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
    pub fn new(config: &JwtConfig, resolve: impl Fn(&Path) -> std::path::PathBuf) -> Result<Self, (String, String)> {
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
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| ("jwt.jwks_url".to_owned(), e.to_string()))?;
                Some(Remote {
                    url: url.clone(),
                    client,
                    keys: RwLock::default(),
                    next_fetch: tokio::sync::Mutex::new(None),
                    due: RwLock::default(),
                    max_age: config.jwks_max_age,
                })
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
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && header_alg(token).is_some()
    }

    /// Validates a token; answers `(sub, iss)` or why it was refused.
    pub async fn validate(&self, app: &str, token: &str) -> Result<(String, String), Refusal> {
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
        if let (Some(remote), Err(Miss::NoKey | Miss::BadSignature(_))) = (&self.remote, &outcome) {
            if remote.is_stale() {
                // A failed fetch leaves the keys held in use, and is tried again a minute on.
                remote.refresh(app, true).await;
            }
            let fixed = std::mem::replace(&mut outcome, self.try_keys(&remote.keys(), header.alg, kid, token));
            if matches!(outcome, Err(Miss::NoKey)) && remote.refresh(app, false).await {
                outcome = self.try_keys(&remote.keys(), header.alg, kid, token);
            }
            if let (Err(Miss::NoKey), Err(Miss::BadSignature(first))) = (&outcome, fixed) {
                outcome = Err(Miss::BadSignature(first));
            }
        }
        match outcome {
            Ok(claims) => Ok((claims.sub.unwrap_or_default(), claims.iss.unwrap_or_default())),
            Err(Miss::BadSignature(refusal) | Miss::Refused(refusal)) => Err(refusal),
            Err(Miss::NoKey) => Err(match kid {
                Some(kid) => format!("no key with id \"{}\" for algorithm {:?}", crate::error::echoed(kid), header.alg),
                None => format!("no key for algorithm {:?}", header.alg),
            }),
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
    fn keys(&self) -> std::sync::Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// True when keys are held and are due to be fetched again (`jwks_max_age`).
    fn is_stale(&self) -> bool {
        let due = *self.due.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        due.is_some_and(|at| Instant::now() >= at)
    }

    fn set_due(&self, at: Instant) {
        *self.due.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// Fetches the JWKS: the first time whenever needed, after that at most once a minute (a
    /// failed fetch counts), so tokens naming unknown key ids cannot make the proxy hammer the
    /// identity provider; and when the keys held are due (`stale`: past `jwks_max_age`, or a
    /// minute after a failed fetch of due keys). True when new keys were stored; concurrent
    /// callers wait for one fetch.
    async fn refresh(&self, app: &str, stale: bool) -> bool {
        let mut next = self.next_fetch.lock().await;
        // Another caller may have fetched while this one waited.
        let allowed = if stale { self.is_stale() } else { next.is_none_or(|at| Instant::now() >= at) };
        if !allowed {
            return false;
        }
        let first = next.is_none();
        *next = Some(Instant::now() + REFETCH_EVERY);
        let set = async {
            let response = self.client.get(self.url.clone()).send().await.map_err(|e| e.to_string())?;
            let response = response.error_for_status().map_err(|e| e.to_string())?;
            response.json::<JwkSet>().await.map_err(|e| format!("not a JWKS document: {e}"))
        };
        match set.await {
            Ok(set) => {
                if first {
                    // Loading is not refreshing: the first unknown key id may still fetch again.
                    *next = Some(Instant::now());
                }
                let keys = jwks_keys(&set);
                tracing::info!(app, url = %self.url, keys = keys.len(), "jwks fetched");
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(keys);
                self.set_due(Instant::now() + self.max_age);
                true
            }
            Err(reason) => {
                tracing::warn!(app, url = %self.url, reason, "jwks fetch failed; the keys held before stay in use");
                if self.due.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_some() {
                    self.set_due(Instant::now() + REFETCH_EVERY.min(self.max_age));
                }
                false
            }
        }
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
