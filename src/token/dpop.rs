//! DPoP proofs (RFC 9449 §4.3): one proof is checked per request, with the JOSE code of
//! [`super::jws`] and [`super::jwk`]; the key comes from the proof's own `jwk` header, which
//! is the point of a proof (its thumbprint must then equal the token's `cnf.jkt`, checked by
//! [`super::binding`]).
//!
//! The checks, in order: size, compact JWS structure, `typ` `dpop+jwt`, `alg` from the
//! allowlist (never `none` or HMAC), no `crit`, a public `jwk` that fits `alg`, the
//! signature, then the claims: `jti` (a string), `htm` equal to the method, `htu` equal to
//! the request URI (query and fragment ignored), `iat` within `max_age` (plus leeway both
//! ways), `ath` equal to the token's hash, the server nonce when one is required, and last
//! `jti` unseen — so only a proof that is otherwise good is remembered.

use std::time::Duration;

use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use moka::sync::Cache;
use serde_json::Value;

use super::config::sender::DpopConfig;
use super::error::{NONCE_BYTES, Nonce, ProofError};
use super::jwk::{B64URL, parse_jwk};
use super::jws::{Round, check_header, decode, full_media_type, numeric_date, parse_object};

/// Longest proof read, in bytes (a proof with an RSA 4096 `jwk` is under 2 KiB).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// The request a proof must be about.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// The request method, as sent.
    pub method: &'a str,
    /// The request URI as the client addressed it, without query and fragment
    /// (see [`super::binding::received_uri`]).
    pub uri: &'a str,
    /// The access token sent with the proof; `None` at a token endpoint (RFC 9449 §4.3
    /// step 12: `ath` is checked only when a token accompanies the proof).
    pub token: Option<&'a str>,
}

/// State shared by every request (and kept across reloads): seen `jti`s and the nonce key.
pub struct ProofState {
    seen: Cache<[u8; 32], ()>,
    nonce_key: hmac::Key,
}

impl ProofState {
    pub fn new(capacity: u64, window: Duration) -> ProofState {
        let mut secret = [0u8; 32];
        // The nonce key only has to be unguessable for this process: without entropy, no
        // nonce can be trusted, so none would verify and every proof would be asked again.
        if rand::fill(&mut secret).is_err() {
            tracing::error!("no randomness for the DPoP nonce key");
        }
        ProofState {
            seen: Cache::builder().max_capacity(capacity).time_to_live(window).build(),
            nonce_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }
}

/// Checks DPoP proofs under one `[dpop]` configuration.
pub struct ProofVerifier {
    config: DpopConfig,
    state: std::sync::Arc<ProofState>,
}

impl ProofVerifier {
    /// A verifier for `config`, keeping `previous`'s remembered `jti`s and nonce key when its
    /// replay window and capacity are the same (a reload must not reopen the replay window).
    pub fn new(config: &DpopConfig, previous: Option<&ProofVerifier>) -> ProofVerifier {
        let window = replay_window(config);
        let state = match previous {
            Some(p)
                if replay_window(&p.config) == window
                    && p.config.replay_cache_entries == config.replay_cache_entries =>
            {
                std::sync::Arc::clone(&p.state)
            }
            _ => std::sync::Arc::new(ProofState::new(config.replay_cache_entries, window)),
        };
        ProofVerifier {
            config: config.clone(),
            state,
        }
    }

    pub fn config(&self) -> &DpopConfig {
        &self.config
    }

    /// Checks `proof` for `target` at `now` (Unix seconds) and returns the RFC 7638
    /// thumbprint of its key.
    ///
    /// # Errors
    /// The first rule the proof breaks.
    pub fn check(&self, proof: &str, target: &ProofTarget<'_>, now: u64) -> Result<String, ProofError> {
        let decoded = decode(proof, MAX_PROOF_BYTES).map_err(|_| ProofError::Invalid)?;
        let header = &decoded.header;
        // RFC 9449 §4.2: `typ` is `dpop+jwt`, which keeps an access token or ID token from
        // being taken as a proof.
        if header.typ().map(full_media_type).as_deref() != Some("application/dpop+jwt") {
            return Err(ProofError::Invalid);
        }
        let alg = check_header(header, &self.config.algorithms).map_err(|_| ProofError::Invalid)?;
        // RFC 9449 §4.3 step 7: a public key; `parse_jwk` refuses private members and `oct`.
        let key = header
            .raw()
            .get("jwk")
            .filter(|jwk| jwk.is_object())
            .ok_or(ProofError::Invalid)
            .and_then(|jwk| parse_jwk(jwk).map_err(|_| ProofError::Invalid))?;
        if !key.accepts(alg) {
            return Err(ProofError::Invalid);
        }
        if !key.verify(alg, decoded.signing_input.as_bytes(), &decoded.signature) {
            return Err(ProofError::BadSignature);
        }
        let claims = parse_object(&decoded.payload).map_err(|_| ProofError::Invalid)?;
        let string = |name: &str| match claims.get(name) {
            Some(Value::String(value)) if !value.is_empty() => Ok(value.as_str()),
            _ => Err(ProofError::Invalid),
        };
        let jti = string("jti")?;
        if jti.len() > 256 {
            return Err(ProofError::Invalid);
        }
        if string("htm")? != target.method {
            return Err(ProofError::MethodMismatch);
        }
        if !same_uri(string("htu")?, target.uri) {
            return Err(ProofError::UriMismatch);
        }
        let iat = claims
            .get("iat")
            .ok_or(ProofError::Invalid)
            .and_then(|iat| numeric_date(iat, Round::Up).map_err(|_| ProofError::Invalid))?;
        let leeway = self.config.leeway.as_secs();
        let oldest = now.saturating_sub(self.config.max_age.as_secs() + leeway);
        if iat < oldest || iat > now.saturating_add(leeway) {
            return Err(ProofError::Stale);
        }
        // RFC 9449 §4.3 step 12 (§7): the proof names the token it goes with.
        if let Some(token) = target.token {
            let expected_ath = B64URL.encode(sha256(token.as_bytes()));
            if string("ath")? != expected_ath {
                return Err(ProofError::TokenHashMismatch);
            }
        }
        if let Some(lifetime) = self.config.nonce_lifetime {
            let fresh = claims
                .get("nonce")
                .and_then(Value::as_str)
                .is_some_and(|nonce| self.nonce_is_fresh(nonce, lifetime, now));
            if !fresh {
                return Err(ProofError::UseNonce(self.nonce(lifetime, now)));
            }
        }
        // RFC 9449 §11.1: a `jti` is used once within the window the proof is accepted in;
        // keyed by the proof key too, so clients cannot collide with each other.
        let mut seen_key = Vec::with_capacity(jti.len() + 64);
        seen_key.extend_from_slice(key.thumbprint().as_bytes());
        seen_key.push(b' ');
        seen_key.extend_from_slice(jti.as_bytes());
        let entry = self.state.seen.entry(sha256(&seen_key)).or_insert(());
        if !entry.is_fresh() {
            return Err(ProofError::Replay);
        }
        Ok(key.thumbprint().to_owned())
    }

    /// A nonce for the current window.
    pub fn nonce(&self, lifetime: Duration, now: u64) -> Nonce {
        let window = now / lifetime.as_secs().max(1);
        let mut bytes = [0u8; NONCE_BYTES];
        bytes[..8].copy_from_slice(&window.to_be_bytes());
        let tag = hmac::sign(&self.state.nonce_key, &bytes[..8]);
        bytes[8..].copy_from_slice(&tag.as_ref()[..NONCE_BYTES - 8]);
        Nonce(bytes)
    }

    /// A nonce of this key from the current or the previous window.
    fn nonce_is_fresh(&self, nonce: &str, lifetime: Duration, now: u64) -> bool {
        let Some(bytes) = super::jwk::b64url_decode(nonce).filter(|b| b.len() == NONCE_BYTES) else {
            return false;
        };
        let mut window = [0u8; 8];
        window.copy_from_slice(&bytes[..8]);
        let window = u64::from_be_bytes(window);
        let current = now / lifetime.as_secs().max(1);
        if window != current && window.saturating_add(1) != current {
            return false;
        }
        let tag = hmac::sign(&self.state.nonce_key, &bytes[..8]);
        aws_lc_rs::constant_time::verify_slices_are_equal(&tag.as_ref()[..NONCE_BYTES - 8], &bytes[8..]).is_ok()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// How long a `jti` must be remembered: as long as a proof carrying it is accepted.
fn replay_window(config: &DpopConfig) -> Duration {
    config.max_age + config.leeway * 2 + Duration::from_secs(1)
}

/// RFC 9449 §4.3 step 9: `htu` matches the request URI ignoring query and fragment, after
/// RFC 3986 §6.2.2–6.2.3 normalization of scheme and host case and the default port.
pub fn same_uri(htu: &str, received: &str) -> bool {
    match (normalize_uri(htu), normalize_uri(received)) {
        (Some(claimed), Some(actual)) => claimed == actual,
        _ => false,
    }
}

fn normalize_uri(uri: &str) -> Option<String> {
    let without_fragment = uri.split('#').next().unwrap_or_default();
    let parsed: http::Uri = without_fragment.parse().ok()?;
    let scheme = parsed.scheme_str()?.to_ascii_lowercase();
    let authority = parsed.authority()?;
    let host = authority.host().to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let port = authority.port_u16().filter(|port| *port != default_port);
    let path = match parsed.path() {
        "" => "/",
        path => path,
    };
    Some(match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_compare_after_normalization() {
        assert!(same_uri("https://API.example/a?x=1#f", "https://api.example/a"));
        assert!(same_uri("http://h:80/p", "http://h/p"));
        assert!(same_uri("https://h", "https://h/"));
        assert!(!same_uri("https://h/a", "http://h/a"));
        assert!(!same_uri("https://h/a", "https://h/A"));
        assert!(!same_uri("https://h:8443/a", "https://h/a"));
        assert!(!same_uri("/a", "/a"));
    }

    #[test]
    fn nonces_verify_for_two_windows_only() {
        let config = DpopConfig {
            nonce_lifetime: Some(Duration::from_secs(60)),
            ..DpopConfig::default()
        };
        let verifier = ProofVerifier::new(&config, None);
        let lifetime = Duration::from_secs(60);
        let nonce = verifier.nonce(lifetime, 6000).encoded();
        assert!(verifier.nonce_is_fresh(&nonce, lifetime, 6000));
        assert!(verifier.nonce_is_fresh(&nonce, lifetime, 6119));
        assert!(!verifier.nonce_is_fresh(&nonce, lifetime, 6120));
        let other = ProofVerifier::new(&config, None);
        assert!(!other.nonce_is_fresh(&nonce, lifetime, 6000), "another key's nonce");
        assert!(!verifier.nonce_is_fresh("bm9uY2U", lifetime, 6000));
    }
}
