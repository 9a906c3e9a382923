//! Token-layer hardening, end to end over real sockets against the development authorization
//! server: JWS-shaped tokens never reach introspection in `auto` mode, a flood of random opaque
//! tokens cannot starve a legitimate new one, a cached verification ends with its key, a flood
//! of unknown `kid`s cannot hold up a key rotation, and every time claim of an introspection
//! answer is read the same way.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use scopegate::dev::{
    AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint, Fault, SigningKey, b64url, mint, mint_segments,
    mint_unsigned, sign_segments,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const AUDIENCE: &str = "https://api.test";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An issuer that verifies its JWTs locally and introspects everything else.
const AUTO_CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
token_validation = "{mode}"
[issuer.introspection]
client_id = "{client_id}"
client_secret_file = "{secret_file}"
timeout = "2s"
negative_ttl = "1h"
{endpoint}
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
"#;

struct AutoWorld {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    client: IntrospectionClient,
}

async fn auto_world(mode: &str, endpoint: Option<&str>) -> AutoWorld {
    let issuer = dev_issuer(DevIssuerConfig {
        opaque_access_tokens: true,
        default_audience: Some(AUDIENCE.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let client = IntrospectionClient::register(&issuer, "client_secret_basic");
    let upstream = Upstream::start().await;
    let template = AUTO_CONFIG
        .replace("{mode}", mode)
        .replace("{client_id}", &client.client_id)
        .replace("{secret_file}", client.secret_file.to_str().unwrap())
        .replace(
            "{endpoint}",
            &endpoint.map(|e| format!("endpoint = \"{e}\"")).unwrap_or_default(),
        );
    let proxy = start_proxy(config(&template, &upstream.url(), issuer.issuer())).await;
    AutoWorld {
        issuer,
        upstream,
        proxy,
        client,
    }
}

impl AutoWorld {
    fn opaque(&self) -> String {
        self.issuer.mint_access_token(&AccessTokenRequest {
            client_id: self.client.client_id.clone(),
            ..AccessTokenRequest::new("read", &[AUDIENCE])
        })
    }

    fn claims(&self) -> Value {
        json!({"iss": self.issuer.issuer(), "aud": AUDIENCE, "exp": now() + 300, "scope": "read", "sub": "alice"})
    }

    fn header(&self) -> Value {
        let key = self.issuer.current_key();
        json!({"alg": key.alg_name(), "typ": "at+jwt", "kid": key.kid()})
    }

    fn calls(&self) -> u64 {
        self.issuer.count(Endpoint::Introspect)
    }

    async fn status(&self, token: &str) -> u16 {
        status_from(&client(), self.proxy.addr, token).await
    }
}

async fn status_from(client: &reqwest::Client, addr: std::net::SocketAddr, token: &str) -> u16 {
    client
        .get(format!("http://{addr}/read/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A client whose connections come from another loopback address (Linux routes all of
/// 127.0.0.0/8 to the loopback interface), so the proxy sees a different peer.
fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .build()
        .unwrap()
}

/// Item 2: in `auto` mode, a token in JWS compact form is judged locally, whatever is wrong
/// with it; only tokens that are not JWS-shaped are introspected (DESIGN §4 "Token kind").
#[tokio::test]
async fn auto_mode_judges_every_jws_shaped_token_locally() {
    let w = auto_world("auto", None).await;
    eventually("keys loaded", || w.proxy.app.is_ready()).await;
    let key = w.issuer.current_key();
    let attacker = SigningKey::generate_rsa(key.kid(), 2048).unwrap();
    let header_b64 = b64url(w.header().to_string().as_bytes());
    let claims_b64 = b64url(w.claims().to_string().as_bytes());
    let mut trailing_slash = w.claims();
    trailing_slash["iss"] = json!(format!("{}/", w.issuer.issuer()));
    let mut stranger = w.claims();
    stranger["iss"] = json!("https://stranger.example");
    let duplicate_header = format!(r#"{{"alg":"{}","typ":"at+jwt","alg":"none"}}"#, key.alg_name());
    let jwe_header = b64url(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            mint_unsigned(&json!({"alg": "none", "typ": "at+jwt"}), &w.claims()),
        ),
        (
            "alg none with a signature segment",
            mint_segments(&[
                &b64url(br#"{"alg":"none","typ":"at+jwt"}"#),
                &claims_b64,
                "c2lnbmF0dXJl",
            ]),
        ),
        (
            "bad base64 in the payload",
            sign_segments(&header_b64, "not~base64+url", &key),
        ),
        (
            "bad base64 in the signature",
            mint_segments(&[&header_b64, &claims_b64, "sig~nature"]),
        ),
        (
            "payload not a JSON object",
            sign_segments(&header_b64, &b64url(b"[1,2,3]"), &key),
        ),
        (
            "duplicate header members",
            sign_segments(&b64url(duplicate_header.as_bytes()), &claims_b64, &key),
        ),
        (
            "JWE (five segments)",
            mint_segments(&[&jwe_header, "ZW5jcnlwdGVka2V5", "aXZpdml2aXY", "Y2lwaGVydGV4dA", "dGFn"]),
        ),
        ("iss with a trailing slash", mint(&w.header(), &trailing_slash, &key)),
        (
            "well-formed JWT of an unconfigured issuer",
            mint(&w.header(), &stranger, &attacker),
        ),
        ("forged signature", mint(&w.header(), &w.claims(), &attacker)),
    ];
    for (name, token) in &cases {
        let r = client()
            .get(format!("http://{}/read/x", w.proxy.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains("error=\"invalid_token\""), "{name}: {challenge}");
        assert_eq!(w.calls(), 0, "{name}: a JWS-shaped token must never be introspected");
    }
    assert_eq!(w.upstream.requests(), 0);
    // Control: the same world still introspects an opaque token and accepts a good JWT.
    assert_eq!(w.status(&mint(&w.header(), &w.claims(), &key)).await, 200);
    assert_eq!(w.calls(), 0);
    assert_eq!(w.status(&w.opaque()).await, 200);
    assert_eq!(w.calls(), 1, "an opaque token is introspected");
}

/// Item 2, for an issuer that introspects every token: a JWT naming another issuer is
/// never shown to this issuer's introspection endpoint.
#[tokio::test]
async fn a_jwt_of_an_unconfigured_issuer_is_never_introspected() {
    let w = auto_world("introspection", None).await;
    let attacker = SigningKey::generate_rsa("k", 2048).unwrap();
    let mut stranger = w.claims();
    stranger["iss"] = json!("https://stranger.example");
    let token = mint(
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "k"}),
        &stranger,
        &attacker,
    );
    assert_eq!(w.status(&token).await, 401);
    assert_eq!(w.calls(), 0, "another issuer's token was sent to this issuer");
    assert_eq!(w.status(&w.opaque()).await, 200);
    assert_eq!(w.calls(), 1);
}

/// Item 3: a flood of random opaque tokens from one client cannot use up the introspection
/// budget: a legitimate new token from another client is still answered, and the flood's
/// cost to the authorization server is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_opaque_tokens_does_not_starve_a_new_token() {
    const FLOOD: usize = 500;
    let w = auto_world("introspection", None).await;
    // Resolve the endpoint first, then make every introspection call slow (within the 2 s
    // call timeout).
    assert_eq!(w.status(&w.opaque()).await, 200);
    w.issuer.set_fault(Fault::Delay(Duration::from_millis(800)));
    let before = w.calls();
    let flooder = client_from(2);
    let addr = w.proxy.addr;
    let started = Instant::now();
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let flooder = flooder.clone();
            tokio::spawn(async move { status_from(&flooder, addr, &format!("random-opaque-token-{i}")).await })
        })
        .collect();
    // Let the flood reach the proxy first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let legitimate = w.opaque();
    let status = status_from(&client_from(3), addr, &legitimate).await;
    let legit_after = started.elapsed();
    let mut answered = std::collections::BTreeMap::new();
    for task in flood {
        *answered.entry(task.await.unwrap()).or_insert(0u32) += 1;
    }
    let flood_calls = w.calls() - before - 1;
    println!(
        "flood of {FLOOD} random opaque tokens: statuses {answered:?}, {flood_calls} introspection calls, \
         legitimate token answered {status} after {legit_after:?}"
    );
    assert_eq!(status, 200, "a legitimate new token was starved by the flood");
    assert!(
        flood_calls <= 100,
        "{flood_calls} authorization-server calls for {FLOOD} random tokens"
    );
    assert!(answered.keys().all(|s| *s == 401 || *s == 503), "{answered:?}");
    assert_eq!(w.upstream.requests(), 2);
}

/// A minimal RFC 7662 endpoint answering fixed bodies by token, counting calls.
async fn fake_introspection(answers: Vec<(&'static str, Value)>) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let answers = Arc::new(answers);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answers, counter) = (Arc::clone(&answers), Arc::clone(&counter));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (answers, counter) = (Arc::clone(&answers), Arc::clone(&counter));
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let token = form_urlencoded::parse(&body)
                            .find(|(k, _)| k == "token")
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default();
                        let answer = answers
                            .iter()
                            .find(|(t, _)| *t == token)
                            .map_or(json!({"active": false}), |(_, a)| a.clone());
                        let mut response = hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
                        response
                            .headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, calls)
}

/// Item 10: `exp`, `nbf` and `iat` of an introspection answer are read the same way: a value
/// that is not a NumericDate refuses the token, as it does in a JWT.
#[tokio::test]
async fn every_time_claim_of_an_introspection_answer_is_checked_alike() {
    let later = now() + 3600;
    let base = |extra: Value| {
        let mut answer = json!({"active": true, "aud": AUDIENCE, "scope": "read", "exp": later});
        for (k, v) in extra.as_object().unwrap() {
            answer[k] = v.clone();
        }
        answer
    };
    let (endpoint, calls) = fake_introspection(vec![
        ("good", base(json!({"iat": now(), "nbf": now()}))),
        ("nbf-string-future", base(json!({"nbf": later.to_string()}))),
        ("nbf-string-past", base(json!({"nbf": "1"}))),
        ("nbf-future", base(json!({"nbf": later}))),
        ("nbf-null", base(json!({"nbf": null}))),
        ("iat-string", base(json!({"iat": now().to_string()}))),
        ("iat-future", base(json!({"iat": later}))),
        ("exp-string", base(json!({"exp": later.to_string()}))),
        ("exp-negative", base(json!({"exp": -1}))),
    ])
    .await;
    let w = auto_world("introspection", Some(&endpoint)).await;
    assert_eq!(w.status("good").await, 200);
    for token in [
        "nbf-string-future",
        "nbf-string-past",
        "nbf-future",
        "nbf-null",
        "iat-string",
        "iat-future",
        "exp-string",
        "exp-negative",
    ] {
        assert_eq!(w.status(token).await, 401, "{token}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 9);
    assert_eq!(w.upstream.requests(), 1);
}

/// An issuer whose tokens are all verified locally.
const JWT_CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
jwks_refresh_min = "{refresh}"
jwks_refresh_max = "{refresh}"
unknown_kid_cooldown = "30s"
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
"#;

struct JwtWorld {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
}

async fn jwt_world(refresh: &str) -> JwtWorld {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let template = JWT_CONFIG.replace("{refresh}", refresh);
    let proxy = start_proxy(config(&template, &upstream.url(), issuer.issuer())).await;
    eventually("keys loaded", || proxy.app.is_ready()).await;
    JwtWorld {
        issuer,
        upstream,
        proxy,
    }
}

impl JwtWorld {
    fn claims(&self) -> Value {
        json!({"iss": self.issuer.issuer(), "aud": AUDIENCE, "exp": now() + 300, "scope": "read"})
    }

    fn token(&self, key: &SigningKey, with_kid: bool) -> String {
        let mut header = json!({"alg": key.alg_name(), "typ": "at+jwt"});
        if with_kid {
            header["kid"] = json!(key.kid());
        }
        mint(&header, &self.claims(), key)
    }

    async fn status(&self, token: &str) -> u16 {
        status_from(&client(), self.proxy.addr, token).await
    }

    /// Publishes exactly `keys` and waits until the proxy's background refresh has loaded
    /// them: two fetches begun after the change, so the first has completed.
    async fn publish(&self, keys: Vec<Value>) {
        self.issuer.replace_jwks(Some(json!({ "keys": keys })));
        let fetches = self.issuer.count(Endpoint::Jwks);
        eventually("two JWKS fetches", || self.issuer.count(Endpoint::Jwks) >= fetches + 2).await;
    }
}

fn without_kid(mut jwk: Value) -> Value {
    jwk.as_object_mut().unwrap().remove("kid");
    jwk
}

/// Item 5: a cached verification is dropped as soon as the key set no longer holds the exact
/// key that verified it, also when the `kid` is reused for new material.
#[tokio::test]
async fn a_cached_verification_ends_when_its_kid_is_reused_for_another_key() {
    let w = jwt_world("200ms").await;
    let old_key = w.issuer.current_key();
    let old = w.token(&old_key, true);
    assert_eq!(w.status(&old).await, 200);
    assert_eq!(w.status(&old).await, 200, "from the cache");
    // Emergency rotation: the same kid now names new key material.
    let new_key = SigningKey::generate_rsa(old_key.kid(), 2048).unwrap();
    w.publish(vec![new_key.public_jwk()]).await;
    assert_eq!(
        w.status(&old).await,
        401,
        "the old key's cached result outlived the key"
    );
    assert_eq!(w.status(&w.token(&new_key, true)).await, 200, "the new key verifies");
    assert_eq!(w.upstream.requests(), 3);
}

/// Item 5, for keys published without a `kid`.
#[tokio::test]
async fn a_cached_verification_ends_when_its_key_without_kid_is_replaced() {
    let w = jwt_world("200ms").await;
    let old_key = w.issuer.current_key();
    let old = w.token(&old_key, false);
    w.publish(vec![without_kid(old_key.public_jwk())]).await;
    assert_eq!(w.status(&old).await, 200);
    assert_eq!(w.status(&old).await, 200, "from the cache");
    let new_key = SigningKey::generate_rsa("unused", 2048).unwrap();
    w.publish(vec![without_kid(new_key.public_jwk())]).await;
    assert_eq!(
        w.status(&old).await,
        401,
        "the old key's cached result outlived the key"
    );
    assert_eq!(w.status(&w.token(&new_key, false)).await, 200, "the new key verifies");
    assert_eq!(w.upstream.requests(), 3);
}

/// Item 8: under a flood of tokens with made-up `kid`s, a real key rotation is seen within
/// seconds, and the flood causes a bounded number of JWKS fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_is_seen_quickly_under_an_unknown_kid_flood() {
    let w = jwt_world("1h").await;
    let before = w.issuer.count(Endpoint::Jwks);
    let attacker = SigningKey::generate_rsa("attacker", 2048).unwrap();
    let claims = w.claims();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..8)
        .map(|task| {
            let (stop, sent, claims, attacker) = (stop.clone(), sent.clone(), claims.clone(), attacker.clone());
            let addr = w.proxy.addr;
            tokio::spawn(async move {
                let client = client_from(2);
                // Bounded: stops when told, and in any case after 20 s.
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && flood_started.elapsed() < Duration::from_secs(20) {
                    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("forged-{task}-{i}")});
                    let status = status_from(&client, addr, &mint(&header, &claims, &attacker)).await;
                    assert_eq!(status, 401);
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let issuer = w.issuer.clone();
    tokio::task::spawn_blocking(move || issuer.rotate_keys()).await.unwrap();
    let rotated_at = Instant::now();
    let new = w.token(&w.issuer.current_key(), true);
    let legit = client_from(3);
    let mut refused = 0u32;
    loop {
        let status = status_from(&legit, w.proxy.addr, &new).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        refused += 1;
        assert!(
            rotated_at.elapsed() < Duration::from_secs(12),
            "tokens of the new key still refused {:?} after the rotation",
            rotated_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let visible_after = rotated_at.elapsed();
    // Keep flooding a little after the rotation, then stop.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let fetches = w.issuer.count(Endpoint::Jwks) - before;
    println!(
        "unknown-kid flood: {} forged tokens over {:?}; rotation visible after {visible_after:?} \
         ({refused} refusals of the new key); {fetches} JWKS fetches",
        sent.load(Ordering::Relaxed),
        flood_started.elapsed()
    );
    assert!(
        visible_after < Duration::from_secs(5),
        "rotation visible only after {visible_after:?}"
    );
    assert!(fetches < 20, "{fetches} JWKS fetches during the flood");
    assert_eq!(w.upstream.requests(), 1);
}
