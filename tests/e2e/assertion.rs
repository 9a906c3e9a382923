//! `[identity.assertion]`: the upstream receives a short-lived JWT signed by scopegate
//! instead of the client's token, and verifies it against the JWKS on the admin listener.
//! Proven over real sockets: the counting upstream's request log is what is checked, and the
//! JWT is verified by an independent library (`jsonwebtoken`) against the served JWKS.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::pki::Files;
use crate::common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use serde_json::Value;

const AUDIENCE: &str = "https://api.test";
const UPSTREAM_ID: &str = "https://orders.internal";
const SCOPEGATE_ISS: &str = "https://scopegate.internal";

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
}

fn base(upstream: &Upstream, issuer: &DevIssuer) -> ConfigBuilder {
    ConfigBuilder::new(&upstream.url())
        .issuer(IssuerBuilder::new(issuer.issuer(), &[AUDIENCE]))
        .route(RouteBuilder::new("read", "/read/**").scopes(&["read"]))
        .route(RouteBuilder::new("open", "/open/**").public())
}

fn with_assertion(builder: ConfigBuilder) -> ConfigBuilder {
    builder
        .set("identity.assertion.enabled", true)
        .set("identity.assertion.issuer", SCOPEGATE_ISS)
        .set("identity.assertion.audience", UPSTREAM_ID)
}

async fn world(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let proxy = start_ready_proxy(configure(base(&upstream, &issuer)).build()).await;
    World {
        issuer,
        upstream,
        proxy,
    }
}

impl World {
    fn token(&self, ttl: Duration) -> String {
        let mut request = AccessTokenRequest::new("read write", &[AUDIENCE]).with_ttl(ttl);
        request.sub = "alice".into();
        self.issuer.mint_access_token(&request)
    }

    /// Sends `GET path` with `headers`: the status, and what the upstream saw if forwarded.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Option<Seen>) {
        let before = self.upstream.requests();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let answer = raw_request(self.proxy.addr, request.as_bytes()).await;
        let forwarded = self.upstream.requests() > before;
        (status_of(&answer), forwarded.then(|| self.upstream.last()))
    }

    async fn jwks(&self) -> (u16, String) {
        let response = client()
            .get(format!("http://{}/.well-known/jwks.json", self.proxy.admin_addr))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Verifies `jwt` against the admin JWKS with `jsonwebtoken`: its header and claims.
    async fn verify(&self, jwt: &str, alg: Algorithm) -> (jsonwebtoken::Header, Value) {
        let (status, body) = self.jwks().await;
        assert_eq!(status, 200);
        let set: JwkSet = serde_json::from_str(&body).unwrap();
        assert_eq!(set.keys.len(), 1, "{body}");
        let raw: Value = serde_json::from_str(&body).unwrap();
        let jwk = &raw["keys"][0];
        assert_eq!(jwk["use"], "sig");
        assert!(jwk.get("d").is_none(), "the JWKS holds no private member: {jwk}");
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.kid.as_deref(), set.keys[0].common.key_id.as_deref());
        let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
        let mut validation = Validation::new(alg);
        validation.set_audience(&[UPSTREAM_ID]);
        validation.set_issuer(&[SCOPEGATE_ISS]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Value>(jwt, &key, &validation).unwrap();
        (data.header, data.claims)
    }
}

#[tokio::test]
async fn the_upstream_gets_a_verifiable_assertion_and_never_the_token() {
    let w = world(|b| with_assertion(b).set("identity.assertion.lifetime", "30s")).await;
    let token = w.token(Duration::from_secs(300));
    let (status, seen) = w.get("/read/a", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    let forwarded = seen.header("authorization").unwrap();
    let jwt = forwarded.strip_prefix("Bearer ").unwrap();
    assert!(!forwarded.contains(&token), "the client's token reached the upstream");
    assert!(seen.headers.iter().all(|(_, value)| !value.contains(&token)));
    let (header, claims) = w.verify(jwt, Algorithm::ES256).await;
    assert_eq!(header.typ.as_deref(), Some("scopegate+jwt"));
    assert_eq!(claims["iss"], SCOPEGATE_ISS);
    assert_eq!(claims["aud"], UPSTREAM_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "dev-client");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["token_iss"], w.issuer.issuer());
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 30);
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));

    // Each request gets its own assertion.
    let (_, again) = w.get("/read/b", &[("Authorization", &format!("Bearer {token}"))]).await;
    let second = again.unwrap().header("authorization").unwrap().to_owned();
    let (_, second_claims) = w
        .verify(second.strip_prefix("Bearer ").unwrap(), Algorithm::ES256)
        .await;
    assert_ne!(second_claims["jti"], claims["jti"]);
}

#[tokio::test]
async fn an_assertion_never_outlives_the_client_token() {
    let w = world(with_assertion).await;
    let token = w.token(Duration::from_secs(10));
    let (status, seen) = w.get("/read/a", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(status, 200);
    let forwarded = seen.unwrap().header("authorization").unwrap().to_owned();
    let (_, claims) = w
        .verify(forwarded.strip_prefix("Bearer ").unwrap(), Algorithm::ES256)
        .await;
    let token_exp = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
        .unwrap()
        .claims["exp"]
        .as_u64()
        .unwrap();
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        token_exp,
        "capped at the token's exp, not 60s"
    );
}

#[tokio::test]
async fn a_custom_header_carries_the_bare_jwt_and_clients_cannot_forge_it() {
    let w = world(|b| with_assertion(b).set("identity.assertion.header", "x-scopegate-assertion")).await;
    let token = w.token(Duration::from_secs(300));
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.";
    let (status, seen) = w
        .get(
            "/read/a",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("X-Scopegate-Assertion", forged),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    assert!(!seen.has_header("authorization"), "{seen:?}");
    let jwt = seen.header("x-scopegate-assertion").unwrap();
    assert_ne!(jwt, forged);
    let (_, claims) = w.verify(jwt, Algorithm::ES256).await;
    assert_eq!(claims["sub"], "alice");

    // A public route gets no assertion, and a forged one is removed.
    let (status, seen) = w.get("/open/x", &[("X-Scopegate-Assertion", forged)]).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    assert!(!seen.has_header("x-scopegate-assertion"), "{seen:?}");
    assert!(!seen.has_header("authorization"), "{seen:?}");
}

#[tokio::test]
async fn public_routes_get_none() {
    let w = world(with_assertion).await;
    let (status, seen) = w.get("/open/x", &[]).await;
    assert_eq!(status, 200);
    assert!(!seen.unwrap().has_header("authorization"));
}

#[tokio::test]
async fn off_the_behaviour_is_unchanged_and_no_jwks_is_served() {
    let w = world(|b| b.set("forwarding.forward_authorization", true)).await;
    let token = w.token(Duration::from_secs(300));
    let (status, seen) = w.get("/read/a", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(status, 200);
    assert_eq!(
        seen.unwrap().header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(w.jwks().await.0, 404);
}

#[tokio::test]
async fn a_key_file_signs_with_its_algorithm_and_a_stable_kid() {
    let files = Files::new("assertion-key");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let path = files.write("ed25519.pem", &key.serialize_pem());
    let configure = |b: ConfigBuilder| {
        with_assertion(b)
            .set("identity.assertion.algorithm", "EdDSA")
            .set("identity.assertion.key_file", path.as_str())
    };
    let w = world(configure).await;
    let token = w.token(Duration::from_secs(300));
    let (_, seen) = w.get("/read/a", &[("Authorization", &format!("Bearer {token}"))]).await;
    let forwarded = seen.unwrap().header("authorization").unwrap().to_owned();
    let (header, claims) = w
        .verify(forwarded.strip_prefix("Bearer ").unwrap(), Algorithm::EdDSA)
        .await;
    assert_eq!(claims["sub"], "alice");
    // The kid is the key's RFC 7638 thumbprint: the same key file, the same kid.
    let again = configure(base(&w.upstream, &w.issuer)).build();
    let kid = again.identity.assertion.unwrap().key.kid.clone();
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
}

#[tokio::test]
async fn a_generated_key_survives_a_reload() {
    let w = world(with_assertion).await;
    let before = w.jwks().await.1;
    let mut reloaded = with_assertion(base(&w.upstream, &w.issuer))
        .set("identity.assertion.lifetime", "45s")
        .build();
    reloaded.source_hash = "another".into();
    assert!(w.proxy.app.apply(reloaded).changed);
    assert_eq!(
        w.proxy.app.app().config.identity.assertion.as_ref().unwrap().lifetime,
        Duration::from_secs(45)
    );
    assert_eq!(w.jwks().await.1, before);
}

#[tokio::test]
async fn bad_assertion_config_is_refused_with_its_path() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let files = Files::new("assertion-bad");
    let ec_key = files.write("ec.pem", &rcgen::KeyPair::generate().unwrap().serialize_pem());
    type Configure<'a> = Box<dyn Fn(ConfigBuilder) -> ConfigBuilder + 'a>;
    let cases: Vec<(Configure<'_>, &str)> = vec![
        (
            Box::new(|b| b.set("identity.assertion.enabled", true)),
            "identity.assertion.issuer",
        ),
        (
            Box::new(|b| b.set("identity.assertion.enabled", true)),
            "identity.assertion.audience",
        ),
        (
            Box::new(|b| with_assertion(b).set("identity.assertion.algorithm", "HS256")),
            "identity.assertion.algorithm",
        ),
        (
            Box::new(|b| with_assertion(b).set("identity.assertion.lifetime", "1h")),
            "identity.assertion.lifetime",
        ),
        (
            Box::new(|b| with_assertion(b).set("identity.assertion.header", "host")),
            "identity.assertion.header",
        ),
        (
            Box::new(|b| with_assertion(b).set("identity.assertion.key_file", "/nonexistent/key.pem")),
            "identity.assertion.key_file",
        ),
        (
            // A P-256 key is not an RS256 key.
            Box::new(|b| {
                with_assertion(b)
                    .set("identity.assertion.algorithm", "RS256")
                    .set("identity.assertion.key_file", ec_key.as_str())
            }),
            "identity.assertion.key_file",
        ),
        (
            Box::new(|b| with_assertion(b).set("forwarding.forward_authorization", true)),
            "forwarding.forward_authorization",
        ),
        (
            Box::new(|b| with_assertion(b).set("identity.assertion.typo", 1)),
            "typo",
        ),
    ];
    for (configure, path) in cases {
        let toml = configure(base(&upstream, &issuer)).toml();
        let error = scopegate::config::Config::from_toml(&toml, "test.toml").unwrap_err();
        assert!(error.to_string().contains(path), "{path}: {error}\n{toml}");
    }
}
