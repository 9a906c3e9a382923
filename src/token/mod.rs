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
//! - [`introspect`] asks the authorization server about opaque tokens (RFC 7662).
//! - [`Authenticator`] ties them together with caches keyed by the token's SHA-256.

pub mod bearer;
pub mod config;
pub mod introspect;
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
use crate::token::config::{IssuerConfig, TokenConfig, TokenValidation};
use crate::token::introspect::{Answer, Introspector};
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
    /// The claims configured claim → header mappings read (others are not kept).
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

/// A cached introspection answer and how long it may be reused.
#[derive(Clone)]
struct CachedAnswer {
    answer: Answer,
    ttl: Duration,
}

struct AnswerExpiry;

impl Expiry<[u8; 32], CachedAnswer> for AnswerExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &CachedAnswer, _now: std::time::Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct Issuer {
    config: IssuerConfig,
    /// Keys for local verification; `None` when every token of this issuer is introspected.
    keys: Option<Arc<IssuerKeys>>,
    introspector: Option<Arc<Introspector>>,
    mode: TokenValidation,
    policy: VerifyPolicy,
}

/// Validates bearer tokens for every configured issuer.
pub struct Authenticator {
    issuers: Vec<Issuer>,
    /// The issuer that introspects tokens naming no configured issuer (opaque tokens).
    opaque_issuer: Option<usize>,
    cache: Cache<[u8; 32], Arc<CachedToken>>,
    answers: Cache<[u8; 32], CachedAnswer>,
    /// Last active answers, for the optional outage window (`serve_stale_for`).
    last_active: Cache<[u8; 32], (Arc<Principal>, usize, std::time::Instant)>,
    cache_ttl: Duration,
    max_token_bytes: usize,
    retained_claims: Vec<String>,
    metrics: Metrics,
}

/// SHA-256 of the token: the cache key, and (first 8 hex digits) the log fingerprint.
pub fn token_digest(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
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

/// Which validation path a token takes.
enum Route {
    Local(usize),
    Introspect(usize),
    Reject(TokenError),
    UnknownIssuer,
}

fn answer_to_result(answer: Answer) -> Result<Arc<Principal>, ProxyError> {
    match answer {
        Answer::Active(principal) => Ok(principal),
        Answer::Inactive(reason) => Err(ProxyError::InvalidToken {
            reason,
            description: "the token is not active",
        }),
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
        Self::reusing(config, metrics, None)
    }

    /// Builds an authenticator for a reloaded config, keeping the key sets (and their
    /// refresh loops) and introspection clients of issuers whose settings did not change.
    /// Caches start empty: a changed issuer set may change what a cached answer means.
    pub fn reusing(config: &TokenConfig, metrics: Metrics, previous: Option<&Authenticator>) -> Authenticator {
        let issuers: Vec<Issuer> = config
            .issuers
            .iter()
            .map(|issuer| {
                let old = previous.and_then(|p| p.issuers.iter().find(|old| old.config == *issuer));
                Issuer {
                    config: issuer.clone(),
                    keys: match old {
                        Some(old) => old.keys.clone(),
                        None => (issuer.token_validation != TokenValidation::Introspection)
                            .then(|| IssuerKeys::new(issuer.clone(), metrics.clone())),
                    },
                    introspector: match old {
                        Some(old) => old.introspector.clone(),
                        None => issuer
                            .introspection
                            .clone()
                            .map(|i| Arc::new(Introspector::new(issuer, i, metrics.clone()))),
                    },
                    mode: issuer.token_validation,
                    policy: policy_for(issuer, config.max_token_bytes),
                }
            })
            .collect();
        let opaque_issuer = issuers.iter().position(|i| i.introspector.is_some());
        let stale_window = issuers
            .iter()
            .filter_map(|i| i.introspector.as_ref().map(|x| x.serve_stale_for()))
            .max()
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        let cache = Cache::builder()
            .max_capacity(config.cache_max_entries)
            .expire_after(TokenExpiry)
            .build();
        Authenticator {
            issuers,
            opaque_issuer,
            cache,
            answers: Cache::builder()
                .max_capacity(config.introspection_cache_max_entries)
                .expire_after(AnswerExpiry)
                .build(),
            last_active: Cache::builder()
                .max_capacity(config.introspection_cache_max_entries)
                .time_to_live(stale_window)
                .build(),
            cache_ttl: config.cache_ttl,
            max_token_bytes: config.max_token_bytes,
            retained_claims: config.retained_claims.clone(),
            metrics,
        }
    }

    /// Starts the key-refresh loop of every issuer that has none yet; each runs while its
    /// keys are in use, or until the returned handle is aborted.
    pub fn spawn_refreshers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.issuers
            .iter()
            .filter_map(|issuer| issuer.keys.as_ref())
            .filter_map(|keys| keys.spawn_refresher())
            .collect()
    }

    /// Ready when every issuer that verifies locally has usable keys.
    pub fn is_ready(&self) -> bool {
        self.issuers
            .iter()
            .filter_map(|i| i.keys.as_ref())
            .all(|k| k.is_loaded())
    }

    /// Entries in the verified-JWT cache and in the introspection cache.
    pub fn cache_entries(&self) -> (u64, u64) {
        (self.cache.entry_count(), self.answers.entry_count())
    }

    /// Keeps only the claims identity headers are mapped from.
    fn retain(
        &self,
        mut claims: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        claims.retain(|name, _| self.retained_claims.contains(name));
        claims
    }

    /// Sets `scopegate_jwks_seconds_since_last_success` for each issuer (at scrape time).
    pub fn record_key_ages(&self) {
        for keys in self.issuers.iter().filter_map(|i| i.keys.as_ref()) {
            if let Some(age) = keys.age() {
                self.metrics
                    .jwks_seconds_since_success
                    .with_label_values(&[keys.issuer()])
                    .set(age.as_secs() as i64);
            }
        }
    }

    /// Forgets everything cached about a token (pushed revocation).
    pub async fn evict(&self, digest: &[u8; 32]) {
        self.cache.invalidate(digest).await;
        self.answers.invalidate(digest).await;
        self.last_active.invalidate(digest).await;
    }

    /// Runs moka's pending maintenance so entry counts are exact (tests, metrics).
    pub async fn sync_caches(&self) {
        self.cache.run_pending_tasks().await;
        self.answers.run_pending_tasks().await;
        self.last_active.run_pending_tasks().await;
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
        if let Some(hit) = self.answers.get(digest).await {
            self.metrics
                .cache_lookups
                .with_label_values(&["introspection", "hit"])
                .inc();
            return answer_to_result(hit.answer);
        }
        match self.route(token) {
            Route::Local(index) => {
                self.metrics.cache_lookups.with_label_values(&["jwt", "miss"]).inc();
                // Concurrent misses for one token share one verification; errors are not cached.
                let entry = self
                    .cache
                    .try_get_with(*digest, self.verify_uncached(token, index))
                    .await
                    .map_err(|e| (*e).clone())?;
                Ok(Arc::clone(&entry.principal))
            }
            Route::Introspect(index) => {
                self.metrics
                    .cache_lookups
                    .with_label_values(&["introspection", "miss"])
                    .inc();
                let result = self
                    .answers
                    .try_get_with(*digest, self.introspect_uncached(token, index))
                    .await
                    .map_err(|e| (*e).clone());
                match result {
                    Ok(cached) => {
                        let keeps_stale = self.issuers[index]
                            .introspector
                            .as_ref()
                            .is_some_and(|i| !i.serve_stale_for().is_zero());
                        if let (true, Answer::Active(principal)) = (keeps_stale, &cached.answer) {
                            self.last_active
                                .insert(*digest, (Arc::clone(principal), index, std::time::Instant::now()))
                                .await;
                        }
                        answer_to_result(cached.answer)
                    }
                    Err(error @ ProxyError::AuthUnavailable { .. }) => self.stale_answer(digest).await.ok_or(error),
                    Err(error) => Err(error),
                }
            }
            Route::Reject(error) => Err(invalid(error)),
            Route::UnknownIssuer => Err(ProxyError::InvalidToken {
                reason: "unknown_issuer",
                description: "the token was not issued by a trusted issuer",
            }),
        }
    }

    /// Picks the validation path (DESIGN §4 "Token kind"): a well-formed JWS naming a
    /// configured issuer that verifies locally is verified here; anything else goes to
    /// introspection when an issuer offers it.
    fn route(&self, token: &str) -> Route {
        let parsed = jws::parse(token, self.max_token_bytes);
        let named = parsed
            .as_ref()
            .ok()
            .and_then(|p| p.issuer())
            .and_then(|iss| self.issuers.iter().position(|i| i.policy.issuer == iss));
        match (named, parsed) {
            (Some(index), _) if self.issuers[index].mode == TokenValidation::Introspection => Route::Introspect(index),
            (Some(index), _) => Route::Local(index),
            (None, parsed) => match (self.opaque_issuer, parsed) {
                (Some(index), _) => Route::Introspect(index),
                (None, Err(error)) => Route::Reject(error),
                (None, Ok(_)) => Route::UnknownIssuer,
            },
        }
    }

    async fn introspect_uncached(&self, token: &str, index: usize) -> Result<CachedAnswer, ProxyError> {
        let introspector = self.issuers[index]
            .introspector
            .as_ref()
            .ok_or(ProxyError::AuthUnavailable {
                reason: "no_introspection",
            })?;
        let now = now_unix();
        let answer = match introspector.introspect(token, now).await? {
            Answer::Active(principal) => Answer::Active(Arc::new(Principal {
                claims: self.retain(principal.claims.clone()),
                ..(*principal).clone()
            })),
            inactive => inactive,
        };
        let ttl = match &answer {
            Answer::Active(principal) => introspector
                .positive_ttl()
                .min(Duration::from_secs(principal.expires_at.saturating_sub(now).max(1))),
            Answer::Inactive(_) => introspector.negative_ttl(),
        };
        Ok(CachedAnswer { answer, ttl })
    }

    /// During an outage, a token that was active within `serve_stale_for` is still allowed
    /// (off by default: it delays revocation by that window).
    async fn stale_answer(&self, digest: &[u8; 32]) -> Option<Arc<Principal>> {
        let (principal, index, seen) = self.last_active.get(digest).await?;
        let window = self.issuers[index].introspector.as_ref()?.serve_stale_for();
        (seen.elapsed() <= window && now_unix() <= principal.expires_at).then_some(principal)
    }

    /// A cached result stands while its issuer's keys are usable, its key is still
    /// published, and the token has not expired.
    fn still_valid(&self, hit: &CachedToken) -> Result<Option<Arc<Principal>>, ProxyError> {
        let issuer = &self.issuers[hit.issuer];
        let Some(keys) = &issuer.keys else { return Ok(None) };
        let state = keys
            .current()
            .map_err(|e| ProxyError::AuthUnavailable { reason: e.reason() })?;
        let key_present = hit.kid.as_deref().is_none_or(|kid| state.keys.contains_kid(kid));
        let unexpired = now_unix() <= hit.principal.expires_at.saturating_add(issuer.policy.leeway.as_secs());
        Ok((key_present && unexpired).then(|| Arc::clone(&hit.principal)))
    }

    async fn verify_uncached(&self, token: &str, index: usize) -> Result<Arc<CachedToken>, ProxyError> {
        let issuer = &self.issuers[index];
        let keys = issuer
            .keys
            .as_ref()
            .ok_or(ProxyError::AuthUnavailable { reason: "no_keys" })?;
        let state = match keys.current() {
            Ok(state) => state,
            Err(unavailable) => {
                if !keys.refresh_on_demand().await {
                    return Err(ProxyError::AuthUnavailable {
                        reason: unavailable.reason(),
                    });
                }
                keys.current()
                    .map_err(|e| ProxyError::AuthUnavailable { reason: e.reason() })?
            }
        };
        self.metrics.signature_verifications.inc();
        let verified = match jws::verify(token, &state.keys, &issuer.policy, now_unix()) {
            Err(TokenError::UnknownKey) => {
                // Refetch (at most once per cool-down), then use whatever key set is newest:
                // another request or the background loop may have loaded the new key
                // already, in which case the cool-down must not turn a valid token away.
                let refreshed = keys.refresh_on_demand().await;
                let latest = keys
                    .current()
                    .map_err(|e| ProxyError::AuthUnavailable { reason: e.reason() })?;
                if refreshed || !Arc::ptr_eq(&latest, &state) {
                    self.metrics.signature_verifications.inc();
                    jws::verify(token, &latest.keys, &issuer.policy, now_unix())
                } else {
                    Err(TokenError::UnknownKey)
                }
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
                claims: self.retain(claims.raw),
                expires_at: claims.exp,
            }),
        }))
    }
}
