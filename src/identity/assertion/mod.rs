//! The identity assertion: instead of the client's token, the upstream receives a short-lived
//! JWT that scopegate signs with its own key, naming who called (`sub`, `client_id`, `scope`,
//! and the issuer that vouched for them, `token_iss`). Upstreams verify it against the JWKS
//! the admin listener serves at `/.well-known/jwks.json` and never see a client's token.
//!
//! Explicitly typed (RFC 8725 §3.11) as `typ: "scopegate+jwt"`, so that it can be mistaken
//! neither for an access token (`at+jwt`, RFC 9068) nor for an ID token.

pub mod config;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::token::Principal;
use crate::token::signing::{SigningKeyPair, encode_json, sign_compact};

/// The JOSE `typ` of every assertion.
pub const ASSERTION_TYPE: &str = "scopegate+jwt";

/// The claim naming the issuer of the client's token (`iss` is scopegate's own).
pub const ORIGINAL_ISSUER_CLAIM: &str = "token_iss";

/// Where the admin listener serves the public key.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// scopegate's signing key, and whether it was generated at start (it then lives as long as
/// the process, carried across reloads that keep the same algorithm).
#[derive(Debug)]
pub struct AssertionKey {
    pub pair: SigningKeyPair,
    /// The RFC 7638 thumbprint of the public key: stable for a key file across restarts.
    pub kid: String,
    pub generated: bool,
}

impl AssertionKey {
    pub fn new(pair: SigningKeyPair, generated: bool) -> AssertionKey {
        AssertionKey {
            kid: pair.thumbprint(),
            pair,
            generated,
        }
    }
}

/// `[identity.assertion]`, compiled: present only when enabled.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub issuer: String,
    pub audience: String,
    /// At most this long; never past the client token's `exp`.
    pub lifetime: Duration,
    /// `authorization` (sent as `Bearer <jwt>`) or a header that carries the bare JWT.
    pub header: HeaderName,
    pub key: Arc<AssertionKey>,
}

impl Assertion {
    /// The assertion for `principal`, issued at `now` (Unix seconds).
    pub fn sign(&self, principal: &Principal, now: u64) -> String {
        let header = json!({
            "alg": self.key.pair.algorithm().name(),
            "typ": ASSERTION_TYPE,
            "kid": self.key.kid,
        });
        let expires = now.saturating_add(self.lifetime.as_secs()).min(principal.expires_at);
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.as_str().into());
        claims.insert("aud".into(), self.audience.as_str().into());
        if let Some(subject) = &principal.subject {
            claims.insert("sub".into(), subject.as_str().into());
        }
        if let Some(client_id) = &principal.client_id {
            claims.insert("client_id".into(), client_id.as_str().into());
        }
        // RFC 8693 §4.2: `scope` is one space-separated string.
        claims.insert("scope".into(), principal.scopes.join(" ").into());
        claims.insert(ORIGINAL_ISSUER_CLAIM.into(), principal.issuer.as_str().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), expires.into());
        claims.insert("jti".into(), random_id().into());
        sign_compact(&encode_json(&header), &encode_json(&Value::Object(claims)), |input| {
            self.key.pair.sign(input)
        })
    }

    /// The header the upstream receives, and its value.
    pub fn header_for(&self, principal: &Principal, now: u64) -> (HeaderName, HeaderValue) {
        let jwt = self.sign(principal, now);
        let text = if self.header == http::header::AUTHORIZATION {
            format!("Bearer {jwt}")
        } else {
            jwt
        };
        let value = HeaderValue::try_from(text).expect("base64url segments joined by dots are a valid header value");
        (self.header.clone(), value)
    }

    /// The JWKS upstreams verify assertions with: the public key only.
    pub fn jwks(&self) -> Value {
        let mut jwk = self.key.pair.public_members();
        jwk.insert("kid".into(), self.key.kid.as_str().into());
        jwk.insert("alg".into(), self.key.pair.algorithm().name().into());
        jwk.insert("use".into(), "sig".into());
        json!({ "keys": [Value::Object(jwk)] })
    }

    /// On reload: a key generated at start is kept while the algorithm stays the same, so that
    /// a reload does not change it under upstreams that cached the JWKS.
    pub fn keep_generated_key(&mut self, previous: &Assertion) {
        if self.key.generated && previous.key.generated && self.key.pair.algorithm() == previous.key.pair.algorithm() {
            self.key = Arc::clone(&previous.key);
        }
    }
}

/// A `jti`: 128 random bits, base64url.
fn random_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator is available");
    crate::token::jwk::B64URL.encode(bytes)
}
