//! A Shared Signals transmitter for tests and the demo: a Security Event Token (RFC 8417)
//! signed with the issuer's current key, pushed as RFC 8935 describes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::error::DevError;
use super::keys::SigningKey;
use super::mint::mint;
use super::server::DevIssuer;

impl DevIssuer {
    /// Signs `event` as this issuer, with its current key, and pushes it to `receiver`.
    /// Returns the SET (to replay it) with the receiver's status and body.
    ///
    /// # Errors
    /// The receiver could not be reached.
    pub async fn transmit(&self, receiver: &str, event: &SecurityEvent) -> Result<(String, u16, String), DevError> {
        let set = event.sign(self.issuer(), &self.current_key());
        let (status, body) = push(receiver, &set).await?;
        Ok((set, status, body))
    }
}

/// The OpenID CAEP `session-revoked` event type.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// What a SET says; everything a test may want to get wrong on purpose is a field.
#[derive(Clone, Debug)]
pub struct SecurityEvent {
    /// The event type URI.
    pub event_type: String,
    /// The RFC 9493 subject identifier.
    pub subject: Value,
    /// `aud`: the receiver.
    pub audience: String,
    /// `iss`; `None` is the issuer's own.
    pub issuer: Option<String>,
    /// `jti`; `None` is a fresh one.
    pub jti: Option<String>,
    /// How long ago the SET was issued.
    pub age: Duration,
}

impl SecurityEvent {
    /// A CAEP `session-revoked` event about `sub` of issuer `iss` (an `iss_sub` subject).
    pub fn session_revoked(iss: &str, sub: &str, audience: &str) -> SecurityEvent {
        SecurityEvent {
            event_type: SESSION_REVOKED.into(),
            subject: json!({"format": "iss_sub", "iss": iss, "sub": sub}),
            audience: audience.into(),
            issuer: None,
            jti: None,
            age: Duration::ZERO,
        }
    }

    /// The SET, signed with `key` as issuer `issuer` (unless the event overrides it).
    pub fn sign(&self, issuer: &str, key: &SigningKey) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let iat = now.saturating_sub(self.age).as_secs();
        let jti = self.jti.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; 16];
            let _ = aws_lc_rs::rand::fill(&mut bytes);
            super::keys::b64url(&bytes)
        });
        let header = json!({"alg": key.alg_name(), "kid": key.kid(), "typ": "secevent+jwt"});
        let claims = json!({
            "iss": self.issuer.as_deref().unwrap_or(issuer),
            "aud": self.audience,
            "iat": iat,
            "jti": jti,
            "events": { self.event_type.as_str(): { "subject": self.subject, "event_timestamp": iat } },
        });
        mint(&header, &claims, key)
    }
}

/// POSTs a SET to `receiver` (RFC 8935 §2.1); returns the status and the body.
///
/// # Errors
/// The receiver could not be reached.
pub async fn push(receiver: &str, set: &str) -> Result<(u16, String), DevError> {
    let response = reqwest::Client::new()
        .post(receiver)
        .header(http::header::CONTENT_TYPE, "application/secevent+jwt")
        .header(http::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(10))
        .body(set.to_owned())
        .send()
        .await
        .map_err(|e| DevError::Transmit(e.to_string()))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}
