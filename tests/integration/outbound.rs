//! Calls to the legacy app over TLS (private CA, mutual TLS) and with credentials (Basic,
//! bearer, OAuth2 client credentials), against a legacy app on a real socket.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

use crate::support::{TestEnv, logs};

/// The first app's legacy block in the test configuration, which these tests replace.
const LEGACY_BLOCK: &str = "    legacy:
      base_url: \"${env.ACME_BASE_URL}\"
      headers:
        X-Api-Key: \"${env.ACME_API_KEY}\"
      timeout: 5s
";

/// A mapping that reads one user from the legacy app; `list_users` shows the kind of a fault.
const SCRIPT: &str = r#"
fn get_user(id) {
    let response = legacy.get(["users", id]);
    if response.status != 200 {
        throw #{ status: 502, detail: `the legacy app answered ${response.status}` };
    }
    #{ id: `${response.json.id}`, userName: response.json.login, active: true }
}

fn list_users(query) {
    try {
        legacy.get("/users");
    } catch (error) {
        if type_of(error) == "map" {
            throw #{ status: 503, detail: `caught ${error.legacy_error}` };
        }
        throw error;
    }
    []
}
"#;

/// Starts the proxy with the test script and the first app's legacy block replaced by `legacy`
/// (YAML at the indentation of the keys under `legacy:`).
pub(crate) async fn proxy_with(legacy: &str) -> TestEnv {
    let block = format!("    legacy:\n{legacy}");
    TestEnv::start_script(Some(SCRIPT), |text| {
        assert!(text.contains(LEGACY_BLOCK), "the test configuration changed");
        text.replacen(LEGACY_BLOCK, &block, 1)
    })
    .await
}

/// A unique text, so a test can look for it in the logs shared by every test of the binary.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------------------
// Certificates

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses): (certificate PEM, key PEM).
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as files.
struct Pki {
    ca: Ca,
    server: (String, String),
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let ca = Ca::new("scim-proxy test CA");
        let server = ca.issue(&["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = ca.issue(&["scim-proxy"], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = tempfile::tempdir().unwrap();
        let pki = Self { ca, server, dir };
        pki.write("ca.pem", &pki.ca.pem());
        pki.write("client.pem", &client_cert);
        pki.write("client.key", &client_key);
        pki
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The YAML lines of the CA file and the client certificate.
    fn trust_and_identity(&self) -> String {
        format!(
            "      ca_file: \"{}\"\n      client_certificate:\n        cert: \"{}\"\n        key: \"{}\"\n",
            self.path("ca.pem"),
            self.path("client.pem"),
            self.path("client.key")
        )
    }
}

// ---------------------------------------------------------------------------------------
// The legacy app

/// What the fake legacy app does; built as a sentence, e.g.
/// `FakeLegacy::new().tls(&pki).requiring_client_certificates().start()`.
#[derive(Default, Clone)]
pub(crate) struct FakeLegacy {
    /// Serve HTTPS with this certificate and key (PEM).
    tls: Option<(String, String)>,
    /// Require client certificates issued by this CA (PEM).
    client_ca: Option<String>,
    /// The API accepts only tokens from the token endpoint.
    oauth2: Option<TokenPolicy>,
}

/// How the fake token endpoint behaves.
#[derive(Clone)]
struct TokenPolicy {
    /// `client_id:client_secret` the endpoint accepts.
    client: (String, String),
    expires_in: u64,
    /// The API refuses this many of the first tokens issued (as after a key rotation on its side).
    refused_tokens: usize,
    /// The endpoint refuses every request with `401 invalid_client`.
    refuse: bool,
    /// Each token is `<prefix>-<n>`.
    prefix: String,
}

impl TokenPolicy {
    fn new(client_id: &str, secret: &str) -> Self {
        Self {
            client: (client_id.into(), secret.into()),
            expires_in: 3600,
            refused_tokens: 0,
            refuse: false,
            prefix: unique("access-token"),
        }
    }
}

/// What the fake legacy app saw.
#[derive(Default)]
struct Seen {
    /// The `Authorization` header of each API call (`-` when absent).
    authorizations: Mutex<Vec<String>>,
    /// Token requests: (`Authorization` header, form body).
    token_requests: Mutex<Vec<(String, String)>>,
    tokens_issued: AtomicUsize,
    /// Failed TLS handshakes, as the server saw them.
    handshake_errors: Mutex<Vec<String>>,
    /// The `User-Agent`, `Host`, `Accept` and `X-Request-Id` headers of each API call.
    heads: Mutex<Vec<[String; 4]>>,
}

pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    seen: Arc<Seen>,
    policy: Option<TokenPolicy>,
}

impl Running {
    fn scheme(&self, tls: bool) -> &'static str {
        if tls { "https" } else { "http" }
    }

    fn token_requests(&self) -> usize {
        self.seen.token_requests.lock().unwrap().len()
    }

    pub(crate) fn authorizations(&self) -> Vec<String> {
        self.seen.authorizations.lock().unwrap().clone()
    }
}

impl FakeLegacy {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn tls(mut self, pki: &Pki) -> Self {
        self.tls = Some(pki.server.clone());
        self
    }

    fn tls_with(mut self, cert_and_key: (String, String)) -> Self {
        self.tls = Some(cert_and_key);
        self
    }

    fn requiring_client_certificates(mut self, pki: &Pki) -> Self {
        self.client_ca = Some(pki.ca.pem());
        self
    }

    fn with_tokens(mut self, policy: TokenPolicy) -> Self {
        self.oauth2 = Some(policy);
        self
    }

    pub(crate) async fn start(self) -> Running {
        let acceptor = self.tls.as_ref().map(|(cert, key)| tls_acceptor(cert, key, self.client_ca.as_deref()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = Arc::new(State { seen: seen.clone(), policy: self.oauth2.clone(), valid: Mutex::default() });
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let service = {
                        let state = state.clone();
                        hyper::service::service_fn(move |request| answer(state.clone(), request))
                    };
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                            Err(e) => state.seen.handshake_errors.lock().unwrap().push(e.to_string()),
                        },
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Running { addr, seen, policy: self.oauth2 }
    }
}

fn tls_acceptor(cert: &str, key: &str, client_ca: Option<&str>) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions();
    let builder = builder.unwrap();
    let config = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = config.with_single_cert(certs.unwrap(), key).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

use rustls::pki_types::pem::PemObject as _;

struct State {
    seen: Arc<Seen>,
    policy: Option<TokenPolicy>,
    /// Tokens the API accepts.
    valid: Mutex<HashSet<String>>,
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The fake legacy app: `POST /oauth/token` and `GET /api/users/{id}`.
async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let path = request.uri().path().to_owned();
    if path == "/oauth/token" {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let form = String::from_utf8_lossy(&body).into_owned();
        state.seen.token_requests.lock().unwrap().push((authorization.clone(), form.clone()));
        let Some(policy) = &state.policy else { return Ok(reply(404, json!({}))) };
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes()).into_owned().collect();
        let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let by_header = basic_credentials(&authorization) == Some(policy.client.clone());
        let by_body = param("client_id").as_deref() == Some(&policy.client.0)
            && param("client_secret").as_deref() == Some(&policy.client.1);
        if policy.refuse || !(by_header || by_body) || param("grant_type").as_deref() != Some("client_credentials") {
            return Ok(reply(
                401,
                json!({"error": "invalid_client", "error_description": "client authentication failed"}),
            ));
        }
        let n = state.seen.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("{}-{n}", policy.prefix);
        if n > policy.refused_tokens {
            state.valid.lock().unwrap().insert(token.clone());
        }
        return Ok(reply(200, json!({"access_token": token, "token_type": "Bearer", "expires_in": policy.expires_in})));
    }
    state.seen.authorizations.lock().unwrap().push(authorization.clone());
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    state.seen.heads.lock().unwrap().push([
        header("user-agent"),
        header("host"),
        header("accept"),
        header("x-request-id"),
    ]);
    if state.policy.is_some() {
        let token = authorization.strip_prefix("Bearer ").unwrap_or("");
        if !state.valid.lock().unwrap().contains(token) {
            return Ok(reply(401, json!({"error": "invalid_token"})));
        }
    }
    match path.strip_prefix("/api/users/") {
        Some(id) => Ok(reply(200, json!({"id": id.parse::<u64>().unwrap_or(0), "login": format!("user{id}")}))),
        None if path == "/api/users" => Ok(reply(200, json!([]))),
        None => Ok(reply(404, json!({}))),
    }
}

/// The client id and secret of an HTTP Basic header, each form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode =
        |text: &str| url::form_urlencoded::parse(format!("x={text}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((form_decode(id)?, form_decode(secret)?))
}

/// The legacy lines for a fake app: its base URL and, with tokens, its token endpoint.
fn legacy_lines(legacy: &Running, tls: bool) -> String {
    let scheme = legacy.scheme(tls);
    let mut lines = format!("      base_url: \"{scheme}://{}/api\"\n      timeout: 5s\n", legacy.addr);
    if let Some(policy) = &legacy.policy {
        lines.push_str(&format!(
            "      auth:\n        oauth2:\n          token_url: \"{scheme}://{}/oauth/token\"\n          client_id: \"{}\"\n          client_secret: \"{}\"\n          scope: \"users:rw\"\n          refresh_before: 0s\n",
            legacy.addr, policy.client.0, policy.client.1
        ));
    }
    lines
}

/// Asserts a SCIM error answer of this status whose detail says `says`.
pub(crate) fn assert_detail(reply: &crate::support::Reply, status: u16, says: &str) {
    reply.assert_error(status, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains(says), "detail {detail:?} should say {says:?}");
}

// ---------------------------------------------------------------------------------------
// TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mutual_tls_with_the_right_ca_and_client_certificate_works() {
    let pki = Pki::new();
    let secret = unique("client-secret");
    let legacy = FakeLegacy::new()
        .tls(&pki)
        .requiring_client_certificates(&pki)
        .with_tokens(TokenPolicy::new("proxy-client", &secret))
        .start()
        .await;
    // The token endpoint sits behind the same private CA and client-certificate check.
    let env = proxy_with(&format!("{}{}", legacy_lines(&legacy, true), pki.trust_and_identity())).await;
    let reply = env.get("/Users/7").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["userName"], "user7");
    assert_eq!(legacy.token_requests(), 1);
    assert!(legacy.seen.handshake_errors.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_an_untrusted_legacy_certificate_is_a_clear_502() {
    let pki = Pki::new();
    let legacy = FakeLegacy::new().tls(&pki).start().await;
    let base = legacy_lines(&legacy, true);

    // A CA file of another CA: the legacy app's certificate is not trusted.
    let other = Ca::new("another CA");
    let other_ca = pki.write("other-ca.pem", &other.pem());
    let env = proxy_with(&format!("{base}      ca_file: \"{}\"\n", other_ca.display())).await;
    let reply = env.get("/Users/1").await;
    assert_detail(&reply, 502, "certificate of the application behind this SCIM endpoint is not trusted");
    assert!(reply.header("retry-after").is_none(), "a certificate problem does not go away by retrying");
    let log = logs();
    let line = log
        .lines()
        .find(|l| l.contains("TLS with the legacy app failed") && l.contains(&legacy.addr.to_string()))
        .unwrap_or_else(|| panic!("no TLS log line for {}", legacy.addr));
    assert!(line.contains("app=\"acme\"") || line.contains("app=acme"), "{line}");
    assert!(line.contains("not signed by a trusted CA"), "{line}");
    // A script sees the fault as `legacy_error: "tls"`.
    assert_detail(&env.get("/Users").await, 503, "caught tls");

    // Without a CA file only the built-in public roots are trusted, which the test CA is not.
    let env = proxy_with(&base).await;
    assert_detail(&env.get("/Users/1").await, 502, "is not trusted");

    // A certificate of the right CA for another name.
    let elsewhere = FakeLegacy::new().tls_with(pki.ca.issue(&["elsewhere.test"], ExtendedKeyUsagePurpose::ServerAuth));
    let elsewhere = elsewhere.start().await;
    let env =
        proxy_with(&format!("{}      ca_file: \"{}\"\n", legacy_lines(&elsewhere, true), pki.path("ca.pem"))).await;
    assert_detail(&env.get("/Users/1").await, 502, "is not trusted");
    assert!(
        logs().lines().any(|l| l.contains(&elsewhere.addr.to_string()) && l.contains("not valid for the host name"))
    );

    // A token endpoint whose certificate fails: no token, a 502 that no retry would mend.
    let env = proxy_with(&format!(
        "{base}      ca_file: \"{}\"\n      auth:\n        oauth2: {{token_url: \"https://{}/oauth/token\", client_id: c, client_secret: s}}\n",
        pki.path("ca.pem"),
        elsewhere.addr
    ))
    .await;
    let reply = env.get("/Users/1").await;
    assert_detail(&reply, 502, "cannot get an access token");
    assert!(reply.header("retry-after").is_none());
    assert!(
        logs().lines().any(|l| l.contains("cannot get an access token") && l.contains("not valid for the host name"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_without_the_client_certificate_the_handshake_fails_with_502() {
    let pki = Pki::new();
    let legacy = FakeLegacy::new().tls(&pki).requiring_client_certificates(&pki).start().await;
    let env = proxy_with(&format!("{}      ca_file: \"{}\"\n", legacy_lines(&legacy, true), pki.path("ca.pem"))).await;
    let reply = env.get("/Users/1").await;
    assert_detail(&reply, 502, "refused the proxy's TLS client certificate");
    assert!(
        logs().lines().any(|l| l.contains(&legacy.addr.to_string()) && l.contains("requires a client certificate")),
        "the log says what is missing"
    );
    assert!(!legacy.seen.handshake_errors.lock().unwrap().is_empty(), "the legacy app refused the handshake");

    // A client certificate from a CA the legacy app does not know is refused too.
    let stranger = Ca::new("stranger CA");
    let (cert, key) = stranger.issue(&["scim-proxy"], ExtendedKeyUsagePurpose::ClientAuth);
    let (cert, key) = (pki.write("stranger.pem", &cert), pki.write("stranger.key", &key));
    let env = proxy_with(&format!(
        "{}      ca_file: \"{}\"\n      client_certificate: {{cert: \"{}\", key: \"{}\"}}\n",
        legacy_lines(&legacy, true),
        pki.path("ca.pem"),
        cert.display(),
        key.display()
    ))
    .await;
    assert_detail(&env.get("/Users/1").await, 502, "refused the proxy's TLS client certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_insecure_skip_verify_connects_and_says_so_at_every_start() {
    let pki = Pki::new();
    let legacy = FakeLegacy::new().tls(&pki).start().await;
    let before = logs().matches("insecure_skip_verify is on").count();
    let mut env = proxy_with(&format!("{}      insecure_skip_verify: true\n", legacy_lines(&legacy, true))).await;
    let reply = env.get("/Users/3").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ready: Value = env.client.get(format!("{}/readyz", env.admin())).send().await.unwrap().json().await.unwrap();
    let warnings = ready["apps"][0]["warnings"].to_string();
    assert!(warnings.contains("insecure_skip_verify"), "{ready}");
    let others = ready["apps"][1]["warnings"].to_string();
    assert!(!others.contains("insecure_skip_verify"), "{ready}");
    env.restart_proxy().await;
    let warned = logs().lines().filter(|l| l.contains("insecure_skip_verify is on") && l.contains("acme")).count();
    assert!(warned >= before + 2, "one warning per start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_unreadable_tls_files_stop_the_start_with_the_key_named() {
    let pki = Pki::new();
    let not_pem = pki.write("not-a-ca.pem", "hello");
    let cases = [
        (format!("      ca_file: \"{}\"\n", pki.path("missing.pem")), "ca_file"),
        (format!("      ca_file: \"{}\"\n", not_pem.display()), "holds no certificate"),
        (
            format!(
                "      client_certificate: {{cert: \"{}\", key: \"{}\"}}\n",
                pki.path("client.pem"),
                pki.path("ca.pem")
            ),
            "client_certificate",
        ),
    ];
    for (lines, says) in cases {
        let text = crate::support::config_text(Path::new("unused.rhai")).replacen(
            LEGACY_BLOCK,
            &format!("    legacy:\n      base_url: \"https://127.0.0.1:1/api\"\n{lines}"),
            1,
        );
        let mut vars = scim_proxy::config::Variables::offline();
        vars.set("ACME_BASE_URL", "http://127.0.0.1:1");
        let config = scim_proxy::config::Config::parse(&text, "test.yaml", &vars).unwrap();
        let mut config = config;
        config.apps[0].script = crate::support::repo_file("scripts/demo.rhai");
        config.apps[1].script = crate::support::repo_file("scripts/demo.rhai");
        let error = match scim_proxy::runtime::start(&config, None, None).await {
            Ok(_) => panic!("the start should fail for {lines}"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("acme") && error.contains(says), "{error} should say {says}");
    }
}

// ---------------------------------------------------------------------------------------
// Credentials

/// A plain-HTTP base URL is called through hyper's client, an HTTPS one through reqwest: the
/// legacy app sees the same request either way, naming the proxy and the request it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_over_http_and_https_carry_the_same_headers() {
    let pki = Pki::new();
    for tls in [false, true] {
        let legacy = if tls { FakeLegacy::new().tls(&pki).start().await } else { FakeLegacy::new().start().await };
        let trust = if tls { pki.trust_and_identity() } else { String::new() };
        let env = proxy_with(&format!("{}{trust}", legacy_lines(&legacy, tls))).await;
        let reply = env
            .client
            .get(format!("{}/Users/7", env.base()))
            .bearer_auth(crate::support::TOKEN)
            .header("x-request-id", "req-outbound-7")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "tls {tls}");
        let heads = legacy.seen.heads.lock().unwrap().clone();
        let expected = [
            concat!("scim-proxy/", env!("CARGO_PKG_VERSION")).to_owned(),
            legacy.addr.to_string(),
            "application/json".to_owned(),
            "req-outbound-7".to_owned(),
        ];
        assert_eq!(heads, vec![expected], "tls {tls}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_basic_and_bearer_credentials_reach_the_legacy_app() {
    let legacy = FakeLegacy::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret:with colon\n").unwrap();
    let env = proxy_with(&format!(
        "{}      auth:\n        basic: {{username: svc-scim, password: \"${{file.{}}}\"}}\n",
        legacy_lines(&legacy, false),
        password_file.display()
    ))
    .await;
    assert_eq!(env.get("/Users/1").await.status, StatusCode::OK);
    let expected = base64::engine::general_purpose::STANDARD.encode("svc-scim:s3cret:with colon");
    assert_eq!(legacy.authorizations(), vec![format!("Basic {expected}")]);

    let legacy = FakeLegacy::new().start().await;
    let env = proxy_with(&format!(
        "{}      auth:\n        bearer: {{token: fixed-token-42}}\n",
        legacy_lines(&legacy, false)
    ))
    .await;
    assert_eq!(env.get("/Users/1").await.status, StatusCode::OK);
    assert_eq!(env.get("/Users/2").await.status, StatusCode::OK);
    assert_eq!(legacy.authorizations(), vec!["Bearer fixed-token-42", "Bearer fixed-token-42"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_oauth2_token_is_fetched_once_and_shared() {
    let secret = unique("client-secret");
    let policy = TokenPolicy::new("proxy client", &secret);
    let prefix = policy.prefix.clone();
    let legacy = FakeLegacy::new().with_tokens(policy).start().await;
    let env = proxy_with(&legacy_lines(&legacy, false)).await;
    // Concurrent first requests wait for the same fetch.
    let mut requests = tokio::task::JoinSet::new();
    for id in 1..=8 {
        let (client, url) = (env.client.clone(), format!("{}/Users/{id}", env.base()));
        requests.spawn(async move {
            crate::support::Reply::read(client.get(url).bearer_auth(crate::support::TOKEN).send().await.unwrap()).await
        });
    }
    let mut bodies = String::new();
    while let Some(reply) = requests.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        bodies.push_str(&reply.text);
    }
    for id in 10..20 {
        let reply = env.get(&format!("/Users/{id}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        bodies.push_str(&reply.text);
    }
    assert_eq!(legacy.token_requests(), 1, "one token for every call");
    assert!(legacy.authorizations().iter().all(|a| a == &format!("Bearer {prefix}-1")));
    // The token request: client credentials grant, client authenticated by HTTP Basic with
    // form-encoded id and secret (RFC 6749 §2.3.1), the scope asked for.
    let (authorization, form) = legacy.seen.token_requests.lock().unwrap()[0].clone();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("proxy+client:{secret}"));
    assert_eq!(authorization, format!("Basic {basic}"));
    assert_eq!(form, "grant_type=client_credentials&scope=users%3Arw");
    assert!(!bodies.contains(&secret) && !bodies.contains(&prefix));
    let log = logs();
    assert!(!log.contains(&secret) && !log.contains(&prefix), "a secret or a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_oauth2_token_is_renewed_after_expiry_and_once_on_401() {
    let secret = unique("client-secret");
    let mut policy = TokenPolicy::new("proxy-client", &secret);
    policy.expires_in = 1;
    policy.refused_tokens = 1;
    let prefix = policy.prefix.clone();
    let legacy = FakeLegacy::new().with_tokens(policy).start().await;
    let lines =
        legacy_lines(&legacy, false).replace("          scope:", "          client_auth: body\n          scope:");
    let env = proxy_with(&lines).await;

    // The first token is refused: the proxy gets a new one and sends the call once more.
    let reply = env.get("/Users/1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(legacy.token_requests(), 2);
    assert_eq!(legacy.authorizations(), vec![format!("Bearer {prefix}-1"), format!("Bearer {prefix}-2")]);
    // With `client_auth: body` the credentials are in the form, not in a header.
    let (authorization, form) = legacy.seen.token_requests.lock().unwrap()[0].clone();
    assert_eq!(authorization, "-");
    assert!(form.contains("client_id=proxy-client") && form.contains(&format!("client_secret={secret}")), "{form}");

    // The token lives one second (renewed at expiry with refresh_before 0s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(env.get("/Users/2").await.status, StatusCode::OK);
    assert_eq!(legacy.token_requests(), 3, "an expired token is replaced before the call");
    assert_eq!(legacy.authorizations().last().unwrap(), &format!("Bearer {prefix}-3"));
    let log = logs();
    assert!(!log.contains(&secret) && !log.contains(&prefix), "a secret or a token was logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_oauth2_a_second_401_reaches_the_script() {
    let mut policy = TokenPolicy::new("proxy-client", &unique("client-secret"));
    policy.refused_tokens = usize::MAX;
    let legacy = FakeLegacy::new().with_tokens(policy).start().await;
    let env = proxy_with(&legacy_lines(&legacy, false)).await;
    assert_detail(&env.get("/Users/1").await, 502, "the legacy app answered 401");
    assert_eq!(legacy.token_requests(), 2, "one renewal, not a loop");
    assert_eq!(legacy.authorizations().len(), 2, "the call and its one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_oauth2_token_endpoint_failures_are_clear_and_secret() {
    let secret = unique("client-secret");
    let mut policy = TokenPolicy::new("proxy-client", &secret);
    policy.refuse = true;
    let legacy = FakeLegacy::new().with_tokens(policy).start().await;
    let env = proxy_with(&legacy_lines(&legacy, false)).await;
    let reply = env.get("/Users/1").await;
    assert_detail(&reply, 502, "cannot get an access token");
    assert!(reply.header("retry-after").is_none(), "refused credentials need a fix, not a retry");
    assert!(legacy.authorizations().is_empty(), "no call without a token");
    assert!(!reply.text.contains(&secret));
    let log = logs();
    let line = log
        .lines()
        .find(|l| l.contains("cannot get an access token") && l.contains(&legacy.addr.to_string()))
        .expect("a log line for the failed token request");
    assert!(line.contains("401") && line.contains("invalid_client"), "{line}");
    assert!(!log.contains(&secret), "the client secret was logged");
    // A script sees it as `legacy_error: "token"`.
    assert_detail(&env.get("/Users").await, 503, "caught token");

    // An unreachable token endpoint may come back: 503 with Retry-After.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let lines = legacy_lines(&legacy, false)
        .replace(&format!("http://{}/oauth/token", legacy.addr), &format!("http://{dead}/oauth/token"));
    let env = proxy_with(&lines).await;
    let reply = env.get("/Users/1").await;
    assert_detail(&reply, 503, "cannot get an access token");
    assert!(reply.header("retry-after").is_some());
}

// ---------------------------------------------------------------------------------------
// Configuration as documented

/// `scim-proxy test` runs a mapping against a plain-HTTP stand-in: an app's certificates and
/// token endpoint, which need not exist where the mapping is tested, are left out.
#[test]
fn outbound_scim_proxy_test_needs_neither_certificates_nor_token_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
apps:
  - name: acme
    base_path: /scim/v2
    script: "{}"
    auth:
      bearer_tokens: ["${{env.SCIM_TOKEN}}"]
    legacy:
      base_url: https://hr.internal:8443/api/v1
      ca_file: certs/missing-ca.pem
      client_certificate: {{cert: certs/missing.pem, key: certs/missing.key}}
      auth:
        oauth2:
          token_url: https://login.invalid/oauth2/token
          client_id: scim-proxy
          client_secret: "${{env.HR_CLIENT_SECRET}}"
"#,
            crate::support::repo_file("scripts/demo.rhai").display()
        ),
    )
    .unwrap();
    let cases = dir.path().join("one.test.yaml");
    std::fs::write(
        &cases,
        r#"
cases:
  - name: read one user
    request: {call: GET /Users/7?excludedAttributes=groups}
    legacy:
      - call: GET /users/7
        reply: {body: {id: 7, login: bjensen, enabled: true}}
    expect: {status: 200, body: {id: "7", userName: bjensen}}
"#,
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scim-proxy"))
        .arg("test")
        .arg("--config")
        .arg(&config)
        .arg("--file")
        .arg(&cases)
        .env_remove("SCIM_TOKEN")
        .env_remove("HR_CLIENT_SECRET")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed, 0 failed"), "{text}");
}

/// The TLS and OAuth2 example of docs/operations.md is a valid `legacy` block.
#[test]
fn outbound_the_readme_example_is_valid() {
    let readme = std::fs::read_to_string(crate::support::repo_file("docs/operations.md")).unwrap();
    let start =
        readme.find("```yaml\n    legacy:\n      base_url: https://").expect("the operations guide's TLS example");
    let block = &readme[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let text = crate::support::config_text(Path::new("unused.rhai")).replacen(LEGACY_BLOCK, block, 1);
    let config = scim_proxy::config::Config::parse(&text, "operations.md", &scim_proxy::config::Variables::offline())
        .unwrap_or_else(|e| panic!("{e}"));
    let legacy = &config.apps[0].legacy;
    assert!(legacy.ca_file.is_some() && legacy.client_certificate.is_some());
    assert!(legacy.auth.as_ref().unwrap().oauth2.is_some());
}
