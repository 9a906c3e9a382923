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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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
}

#[derive(Debug, Default)]
struct State {
    until: HashMap<[u8; 32], Duration>,
    limits: RevocationLimits,
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
        if !state.until.contains_key(digest) && state.until.len() >= state.limits.max_entries {
            state.until.retain(|_, until| *until > now);
            if state.until.len() >= state.limits.max_entries {
                return Err(RevocationsFull);
            }
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

    /// Revocations held (some may have lapsed and not been swept yet).
    pub fn len(&self) -> usize {
        self.state().until.len()
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
}
