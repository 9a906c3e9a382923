//! Question: do a million distinct random bearer tokens keep the introspection cache at its
//! bound and memory flat, and does a valid token stay fast meanwhile?
//!
//! One process on loopback: the development authorization server (opaque tokens), a counting
//! upstream, scopegate in introspection mode with `introspection_cache_max_entries = 10000`.
//! A flood of unique random tokens (each costs one introspection call, answered inactive)
//! runs beside a probe that sends one valid token in a loop.
//! `cargo bench --bench introspection_flood` (optionally `-- <token count>`, default 1000000).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scopegate::dev::Endpoint;
use support::{AUDIENCE, BenchIssuer, load, memory_mib, start_proxy, upstream};

const CACHE_BOUND: u64 = 10_000;

#[tokio::main]
async fn main() {
    let total: u64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(1_000_000);
    let upstream = upstream().await;
    let bench = BenchIssuer::start(true).await;
    let issuer = &bench.issuer;
    let config = format!(
        r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[log]
level = "error"
[upstream]
url = "http://{upstream}"
[token]
introspection_cache_max_entries = {CACHE_BOUND}
[[issuer]]
url = "{issuer}"
audiences = ["{AUDIENCE}"]
token_validation = "introspection"
[issuer.introspection]
client_id = "{client_id}"
client_secret_file = "{secret}"
negative_ttl = "1h"
max_concurrent = 32
[[route]]
name = "read"
path = "/read"
scopes = ["read"]
"#,
        issuer = issuer.issuer(),
        client_id = bench.client_id,
        secret = bench.secret_file.display(),
    );
    let proxy = start_proxy(&config);
    let valid = bench.read_token();
    let url = format!("http://{}/read", proxy.addr);
    let (rss_before, _) = memory_mib();

    // The probe: one valid token, sequentially, for as long as the flood runs.
    let flooding = Arc::new(AtomicBool::new(true));
    let probe = {
        let (url, valid, flooding) = (url.clone(), valid.clone(), flooding.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let (mut worst, mut count, mut failures) = (Duration::ZERO, 0u64, 0u64);
            let mut latencies = Vec::new();
            while flooding.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match client.get(&url).bearer_auth(&valid).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => failures += 1,
                }
                let took = sent.elapsed();
                worst = worst.max(took);
                latencies.push(took.as_micros() as u64);
                count += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.sort_unstable();
            let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or(0);
            (count, failures, p99, worst)
        })
    };

    let started = Instant::now();
    let flood_seed = std::process::id() as u64;
    let progress = {
        let issuer = issuer.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let (rss, _) = memory_mib();
                eprintln!(
                    "  {:>8} introspection calls, RSS {rss} MiB, {:.0?}",
                    issuer.count(Endpoint::Introspect),
                    started.elapsed()
                );
            }
        })
    };
    let result = load(
        url.clone(),
        64,
        Duration::from_secs(3600),
        total,
        Arc::new(move |i| Some(format!("flood-{flood_seed:x}-{i:016x}"))),
        401,
    )
    .await;
    progress.abort();
    flooding.store(false, Ordering::Relaxed);
    let (probe_count, probe_failures, probe_p99, probe_worst) = probe.await.unwrap();
    proxy.app.app().auth.sync_caches().await;
    let (_, introspection_entries) = proxy.app.app().auth.cache_entries();
    let (rss_after, peak) = memory_mib();
    println!(
        "tokens sent: {} in {:.1?} ({:.0} req/s)",
        result.requests,
        result.elapsed,
        result.rate()
    );
    println!("introspection calls: {}", issuer.count(Endpoint::Introspect));
    println!("introspection cache entries: {introspection_entries} (bound {CACHE_BOUND})");
    println!(
        "RSS before {rss_before} MiB, after {rss_after} MiB, peak {peak} MiB (whole process: AS, upstream, proxy, load)"
    );
    println!(
        "valid-token probe: {probe_count} requests, {probe_failures} failed, p99 {probe_p99} µs, worst {probe_worst:.1?}"
    );
    assert!(introspection_entries <= CACHE_BOUND, "cache above its bound");
    assert_eq!(probe_failures, 0, "the valid token was refused during the flood");
    proxy.shutdown().await;
}
