//! Bearer tokens: extraction, local JWT verification against cached JWKS, and the
//! verified-token cache.
//!
//! - [`bearer`] reads the token from the request.
//! - [`jwk`] parses an authorization server's JWK Set (RFC 7517), skipping (and reporting)
//!   every key that must not be used; [`jws`] parses compact JWS tokens, verifies them against
//!   a key set and validates access-token claims (RFC 7515, 7519, 9068). The JOSE rules are
//!   written here rather than delegated to a JWT library: only the signature primitive comes
//!   from aws-lc-rs, and every header and claim rule is explicit.
//! - [`keys`] keeps each issuer's key set fresh; [`remote`] makes the bounded fetches.
//! - [`Authenticator`] ties them together with a cache keyed by the token's SHA-256.

pub mod bearer;
pub mod config;
pub mod jwk;
pub mod jws;
pub mod keys;
pub mod remote;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use moka::future::Cache;

use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::token::config::{IssuerConfig, TokenConfig};
use crate::token::jws::{TokenError, VerifyPolicy};
use crate::token::keys::IssuerKeys;

/// Who called: the verified facts of an access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// `aud`, as a list (RFC 8707 resource binding is checked against it per route).
    pub audiences: Vec<String>,
    /// Every claim, for configured claim → header mappings.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A verified token as cached.
struct CachedToken {
    principal: Arc<Principal>,
    issuer: usize,
    kid: Option<String>,
    /// The cache entry lives no longer than the token (and the configured TTL).
    ttl: Duration,
}

/// Per-entry TTL: min(configured TTL, `exp` − now), computed when the entry is created.
struct TokenExpiry;

impl Expiry<[u8; 32], Arc<CachedToken>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<CachedToken>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct Issuer {
    keys: Arc<IssuerKeys>,
    policy: VerifyPolicy,
}

/// Validates bearer tokens for every configured issuer.
pub struct Authenticator {
    issuers: Vec<Issuer>,
    cache: Cache<[u8; 32], Arc<CachedToken>>,
    cache_ttl: Duration,
    max_token_bytes: usize,
    metrics: Metrics,
}

/// SHA-256 of the token: the cache key, and (first 8 hex digits) the log fingerprint.
pub fn token_digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The short fingerprint logged instead of a token.
pub fn fingerprint(digest: &[u8; 32]) -> String {
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn invalid(e: TokenError) -> ProxyError {
    ProxyError::InvalidToken {
        reason: e.reason(),
        description: e.description(),
    }
}

fn policy_for(config: &IssuerConfig, max_token_bytes: usize) -> VerifyPolicy {
    VerifyPolicy {
        issuer: config.issuer.clone(),
        audiences: config.audiences.clone(),
        algorithms: config.algorithms.clone(),
        leeway: config.leeway,
        require_typ: config.require_typ.then(|| "at+jwt".to_string()),
        max_token_bytes,
    }
}

impl Authenticator {
    pub fn new(config: &TokenConfig, metrics: Metrics) -> Authenticator {
        let issuers = config
            .issuers
            .iter()
            .map(|issuer| Issuer {
                keys: IssuerKeys::new(issuer.clone(), metrics.clone()),
                policy: policy_for(issuer, config.max_token_bytes),
            })
            .collect();
        let cache = Cache::builder()
            .max_capacity(config.cache_max_entries)
            .expire_after(TokenExpiry)
            .build();
        Authenticator {
            issuers,
            cache,
            cache_ttl: config.cache_ttl,
            max_token_bytes: config.max_token_bytes,
            metrics,
        }
    }

    /// Starts one key-refresh loop per issuer; they run until the runtime stops or the
    /// returned handles are aborted.
    pub fn spawn_refreshers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.issuers
            .iter()
            .map(|issuer| tokio::spawn(Arc::clone(&issuer.keys).run_refresh_loop()))
            .collect()
    }

    /// Ready when every issuer has usable keys.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.is_loaded())
    }

    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Verifies a bearer token, from the cache when it can.
    ///
    /// # Errors
    /// `InvalidToken` for any token that is not acceptable, `AuthUnavailable` when the
    /// issuer's keys cannot be had (the token may be fine: 503, never 401).
    pub async fn authenticate(&self, token: &str, digest: &[u8; 32]) -> Result<Arc<Principal>, ProxyError> {
        if token.len() > self.max_token_bytes {
            return Err(invalid(TokenError::TooLarge));
        }
        if let Some(hit) = self.cache.get(digest).await {
            if let Some(principal) = self.still_valid(&hit)? {
                self.metrics.cache_lookups.with_label_values(&["jwt", "hit"]).inc();
                return Ok(principal);
            }
            self.cache.invalidate(digest).await;
        }
        self.metrics.cache_lookups.with_label_values(&["jwt", "miss"]).inc();
        // Concurrent misses for one token share one verification; errors are not cached.
        let entry = self
            .cache
            .try_get_with(*digest, self.verify_uncached(token))
            .await
            .map_err(|e| (*e).clone())?;
        Ok(Arc::clone(&entry.principal))
    }

    /// A cached result stands while its issuer's keys are usable, its key is still
    /// published, and the token has not expired.
    fn still_valid(&self, hit: &CachedToken) -> Result<Option<Arc<Principal>>, ProxyError> {
        let issuer = &self.issuers[hit.issuer];
        let state = issuer
            .keys
            .current()
            .map_err(|e| ProxyError::AuthUnavailable { reason: e.reason() })?;
        let key_present = hit.kid.as_deref().is_none_or(|kid| state.keys.contains_kid(kid));
        let unexpired = now_unix() <= hit.principal.expires_at.saturating_add(issuer.policy.leeway.as_secs());
        Ok((key_present && unexpired).then(|| Arc::clone(&hit.principal)))
    }

    async fn verify_uncached(&self, token: &str) -> Result<Arc<CachedToken>, ProxyError> {
        let parsed = jws::parse(token, self.max_token_bytes).map_err(invalid)?;
        let index = parsed
            .issuer()
            .and_then(|iss| self.issuers.iter().position(|i| i.policy.issuer == iss))
            .ok_or(ProxyError::InvalidToken {
                reason: "unknown_issuer",
                description: "the token was not issued by a trusted issuer",
            })?;
        let issuer = &self.issuers[index];
        let state = match issuer.keys.current() {
            Ok(state) => state,
            Err(unavailable) => {
                if !issuer.keys.refresh_on_demand().await {
                    return Err(ProxyError::AuthUnavailable {
                        reason: unavailable.reason(),
                    });
                }
                issuer
                    .keys
                    .current()
                    .map_err(|e| ProxyError::AuthUnavailable { reason: e.reason() })?
            }
        };
        self.metrics.signature_verifications.inc();
        let verified = match jws::verify(token, &state.keys, &issuer.policy, now_unix()) {
            Err(TokenError::UnknownKey) if issuer.keys.refresh_on_demand().await => {
                let state = issuer
                    .keys
                    .current()
                    .map_err(|e| ProxyError::AuthUnavailable { reason: e.reason() })?;
                self.metrics.signature_verifications.inc();
                jws::verify(token, &state.keys, &issuer.policy, now_unix())
            }
            other => other,
        }
        .map_err(invalid)?;
        let claims = verified.claims;
        let remaining = claims.exp.saturating_sub(now_unix()).max(1);
        Ok(Arc::new(CachedToken {
            ttl: self.cache_ttl.min(Duration::from_secs(remaining)),
            issuer: index,
            kid: verified.kid,
            principal: Arc::new(Principal {
                issuer: claims.iss,
                subject: claims.sub,
                client_id: claims.client_id,
                scopes: claims.scopes,
                audiences: claims.aud,
                claims: claims.raw,
                expires_at: claims.exp,
            }),
        }))
    }
}
