//! Per-issuer verification keys: JWKS fetches (from the configured `jwks_uri` or the one the
//! issuer's shared discovery found), background refresh, single-flight
//! refetch on an unknown `kid` with a cool-down, and bounded staleness through outages.
//!
//! Readers load the current [`KeyState`] without locking; fetches publish a new one. The
//! only lock guards the handle of the fetch in flight and is never held across an await.

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
    max_age: Option<Duration>,
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
    epoch: Instant,
    metrics: Metrics,
    /// Set once a refresh loop runs for these keys (they may outlive a config reload).
    refreshing: AtomicBool,
}

impl IssuerKeys {
    pub fn new(config: IssuerConfig, discovery: Arc<IssuerDiscovery>, metrics: Metrics) -> Arc<IssuerKeys> {
        Arc::new(IssuerKeys {
            config,
            discovery,
            state: ArcSwapOption::empty(),
            in_flight: Mutex::new(None),
            last_on_demand: AtomicU64::new(0),
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

    /// A fetch triggered by a request (unknown `kid`, missing or stale keys): at most one
    /// per `unknown_kid_cooldown`, so a flood of made-up `kid`s cannot amplify into a flood
    /// of JWKS requests. Returns whether fresh keys were loaded.
    pub async fn refresh_on_demand(self: &Arc<Self>) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let cooldown = self.config.unknown_kid_cooldown.as_millis() as u64;
        let last = self.last_on_demand.load(Ordering::Acquire);
        let due = last == 0 || now.saturating_sub(last) >= cooldown;
        if !due
            || self
                .last_on_demand
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            // Someone else fetches (or fetched) within this cool-down: share their result
            // if it is still in flight, otherwise answer with what we have.
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
