//! Bounded HTTP/2 and slow readers, over raw TCP and raw h2c frames: the per-connection
//! stream limit, the global cap on upstream requests, and the response-progress timeout
//! that releases the upstream when a client stops reading (but not when an SSE stream is
//! merely quiet). The upstream here reports what it saw: requests, the most in flight at
//! once, and every response body the proxy dropped.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{client, config, eventually, scrape_metrics, start_proxy};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
{listener}
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
{upstream_limits}
[[route]]
name = "public"
path = "/**"
public = true
"#;

// An issuer nobody listens on: these routes are public.
const NO_ISSUER: &str = "http://127.0.0.1:9";

/// What the upstream saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
    /// Response bodies whose reader went away before the end.
    dropped: AtomicU64,
    release: Notify,
}

/// An upstream whose responses report their own fate:
/// - `/big` streams 64 KiB chunks without end;
/// - `/hold` answers once [`Seen::release`] is notified;
/// - `/sse` sends one event, then another once released.
async fn upstream() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |req| respond(req, Arc::clone(&seen)));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

/// Counts a response in flight until its body is done or dropped.
struct InFlight(Arc<Seen>);

impl InFlight {
    fn new(seen: Arc<Seen>) -> InFlight {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(seen)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn respond(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let in_flight = InFlight::new(Arc::clone(&seen));
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    match req.uri().path() {
        "/hold" => {
            seen.release.notified().await;
            drop(in_flight);
            return Ok(Response::new(http_body_util::Full::new(Bytes::from("held")).boxed()));
        }
        "/sse" => {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n")))).await;
                seen.release.notified().await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"data: 2\n\n"))))
                    .await
                    .is_err()
                {
                    seen.dropped.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        _ => {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                while tx.send(Ok(Frame::data(chunk.clone()))).await.is_ok() {}
                seen.dropped.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
    let mut rx = rx;
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Ok(Response::new(body.boxed()))
}

async fn proxy(listener: &str, upstream_limits: &str) -> (scopegate::server::Running, Arc<Seen>) {
    let (url, seen) = upstream().await;
    let template = CONFIG
        .replace("{listener}", listener)
        .replace("{upstream_limits}", upstream_limits);
    (start_proxy(config(&template, &url, NO_ISSUER)).await, seen)
}

// --- A raw h2c client: frames written by hand, so the test controls flow control. ---

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A GET request head in HPACK without Huffman coding or indexing (RFC 7541 §6.2.2):
/// `:method GET` and `:scheme http` from the static table, `:path` and `:authority` as
/// literals with indexed names.
fn get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend(path.as_bytes());
    block.extend([0x01, 9]);
    block.extend(b"localhost");
    // END_STREAM | END_HEADERS
    frame(HEADERS, 0x5, stream, &block)
}

/// An h2c connection that grants no flow-control credit to any stream (initial window 0):
/// the server may send response heads, but not one byte of any body.
struct H2c {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl H2c {
    async fn open(addr: SocketAddr) -> H2c {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut hello = PREFACE.to_vec();
        let mut window = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
        window.extend(0u32.to_be_bytes());
        hello.extend(frame(SETTINGS, 0, 0, &window));
        stream.write_all(&hello).await.unwrap();
        H2c {
            stream,
            buffered: Vec::new(),
        }
    }

    /// The next frame as (type, flags, stream, payload); `None` when the server closed the
    /// connection or sent nothing for `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buffered.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buffered[0], self.buffered[1], self.buffered[2]]) as usize;
                if self.buffered.len() >= 9 + len {
                    let head: Vec<u8> = self.buffered.drain(..9).collect();
                    let payload: Vec<u8> = self.buffered.drain(..len).collect();
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    return Some((head[3], head[4], stream, payload));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buffered.extend(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// The server's SETTINGS value for `id`, from its first SETTINGS frame (which is ACKed).
    async fn server_setting(&mut self, id: u16) -> Option<u32> {
        while let Some((kind, flags, _, payload)) = self.next(Duration::from_secs(5)).await {
            if kind == SETTINGS && flags & 0x1 == 0 {
                self.stream.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap();
                return payload
                    .chunks(6)
                    .find(|s| u16::from_be_bytes([s[0], s[1]]) == id)
                    .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
            }
        }
        panic!("no SETTINGS frame from the server");
    }

    /// Opens `count` streams at once, each a GET of `path`.
    async fn open_streams(&mut self, count: u32, path: &str) {
        let frames: Vec<u8> = (0..count).flat_map(|i| get(2 * i + 1, path)).collect();
        self.stream.write_all(&frames).await.unwrap();
    }

    /// Streams the server refused (RST_STREAM with REFUSED_STREAM) within `wait`.
    async fn refused_streams(&mut self, wait: Duration) -> usize {
        let mut refused = 0;
        let deadline = tokio::time::Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
            match self.next(left).await {
                Some((RST_STREAM, _, _, code)) if code[..] == REFUSED_STREAM.to_be_bytes() => refused += 1,
                Some(_) => {}
                None => break,
            }
        }
        refused
    }
}

/// Waits until `count` reads `expected`, then checks that it stays there for a while.
async fn settles_at(what: &str, count: &AtomicU64, expected: u64) {
    eventually(what, || count.load(Ordering::SeqCst) >= expected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count.load(Ordering::SeqCst), expected, "{what}");
}

#[tokio::test]
async fn one_h2c_connection_holds_at_most_64_upstream_requests_by_default() {
    let (proxy, seen) = proxy("", "").await;
    let mut h2 = H2c::open(proxy.addr).await;
    assert_eq!(
        h2.server_setting(SETTINGS_MAX_CONCURRENT_STREAMS).await,
        Some(64),
        "the default stream limit is advertised"
    );
    // The attack: 100 streams for a large response, none of which may send a byte.
    h2.open_streams(100, "/big").await;
    assert_eq!(
        h2.refused_streams(Duration::from_secs(2)).await,
        36,
        "streams past the limit are refused"
    );
    settles_at("upstream requests", &seen.requests, 64).await;
    assert_eq!(seen.peak.load(Ordering::SeqCst), 64);
}

#[tokio::test]
async fn the_stream_limit_is_configurable() {
    let (proxy, seen) = proxy("http2_max_concurrent_streams = 5", "").await;
    let mut h2 = H2c::open(proxy.addr).await;
    assert_eq!(h2.server_setting(SETTINGS_MAX_CONCURRENT_STREAMS).await, Some(5));
    h2.open_streams(8, "/big").await;
    assert_eq!(h2.refused_streams(Duration::from_secs(1)).await, 3);
    settles_at("upstream requests", &seen.requests, 5).await;
}

#[tokio::test]
async fn streams_without_flow_control_credit_release_the_upstream() {
    let (proxy, seen) = proxy("response_progress_timeout = \"1s\"", "").await;
    let mut h2 = H2c::open(proxy.addr).await;
    h2.server_setting(SETTINGS_MAX_CONCURRENT_STREAMS).await;
    h2.open_streams(10, "/big").await;
    settles_at("upstream requests", &seen.requests, 10).await;
    // The upstream sees every response body dropped once the timeout has passed.
    eventually("the upstream sees its 10 responses dropped", || {
        seen.dropped.load(Ordering::SeqCst) == 10
    })
    .await;
    assert_eq!(seen.in_flight.load(Ordering::SeqCst), 0);
    // And the client's connection is closed.
    while h2.next(Duration::from_secs(5)).await.is_some() {}
}

#[tokio::test]
async fn an_http1_client_that_stops_reading_releases_the_upstream() {
    let (proxy, seen) = proxy("response_progress_timeout = \"1s\"", "").await;
    let mut stalled = TcpStream::connect(proxy.addr).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    settles_at("upstream requests", &seen.requests, 1).await;
    let started = std::time::Instant::now();
    eventually("the upstream sees its response dropped", || {
        seen.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.in_flight.load(Ordering::SeqCst), 0);
    drop(stalled);
}

#[tokio::test]
async fn a_quiet_sse_stream_that_is_read_stays_open() {
    let (proxy, seen) = proxy("response_progress_timeout = \"500ms\"\nidle_timeout = \"1s\"", "").await;
    let mut response = client().get(format!("http://{}/sse", proxy.addr)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.chunk().await.unwrap().unwrap(), "data: 1\n\n");
    // Quiet for several times the progress (and idle) timeout: the client reads, nothing waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    seen.release.notify_one();
    assert_eq!(response.chunk().await.unwrap().unwrap(), "data: 2\n\n");
    assert_eq!(seen.dropped.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn past_the_upstream_cap_requests_are_503_and_never_reach_it() {
    let (proxy, seen) = proxy("", "max_concurrent_requests = 2").await;
    let url = format!("http://{}/hold", proxy.addr);
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(client().get(&url).send())).collect();
    settles_at("held upstream requests", &seen.in_flight, 2).await;

    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        client().get(format!("http://{}/x", proxy.addr)).send(),
    )
    .await
    .expect("answered at once, not queued")
    .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        2,
        "the refused request never reached the upstream"
    );
    let metrics = scrape_metrics(proxy.admin_addr).await;
    assert!(
        metrics.contains("scopegate_upstream_errors_total{kind=\"saturated\"} 1"),
        "{metrics}"
    );

    // Slots come back when the responses finish.
    seen.release.notify_waiters();
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().text().await.unwrap(), "held");
    }
    let after = client().get(format!("http://{}/sse", proxy.addr)).send().await.unwrap();
    assert_eq!(after.status(), 200);
}
