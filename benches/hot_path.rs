//! Micro-benchmarks of the pieces every proxied request runs through, one question each:
//!
//! * `bearer` — what does reading the token out of `Authorization` cost?
//! * `canonicalize` — what does the one path canonicalization cost, for a plain path and
//!   for one that needs percent-decoding and dot-segment removal?
//! * `route_lookup` — what does finding the route cost in a realistic table of 20 routes?
//! * `verify_uncached/<alg>` — what does a token the cache has never seen cost, per
//!   signature algorithm (signature, header and claim checks against a [`KeySet`])?
//! * `authenticate_cached` — what does a token the cache already holds cost (digest, cache
//!   lookup, expiry and key-thumbprint re-check)?
//! * `rewrite_request` — what does turning the inbound request into the upstream request
//!   cost (hop-by-hop and identity stripping, forwarding and identity headers)?
//! * `sign_assertion/<alg>` — what does `[identity.assertion]` add to each request: one JWT
//!   signed per request with scopegate's key (claims, JSON, base64url, signature, header value)?
//! * `metrics_record` — what do the record step's per-request metric updates cost when each
//!   looks its labelled child up (`with_label_values`: hash the labels, take a lock), and
//!   what would they cost with the children resolved once?
//!
//! Each measurement is short so the suite runs in about two minutes:
//! `cargo bench --bench hot_path` (filter with e.g. `-- verify_uncached`).
//!
//! Times are CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock
//! time: on a shared machine other processes' load then stretches a measurement far less,
//! so numbers from one run can be compared with another's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaEncoding, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Request, header};
use scopegate::body::full_body;
use scopegate::canonical::{CanonicalOptions, canonicalize_path};
use scopegate::config::Config;
use scopegate::forward::{RewriteContext, rewrite_request};
use scopegate::metrics::Metrics;
use scopegate::token::bearer::bearer_token;
use scopegate::token::jwk::KeySet;
use scopegate::token::jws::{self, VerifyPolicy};
use scopegate::token::principal::Principal;
use scopegate::token::{Authenticator, token_digest};
use serde_json::{Value, json};
use support::{AUDIENCE, BenchIssuer};

const ISSUER: &str = "https://issuer.bench";

/// CPU time the current thread has run.
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> cpu_time::ThreadTime {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, started: cpu_time::ThreadTime) -> Duration {
        started.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

type Bench = Criterion<CpuTime>;

fn configured() -> Bench {
    Criterion::default()
        .with_measurement(CpuTime)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A token as an authorization server would send it: RS256-sized, with the usual claims.
fn sample_token() -> String {
    let header = b64(r#"{"alg":"RS256","typ":"at+jwt","kid":"rsa-1"}"#);
    let claims = b64(
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "client_id": "client-1",
               "scope": "read write", "exp": now() + 3600, "iat": now()})
        .to_string(),
    );
    format!("{header}.{claims}.{}", b64([7u8; 256]))
}

fn bearer(c: &mut Bench) {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("api.example"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", sample_token())).unwrap(),
    );
    c.bench_function("bearer", |b| {
        b.iter(|| bearer_token(black_box(&headers), black_box(Some("page=2"))).unwrap())
    });
}

fn canonicalize(c: &mut Bench) {
    let options = CanonicalOptions::default();
    let mut group = c.benchmark_group("canonicalize");
    group.bench_function("plain", |b| {
        b.iter(|| canonicalize_path(black_box("/api/v1/orders/12345/items"), options).unwrap())
    });
    group.bench_function("escapes_and_dots", |b| {
        b.iter(|| canonicalize_path(black_box("/api/v1/caf%C3%A9/%7Euser/./reports/../items/%41"), options).unwrap())
    });
    group.finish();
}

/// Twenty routes of the kind a real API declares: literals, parameters, prefixes, methods.
fn routes_toml() -> String {
    let mut text = String::new();
    let routes: [(&str, &str, &str); 20] = [
        ("health", "/healthz", ""),
        ("docs", "/docs/**", ""),
        ("orders-list", "/api/v1/orders", "GET"),
        ("orders-create", "/api/v1/orders", "POST"),
        ("order", "/api/v1/orders/{id}", "GET"),
        ("order-update", "/api/v1/orders/{id}", "PUT"),
        ("order-items", "/api/v1/orders/{id}/items", "GET"),
        ("order-item", "/api/v1/orders/{id}/items/{item}", "GET"),
        ("customers", "/api/v1/customers", "GET"),
        ("customer", "/api/v1/customers/{id}", "GET"),
        ("customer-orders", "/api/v1/customers/{id}/orders", "GET"),
        ("products", "/api/v1/products", "GET"),
        ("product", "/api/v1/products/{sku}", "GET"),
        ("inventory", "/api/v1/inventory/**", "GET"),
        ("reports", "/api/v1/reports/{kind}", "GET"),
        ("admin", "/api/v1/admin/**", ""),
        ("webhooks", "/api/v1/webhooks/{name}", "POST"),
        ("search", "/api/v1/search", "GET"),
        ("v2", "/api/v2/**", ""),
        ("files", "/files/{bucket}/**", "GET"),
    ];
    for (name, path, method) in routes {
        let methods = if method.is_empty() {
            String::new()
        } else {
            format!("methods = [\"{method}\"]\n")
        };
        let access = if name == "health" || name == "docs" {
            "public = true\n"
        } else {
            "scopes = [\"read\"]\n"
        };
        text.push_str(&format!(
            "[[route]]\nname = \"{name}\"\npath = \"{path}\"\n{methods}{access}\n"
        ));
    }
    text
}

fn config(issuer: &str) -> Config {
    let text = format!(
        r#"
[listener]
address = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:9"
[[issuer]]
url = "{issuer}"
audiences = ["{AUDIENCE}"]
token_validation = "jwt"
[identity]
claims = {{ email = "x-auth-email" }}
{routes}"#,
        routes = routes_toml()
    );
    Config::from_toml(&text, "bench").unwrap()
}

fn route_lookup(c: &mut Bench) {
    let config = config(ISSUER);
    let options = CanonicalOptions::default();
    let item = canonicalize_path("/api/v1/orders/12345/items/7", options).unwrap();
    let miss = canonicalize_path("/nowhere/at/all", options).unwrap();
    let mut group = c.benchmark_group("route_lookup");
    group.bench_function("param_route", |b| {
        b.iter(|| config.routes.lookup(black_box(&Method::GET), black_box(&item)).unwrap())
    });
    group.bench_function("no_match", |b| {
        b.iter(|| config.routes.lookup(black_box(&Method::GET), black_box(&miss)))
    });
    group.finish();
}

/// One key per algorithm family and tokens signed with each, the way `tests/jws.rs` does.
struct SignedTokens {
    keys: KeySet,
    tokens: Vec<(&'static str, String)>,
}

fn signed_tokens() -> SignedTokens {
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ed = Ed25519KeyPair::generate().unwrap();
    let public = rsa.public_key();
    let point = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig",
         "n": b64(public.modulus().big_endian_without_leading_zero()),
         "e": b64(public.exponent().big_endian_without_leading_zero())},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256",
         "x": b64(&point[1..33]), "y": b64(&point[33..])},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "alg": "EdDSA", "x": b64(ed.public_key().as_ref())},
    ]});
    let (keys, warnings) = KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let claims = b64(
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "client_id": "client-1",
               "scope": "read write", "exp": now() + 3600, "iat": now()})
        .to_string(),
    );
    let rsa_sign = |encoding: &'static dyn RsaEncoding, input: &[u8]| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(encoding, &rng, input, &mut sig).unwrap();
        sig
    };
    let tokens = [
        ("RS256", "rsa-1"),
        ("PS256", "rsa-1"),
        ("ES256", "ec-1"),
        ("EdDSA", "ed-1"),
    ]
    .into_iter()
    .map(|(alg, kid)| {
        let input = format!("{}.{claims}", b64(json!({"alg": alg, "kid": kid}).to_string()));
        let sig = match alg {
            "RS256" => rsa_sign(&signature::RSA_PKCS1_SHA256, input.as_bytes()),
            "PS256" => rsa_sign(&signature::RSA_PSS_SHA256, input.as_bytes()),
            "ES256" => ec.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            _ => ed.sign(input.as_bytes()).as_ref().to_vec(),
        };
        (alg, format!("{input}.{}", b64(sig)))
    })
    .collect();
    SignedTokens { keys, tokens }
}

fn verify_uncached(c: &mut Bench) {
    let SignedTokens { keys, tokens } = signed_tokens();
    let policy = VerifyPolicy::new(ISSUER, vec![AUDIENCE.to_string()]);
    let mut group = c.benchmark_group("verify_uncached");
    for (alg, token) in &tokens {
        jws::verify(token, &keys, &policy, now()).unwrap();
        group.bench_function(*alg, |b| {
            b.iter(|| jws::verify(black_box(token), &keys, &policy, now()).unwrap())
        });
    }
    group.finish();
}

fn authenticate_cached(c: &mut Bench) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bench_issuer, authenticator, token) = runtime.block_on(async {
        let bench_issuer = BenchIssuer::start(false).await;
        let config = config(bench_issuer.issuer.issuer());
        let authenticator = Authenticator::new(&config.tokens, Metrics::new());
        let _refreshers = authenticator.spawn_refreshers();
        while !authenticator.is_ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let token = bench_issuer.read_token();
        authenticator.authenticate(&token, &token_digest(&token)).await.unwrap();
        (bench_issuer, authenticator, token)
    });
    c.bench_function("authenticate_cached", |b| {
        b.to_async(&runtime).iter(|| async {
            let digest = token_digest(black_box(&token));
            authenticator.authenticate(&token, &digest).await.unwrap()
        })
    });
    drop(bench_issuer);
}

fn rewrite(c: &mut Bench) {
    let config = config(ISSUER);
    let path = canonicalize_path("/api/v1/orders/12345", config.forwarding.canonical).unwrap();
    let principal = Principal {
        issuer: ISSUER.into(),
        subject: Some("user-1".into()),
        client_id: Some("client-1".into()),
        scopes: vec!["read".into(), "write".into()],
        audiences: vec![AUDIENCE.into()],
        claims: serde_json::Map::from_iter([("email".to_string(), Value::from("user@example.com"))]).into(),
        expires_at: now() + 3600,
        confirmation: None,
        issued_at: None,
    };
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let token = sample_token();
    let inbound = move || {
        Request::get("/api/v1/orders/12345?expand=items")
            .header(header::HOST, "api.example")
            .header(header::USER_AGENT, "bench/1.0")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONNECTION, "keep-alive")
            .header("x-request-id", "4f1c2a")
            .header("x-auth-subject", "forged")
            .body(full_body(""))
            .unwrap()
    };
    let identity_headers = scopegate::identity::identity_headers(&principal, &config.identity)
        .expect("plain claims are forwarded as they are");
    let ctx = RewriteContext {
        path: &path,
        peer,
        identity_headers: &identity_headers,
        upgrade: false,
        forwarding: &config.forwarding,
        identity: &config.identity,
        upstream: &config.upstream,
        body_idle_timeout: None,
    };
    c.bench_function("rewrite_request", |b| {
        b.iter_batched(
            inbound.clone(),
            |req| rewrite_request(req, &ctx).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

fn sign_assertion(c: &mut Bench) {
    use scopegate::identity::assertion::{Assertion, AssertionKey};
    use scopegate::token::signing::{SigningAlgorithm, SigningKeyPair};
    let principal = Principal {
        issuer: ISSUER.into(),
        subject: Some("user-1".into()),
        client_id: Some("client-1".into()),
        scopes: vec!["read".into(), "write".into()],
        audiences: vec![AUDIENCE.into()],
        claims: Default::default(),
        expires_at: now() + 3600,
        issued_at: None,
        confirmation: None,
    };
    let mut group = c.benchmark_group("sign_assertion");
    for alg in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::EdDsa,
    ] {
        let assertion = Assertion {
            issuer: "https://scopegate.bench".into(),
            audience: "https://upstream.bench".into(),
            lifetime: Duration::from_secs(60),
            header: header::AUTHORIZATION,
            key: std::sync::Arc::new(AssertionKey::new(SigningKeyPair::generate(alg).unwrap(), true)),
        };
        group.bench_function(alg.name(), |b| {
            b.iter(|| assertion.header_for(black_box(&principal), now()))
        });
    }
    group.finish();
}

fn metrics_record(c: &mut Bench) {
    let metrics = Metrics::new();
    let mut group = c.benchmark_group("metrics_record");
    // What the record step does for an allowed request today.
    group.bench_function("with_label_values", |b| {
        b.iter(|| {
            let route = black_box("orders");
            metrics.requests.with_label_values(&[route, "allow", "2xx"]).inc();
            metrics.request_duration.with_label_values(&[route]).observe(0.000_3);
            metrics.auth_decisions.with_label_values(&["allow", "ok"]).inc();
        })
    });
    let requests = metrics.requests.with_label_values(&["orders", "allow", "2xx"]);
    let duration = metrics.request_duration.with_label_values(&["orders"]);
    let decisions = metrics.auth_decisions.with_label_values(&["allow", "ok"]);
    group.bench_function("pre_resolved", |b| {
        b.iter(|| {
            black_box(&requests).inc();
            black_box(&duration).observe(0.000_3);
            black_box(&decisions).inc();
        })
    });
    group.finish();
}

criterion_group! {
    name = hot_path;
    config = configured();
    targets = bearer, canonicalize, route_lookup, verify_uncached, authenticate_cached, rewrite, sign_assertion, metrics_record
}
criterion_main!(hot_path);
