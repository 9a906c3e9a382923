//! How much memory does a verified token take in the cache? Fills an authenticator's token
//! cache with distinct tokens (default 100,000; each with the claims an access token usually
//! carries) and prints this process's resident memory before and after.
//!
//! ```sh
//! cargo run --release --example cache_memory -- [tokens]
//! ```
//!
//! Tokens are signed with an ES256 key the development issuer publishes, one at a time and
//! dropped once verified, so what grows is the cache. The issuer runs in this process on
//! 127.0.0.1 and stops with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scopegate::config::Config;
use scopegate::dev::{DevIssuer, DevIssuerConfig, KeyAlg, SigningKey, mint};
use scopegate::metrics::Metrics;
use scopegate::token::{Authenticator, token_digest};
use serde_json::json;

/// The binary's allocator (`src/main.rs`), so that what is measured is what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AUDIENCE: &str = "https://api.memory.test";

/// Resident memory of this process in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let issuer = DevIssuer::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        DevIssuerConfig {
            default_audience: Some(AUDIENCE.into()),
            ..DevIssuerConfig::default()
        },
    )
    .await
    .unwrap();
    let key = SigningKey::generate("memory-es256", KeyAlg::ES256).unwrap();
    issuer.publish_extra_jwk(key.public_jwk());
    let config = Config::from_toml(
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n\
             [token]\ncache_max_entries = {count}\n\
             [[issuer]]\nurl = \"{}\"\naudiences = [\"{AUDIENCE}\"]\ntoken_validation = \"jwt\"\n",
            issuer.issuer()
        ),
        "cache_memory",
    )
    .unwrap();
    let authenticator = Authenticator::new(&config.tokens, Metrics::new());
    let _refreshers = authenticator.spawn_refreshers();
    while !authenticator.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid()});
    let token = |n: usize| {
        let claims = json!({
            "iss": issuer.issuer(), "aud": AUDIENCE, "sub": format!("user-{n}"),
            "client_id": "memory-client", "scope": "read write profile", "iat": now,
            "exp": now + 3600, "jti": format!("memory-{n}"),
        });
        mint(&header, &claims, &key)
    };
    // Warm up: everything but the entries themselves is allocated before the first reading.
    for n in 0..100 {
        let token = token(count + n);
        authenticator.authenticate(&token, &token_digest(&token)).await.unwrap();
    }
    let before = rss_kib();
    for n in 0..count {
        let token = token(n);
        authenticator.authenticate(&token, &token_digest(&token)).await.unwrap();
    }
    authenticator.sync_caches().await;
    let after = rss_kib();
    let (entries, _) = authenticator.cache_entries();
    println!("tokens verified:        {count}");
    println!("entries in the cache:   {entries}");
    println!("resident before:        {:.1} MiB", before as f64 / 1024.0);
    println!("resident after:         {:.1} MiB", after as f64 / 1024.0);
    println!(
        "per cached token:       {:.0} bytes",
        (after.saturating_sub(before) * 1024) as f64 / count.max(1) as f64
    );
    issuer.shutdown().await;
}
