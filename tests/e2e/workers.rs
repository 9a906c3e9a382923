//! The data plane on worker threads of its own (`listener.worker_threads`): requests are
//! authorized and forwarded from every worker, a reload reaches all of them, the connection
//! cap is one cap over all of them, and shutdown drains in-flight requests and ends the
//! threads. The only test in this binary that starts worker threads (it counts them).
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;
use scopegate::config::Config;
use scopegate::dev::{AccessTokenRequest, DevIssuerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
worker_threads = 2
max_connections = 2
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
[[route]]
name = "slow"
path = "/slow"
public = true
"#;

const EXTRA_ROUTE: &str = r#"
[[route]]
name = "extra"
path = "/extra"
public = true
"#;

/// Threads of this process whose name marks them as data-plane workers.
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with("scopegate-w"))
                .count()
        })
        .unwrap_or(0)
}

/// Sends one request on a connection of its own and returns the status.
async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: api\r\n{auth}Connection: close\r\n\r\n");
    status_of(&raw_request(addr, request.as_bytes()).await)
}

#[tokio::test]
async fn worker_threads_share_routes_reloads_the_connection_cap_and_drain() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let text = CONFIG
        .replace("{upstream}", &upstream.url())
        .replace("{issuer}", issuer.issuer());
    let proxy = start_proxy(Config::from_toml(&text, "workers").unwrap()).await;
    eventually("keys loaded", || proxy.app.is_ready()).await;
    if cfg!(target_os = "linux") {
        assert_eq!(worker_threads(), 2, "two data-plane threads");
    }
    let addr = proxy.addr;
    let token = issuer.mint_access_token(&AccessTokenRequest::new("read", &["https://api.test"]));

    // Many connections (each its own accept, so both workers take some), two at a time
    // under the cap: all authorized and forwarded, the unauthenticated ones refused.
    for _ in 0..20 {
        let (with, without) = tokio::join!(get(addr, "/read/x", Some(&token)), get(addr, "/read/x", None));
        assert_eq!((with, without), (200, 401));
    }
    assert_eq!(
        upstream.requests(),
        20,
        "only the authorized requests reached the upstream"
    );

    // A reload is seen by every worker.
    assert_eq!(get(addr, "/extra", None).await, 404);
    let report = proxy
        .app
        .apply(Config::from_toml(&format!("{text}{EXTRA_ROUTE}"), "workers").unwrap());
    assert!(report.changed && report.restart_required.is_empty());
    for _ in 0..10 {
        assert_eq!(get(addr, "/extra", None).await, 200);
    }

    // One cap over all workers: two idle connections take both slots, so a third is not
    // served (with a cap per worker it would be) until one of them goes.
    let idle: Vec<TcpStream> = vec![
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    eventually("both idle connections accepted", || {
        proxy.app.metrics.open_connections.get() == 2
    })
    .await;
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET /extra HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err() && answer.is_empty(), "served past the cap: {answer:?}");
    drop(idle);
    tokio::time::timeout(Duration::from_secs(5), waiting.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 200);

    // Shutdown drains a request in flight on a worker, then the workers end.
    let slow = tokio::spawn(async move { client().get(format!("http://{addr}/slow?ms=300")).send().await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.app.metrics.in_flight.get() == 0 {
        assert!(Instant::now() < deadline, "request never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let shutdown = tokio::spawn(proxy.shutdown());
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    if cfg!(target_os = "linux") {
        // Shutdown joins the worker threads; the kernel may list a joined thread in /proc
        // for a moment longer.
        eventually("worker threads ended", || worker_threads() == 0).await;
    }
}

#[test]
fn worker_threads_setting_is_checked_and_counted() {
    let text = |threads: &str| {
        format!(
            "[listener]\naddress = \"127.0.0.1:0\"\nworker_threads = {threads}\n[upstream]\nurl = \"http://127.0.0.1:1\"\n"
        )
    };
    for bad in ["0", "100000"] {
        let error = Config::from_toml(&text(bad), "workers").unwrap_err().to_string();
        assert!(error.contains("listener.worker_threads"), "{error}");
    }
    let config = Config::from_toml(&text("3"), "workers").unwrap();
    assert_eq!(config.listener.worker_threads, Some(3));
    assert_eq!(scopegate::server::worker_count(Some(3)), 3);
    assert!(scopegate::server::worker_count(None) >= 1);
}
