//! The seam between accepting a TCP connection and serving HTTP on it: [`accept`] turns an
//! accepted stream into the I/O to serve — the stream itself, or a finished TLS session —
//! and the client certificate that session verified. The caller holds the connection's slot
//! under `listener.max_connections` throughout, and the handshake has a deadline
//! (`listener.tls.handshake_timeout`), so a client that never finishes one holds its slot
//! for that long at most.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::ClientCertificate;
use super::config::ListenerTls;

/// TLS termination on one listener: the current server settings (swapped whole when the
/// certificate files change; a handshake uses the settings current when it starts) and the
/// handshake deadline.
pub struct TlsTermination {
    current: ArcSwap<ServerConfig>,
    handshake_timeout: Duration,
}

impl TlsTermination {
    pub fn new(settings: &ListenerTls) -> Arc<TlsTermination> {
        TlsTermination::with_config(Arc::clone(&settings.server_config), settings.handshake_timeout)
    }

    /// Termination with fixed server settings (the development issuer's TLS mode).
    pub fn with_config(config: Arc<ServerConfig>, handshake_timeout: Duration) -> Arc<TlsTermination> {
        Arc::new(TlsTermination {
            current: ArcSwap::from(config),
            handshake_timeout,
        })
    }

    /// New connections use `config` from now on; established ones keep their session.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }
}

/// What a connection is served over.
pub enum ServedIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, ready to serve.
pub struct Accepted {
    pub io: ServedIo,
    /// The verified client certificate (end entity), when the client presented one.
    pub client_certificate: Option<ClientCertificate>,
}

/// Why a connection was closed before any HTTP was read from it.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake not finished within listener.tls.handshake_timeout")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

impl HandshakeError {
    /// The `reason` label of `scopegate_tls_handshake_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeError::Timeout => "timeout",
            HandshakeError::Failed(_) => "failed",
        }
    }
}

/// Serves `stream` as it is without `tls`; with it, finishes a TLS handshake within the
/// deadline first and reads the client certificate the session verified.
///
/// # Errors
/// The handshake failed (bad client hello, no shared version or cipher suite, a client
/// certificate missing where required or not verifying) or took too long.
pub async fn accept(tls: Option<&TlsTermination>, stream: TcpStream) -> Result<Accepted, HandshakeError> {
    let Some(tls) = tls else {
        return Ok(Accepted {
            io: ServedIo::Plain(stream),
            client_certificate: None,
        });
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current.load_full());
    let session = tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(HandshakeError::Failed)?;
    let client_certificate = session
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|end_entity| ClientCertificate::new(end_entity.as_ref()));
    Ok(Accepted {
        io: ServedIo::Tls(Box::new(session)),
        client_certificate,
    })
}

impl AsyncRead for ServedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServedIo::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ServedIo::Tls(session) => Pin::new(session.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServedIo::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ServedIo::Tls(session) => Pin::new(session.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServedIo::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ServedIo::Tls(session) => Pin::new(session.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServedIo::Plain(stream) => stream.is_write_vectored(),
            ServedIo::Tls(session) => session.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServedIo::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ServedIo::Tls(session) => Pin::new(session.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServedIo::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            ServedIo::Tls(session) => Pin::new(session.as_mut()).poll_shutdown(cx),
        }
    }
}
