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
//! * the client-credentials grant and the device authorization grant (RFC 8628),
//! * RFC 9068 JWT access tokens (or opaque tokens), DPoP-bound (RFC 9449) when the token
//!   request carries a proof,
//! * RFC 7009 revocation, RFC 7662 introspection and a userinfo endpoint,
//! * fault injection and request counters for outage tests,
//! * a Shared Signals transmitter: CAEP/RISC Security Event Tokens signed with its key and
//!   pushed to a receiver (RFC 8417, RFC 8935).
//!
//! All state lives in memory. It is **never** meant for production: it has
//! no login, approves every request and only listens on loopback unless told
//! otherwise.
//!
//! [`mint`] builds arbitrary (including hostile) compact JWS tokens for tests;
//! [`DpopProver`] signs DPoP proofs, valid or not.
//!
//! Compiled only with the `dev` cargo feature (on by default); the production build
//! (`--no-default-features`, the container image) leaves all of it out.

// Imports run one way: server → handlers → flows → device → (client_auth, registration) →
// (respond, state) → (bounded, config, mint) → keys → error; `proof` uses state, mint and
// keys; `cli`, `demo` and `transmit` sit on top.
mod bounded;
pub mod cli;
mod client_auth;
mod clients;
mod config;
pub mod demo;
mod device;
mod error;
mod flows;
mod handlers;
mod keys;
mod mint;
mod proof;
mod registration;
mod respond;
mod server;
mod state;
mod transmit;

pub use config::{DevIssuerConfig, Endpoint, Fault};
pub use error::DevError;
pub use keys::{KeyAlg, SigningKey, b64url};
pub use mint::{AccessTokenRequest, mint, mint_segments, mint_unsigned, sign_segments};
pub use proof::DpopProver;
pub use server::DevIssuer;
pub use state::{ClientRegistration, RegisteredClient};
pub use transmit::{SESSION_REVOKED, SecurityEvent, push};
