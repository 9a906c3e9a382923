//! Token minting helpers: arbitrary compact JWS for hostile tests, and the
//! request shape for minting legitimate access tokens.

use std::time::Duration;

use serde_json::{Map, Value};

use super::keys::SigningKey;
use crate::token::signing::{encode_json, sign_compact};

/// Mint a compact JWS with ANY header and claims, signed by `key`.
///
/// The header is used verbatim: it is not forced to match the key, so tests
/// can produce `alg`/`kid`/`typ`/`crit`/`jku` mismatches.
pub fn mint(header: &Value, claims: &Value, key: &SigningKey) -> String {
    sign_segments(&encode_json(header), &encode_json(claims), key)
}

/// `"<header>.<payload>."`: an unsigned token (e.g. with `"alg":"none"`).
pub fn mint_unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", encode_json(header), encode_json(claims))
}

/// Sign already-encoded segments (which may be malformed on purpose, e.g.
/// padded or non-base64url) and return `"<h>.<p>.<sig>"`.
pub fn sign_segments(header_b64: &str, payload_b64: &str, key: &SigningKey) -> String {
    sign_compact(header_b64, payload_b64, |input| key.sign(input))
}

/// Join raw segments with `.` (extra or missing segments, empty signature…).
pub fn mint_segments(segments: &[&str]) -> String {
    segments.join(".")
}

/// A request to mint a legitimate access token directly (no HTTP flow).
#[derive(Clone, Debug)]
pub struct AccessTokenRequest {
    /// `sub` claim.
    pub sub: String,
    /// `client_id` claim.
    pub client_id: String,
    /// Space-separated `scope` claim.
    pub scope: String,
    /// `aud`: a single string when one entry, an array otherwise; empty
    /// means the issuer's default audience.
    pub audience: Vec<String>,
    /// Lifetime in seconds from now; zero or negative mints an already
    /// expired token.
    pub expires_in_secs: i64,
    /// Extra claims merged last (they may override the standard ones); for an opaque token,
    /// introspection answers with them.
    pub extra_claims: Map<String, Value>,
}

impl Default for AccessTokenRequest {
    fn default() -> Self {
        Self {
            sub: "dev-user".into(),
            client_id: "dev-client".into(),
            scope: "read".into(),
            audience: Vec::new(),
            expires_in_secs: 300,
            extra_claims: Map::new(),
        }
    }
}

impl AccessTokenRequest {
    /// Convenience constructor: `scope` for `audience`, default subject and client.
    pub fn new(scope: &str, audience: &[&str]) -> Self {
        Self {
            scope: scope.into(),
            audience: audience.iter().map(|s| (*s).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Set the lifetime from a duration.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.expires_in_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn unsigned_has_empty_signature() {
        let t = mint_unsigned(&json!({"alg": "none"}), &json!({"sub": "x"}));
        assert!(t.ends_with('.'));
        assert_eq!(t.split('.').count(), 3);
    }

    #[test]
    fn hmac_mint_is_deterministic() {
        let key = SigningKey::hmac("h", b"secret");
        let a = mint(&json!({"alg": "HS256"}), &json!({"a": 1}), &key);
        let b = mint(&json!({"alg": "HS256"}), &json!({"a": 1}), &key);
        assert_eq!(a, b);
    }
}
