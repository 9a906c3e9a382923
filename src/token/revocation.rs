//! Revoked tokens: pushed through the admin plane's `POST /cache/evict`, and refused on every
//! authentication until they expire, whatever the caches hold or a verification says.
//!
//! Evicting a cached answer alone is not a revocation: a JWT verifies again locally on the
//! next request, and an introspection call already in flight stores its (now stale) answer
//! after the eviction. So each revocation is also kept here, by the token's SHA-256, until
//! the token's own expiry when it is known (plus the issuer's leeway), else for
//! [`RevocationLimits::max_ttl`]; and the set is consulted before any cache or verification.
//! It outlives config reloads: a revocation, once accepted, is not forgotten before the
//! token's expiry (DESIGN §7 "Fleet"). The set is bounded: when it is full a new revocation
//! is refused (the caller hears so), never an older one dropped.
//!
//! Beside single tokens it holds *holder rules* (fed by the fleet and by Shared Signals
//! events): "refuse every token of subject S (or client C), of issuer I or of any issuer,
//! issued at or before time T". They are checked on the verified principal, after the
//! token's own revocation, and count against the same bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::token::principal::Principal;

/// Bounds of the revocation set (`[admin]` `revocation_max_entries`, `revocation_max_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationLimits {
    /// Revocations held at once; a revocation beyond it is refused, never one forgotten.
    pub max_entries: usize,
    /// How long a revocation is kept when the token's expiry is not known.
    pub max_ttl: Duration,
}

impl Default for RevocationLimits {
    fn default() -> Self {
        RevocationLimits {
            max_entries: 100_000,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The revocation set is full: nothing was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the revocation set is full (admin.revocation_max_entries)")]
pub struct RevocationsFull;

/// Revoked token digests, each with the time (since the Unix epoch, on the authenticator's
/// clock) until which it is refused.
#[derive(Debug, Default)]
pub struct Revocations {
    state: Mutex<State>,
    /// Whether a holder rule was ever added: until then the check on every request takes no lock.
    has_rules: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    until: HashMap<[u8; 32], Duration>,
    rules: HashMap<RuleKey, RuleTerms>,
    limits: RevocationLimits,
}

impl State {
    fn held(&self) -> usize {
        self.until.len() + self.rules.len()
    }

    /// Whether one more entry fits, after sweeping lapsed ones when the set looks full.
    fn has_room(&mut self, now: Duration) -> bool {
        if self.held() < self.limits.max_entries {
            return true;
        }
        self.until.retain(|_, until| *until > now);
        self.rules.retain(|_, terms| terms.until > now);
        self.held() < self.limits.max_entries
    }
}

/// Whose tokens a holder rule refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The token's `sub`.
    Subject(String),
    /// The token's `client_id` (or `azp`).
    Client(String),
}

/// A holder, of one issuer (`iss` compared exactly) or of any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleKey {
    pub issuer: Option<String>,
    pub holder: Holder,
}

/// What a holder rule refuses, and for how long it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTerms {
    /// Tokens whose `iat` is at or before this (Unix seconds) are refused; so is a token
    /// without `iat`, whose age cannot be told.
    pub issued_before: u64,
    /// The rule is kept until then (since the Unix epoch).
    pub until: Duration,
}

/// Everything the set holds, for writing back to a shared store.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tokens: Vec<([u8; 32], Duration)>,
    pub rules: Vec<(RuleKey, RuleTerms)>,
}

impl Revocations {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies (possibly reloaded) bounds; revocations already held are kept.
    pub fn set_limits(&self, limits: RevocationLimits) {
        self.state().limits = limits;
    }

    /// Refuses `digest` until `expires_at` (the token's own expiry, leeway included), or for
    /// the configured maximum from `now` when that is unknown. Returns the time it is
    /// refused until; revoking twice keeps the later deadline.
    ///
    /// # Errors
    /// [`RevocationsFull`] when the set holds `max_entries` live revocations.
    pub fn revoke(
        &self,
        digest: &[u8; 32],
        expires_at: Option<Duration>,
        now: Duration,
    ) -> Result<Duration, RevocationsFull> {
        let mut state = self.state();
        let until = expires_at.unwrap_or_else(|| now.saturating_add(state.limits.max_ttl));
        if !state.until.contains_key(digest) && !state.has_room(now) {
            return Err(RevocationsFull);
        }
        let kept = state.until.entry(*digest).or_insert(until);
        *kept = (*kept).max(until);
        Ok(*kept)
    }

    /// Whether `digest` is revoked at `now`.
    pub fn is_revoked(&self, digest: &[u8; 32], now: Duration) -> bool {
        let mut state = self.state();
        match state.until.get(digest) {
            Some(until) if *until > now => true,
            Some(_) => {
                state.until.remove(digest);
                false
            }
            None => false,
        }
    }

    /// The most entries held at once (`admin.revocation_max_entries`).
    pub fn max_entries(&self) -> usize {
        self.state().limits.max_entries
    }

    /// How long a revocation whose token expiry is unknown is kept from `now`.
    pub fn default_until(&self, now: Duration) -> Duration {
        now.saturating_add(self.state().limits.max_ttl)
    }

    /// Adds (or widens) a holder rule: a later `issued_before` and a later `until` win.
    ///
    /// # Errors
    /// [`RevocationsFull`] when the set holds `max_entries` live entries.
    pub fn revoke_holder(&self, key: RuleKey, terms: RuleTerms, now: Duration) -> Result<RuleTerms, RevocationsFull> {
        let mut state = self.state();
        if !state.rules.contains_key(&key) && !state.has_room(now) {
            return Err(RevocationsFull);
        }
        self.has_rules.store(true, Ordering::Release);
        let kept = state.rules.entry(key).or_insert(terms);
        kept.issued_before = kept.issued_before.max(terms.issued_before);
        kept.until = kept.until.max(terms.until);
        Ok(*kept)
    }

    /// Whether a holder rule refuses the verified `principal` at `now`.
    pub fn refuses(&self, principal: &Principal, now: Duration) -> bool {
        if !self.has_rules.load(Ordering::Acquire) {
            return false;
        }
        let state = self.state();
        if state.rules.is_empty() {
            return false;
        }
        let holders = principal
            .subject
            .iter()
            .map(|sub| Holder::Subject(sub.clone()))
            .chain(principal.client_id.iter().map(|client| Holder::Client(client.clone())));
        for holder in holders {
            for issuer in [None, Some(principal.issuer.clone())] {
                let key = RuleKey {
                    issuer,
                    holder: holder.clone(),
                };
                let refused = state.rules.get(&key).is_some_and(|terms| {
                    terms.until > now && principal.issued_at.is_none_or(|iat| iat <= terms.issued_before)
                });
                if refused {
                    return true;
                }
            }
        }
        false
    }

    /// Every live entry at `now`.
    pub fn snapshot(&self, now: Duration) -> Snapshot {
        let state = self.state();
        Snapshot {
            tokens: state
                .until
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(digest, until)| (*digest, *until))
                .collect(),
            rules: state
                .rules
                .iter()
                .filter(|(_, terms)| terms.until > now)
                .map(|(key, terms)| (key.clone(), *terms))
                .collect(),
        }
    }

    /// Entries held, tokens and holder rules (some may have lapsed and not been swept yet).
    pub fn len(&self) -> usize {
        self.state().held()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_revocation_lasts_until_the_token_expires() {
        let revocations = Revocations::default();
        let now = Duration::from_secs(1_000_000);
        let until = revocations.revoke(&[1; 32], Some(now + HOUR), now).expect("room");
        assert_eq!(until, now + HOUR);
        assert!(revocations.is_revoked(&[1; 32], now + HOUR - Duration::from_secs(1)));
        assert!(!revocations.is_revoked(&[1; 32], now + HOUR));
        assert!(!revocations.is_revoked(&[2; 32], now));
    }

    #[test]
    fn an_unknown_expiry_takes_the_configured_maximum() {
        let revocations = Revocations::default();
        revocations.set_limits(RevocationLimits {
            max_entries: 10,
            max_ttl: HOUR,
        });
        let now = Duration::from_secs(50);
        assert_eq!(revocations.revoke(&[1; 32], None, now), Ok(now + HOUR));
        // Revoking again never shortens what is already promised.
        assert_eq!(revocations.revoke(&[1; 32], Some(now), now), Ok(now + HOUR));
    }

    #[test]
    fn a_full_set_refuses_new_revocations_and_keeps_the_old_ones() {
        let revocations = Revocations::default();
        revocations.set_limits(RevocationLimits {
            max_entries: 2,
            max_ttl: HOUR,
        });
        let now = Duration::from_secs(50);
        revocations.revoke(&[1; 32], None, now).expect("room");
        revocations
            .revoke(&[2; 32], Some(now + Duration::from_secs(10)), now)
            .expect("room");
        assert_eq!(revocations.revoke(&[3; 32], None, now), Err(RevocationsFull));
        assert!(revocations.is_revoked(&[1; 32], now) && revocations.is_revoked(&[2; 32], now));
        // A lapsed revocation makes room.
        let later = now + Duration::from_secs(11);
        assert!(revocations.revoke(&[3; 32], None, later).is_ok());
        assert!(revocations.is_revoked(&[1; 32], later));
    }

    fn principal(sub: &str, client: &str, iat: Option<u64>) -> Principal {
        Principal {
            issuer: "https://as.example".into(),
            subject: Some(sub.into()),
            client_id: Some(client.into()),
            scopes: Vec::new(),
            audiences: Vec::new(),
            claims: Default::default(),
            expires_at: u64::MAX,
            issued_at: iat,
            confirmation: None,
        }
    }

    #[test]
    fn a_holder_rule_refuses_tokens_issued_at_or_before_its_time() {
        let revocations = Revocations::default();
        let now = Duration::from_secs(1_000);
        let terms = RuleTerms {
            issued_before: 900,
            until: now + HOUR,
        };
        let alice = RuleKey {
            issuer: Some("https://as.example".into()),
            holder: Holder::Subject("alice".into()),
        };
        revocations.revoke_holder(alice, terms, now).expect("room");
        assert!(revocations.refuses(&principal("alice", "c", Some(900)), now));
        assert!(
            revocations.refuses(&principal("alice", "c", None), now),
            "no iat: refused"
        );
        assert!(!revocations.refuses(&principal("alice", "c", Some(901)), now));
        assert!(!revocations.refuses(&principal("bob", "c", Some(1)), now));
        assert!(
            !revocations.refuses(&principal("alice", "c", Some(1)), now + HOUR),
            "lapsed"
        );
        let any_issuer_client = RuleKey {
            issuer: None,
            holder: Holder::Client("c".into()),
        };
        revocations.revoke_holder(any_issuer_client, terms, now).expect("room");
        assert!(revocations.refuses(&principal("bob", "c", Some(1)), now));
        assert_eq!(revocations.snapshot(now).rules.len(), 2);
    }
}
