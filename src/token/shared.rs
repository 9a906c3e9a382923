//! A second-level store of introspection answers shared by several sidecars (the fleet's
//! Redis, see `crate::fleet::shared_cache`). The token layer only knows this interface: the
//! store is consulted after the local cache misses and before the authorization server is
//! asked, and is told every active answer with the TTL the local cache gave it. A store that
//! fails or is slow answers "nothing": the authorization server is asked, as without it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::token::principal::Principal;

/// An active answer another sidecar stored, and how much longer it may be reused.
pub struct SharedAnswer {
    pub principal: Arc<Principal>,
    pub ttl: Duration,
}

/// A future a [`SharedAnswers`] store returns.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = Option<SharedAnswer>> + Send + 'a>>;

/// Introspection answers shared by the fleet, keyed by the token's SHA-256 (never the token).
pub trait SharedAnswers: Send + Sync {
    /// The answer stored for `digest`, if any (a failure is `None`).
    fn load(&self, digest: [u8; 32]) -> Lookup<'_>;
    /// Stores an active answer for `ttl`, in the background (never delays the request).
    fn store(&self, digest: [u8; 32], principal: Arc<Principal>, ttl: Duration);
}
