//! A bounded loopback soak (not run in CI): mixed valid, invalid, expired and opaque-token
//! traffic through scopegate for a while, with a key rotation at one third of the run and an
//! authorization-server restart (both issuers down for `--outage` seconds) at one half.
//!
//! It answers: does scopegate ever let through what it should refuse (wrong allows, counted
//! both by status and by what reached the upstream), does it answer 5xx outside the outage
//! window, and do resident memory and open connections stay flat?
//!
//! ```sh
//! cargo run --release --example soak -- --seconds 600
//! ```
//!
//! Everything listens on 127.0.0.1 in this one process and stops by itself; the exit status
//! is 1 when a wrong allow or an unexpected 5xx was seen.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use scopegate::dev::{AccessTokenRequest, ClientRegistration, DevIssuer, DevIssuerConfig};
use tokio::net::TcpListener;

/// The binary's allocator (`src/main.rs`), so that the memory watched is that of what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const API: &str = "https://api.soak.test";
const WORKERS: usize = 16;

/// What a request should get; its path says so to the upstream, which counts wrong arrivals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ValidJwt,
    ValidOpaque,
    Tampered,
    Expired,
    Garbage,
    WrongScope,
}

const KINDS: [Kind; 6] = [
    Kind::ValidJwt,
    Kind::ValidOpaque,
    Kind::Tampered,
    Kind::Expired,
    Kind::Garbage,
    Kind::WrongScope,
];

impl Kind {
    fn allowed(self) -> bool {
        matches!(self, Kind::ValidJwt | Kind::ValidOpaque)
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    denied: AtomicU64,
    wrong_allows: AtomicU64,
    wrong_denials: AtomicU64,
    unavailable_in_outage: AtomicU64,
    server_errors_outside_outage: AtomicU64,
    client_errors: AtomicU64,
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// An upstream that answers 200 and counts requests that should never have reached it.
async fn upstream(wrong_arrivals: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
    let addr = listener.local_addr().expect("the upstream's address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let wrong = Arc::clone(&wrong_arrivals);
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    if req.uri().path().starts_with("/api/deny/") || req.uri().path().starts_with("/admin/") {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok")))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn config(
    upstream: SocketAddr,
    jwt: &DevIssuer,
    opaque: &DevIssuer,
    client_id: &str,
    secret: &std::path::Path,
) -> String {
    format!(
        r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "http://{upstream}"
[log]
level = "warn"
[[issuer]]
url = "{jwt}"
audiences = ["{API}"]
[[issuer]]
url = "{opaque}"
audiences = ["{API}"]
token_validation = "introspection"
[issuer.introspection]
client_id = "{client_id}"
client_secret_file = "{secret}"
positive_ttl = "10s"
# Every request comes from one loopback address standing in for many clients: the per-client
# budget for never-seen tokens would (rightly) turn most of them away.
client_new_tokens_per_second = 0
[[route]]
name = "api"
path = "/api/**"
scopes = ["read"]
[[route]]
name = "admin"
path = "/admin/**"
scopes = ["admin"]
"#,
        jwt = jwt.issuer(),
        opaque = opaque.issuer(),
        secret = secret.display()
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let seconds = arg("--seconds", 600);
    let outage = Duration::from_secs(arg("--outage", 20));
    let rate = arg("--rate", 400);
    let run = Duration::from_secs(seconds);

    let jwt = Arc::new(
        DevIssuer::start(
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            DevIssuerConfig::default(),
        )
        .await
        .expect("JWT issuer"),
    );
    let opaque = Arc::new(
        DevIssuer::start(
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            DevIssuerConfig {
                opaque_access_tokens: true,
                default_audience: Some(API.into()),
                ..DevIssuerConfig::default()
            },
        )
        .await
        .expect("opaque issuer"),
    );
    let client = opaque.register_client(ClientRegistration {
        grant_types: vec!["client_credentials".into()],
        token_endpoint_auth_method: Some("client_secret_basic".into()),
        scope: Some("read".into()),
        ..ClientRegistration::default()
    });
    let secret = std::env::temp_dir().join(format!("scopegate-soak-{}.secret", std::process::id()));
    std::fs::write(&secret, client.client_secret.clone().unwrap_or_default()).expect("write the secret");
    let wrong_arrivals = Arc::new(AtomicU64::new(0));
    let upstream = upstream(Arc::clone(&wrong_arrivals)).await;
    let text = config(upstream, &jwt, &opaque, &client.client_id, &secret);
    let config = scopegate::config::Config::from_toml(&text, "soak.toml").expect("the soak config compiles");
    let proxy = scopegate::server::start_with_listeners(
        config,
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    );
    let (addr, admin) = (proxy.addr, proxy.admin_addr);
    while !proxy.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let outage_from = run / 2;
    let outage_until = outage_from + outage;
    // Answers may lag an outage's end by a retry interval: 503s are expected until then.
    let settle = Duration::from_secs(10);
    let tally = Arc::new(Tally::default());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(WORKERS)
        .build()
        .expect("a client");
    let per_worker_gap = Duration::from_micros(1_000_000 * WORKERS as u64 / rate.max(1));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (jwt, opaque, tally, http) = (Arc::clone(&jwt), Arc::clone(&opaque), Arc::clone(&tally), http.clone());
        workers.push(tokio::spawn(async move {
            let mut n = worker as u64;
            while started.elapsed() < run {
                n += WORKERS as u64;
                let kind = KINDS[(n % KINDS.len() as u64) as usize];
                let token = match kind {
                    Kind::ValidJwt => jwt.mint_access_token(&AccessTokenRequest::new("read", &[API])),
                    Kind::WrongScope => jwt.mint_access_token(&AccessTokenRequest::new("read", &[API])),
                    Kind::ValidOpaque => opaque.mint_access_token(&AccessTokenRequest::new("read", &[API])),
                    Kind::Expired => jwt.mint_access_token(&AccessTokenRequest {
                        expires_in_secs: -60,
                        ..AccessTokenRequest::new("read", &[API])
                    }),
                    Kind::Tampered => {
                        let mut t = jwt.mint_access_token(&AccessTokenRequest::new("read", &[API]));
                        t.replace_range(t.len() - 6.., "AAAAAA");
                        t
                    }
                    Kind::Garbage => format!("garbage-{n}"),
                };
                let path = match kind {
                    Kind::WrongScope => format!("/admin/{n}"),
                    k if k.allowed() => format!("/api/allow/{n}"),
                    _ => format!("/api/deny/{n}"),
                };
                let at = started.elapsed();
                let in_outage = at >= outage_from && at < outage_until + settle;
                tally.sent.fetch_add(1, Ordering::Relaxed);
                match http
                    .get(format!("http://{addr}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match (status, kind.allowed()) {
                            (200, true) => tally.ok.fetch_add(1, Ordering::Relaxed),
                            (200..=299, false) => tally.wrong_allows.fetch_add(1, Ordering::Relaxed),
                            (401 | 403, false) => tally.denied.fetch_add(1, Ordering::Relaxed),
                            (503, _) if in_outage => tally.unavailable_in_outage.fetch_add(1, Ordering::Relaxed),
                            (500..=599, _) => {
                                let reason = r.text().await.unwrap_or_default();
                                eprintln!("[{:>4}s] {status} for {kind:?}: {reason}", at.as_secs());
                                tally.server_errors_outside_outage.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => tally.wrong_denials.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Err(_) => {
                        tally.client_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(per_worker_gap).await;
            }
        }));
    }

    let mut rotated = false;
    let mut down = false;
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < run {
        let at = started.elapsed();
        if !rotated && at >= run / 3 {
            rotated = true;
            jwt.rotate_keys();
            println!("[{:>4}s] rotated the JWT issuer's signing key", at.as_secs());
        }
        if !down && at >= outage_from && at < outage_until {
            down = true;
            jwt.stop().await;
            opaque.stop().await;
            println!("[{:>4}s] both authorization servers stopped", at.as_secs());
        }
        if down && at >= outage_until {
            down = false;
            jwt.resume().await.expect("resume the JWT issuer");
            opaque.resume().await.expect("resume the opaque issuer");
            println!("[{:>4}s] both authorization servers back", at.as_secs());
        }
        if at >= next_sample {
            next_sample += Duration::from_secs(30).min(run / 10);
            let metrics = http.get(format!("http://{admin}/metrics")).send().await.ok();
            let text = match metrics {
                Some(r) => r.text().await.unwrap_or_default(),
                None => String::new(),
            };
            let open = text
                .lines()
                .find(|l| l.starts_with("scopegate_open_connections "))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_string();
            let sample = (at.as_secs(), rss_kib(), open, tally.sent.load(Ordering::Relaxed));
            println!(
                "[{:>4}s] rss {} KiB, open connections {}, requests {}",
                sample.0, sample.1, sample.2, sample.3
            );
            samples.push(sample);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in workers {
        let _ = w.await;
    }
    // The client's pool idles out; what is left open is what scopegate still holds.
    drop(http);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = std::fs::remove_file(&secret);

    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let wrong = get(&tally.wrong_allows) + get(&wrong_arrivals);
    let server_errors = get(&tally.server_errors_outside_outage);
    println!("\nsoak: {} s, {} requests", seconds, get(&tally.sent));
    println!("  allowed as expected        {}", get(&tally.ok));
    println!("  denied as expected         {}", get(&tally.denied));
    println!(
        "  wrong allows               {} (by status {}, reached the upstream {})",
        wrong,
        get(&tally.wrong_allows),
        get(&wrong_arrivals)
    );
    println!("  wrong denials              {}", get(&tally.wrong_denials));
    println!("  503 in the outage window   {}", get(&tally.unavailable_in_outage));
    println!("  5xx outside it             {server_errors}");
    println!("  client-side errors         {}", get(&tally.client_errors));
    if let (Some(first), Some(last)) = (samples.get(1), samples.last()) {
        println!("  rss {} KiB at {}s → {} KiB at {}s", first.1, first.0, last.1, last.0);
    }
    proxy.shutdown().await;
    if wrong > 0 || server_errors > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
