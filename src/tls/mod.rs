//! TLS, all of it rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only:
//!
//! - [`config`] — `[listener.tls]` (termination on the data listener, client certificates)
//!   and the CA bundles of `[upstream] ca_file` and `[[issuer]] ca_file`, loaded and checked
//!   when the config compiles, so `check` reports a bad file before anything starts.
//! - [`acceptor`] — the one seam the accept loop calls: an accepted TCP stream in, the I/O
//!   to serve (plain or TLS) and the verified client certificate out, within a deadline.
//! - [`reload`] — certificate, key and client CA re-read when their files change; a bad new
//!   set keeps the running one.
//! - [`client`] — the rustls client settings of the HTTPS upstream connector and the extra
//!   roots of the authorization-server client.
//!
//! A leaf below the request path: it knows the problem list of [`crate::config::problems`]
//! and the metrics, nothing of routes or tokens.

pub mod acceptor;
pub mod client;
pub mod config;
pub mod reload;

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The client certificate a TLS connection presented and rustls verified against
/// `listener.tls.client_ca_file` (the end-entity certificate, DER). Every request on that
/// connection carries it in its extensions (`req.extensions().get::<ClientCertificate>()`);
/// a request without it came over plain TCP or over TLS without a client certificate.
/// RFC 8705 §3 binds a token to it through `cnf.x5t#S256` (see [`x5t_s256`]).
/// Its thumbprint is computed once, at the handshake, not per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Arc<[u8]>,
    thumbprint: Arc<str>,
}

impl ClientCertificate {
    pub fn new(der: &[u8]) -> ClientCertificate {
        ClientCertificate {
            der: Arc::from(der),
            thumbprint: Arc::from(x5t_s256(der)),
        }
    }

    /// The DER encoding of the certificate.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Its RFC 8705 §3.1 thumbprint, as `cnf.x5t#S256` spells it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

/// RFC 8705 §3.1 `x5t#S256`: the base64url (no padding) SHA-256 of a certificate's DER.
pub fn x5t_s256(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Why a certificate, key or CA file cannot be used; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsFileError(pub String);

/// The crypto provider of every TLS configuration here (the one JOSE uses too).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.2 and 1.3: nothing older is offered or accepted.
pub(crate) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The largest certificate, key or CA file read: a whole system CA bundle is about 200 KiB.
const MAX_PEM_BYTES: u64 = 4 << 20;

/// Reads a PEM file, at most [`MAX_PEM_BYTES`] of it (a path such as `/dev/zero` must not
/// hang `check` or start-up).
fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| TlsFileError(format!("cannot read {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsFileError(format!(
            "{} is larger than {} MiB: not a PEM certificate, key or CA bundle",
            path.display(),
            MAX_PEM_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// Every certificate of a PEM file, in order; none at all is an error.
pub(crate) fn certificates_from_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError(format!("{} is not readable PEM: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(TlsFileError(format!(
            "{} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\" blocks)",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The one private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key_from_pem(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        TlsFileError(format!(
            "{} holds no readable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            path.display()
        ))
    })
}

/// Reads the one private key of a PEM file, bounded like every TLS file.
///
/// # Errors
/// The file cannot be read or holds no readable private key.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    private_key_from_pem(path, &read(path)?)
}

/// A CA bundle: every certificate of a PEM file, each a trust anchor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustBundle(pub Arc<[CertificateDer<'static>]>);

impl TrustBundle {
    /// Reads and checks a PEM bundle: readable, at least one certificate, each one usable as
    /// a trust anchor.
    ///
    /// # Errors
    /// The file cannot be read, or holds no usable certificate.
    pub fn load(path: &Path) -> Result<TrustBundle, TlsFileError> {
        let certificates = certificates_from_pem(path, &read(path)?)?;
        let bundle = TrustBundle(certificates.into());
        bundle.root_store(path)?;
        Ok(bundle)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The bundle as rustls trust anchors ([`TrustBundle::load`] checked each one).
    pub(crate) fn roots(&self) -> rustls::RootCertStore {
        let mut store = rustls::RootCertStore::empty();
        store.add_parsable_certificates(self.0.iter().cloned());
        store
    }

    /// The bundle as rustls trust anchors, or the first certificate that cannot be one.
    pub(crate) fn root_store(&self, path: &Path) -> Result<rustls::RootCertStore, TlsFileError> {
        let mut store = rustls::RootCertStore::empty();
        for (index, certificate) in self.0.iter().enumerate() {
            store.add(certificate.clone()).map_err(|e| {
                TlsFileError(format!(
                    "{}: certificate #{} cannot be a trust anchor: {e}",
                    path.display(),
                    index + 1
                ))
            })?;
        }
        Ok(store)
    }
}
