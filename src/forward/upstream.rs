//! The client to the one upstream: HTTP/1.1 through scopegate's own per-thread pool
//! ([`super::pool`]), HTTP/2 with prior knowledge through hyper-util's client, which
//! multiplexes requests as streams of one connection.

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thread_local::ThreadLocal;

use super::pool::{Http1Pool, PoolError, UpstreamBody};
use crate::body::ProxyBody;
use crate::config::UpstreamConfig;

/// Why the upstream did not answer (each the upstream's failure, not the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Refused or unreachable (502).
    Unreachable,
    /// No response head within `upstream.response_header_timeout` (504).
    Timeout,
    /// Reset or malformed exchange, or a protocol switch nobody asked for (502).
    Failed,
    /// Not sent: `upstream.max_concurrent_requests` requests were in flight (503).
    Saturated,
}

impl UpstreamError {
    /// Stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamError::Unreachable => "upstream_unreachable",
            UpstreamError::Timeout => "upstream_timeout",
            UpstreamError::Failed => "upstream_failed",
            UpstreamError::Saturated => "upstream_saturated",
        }
    }

    /// The `kind` label of `scopegate_upstream_errors_total`.
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamError::Unreachable => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Failed => "protocol",
            UpstreamError::Saturated => "saturated",
        }
    }
}

impl From<PoolError> for UpstreamError {
    fn from(error: PoolError) -> UpstreamError {
        match error {
            PoolError::Connect => UpstreamError::Unreachable,
            PoolError::Exchange => UpstreamError::Failed,
        }
    }
}

/// The client to the one upstream, over plain TCP or TLS as `upstream.url` says. Each
/// thread that sends has connections of its own: a connection's task runs on the runtime
/// that opened it, so with one single-threaded runtime per worker a request, its upstream
/// connection and the response stay on one thread (`pool_max_idle_per_host` applies per
/// thread).
#[derive(Clone)]
pub struct UpstreamClient {
    transport: Transport,
    response_header_timeout: std::time::Duration,
}

#[derive(Clone)]
enum Transport {
    Http1(Http1Pool),
    Http2(Arc<Http2Clients>),
}

/// hyper-util's client per thread, HTTP/2 only.
struct Http2Clients {
    clients: ThreadLocal<Client<HttpsConnector<HttpConnector>, ProxyBody>>,
    config: UpstreamConfig,
    tls: rustls::ClientConfig,
}

impl UpstreamClient {
    pub fn new(config: &UpstreamConfig) -> UpstreamClient {
        let tls = crate::tls::client::upstream_tls_config(config.ca.as_ref());
        let transport = if config.http2_prior_knowledge {
            Transport::Http2(Arc::new(Http2Clients {
                clients: ThreadLocal::new(),
                config: config.clone(),
                tls,
            }))
        } else {
            Transport::Http1(Http1Pool::new(config, tls))
        };
        UpstreamClient {
            transport,
            response_header_timeout: config.response_header_timeout,
        }
    }

    /// Sends the request (origin form, as [`super::rewrite_request`] makes it, or absolute
    /// form) and waits for the response head, bounded by `upstream.response_header_timeout`
    /// (connecting included).
    pub async fn send(&self, request: Request<ProxyBody>) -> Result<Response<UpstreamBody>, UpstreamError> {
        let exchange = async {
            match &self.transport {
                Transport::Http1(pool) => Ok(pool.send(request).await?),
                Transport::Http2(clients) => clients.send(request).await,
            }
        };
        tokio::time::timeout(self.response_header_timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }
}

impl Http2Clients {
    async fn send(&self, mut request: Request<ProxyBody>) -> Result<Response<UpstreamBody>, UpstreamError> {
        // The `:scheme` and `:authority` of the stream are the upstream's.
        let uri = std::mem::take(request.uri_mut());
        *request.uri_mut() = absolute(uri, &self.config.scheme, &self.config.authority)?;
        match self.client().request(request).await {
            Err(e) if e.is_connect() => Err(UpstreamError::Unreachable),
            Err(_) => Err(UpstreamError::Failed),
            Ok(response) => Ok(response.map(UpstreamBody::unpooled)),
        }
    }

    fn client(&self) -> &Client<HttpsConnector<HttpConnector>, ProxyBody> {
        self.clients.get_or(|| {
            let config = &self.config;
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(config.connect_timeout));
            connector.set_nodelay(true);
            // The TLS layer below takes https:// URLs; it refuses nothing else.
            connector.enforce_http(false);
            // ALPN offers h2 only, as prior knowledge does over plain TCP.
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(self.tls.clone())
                .https_or_http()
                .enable_http2()
                .wrap_connector(connector);
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(config.pool_idle_timeout)
                .pool_max_idle_per_host(config.pool_max_idle_per_host)
                .http2_only(true)
                .build(connector)
        })
    }
}

/// `uri`'s path and query under the upstream's scheme and authority.
fn absolute(uri: Uri, scheme: &Scheme, authority: &Authority) -> Result<Uri, UpstreamError> {
    let mut parts = uri.into_parts();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).map_err(|_| UpstreamError::Failed)
}
