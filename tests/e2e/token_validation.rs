//! Local JWT validation end to end: the development authorization server, the proxy and a
//! counting upstream, all on 127.0.0.1:0. Every hostile token is minted here.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::weak_rsa::WeakRsaKey;
use crate::common::*;
use scopegate::dev::{
    AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint, SigningKey, b64url, mint, mint_segments, mint_unsigned,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const AUDIENCE: &str = "https://api.test";

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[auth]
realm = "api"
[scopes.implies]
write = ["read"]
[identity.claims]
email = "x-auth-email"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
algorithms = ["RS256", "ES256"]
leeway = "30s"
jwks_refresh_min = "{refresh}"
jwks_refresh_max = "{refresh}"
unknown_kid_cooldown = "{cooldown}"
max_stale = "{max_stale}"
fetch_timeout = "1s"
[[route]]
name = "pub"
path = "/pub/**"
public = true
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
[[route]]
name = "write"
path = "/write/**"
scopes = ["write"]
[[route]]
name = "mcp"
path = "/mcp"
scopes = ["read", "mcp"]
"#;

struct Timing {
    refresh: &'static str,
    cooldown: &'static str,
    max_stale: &'static str,
}

const SLOW_REFRESH: Timing = Timing {
    refresh: "1h",
    cooldown: "60s",
    max_stale: "1h",
};

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    /// An EC key published beside the issuer's own keys.
    ec_key: SigningKey,
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn world(timing: Timing) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let ec_key = SigningKey::generate_ec_p256("ec-1").unwrap();
    issuer.publish_extra_jwk(ec_key.public_jwk());
    // Keys that must be skipped: a 1024-bit RSA key and a symmetric key.
    issuer.publish_extra_jwk(WeakRsaKey::load("weak-rsa").public_jwk());
    issuer.publish_extra_jwk(SigningKey::hmac("oct-1", b"0123456789abcdef0123456789abcdef").public_jwk());
    let upstream = Upstream::start().await;
    let template = CONFIG
        .replace("{refresh}", timing.refresh)
        .replace("{cooldown}", timing.cooldown)
        .replace("{max_stale}", timing.max_stale);
    let proxy = start_proxy(config(&template, &upstream.url(), issuer.issuer())).await;
    eventually("keys loaded", || proxy.app.is_ready()).await;
    World {
        issuer,
        upstream,
        proxy,
        ec_key,
    }
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    fn claims(&self) -> Value {
        json!({
            "iss": self.issuer.issuer(),
            "sub": "alice",
            "aud": AUDIENCE,
            "client_id": "client-1",
            "scope": "read",
            "email": "alice@example.test",
            "iat": now(),
            "exp": now() + 300,
            "jti": format!("{}", now()),
        })
    }

    fn header(&self) -> Value {
        let key = self.issuer.current_key();
        json!({ "alg": key.alg_name(), "typ": "at+jwt", "kid": key.kid() })
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        mint(header, claims, &self.issuer.current_key())
    }

    fn with_claim(&self, name: &str, value: Value) -> String {
        let mut claims = self.claims();
        claims[name] = value;
        self.sign(&self.header(), &claims)
    }

    fn without_claim(&self, name: &str) -> String {
        let mut claims = self.claims();
        claims.as_object_mut().unwrap().remove(name);
        self.sign(&self.header(), &claims)
    }

    fn with_header(&self, name: &str, value: Value) -> String {
        let mut header = self.header();
        header[name] = value;
        self.sign(&header, &self.claims())
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        client().get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A listener that records every connection made to it: `jku`/`x5u` must never be fetched.
async fn tripwire() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

#[tokio::test]
async fn hostile_token_matrix() {
    let w = world(SLOW_REFRESH).await;
    let key = w.issuer.current_key();
    let kid = key.kid().to_string();
    let attacker = SigningKey::generate_rsa("attacker", 2048).unwrap();
    let (trap_url, trap_hits) = tripwire().await;
    let h = w.header();
    let c = w.claims();
    let unsigned = |alg: &str| mint_unsigned(&json!({"alg": alg, "typ": "at+jwt", "kid": kid}), &c);
    let hs_with = |secret: Vec<u8>| {
        mint(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
            &c,
            &SigningKey::hmac(&kid, &secret),
        )
    };
    let parts: Vec<String> = w.sign(&h, &c).split('.').map(str::to_string).collect();
    let big_claims = {
        let mut c = c.clone();
        c["padding"] = json!("x".repeat(9000));
        c
    };
    let ec_header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"});
    let zero_sig = format!(
        "{}.{}.{}",
        b64url(ec_header.to_string().as_bytes()),
        b64url(c.to_string().as_bytes()),
        b64url(&[0u8; 64])
    );
    let tampered = {
        let mut forged = c.clone();
        forged["scope"] = json!("read write");
        format!("{}.{}.{}", parts[0], b64url(forged.to_string().as_bytes()), parts[2])
    };

    let cases: Vec<(&str, String)> = vec![
        ("alg none", unsigned("none")),
        ("alg None", unsigned("None")),
        ("alg NONE", unsigned("NONE")),
        ("alg none with a real signature", w.with_header("alg", json!("none"))),
        (
            "RS->HS confusion, PKCS#1 DER",
            hs_with(key.rsa_public_key_der().unwrap()),
        ),
        (
            "RS->HS confusion, SPKI DER",
            hs_with(key.rsa_public_key_spki_der().unwrap()),
        ),
        (
            "RS->HS confusion, PEM",
            hs_with(key.rsa_public_key_pem().unwrap().into_bytes()),
        ),
        (
            "HS256 against the published oct key",
            mint(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": "oct-1"}),
                &c,
                &SigningKey::hmac("oct-1", b"0123456789abcdef0123456789abcdef"),
            ),
        ),
        (
            "unknown kid",
            mint(&json!({"alg": "RS256", "typ": "at+jwt", "kid": "nope"}), &c, &attacker),
        ),
        ("attacker key under the real kid", mint(&h, &c, &attacker)),
        (
            "embedded jwk, no kid",
            mint(
                &json!({"alg": "RS256", "typ": "at+jwt", "jwk": attacker.public_jwk()}),
                &c,
                &attacker,
            ),
        ),
        (
            "embedded jwk with the real kid",
            mint(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": kid, "jwk": attacker.public_jwk()}),
                &c,
                &attacker,
            ),
        ),
        (
            "jku to a listener",
            mint(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": "attacker", "jku": trap_url}),
                &c,
                &attacker,
            ),
        ),
        (
            "x5u to a listener",
            mint(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": "attacker", "x5u": trap_url}),
                &c,
                &attacker,
            ),
        ),
        (
            "x5c chain",
            mint(
                &json!({"alg": "RS256", "typ": "at+jwt", "x5c": ["MIIBIjAN"]}),
                &c,
                &attacker,
            ),
        ),
        ("unknown crit", w.with_header("crit", json!(["exp"]))),
        ("crit b64=false", {
            let mut hh = h.clone();
            hh["crit"] = json!(["b64"]);
            hh["b64"] = json!(false);
            w.sign(&hh, &c)
        }),
        ("ID token typ JWT", w.with_header("typ", json!("JWT"))),
        ("no typ", {
            let mut hh = h.clone();
            hh.as_object_mut().unwrap().remove("typ");
            w.sign(&hh, &c)
        }),
        ("array iss", w.with_claim("iss", json!([w.issuer.issuer()]))),
        ("other iss", w.with_claim("iss", json!("https://evil.example"))),
        (
            "iss with trailing slash",
            w.with_claim("iss", json!(format!("{}/", w.issuer.issuer()))),
        ),
        ("missing iss", w.without_claim("iss")),
        ("missing aud", w.without_claim("aud")),
        ("numeric aud", w.with_claim("aud", json!(42))),
        ("object aud", w.with_claim("aud", json!({"aud": AUDIENCE}))),
        ("other aud", w.with_claim("aud", json!("https://other.test"))),
        ("missing exp", w.without_claim("exp")),
        ("string exp", w.with_claim("exp", json!((now() + 300).to_string()))),
        ("expired past leeway", w.with_claim("exp", json!(now() - 40))),
        ("nbf past leeway", w.with_claim("nbf", json!(now() + 60))),
        ("iat in the future", w.with_claim("iat", json!(now() + 120))),
        ("numeric scope", w.with_claim("scope", json!(7))),
        ("numeric sub", w.with_claim("sub", json!(7))),
        ("oversized token", w.sign(&h, &big_claims)),
        ("bad base64 header (length 1)", format!("A.{}.{}", parts[1], parts[2])),
        (
            "header not JSON",
            format!("{}.{}.{}", b64url(b"not json"), parts[1], parts[2]),
        ),
        (
            "padded signature segment",
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        ),
        (
            "extra segment",
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        ),
        (
            "five segments (JWE shape)",
            mint_segments(&[&parts[0], "", &parts[1], &parts[2], "tag"]),
        ),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("empty signature", format!("{}.{}.", parts[0], parts[1])),
        ("tampered payload", tampered),
        (
            "duplicate alg in header",
            w.sign_raw_header(r#"{"alg":"RS256","alg":"none","typ":"at+jwt"}"#, &c),
        ),
        ("ES256 r = s = 0", zero_sig),
        (
            "RS256 by a 1024-bit key in the JWKS",
            WeakRsaKey::load("weak-rsa").mint(&json!({"alg": "RS256", "typ": "at+jwt", "kid": "weak-rsa"}), &c),
        ),
        (
            "ES256 token against an RSA kid",
            mint(&json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}), &c, &w.ec_key),
        ),
        (
            "RS256 token against the EC kid",
            mint(&json!({"alg": "RS256", "typ": "at+jwt", "kid": "ec-1"}), &c, &attacker),
        ),
        (
            "HS512",
            mint(
                &json!({"alg": "HS512", "typ": "at+jwt", "kid": kid}),
                &c,
                &SigningKey::hmac(&kid, b"secret"),
            ),
        ),
    ];
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for (name, token) in &cases {
        let r = w.get("/read/x", token).await;
        let ch = challenge(&r);
        assert_eq!(r.status(), 401, "{name}: {ch}");
        assert!(
            ch.starts_with("Bearer realm=\"api\", error=\"invalid_token\", error_description=\""),
            "{name}: {ch}"
        );
        assert!(!ch.contains(token.as_str()), "{name}: challenge echoes the token");
        assert_eq!(w.upstream.requests(), 0, "{name} reached the upstream");
    }
    assert_eq!(trap_hits.load(Ordering::SeqCst), 0, "a jku/x5u URL was fetched");

    // Controls, so the matrix cannot pass by rejecting everything.
    assert_eq!(w.get("/read/x", &w.sign(&h, &c)).await.status(), 200);
    assert_eq!(w.get("/read/x", &mint(&ec_header, &c, &w.ec_key)).await.status(), 200);
    assert_eq!(
        w.get("/read/x", &w.with_claim("exp", json!(now() - 15))).await.status(),
        200,
        "within leeway"
    );
    assert_eq!(
        w.get("/read/x", &w.with_claim("nbf", json!(now() + 15))).await.status(),
        200,
        "within leeway"
    );
    assert_eq!(
        w.get("/read/x", &w.with_header("typ", json!("application/at+jwt")))
            .await
            .status(),
        200
    );
    assert_eq!(w.upstream.requests(), 5);
}

impl World {
    /// Signs a header given as raw JSON text (for duplicate members serde would fold).
    fn sign_raw_header(&self, header_json: &str, claims: &Value) -> String {
        scopegate::dev::sign_segments(
            &b64url(header_json.as_bytes()),
            &b64url(claims.to_string().as_bytes()),
            &self.issuer.current_key(),
        )
    }
}

#[tokio::test]
async fn malformed_requests_and_scope_decisions() {
    let w = world(SLOW_REFRESH).await;
    let read = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    let write = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("write", &[AUDIENCE]));

    let r = client().get(w.url("/read/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), "Bearer realm=\"api\", scope=\"read\"");

    let r = client().get(w.url("/read/x?access_token=abc")).send().await.unwrap();
    assert_eq!(r.status(), 401, "a query token is no credential");
    assert!(!challenge(&r).contains("error="));

    for (name, request) in [
        (
            "two headers",
            client()
                .get(w.url("/read/x"))
                .header("authorization", format!("Bearer {read}"))
                .header("authorization", format!("Bearer {read}")),
        ),
        (
            "malformed",
            client().get(w.url("/read/x")).header("authorization", "Bearer a b"),
        ),
        (
            "header and query",
            client()
                .get(w.url(&format!("/read/x?access_token={read}")))
                .bearer_auth(&read),
        ),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert!(challenge(&r).contains("error=\"invalid_request\""), "{name}");
    }

    let r = w.get("/write/x", &read).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token lacks a scope this operation needs\", scope=\"write\""
    );
    let r = w.get("/mcp", &read).await;
    assert_eq!(r.status(), 403);
    assert!(
        challenge(&r).ends_with("scope=\"read mcp\""),
        "every needed scope in one challenge"
    );
    assert_eq!(w.upstream.requests(), 0);

    assert_eq!(w.get("/write/x", &write).await.status(), 200);
    assert_eq!(w.get("/read/x", &write).await.status(), 200, "write implies read");
    assert_eq!(w.upstream.requests(), 2);
}

#[tokio::test]
async fn identity_headers_replace_forged_ones() {
    let w = world(SLOW_REFRESH).await;
    let token = w.sign(&w.header(), &w.claims());
    let r = client()
        .get(w.url("/read/me"))
        .bearer_auth(&token)
        .header("X-Auth-Subject", "mallory")
        .header("x_auth_scopes", "admin")
        .header("X-AUTH-ROLE", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-client-id"), Some("client-1"));
    assert_eq!(seen.header("x-auth-scopes"), Some("read"));
    assert_eq!(seen.header("x-auth-issuer"), Some(w.issuer.issuer()));
    assert_eq!(seen.header("x-auth-email"), Some("alice@example.test"));
    assert!(!seen.has_header("x_auth_scopes") && !seen.has_header("x-auth-role"));
    assert!(
        !seen.has_header("authorization"),
        "the token travels no further by default"
    );
}

#[tokio::test]
async fn same_token_10000_times_costs_one_verification() {
    let w = world(SLOW_REFRESH).await;
    let token = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    let client = client();
    let url = w.url("/read/x");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..500 {
                assert_eq!(client.get(&url).bearer_auth(&token).send().await.unwrap().status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(w.upstream.requests(), 10_000);
    assert_eq!(w.proxy.app.metrics.signature_verifications.get(), 1);
    let hits = w
        .proxy
        .app
        .metrics
        .cache_lookups
        .with_label_values(&["jwt", "hit"])
        .get();
    assert!(hits >= 9_980, "{hits} cache hits");
}

#[tokio::test]
async fn unknown_kid_flood_fetches_the_jwks_at_most_once_per_cooldown() {
    let w = world(SLOW_REFRESH).await;
    let before = w.issuer.count(Endpoint::Jwks);
    let attacker = SigningKey::generate_rsa("attacker", 2048).unwrap();
    let claims = w.claims();
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            mint(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("random-{i}")}),
                &claims,
                &attacker,
            )
        })
        .collect();
    let client = client();
    let mut tasks = Vec::new();
    for chunk in tokens.chunks(50) {
        let (client, url, chunk) = (client.clone(), w.url("/read/x"), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for token in chunk {
                assert_eq!(client.get(&url).bearer_auth(&token).send().await.unwrap().status(), 401);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let fetches = w.issuer.count(Endpoint::Jwks) - before;
    assert!(fetches <= 1, "{fetches} JWKS fetches for 1000 unknown kids");
    assert_eq!(w.upstream.requests(), 0);
}

#[tokio::test]
async fn key_rotation_accepts_new_keys_at_once_and_drops_removed_ones() {
    let w = world(Timing {
        refresh: "300ms",
        cooldown: "60s",
        max_stale: "1h",
    })
    .await;
    let old = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    assert_eq!(w.get("/read/x", &old).await.status(), 200);
    w.issuer.rotate_keys();
    let new = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    assert_eq!(
        w.get("/read/x", &new).await.status(),
        200,
        "new key accepted on its first request"
    );
    assert_eq!(
        w.get("/read/x", &old).await.status(),
        200,
        "old key still in its grace period"
    );
    w.issuer.expire_retired_keys();
    // The next background refresh sees the key gone; the cached result goes with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = w.get("/read/x", &old).await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "token of a removed key still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.get("/read/x", &new).await.status(), 200);
}

#[tokio::test]
async fn outage_serves_cached_keys_until_max_stale_then_503_and_recovers() {
    let w = world(Timing {
        refresh: "200ms",
        cooldown: "200ms",
        max_stale: "2s",
    })
    .await;
    let token = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    assert_eq!(w.get("/read/x", &token).await.status(), 200);
    w.issuer.stop().await;
    let stopped_at = Instant::now();
    assert_eq!(w.get("/read/x", &token).await.status(), 200, "cached keys keep serving");
    let fresh = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    assert_eq!(
        w.get("/read/x", &fresh).await.status(),
        200,
        "known kid verifies with cached keys"
    );
    let r = loop {
        let r = w.get("/read/x", &token).await;
        if r.status() != 200 {
            break r;
        }
        assert!(stopped_at.elapsed() < Duration::from_secs(10), "never went stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(stopped_at.elapsed() >= Duration::from_secs(1), "went stale too early");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        !challenge(&r).contains("invalid_token"),
        "an outage is never invalid_token"
    );
    let requests_before = w.upstream.requests();
    assert_eq!(
        client()
            .get(format!("http://{}/readyz", w.proxy.admin_addr))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    w.issuer.resume().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.get("/read/x", &token).await.status() != 200 {
        assert!(Instant::now() < deadline, "did not recover after the issuer came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.upstream.requests(), requests_before + 1);
}

#[tokio::test]
async fn protected_routes_answer_503_until_keys_load() {
    // The issuer's address is reserved but nothing answers there.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let issuer_url = format!("http://{dead}");
    let upstream = Upstream::start().await;
    let template = CONFIG
        .replace("{refresh}", "1h")
        .replace("{cooldown}", "60s")
        .replace("{max_stale}", "1h");
    let proxy = start_proxy(config(&template, &upstream.url(), &issuer_url)).await;
    let key = SigningKey::generate_rsa("k", 2048).unwrap();
    let token = mint(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "k"}),
        &json!({"iss": issuer_url, "aud": AUDIENCE, "exp": now() + 60, "scope": "read"}),
        &key,
    );
    let r = client()
        .get(format!("http://{}/read/x", proxy.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(!r.headers().contains_key("www-authenticate"));
    assert_eq!(
        client()
            .get(format!("http://{}/readyz", proxy.admin_addr))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // A token naming an issuer nobody configured is simply invalid.
    let stranger = mint(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "k"}),
        &json!({"iss": "https://stranger.example", "aud": AUDIENCE, "exp": now() + 60}),
        &key,
    );
    let r = client()
        .get(format!("http://{}/read/x", proxy.addr))
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(upstream.requests(), 0);
}
