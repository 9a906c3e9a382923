//! RFC 7662 introspection end to end against the development authorization server issuing
//! opaque tokens: coalescing, caching, revocation delay, pushed eviction, outages.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint, Fault};
use scopegate::token::Clock;

const AUDIENCE: &str = "https://api.test";

const CONFIG: &str = r#"
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
auth_method = "{auth_method}"
timeout = "500ms"
positive_ttl = "{positive_ttl}"
negative_ttl = "1h"
serve_stale_for = "{stale}"
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
"#;

struct Options {
    mode: &'static str,
    positive_ttl: &'static str,
    stale: &'static str,
    auth_method: &'static str,
}

const DEFAULTS: Options = Options {
    mode: "introspection",
    positive_ttl: "1h",
    stale: "0s",
    auth_method: "client_secret_basic",
};

const AUTO: Options = Options {
    mode: "auto",
    ..DEFAULTS
};

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    client: IntrospectionClient,
}

async fn world(options: Options) -> World {
    let issuer = dev_issuer(DevIssuerConfig {
        opaque_access_tokens: true,
        default_audience: Some(AUDIENCE.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let client = IntrospectionClient::register(&issuer, options.auth_method);
    let upstream = Upstream::start().await;
    let template = CONFIG
        .replace("{mode}", options.mode)
        .replace("{client_id}", &client.client_id)
        .replace("{secret_file}", client.secret_file.to_str().unwrap())
        .replace("{auth_method}", options.auth_method)
        .replace("{positive_ttl}", options.positive_ttl)
        .replace("{stale}", options.stale);
    let proxy = start_proxy(config(&template, &upstream.url(), issuer.issuer())).await;
    World {
        issuer,
        upstream,
        proxy,
        client,
    }
}

impl World {
    fn token(&self, scope: &str) -> String {
        self.issuer.mint_access_token(&AccessTokenRequest {
            client_id: self.client.client_id.clone(),
            ..AccessTokenRequest::new(scope, &[AUDIENCE])
        })
    }

    /// A JWT signed with the issuer's current key, expiring `lifetime` seconds from now (the
    /// dev issuer mints opaque tokens here; a JWT comes from its key directly).
    fn jwt(&self, scope: &str, lifetime: u64) -> String {
        let key = self.issuer.current_key();
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        scopegate::dev::mint(
            &serde_json::json!({"alg": key.alg_name(), "typ": "at+jwt", "kid": key.kid()}),
            &serde_json::json!({"iss": self.issuer.issuer(), "aud": AUDIENCE, "exp": now + lifetime, "scope": scope}),
            &key,
        )
    }

    async fn status(&self, token: &str) -> u16 {
        client()
            .get(format!("http://{}/read/x", self.proxy.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Makes the proxy's authenticator judge time by a clock that runs ahead of the system
    /// clock by the returned number of milliseconds.
    fn skewed_clock(&self) -> Arc<AtomicU64> {
        let skew = Arc::new(AtomicU64::new(0));
        let ahead = Arc::clone(&skew);
        self.proxy.app.app().auth.set_clock(Clock::from_fn(move || {
            SystemTime::now() + Duration::from_millis(ahead.load(Ordering::Relaxed))
        }));
        skew
    }

    fn calls(&self) -> u64 {
        self.issuer.count(Endpoint::Introspect)
    }

    async fn revoke(&self, token: &str) {
        let r = client()
            .post(format!("{}/oauth/revoke", self.issuer.issuer()))
            .basic_auth(&self.client.client_id, Some(&self.client.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&token_type_hint=access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    async fn evict(&self, body: String) -> u16 {
        client()
            .post(format!("http://{}/cache/evict", self.proxy.admin_addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_new_token_make_one_call() {
    let w = world(DEFAULTS).await;
    let token = w.token("read");
    let url = format!("http://{}/read/x", w.proxy.addr);
    let client = client();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(w.calls(), 1, "500 concurrent misses for one token must share one call");
    assert_eq!(w.upstream.requests(), 500);
    let metrics = scrape_metrics(w.proxy.admin_addr).await;
    assert!(
        metrics.contains("scopegate_introspection_calls_total{result=\"active\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn inactive_and_unknown_tokens_are_401_and_cached_briefly() {
    let w = world(DEFAULTS).await;
    for _ in 0..3 {
        assert_eq!(w.status("not-a-token-this-issuer-knows").await, 401);
    }
    assert_eq!(w.calls(), 1, "the negative answer is reused");
    let r = client()
        .get(format!("http://{}/read/x", w.proxy.addr))
        .bearer_auth("another-unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // A token for another resource is inactive for us.
    let other = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &["https://other.test"]));
    assert_eq!(w.status(&other).await, 401);
    assert_eq!(w.upstream.requests(), 0);
}

#[tokio::test]
async fn revocation_is_seen_within_the_positive_ttl() {
    let w = world(Options {
        positive_ttl: "1s",
        ..DEFAULTS
    })
    .await;
    let token = w.token("read");
    assert_eq!(w.status(&token).await, 200);
    w.revoke(&token).await;
    let revoked_at = Instant::now();
    loop {
        let status = w.status(&token).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "revoked token still accepted after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Worst case is the positive TTL (1 s) plus scheduling slack.
    assert!(
        revoked_at.elapsed() <= Duration::from_millis(2500),
        "{:?}",
        revoked_at.elapsed()
    );
}

#[tokio::test]
async fn eviction_endpoint_makes_revocation_immediate() {
    let w = world(DEFAULTS).await;
    let token = w.token("read");
    assert_eq!(w.status(&token).await, 200);
    w.revoke(&token).await;
    assert_eq!(
        w.status(&token).await,
        200,
        "positive TTL is an hour: the cached answer stands"
    );
    assert_eq!(w.evict(format!("token={token}")).await, 200);
    assert_eq!(w.status(&token).await, 401, "next request after eviction");

    let second = w.token("read");
    assert_eq!(w.status(&second).await, 200);
    w.revoke(&second).await;
    let hex: String = scopegate::token::token_digest(&second)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(w.evict(format!("sha256={hex}")).await, 200);
    assert_eq!(w.status(&second).await, 401);
    assert_eq!(w.evict("sha256=zz".into()).await, 400);
}

#[tokio::test]
async fn outages_are_503_never_cached_and_recover() {
    let w = world(DEFAULTS).await;
    // Discovery is faulted too; resolve the endpoint first so each fault hits introspection.
    assert_eq!(w.status(&w.token("read")).await, 200);
    for (fault, name) in [
        (Fault::Status(500), "500"),
        (Fault::Html, "html"),
        (Fault::Delay(Duration::from_secs(2)), "slow"),
        (Fault::CloseConnection, "reset"),
    ] {
        w.issuer.set_fault(fault);
        let token = w.token("read");
        let before = w.calls();
        for _ in 0..2 {
            let r = client()
                .get(format!("http://{}/read/x", w.proxy.addr))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 503, "{name}");
            assert!(r.headers().contains_key("retry-after"), "{name}");
            assert!(
                !r.headers().contains_key("www-authenticate"),
                "{name}: an outage is not a token problem"
            );
        }
        assert_eq!(w.calls() - before, 2, "{name}: errors must not be cached");
        w.issuer.set_fault(Fault::None);
        assert_eq!(w.status(&token).await, 200, "{name}: recovers by itself");
    }
    let token = w.token("read");
    w.issuer.stop().await;
    assert_eq!(w.status(&token).await, 503, "stopped");
    w.issuer.resume().await.unwrap();
    assert_eq!(w.status(&token).await, 200, "restarted");
    assert_eq!(w.upstream.requests(), 6);
}

#[tokio::test]
async fn stale_window_serves_known_tokens_through_an_outage_when_enabled() {
    let w = world(Options {
        positive_ttl: "1s",
        stale: "1h",
        auth_method: "client_secret_post",
        ..DEFAULTS
    })
    .await;
    let skew = w.skewed_clock();
    let known = w.token("read");
    assert_eq!(w.status(&known).await, 200);
    w.issuer.stop().await;
    // Past the positive TTL on the authenticator's clock: the answer must come from the
    // stale window.
    let calls_before = w.calls();
    skew.store(2_000, Ordering::Relaxed);
    let misses = || {
        w.proxy
            .app
            .metrics
            .cache_lookups
            .with_label_values(&["introspection", "miss"])
            .get()
    };
    let misses_before = misses();
    assert_eq!(w.status(&known).await, 200, "known token served from the stale window");
    assert_eq!(misses(), misses_before + 1, "the expired answer was not reused");
    let unknown = w.token("read");
    assert_eq!(w.status(&unknown).await, 503, "a token never seen active is not");
    assert_eq!(w.calls(), calls_before, "the server was down: no call reached it");
}

#[tokio::test]
async fn auto_mode_verifies_jwts_locally_and_introspects_the_rest() {
    let w = world(AUTO).await;
    let jwt = w.jwt("read", 60);
    eventually("keys loaded", || w.proxy.app.is_ready()).await;
    assert_eq!(w.status(&jwt).await, 200);
    assert_eq!(w.calls(), 0, "a JWT of a configured issuer is verified locally");
    assert_eq!(w.status(&w.token("read")).await, 200);
    assert_eq!(w.calls(), 1, "an opaque token is introspected");
}

#[tokio::test]
async fn auto_mode_discovers_once_for_keys_and_introspection() {
    let w = world(AUTO).await;
    eventually("keys loaded", || w.proxy.app.is_ready()).await;
    // An opaque token needs the introspection endpoint, which neither the config names nor
    // the key set needed: it comes from the discovery the key set already made.
    assert_eq!(w.status(&w.token("read")).await, 200);
    assert_eq!(w.calls(), 1, "the opaque token was introspected");
    let discoveries = w.issuer.count(Endpoint::Metadata) + w.issuer.count(Endpoint::OidcMetadata);
    assert_eq!(discoveries, 1, "one discovery serves the keys and introspection");
    assert_eq!(w.issuer.count(Endpoint::Jwks), 1);
}

#[tokio::test]
async fn a_cached_jwt_result_ends_with_the_token_on_the_authenticators_clock() {
    let w = world(AUTO).await;
    let skew = w.skewed_clock();
    let jwt = w.jwt("read", 30);
    eventually("keys loaded", || w.proxy.app.is_ready()).await;
    assert_eq!(w.status(&jwt).await, 200);
    assert_eq!(w.status(&jwt).await, 200, "from the cache");
    // Past `exp` and the leeway: the cached result must not outlive the token.
    skew.store(120_000, Ordering::Relaxed);
    assert_eq!(w.status(&jwt).await, 401, "expired on the authenticator's clock");
    assert_eq!(w.upstream.requests(), 2);
}
