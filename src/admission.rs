//! Admission to the upstream: the global cap on requests in flight to it
//! (`upstream.max_concurrent_requests`). Each forwarded request holds a slot from before it is
//! sent until its response body is finished or dropped (or, for a WebSocket, until the
//! tunnel closes), so the cap bounds the upstream connections scopegate can be made to hold
//! open, whatever the clients do. Beyond it a request is answered 503 at once rather than
//! queued: a queue would only move the pile-up from the upstream into scopegate.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::{BodyError, ProxyBody};
use crate::forward::UpstreamError;

/// The slots under `upstream.max_concurrent_requests`, shared by every client connection.
pub struct UpstreamSlots {
    semaphore: Arc<Semaphore>,
    size: usize,
}

/// One request's place under the cap; dropping it frees the place.
pub struct UpstreamSlot(#[expect(dead_code, reason = "held for its Drop")] OwnedSemaphorePermit);

impl UpstreamSlots {
    pub fn new(size: usize) -> Arc<UpstreamSlots> {
        Arc::new(UpstreamSlots {
            semaphore: Arc::new(Semaphore::new(size)),
            size,
        })
    }

    /// The configured cap.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes a slot, or refuses at once when every slot is taken.
    ///
    /// # Errors
    /// [`UpstreamError::Saturated`] (503 with `Retry-After`) when the cap is reached.
    pub fn try_take(&self) -> Result<UpstreamSlot, UpstreamError> {
        Arc::clone(&self.semaphore)
            .try_acquire_owned()
            .map(UpstreamSlot)
            .map_err(|_| UpstreamError::Saturated)
    }
}

/// A response body that keeps its request's upstream slot until it is finished or dropped.
pub fn hold_slot(body: ProxyBody, slot: UpstreamSlot) -> ProxyBody {
    ProxyBody::new(SlotBody {
        inner: body,
        _slot: slot,
    })
}

struct SlotBody {
    inner: ProxyBody,
    _slot: UpstreamSlot,
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_freed_when_its_body_is_dropped() {
        let slots = UpstreamSlots::new(1);
        let slot = slots.try_take().expect("one slot is free");
        assert_eq!(slots.try_take().err(), Some(UpstreamError::Saturated));
        let body = hold_slot(crate::body::full_body("x"), slot);
        assert_eq!(slots.try_take().err(), Some(UpstreamError::Saturated));
        drop(body);
        assert!(slots.try_take().is_ok());
    }
}
