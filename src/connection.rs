//! Connection accounting below the request path: accepting under a connection cap,
//! per-connection activity for the idle, first-request and response-progress timeouts,
//! response bodies that keep their request counted until done, and the connection slot a
//! WebSocket tunnel keeps after hyper lets go of the connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
    /// The responses in flight, each with when it began to wait for hyper to take its next
    /// frame (see [`Progress`]).
    responses: Mutex<Vec<Weak<Progress>>>,
}

/// When a response began to wait for hyper to take its next frame, in milliseconds since
/// its connection opened plus one; 0 while hyper has asked for a frame and the response is
/// waiting for the upstream instead. A response waits for hyper from the moment it is
/// handed over until hyper polls its body, and again from each frame it yields until the
/// next poll: hyper polls only when the client has room for more (HTTP/1: the socket and
/// hyper's write buffer drain; HTTP/2: the stream's flow-control window is open), so a long
/// wait here is a client that does not read while data is waiting. An idle SSE stream is
/// polled and waits for its upstream: it never counts.
struct Progress(AtomicU64);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            opened: Instant::now(),
            responses: Mutex::new(Vec::new()),
        })
    }

    fn elapsed_millis(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last.store(self.elapsed_millis(), Ordering::Release);
    }

    /// Tracks a response just handed to hyper: it waits for hyper from now.
    fn track(&self) -> Arc<Progress> {
        let progress = Arc::new(Progress(AtomicU64::new(self.elapsed_millis() + 1)));
        let mut responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        responses.retain(|response| response.strong_count() > 0);
        responses.push(Arc::downgrade(&progress));
        progress
    }

    /// Since when (milliseconds since opened) the longest-waiting response has been waiting
    /// for the client, if any is.
    fn oldest_wait(&self) -> Option<u64> {
        let responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        responses
            .iter()
            .filter_map(Weak::upgrade)
            .map(|progress| progress.0.load(Ordering::Acquire))
            .filter(|since| *since > 0)
            .min()
            .map(|since| since - 1)
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

/// A response body that keeps its request counted as in flight until it is done, and
/// reports to its connection when it waits for the client (the response-progress timeout).
pub struct TrackedBody {
    inner: ProxyBody,
    progress: Arc<Progress>,
    guard: ActivityGuard,
}

impl TrackedBody {
    pub fn new(inner: ProxyBody, guard: ActivityGuard) -> TrackedBody {
        TrackedBody {
            inner,
            progress: guard.0.track(),
            guard,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // Hyper asks for more: the client took what came before.
        self.progress.0.store(0, Ordering::Release);
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            let now = self.guard.0.elapsed_millis();
            self.progress.0.store(now + 1, Ordering::Release);
        }
        polled
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

/// How long a connection may sit without progress, and where.
#[derive(Debug, Clone, Copy)]
pub struct InactivityLimits {
    /// A complete first request head within this time of opening.
    pub first_request: Duration,
    /// Nothing in flight for this long closes the connection.
    pub idle: Duration,
    /// A response waiting this long for the client to take more closes the connection,
    /// which drops the response and, with it, the upstream request (`None`: no limit).
    pub response_progress: Option<Duration>,
}

/// Why a connection was closed by [`inactivity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    /// No request head in time, or nothing in flight for the idle timeout.
    Idle,
    /// A response waited for the client longer than the response-progress timeout.
    Stalled,
}

/// Resolves when the connection should be closed: no complete request head within
/// `first_request` of opening, nothing in flight for `idle`, or a response that waited for
/// the client longer than `response_progress`.
///
/// A stalled response closes its whole connection: on HTTP/1.1 the write is stuck, so
/// nothing else could happen on it anyway; on HTTP/2 hyper does not poll a body whose
/// stream has no flow-control credit, so the stream cannot be reset on its own.
pub async fn inactivity(activity: Arc<Activity>, limits: InactivityLimits) -> Inactive {
    loop {
        let now = activity.opened.elapsed();
        let in_flight = activity.in_flight.load(Ordering::Acquire) > 0;
        let mut deadline = if activity.requests.load(Ordering::Acquire) == 0 {
            limits.first_request
        } else if in_flight {
            now + limits.idle
        } else {
            Duration::from_millis(activity.last.load(Ordering::Acquire)) + limits.idle
        };
        if deadline <= now {
            return Inactive::Idle;
        }
        if let (true, Some(timeout)) = (in_flight, limits.response_progress) {
            let next_check = match activity.oldest_wait() {
                Some(since) => {
                    let stall_at = Duration::from_millis(since) + timeout;
                    if stall_at <= now {
                        return Inactive::Stalled;
                    }
                    stall_at
                }
                // A response that starts waiting after this look is seen at the next one:
                // look again a quarter of the timeout later, so a stall is caught within
                // 1.25 times the timeout.
                None => now + timeout / 4,
            };
            deadline = deadline.min(next_check);
        }
        tokio::time::sleep(deadline.saturating_sub(now).max(Duration::from_millis(1))).await;
    }
}

/// Accepts the next connection once `slots` has room. Waiting for a slot first leaves
/// further connections in the kernel's accept queue rather than taking descriptors; a
/// failed accept (typically EMFILE at the descriptor limit) pauses instead of spinning, so
/// one listener at the limit cannot take a core from the other.
pub async fn accept_within(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = Arc::clone(slots).acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return Some((stream, peer, permit)),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
