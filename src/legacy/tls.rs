//! The TLS of a legacy client: trusted CAs, a client certificate, and TLS failures named by
//! their cause.

use std::path::{Path, PathBuf};

use super::TlsFault;
use crate::config::LegacyConfig;
use crate::observe::error_chain;

/// An app's TLS settings, read once at start: every client of the app is built with them.
#[derive(Clone, Default)]
pub(super) struct TlsSettings {
    /// A private CA bundle, trusted instead of the public CAs.
    roots: Option<Vec<reqwest::Certificate>>,
    identity: Option<reqwest::Identity>,
    insecure_skip_verify: bool,
}

impl TlsSettings {
    /// Reads the app's CA bundle and client certificate (`resolve` turns the configuration's
    /// paths into paths to open).
    pub(super) fn load(config: &LegacyConfig, resolve: impl Fn(&Path) -> PathBuf) -> Result<Self, String> {
        let read = |key: &str, path: &Path| {
            let path = resolve(path);
            std::fs::read(&path)
                .map(|bytes| (bytes, path.clone()))
                .map_err(|e| format!("{key} {}: cannot read: {e}", path.display()))
        };
        let mut settings = Self { insecure_skip_verify: config.insecure_skip_verify, ..Self::default() };
        if let Some(ca_file) = &config.ca_file {
            let (pem, path) = read("ca_file", ca_file)?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!("ca_file {}: not a PEM certificate bundle: {}", path.display(), error_chain(&e))
            })?;
            if certificates.is_empty() {
                return Err(format!(
                    "ca_file {}: holds no certificate: expected PEM blocks starting -----BEGIN CERTIFICATE-----",
                    path.display()
                ));
            }
            settings.roots = Some(certificates);
        }
        if let Some(client) = &config.client_certificate {
            let (mut pem, cert_path) = read("client_certificate.cert", &client.cert)?;
            let (key, key_path) = read("client_certificate.key", &client.key)?;
            pem.push(b'\n');
            pem.extend_from_slice(&key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "client_certificate: {} and {} are not a PEM certificate and an unencrypted PEM private key: {}",
                    cert_path.display(),
                    key_path.display(),
                    error_chain(&e)
                )
            })?;
            settings.identity = Some(identity);
        }
        Ok(settings)
    }

    /// Applies the settings to a client being built.
    pub(super) fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if let Some(roots) = &self.roots {
            // A private CA is trusted instead of the public ones, not besides them.
            builder = builder.tls_built_in_root_certs(false);
            for certificate in roots {
                builder = builder.add_root_certificate(certificate.clone());
            }
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        if self.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        builder
    }
}

/// The TLS error somewhere in a failed call's chain of causes, if TLS is what failed.
///
/// `io::Error` does not list the error it wraps as its `source()`, so each one is opened.
pub(super) fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(tls) = find_tls_error(inner) {
                return Some(tls);
            }
        }
        current = error.source();
    }
    None
}

pub(super) fn tls_fault(e: &rustls::Error) -> TlsFault {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => TlsFault::Untrusted,
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => TlsFault::ClientCertificateRefused,
        _ => TlsFault::Other,
    }
}

/// A TLS failure in words an operator can act on, with the TLS library's own words after it.
pub(super) fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let plain = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the legacy app's certificate is not signed by a trusted CA (see legacy.ca_file)".to_owned()
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the legacy app's certificate is not valid for the host name in the URL".to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the legacy app's certificate has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(_) => "the legacy app's certificate is not acceptable".to_owned(),
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the legacy app requires a client certificate (see legacy.client_certificate)".to_owned()
        }
        _ if tls_fault(e) == TlsFault::ClientCertificateRefused => {
            "the legacy app refused the proxy's client certificate".to_owned()
        }
        _ => "the TLS handshake failed".to_owned(),
    };
    format!("{plain}: {e}")
}
