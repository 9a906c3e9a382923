//! The Shared Signals receiver: Security Event Tokens (RFC 8417) pushed by the configured
//! transmitter (RFC 8935), verified, and turned into holder rules.
//!
//! A SET is accepted when its signature verifies against the transmitter's published keys
//! (the same JOSE code and key-set fetching as access tokens; `kid` only selects among the
//! fetched keys), its `typ` is `secevent+jwt`, `iss` is the transmitter exactly, `aud`
//! names this receiver, `iat` is within `max_age` (and not in the future beyond 30 s of
//! skew), and its `jti` was not seen within `max_age` (a bounded cache: a replay is refused).
//!
//! Events acted on, each as "refuse every token of this subject issued at or before the
//! event's time" (`event_timestamp`, else the SET's `iat`, never later than now):
//! OpenID CAEP `session-revoked` and `credential-change`, RISC `account-disabled` and
//! `account-purged`. Subjects (RFC 9493): `iss_sub` (that issuer's `sub`), `opaque` (a
//! `sub` of any issuer), and `complex` whose `user` member is one of those. Other event
//! types are acknowledged and ignored; a known event about a subject in another format is
//! refused, so the transmitter learns it was not applied.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::fleet::config::SsfConfig;
use crate::metrics::Metrics;
use crate::token::discovery::IssuerDiscovery;
use crate::token::jws::{TokenError, VerifiedJws, verify_signature};
use crate::token::keys::IssuerKeys;
use crate::token::revocation::{Holder, RuleKey};

/// The event types applied as subject revocations.
pub const REVOKING_EVENTS: [&str; 4] = [
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-purged",
];

/// Largest SET accepted.
pub const MAX_SET_BYTES: usize = 64 * 1024;
/// Most `jti`s remembered against replay.
const MAX_REMEMBERED: u64 = 100_000;
/// Skew allowed on a SET's `iat`.
const SKEW: u64 = 30;

/// Why a SET was refused: an RFC 8935 §2.3 error code and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct SetError {
    /// `invalid_request`, `invalid_key`, `invalid_issuer` or `invalid_audience`.
    pub code: &'static str,
    pub description: String,
}

/// The refusal of a SET whose `jti` was already received.
pub fn replayed() -> SetError {
    refuse("invalid_request", "this jti was already received (replay)")
}

fn refuse(code: &'static str, description: impl Into<String>) -> SetError {
    SetError {
        code,
        description: description.into(),
    }
}

/// What a SET asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Holders whose tokens issued at or before the paired time (Unix seconds) are refused.
    pub revoke: Vec<(RuleKey, u64)>,
    /// Event types acknowledged without effect.
    pub ignored: usize,
    /// The SET's `jti`, for a fleet-wide replay check.
    pub jti: String,
}

/// The receiver of one transmitter's SETs.
pub struct SsfReceiver {
    config: SsfConfig,
    keys: Arc<IssuerKeys>,
    seen: moka::sync::Cache<String, ()>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl SsfReceiver {
    /// Starts fetching the transmitter's keys.
    pub fn start(config: &SsfConfig, metrics: Metrics) -> SsfReceiver {
        let discovery = IssuerDiscovery::new(&config.transmitter);
        let keys = IssuerKeys::new(config.transmitter.clone(), discovery, metrics);
        let refresher = keys.spawn_refresher();
        SsfReceiver {
            config: config.clone(),
            keys,
            seen: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(config.max_age + Duration::from_secs(SKEW))
                .build(),
            refresher,
        }
    }

    /// How long a SET is accepted after its `iat`, and its `jti` remembered.
    pub fn max_age(&self) -> Duration {
        self.config.max_age + Duration::from_secs(SKEW)
    }

    /// Stops the key refresh (on shutdown).
    pub fn stop(&self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }

    /// Verifies a SET and reads what it asks for, at `now` (Unix seconds).
    ///
    /// # Errors
    /// A [`SetError`] for a SET that must not be acted on; `Ok(None)` when the
    /// transmitter's keys cannot be had (an outage: the transmitter should retry).
    pub async fn receive(&self, set: &str, now: u64) -> Result<Option<Verdict>, SetError> {
        let Some(verified) = self.verify(set).await? else {
            return Ok(None);
        };
        let typ = verified.header.typ().map(str::to_ascii_lowercase);
        if !matches!(typ.as_deref(), Some("secevent+jwt" | "application/secevent+jwt")) {
            return Err(refuse("invalid_request", "typ must be secevent+jwt (RFC 8417 §2.3)"));
        }
        let claims: Map<String, Value> = serde_json::from_slice(&verified.payload)
            .map_err(|_| refuse("invalid_request", "the payload is not a JSON object"))?;
        self.check_claims(&claims, now)?;
        let mut verdict = read_events(&claims, now)?;
        verdict.jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Remembered only once everything else holds, so a forged SET cannot use up a jti.
        if !self.seen.entry(verdict.jti.clone()).or_insert(()).is_fresh() {
            return Err(replayed());
        }
        Ok(Some(verdict))
    }

    async fn verify(&self, set: &str) -> Result<Option<VerifiedJws>, SetError> {
        let algorithms = &self.config.transmitter.algorithms;
        let state = match self.keys.current() {
            Ok(state) => state,
            Err(_) if self.keys.refresh_on_demand().await => match self.keys.current() {
                Ok(state) => state,
                Err(_) => return Ok(None),
            },
            Err(_) => return Ok(None),
        };
        let first = verify_signature(set, &state.keys, algorithms, MAX_SET_BYTES);
        let result = match first {
            Err(TokenError::UnknownKey) => {
                let kid = crate::token::jws::parse(set, MAX_SET_BYTES)
                    .ok()
                    .and_then(|p| p.kid().map(str::to_owned));
                self.keys.refresh_for_unknown_kid(kid.as_deref(), &state).await;
                match self.keys.current() {
                    Ok(latest) => verify_signature(set, &latest.keys, algorithms, MAX_SET_BYTES),
                    Err(_) => return Ok(None),
                }
            }
            other => other,
        };
        match result {
            Ok(verified) => Ok(Some(verified)),
            Err(TokenError::Malformed | TokenError::TooLarge) => Err(refuse("invalid_request", "not a compact JWS")),
            Err(error) => Err(refuse("invalid_key", error.description())),
        }
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), SetError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.transmitter.issuer.as_str()) {
            return Err(refuse("invalid_issuer", "iss is not the configured transmitter"));
        }
        let for_us = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.config.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(self.config.audience.as_str())),
            _ => false,
        };
        if !for_us {
            return Err(refuse("invalid_audience", "aud does not name this receiver"));
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_f64)
            .filter(|iat| iat.is_finite() && *iat >= 0.0)
            .ok_or_else(|| refuse("invalid_request", "iat is required (a NumericDate)"))? as u64;
        if iat > now + SKEW {
            return Err(refuse("invalid_request", "iat is in the future"));
        }
        if now.saturating_sub(iat) > self.config.max_age.as_secs() {
            return Err(refuse("invalid_request", "the SET is older than the receiver accepts"));
        }
        if claims
            .get("exp")
            .and_then(Value::as_f64)
            .is_some_and(|exp| exp < now as f64)
        {
            return Err(refuse("invalid_request", "the SET has expired"));
        }
        if claims
            .get("jti")
            .and_then(Value::as_str)
            .is_none_or(|jti| jti.is_empty() || jti.len() > 256)
        {
            return Err(refuse("invalid_request", "jti is required (1 to 256 characters)"));
        }
        Ok(())
    }
}

/// Reads the `events` claim (RFC 8417 §2.2) into holder rules.
fn read_events(claims: &Map<String, Value>, now: u64) -> Result<Verdict, SetError> {
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .filter(|events| !events.is_empty())
        .ok_or_else(|| refuse("invalid_request", "events must be a non-empty JSON object"))?;
    let set_iat = claims.get("iat").and_then(Value::as_f64).unwrap_or_default() as u64;
    let mut verdict = Verdict::default();
    for (event_type, event) in events {
        if !REVOKING_EVENTS.contains(&event_type.as_str()) {
            verdict.ignored += 1;
            continue;
        }
        // SSF 1.0 puts the subject in the SET's `sub_id`; earlier drafts in the event.
        let subject = event
            .get("subject")
            .or_else(|| claims.get("sub_id"))
            .ok_or_else(|| refuse("invalid_request", "the event names no subject"))?;
        let key = subject_key(subject)?;
        let at = event
            .get("event_timestamp")
            .and_then(Value::as_f64)
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map_or(set_iat, |t| t as u64)
            .min(now);
        verdict.revoke.push((key, at));
    }
    Ok(verdict)
}

/// An RFC 9493 subject identifier, as the tokens it covers are recognized.
fn subject_key(subject: &Value) -> Result<RuleKey, SetError> {
    let text = |name: &str| {
        subject
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| refuse("invalid_request", format!("the subject has no {name}")))
    };
    match subject.get("format").and_then(Value::as_str) {
        Some("iss_sub") => Ok(RuleKey {
            issuer: Some(text("iss")?),
            holder: Holder::Subject(text("sub")?),
        }),
        Some("opaque") => Ok(RuleKey {
            issuer: None,
            holder: Holder::Subject(text("id")?),
        }),
        Some("complex") => subject_key(
            subject
                .get("user")
                .ok_or_else(|| refuse("invalid_request", "a complex subject without user"))?,
        ),
        Some(other) => Err(refuse(
            "invalid_request",
            format!("subject format {other:?} is not supported (iss_sub, opaque, complex with user)"),
        )),
        None => Err(refuse("invalid_request", "the subject has no format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_become_subject_rules() {
        let claims = json!({
            "iat": 1_000,
            "sub_id": {"format": "opaque", "id": "carol"},
            "events": {
                REVOKING_EVENTS[0]: {
                    "subject": {"format": "iss_sub", "iss": "https://as.example", "sub": "alice"},
                    "event_timestamp": 990
                },
                REVOKING_EVENTS[2]: {},
                "https://schemas.openid.net/secevent/caep/event-type/token-claims-change": {}
            }
        });
        let verdict = read_events(claims.as_object().expect("object"), 1_010).expect("valid");
        assert_eq!(verdict.ignored, 1);
        let alice = RuleKey {
            issuer: Some("https://as.example".into()),
            holder: Holder::Subject("alice".into()),
        };
        let carol = RuleKey {
            issuer: None,
            holder: Holder::Subject("carol".into()),
        };
        assert_eq!(verdict.revoke, vec![(alice, 990), (carol, 1_000)]);
        let email = json!({"iat": 1, "events": {REVOKING_EVENTS[1]: {"subject": {"format": "email", "email": "a@b"}}}});
        assert_eq!(
            read_events(email.as_object().expect("object"), 2).map_err(|e| e.code),
            Err("invalid_request")
        );
    }
}
