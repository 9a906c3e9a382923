//! The HTTP/1.1 connection pool to the upstream: a stack of idle connections per thread, so
//! a request, the upstream connection it borrows and the task driving that connection stay
//! on one worker's runtime.
//!
//! It does per request what hyper-util's pooled client did, minus what scopegate does not
//! need (pool keys, a shared lock, a checkout future, a task spawned per request to notice
//! when the response ends): the response body itself gives its connection back once it has
//! been read to the end. Connections in use are not counted here:
//! `upstream.max_concurrent_requests` bounds them (`crate::admission`).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use thread_local::ThreadLocal;
use tokio::time::Instant;
use tower_service::Service;

use crate::body::ProxyBody;
use crate::config::UpstreamConfig;

/// Why the pool got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// No connection could be opened: DNS, TCP connect (or its timeout), TLS.
    Connect,
    /// The exchange failed after the request was handed to a connection.
    Exchange,
}

/// HTTP/1.1 connections to the one upstream, pooled per thread.
#[derive(Clone)]
pub struct Http1Pool {
    shared: Arc<Shared>,
}

struct Shared {
    idle: ThreadLocal<IdleStack>,
    /// Plain TCP or TLS as the upstream's scheme says, ALPN `http/1.1` only.
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector dials (TLS takes the server name from it).
    target: Uri,
    /// The `Host` a request without one is sent with (as hyper-util's `set_host`): the
    /// upstream's host, and its port unless it is the scheme's default.
    host: HeaderValue,
    max_idle: usize,
    idle_timeout: Duration,
}

/// One thread's idle connections, the most recently used last.
#[derive(Default)]
struct IdleStack {
    connections: RefCell<Vec<IdleConnection>>,
    /// Whether a task closing this stack's expired connections is running.
    reaping: Cell<bool>,
}

struct IdleConnection {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl Http1Pool {
    /// `tls` is used for `https://` upstreams.
    pub fn new(config: &UpstreamConfig, tls: rustls::ClientConfig) -> Http1Pool {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        // The TLS layer above takes https:// URLs; it refuses nothing else.
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let target = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(config.scheme.clone());
            parts.authority = Some(config.authority.clone());
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
            parts
        })
        .expect("a scheme, an authority and \"/\" make an absolute URI");
        Http1Pool {
            shared: Arc::new(Shared {
                idle: ThreadLocal::new(),
                connector,
                target,
                host: host_header(&config.scheme, &config.authority),
                max_idle: config.pool_max_idle_per_host,
                idle_timeout: config.pool_idle_timeout,
            }),
        }
    }

    /// Sends `request` on an idle connection of this thread, or on a new one, and returns
    /// the response head. Not bounded in time here: the caller bounds the whole exchange.
    pub async fn send(&self, mut request: Request<ProxyBody>) -> Result<Response<UpstreamBody>, PoolError> {
        self.shared.prepare(&mut request);
        // Connecting and sending again are boxed: their state (a TLS stream, a second
        // request) is kilobytes that every request's future would otherwise carry and copy.
        let (mut sender, reused) = match self.shared.checkout() {
            Some(sender) => (sender, true),
            None => (Box::pin(self.shared.connect()).await?, false),
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(failed) if reused => {
                let (fresh, response) = Box::pin(self.shared.send_again(failed)).await?;
                sender = fresh;
                response
            }
            // A new connection that fails at once has nothing a second one would fix.
            Err(_) => return Err(PoolError::Exchange),
        };
        Ok(Arc::clone(&self.shared).lease(response, sender))
    }
}

impl Shared {
    /// After a pooled connection failed a request: if the request was handed back unsent
    /// (the idle connection closed, e.g. at the upstream's keep-alive timeout, before it was
    /// written), sending it again is safe for any method (RFC 9112 §9.3.1). Once, on a new
    /// connection; a request that was sent is never sent again.
    async fn send_again(
        &self,
        mut failed: TrySendError<Request<ProxyBody>>,
    ) -> Result<(SendRequest<ProxyBody>, Response<Incoming>), PoolError> {
        let request = failed.take_message().ok_or(PoolError::Exchange)?;
        tracing::debug!("idle upstream connection closed before the request was sent; sending it again");
        let mut sender = self.connect().await?;
        let response = sender
            .try_send_request(request)
            .await
            .map_err(|_| PoolError::Exchange)?;
        Ok((sender, response))
    }

    /// Origin form and a `Host`, what hyper-util's client did to a request on HTTP/1.
    fn prepare(&self, request: &mut Request<ProxyBody>) {
        let uri = request.uri();
        if uri.scheme().is_some() || uri.authority().is_some() {
            let origin = uri
                .path_and_query()
                .cloned()
                .map_or_else(|| Uri::from_static("/"), Uri::from);
            *request.uri_mut() = origin;
        }
        if !request.headers().contains_key(header::HOST) {
            request.headers_mut().insert(header::HOST, self.host.clone());
        }
    }

    /// The most recently used idle connection of this thread that is still open and has
    /// not been idle for longer than `pool_idle_timeout`.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let stack = self.idle.get()?;
        let mut connections = stack.connections.borrow_mut();
        while let Some(idle) = connections.pop() {
            if idle.since.elapsed() >= self.idle_timeout {
                // Every connection below it has been idle longer still.
                connections.clear();
                return None;
            }
            if !idle.sender.is_closed() {
                return Some(idle.sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, PoolError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|_| PoolError::Connect)?;
        let io = connector.call(self.target.clone()).await.map_err(|e| {
            tracing::debug!(error = %e, "cannot connect to the upstream");
            PoolError::Connect
        })?;
        let (sender, connection) = http1::handshake(io).await.map_err(|_| PoolError::Connect)?;
        // The connection's task runs on this thread's runtime; `with_upgrades` hands the
        // connection over to `hyper::upgrade::on` after a 101 (a WebSocket tunnel).
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection failed");
            }
        });
        Ok(sender)
    }

    /// Wraps the response body so that it gives `sender` back when it ends, unless the
    /// connection cannot carry another request.
    fn lease(self: Arc<Self>, response: Response<Incoming>, sender: SendRequest<ProxyBody>) -> Response<UpstreamBody> {
        let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS && !closes_connection(response.headers());
        let lease = reusable.then_some(Lease { sender, pool: self });
        response.map(|inner| {
            let mut body = UpstreamBody { inner, lease };
            // A response without a body (204, 304, HEAD, `Content-Length: 0`) ends here.
            if http_body::Body::is_end_stream(&body.inner) {
                body.give_back();
            }
            body
        })
    }

    /// Keeps `sender` as this thread's most recent idle connection, if there is room.
    fn check_in(self: Arc<Self>, sender: SendRequest<ProxyBody>) {
        // Not ready: the connection is closing, or still writing a request body the
        // upstream answered before reading to the end. Dropping it closes it when done.
        if !sender.is_ready() || self.max_idle == 0 || self.idle_timeout.is_zero() {
            return;
        }
        let stack = self.idle.get_or_default();
        {
            let mut connections = stack.connections.borrow_mut();
            if connections.len() >= self.max_idle {
                return;
            }
            connections.push(IdleConnection {
                sender,
                since: Instant::now(),
            });
        }
        if !stack.reaping.get() && tokio::runtime::Handle::try_current().is_ok() {
            stack.reaping.set(true);
            tokio::spawn(reap(Arc::downgrade(&self)));
        }
    }
}

/// Closes this thread's idle connections once they have been idle for `pool_idle_timeout`,
/// so that they do not stay open while no request comes to take them. Ends when the stack
/// is empty (the next check-in starts another) or the pool is gone (a reload replaced it).
/// It prunes the stack of the thread it runs on: on the data plane's single-threaded
/// runtimes, the thread that started it.
async fn reap(pool: Weak<Shared>) {
    loop {
        let oldest = {
            let Some(pool) = pool.upgrade() else { return };
            let Some(stack) = pool.idle.get() else { return };
            let mut connections = stack.connections.borrow_mut();
            let now = Instant::now();
            connections.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < pool.idle_timeout);
            match connections.first() {
                Some(oldest) => oldest.since + pool.idle_timeout,
                None => {
                    stack.reaping.set(false);
                    return;
                }
            }
        };
        tokio::time::sleep_until(oldest).await;
    }
}

/// The options of every `Connection` header (RFC 9110 §7.6.1), trimmed, empty ones skipped;
/// a value that is not text names none.
pub(crate) fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|option| !option.is_empty())
}

/// `Connection: close` (RFC 9112 §9.6): the upstream closes after this response.
fn closes_connection(headers: &HeaderMap) -> bool {
    connection_options(headers).any(|option| option.eq_ignore_ascii_case("close"))
}

/// The `Host` of requests that arrive without one (RFC 9110 §7.2: host, and port when it is
/// not the scheme's default).
fn host_header(scheme: &http::uri::Scheme, authority: &http::uri::Authority) -> HeaderValue {
    let default_port = if *scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_string(),
    };
    HeaderValue::from_str(&host).expect("a URI's host and port are valid header value bytes")
}

/// A connection on loan to one response.
struct Lease {
    sender: SendRequest<ProxyBody>,
    pool: Arc<Shared>,
}

/// An upstream response body. Over HTTP/1.1 it holds the connection it came on and gives it
/// back to its thread's pool when read to the end; dropped before that, it drops the
/// connection (which hyper then closes: the rest of the response is never read).
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    /// A body that came over a connection this pool does not manage (HTTP/2).
    pub fn unpooled(inner: Incoming) -> UpstreamBody {
        UpstreamBody { inner, lease: None }
    }

    fn give_back(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.check_in(lease.sender);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            // Trailers are the last frame: a reader may stop polling after them.
            Some(Ok(frame)) if frame.is_trailers() || this.inner.is_end_stream() => this.give_back(),
            Some(Ok(_)) => {}
            None => this.give_back(),
            Some(Err(_)) => this.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
