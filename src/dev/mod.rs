//! Embedded **development** OAuth 2.0 authorization server.
//!
//! Used by `scopegate demo` and by the integration tests. It implements the
//! subset of a real authorization server that scopegate sits behind:
//!
//! * discovery: RFC 8414 metadata and OpenID Connect discovery,
//! * a JWKS with key rotation and a grace period for retired keys,
//! * RFC 7591 dynamic client registration,
//! * the authorization-code grant with PKCE (S256 only) and RFC 8707
//!   resource indicators, auto-approved for a fixed development user,
//! * refresh tokens with rotation and family revocation on reuse,
//! * the client-credentials grant,
//! * RFC 9068 JWT access tokens (or opaque tokens),
//! * RFC 7009 revocation, RFC 7662 introspection and a userinfo endpoint,
//! * fault injection and request counters for outage tests.
//!
//! All state lives in memory. It is **never** meant for production: it has
//! no login, approves every request and only listens on loopback unless told
//! otherwise.
//!
//! [`mint`] builds arbitrary (including hostile) compact JWS tokens for tests.

pub mod cli;
pub mod demo;
mod flows;
mod handlers;
mod keys;
mod mint;
mod registration;
mod server;
mod state;

pub use keys::{KeyAlg, SigningKey, b64url};
pub use mint::{AccessTokenRequest, mint, mint_segments, mint_unsigned, sign_segments};
pub use server::{DevIssuer, DevIssuerConfig, Endpoint, Fault};
pub use state::{ClientRegistration, RegisteredClient};

/// Errors of the development issuer.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Socket or other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
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
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}
