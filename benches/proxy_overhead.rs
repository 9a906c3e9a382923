//! Question: what does scopegate cost per request, compared with calling the upstream
//! directly, on a public route, with a cached JWT, with a fresh JWT (signature
//! verification), and with a cached introspection answer?
//!
//! Everything runs in this one process on loopback (upstream, development authorization
//! server, proxy, load generator), so absolute numbers depend on the machine; compare the
//! ratios of one run. `cargo bench --bench proxy_overhead` (optionally `-- <seconds>`).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{AUDIENCE, BenchIssuer, LoadResult, TokenSource, load, start_proxy, upstream};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let upstream = upstream().await;
    let bench = BenchIssuer::start(false).await;
    let config = format!(
        r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[log]
level = "warn"
[upstream]
url = "http://{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["{AUDIENCE}"]
token_validation = "auto"
[issuer.introspection]
client_id = "{client_id}"
client_secret_file = "{secret}"
[[route]]
name = "public"
path = "/public"
public = true
[[route]]
name = "read"
path = "/read"
scopes = ["read"]
"#,
        issuer = bench.issuer.issuer(),
        client_id = bench.client_id,
        secret = bench.secret_file.display(),
    );
    let proxy = start_proxy(&config);
    while !proxy.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cached_jwt = bench.read_token();
    // Fresh tokens: each is verified once. Minted up front so signing does not count.
    let fresh: Arc<Vec<String>> = Arc::new((0..20_000).map(|_| bench.read_token()).collect());
    // Not a JWT of the issuer: introspected once (inactive), then answered from the cache.
    let opaque = format!("opaque-{}", std::process::id());

    let direct = format!("http://{upstream}/read");
    let public = format!("http://{}/public", proxy.addr);
    let read = format!("http://{}/read", proxy.addr);
    let none: TokenSource = Arc::new(|_| None);
    let fresh_count = fresh.len() as u64;
    let scenarios: Vec<(&str, String, TokenSource, u16, u64)> = vec![
        ("upstream directly", direct, none.clone(), 200, u64::MAX),
        ("scopegate, public route", public, none.clone(), 200, u64::MAX),
        (
            "scopegate, cached JWT",
            read.clone(),
            Arc::new(move |_| Some(cached_jwt.clone())),
            200,
            u64::MAX,
        ),
        (
            "scopegate, new JWT every request (RS256 verify)",
            read.clone(),
            Arc::new(move |i| fresh.get(i as usize).cloned()),
            200,
            fresh_count,
        ),
        (
            "scopegate, 401 from a cached introspection answer (no upstream)",
            read,
            Arc::new(move |_| Some(opaque.clone())),
            401,
            u64::MAX,
        ),
    ];
    println!("{CONCURRENCY} connections, {seconds} s per scenario, one process on loopback\n");
    println!("| scenario | req/s | vs direct | p50 | p99 | failures |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut baseline = None;
    for (name, url, tokens, expect, max_requests) in scenarios {
        let result: LoadResult = load(url, CONCURRENCY, duration, max_requests, tokens, expect).await;
        let base = *baseline.get_or_insert(result.rate());
        println!(
            "| {name} | {:.0} | {:.2} | {} µs | {} µs | {} |",
            result.rate(),
            result.rate() / base,
            result.p50_us,
            result.p99_us,
            result.failures
        );
    }
    let verifications = proxy.app.metrics.signature_verifications.get();
    println!("\nsignature verifications: {verifications}");
    proxy.shutdown().await;
}
