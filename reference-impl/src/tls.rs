//! TLS setup shared by the reference servers, their clients and the harness: rustls
//! configurations on the `ring` provider, PEM loading, and self-signed certificates.
//!
//! The course servers use self-signed certificates (the course author's has even expired), so
//! a client needs two ways to trust a server:
//!
//! - [`ClientTrust::Roots`]: verify the chain and the server name against the given
//!   certificates (pass the server's own self-signed certificate here);
//! - [`ClientTrust::InsecureAcceptAny`]: accept whatever certificate the server presents. The
//!   handshake signatures are still checked, so the peer must hold the key of the certificate
//!   it sent; only the chain of trust, the name and the validity dates are skipped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Names a self-signed certificate covers when none are given.
pub const DEFAULT_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Errors of TLS setup. Each names the file or value involved and says how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file is not well-formed.
    #[error("{} is not a valid PEM file", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error(
        "{} holds no certificate: expected a PEM block `-----BEGIN CERTIFICATE-----`",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    /// A key file holds no private key block.
    #[error(
        "{} holds no private key: expected a PEM block `-----BEGIN PRIVATE KEY-----` \
         (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1)",
        path.display()
    )]
    NoPrivateKey { path: PathBuf },
    /// rcgen could not make a certificate (for instance, a name is not a valid DNS name).
    #[error("cannot generate a self-signed certificate for {names:?}")]
    Generate {
        names: Vec<String>,
        #[source]
        source: rcgen::Error,
    },
    /// rustls rejected the server certificate and key.
    #[error(
        "cannot use the certificate and private key for a TLS server \
         (check that the key belongs to the first certificate of the chain)"
    )]
    ServerConfig {
        #[source]
        source: rustls::Error,
    },
    /// rustls could not build a client configuration.
    #[error("cannot build the TLS client configuration")]
    ClientConfig {
        #[source]
        source: rustls::Error,
    },
    /// A trusted certificate could not be added to the root store.
    #[error(
        "trusted certificate #{index} cannot be used as a trust anchor \
         (give the server's certificate or its CA in PEM form)"
    )]
    BadRoot {
        index: usize,
        #[source]
        source: rustls::Error,
    },
    /// `ClientTrust::Roots` was given no certificate.
    #[error(
        "no trusted certificate given: pass the server's certificate (or its CA), or accept any"
    )]
    NoRoots,
    /// A string is neither a DNS name nor an IP address.
    #[error("{name:?} is not a valid TLS server name: give a DNS name or an IP address")]
    ServerName { name: String },
}

/// A freshly generated self-signed certificate and its private key, as DER and PEM.
pub struct SelfSigned {
    /// The certificate, for [`server_config`] and for clients to trust.
    pub cert_der: CertificateDer<'static>,
    /// The private key (PKCS#8), for [`server_config`].
    pub key_der: PrivateKeyDer<'static>,
    /// The certificate as PEM, to write to a file clients load with [`load_certs`].
    pub cert_pem: String,
    /// The private key as PEM.
    pub key_pem: String,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("cert_der", &format_args!("{} bytes", self.cert_der.len()))
            .field("key_der", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Clone for SelfSigned {
    fn clone(&self) -> Self {
        Self {
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// Generates a self-signed certificate (ECDSA P-256) valid for `names`: each is an IP address
/// or a DNS name, and the first is also the subject's common name. An empty slice means
/// [`DEFAULT_NAMES`].
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    generate(names, false)
}

/// Like [`self_signed`], but the certificate expired at the end of 2020, as the course
/// author's did: a client that verifies it must fail, one that accepts any certificate must
/// not. For testing clients' trust switches.
pub fn self_signed_expired(names: &[String]) -> Result<SelfSigned, TlsError> {
    generate(names, true)
}

fn generate(names: &[String], expired: bool) -> Result<SelfSigned, TlsError> {
    let names: Vec<String> = if names.is_empty() {
        DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect()
    } else {
        names.to_vec()
    };
    let fail = |source| TlsError::Generate {
        names: names.clone(),
        source,
    };
    let mut params = rcgen::CertificateParams::new(names.clone()).map_err(fail)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, names[0].as_str());
    params.distinguished_name = subject;
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(SelfSigned {
        cert_der: cert.der().clone(),
        key_der: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Loads every `CERTIFICATE` block of a PEM file, in order (a chain starts with the leaf).
/// Fails if the file holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Loads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration (TLS 1.2 and 1.3, no client certificates) presenting `certs`
/// (leaf first) with `key`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::ServerConfig { source })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::ServerConfig { source })?;
    Ok(Arc::new(config))
}

/// How a client decides whether to trust a server's certificate.
#[derive(Debug, Clone)]
pub enum ClientTrust {
    /// Verify the server's chain, name and validity against these trust anchors. A
    /// self-signed server certificate can be its own anchor.
    Roots(Vec<CertificateDer<'static>>),
    /// Accept any certificate, expired or self-signed, for any name. The handshake still
    /// proves that the server holds the certificate's private key; nothing proves who the
    /// server is. For testing servers whose certificate cannot be verified.
    InsecureAcceptAny,
}

/// A TLS client configuration (TLS 1.2 and 1.3, no client certificate) trusting servers as
/// `trust` says.
pub fn client_config(trust: ClientTrust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::ClientConfig { source })?;
    let config = match trust {
        ClientTrust::Roots(certs) => {
            if certs.is_empty() {
                return Err(TlsError::NoRoots);
            }
            let mut roots = RootCertStore::empty();
            for (index, cert) in certs.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|source| TlsError::BadRoot { index, source })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ClientTrust::InsecureAcceptAny => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Parses a TLS server name: a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
        name: name.to_owned(),
    })
}

/// Accepts every certificate but still verifies handshake signatures with the provider's
/// algorithms, so the peer must hold the private key of the certificate it presented.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reference-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn pem_round_trip_through_files() {
        let cert = self_signed(&[]).unwrap();
        let cert_path = temp_file("cert.pem", &cert.cert_pem);
        let key_path = temp_file("key.pem", &cert.key_pem);
        assert_eq!(load_certs(&cert_path).unwrap(), vec![cert.cert_der.clone()]);
        assert_eq!(
            load_key(&key_path).unwrap().secret_der(),
            cert.key_der.secret_der()
        );
        server_config(
            load_certs(&cert_path).unwrap(),
            load_key(&key_path).unwrap(),
        )
        .unwrap();
        client_config(ClientTrust::Roots(load_certs(&cert_path).unwrap())).unwrap();
    }

    #[test]
    fn a_key_file_is_not_a_certificate_file() {
        let cert = self_signed(&[]).unwrap();
        let key_path = temp_file("only-key.pem", &cert.key_pem);
        let err = load_certs(&key_path).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"));
        let cert_path = temp_file("only-cert.pem", &cert.cert_pem);
        let err = load_key(&cert_path).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_certs(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(err.to_string(), "cannot read /nonexistent/ca.pem");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = self_signed(&[]).unwrap();
        let b = self_signed(&[]).unwrap();
        let err = server_config(vec![a.cert_der], b.key_der).unwrap_err();
        assert!(matches!(err, TlsError::ServerConfig { .. }), "{err}");
    }

    #[test]
    fn empty_roots_are_an_error() {
        assert!(matches!(
            client_config(ClientTrust::Roots(Vec::new())),
            Err(TlsError::NoRoots)
        ));
    }

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("localhost").is_ok());
        assert!(server_name("not a name").is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let cert = self_signed(&[]).unwrap();
        let shown = format!("{cert:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("PRIVATE"));
    }
}
