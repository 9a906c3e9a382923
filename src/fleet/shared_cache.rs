//! Introspection answers shared by the fleet: after one sidecar introspects an opaque
//! token, the others reuse its answer instead of asking the authorization server again.
//!
//! Stored under `<key_prefix>introspection:<hex SHA-256 of the token>` (never the token),
//! holding only what the proxy reads (issuer, subject, client, scopes, audiences, the
//! retained claims, `exp`, `iat`), with the TTL the local cache gave it (at most the
//! positive TTL, never past `exp`). Only active answers are shared. A lookup that fails or
//! is slow is a miss: the sidecar introspects, as without a fleet. Revocations are checked
//! before and after, so a shared answer never outlives one.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fleet::redis::RedisLink;
use crate::metrics::Metrics;
use crate::token::principal::{Confirmation, Principal};
use crate::token::shared::{Lookup, SharedAnswer, SharedAnswers};

/// An active answer as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    scope: Vec<String>,
    aud: Vec<String>,
    #[serde(default)]
    claims: Map<String, Value>,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    /// The token's binding (`cnf`, RFC 9449 / RFC 8705): a bound token stays bound when
    /// another sidecar reuses the answer, so its proof or certificate is still asked for.
    /// `cnf` says the token had one, even with no member scopegate can check (such a token
    /// is refused everywhere, and must stay so).
    #[serde(default)]
    cnf: bool,
    #[serde(default)]
    cnf_jkt: Option<String>,
    #[serde(default, rename = "cnf_x5t#S256")]
    cnf_x5t_s256: Option<String>,
}

impl Stored {
    /// What is stored of an active answer: what the proxy reads, never the token.
    fn of(principal: &Principal) -> Stored {
        Stored {
            iss: principal.issuer.clone(),
            sub: principal.subject.clone(),
            client_id: principal.client_id.clone(),
            scope: principal.scopes.clone(),
            aud: principal.audiences.clone(),
            claims: principal
                .claims
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect(),
            exp: principal.expires_at,
            iat: principal.issued_at,
            cnf: principal.confirmation.is_some(),
            cnf_jkt: principal.confirmation.as_ref().and_then(|c| c.jkt.clone()),
            cnf_x5t_s256: principal.confirmation.as_ref().and_then(|c| c.x5t_s256.clone()),
        }
    }

    /// The answer as another sidecar reuses it.
    fn into_principal(self) -> Principal {
        let stored = self;
        Principal {
            issuer: stored.iss,
            subject: stored.sub,
            client_id: stored.client_id,
            scopes: stored.scope,
            audiences: stored.aud,
            claims: stored.claims.into(),
            expires_at: stored.exp,
            issued_at: stored.iat,
            confirmation: stored.cnf.then_some(Confirmation {
                jkt: stored.cnf_jkt,
                x5t_s256: stored.cnf_x5t_s256,
            }),
        }
    }
}

/// The fleet's shared introspection answers.
pub struct SharedIntrospection {
    link: Arc<RedisLink>,
    prefix: String,
    metrics: Metrics,
}

impl SharedIntrospection {
    pub fn new(link: Arc<RedisLink>, key_prefix: &str, metrics: Metrics) -> SharedIntrospection {
        SharedIntrospection {
            link,
            prefix: format!("{key_prefix}introspection:"),
            metrics,
        }
    }

    fn key(&self, digest: &[u8; 32]) -> String {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{hex}", self.prefix)
    }

    fn count(&self, result: &str) {
        self.metrics.fleet_shared_lookups.with_label_values(&[result]).inc();
    }

    async fn lookup(&self, digest: [u8; 32]) -> Option<SharedAnswer> {
        let key = self.key(&digest);
        let mut pipeline = ::redis::pipe();
        pipeline.get(&key).pttl(&key);
        let (value, pttl): (Option<Vec<u8>>, i64) = match self.link.run(&pipeline).await {
            Ok(answer) => answer,
            Err(error) => {
                self.count("error");
                self.metrics.fleet_errors.with_label_values(&["shared_cache"]).inc();
                tracing::debug!(%error, "fleet: shared introspection lookup failed; introspecting");
                return None;
            }
        };
        let stored = value.and_then(|v| serde_json::from_slice::<Stored>(&v).ok());
        let (Some(stored), Ok(ttl_ms)) = (stored, u64::try_from(pttl)) else {
            self.count("miss");
            return None;
        };
        self.count("hit");
        Some(SharedAnswer {
            principal: Arc::new(stored.into_principal()),
            ttl: Duration::from_millis(ttl_ms),
        })
    }
}

impl SharedAnswers for SharedIntrospection {
    fn load(&self, digest: [u8; 32]) -> Lookup<'_> {
        Box::pin(self.lookup(digest))
    }

    fn store(&self, digest: [u8; 32], principal: Arc<Principal>, ttl: Duration) {
        let stored = Stored::of(&principal);
        let Ok(value) = serde_json::to_vec(&stored) else { return };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let command = ::redis::cmd("SET")
            .arg(self.key(&digest))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .to_owned();
        let link = Arc::clone(&self.link);
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = link.run::<()>(&command).await {
                metrics.fleet_errors.with_label_values(&["shared_cache"]).inc();
                tracing::debug!(%error, "fleet: could not share an introspection answer");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::principal::Confirmation;

    fn principal(confirmation: Option<Confirmation>) -> Principal {
        Principal {
            issuer: "https://as.example".into(),
            subject: Some("alice".into()),
            client_id: Some("app".into()),
            scopes: vec!["read".into()],
            audiences: vec!["https://api.example".into()],
            claims: Default::default(),
            expires_at: 2_000_000_000,
            issued_at: Some(1_900_000_000),
            confirmation,
        }
    }

    fn round_trip(original: &Principal) -> Principal {
        let bytes = serde_json::to_vec(&Stored::of(original)).unwrap_or_default();
        let stored: Option<Stored> = serde_json::from_slice(&bytes).ok();
        stored.map(Stored::into_principal).unwrap_or_else(|| principal(None))
    }

    /// A bound token stays bound through the shared cache: another sidecar still asks for
    /// its proof or certificate. So does a `cnf` with nothing scopegate can check.
    #[test]
    fn a_binding_survives_the_shared_cache() {
        for confirmation in [
            None,
            Some(Confirmation {
                jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
                x5t_s256: None,
            }),
            Some(Confirmation {
                jkt: None,
                x5t_s256: Some("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2".into()),
            }),
            Some(Confirmation::default()),
        ] {
            let original = principal(confirmation);
            let shared = round_trip(&original);
            assert_eq!(shared.confirmation, original.confirmation);
            assert_eq!(shared.issued_at, original.issued_at);
            assert_eq!(shared.scopes, original.scopes);
        }
    }
}
