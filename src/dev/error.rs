//! The development issuer's one error type (a leaf: every part of `dev` may raise it).

/// Errors of the development issuer.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Socket or other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A listener could not be bound (the message names it and its address).
    #[error(transparent)]
    Bind(#[from] crate::server::BindError),
    /// The listener is bound to a non-loopback address and
    /// `allow_non_loopback` is off.
    #[error(
        "refusing to serve the development issuer on non-loopback address {0} \
         (set allow_non_loopback to override)"
    )]
    NonLoopback(std::net::SocketAddr),
    /// Key generation, loading or signing failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// A requested feature or parameter is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A security event could not be delivered.
    #[error("cannot deliver the security event: {0}")]
    Transmit(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}
