//! Header rewriting and the upstream client ([`upstream`], over [`pool`] for HTTP/1.1).
//! Bodies are streamed both ways: nothing here buffers a request or response body.

pub mod pool;
pub mod upstream;

pub use pool::UpstreamBody;
pub use upstream::{UpstreamClient, UpstreamError};

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body::ProxyBody;
use crate::canonical::CanonicalPath;
use crate::canonical::RequestError;
use crate::config::{ForwardingConfig, IdentityConfig, UpstreamConfig, normalize_header_name};

/// RFC 9110 §7.6.1 connection-specific fields, plus the long-standing non-standard ones.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    // RFC 7540 §3.2.1: only meaningful on the connection that asks for an h2c upgrade, which
    // is never passed on; a client may send it without naming it in `Connection`.
    "http2-settings",
];

/// Headers some frameworks use to override the method or path after routing (Symfony, IIS,
/// Rails, Express middleware): a request authorized as `GET /public/x` must not run as
/// `DELETE /admin` upstream. Always removed.
const OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "x-forwarded-method",
];

/// Origin claims, removed unless forwarded headers are trusted: an untrusted client could
/// claim any address, host, prefix or original URI (`X-Forwarded-For/-Proto/-Host` are then
/// replaced with what scopegate saw).
const ORIGIN_CLAIMS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
];

/// Whole families of origin claims (`X-Forwarded-Uri`, `-Path`, `-Prefix`, `-Port`,
/// `X-Original-Uri`, `-Host`, …): new members keep appearing, so the family is what counts.
const ORIGIN_CLAIM_FAMILIES: &[&str] = &["x-forwarded-", "x-original-"];

/// Removes hop-by-hop headers and every header the `Connection` header nominates.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at each name present, rather than a lookup per listed name; a nominated name
    // is only made into a `HeaderName` when such a header is there (`Connection: keep-alive`
    // and `close`, on most messages, nominate nothing else).
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(&name.as_str()))
        .cloned()
        .collect();
    for option in pool::connection_options(headers) {
        let listed = HOP_BY_HOP.iter().any(|name| option.eq_ignore_ascii_case(name));
        if !listed && headers.contains_key(option) {
            // `from_bytes` lower-cases the name.
            doomed.extend(HeaderName::from_bytes(option.as_bytes()).ok());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes every header in the identity namespace, comparing case- and `_`/`-`-insensitively.
pub fn strip_identity(headers: &mut HeaderMap, identity: &IdentityConfig) {
    strip_matching(headers, |name| name.starts_with(identity.prefix.as_str()));
}

/// Removes every header whose normalized name (lower case, `_` folded to `-`) satisfies
/// `doomed`: CGI-style servers read `X_HTTP_Method_Override` as `X-HTTP-Method-Override`.
fn strip_matching(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    // A `HeaderName` is lower case already: only a name with `_` needs a folded copy.
    let is_doomed = |name: &HeaderName| match name.as_str() {
        plain if !plain.contains('_') => doomed(plain),
        folded => doomed(&normalize_header_name(folded)),
    };
    if !headers.keys().any(is_doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|name| is_doomed(name)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Headers that may never reach the upstream from a client, in headers or trailers.
fn strip_client_controlled(headers: &mut HeaderMap, identity: &IdentityConfig, forwarding: &ForwardingConfig) {
    strip_matching(headers, |name| {
        name.starts_with(identity.prefix.as_str())
            || OVERRIDES.contains(&name)
            || (!forwarding.trust_forwarded_headers
                && (ORIGIN_CLAIMS.contains(&name) || ORIGIN_CLAIM_FAMILIES.iter().any(|f| name.starts_with(f))))
            // A DPoP proof (RFC 9449) is a credential like the token it comes with.
            || (!forwarding.forward_authorization && (name == "authorization" || name == "dpop"))
            // Only scopegate sets the assertion's header.
            || identity.assertion.as_ref().is_some_and(|a| a.header.as_str() == name)
    });
}

/// True when the client asks to switch to WebSocket (RFC 9110 §7.8, RFC 6455 §4.1). Other
/// protocols (notably `h2c`, a known request-smuggling vector through proxies) are never
/// passed on: their `Upgrade` header is removed with the other hop-by-hop headers.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let mut protocols = headers.get_all(header::UPGRADE).iter();
    let websocket = protocols
        .next()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    websocket
        && protocols.next().is_none()
        && pool::connection_options(headers).any(|option| option.eq_ignore_ascii_case("upgrade"))
}

/// Everything the rewrite step needs to know about the inbound request.
pub struct RewriteContext<'a> {
    pub path: &'a CanonicalPath,
    pub peer: SocketAddr,
    /// The identity headers the decision settled on (empty for a public route).
    pub identity_headers: &'a [(HeaderName, HeaderValue)],
    pub upgrade: bool,
    pub forwarding: &'a ForwardingConfig,
    pub identity: &'a IdentityConfig,
    pub upstream: &'a UpstreamConfig,
    /// Longest pause allowed between two frames of the request body (`None`: no limit).
    pub body_idle_timeout: Option<std::time::Duration>,
}

/// Turns the inbound request into the upstream request: canonical path, clean headers,
/// forwarding headers, and identity headers that only scopegate can have set.
pub fn rewrite_request(req: Request<ProxyBody>, ctx: &RewriteContext<'_>) -> Result<Request<ProxyBody>, RequestError> {
    let (mut parts, body) = req.into_parts();
    let upgrade_protocol = ctx
        .upgrade
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten();
    // RFC 9112 §3.2.2: an absolute-form target's authority replaces `Host`; RFC 9113 §8.3.1:
    // `:authority` becomes `Host` (the decision refused an HTTP/2 `host` that disagrees).
    let target_authority = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(authority) = &target_authority {
        parts.headers.insert(header::HOST, authority.clone());
    }
    let original_host = parts.headers.get(header::HOST).cloned();

    // Origin form (DESIGN §3.1): the canonical path and the query as received. A target
    // that is that already (the usual HTTP/1.1 request) is kept as it is.
    let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
    if !origin_form || parts.uri.path() != ctx.path.as_str() {
        let target = match parts.uri.query() {
            Some(query) => format!("{}?{query}", ctx.path.as_str()),
            None => ctx.path.as_str().to_string(),
        };
        let target = http::uri::PathAndQuery::try_from(target).map_err(|_| RequestError::InvalidTarget)?;
        parts.uri = Uri::from(target);
    }
    parts.version = if ctx.upstream.http2_prior_knowledge {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    strip_client_controlled(headers, ctx.identity, ctx.forwarding);
    set_forwarding_headers(headers, ctx, original_host);
    if let Some(protocol) = upgrade_protocol {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    for (name, value) in ctx.identity_headers {
        headers.insert(name.clone(), value.clone());
    }
    // A body that has ended (a GET) has no trailers to clean and cannot stall: it gets
    // neither wrapper (nor the idle timer's registration).
    if http_body::Body::is_end_stream(&body) {
        return Ok(Request::from_parts(parts, body));
    }
    let (identity, forwarding) = (ctx.identity.clone(), ctx.forwarding.clone());
    let body = clean_trailers(body, move |trailers| {
        strip_client_controlled(trailers, &identity, &forwarding)
    });
    let body = match ctx.body_idle_timeout {
        Some(idle) => IdleLimited::new(body, idle).boxed(),
        None => body,
    };
    Ok(Request::from_parts(parts, body))
}

fn set_forwarding_headers(headers: &mut HeaderMap, ctx: &RewriteContext<'_>, original_host: Option<HeaderValue>) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let xfp = HeaderName::from_static("x-forwarded-proto");
    let xfh = HeaderName::from_static("x-forwarded-host");
    let peer_ip = ctx.peer.ip().to_string();
    if ctx.forwarding.trust_forwarded_headers {
        let chain = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .chain(std::iter::once(peer_ip.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(&xff, value);
        }
        if !headers.contains_key(&xfp) {
            headers.insert(&xfp, HeaderValue::from_static("http"));
        }
        if let (false, Some(host)) = (headers.contains_key(&xfh), original_host) {
            headers.insert(&xfh, host);
        }
    } else {
        // Untrusted clients could claim any origin (the other claims were removed already);
        // replace what they sent with what we saw.
        if let Ok(value) = HeaderValue::from_str(&peer_ip) {
            headers.insert(&xff, value);
        }
        headers.insert(&xfp, HeaderValue::from_static("http"));
        match original_host {
            Some(host) => headers.insert(&xfh, host),
            None => headers.remove(&xfh),
        };
    }
    if ctx.forwarding.add_via {
        headers.append(header::VIA, HeaderValue::from_static("1.1 scopegate"));
    }
}

/// Cleans an upstream response: hop-by-hop and identity headers never reach the client
/// (except what a 101 Switching Protocols response needs).
pub fn rewrite_response<B>(response: &mut Response<B>, identity: &IdentityConfig) {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upgrade = response.headers().get(header::UPGRADE).cloned();
    strip_hop_by_hop(response.headers_mut());
    strip_identity(response.headers_mut(), identity);
    if let (true, Some(protocol)) = (switching, upgrade) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        response.headers_mut().insert(header::UPGRADE, protocol);
    }
}

/// Trailers (chunked HTTP/1.1 or HTTP/2) can carry fields too: hop-by-hop names and what
/// `strip` removes are taken out of them as from headers, in both directions.
pub fn clean_trailers<B>(body: B, strip: impl Fn(&mut HeaderMap) + Send + Sync + 'static) -> ProxyBody
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<crate::body::BodyError>,
{
    body.map_frame(move |frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            strip_hop_by_hop(&mut trailers);
            strip(&mut trailers);
            hyper::body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    })
    .map_err(Into::into)
    .boxed()
}

/// A request body that must keep moving: if no frame arrives for `idle`, it fails, which
/// aborts the upstream request (never a silently truncated body) and frees the connection.
/// Without it a client sending one byte a minute holds a client and an upstream connection
/// for ever, since the header-read timeout ends with the head.
pub struct IdleLimited<B> {
    inner: B,
    idle: std::time::Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleLimited<B> {
    pub fn new(inner: B, idle: std::time::Duration) -> Self {
        IdleLimited {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

/// The error an idle request body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for longer than the idle timeout")]
pub struct BodyStalled;

impl<B> http_body::Body for IdleLimited<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = crate::body::BodyError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::future::Future;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            std::task::Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(deadline);
                std::task::Poll::Ready(frame)
            }
            std::task::Poll::Pending if self.timer.as_mut().poll(cx).is_ready() => {
                std::task::Poll::Ready(Some(Err(Box::new(BodyStalled))))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the upstream switched to the protocol the client asked for.
pub fn upgrade_matches<B>(request_protocol: Option<&HeaderValue>, response: &Response<B>) -> bool {
    let switched = response.headers().get(header::UPGRADE);
    match (
        request_protocol.and_then(|v| v.to_str().ok()),
        switched.and_then(|v| v.to_str().ok()),
    ) {
        (Some(asked), Some(got)) => asked.trim().eq_ignore_ascii_case(got.trim()),
        _ => false,
    }
}

/// Joins the two halves of an upgraded connection (a WebSocket) and copies bytes both ways
/// until either side closes or nothing moves for `idle`. `lease` (the client connection's
/// slot under `listener.max_connections`) is held for as long as the tunnel lives.
pub fn splice_upgrade<L: Send + 'static>(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: std::time::Duration,
    lease: L,
) {
    tokio::spawn(async move {
        let _lease = lease;
        let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else {
            tracing::debug!("upgrade abandoned before both sides switched protocols");
            return;
        };
        let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
        let (mut upstream_read, mut upstream_write) = tokio::io::split(TokioIo::new(upstream));
        let mut from_client = vec![0u8; 16 * 1024];
        let mut from_upstream = vec![0u8; 16 * 1024];
        loop {
            // Reads are cancel-safe; a write that cannot drain within `idle` also ends the tunnel.
            let moved = tokio::select! {
                read = client_read.read(&mut from_client) => match read {
                    Ok(n) if n > 0 => tokio::time::timeout(idle, upstream_write.write_all(&from_client[..n])).await,
                    _ => break,
                },
                read = upstream_read.read(&mut from_upstream) => match read {
                    Ok(n) if n > 0 => tokio::time::timeout(idle, client_write.write_all(&from_upstream[..n])).await,
                    _ => break,
                },
                () = tokio::time::sleep(idle) => break,
            };
            if !matches!(moved, Ok(Ok(()))) {
                break;
            }
        }
        tracing::debug!("upgraded connection closed");
    });
}
