//! Test fixtures: a real upstream that counts what reaches it, the proxy on 127.0.0.1:0,
//! and a raw HTTP/1.1 client for requests that ordinary clients refuse to send.
#![allow(dead_code, clippy::unwrap_used)]

pub mod builder;
pub mod pki;
pub mod redis_server;
pub mod token_cli;
pub mod weak_rsa;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// What the upstream saw of the last request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// Trailer fields of the request body (`/upload` only).
    pub trailers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// A real HTTP upstream (HTTP/1.1 and h2c) with a request counter. Paths:
/// - `/slow?ms=N` waits N ms before answering;
/// - `/upload` drains the body and answers with its length;
/// - `/download?mib=N` streams N MiB;
/// - `/sse` sends `data: 1`, waits for `release_sse`, then `data: 2`;
/// - `/hop` answers with connection-specific headers;
/// - `/ws` accepts an upgrade and echoes bytes;
/// - anything else answers 200 with the path.
pub struct Upstream {
    pub addr: SocketAddr,
    pub count: Arc<AtomicU64>,
    pub seen: Arc<Mutex<Seen>>,
    pub sse_release: Arc<Notify>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_serving(None).await
    }

    /// The same upstream behind TLS with `config` (HTTP/1.1 and h2 by ALPN); `url()` still
    /// says `http://`, so callers build their `https://` URL from `addr`.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Upstream {
        Upstream::start_serving(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn start_serving(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sse_release = Arc::new(Notify::new());
        let (c, s, r) = (count.clone(), seen.clone(), sse_release.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (c, s, r) = (c.clone(), s.clone(), r.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| upstream_handler(req, c.clone(), s.clone(), r.clone()));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            count,
            seen,
            sse_release,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

async fn upstream_handler(
    mut req: Request<Incoming>,
    count: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
    sse_release: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    count.fetch_add(1, Ordering::SeqCst);
    *seen.lock().unwrap() = Seen {
        method: req.method().to_string(),
        path_and_query: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        trailers: Vec::new(),
    };
    let path = req.uri().path().to_string();
    let response = match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_param(&req, "ms").unwrap_or(1000))).await;
            Response::new(full("slow done"))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0u64;
            while let Some(frame) = body.frame().await {
                match frame.unwrap().into_data() {
                    Ok(data) => total += data.len() as u64,
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            seen.lock().unwrap().trailers = trailers
                                .iter()
                                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                        }
                    }
                }
            }
            Response::new(full(total.to_string()))
        }
        "/download" => {
            let mib = query_param(&req, "mib").unwrap_or(1);
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                for _ in 0..mib * 16 {
                    if tx.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
                        return;
                    }
                }
            });
            Response::new(StreamBody::new(tokio_stream_from(rx)).boxed())
        }
        "/sse" => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n")))).await;
                sse_release.notified().await;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"data: 2\n\n")))).await;
            });
            let mut r = Response::new(StreamBody::new(tokio_stream_from(rx)).boxed());
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        "/hop" => {
            let mut r = Response::new(full("hop"));
            let h = r.headers_mut();
            h.insert("connection", "x-up-secret".parse().unwrap());
            h.insert("x-up-secret", "1".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-auth-subject", "forged-by-upstream".parse().unwrap());
            h.insert("x-kept", "1".parse().unwrap());
            r
        }
        "/ws" => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r
        }
        _ => Response::new(full(format!("upstream saw {path}"))),
    };
    Ok(response)
}

/// Adapts an mpsc receiver into a `Stream` without extra crates.
fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The proxy config used by tests: `{upstream}` and `{issuer}` placeholders are filled in.
pub fn config(template: &str, upstream: &str, issuer: &str) -> scopegate::config::Config {
    let text = template.replace("{upstream}", upstream).replace("{issuer}", issuer);
    scopegate::config::Config::from_toml(&text, "test.toml").unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Starts the proxy on ephemeral ports.
pub async fn start_proxy(config: scopegate::config::Config) -> scopegate::server::Running {
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    scopegate::server::start_with_listeners(config, data, admin)
}

/// Starts the proxy on ephemeral ports and waits until it holds its issuers' keys.
pub async fn start_ready_proxy(config: scopegate::config::Config) -> scopegate::server::Running {
    let proxy = start_proxy(config).await;
    eventually("the proxy has keys", || proxy.app.is_ready()).await;
    proxy
}

/// Sends raw bytes and reads until the server closes the connection (send
/// `Connection: close`), bounded by `timeout`.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `request` and asserts the status, and whether it reached the upstream.
pub async fn expect(
    proxy: &scopegate::server::Running,
    upstream: &Upstream,
    request: &str,
    status: u16,
    forwarded: bool,
) -> String {
    let before = upstream.requests();
    let answer = raw_request(proxy.addr, request.as_bytes()).await;
    assert_eq!(status_of(&answer), status, "{request}\n→ {answer}");
    assert_eq!(upstream.requests() > before, forwarded, "{request}\n→ {answer}");
    answer
}

/// A raw HTTP/1.1 POST with a bearer token and a body of `content_type`.
pub fn post(target: &str, token: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn status_of(raw_response: &str) -> u16 {
    raw_response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Peak resident memory of this process in KiB (Linux), to show streaming stays bounded.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Starts a development authorization server on 127.0.0.1:0.
#[cfg(feature = "dev")]
pub async fn dev_issuer(config: scopegate::dev::DevIssuerConfig) -> scopegate::dev::DevIssuer {
    scopegate::dev::DevIssuer::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), config)
        .await
        .unwrap()
}

/// How long `eventually` waits for a background task before the test fails.
const EVENTUALLY: Duration = Duration::from_secs(15);

/// Polls a condition that a background task will make true, bounded at 15 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + EVENTUALLY;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls an asynchronous check (a metrics scrape, a request) until it yields a value,
/// bounded at 15 s; returns that value.
pub async fn eventually_some<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `WWW-Authenticate` header of a response, or "" (see [`builder::bearer_params`] to
/// read its parameters).
pub fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A confidential client registered for scopegate's introspection calls; its secret lives
/// in a temporary file (removed on drop) for `client_secret_file`.
pub struct IntrospectionClient {
    pub client_id: String,
    pub client_secret: String,
    pub secret_file: std::path::PathBuf,
}

#[cfg(feature = "dev")]
impl IntrospectionClient {
    pub fn register(issuer: &scopegate::dev::DevIssuer, auth_method: &str) -> IntrospectionClient {
        let client = issuer.register_client(scopegate::dev::ClientRegistration {
            grant_types: vec!["client_credentials".into()],
            token_endpoint_auth_method: Some(auth_method.into()),
            scope: Some("read write".into()),
            ..scopegate::dev::ClientRegistration::default()
        });
        let client_secret = client.client_secret.clone().unwrap();
        let secret_file = std::env::temp_dir().join(format!(
            "scopegate-test-secret-{}-{}",
            std::process::id(),
            client.client_id
        ));
        std::fs::write(&secret_file, format!("{client_secret}\n")).unwrap();
        IntrospectionClient {
            client_id: client.client_id,
            client_secret,
            secret_file,
        }
    }
}

impl Drop for IntrospectionClient {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.secret_file);
    }
}

/// The Prometheus text the admin listener serves.
pub async fn scrape_metrics(admin: SocketAddr) -> String {
    client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Access-log events (`scopegate::access`) captured from the proxy running in this test.
/// The capture is the thread's default subscriber, so the test must run on a
/// current-thread runtime (plain `#[tokio::test]`), where the proxy's tasks run too.
#[derive(Clone, Default)]
pub struct AccessLog {
    events: Arc<Mutex<Vec<std::collections::BTreeMap<String, String>>>>,
}

impl AccessLog {
    /// Starts capturing; events are kept while the guard lives.
    pub fn capture() -> (AccessLog, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let log = AccessLog::default();
        let subscriber = tracing_subscriber::registry().with(log.clone());
        // tracing-core asks only the calling thread's subscriber about a new callsite while
        // a single dispatcher is registered: a callsite first reached on another test's
        // thread would then be cached as "never". A second, silent dispatcher that lives
        // for the whole process makes every registration ask all of them.
        static SILENT: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SILENT.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let guard = tracing::subscriber::set_default(subscriber);
        (log, guard)
    }

    /// Every event so far, its fields as text.
    pub fn events(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        self.events.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AccessLog {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut std::collections::BTreeMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_string(), value.to_string());
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_string(), format!("{value:?}"));
            }
        }
        if event.metadata().target() != "scopegate::access" {
            return;
        }
        let mut fields = std::collections::BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(fields);
    }
}
