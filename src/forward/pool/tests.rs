//! The pool's bookkeeping over in-memory connections: what checkout takes, what check-in
//! keeps, and what the reaper closes. End-to-end behaviour over real sockets (reuse, the
//! retry of an unsent request, TLS, upgrades) is in `tests/e2e/upstream_pool.rs`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::body::full_body;

fn config(url: &str, max_idle: usize, idle_timeout: Duration) -> UpstreamConfig {
    let url: Uri = url.parse().unwrap();
    UpstreamConfig {
        scheme: url.scheme().unwrap().clone(),
        authority: url.authority().unwrap().clone(),
        connect_timeout: Duration::from_secs(1),
        response_header_timeout: Duration::from_secs(1),
        pool_idle_timeout: idle_timeout,
        pool_max_idle_per_host: max_idle,
        http2_prior_knowledge: false,
        max_concurrent_requests: 16,
        ca_file: None,
        ca: None,
    }
}

fn pool(max_idle: usize, idle_timeout: Duration) -> Arc<Shared> {
    let config = config("http://127.0.0.1:9", max_idle, idle_timeout);
    Http1Pool::new(&config, crate::tls::client::upstream_tls_config(None)).shared
}

/// An HTTP/1.1 connection over an in-memory pipe, ready for a request: the sender, the
/// upstream's end of the pipe, and the connection's task.
async fn connection() -> (SendRequest<ProxyBody>, DuplexStream, JoinHandle<()>) {
    let (client, upstream) = tokio::io::duplex(4096);
    let (mut sender, connection) = http1::handshake(TokioIo::new(client)).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.ready().await.unwrap();
    (sender, upstream, task)
}

/// Sends a request on `sender` and returns once `upstream` has received its first bytes.
async fn request_reaches(mut sender: SendRequest<ProxyBody>, upstream: &mut DuplexStream) {
    let request = Request::get("/probe").header("host", "x").body(full_body("")).unwrap();
    tokio::spawn(async move {
        let _ = sender.send_request(request).await;
    });
    let mut buf = [0u8; 64];
    let n = upstream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"GET /probe HTTP/1.1"), "{:?}", &buf[..n]);
}

/// Resolves once the peer has closed `upstream`'s pipe.
async fn closed(upstream: &mut DuplexStream) {
    let mut buf = [0u8; 64];
    assert_eq!(upstream.read(&mut buf).await.unwrap(), 0);
}

fn idle_count(pool: &Shared) -> usize {
    pool.idle.get().map_or(0, |stack| stack.connections.borrow().len())
}

#[tokio::test]
async fn checkout_takes_the_most_recently_returned_connection() {
    let pool = pool(4, Duration::from_secs(60));
    let (first, _first_upstream, _) = connection().await;
    let (second, mut second_upstream, _) = connection().await;
    Arc::clone(&pool).check_in(first);
    Arc::clone(&pool).check_in(second);
    assert_eq!(idle_count(&pool), 2);
    let taken = pool.checkout().unwrap();
    request_reaches(taken, &mut second_upstream).await;
    assert_eq!(idle_count(&pool), 1);
}

#[tokio::test]
async fn checkout_drops_connections_the_upstream_closed() {
    let pool = pool(4, Duration::from_secs(60));
    let (first, mut first_upstream, _) = connection().await;
    let (second, second_upstream, second_task) = connection().await;
    Arc::clone(&pool).check_in(first);
    Arc::clone(&pool).check_in(second);
    drop(second_upstream);
    second_task.await.unwrap();
    let taken = pool.checkout().unwrap();
    assert!(pool.checkout().is_none(), "the closed connection was dropped, not kept");
    request_reaches(taken, &mut first_upstream).await;
}

#[tokio::test(start_paused = true)]
async fn connections_idle_longer_than_the_timeout_are_not_used() {
    let pool = pool(4, Duration::from_secs(60));
    let (first, _first_upstream, _) = connection().await;
    let (second, _second_upstream, _) = connection().await;
    Arc::clone(&pool).check_in(first);
    Arc::clone(&pool).check_in(second);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(pool.checkout().is_none());
    assert_eq!(idle_count(&pool), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_after_the_timeout_without_traffic() {
    let pool = pool(4, Duration::from_secs(60));
    let (first, mut first_upstream, _) = connection().await;
    Arc::clone(&pool).check_in(first);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (second, mut second_upstream, _) = connection().await;
    Arc::clone(&pool).check_in(second);
    // The clock moves on by itself while nothing else can run: the reaper wakes at each
    // connection's deadline and drops it, and hyper closes it.
    closed(&mut first_upstream).await;
    assert_eq!(idle_count(&pool), 1);
    closed(&mut second_upstream).await;
    assert_eq!(idle_count(&pool), 0);
    tokio::task::yield_now().await;
    assert!(
        !pool.idle.get().unwrap().reaping.get(),
        "the reaper ends with the stack empty"
    );
}

#[tokio::test]
async fn a_full_pool_closes_the_connection_returned() {
    let pool = pool(1, Duration::from_secs(60));
    let (first, mut first_upstream, _) = connection().await;
    let (second, mut second_upstream, _) = connection().await;
    Arc::clone(&pool).check_in(first);
    Arc::clone(&pool).check_in(second);
    assert_eq!(idle_count(&pool), 1);
    closed(&mut second_upstream).await;
    request_reaches(pool.checkout().unwrap(), &mut first_upstream).await;
}

#[tokio::test]
async fn a_connection_busy_with_a_request_is_not_kept() {
    let pool = pool(4, Duration::from_secs(60));
    let (mut busy, _upstream, _) = connection().await;
    let request = Request::get("/").header("host", "x").body(full_body("")).unwrap();
    let _in_flight = busy.try_send_request(request);
    Arc::clone(&pool).check_in(busy);
    assert_eq!(idle_count(&pool), 0);
}

#[tokio::test]
async fn no_idle_connections_are_kept_when_the_limit_is_zero() {
    let pool = pool(0, Duration::from_secs(60));
    let (sender, _upstream, _) = connection().await;
    Arc::clone(&pool).check_in(sender);
    assert_eq!(idle_count(&pool), 0);
}

#[test]
fn requests_go_in_origin_form_with_a_host() {
    let pool = pool(4, Duration::from_secs(60));
    let mut absolute = Request::get("http://127.0.0.1:9/a/b?c=d").body(full_body("")).unwrap();
    pool.prepare(&mut absolute);
    assert_eq!(absolute.uri(), "/a/b?c=d");
    assert_eq!(absolute.headers()["host"], "127.0.0.1:9");

    let mut bare = Request::get("http://127.0.0.1:9").body(full_body("")).unwrap();
    pool.prepare(&mut bare);
    assert_eq!(bare.uri(), "/");

    let mut hosted = Request::get("/x")
        .header("host", "api.test")
        .body(full_body(""))
        .unwrap();
    pool.prepare(&mut hosted);
    assert_eq!(hosted.uri(), "/x");
    assert_eq!(hosted.headers()["host"], "api.test", "a request's own Host is kept");
}

#[test]
fn the_default_host_omits_only_the_schemes_default_port() {
    let host = |url: &str| {
        let config = config(url, 1, Duration::from_secs(1));
        host_header(&config.scheme, &config.authority)
    };
    assert_eq!(host("http://app:80"), "app");
    assert_eq!(host("http://app:443"), "app:443");
    assert_eq!(host("https://app:443"), "app");
    assert_eq!(host("https://app"), "app");
    assert_eq!(host("http://[::1]:3000"), "[::1]:3000");
    assert_eq!(host("http://user@app:8080"), "app:8080");
}

#[test]
fn connection_close_in_any_form_ends_reuse() {
    let headers = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_str(value).unwrap());
        headers
    };
    assert!(closes_connection(&headers("close")));
    assert!(closes_connection(&headers("Upgrade, Close")));
    assert!(!closes_connection(&headers("keep-alive")));
    assert!(!closes_connection(&HeaderMap::new()));
}
