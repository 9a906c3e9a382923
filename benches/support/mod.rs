//! Shared pieces of the benchmarks: a minimal upstream, a load loop, percentiles.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An upstream that answers every request with a small body.
pub async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Which bearer token request `i` carries, if any.
pub type TokenSource = Arc<dyn Fn(u64) -> Option<String> + Send + Sync>;

pub struct LoadResult {
    pub requests: u64,
    pub failures: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends GETs from `concurrency` keep-alive connections for `duration` or `max_requests`,
/// whichever ends first; `token_for(i)` gives the bearer token of request `i` (or none).
pub async fn load(
    url: String,
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
    token_for: TokenSource,
    expect: u16,
) -> LoadResult {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let counter = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, counter, failures, token_for) = (
            client.clone(),
            url.clone(),
            counter.clone(),
            failures.clone(),
            token_for.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            while started.elapsed() < duration {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests {
                    break;
                }
                let mut request = Request::get(&url);
                if let Some(token) = token_for(i) {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let sent = Instant::now();
                match client.request(request.body(Empty::new()).unwrap()).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.into_body().collect().await;
                        if status != expect {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.push(sent.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    LoadResult {
        requests: all.len() as u64,
        failures: failures.load(Ordering::Relaxed),
        elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// Resident and peak resident memory of this process, in MiB (Linux).
pub fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The audience every benchmark token is minted for.
pub const AUDIENCE: &str = "https://api.bench";

/// A development issuer for [`AUDIENCE`] with a confidential client registered for
/// scopegate's introspection calls; the client's secret sits in a temporary file.
pub struct BenchIssuer {
    pub issuer: scopegate::dev::DevIssuer,
    pub client_id: String,
    pub secret_file: std::path::PathBuf,
}

impl BenchIssuer {
    pub async fn start(opaque_access_tokens: bool) -> BenchIssuer {
        let issuer = scopegate::dev::DevIssuer::start(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            scopegate::dev::DevIssuerConfig {
                opaque_access_tokens,
                default_audience: Some(AUDIENCE.into()),
                access_token_ttl: Duration::from_secs(3600),
                ..scopegate::dev::DevIssuerConfig::default()
            },
        )
        .await
        .unwrap();
        let client = issuer.register_client(scopegate::dev::ClientRegistration {
            grant_types: vec!["client_credentials".into()],
            ..scopegate::dev::ClientRegistration::default()
        });
        let secret_file = std::env::temp_dir().join(format!("scopegate-bench-{}", std::process::id()));
        std::fs::write(&secret_file, client.client_secret.clone().unwrap()).unwrap();
        BenchIssuer {
            issuer,
            client_id: client.client_id,
            secret_file,
        }
    }

    /// A read-scoped access token for [`AUDIENCE`].
    pub fn read_token(&self) -> String {
        self.issuer
            .mint_access_token(&scopegate::dev::AccessTokenRequest::new("read", &[AUDIENCE]))
    }
}

impl Drop for BenchIssuer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.secret_file);
    }
}

/// Starts scopegate from config text on ephemeral ports.
pub fn start_proxy(config: &str) -> scopegate::server::Running {
    let config = scopegate::config::Config::from_toml(config, "bench").unwrap();
    let data = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    data.set_nonblocking(true).unwrap();
    admin.set_nonblocking(true).unwrap();
    scopegate::server::start_with_listeners(
        config,
        TcpListener::from_std(data).unwrap(),
        TcpListener::from_std(admin).unwrap(),
    )
}
