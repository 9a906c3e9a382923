//! Connection accounting below the request path: per-connection activity for the idle and
//! first-request timeouts, response bodies that keep their request counted until done, and
//! the connection slot a WebSocket tunnel keeps after hyper lets go of the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::body::ProxyBody;

/// Per-connection activity, for the idle and first-request timeouts that hyper does not
/// enforce itself (HTTP/1 keep-alive idleness, the h2c preface, HTTP/2 idleness).
pub struct Activity {
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds since `opened` of the last request start or response end.
    last: AtomicU64,
    opened: Instant,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            opened: Instant::now(),
        })
    }

    fn touch(&self) {
        self.last
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Release);
    }
}

/// Decrements the in-flight count when the response body is finished or dropped.
pub struct ActivityGuard(Arc<Activity>);

impl ActivityGuard {
    pub fn new(activity: Arc<Activity>) -> ActivityGuard {
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        ActivityGuard(activity)
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
pub struct TrackedBody {
    inner: ProxyBody,
    _guard: ActivityGuard,
}

impl TrackedBody {
    pub fn new(inner: ProxyBody, guard: ActivityGuard) -> TrackedBody {
        TrackedBody { inner, _guard: guard }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection's slot under `listener.max_connections`, handed to a WebSocket
/// tunnel so the slot stays taken (and the idle timeout applies) after hyper lets go of
/// the upgraded connection.
#[derive(Clone)]
pub struct ConnectionLease {
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
    pub idle_timeout: Duration,
}

impl ConnectionLease {
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit, idle_timeout: Duration) -> ConnectionLease {
        ConnectionLease {
            _permit: Arc::new(permit),
            idle_timeout,
        }
    }
}

/// Resolves when the connection should be closed for inactivity: no complete request head
/// within `first_request` of opening, or nothing in flight for `idle`.
pub async fn inactivity(activity: Arc<Activity>, first_request: Duration, idle: Duration) {
    loop {
        let now = activity.opened.elapsed();
        let deadline = if activity.requests.load(Ordering::Acquire) == 0 {
            first_request
        } else if activity.in_flight.load(Ordering::Acquire) > 0 {
            now + idle
        } else {
            Duration::from_millis(activity.last.load(Ordering::Acquire)) + idle
        };
        if deadline <= now {
            return;
        }
        tokio::time::sleep(deadline - now).await;
    }
}
