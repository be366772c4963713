//! TLS on the SCIM listener: HTTPS over HTTP/1.1 and h2, TLS 1.2+ only, certificate rotation
//! without restart, handshakes that cannot hold up others, and client certificates per app.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{OTHER_TOKEN, TOKEN, TestEnv};

/// A test certificate authority that issues server and client certificates.
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

/// A certificate and its private key, as PEM.
pub(crate) struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// The certificate followed by its key, as reqwest's `Identity::from_pem` takes them.
    pub(crate) fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert, self.key).as_bytes()).unwrap()
    }
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Self { issuer: Issuer::new(params, key), ca_pem }
    }

    /// A server certificate for 127.0.0.1 and localhost, with this common name.
    pub(crate) fn server(&self, common_name: &str) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, common_name)
    }

    /// A server certificate like [`Pki::server`] that expires `days` from now.
    pub(crate) fn server_expiring_in(&self, common_name: &str, days: i64) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        self.issue(params, common_name)
    }

    /// A client certificate with this common name and DNS names.
    pub(crate) fn client(&self, common_name: &str, dns_names: &[&str]) -> Issued {
        let names: Vec<String> = dns_names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, common_name)
    }

    /// A client certificate whose subject holds exactly these attributes, one per RDN, in this
    /// order of the DER encoding (the reverse of RFC 4514 text), with these DNS names.
    pub(crate) fn client_with_subject(&self, subject: &[(DnType, DnValue)], dns_names: &[&str]) -> Issued {
        let names: Vec<String> = dns_names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            // A type pushed twice would replace the first value: a second common name is
            // written with its OID as a custom type.
            assert!(params.distinguished_name.get(kind).is_none(), "{kind:?} twice");
            params.distinguished_name.push(kind.clone(), value.clone());
        }
        self.sign(params)
    }

    fn issue(&self, mut params: CertificateParams, common_name: &str) -> Issued {
        params.distinguished_name.push(DnType::CommonName, common_name);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// Files of a TLS setup: the served pair and the client CA bundle.
struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(server: &Issued, client_ca: Option<&str>) -> Self {
        let files = Self { dir: tempfile::tempdir().unwrap() };
        files.write_pair(server);
        if let Some(ca) = client_ca {
            std::fs::write(files.path("client-ca.pem"), ca).unwrap();
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_pair(&self, pair: &Issued) {
        std::fs::write(self.path("tls.crt"), &pair.cert).unwrap();
        std::fs::write(self.path("tls.key"), &pair.key).unwrap();
    }

    /// The `tls:` section of the configuration.
    fn config(&self, reload_interval: &str, client_ca: bool) -> String {
        let mut text = format!(
            "\ntls:\n  cert: \"{}\"\n  key: \"{}\"\n  reload_interval: {reload_interval}\n",
            self.path("tls.crt").display(),
            self.path("tls.key").display()
        );
        if client_ca {
            text.push_str(&format!("  client_ca: \"{}\"\n", self.path("client-ca.pem").display()));
        }
        text
    }
}

fn scim_addr(env: &TestEnv) -> SocketAddr {
    env.proxy.as_ref().unwrap().scim_addr
}

fn https_base(env: &TestEnv) -> String {
    format!("https://127.0.0.1:{}/scim/v2", scim_addr(env).port())
}

/// A client that trusts only the test CA; no pooling, so each request makes a new handshake.
fn https_client(pki: &Pki) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .no_proxy()
}

/// The common name of the certificate the server presented.
fn served_common_name(response: &reqwest::Response) -> String {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    let der = info.peer_certificate().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned()
}

/// The common name served to a new client: a client of its own, so no TLS session is resumed
/// (a resumed session is not shown a certificate at all).
async fn served_name(pki: &Pki, url: &str) -> String {
    let client = https_client(pki).http1_only().build().unwrap();
    let response = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    served_common_name(&response)
}

/// A rustls client that offers exactly these protocol versions.
fn raw_tls_client(pki: &Pki, versions: &[&'static rustls::SupportedProtocolVersion]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn start_tls(pki: &Pki, name: &str, reload_interval: &str) -> (TestEnv, TlsFiles) {
    let files = TlsFiles::new(&pki.server(name), None);
    let section = files.config(reload_interval, false);
    let env = TestEnv::start_with(|text| format!("{text}{section}")).await;
    (env, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_scim_over_https_with_http1_and_h2() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_tls(&pki, "scim-proxy-1", "10s").await;
    let url = format!("{}/Users", https_base(&env));
    let created = https_client(&pki)
        .http1_only()
        .build()
        .unwrap()
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(crate::support::user("tls-user").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.version(), reqwest::Version::HTTP_11);
    assert_eq!(created.status(), StatusCode::CREATED);
    // Locations name the scheme the client used.
    let location = created.headers().get("location").unwrap().to_str().unwrap().to_owned();
    assert!(location.starts_with("https://127.0.0.1:"), "{location}");

    // ALPN picks h2 when the client offers it.
    let h2 = https_client(&pki).build().unwrap();
    let listed = h2.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(listed.version(), reqwest::Version::HTTP_2);
    assert_eq!(listed.status(), StatusCode::OK);
    let body: serde_json::Value = listed.json().await.unwrap();
    assert_eq!(body["totalResults"], 1);

    // Plain HTTP on the TLS port gets no SCIM answer, and a client that does not trust the CA
    // gets no connection.
    assert!(
        env.client.get(format!("http://{}/scim/v2/Users", scim_addr(&env))).bearer_auth(TOKEN).send().await.is_err()
    );
    let untrusting = reqwest::Client::builder().use_rustls_tls().no_proxy().build().unwrap();
    assert!(untrusting.get(&url).bearer_auth(TOKEN).send().await.is_err());
    // The admin listener stays plain HTTP.
    assert_eq!(env.client.get(format!("{}/healthz", env.admin())).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_offers_1_2_and_1_3_and_refuses_older_versions() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_tls(&pki, "scim-proxy-1", "10s").await;
    let addr = scim_addr(&env);
    for (versions, expected) in [
        (&[&rustls::version::TLS12][..], rustls::ProtocolVersion::TLSv1_2),
        (&[&rustls::version::TLS13][..], rustls::ProtocolVersion::TLSv1_3),
    ] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = raw_tls_client(&pki, versions).connect(server_name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));
        let request = format!(
            "GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    }
    // rustls implements no TLS 1.0 or 1.1 at all; a client that offers only those gets an alert.
    for legacy_version in [[3u8, 1u8], [3, 2]] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&old_client_hello(legacy_version)).await.unwrap();
        let mut answer = [0u8; 7];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer)).await.unwrap().unwrap_or(0);
        // 0x15 is an alert record; a closed connection (0 bytes) would do as well.
        assert!(read == 0 || answer[0] == 0x15, "no refusal of TLS {legacy_version:?}: {:?}", &answer[..read]);
        assert_ne!(answer[0], 0x16, "the server must not answer with a handshake");
    }
}

/// A minimal ClientHello of TLS 1.0 (`[3, 1]`) or 1.1 (`[3, 2]`): no extensions, CBC suites.
fn old_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // client random
    body.push(0); // no session id
    body.extend_from_slice(&[0, 4, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[1, 0]); // null compression
    let mut handshake = vec![1u8, 0, 0, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1, 0, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_rotated_certificate_is_served_without_restart_and_a_broken_one_is_refused() {
    let pki = Pki::new("test ca");
    let (env, files) = start_tls(&pki, "scim-proxy-1", "200ms").await;
    let url = format!("{}/ServiceProviderConfig", https_base(&env));
    assert_eq!(served_name(&pki, &url).await, "scim-proxy-1");

    files.write_pair(&pki.server("scim-proxy-2"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_name(&pki, &url).await == "scim-proxy-2" {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A key that belongs to another certificate, then a certificate file that is no PEM: both
    // are refused and the pair served before goes on serving.
    let stranger = pki.server("scim-proxy-3");
    std::fs::write(files.path("tls.crt"), &stranger.cert).unwrap();
    std::fs::write(files.path("tls.key"), pki.server("scim-proxy-4").key).unwrap();
    // Nothing can be waited for when a change is refused: give the watcher several intervals.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(served_name(&pki, &url).await, "scim-proxy-2");
    std::fs::write(files.path("tls.crt"), "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    std::fs::write(files.path("tls.key"), &stranger.key).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(served_name(&pki, &url).await, "scim-proxy-2");

    // Repaired files are picked up again.
    std::fs::write(files.path("tls.crt"), &stranger.cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_name(&pki, &url).await != "scim-proxy-3" {
        assert!(Instant::now() < deadline, "the repaired pair was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// TLS with a server certificate from `pki`, and this `server.header_read_timeout`.
async fn start_tls_timing_heads(pki: &Pki, header_read_timeout: &str) -> (TestEnv, TlsFiles) {
    let files = TlsFiles::new(&pki.server("scim-proxy-1"), None);
    let section = files.config("10s", false);
    let keys = format!("max_body_bytes: 65536\n  header_read_timeout: {header_read_timeout}");
    let env = TestEnv::start_with(|text| format!("{}{section}", text.replace("max_body_bytes: 65536", &keys))).await;
    (env, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_client_stalling_its_handshake_holds_up_no_one_and_is_cut_off() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_tls_timing_heads(&pki, "3s").await;
    let addr = scim_addr(&env);
    // Connections that never start the handshake, and one that stops half-way through it.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[0x16, 3, 1, 0, 200, 1, 0, 0]).await.unwrap();
    stalled.push(partial);

    let started = Instant::now();
    let client = https_client(&pki).build().unwrap();
    let response = client.get(format!("{}/Users", https_base(&env))).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served_in = started.elapsed();
    assert!(served_in < Duration::from_secs(3), "served only after the stalled handshakes timed out: {served_in:?}");

    // The stalled connections are closed once the handshake timeout is over.
    for mut connection in stalled {
        let mut buffer = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), connection.read(&mut buffer)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "a stalled handshake was not cut off: {closed:?}");
    }
}

/// The test configuration with client certificates for the first app, in front of a client CA.
async fn start_mtls(pki: &Pki, accepted: &str) -> (TestEnv, TlsFiles) {
    let files = TlsFiles::new(&pki.server("scim-proxy-1"), Some(&pki.ca_pem));
    let section = files.config("10s", true);
    let env = TestEnv::start_with(|text| {
        let with_certs = text.replacen(
            "      bearer_tokens: [\"${env.TOKEN}\"]",
            &format!("      client_certificates:\n{accepted}"),
            1,
        );
        format!("{with_certs}{section}")
    })
    .await;
    (env, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_authenticate_an_app_without_a_token() {
    let pki = Pki::new("test ca");
    let (env, _files) =
        start_mtls(&pki, "        subjects: [\"CN=entra-provisioning\"]\n        dns_names: [okta.idp.test]\n").await;
    let url = format!("{}/Users", https_base(&env));
    let with_identity =
        |issued: &Issued| https_client(&pki).identity(issued.identity()).build().unwrap().get(url.clone());

    let reply = with_identity(&pki.client("entra-provisioning", &[])).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK, "a matching subject needs no token");
    let reply = with_identity(&pki.client("okta", &["okta.idp.test"])).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK, "a matching DNS name needs no token");
    // The app publishes the one way in it has (RFC 8705's name for it), as its primary one.
    let spc = https_client(&pki)
        .identity(pki.client("okta", &["okta.idp.test"]).identity())
        .build()
        .unwrap()
        .get(format!("{}/ServiceProviderConfig", https_base(&env)))
        .send()
        .await
        .unwrap();
    let spc: serde_json::Value = serde_json::from_str(&spc.text().await.unwrap()).unwrap();
    let schemes = spc["authenticationSchemes"].as_array().unwrap();
    assert_eq!(schemes.len(), 1, "{spc}");
    assert_eq!(
        (&schemes[0]["type"], &schemes[0]["primary"]),
        (&serde_json::json!("tls_client_auth"), &serde_json::json!(true))
    );

    // A verified certificate that the app does not list, and no certificate at all: 401.
    let reply = with_identity(&pki.client("someone-else", &["other.idp.test"])).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    let reply = https_client(&pki).build().unwrap().get(&url).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    // The app has no token any more; the other app goes on with its token and no certificate.
    let reply = https_client(&pki).build().unwrap().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    let other = format!("https://127.0.0.1:{}/other/scim/Users", scim_addr(&env).port());
    let reply = https_client(&pki).build().unwrap().get(&other).bearer_auth(OTHER_TOKEN).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    // A certificate for the right name from another CA does not even complete the handshake.
    let forged = Pki::new("another ca").client("entra-provisioning", &[]);
    assert!(with_identity(&forged).send().await.is_err());
}

/// Creates a user as the holder of `issued`, with no token and this request id; the status.
async fn create_as(env: &TestEnv, pki: &Pki, issued: &Issued, user_name: &str, request_id: &str) -> StatusCode {
    let client = https_client(pki).identity(issued.identity()).build().unwrap();
    let request = client
        .post(format!("{}/Users", https_base(env)))
        .header("content-type", "application/scim+json")
        .header("x-request-id", request_id)
        .body(crate::support::user(user_name).to_string());
    request.send().await.unwrap().status()
}

/// The status of a listing by the holder of `issued`, with no token.
async fn list_as(env: &TestEnv, pki: &Pki, issued: &Issued) -> StatusCode {
    let client = https_client(pki).identity(issued.identity()).build().unwrap();
    client.get(format!("{}/Users", https_base(env))).send().await.unwrap().status()
}

/// The audit line of a request, once written.
async fn audit_line(request_id: &str) -> String {
    let needles = ["scim_proxy::audit", &format!("request_id={request_id}")];
    let lines = crate::support::wait_for_log(&needles, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 1, "one audit record for {request_id}: {lines:?}");
    lines.into_iter().next().unwrap()
}

/// The lines saying that a certificate with this (escaped RFC 4514) subject was not accepted.
async fn refusal_lines(subject: &str) -> Vec<String> {
    let needles = ["client certificate not accepted by this app", &format!("subject={subject}")];
    crate::support::wait_for_log(&needles, Duration::from_secs(5)).await
}

fn cn(value: &str) -> (DnType, DnValue) {
    (DnType::CommonName, DnValue::from(value))
}

fn org(value: &str) -> (DnType, DnValue) {
    (DnType::OrganizationName, DnValue::from(value))
}

/// A second common name: rcgen keeps one value per type, and this is the same OID (2.5.4.3)
/// under another key.
fn second_cn(value: &str) -> (DnType, DnValue) {
    (DnType::CustomDnType(vec![2, 5, 4, 3]), DnValue::from(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_common_name_holding_a_comma_cannot_pass_for_a_full_subject() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_mtls(&pki, "        subjects: [\"CN=entra-provisioning,O=Acme\"]\n").await;
    let run = uuid::Uuid::new_v4().simple().to_string();

    // RFC 4514 text names the RDNs last first: this subject is O=Acme, then CN, in the DER.
    let real = pki.client_with_subject(&[org("Acme"), cn("entra-provisioning")], &[]);
    let rid = format!("cert-real-{run}");
    assert_eq!(create_as(&env, &pki, &real, "cert-real", &rid).await, StatusCode::CREATED);
    let line = audit_line(&rid).await;
    assert!(line.contains("principal=client certificate CN=entra-provisioning,O=Acme"), "{line}");

    // One common name whose text is the whole configured subject: refused, and the log shows
    // the comma as part of the value.
    let spoof = pki.client_with_subject(&[cn("entra-provisioning, O=Acme")], &[]);
    assert_eq!(
        create_as(&env, &pki, &spoof, "cert-spoof", &format!("cert-spoof-{run}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!refusal_lines(r"CN=entra-provisioning\, O=Acme").await.is_empty());
    // The same attributes in the other order are another subject.
    let reversed = pki.client_with_subject(&[cn("entra-provisioning"), org("Acme")], &[]);
    assert_eq!(
        create_as(&env, &pki, &reversed, "cert-reversed", &format!("cert-reversed-{run}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!refusal_lines("O=Acme,CN=entra-provisioning").await.is_empty());

    // A client chooses its subject's length: the log line shows only its start.
    let long = "y".repeat(1000);
    let huge = pki.client_with_subject(&[org(&long), cn("entra-provisioning")], &[]);
    assert_eq!(list_as(&env, &pki, &huge).await, StatusCode::UNAUTHORIZED);
    let lines = refusal_lines("CN=entra-provisioning,O=yyyy").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains('…') && !lines[0].contains(&"y".repeat(300)), "{}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_certificate_with_two_common_names_is_refused_whichever_comes_first() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_mtls(&pki, "        subjects: [\"CN=scim-twice\"]\n").await;
    let only = pki.client_with_subject(&[cn("scim-twice")], &[]);
    assert_eq!(list_as(&env, &pki, &only).await, StatusCode::OK);
    // A common-name entry accepts whatever else the subject holds, with that one common name.
    let with_org = pki.client_with_subject(&[org("Acme"), cn("scim-twice")], &[]);
    assert_eq!(list_as(&env, &pki, &with_org).await, StatusCode::OK);

    for (subject, rendered) in [
        ([cn("scim-twice"), second_cn("someone-else")], "CN=someone-else,CN=scim-twice"),
        ([cn("someone-else"), second_cn("scim-twice")], "CN=scim-twice,CN=someone-else"),
        ([cn("scim-twice"), second_cn("scim-twice")], "CN=scim-twice,CN=scim-twice"),
    ] {
        let twice = pki.client_with_subject(&subject, &[]);
        assert_eq!(list_as(&env, &pki, &twice).await, StatusCode::UNAUTHORIZED, "{rendered}");
        assert!(!refusal_lines(rendered).await.is_empty(), "{rendered}");
    }
    // A common name in a string type that is not decoded (T.61) matches nothing.
    let teletex = DnValue::TeletexString("scim-twice".try_into().unwrap());
    let t61 = pki.client_with_subject(&[(DnType::CommonName, teletex)], &[]);
    assert_eq!(list_as(&env, &pki, &t61).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_subject_with_an_escaped_comma_matches_a_common_name_holding_one() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_mtls(&pki, "        subjects: ['CN=Acme\\, Inc. provisioning']\n").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let holder = pki.client_with_subject(&[cn("Acme, Inc. provisioning")], &[]);
    let rid = format!("cert-comma-{run}");
    assert_eq!(create_as(&env, &pki, &holder, "cert-comma", &rid).await, StatusCode::CREATED);
    let line = audit_line(&rid).await;
    assert!(line.contains(r"principal=client certificate CN=Acme\, Inc. provisioning"), "{line}");
    // The text split at the comma into two attributes is another subject.
    let split = pki.client_with_subject(&[org(" Inc. provisioning"), cn("Acme")], &[]);
    assert_eq!(list_as(&env, &pki, &split).await, StatusCode::UNAUTHORIZED);
    assert!(!refusal_lines(r"CN=Acme,O=\ Inc. provisioning").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_dns_names_match_without_case_or_a_trailing_dot_and_never_by_wildcard() {
    let pki = Pki::new("test ca");
    let (env, _files) = start_mtls(&pki, "        dns_names: [idp.example.test]\n").await;
    assert_eq!(list_as(&env, &pki, &pki.client("idp", &["idp.example.test"])).await, StatusCode::OK);
    assert_eq!(list_as(&env, &pki, &pki.client("idp", &["IDP.Example.TEST."])).await, StatusCode::OK);
    // A wildcard in the certificate is a name like any other, and it is not idp.example.test.
    assert_eq!(list_as(&env, &pki, &pki.client("idp", &["*.example.test"])).await, StatusCode::UNAUTHORIZED);
    assert_eq!(list_as(&env, &pki, &pki.client("idp", &["idp.example.test.other"])).await, StatusCode::UNAUTHORIZED);
}

#[test]
fn tls_start_fails_on_a_broken_pair_naming_the_file() {
    let pki = Pki::new("test ca");
    let files = TlsFiles::new(&pki.server("scim-proxy-1"), None);
    std::fs::write(files.path("tls.key"), pki.server("other").key).unwrap();
    let text = format!("{}{}", crate::support::config_text(Path::new("app.rhai")), files.config("10s", false));
    let mut vars = scim_proxy::config::Variables::default();
    for (name, value) in [
        ("TOKEN", TOKEN),
        ("OTHER_TOKEN", OTHER_TOKEN),
        ("ACME_BASE_URL", "http://127.0.0.1:1/api"),
        ("ACME_API_KEY", "k"),
    ] {
        vars.set(name, value);
    }
    let config = scim_proxy::config::Config::parse(&text, "test.yaml", &vars).unwrap();
    let settings = config.tls.clone().unwrap();
    let error = scim_proxy::listener::tls::Tls::load(&config, &settings).unwrap_err().to_string();
    assert!(error.contains("tls.key") && error.contains("not usable with the certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_completed_handshake_then_silence_is_closed_after_header_read_timeout() {
    use rustls_pki_types::pem::PemObject;
    let pki = Pki::new("test ca");
    let (env, _files) = start_tls_timing_heads(&pki, "1s").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap()).unwrap();
    for alpn in ["h2", "http/1.1"] {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(scim_addr(&env)).await.unwrap();
        let started = Instant::now();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        // Nothing sent after the handshake: the server closes (or a TLS close_notify / EOF).
        let after = crate::support::closed_after(&mut stream, started, Duration::from_secs(10)).await;
        let after = after.unwrap_or_else(|| panic!("{alpn}: a silent TLS connection stayed open"));
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_secs(4),
            "{alpn}: closed after {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_when_the_served_certificate_expires_and_follow_a_rotation() {
    const DAY: f64 = 86_400.0;
    let pki = Pki::new("test ca");
    let files = TlsFiles::new(&pki.server_expiring_in("expiring", 30), None);
    let section = files.config("100ms", false);
    let env = TestEnv::start_with(|text| format!("{text}{section}")).await;
    let series =
        format!(r#"scim_proxy_tls_certificate_expires_in_seconds{{file="{}"}}"#, files.path("tls.crt").display());
    let samples = crate::observability::scrape(&env).await;
    let left = *samples.get(&series).unwrap_or_else(|| panic!("no {series} in {samples:#?}"));
    assert!((30.0 * DAY - 600.0..=30.0 * DAY).contains(&left), "{left} s is not 30 days");

    // A renewed certificate: the figure follows once the new pair is served.
    files.write_pair(&pki.server_expiring_in("renewed", 60));
    let started = Instant::now();
    loop {
        let left = crate::observability::scrape(&env).await.get(&series).copied().unwrap_or_default();
        if (60.0 * DAY - 600.0..=60.0 * DAY).contains(&left) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still {left} s after the rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_name(&pki, &format!("{}/Users", https_base(&env))).await, "renewed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_the_binary_on_two_serving_threads_answers_http1_and_h2_connections_at_once() {
    let pki = Pki::new("test ca");
    let files = TlsFiles::new(&pki.server("scim-proxy-1"), None);
    let acme = TestEnv::start().await; // only for its Acme Directory
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.yaml");
    let script = crate::support::repo_file("scripts/demo.rhai");
    std::fs::write(&config, format!("{}{}", crate::support::config_text(&script), files.config("10s", false))).unwrap();
    let threads = [("TOKIO_WORKER_THREADS", "2")];
    let (mut child, scim, _) = crate::support::spawn_proxy_binary_with(&config, &acme.legacy.base_url(), &threads);
    let url = format!("https://{scim}/scim/v2/Users");
    // Every HTTP/1.1 request on a connection (and a handshake) of its own; the h2 ones share one.
    let http1 = https_client(&pki).http1_only().build().unwrap();
    let h2 = https_client(&pki).pool_max_idle_per_host(1).build().unwrap();
    let started = Instant::now();
    while http1.get(&url).bearer_auth(TOKEN).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sent = Vec::new();
    for n in 0..8 {
        let body = crate::support::user(&format!("tls-threads-{n}")).to_string();
        let create = http1.post(&url).bearer_auth(TOKEN).header("content-type", "application/scim+json").body(body);
        sent.push((reqwest::Version::HTTP_11, StatusCode::CREATED, tokio::spawn(create.send())));
        sent.push((reqwest::Version::HTTP_2, StatusCode::OK, tokio::spawn(h2.get(&url).bearer_auth(TOKEN).send())));
    }
    for (version, status, reply) in sent {
        let reply = reply.await.unwrap().unwrap();
        assert_eq!((reply.version(), reply.status()), (version, status));
    }
    let _ = child.kill();
    let _ = child.wait();
}
