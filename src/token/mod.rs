// Long file: the Authenticator is one path through both token kinds, their caches and budgets; its helpers live in the submodules below it.
//! Bearer tokens: extraction, local JWT verification against cached JWKS, and the
//! verified-token cache.
//!
//! - [`bearer`] reads the token and its scheme (`Bearer`, `DPoP`) from the request.
//! - [`dpop`] checks DPoP proofs (RFC 9449); [`binding`] checks, per request, that the
//!   request holds a sender-constrained token: its proof key or client certificate.
//! - [`jwk`] parses an authorization server's JWK Set (RFC 7517), skipping (and reporting)
//!   every key that must not be used; [`jws`] parses compact JWS tokens, verifies them against
//!   a key set and validates access-token claims (RFC 7515, 7519, 9068). The JOSE rules are
//!   written here rather than delegated to a JWT library: only the signature primitive comes
//!   from aws-lc-rs, and every header and claim rule is explicit.
//! - [`keys`] keeps each issuer's key set fresh; [`discovery`] finds each issuer's endpoints
//!   once, for its keys and its introspection alike (the fetches are in
//!   [`crate::http_client`]).
//! - [`introspect`] asks the authorization server about opaque tokens (RFC 7662).
//! - [`revocation`] keeps pushed revocations until the token expires, and the fleet's
//!   rules that refuse a subject's or client's tokens; [`shared`] is the interface of the
//!   introspection answers the fleet shares.
//! - [`principal`] is what a verified token says; [`error`] every other answer, typed;
//!   [`clock`] the time every expiry check reads.
//! - [`Authenticator`] ties them together with caches keyed by the token's SHA-256. It sits
//!   on top: no submodule imports it.

pub mod bearer;
pub mod binding;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod introspect;
pub mod jwk;
pub mod jws;
pub mod keys;
pub mod principal;
pub mod revocation;
pub mod shared;
pub mod signing;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::Expiry;
use moka::future::Cache;

use crate::metrics::Metrics;
use crate::token::binding::{Presented, forwarded_certificate};
use crate::token::config::sender::CertBindingConfig;
use crate::token::config::{IssuerConfig, TokenConfig, TokenValidation};
use crate::token::discovery::IssuerDiscovery;
use crate::token::dpop::ProofVerifier;
use crate::token::introspect::{Admission, Answer, Introspector};
use crate::token::jws::{TokenError, UnverifiedJws, VerifyPolicy};
use crate::token::keys::IssuerKeys;
use crate::token::revocation::{Revocations, RevocationsFull};

pub use crate::token::clock::Clock;
pub use crate::token::error::{AuthError, InvalidReason, UnavailableReason};
pub use crate::token::principal::{Principal, RetainedClaims};

/// A verified token as cached: held by value (cloning it is two reference counts), so an
/// entry costs one allocation fewer than behind an `Arc` of its own.
#[derive(Clone)]
struct CachedToken {
    principal: Arc<Principal>,
    issuer: usize,
    /// RFC 7638 thumbprint of the key that verified the token (DESIGN §4 "Caches").
    thumbprint: Arc<str>,
    /// The cache entry lives no longer than the token (and the configured TTL).
    ttl: Duration,
    /// The same deadline on the authenticator's [`Clock`] (time since the Unix epoch).
    valid_until: Duration,
}

/// Per-entry TTL: min(configured TTL, `exp` − now), computed when the entry is created.
struct TokenExpiry;

impl Expiry<[u8; 32], CachedToken> for TokenExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &CachedToken, _now: std::time::Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A cached introspection answer and how long it may be reused.
#[derive(Clone)]
struct CachedAnswer {
    answer: Answer,
    ttl: Duration,
    /// The same deadline on the authenticator's [`Clock`] (time since the Unix epoch).
    valid_until: Duration,
}

struct AnswerExpiry;

impl Expiry<[u8; 32], CachedAnswer> for AnswerExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &CachedAnswer, _now: std::time::Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct SeenActiveExpiry;

impl Expiry<[u8; 32], Duration> for SeenActiveExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], ttl: &Duration, _now: std::time::Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

struct Issuer {
    config: IssuerConfig,
    /// The issuer's metadata, shared by its keys and its introspection client.
    discovery: Arc<IssuerDiscovery>,
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
    cache: Cache<[u8; 32], CachedToken>,
    answers: Cache<[u8; 32], CachedAnswer>,
    /// Last active answers and when they were given (on the [`Clock`]), for the optional
    /// outage window (`serve_stale_for`).
    last_active: Cache<[u8; 32], (Arc<Principal>, usize, Duration)>,
    /// Tokens introspection answered active within the last day: their re-validation does not
    /// count against the budget for never-seen tokens.
    /// Tokens answered active, until they expire (at most [`SEEN_ACTIVE_FOR`]): the value is
    /// how long the entry lives.
    seen_active: Cache<[u8; 32], Duration>,
    cache_ttl: Duration,
    max_token_bytes: usize,
    retained_claims: Vec<String>,
    metrics: Metrics,
    clock: ArcSwap<Clock>,
    /// Pushed revocations, consulted before anything else; shared with the authenticators
    /// a reload builds from this one.
    revocations: Arc<Revocations>,
    /// DPoP proofs: seen `jti`s and the nonce key, kept across reloads.
    proofs: ProofVerifier,
    cert_binding: CertBindingConfig,
    /// Introspection answers shared by the fleet (`[fleet] share_introspection`); kept by a
    /// reload like the revocations.
    shared_answers: std::sync::OnceLock<Arc<dyn shared::SharedAnswers>>,
}

/// What a pushed revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Cached answers for the token that were dropped (0 when none was cached).
    pub evicted: usize,
    /// The token is refused until then (since the Unix epoch, on the authenticator's clock).
    pub until: Duration,
}

/// How long a token answered active counts as known to introspection budgets.
const SEEN_ACTIVE_FOR: Duration = Duration::from_secs(24 * 3600);

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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest[..4]
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// Which validation path a token takes. A JWS is parsed once, here, and verified as parsed.
enum Route<'t> {
    Local(usize, UnverifiedJws<'t>),
    Introspect(usize),
    Reject(TokenError),
    UnknownIssuer,
}

fn answer_to_result(answer: Answer) -> Result<Arc<Principal>, AuthError> {
    match answer {
        Answer::Active(principal) => Ok(principal),
        Answer::Inactive(reason) => Err(InvalidReason::Inactive(reason).into()),
    }
}

fn policy_for(config: &IssuerConfig, max_token_bytes: usize) -> VerifyPolicy {
    VerifyPolicy {
        issuer: config.issuer.clone(),
        audiences: config.audiences.clone(),
        algorithms: config.algorithms.clone(),
        leeway: config.leeway,
        accepted_typ: config.accepted_typ.clone(),
        scope_claims: config.scope_claims.clone(),
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
                let discovery = match old {
                    Some(old) => Arc::clone(&old.discovery),
                    None => IssuerDiscovery::new(issuer),
                };
                Issuer {
                    config: issuer.clone(),
                    keys: match old {
                        Some(old) => old.keys.clone(),
                        None => (issuer.token_validation != TokenValidation::Introspection)
                            .then(|| IssuerKeys::new(issuer.clone(), Arc::clone(&discovery), metrics.clone())),
                    },
                    introspector: match old {
                        Some(old) => old.introspector.clone(),
                        None => issuer
                            .introspection
                            .clone()
                            .map(|i| Arc::new(Introspector::new(issuer, i, Arc::clone(&discovery), metrics.clone()))),
                    },
                    discovery,
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
            seen_active: Cache::builder()
                .max_capacity(config.introspection_cache_max_entries)
                .expire_after(SeenActiveExpiry)
                .build(),
            cache_ttl: config.cache_ttl,
            max_token_bytes: config.max_token_bytes,
            retained_claims: config.retained_claims.clone(),
            metrics,
            // A reload keeps judging time by the clock it was given.
            clock: ArcSwap::from_pointee(previous.map(Authenticator::clock).unwrap_or_default()),
            revocations: previous.map(|p| Arc::clone(&p.revocations)).unwrap_or_default(),
            proofs: ProofVerifier::new(&config.dpop, previous.map(|p| &p.proofs)),
            cert_binding: config.cert_binding.clone(),
            shared_answers: previous
                .and_then(|p| p.shared_answers.get().cloned())
                .map(std::sync::OnceLock::from)
                .unwrap_or_default(),
        }
    }

    /// Consults `store` before asking an authorization server (set once, at start).
    pub fn share_answers(&self, store: Arc<dyn shared::SharedAnswers>) {
        let _ = self.shared_answers.set(store);
    }

    /// The revocation set itself, for the fleet to feed.
    pub fn shared_revocations(&self) -> Arc<Revocations> {
        Arc::clone(&self.revocations)
    }

    /// The clock expiry, not-before and cache deadlines are judged by.
    pub fn clock(&self) -> Clock {
        Clock::clone(&self.clock.load())
    }

    /// Judges time by `clock` from now on (tests advance it instead of sleeping); authenticators
    /// built from this one by a reload inherit it.
    pub fn set_clock(&self, clock: Clock) {
        self.clock.store(Arc::new(clock));
    }

    /// Now, on the authenticator's clock, as time since the Unix epoch.
    fn now(&self) -> Duration {
        self.clock.load().since_epoch()
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

    /// Keeps only the claims identity headers are mapped from and claim rules test.
    fn retain(&self, claims: serde_json::Map<String, serde_json::Value>) -> RetainedClaims {
        RetainedClaims::keep(claims, &self.retained_claims)
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

    /// The pushed revocations this authenticator honours.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Refuses a token from now until it expires, and forgets everything cached about it
    /// (pushed revocation). `token`, when the caller has it, lets a JWT's verified `exp`
    /// bound how long the revocation is kept; otherwise a cached answer's expiry does, or
    /// the configured maximum.
    ///
    /// # Errors
    /// [`RevocationsFull`] when the revocation set is full: nothing was revoked or evicted.
    pub async fn revoke(&self, token: Option<&str>, digest: &[u8; 32]) -> Result<Revoked, RevocationsFull> {
        let expires_at = self.known_expiry(token, digest).await;
        // Recorded before the caches are emptied: an answer stored after this point (an
        // introspection that was in flight) is refused all the same.
        let until = self.revocations.revoke(digest, expires_at, self.now())?;
        let evicted = [
            self.cache.remove(digest).await.is_some(),
            self.answers.remove(digest).await.is_some(),
            self.last_active.remove(digest).await.is_some(),
        ];
        // Not an answer: only what makes a token known to the introspection budget.
        self.seen_active.invalidate(digest).await;
        Ok(Revoked {
            evicted: evicted.into_iter().filter(|removed| *removed).count(),
            until,
        })
    }

    /// The latest time a token could still be accepted, when it can be known without asking
    /// an authorization server: from a cached answer, or by verifying a JWT locally.
    async fn known_expiry(&self, token: Option<&str>, digest: &[u8; 32]) -> Option<Duration> {
        let slack = self.issuers.iter().map(|i| i.policy.leeway).max().unwrap_or_default() + Duration::from_secs(1);
        let cached = match self.cache.get(digest).await {
            Some(hit) => Some(hit.principal.expires_at),
            None => match self.answers.get(digest).await.map(|hit| hit.answer) {
                Some(Answer::Active(principal)) => Some(principal.expires_at),
                _ => None,
            },
        };
        let verified = match (cached, token.map(|token| self.route(token))) {
            (None, Some(Route::Local(index, parsed))) => self
                .verify_uncached(&parsed, index)
                .await
                .ok()
                .map(|entry| entry.principal.expires_at),
            _ => None,
        };
        // An introspection answer without `exp` is kept as expiring never: not a known expiry.
        cached
            .or(verified)
            .filter(|exp| *exp != u64::MAX)
            .map(|exp| Duration::from_secs(exp).saturating_add(slack))
    }

    /// Runs moka's pending maintenance so entry counts are exact (tests, metrics).
    pub async fn sync_caches(&self) {
        self.cache.run_pending_tasks().await;
        self.answers.run_pending_tasks().await;
        self.last_active.run_pending_tasks().await;
        self.seen_active.run_pending_tasks().await;
    }

    /// Verifies a bearer token, from the cache when it can, with no client address to hold
    /// to a budget (see [`Authenticator::authenticate_from`]).
    ///
    /// # Errors
    /// As [`Authenticator::authenticate_from`].
    pub async fn authenticate(&self, token: &str, digest: &[u8; 32]) -> Result<Arc<Principal>, AuthError> {
        self.authenticate_from(token, digest, None).await
    }

    /// Verifies a bearer token sent from `client`, from the cache when it can. An opaque token
    /// never seen active counts against `client`'s introspection budget.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] for any token that is not acceptable, [`AuthError::Unavailable`]
    /// when the issuer's keys or answer cannot be had (the token may be fine: 503, never 401)
    /// or the client is over its introspection budget.
    pub async fn authenticate_from(
        &self,
        token: &str,
        digest: &[u8; 32],
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthError> {
        let principal = self.authenticate_unchecked(token, digest, client).await?;
        // Holder rules (a subject's or client's tokens issued before a time) are judged on
        // the verified principal, cached or not.
        if self.revocations.refuses(&principal, self.now()) {
            return Err(InvalidReason::Revoked.into());
        }
        Ok(principal)
    }

    /// [`Authenticator::authenticate_from`] before the holder rules.
    async fn authenticate_unchecked(
        &self,
        token: &str,
        digest: &[u8; 32],
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthError> {
        if self.revocations.is_revoked(digest, self.now()) {
            return Err(InvalidReason::Revoked.into());
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge.into());
        }
        if let Some(hit) = self.cache.get(digest).await {
            if let Some(principal) = self.still_valid(&hit)? {
                self.metrics.cache_lookups.with_label_values(&["jwt", "hit"]).inc();
                return Ok(principal);
            }
            self.cache.invalidate(digest).await;
        }
        if let Some(hit) = self.answers.get(digest).await {
            if self.now() < hit.valid_until {
                self.metrics
                    .cache_lookups
                    .with_label_values(&["introspection", "hit"])
                    .inc();
                return answer_to_result(hit.answer);
            }
            self.answers.invalidate(digest).await;
        }
        match self.route(token) {
            Route::Local(index, parsed) => {
                self.metrics.cache_lookups.with_label_values(&["jwt", "miss"]).inc();
                // Concurrent misses for one token share one verification; errors are not cached.
                let entry = self
                    .cache
                    .try_get_with(*digest, self.verify_uncached(&parsed, index))
                    .await
                    .map_err(|e| *e)?;
                Ok(Arc::clone(&entry.principal))
            }
            Route::Introspect(index) => {
                self.metrics
                    .cache_lookups
                    .with_label_values(&["introspection", "miss"])
                    .inc();
                let admission = if self.seen_active.contains_key(digest) {
                    Admission::SeenActive
                } else {
                    Admission::New { client }
                };
                // Concurrent misses for one token share one call, charged to the first caller.
                let result = self
                    .answers
                    .try_get_with(*digest, self.introspect_uncached(token, digest, index, admission))
                    .await
                    .map_err(|e| *e);
                match result {
                    Ok(cached) => {
                        if let Answer::Active(principal) = &cached.answer {
                            // Remembered no longer than the token lives: an expired token is
                            // never re-validated, and the memory stays flat under new tokens.
                            let remaining = principal.expires_at.saturating_sub(self.now().as_secs());
                            let ttl = Duration::from_secs(remaining).min(SEEN_ACTIVE_FOR);
                            self.seen_active.insert(*digest, ttl).await;
                        }
                        let keeps_stale = self.issuers[index]
                            .introspector
                            .as_ref()
                            .is_some_and(|i| !i.serve_stale_for().is_zero());
                        if let (true, Answer::Active(principal)) = (keeps_stale, &cached.answer) {
                            self.last_active
                                .insert(*digest, (Arc::clone(principal), index, self.now()))
                                .await;
                        }
                        answer_to_result(cached.answer)
                    }
                    Err(error @ AuthError::Unavailable(_)) => self.stale_answer(digest).await.ok_or(error),
                    Err(error) => Err(error),
                }
            }
            Route::Reject(error) => Err(error.into()),
            Route::UnknownIssuer => Err(InvalidReason::UnknownIssuer.into()),
        }
    }

    /// Verifies a token as [`Authenticator::authenticate_from`] does (cached), then checks,
    /// for this request alone, that the request holds it when it is sender-constrained: the
    /// DPoP proof or the client certificate (see [`binding`]). A cached principal never skips
    /// this check.
    ///
    /// # Errors
    /// As [`Authenticator::authenticate_from`], and [`AuthError::Proof`] or
    /// [`InvalidReason::Binding`] for a proof or binding the request does not satisfy.
    pub async fn authenticate_presented(
        &self,
        presented: &Presented<'_>,
        digest: &[u8; 32],
        client: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthError> {
        let principal = self.authenticate_from(presented.token, digest, client).await?;
        // RFC 8705 §3: the certificate of the TLS connection when scopegate terminates TLS
        // itself, else the one a trusted TLS-terminating proxy forwarded.
        let certificate = presented
            .tls_certificate
            .clone()
            .or_else(|| forwarded_certificate(&self.cert_binding, presented.headers, client));
        binding::check(
            &principal,
            presented,
            &self.proofs,
            certificate.as_deref(),
            self.now().as_secs(),
        )?;
        Ok(principal)
    }

    /// The DPoP proof checker (its settings, its nonces).
    pub fn proofs(&self) -> &ProofVerifier {
        &self.proofs
    }

    /// Picks the validation path (DESIGN §4 "Token kind"). A token in JOSE compact form is
    /// judged by the issuer its `iss` names exactly: verified locally, or introspected by
    /// that issuer when it introspects all its tokens; refused (401) when it is malformed,
    /// encrypted (JWE: scopegate holds no decryption key, and introspecting it would show
    /// it to a server that may not have issued it) or names no configured issuer. Only a
    /// token that is not JOSE-shaped is opaque, and goes to introspection when an issuer
    /// offers it. So a forged or broken JWT costs no authorization-server call, and no
    /// server is ever shown another's tokens.
    fn route<'t>(&self, token: &'t str) -> Route<'t> {
        if !jws::is_jose_shaped(token) {
            return match self.opaque_issuer {
                Some(index) => Route::Introspect(index),
                None => Route::Reject(TokenError::Malformed),
            };
        }
        let parsed = match jws::parse(token, self.max_token_bytes) {
            Ok(parsed) => parsed,
            Err(error) => return Route::Reject(error),
        };
        let named = parsed
            .issuer()
            .and_then(|iss| self.issuers.iter().position(|i| i.policy.issuer == iss));
        match named {
            Some(index) if self.issuers[index].mode == TokenValidation::Introspection => Route::Introspect(index),
            Some(index) => Route::Local(index, parsed),
            None => Route::UnknownIssuer,
        }
    }

    async fn introspect_uncached(
        &self,
        token: &str,
        digest: &[u8; 32],
        index: usize,
        admission: Admission,
    ) -> Result<CachedAnswer, AuthError> {
        let introspector = self.issuers[index]
            .introspector
            .as_ref()
            .ok_or(UnavailableReason::NoIntrospection)?;
        let now = self.now();
        let shared = self.shared_answers.get();
        if let Some(hit) = match shared {
            Some(store) => store.load(*digest).await,
            None => None,
        } {
            // Another sidecar's answer, under the same TTL rules; the revocation checks
            // before and after this one still apply.
            let ttl = hit.ttl.min(introspector.positive_ttl());
            return Ok(CachedAnswer {
                answer: Answer::Active(hit.principal),
                ttl,
                valid_until: now.saturating_add(ttl),
            });
        }
        let answer = match introspector.introspect(token, now.as_secs(), admission).await? {
            Answer::Active(principal) => Answer::Active(Arc::new(Principal {
                claims: principal.claims.only(&self.retained_claims),
                ..(*principal).clone()
            })),
            inactive => inactive,
        };
        let ttl = match &answer {
            Answer::Active(principal) => introspector.positive_ttl().min(Duration::from_secs(
                principal.expires_at.saturating_sub(now.as_secs()).max(1),
            )),
            Answer::Inactive(_) => introspector.negative_ttl(),
        };
        if let (Some(store), Answer::Active(principal)) = (shared, &answer) {
            store.store(*digest, Arc::clone(principal), ttl);
        }
        Ok(CachedAnswer {
            answer,
            ttl,
            valid_until: now.saturating_add(ttl),
        })
    }

    /// During an outage, a token that was active within `serve_stale_for` is still allowed
    /// (off by default: it delays revocation by that window).
    async fn stale_answer(&self, digest: &[u8; 32]) -> Option<Arc<Principal>> {
        let (principal, index, seen) = self.last_active.get(digest).await?;
        let window = self.issuers[index].introspector.as_ref()?.serve_stale_for();
        let now = self.now();
        (now.saturating_sub(seen) <= window && now.as_secs() <= principal.expires_at).then_some(principal)
    }

    /// A cached result stands while its issuer's keys are usable, the exact key that
    /// verified it is still published (by RFC 7638 thumbprint: a `kid` may be reused for new
    /// material, and a key may have no `kid`), the token has not expired and the entry's TTL
    /// has not run out.
    fn still_valid(&self, hit: &CachedToken) -> Result<Option<Arc<Principal>>, AuthError> {
        let issuer = &self.issuers[hit.issuer];
        let Some(keys) = &issuer.keys else { return Ok(None) };
        let state = keys.current()?;
        let key_present = state.keys.contains_thumbprint(&hit.thumbprint);
        let now = self.now();
        let unexpired = now < hit.valid_until
            && now.as_secs() <= hit.principal.expires_at.saturating_add(issuer.policy.leeway.as_secs());
        Ok((key_present && unexpired).then(|| Arc::clone(&hit.principal)))
    }

    /// Verifies a token parsed by [`Authenticator::route`] against its issuer's keys.
    async fn verify_uncached(&self, parsed: &UnverifiedJws<'_>, index: usize) -> Result<CachedToken, AuthError> {
        let issuer = &self.issuers[index];
        // A token no key could save is refused before keys are looked for: an outage must
        // not turn it into a 503, nor let it trigger an on-demand fetch.
        parsed.check_without_keys(&issuer.policy, self.now().as_secs())?;
        let keys = issuer.keys.as_ref().ok_or(UnavailableReason::NoKeys)?;
        let state = match keys.current() {
            Ok(state) => state,
            Err(unavailable) => {
                if !keys.refresh_on_demand().await {
                    return Err(unavailable.into());
                }
                keys.current()?
            }
        };
        self.metrics.signature_verifications.inc();
        let keep = |name: &str| self.retained_claims.iter().any(|retained| retained == name);
        let verified = match parsed.verify_keeping(&state.keys, &issuer.policy, self.now().as_secs(), keep) {
            Err(TokenError::UnknownKey) => {
                // Refetch within the unknown-kid budget, then use whatever key set is newest:
                // another request or the background loop may have loaded the new key
                // already, in which case the budget must not turn a valid token away.
                let refreshed = keys.refresh_for_unknown_kid(parsed.kid(), &state).await;
                let latest = keys.current()?;
                if refreshed || !Arc::ptr_eq(&latest, &state) {
                    self.metrics.signature_verifications.inc();
                    parsed.verify_keeping(&latest.keys, &issuer.policy, self.now().as_secs(), keep)
                } else {
                    Err(TokenError::UnknownKey)
                }
            }
            other => other,
        }?;
        let claims = verified.claims;
        let now = self.now();
        let remaining = claims.exp.saturating_sub(now.as_secs()).max(1);
        let ttl = self.cache_ttl.min(Duration::from_secs(remaining));
        Ok(CachedToken {
            ttl,
            valid_until: now.saturating_add(ttl),
            issuer: index,
            thumbprint: verified.thumbprint,
            principal: self.principal(claims),
        })
    }

    fn principal(&self, claims: jws::Claims) -> Arc<Principal> {
        Arc::new(Principal {
            issuer: claims.iss,
            subject: claims.sub,
            client_id: claims.client_id,
            scopes: claims.scopes,
            audiences: claims.aud,
            claims: self.retain(claims.raw),
            expires_at: claims.exp,
            confirmation: claims.cnf,
            issued_at: claims.iat,
        })
    }

    /// What a token carrying `claims` would be, its signature taken as verified (`explain
    /// --claims`): the issuer `iss` names, then the same claim rules local verification runs.
    ///
    /// # Errors
    /// `unknown_issuer`, or the first claim rule the claims break.
    pub fn principal_from_claims(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Arc<Principal>, AuthError> {
        let issuer = claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .and_then(|iss| self.issuers.iter().find(|i| i.policy.issuer == iss))
            .ok_or(AuthError::Invalid(InvalidReason::UnknownIssuer))?;
        let checked = jws::validate_claims(claims, &issuer.policy, self.now().as_secs())?;
        Ok(self.principal(checked))
    }
}
