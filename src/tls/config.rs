//! `[listener.tls]` as written, its compiled form, and the one function that builds the
//! rustls server settings from the files' contents (used when the config compiles and on
//! every certificate reload, so both accept exactly the same files).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use serde::Deserialize;

use super::{TlsFileError, TrustBundle, certificates_from_pem, private_key_from_pem};
use crate::config::problems::Issues;

/// `[listener.tls]`: TLS termination on the data listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListenerTls {
    /// PEM: the server certificate first, then its intermediates.
    pub cert_file: String,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Longest time from accept to a finished handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: String,
    /// Whether clients present certificates: `none` (default), `optional` or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of the CAs client certificates must chain to.
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

fn default_handshake_timeout() -> String {
    "10s".into()
}

/// Whether the data listener asks clients for a certificate (RFC 8446 §4.3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No certificate is requested.
    #[default]
    None,
    /// A certificate is requested; a client without one is served, one with a certificate
    /// that does not verify is refused.
    Optional,
    /// A verified certificate is required to finish the handshake.
    Required,
}

impl ClientAuth {
    pub fn label(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        }
    }
}

/// The files TLS termination reads, and what it does with client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    /// Set exactly when `client_auth` is not `none`.
    pub client_ca_file: Option<PathBuf>,
}

/// The bytes of [`TlsFiles`] as read at one moment: what a reload compares and builds from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// A TLS problem, with the setting whose file causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {error}")]
pub struct ServerTlsError {
    /// e.g. `listener.tls.key_file`.
    pub setting: &'static str,
    pub error: TlsFileError,
}

fn problem(setting: &'static str, message: impl Into<String>) -> ServerTlsError {
    ServerTlsError {
        setting,
        error: TlsFileError(message.into()),
    }
}

const CERT_FILE: &str = "listener.tls.cert_file";
const KEY_FILE: &str = "listener.tls.key_file";
const CLIENT_CA_FILE: &str = "listener.tls.client_ca_file";

impl TlsFiles {
    /// Reads every file.
    ///
    /// # Errors
    /// A file cannot be read; the error names its setting.
    pub fn read(&self) -> Result<TlsContents, ServerTlsError> {
        let read = |setting, path: &Path| super::read(path).map_err(|error| ServerTlsError { setting, error });
        Ok(TlsContents {
            cert: read(CERT_FILE, &self.cert_file)?,
            key: read(KEY_FILE, &self.key_file)?,
            client_ca: match &self.client_ca_file {
                Some(path) => Some(read(CLIENT_CA_FILE, path)?),
                None => None,
            },
        })
    }

    /// Builds the server settings from `contents`: the certificate chain and its key (which
    /// must match), the client-certificate verifier, TLS 1.2+ and ALPN `h2`, `http/1.1`.
    ///
    /// # Errors
    /// Unreadable PEM, no certificate, a key that is not the certificate's, an unusable CA.
    pub fn server_config(&self, contents: &TlsContents) -> Result<Arc<ServerConfig>, ServerTlsError> {
        let provider = super::provider();
        let chain = certificates_from_pem(&self.cert_file, &contents.cert).map_err(|error| ServerTlsError {
            setting: CERT_FILE,
            error,
        })?;
        let key = private_key_from_pem(&self.key_file, &contents.key).map_err(|error| ServerTlsError {
            setting: KEY_FILE,
            error,
        })?;
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => problem(
                KEY_FILE,
                format!(
                    "{} is not the private key of the certificate in {}",
                    self.key_file.display(),
                    self.cert_file.display()
                ),
            ),
            e => problem(
                KEY_FILE,
                format!("{} is not a usable key: {e}", self.key_file.display()),
            ),
        })?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(super::PROTOCOL_VERSIONS)
            .map_err(|e| problem(CERT_FILE, e.to_string()))?;
        let builder = match (&self.client_ca_file, &contents.client_ca) {
            (Some(path), Some(pem)) if self.client_auth != ClientAuth::None => {
                let anchors = certificates_from_pem(path, pem)
                    .map(|certificates| TrustBundle(certificates.into()))
                    .and_then(|bundle| bundle.root_store(path))
                    .map_err(|error| ServerTlsError {
                        setting: CLIENT_CA_FILE,
                        error,
                    })?;
                let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(anchors), provider);
                if self.client_auth == ClientAuth::Optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| problem(CLIENT_CA_FILE, format!("{}: {e}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        // RFC 7301: h2 first, so HTTP/2 clients get it; HTTP/1.1 clients still connect.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reads the files and builds the server settings from them.
    ///
    /// # Errors
    /// As [`TlsFiles::read`] and [`TlsFiles::server_config`].
    pub fn load(&self) -> Result<(TlsContents, Arc<ServerConfig>), ServerTlsError> {
        let contents = self.read()?;
        let config = self.server_config(&contents)?;
        Ok((contents, config))
    }
}

/// `[listener.tls]`, compiled: the files (checked when the config compiled) and the
/// server settings built from them then.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub files: TlsFiles,
    pub handshake_timeout: Duration,
    /// What the files held when the config compiled; a reload compares against it.
    pub contents: TlsContents,
    pub server_config: Arc<ServerConfig>,
}

impl ListenerTls {
    /// One line for `check`.
    pub fn describe(&self) -> String {
        let clients = match (&self.files.client_auth, &self.files.client_ca_file) {
            (ClientAuth::None, _) | (_, None) => "no client certificates".to_string(),
            (mode, Some(ca)) => format!("client certificates {} (CAs in {})", mode.label(), ca.display()),
        };
        format!(
            "listener TLS: TLS 1.2+, ALPN h2 and http/1.1, certificate {} key {}, handshake timeout {:?}, {clients}",
            self.files.cert_file.display(),
            self.files.key_file.display(),
            self.handshake_timeout,
        )
    }
}

/// Two settings are equal when they name the same files, the same client-certificate
/// policy and the same handshake timeout; what the files hold is the certificate
/// watcher's business, not the config's.
impl PartialEq for ListenerTls {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files && self.handshake_timeout == other.handshake_timeout
    }
}

/// Compiles `[listener.tls]`, reading and checking its files.
pub fn compile_listener_tls(file: Option<&FileListenerTls>, issues: &mut Issues) -> Option<ListenerTls> {
    let file = file?;
    let mut complete = true;
    for (setting, value) in [(CERT_FILE, &file.cert_file), (KEY_FILE, &file.key_file)] {
        if value.trim().is_empty() {
            issues.push(setting, "must name a PEM file");
            complete = false;
        }
    }
    let handshake_timeout = issues.duration(
        "listener.tls.handshake_timeout",
        &file.handshake_timeout,
        Duration::from_secs(10),
    );
    if handshake_timeout.is_zero() {
        issues.push(
            "listener.tls.handshake_timeout",
            "must be greater than zero: without it a client can hold a connection slot by never finishing the handshake",
        );
    }
    let client_ca_file = file.client_ca_file.as_deref().filter(|path| !path.trim().is_empty());
    match (file.client_auth, client_ca_file) {
        (ClientAuth::None, Some(_)) => issues.push(
            CLIENT_CA_FILE,
            "has no effect while listener.tls.client_auth is \"none\"; set client_auth = \"optional\" or \"required\", or remove it",
        ),
        (ClientAuth::Optional | ClientAuth::Required, None) => {
            issues.push(
                CLIENT_CA_FILE,
                format!(
                    "is needed when listener.tls.client_auth is {:?}: the PEM bundle of the CAs client certificates chain to",
                    file.client_auth.label()
                ),
            );
            complete = false;
        }
        _ => {}
    }
    if !complete {
        return None;
    }
    let files = TlsFiles {
        cert_file: PathBuf::from(&file.cert_file),
        key_file: PathBuf::from(&file.key_file),
        client_auth: file.client_auth,
        client_ca_file: client_ca_file
            .filter(|_| file.client_auth != ClientAuth::None)
            .map(PathBuf::from),
    };
    match files.load() {
        Ok((contents, server_config)) => Some(ListenerTls {
            files,
            handshake_timeout,
            contents,
            server_config,
        }),
        Err(e) => {
            issues.push(e.setting, e.error.0);
            None
        }
    }
}

/// Compiles a `ca_file` setting (`[upstream]`, `[[issuer]]`): `None` when absent.
pub fn compile_ca_file(setting: &str, value: Option<&str>, issues: &mut Issues) -> Option<TrustBundle> {
    let path = value?;
    if path.trim().is_empty() {
        issues.push(setting, "must name a PEM file of CA certificates, or be left out");
        return None;
    }
    match TrustBundle::load(Path::new(path)) {
        Ok(bundle) => Some(bundle),
        Err(e) => {
            issues.push(setting, e.0);
            None
        }
    }
}
