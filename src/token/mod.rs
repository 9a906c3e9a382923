//! Local validation of OAuth 2.0 JWT access tokens.
//!
//! * [`jwk`] parses an authorization server's JWK Set (RFC 7517) into verifying keys, skipping
//!   (and reporting) every key that must not be used for signature verification.
//! * [`jws`] parses compact JWS tokens (RFC 7515), verifies their signature against a
//!   [`jwk::KeySet`], and validates access-token claims (RFC 7519, RFC 9068).
//!
//! The JOSE handling is deliberately written here rather than delegated to a JWT library: only
//! the signature primitive comes from `aws-lc-rs`, and every header and claim rule is explicit.

pub mod jwk;
pub mod jws;
