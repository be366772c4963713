//! TLS on the SCIM listener: the certificate pair, reloaded when its files change, and the
//! identity of a verified client certificate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::subject::{Attribute, AttributeValue, DistinguishedName};
use crate::config::{Config, TlsConfig};

/// Why TLS could not be set up at start; names the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("tls: {file}: {reason}")]
pub struct TlsError {
    pub(crate) file: String,
    pub(crate) reason: String,
}

impl TlsError {
    fn new(file: &Path, reason: impl Into<String>) -> Self {
        Self { file: file.display().to_string(), reason: reason.into() }
    }
}

/// TLS of the SCIM listener: the acceptor handed to the server and the certificate it serves.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) certificate: Arc<RotatingCertificate>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("certificate", &self.certificate).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate pair and the client CA bundle; runs once at start.
    ///
    /// Only TLS 1.2 and 1.3 are offered, with the cipher suites of rustls's default provider
    /// (AEAD with forward secrecy only); older versions are not built into rustls at all.
    pub fn load(config: &Config, tls: &TlsConfig) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(RotatingCertificate::load(
            config.relative_path(&tls.cert),
            config.relative_path(&tls.key),
            provider.clone(),
        )?);
        let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::new(&tls.cert, e.to_string()))?;
        let builder = match &tls.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let path = config.relative_path(path);
                let roots = read_roots(&path)?;
                // Optional: the apps without `client_certificates` go on using tokens.
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::new(&path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server = builder.with_cert_resolver(certificate.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(server)), certificate })
    }
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::new(path, format!("cannot read: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert =
            cert.map_err(|e| TlsError::new(path, format!("not a PEM certificate bundle: {}", pem_reason(&e))))?;
        roots.add(cert).map_err(|e| TlsError::new(path, format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TlsError::new(path, "holds no CERTIFICATE block"));
    }
    Ok(roots)
}

/// The served certificate pair, swapped in place when its files change.
pub(crate) struct RotatingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// When the served certificate expires, in seconds since the Unix epoch.
    not_after: AtomicI64,
    /// The file contents last looked at, good or bad, so each change is loaded (or refused and
    /// logged) once.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RotatingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingCertificate").field("cert", &self.cert_path).field("key", &self.key_path).finish()
    }
}

impl RotatingCertificate {
    fn load(cert_path: PathBuf, key_path: PathBuf, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let cert = std::fs::read(&cert_path).map_err(|e| TlsError::new(&cert_path, format!("cannot read: {e}")))?;
        let key = std::fs::read(&key_path).map_err(|e| TlsError::new(&key_path, format!("cannot read: {e}")))?;
        let loaded = certified_key(&cert, &key, &provider)
            .map_err(|(which, reason)| TlsError::new(if which { &cert_path } else { &key_path }, reason))?;
        tracing::info!(cert = %cert_path.display(), subject = %loaded.subject, serial = %loaded.serial, not_after = %loaded.not_after, "tls certificate loaded");
        Ok(Self {
            cert_path,
            key_path,
            provider,
            current: RwLock::new(Arc::new(loaded.key)),
            not_after: AtomicI64::new(loaded.expires),
            seen: Mutex::new((cert, key)),
        })
    }

    /// The pair served now.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The certificate file, as configured.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// When the certificate served now expires, in seconds since the Unix epoch.
    pub(crate) fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// Reads both files and, when they changed and form a valid pair, serves the new pair.
    ///
    /// Blocking file I/O: runs on the blocking pool. A broken pair is refused and logged with
    /// the file and the reason; the previous pair goes on serving.
    pub(crate) fn check(&self) {
        let read = |path: &Path| std::fs::read(path).map_err(|e| (path.to_path_buf(), format!("cannot read: {e}")));
        let (cert, key) = match read(&self.cert_path).and_then(|c| Ok((c, read(&self.key_path)?))) {
            Ok(pair) => pair,
            Err((file, reason)) => {
                // A rotation may be half-written; the next check sees the finished files.
                tracing::debug!(file = %file.display(), reason, "tls certificate files not readable now");
                return;
            }
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.0 == cert && seen.1 == key {
                return;
            }
            *seen = (cert.clone(), key.clone());
        }
        match certified_key(&cert, &key, &self.provider) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded.key);
                self.not_after.store(loaded.expires, Ordering::Relaxed);
                tracing::info!(cert = %self.cert_path.display(), subject = %loaded.subject, serial = %loaded.serial, not_after = %loaded.not_after, "tls certificate reloaded");
            }
            Err((which, reason)) => {
                let file = if which { &self.cert_path } else { &self.key_path };
                tracing::error!(file = %file.display(), reason, "tls certificate not reloaded; the previous one is still served");
            }
        }
    }
}

impl ResolvesServerCert for RotatingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A checked pair and what the log says of it.
struct Loaded {
    key: CertifiedKey,
    subject: String,
    serial: String,
    not_after: String,
    /// `not_after` in seconds since the Unix epoch.
    expires: i64,
}

/// Builds a pair from PEM text; the error says whether the certificate (`true`) or the key
/// (`false`) is at fault, and why.
fn certified_key(cert: &[u8], key: &[u8], provider: &CryptoProvider) -> Result<Loaded, (bool, String)> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (true, format!("not a PEM certificate chain: {}", pem_reason(&e))))?;
    let Some(leaf) = chain.first() else {
        return Err((true, "holds no CERTIFICATE block".into()));
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| (true, format!("not an X.509 certificate: {e}")))?;
    let subject = parsed.subject().to_string();
    let serial = parsed.raw_serial_as_string();
    let not_after = parsed.validity().not_after.to_string();
    let expires = parsed.validity().not_after.timestamp();
    if !parsed.validity().is_valid() {
        return Err((true, format!("the certificate is not valid now (valid until {not_after})")));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| (false, format!("not a PEM private key: {}", pem_reason(&e))))?;
    let key = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| (false, format!("not usable with the certificate: {e}")))?;
    Ok(Loaded { key, subject, serial, not_after, expires })
}

/// A PEM problem in words (the library's own text shows markers as byte lists).
fn pem_reason(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match error {
        E::MissingSectionEnd { .. } => "a section has no END line".into(),
        E::IllegalSectionStart { .. } => "a section starts with a malformed BEGIN line".into(),
        E::NoItemsFound => "no PEM section found".into(),
        other => other.to_string(),
    }
}

/// Checks the certificate files every `interval` until shutdown.
pub(crate) async fn watch_files(
    certificate: Arc<RotatingCertificate>,
    interval: Duration,
    stop: watch::Receiver<bool>,
) {
    crate::listener::server::every(interval, false, stop, || {
        let certificate = certificate.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || certificate.check()).await;
        }
    })
    .await;
}

/// A client certificate verified during the handshake, read once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    /// The subject as it is encoded: its RDNs in DER order, string values decoded.
    pub subject: DistinguishedName,
    /// DNS names of the subject alternative name extension, as written (A-labels).
    pub dns_names: Vec<String>,
    /// URIs of the subject alternative name extension.
    pub uris: Vec<String>,
}

impl ClientIdentity {
    /// Reads the identity of an end-entity certificate; `None` when it cannot be parsed.
    pub(crate) fn from_der(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut dns_names = Vec::new();
        let mut uris = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(n) => dns_names.push((*n).to_owned()),
                    x509_parser::extensions::GeneralName::URI(u) => uris.push((*u).to_owned()),
                    _ => {}
                }
            }
        }
        Some(Self { subject: subject_of(cert.subject()), dns_names, uris })
    }
}

/// A certificate's subject as a structure: each RDN's attributes with their type's OID and
/// their value, in the order of the encoding.
fn subject_of(name: &x509_parser::x509::X509Name<'_>) -> DistinguishedName {
    let rdn = |rdn: &x509_parser::x509::RelativeDistinguishedName<'_>| {
        let attribute = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| Attribute {
            oid: a.attr_type().to_id_string(),
            value: decoded(a.attr_value()),
        };
        rdn.iter().map(attribute).collect()
    };
    DistinguishedName::new(name.iter().map(rdn).collect())
}

/// An attribute value as text when it is of a string type whose characters are all the type
/// allows: UTF8String, PrintableString, IA5String, VisibleString, NumericString, BMPString and
/// UniversalString. Anything else, T.61 (TeletexString) included, whose characters have no
/// single reading, stays undecoded and matches nothing.
fn decoded(value: &x509_parser::asn1_rs::Any<'_>) -> AttributeValue {
    use x509_parser::asn1_rs::{Class, Tag, ToDer};
    let bytes = value.data;
    let ascii =
        |allowed: fn(&u8) -> bool| bytes.iter().all(allowed).then(|| bytes.iter().map(|&b| char::from(b)).collect());
    let units = |width: usize| bytes.len() % width == 0;
    let text: Option<String> = if value.class() != Class::Universal || value.header.is_constructed() {
        None
    } else {
        match value.tag() {
            Tag::Utf8String => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Tag::PrintableString => ascii(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(b)),
            Tag::Ia5String => ascii(u8::is_ascii),
            Tag::VisibleString => ascii(|b| (0x20..=0x7e).contains(b)),
            Tag::NumericString => ascii(|b| b.is_ascii_digit() || *b == b' '),
            Tag::BmpString if units(2) => {
                let units = bytes.chunks_exact(2).map(|u| u16::from_be_bytes([u[0], u[1]]));
                char::decode_utf16(units).collect::<Result<String, _>>().ok()
            }
            Tag::UniversalString if units(4) => bytes
                .chunks_exact(4)
                .map(|u| char::from_u32(u32::from_be_bytes([u[0], u[1], u[2], u[3]])))
                .collect::<Option<String>>(),
            _ => None,
        }
    };
    match text {
        Some(text) => AttributeValue::Text(text),
        None => AttributeValue::Undecoded(value.to_der_vec().unwrap_or_else(|_| bytes.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::asn1_rs::{Any, Class, Tag};

    #[test]
    fn only_values_of_string_types_with_characters_their_type_allows_are_text() {
        let text = |s: &str| AttributeValue::Text(s.into());
        for (tag, bytes, expected) in [
            (Tag::Utf8String, "Lučić, Inc.".as_bytes(), Some(text("Lučić, Inc."))),
            (Tag::Utf8String, &[0x61, 0xC4][..], None),
            (Tag::PrintableString, b"Acme, Inc. (EU) +1 = ?", Some(text("Acme, Inc. (EU) +1 = ?"))),
            (Tag::PrintableString, b"a_b", None),
            (Tag::PrintableString, b"a*b", None),
            (Tag::Ia5String, b"ops@example.com", Some(text("ops@example.com"))),
            (Tag::Ia5String, &[0x61, 0x80], None),
            (Tag::VisibleString, b"a b", Some(text("a b"))),
            (Tag::VisibleString, b"a\nb", None),
            (Tag::NumericString, b"12 34", Some(text("12 34"))),
            (Tag::NumericString, b"12a", None),
            (Tag::BmpString, &[0, b'L', 0, b'u', 0x01, 0x0D][..], Some(text("Luč"))),
            (Tag::BmpString, &[0, b'L', 0][..], None),
            (Tag::BmpString, &[0xD8, 0x00][..], None),
            (Tag::UniversalString, &[0, 0, 0, b'a', 0, 0x01, 0xF6, 0x00][..], Some(text("a😀"))),
            (Tag::UniversalString, &[0, 0, 0xD8, 0x00][..], None),
            (Tag::T61String, b"entra-provisioning", None),
            (Tag::Integer, &[1][..], None),
        ] {
            let value = decoded(&Any::from_tag_and_data(tag, bytes));
            match expected {
                Some(expected) => assert_eq!(value, expected, "{tag:?} {bytes:?}"),
                None => assert!(matches!(value, AttributeValue::Undecoded(_)), "{tag:?} {bytes:?}: {value:?}"),
            }
        }
        // Undecoded values keep their whole encoding, for the log: tag, length, content.
        assert_eq!(
            decoded(&Any::from_tag_and_data(Tag::T61String, b"ab")),
            AttributeValue::Undecoded(vec![0x14, 2, b'a', b'b'])
        );
        // A UTF8String's tag number in another class is not a UTF8String.
        let tagged = Any::from_tag_and_data(Tag::Utf8String, b"x").with_class(Class::ContextSpecific);
        assert!(matches!(decoded(&tagged), AttributeValue::Undecoded(_)));
    }
}
