//! Per-issuer verification keys: JWKS fetches (from the configured `jwks_uri` or the one the
//! issuer's shared discovery found), background refresh, single-flight
//! refetch on an unknown `kid`, and bounded staleness through outages.
//!
//! Readers load the current [`KeyState`] without locking; fetches publish a new one. The
//! only lock guards the handle of the fetch in flight and is never held across an await.
//!
//! An unknown `kid` may mean a key rotation or a forged token; the two cannot be told apart
//! before a fetch, so fetches are budgeted (see [`IssuerKeys::refresh_for_unknown_kid`]):
//! a `kid` seen for the first time may fetch once per `unknown_kid_cooldown`; a `kid` seen
//! again before any fetch has looked for it may fetch once per
//! `unknown_kid_recheck_interval`; a `kid` that a fetch started after its first sighting did
//! not contain is refused without fetching until it is forgotten. A flood of made-up `kid`s
//! thus costs one fetch per cool-down (or one per recheck interval if it repeats its
//! `kid`s), while a real rotation is seen by the next request carrying the new `kid`, or by
//! any fetch the flood causes, within the recheck interval.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::http_client::{FetchError, get_bounded};
use crate::metrics::Metrics;
use crate::token::config::IssuerConfig;
use crate::token::discovery::IssuerDiscovery;
use crate::token::error::UnavailableReason;
use crate::token::jwk::KeySet;

/// A key set and when it was fetched.
pub struct KeyState {
    pub keys: KeySet,
    pub fetched_at: Instant,
    /// When the fetch that produced this set began: a `kid` first seen before then and not in
    /// the set was looked for and is not published.
    requested_at: Instant,
    max_age: Option<Duration>,
}

/// `kid`s not in the key set, remembered (by SHA-256) for one cool-down each. Least recently
/// used entries go first, so a flood of new `kid`s cannot keep a real one from being
/// remembered between its first and second sighting.
const UNKNOWN_KIDS_REMEMBERED: u64 = 4096;

/// What a request carrying an unknown `kid` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnknownKid {
    /// First sighting: fetch if the cool-down allows.
    FirstSeen,
    /// Seen before, and no fetch has looked for it since: fetch if the recheck interval allows.
    SeenAgain,
    /// A fetch started after the first sighting did not contain it.
    NotPublished,
}

type SharedFetch = Shared<BoxFuture<'static, Result<(), FetchError>>>;

pub struct IssuerKeys {
    config: IssuerConfig,
    /// Where `jwks_uri` comes from unless configured (shared with introspection).
    discovery: Arc<IssuerDiscovery>,
    state: ArcSwapOption<KeyState>,
    in_flight: Mutex<Option<SharedFetch>>,
    /// Milliseconds since `epoch` of the last on-demand fetch (unknown kid or stale keys).
    last_on_demand: AtomicU64,
    /// Milliseconds since `epoch` of the last fetch for a `kid` seen again.
    last_recheck: AtomicU64,
    /// When each recently seen unknown `kid` (by SHA-256) was first seen.
    unknown_kids: moka::sync::Cache<[u8; 32], Instant>,
    epoch: Instant,
    metrics: Metrics,
    /// Set once a refresh loop runs for these keys (they may outlive a config reload).
    refreshing: AtomicBool,
}

impl IssuerKeys {
    pub fn new(config: IssuerConfig, discovery: Arc<IssuerDiscovery>, metrics: Metrics) -> Arc<IssuerKeys> {
        let remember_for = config.unknown_kid_cooldown.max(Duration::from_secs(1));
        Arc::new(IssuerKeys {
            config,
            discovery,
            state: ArcSwapOption::empty(),
            in_flight: Mutex::new(None),
            last_on_demand: AtomicU64::new(0),
            last_recheck: AtomicU64::new(0),
            unknown_kids: moka::sync::Cache::builder()
                .max_capacity(UNKNOWN_KIDS_REMEMBERED)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(remember_for)
                .build(),
            epoch: Instant::now(),
            metrics,
            refreshing: AtomicBool::new(false),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The keys to verify with now: none before the first fetch (`jwks_unavailable`), nor
    /// once the last good set is older than `max_stale` (`jwks_stale`).
    pub fn current(&self) -> Result<Arc<KeyState>, UnavailableReason> {
        let state = self.state.load_full().ok_or(UnavailableReason::JwksUnavailable)?;
        if state.fetched_at.elapsed() > self.config.max_stale {
            return Err(UnavailableReason::JwksStale);
        }
        Ok(state)
    }

    /// Time since the last successful fetch, if any.
    pub fn age(&self) -> Option<Duration> {
        self.state.load().as_ref().map(|s| s.fetched_at.elapsed())
    }

    pub fn is_loaded(&self) -> bool {
        self.current().is_ok()
    }

    /// Fetches now, joining a fetch already in flight instead of starting another.
    pub async fn refresh(self: &Arc<Self>) -> Result<(), FetchError> {
        let fetch = {
            let mut slot = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match slot.as_ref() {
                Some(fetch) => fetch.clone(),
                None => {
                    let this = Arc::clone(self);
                    let fetch = async move {
                        let result = this.fetch_once().await;
                        *this.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                        result
                    }
                    .boxed()
                    .shared();
                    *slot = Some(fetch.clone());
                    fetch
                }
            }
        };
        fetch.await
    }

    /// A fetch triggered by a request (missing or stale keys, a `kid` seen for the first
    /// time): at most one per `unknown_kid_cooldown`, so a flood of made-up `kid`s cannot
    /// amplify into a flood of JWKS requests. Returns whether fresh keys were loaded.
    pub async fn refresh_on_demand(self: &Arc<Self>) -> bool {
        self.refresh_within(&self.last_on_demand, self.config.unknown_kid_cooldown)
            .await
    }

    /// The fetch a token whose `kid` is not in `checked` (the set it was verified against)
    /// may cause; see the module documentation. Returns whether fresh keys were loaded.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>, kid: Option<&str>, checked: &KeyState) -> bool {
        match self.sighting(kid, checked) {
            UnknownKid::FirstSeen => self.refresh_on_demand().await,
            UnknownKid::SeenAgain => {
                let interval = self
                    .config
                    .unknown_kid_recheck_interval
                    .min(self.config.unknown_kid_cooldown);
                self.refresh_within(&self.last_recheck, interval).await
            }
            UnknownKid::NotPublished => false,
        }
    }

    fn sighting(&self, kid: Option<&str>, checked: &KeyState) -> UnknownKid {
        // A token without `kid` that no key verified is remembered under the empty name.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, kid.unwrap_or_default().as_bytes());
        let mut name = [0u8; 32];
        name.copy_from_slice(digest.as_ref());
        let now = Instant::now();
        let first_seen = self.unknown_kids.get_with(name, || now);
        if first_seen == now {
            UnknownKid::FirstSeen
        } else if checked.requested_at > first_seen {
            UnknownKid::NotPublished
        } else {
            UnknownKid::SeenAgain
        }
    }

    /// Fetches unless `last` (milliseconds since `epoch`) is less than `gap` ago; otherwise
    /// shares the fetch in flight, if any. Returns whether fresh keys were loaded.
    async fn refresh_within(self: &Arc<Self>, last: &AtomicU64, gap: Duration) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let gap = gap.as_millis() as u64;
        let previous = last.load(Ordering::Acquire);
        let due = previous == 0 || now.saturating_sub(previous) >= gap;
        if !due
            || last
                .compare_exchange(previous, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            // Someone else fetches (or fetched) within this gap: share their result if it is
            // still in flight, otherwise answer with what we have.
            let in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            return match in_flight {
                Some(fetch) => fetch.await.is_ok(),
                None => false,
            };
        }
        self.refresh().await.is_ok()
    }

    async fn fetch_once(&self) -> Result<(), FetchError> {
        let label = self.config.issuer.as_str();
        let result = self.fetch_keys().await;
        match &result {
            Ok(()) => {
                self.metrics.jwks_fetches.with_label_values(&[label, "success"]).inc();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                self.metrics.jwks_last_success.with_label_values(&[label]).set(now);
            }
            Err(e) => {
                self.metrics.jwks_fetches.with_label_values(&[label, "error"]).inc();
                tracing::warn!(issuer = label, error = %e, "JWKS fetch failed; keeping the last good key set");
            }
        }
        result
    }

    async fn fetch_keys(&self) -> Result<(), FetchError> {
        let requested_at = Instant::now();
        let jwks_uri = match &self.config.jwks_uri {
            Some(uri) => uri,
            None => self
                .discovery
                .metadata()
                .await?
                .jwks_uri
                .as_ref()
                .ok_or_else(|| FetchError::Invalid("the issuer's metadata has no jwks_uri".into()))?,
        };
        let fetched = get_bounded(self.discovery.client(), jwks_uri, self.config.max_response_bytes).await?;
        let (keys, warnings) = KeySet::from_jwks(&fetched.body).map_err(|e| FetchError::Invalid(e.to_string()))?;
        for warning in &warnings {
            tracing::warn!(issuer = %self.config.issuer, %warning, "skipping unusable JWKS key");
        }
        if keys.is_empty() {
            return Err(FetchError::Invalid("the JWKS has no usable signing key".into()));
        }
        self.metrics
            .jwks_keys
            .with_label_values(&[self.config.issuer.as_str()])
            .set(keys.len() as i64);
        self.state.store(Some(Arc::new(KeyState {
            keys,
            fetched_at: Instant::now(),
            requested_at,
            max_age: fetched.max_age,
        })));
        Ok(())
    }

    /// Starts the background refresh loop unless one already runs. The loop holds only a
    /// weak reference: when a reload drops these keys, it ends at its next wake-up.
    pub fn spawn_refresher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(tokio::spawn(run_refresh_loop(Arc::downgrade(self))))
    }
}

/// Refreshes while the keys are in use: at the server's `max-age` clamped to the configured
/// bounds, and with exponential backoff after failures.
async fn run_refresh_loop(keys: Weak<IssuerKeys>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(this) = keys.upgrade() else { return };
        let wait = match this.refresh().await {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                let max_age = this.state.load().as_ref().and_then(|s| s.max_age);
                max_age
                    .unwrap_or(this.config.jwks_refresh_max)
                    .clamp(this.config.jwks_refresh_min, this.config.jwks_refresh_max)
            }
            Err(_) => {
                let wait = backoff;
                backoff = (backoff * 2).min(this.config.jwks_refresh_min.max(Duration::from_secs(1)));
                wait
            }
        };
        drop(this);
        tokio::time::sleep(wait).await;
    }
}
