//! The one body type of the request path: forwarded and synthesized requests and responses
//! share it (hyper's `examples/http_proxy.rs` shape), so no step needs to know which it holds.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// Why a streamed body ended early (a peer's error, or scopegate's own limits).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body type shared by forwarded and synthesized requests and responses.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// A body from bytes we produced ourselves.
pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A streamed body (a peer's), boxed.
pub fn stream_body<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BodyError>,
{
    body.map_err(Into::into).boxed()
}
