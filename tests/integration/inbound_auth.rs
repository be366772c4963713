//! Inbound authentication besides inline tokens: token files that rotate, HTTP Basic, and JWTs
//! checked for signature, algorithm, issuer, audience and validity, with keys from a file or
//! a JWKS URL.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{TOKEN, TestEnv};

const ISSUER: &str = "https://login.idp.test/tenant-1/";
const AUDIENCE: &str = "api://scim-proxy";

/// The test configuration with the first app's `auth` section replaced by `auth`.
pub(crate) async fn start_with_auth(auth: &str) -> TestEnv {
    let auth = auth.to_owned();
    TestEnv::start_with(move |text| text.replacen("      bearer_tokens: [\"${env.TOKEN}\"]", &auth, 1)).await
}

async fn status(env: &TestEnv, authorization: Option<&str>) -> (StatusCode, Option<String>) {
    let mut request = env.client.get(format!("{}/Users", env.base()));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

async fn bearer(env: &TestEnv, token: &str) -> StatusCode {
    status(env, Some(&format!("Bearer {token}"))).await.0
}

/// Polls until `token` gets `expected`; a token file is looked at once a second at most.
async fn wait_for(env: &TestEnv, token: &str, expected: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while bearer(env, token).await != expected {
        assert!(Instant::now() < deadline, "{token} never got {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_token_files_are_read_again_when_the_secret_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first-file-token-0123456789\n").unwrap();
    let env = start_with_auth(&format!("      bearer_token_files: [\"{}\"]", file.display())).await;
    assert_eq!(bearer(&env, "first-file-token-0123456789").await, StatusCode::OK);
    assert_eq!(bearer(&env, TOKEN).await, StatusCode::UNAUTHORIZED);

    // Kubernetes swaps the mounted Secret: the new token works and the old one stops working.
    std::fs::write(&file, "second-file-token-0123456789").unwrap();
    wait_for(&env, "second-file-token-0123456789", StatusCode::OK).await;
    assert_eq!(bearer(&env, "first-file-token-0123456789").await, StatusCode::UNAUTHORIZED);

    // A missing or empty file accepts nothing, not even an empty token.
    std::fs::remove_file(&file).unwrap();
    wait_for(&env, "second-file-token-0123456789", StatusCode::UNAUTHORIZED).await;
    std::fs::write(&file, "  \n").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&env, Some("Bearer ")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&env, Some("Bearer")).await.0, StatusCode::UNAUTHORIZED);
    std::fs::write(&file, "third-file-token-0123456789").unwrap();
    wait_for(&env, "third-file-token-0123456789", StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_basic_credentials_are_accepted_beside_tokens() {
    let env = start_with_auth(
        "      bearer_tokens: [\"${env.TOKEN}\"]\n      basic:\n        - username: okta\n          password: \"okta-basic-password-0123\"",
    )
    .await;
    let basic = |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
    assert_eq!(status(&env, Some(&basic("okta:okta-basic-password-0123"))).await.0, StatusCode::OK);
    assert_eq!(bearer(&env, TOKEN).await, StatusCode::OK, "any configured method may match");
    // Both ways in are published, the token first.
    let spc = env.get("/ServiceProviderConfig").await.body;
    let types: Vec<(&str, bool)> = spc["authenticationSchemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["type"].as_str().unwrap(), s["primary"].as_bool().unwrap()))
        .collect();
    assert_eq!(types, [("oauthbearertoken", true), ("httpbasic", false)]);
    for wrong in ["okta:okta-basic-password-012", "Okta:okta-basic-password-0123", "okta", ""] {
        assert_eq!(status(&env, Some(&basic(wrong))).await.0, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    assert_eq!(status(&env, None).await.0, StatusCode::UNAUTHORIZED);
    // A 401 offers both schemes.
    assert_eq!(challenges(&env, None).await, ["Bearer realm=\"scim\"", "Basic realm=\"scim\", charset=\"UTF-8\""]);
    assert_eq!(
        challenges(&env, Some("Bearer wrong-token-0123456789")).await,
        ["Bearer realm=\"scim\"", "Basic realm=\"scim\", charset=\"UTF-8\""]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_an_app_with_basic_credentials_only_challenges_with_basic_only() {
    // Both apps of the test configuration: the challenge comes before the app is known.
    let env = TestEnv::start_with(|text| {
        let okta = "      basic:\n        - username: okta\n          password: \"okta-basic-password-0123\"";
        let other = "      basic:\n        - username: other\n          password: \"other-basic-password-0123\"";
        text.replacen("      bearer_tokens: [\"${env.TOKEN}\"]", okta, 1).replacen(
            "      bearer_tokens: [\"${env.OTHER_TOKEN}\"]",
            other,
            1,
        )
    })
    .await;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("okta:okta-basic-password-0123"));
    assert_eq!(status(&env, Some(&basic)).await.0, StatusCode::OK);
    assert_eq!(bearer(&env, TOKEN).await, StatusCode::UNAUTHORIZED);
    for authorization in [None, Some("Bearer some-token-0123456789"), Some("Basic b2t0YTp3cm9uZw==")] {
        assert_eq!(
            challenges(&env, authorization).await,
            ["Basic realm=\"scim\", charset=\"UTF-8\""],
            "{authorization:?}"
        );
    }
}

/// Every `WWW-Authenticate` of the answer to `GET /Users`.
async fn challenges(env: &TestEnv, authorization: Option<&str>) -> Vec<String> {
    let mut request = env.client.get(format!("{}/Users", env.base()));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// A signing key made for the test, and its public half as the proxy reads it.
pub(crate) struct SigningKey {
    algorithm: Algorithm,
    pair: KeyPair,
}

impl SigningKey {
    pub(crate) fn es256() -> Self {
        Self { algorithm: Algorithm::ES256, pair: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap() }
    }

    fn es384() -> Self {
        Self { algorithm: Algorithm::ES384, pair: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap() }
    }

    pub(crate) fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_ec_pem(self.pair.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// The public key as a JWK (P-256 only).
    pub(crate) fn jwk(&self, kid: &str) -> Value {
        let point = self.pair.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]), "kid": kid, "alg": "ES256", "use": "sig"})
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub(crate) fn claims() -> Value {
    json!({"sub": "entra-sync", "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

pub(crate) fn jwt_section(keys: &str) -> String {
    format!(
        "      jwt:\n        issuer: \"{ISSUER}\"\n        audiences: [\"{AUDIENCE}\", \"api://other\"]\n        algorithms: [ES256, RS256]\n        leeway: 30s\n{keys}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_jwt_needs_an_allowed_signature_issuer_audience_and_validity() {
    let key = SigningKey::es256();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("idp.pem");
    std::fs::write(&pem, key.pair.public_key_pem()).unwrap();
    let from_jwks = SigningKey::es256();
    let jwks = dir.path().join("idp.jwks.json");
    std::fs::write(&jwks, json!({"keys": [from_jwks.jwk("jwks-key")]}).to_string()).unwrap();
    let keys = format!(
        "        keys:\n          - pem_file: \"{}\"\n          - jwks_file: \"{}\"\n",
        pem.display(),
        jwks.display()
    );
    let env = start_with_auth(&jwt_section(&keys)).await;

    assert_eq!(bearer(&env, &key.sign(&claims(), None)).await, StatusCode::OK);
    assert_eq!(bearer(&env, &from_jwks.sign(&claims(), Some("jwks-key"))).await, StatusCode::OK);
    // The only way in is a JWT from the issuer: published as OAuth 2.0, naming the issuer.
    let url = format!("{}/ServiceProviderConfig", env.base());
    let spc = env.send_as(&key.sign(&claims(), None), reqwest::Method::GET, &url, None).await.body;
    let schemes = spc["authenticationSchemes"].as_array().unwrap();
    assert_eq!(schemes.len(), 1, "{spc}");
    assert_eq!(schemes[0]["type"], "oauth2");
    assert!(schemes[0]["description"].as_str().unwrap().contains(ISSUER), "{spc}");
    // Within the leeway, an expiry just past is still accepted.
    assert_eq!(bearer(&env, &key.sign(&with(claims(), "exp", json!(now() - 10)), None)).await, StatusCode::OK);

    let other_key = SigningKey::es256();
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"a-guessable-shared-secret-0123456789"),
    )
    .unwrap();
    let refused = [
        ("wrong audience", key.sign(&with(claims(), "aud", json!("api://somebody-else")), None)),
        ("wrong issuer", key.sign(&with(claims(), "iss", json!("https://evil.test/")), None)),
        ("expired", key.sign(&with(claims(), "exp", json!(now() - 120)), None)),
        ("not valid yet", key.sign(&with(claims(), "nbf", json!(now() + 600)), None)),
        ("no audience", key.sign(&json!({"sub": "x", "iss": ISSUER, "exp": now() + 600}), None)),
        ("bad signature", other_key.sign(&claims(), None)),
        ("algorithm not allowed", SigningKey::es384().sign(&claims(), None)),
        ("symmetric algorithm not allowed", hmac),
        ("unsigned", unsigned(&claims())),
    ];
    for (case, token) in refused {
        let (status, challenge) = status(&env, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
    }
    // A bearer token that is no JWT is simply not a credential of this app.
    let (status, challenge) = status(&env, Some("Bearer not-a-jwt-at-all-0123456789")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!challenge.unwrap_or_default().contains("invalid_token"));
}

/// A token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

/// An identity provider's JWKS endpoint: serves the keys it holds now and counts the fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    /// When set, every fetch is answered 503.
    failing: Arc<AtomicBool>,
}

impl JwksServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let keys: Arc<Mutex<Vec<Value>>> = Arc::default();
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (served, counted, down) = (keys.clone(), fetches.clone(), failing.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = json!({"keys": *served.lock().unwrap()}).to_string();
                counted.fetch_add(1, Ordering::SeqCst);
                let status = if down.load(Ordering::SeqCst) { "503 Service Unavailable" } else { "200 OK" };
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
                });
            }
        });
        Self { url, keys, fetches, failing }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_jwks_url_is_fetched_once_and_again_for_a_new_key_id_at_most_once_a_minute() {
    let first = SigningKey::es256();
    let jwks = JwksServer::start().await;
    jwks.keys.lock().unwrap().push(first.jwk("key-1"));
    let env = start_with_auth(&jwt_section(&format!("        jwks_url: \"{}\"\n", jwks.url))).await;
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 0, "fetched when first needed");

    assert_eq!(bearer(&env, &first.sign(&claims(), Some("key-1"))).await, StatusCode::OK);
    assert_eq!(bearer(&env, &first.sign(&claims(), Some("key-1"))).await, StatusCode::OK);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "the keys are cached");

    // The identity provider rolls over to a new key: its first token makes the proxy fetch again.
    let second = SigningKey::es256();
    jwks.keys.lock().unwrap().push(second.jwk("key-2"));
    assert_eq!(bearer(&env, &second.sign(&claims(), Some("key-2"))).await, StatusCode::OK);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // Unknown key ids do not make it fetch again within the minute.
    let stranger = SigningKey::es256();
    jwks.keys.lock().unwrap().push(stranger.jwk("key-3"));
    for _ in 0..3 {
        assert_eq!(bearer(&env, &stranger.sign(&claims(), Some("key-3"))).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
    // A key id that exists with the wrong key's signature is a bad signature, not a fetch.
    assert_eq!(bearer(&env, &stranger.sign(&claims(), Some("key-1"))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_jwks_keys_past_their_max_age_are_fetched_again_and_a_withdrawn_key_is_refused() {
    let kept = SigningKey::es256();
    let withdrawn = SigningKey::es256();
    let jwks = JwksServer::start().await;
    jwks.keys.lock().unwrap().extend([kept.jwk("kept"), withdrawn.jwk("withdrawn")]);
    let section = format!("        jwks_url: \"{}\"\n        jwks_max_age: 1s\n", jwks.url);
    let env = start_with_auth(&jwt_section(&section)).await;
    assert_eq!(bearer(&env, &withdrawn.sign(&claims(), Some("withdrawn"))).await, StatusCode::OK);
    assert_eq!(bearer(&env, &kept.sign(&claims(), Some("kept"))).await, StatusCode::OK);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "fresh keys are not fetched again");

    // The identity provider withdraws a key: once the keys held are a second old, the next
    // token (checked against the keys held, as it does not wait) has them fetched again in the
    // background, and once they are in, the withdrawn key is refused.
    jwks.keys.lock().unwrap().retain(|key| key["kid"] == "kept");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while bearer(&env, &withdrawn.sign(&claims(), Some("withdrawn"))).await != StatusCode::UNAUTHORIZED {
        assert!(Instant::now() < deadline, "the withdrawn key is still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "fetched again once, not again for the unknown key id");
    assert_eq!(bearer(&env, &kept.sign(&claims(), Some("kept"))).await, StatusCode::OK);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2);

    // The JWKS cannot be fetched: the keys held stay in use, and it is not asked again at
    // every token but a second on (the max age here is below the minute).
    jwks.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(bearer(&env, &kept.sign(&claims(), Some("kept"))).await, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    while jwks.fetches.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the stale keys were not fetched again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        assert_eq!(bearer(&env, &kept.sign(&claims(), Some("kept"))).await, StatusCode::OK);
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 3, "one failed fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_an_app_without_any_credential_is_a_configuration_error() {
    for (auth, key, says) in [
        ("      bearer_tokens: []", "apps[0].auth.bearer_tokens", "no way to authenticate"),
        ("      bearer_tokens: [\"short\"]", "apps[0].auth.bearer_tokens", "shorter than 16"),
        (
            "      jwt: {issuer: x, audiences: [y], algorithms: [HS256], jwks_url: \"http://127.0.0.1:1/\"}",
            "apps[0].auth.jwt.algorithms",
            "need jwt.shared_secret",
        ),
        (
            "      jwt: {issuer: x, audiences: [y], algorithms: [none]}",
            "apps[0].auth.jwt.algorithms",
            "unknown variant",
        ),
        (
            "      client_certificates: {subjects: [\"CN=x\"]}",
            "apps[0].auth.client_certificates",
            "needs tls.client_ca",
        ),
        (
            "      client_certificates: {subjects: [\"CN=entra-provisioning,O=Acme,\"]}",
            "apps[0].auth.client_certificates.subjects[0]",
            "RFC 4514",
        ),
        (
            "      client_certificates: {dns_names: [\"idp.example.com\", \"*.example.com\"]}",
            "apps[0].auth.client_certificates.dns_names[1]",
            "wildcard",
        ),
        ("      basic: [{username: a, password: short}]", "apps[0].auth.basic[0].password", "shorter than 16"),
    ] {
        let text = crate::support::config_text(std::path::Path::new("app.rhai")).replacen(
            "      bearer_tokens: [\"${env.TOKEN}\"]",
            auth,
            1,
        );
        let mut vars = scim_proxy::config::Variables::default();
        for name in ["TOKEN", "OTHER_TOKEN", "ACME_API_KEY"] {
            vars.set(name, "a-long-enough-secret-0123456789");
        }
        vars.set("ACME_BASE_URL", "http://127.0.0.1:1/api");
        let error = scim_proxy::config::Config::parse(&text, "test.yaml", &vars).unwrap_err().to_string();
        assert!(error.contains(key) && error.contains(says), "{auth}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_a_weak_or_placeholder_token_file_stops_the_start_and_a_weak_rotation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    for weak in ["a\n", "REPLACE_ME\n", "REPLACE_ME_WITH_A_LONG_RANDOM_TOKEN\n", "changeme-changeme-changeme"] {
        std::fs::write(&file, weak).unwrap();
        let text = crate::support::config_text(&crate::support::repo_file("scripts/demo.rhai")).replacen(
            "      bearer_tokens: [\"${env.TOKEN}\"]",
            &format!("      bearer_token_files: [\"{}\"]", file.display()),
            1,
        );
        let error = crate::support::start_error(&text).await;
        assert!(error.contains("auth.bearer_token_files[0]") && error.contains(&file.display().to_string()), "{error}");
        assert!(!error.contains(weak.trim()) || weak.trim().len() < 3, "the token itself is not echoed: {error}");
    }

    // A good token, then a rotation to a placeholder: refused, the good token stays in use.
    std::fs::write(&file, "good-file-token-0123456789").unwrap();
    let env = start_with_auth(&format!("      bearer_token_files: [\"{}\"]", file.display())).await;
    assert_eq!(bearer(&env, "good-file-token-0123456789").await, StatusCode::OK);
    std::fs::write(&file, "REPLACE_ME_WITH_THE_NEW_TOKEN").unwrap();
    // The file is looked at by requests, once a second at most.
    let path = file.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::support::log_lines_with(&["bearer token file refused", "placeholder", &path]).is_empty() {
        assert!(Instant::now() < deadline, "the placeholder was not refused in the log");
        assert_eq!(bearer(&env, "good-file-token-0123456789").await, StatusCode::OK, "the good token stays in use");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bearer(&env, "REPLACE_ME_WITH_THE_NEW_TOKEN").await, StatusCode::UNAUTHORIZED);
    assert_eq!(bearer(&env, "good-file-token-0123456789").await, StatusCode::OK);
}

/// The test proxy accepting JWTs signed by `key` with the key id `the-key`, read from a JWKS
/// file (kept in the returned folder).
async fn start_with_jwks_file(key: &SigningKey) -> (tempfile::TempDir, TestEnv) {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("idp.jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk("the-key")]}).to_string()).unwrap();
    let env =
        start_with_auth(&jwt_section(&format!("        keys:\n          - jwks_file: \"{}\"\n", jwks.display()))).await;
    (dir, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_a_huge_kid_or_alg_is_echoed_bounded_in_the_answer_and_the_log() {
    let key = SigningKey::es256();
    // Keys by id only, so that an unknown id is refused by name.
    let (_dir, env) = start_with_jwks_file(&key).await;
    let huge = "k\u{7}\"".repeat(30_000);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let forged_alg = format!("{}.{}.c2ln", b64(json!({"alg": huge, "typ": "JWT"}).to_string().as_bytes()), b64(b"{}"));
    for (token, says) in [(key.sign(&claims(), Some(&huge)), "no key with id"), (forged_alg, "algorithm")] {
        let id = format!("huge-{}", uuid::Uuid::new_v4());
        let response = env
            .client
            .get(format!("{}/Users", env.base()))
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = response.text().await.unwrap();
        assert!(body.contains(says) && body.contains("bytes)"), "{body}");
        assert!(body.len() < 1024, "the answer echoes {} bytes", body.len());
        let lines = crate::support::log_lines_with(&[id.as_str()]);
        assert!(!lines.is_empty());
        for line in lines {
            assert!(line.len() < 2048, "a log line of {} bytes", line.len());
            assert!(!line.contains('\u{7}'), "control characters are escaped");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_a_jwt_with_critical_extensions_is_refused() {
    let key = SigningKey::es256();
    let (_dir, env) = start_with_jwks_file(&key).await;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signed = |header: Value| {
        let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims().to_string().as_bytes()));
        let pem = EncodingKey::from_ec_pem(key.pair.serialize_pem().as_bytes()).unwrap();
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &pem, Algorithm::ES256).unwrap();
        format!("{message}.{signature}")
    };
    // The same header without `crit` is accepted: only the extension is the reason.
    let plain = signed(json!({"alg": "ES256", "typ": "JWT", "kid": "the-key"}));
    assert_eq!(bearer(&env, &plain).await, StatusCode::OK);
    for crit in [json!(["x-unknown"]), json!([])] {
        let token = signed(json!({"alg": "ES256", "typ": "JWT", "kid": "the-key", "crit": crit, "x-unknown": true}));
        let (status, _) = status(&env, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "crit {crit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_a_pem_key_without_kid_does_not_shadow_the_jwks_keys() {
    let local = SigningKey::es256();
    let remote = SigningKey::es256();
    let stranger = SigningKey::es256();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("local.pem");
    std::fs::write(&pem, local.pair.public_key_pem()).unwrap();
    let jwks = JwksServer::start().await;
    jwks.keys.lock().unwrap().push(remote.jwk("remote-1"));
    let keys =
        format!("        keys:\n          - pem_file: \"{}\"\n        jwks_url: \"{}\"\n", pem.display(), jwks.url);
    let env = start_with_auth(&jwt_section(&keys)).await;
    // Both sources sign: the PEM (no kid, so it fits any token) does not stop the search.
    assert_eq!(bearer(&env, &remote.sign(&claims(), Some("remote-1"))).await, StatusCode::OK);
    assert_eq!(bearer(&env, &local.sign(&claims(), Some("remote-1"))).await, StatusCode::OK);
    assert_eq!(bearer(&env, &local.sign(&claims(), None)).await, StatusCode::OK);
    // A key that neither holds is still refused, as a bad signature.
    let refused = stranger.sign(&claims(), Some("remote-1"));
    assert_eq!(bearer(&env, &refused).await, StatusCode::UNAUTHORIZED);
    // And a good signature with a wrong claim is refused whichever source verified it.
    let expired = with(claims(), "exp", json!(now() - 3600));
    assert_eq!(bearer(&env, &remote.sign(&expired, Some("remote-1"))).await, StatusCode::UNAUTHORIZED);
}
