//! The time the token layer judges by: `exp`, `nbf`, `iat`, cache lifetimes and the
//! introspection outage window all read one [`Clock`], the system clock unless a test or
//! an embedding program sets another (never the config file).
//!
//! moka's own expiry timers stay on the monotonic clock; the token layer checks its
//! deadlines against this clock as well, so a cached answer ends at whichever comes first.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, cheap to clone and share.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    /// A clock reading `now` (tests advance time with it instead of sleeping).
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// Time since the Unix epoch; zero for a clock set before it.
    pub fn since_epoch(&self) -> Duration {
        self.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// Whole seconds since the Unix epoch (RFC 7519 NumericDate precision).
    pub fn unix_secs(&self) -> u64 {
        self.since_epoch().as_secs()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_is_read_as_set() {
        let clock = Clock::from_fn(|| UNIX_EPOCH + Duration::from_millis(1_500));
        assert_eq!(clock.unix_secs(), 1);
        assert_eq!(clock.since_epoch(), Duration::from_millis(1_500));
        assert!(Clock::system().unix_secs() > 1_600_000_000);
    }
}
