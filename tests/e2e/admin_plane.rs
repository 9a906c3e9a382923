//! The admin plane: its connection cap and timeouts, and `POST /cache/evict` — truthful
//! (it says what it removed), exact (one strictly read form parameter) and final (a revoked
//! token stays refused until it expires, a JWT that verifies again and an introspection
//! answer that lands after the eviction included).
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint, Fault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AUDIENCE: &str = "https://api.test";

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
{admin}
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
token_validation = "auto"
leeway = "{leeway}"
[issuer.introspection]
client_id = "{client_id}"
client_secret_file = "{secret_file}"
timeout = "5s"
positive_ttl = "1h"
negative_ttl = "1h"
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
"#;

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    client: IntrospectionClient,
    template: String,
}

async fn world(admin: &str) -> World {
    let issuer = dev_issuer(DevIssuerConfig {
        opaque_access_tokens: true,
        default_audience: Some(AUDIENCE.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let client = IntrospectionClient::register(&issuer, "client_secret_basic");
    let upstream = Upstream::start().await;
    let template = CONFIG
        .replace("{admin}", admin)
        .replace("{client_id}", &client.client_id)
        .replace("{secret_file}", client.secret_file.to_str().unwrap());
    let proxy = start_proxy(config(
        &template.replace("{leeway}", "30s"),
        &upstream.url(),
        issuer.issuer(),
    ))
    .await;
    World {
        issuer,
        upstream,
        proxy,
        client,
        template,
    }
}

impl World {
    fn opaque(&self) -> String {
        self.issuer.mint_access_token(&AccessTokenRequest {
            client_id: self.client.client_id.clone(),
            ..AccessTokenRequest::new("read", &[AUDIENCE])
        })
    }

    /// A JWT for `sub`, signed with the issuer's current key: verified locally in `auto` mode.
    fn jwt(&self, sub: &str) -> String {
        let key = self.issuer.current_key();
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        scopegate::dev::mint(
            &serde_json::json!({"alg": key.alg_name(), "typ": "at+jwt", "kid": key.kid()}),
            &serde_json::json!({"iss": self.issuer.issuer(), "aud": AUDIENCE, "exp": now + 600, "scope": "read", "sub": sub}),
            &key,
        )
    }

    /// Status and `WWW-Authenticate` of a protected request.
    async fn call(&self, token: &str) -> (u16, String) {
        let r = client()
            .get(format!("http://{}/read/x", self.proxy.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), challenge)
    }

    async fn status(&self, token: &str) -> u16 {
        self.call(token).await.0
    }

    /// Status and JSON body (`null` when not JSON) of an eviction.
    async fn evict(&self, body: &str) -> (u16, serde_json::Value) {
        let r = client()
            .post(format!("http://{}/cache/evict", self.proxy.admin_addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}

fn hex(digest: [u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const REVOKED: &str = "error_description=\"the token has been revoked\"";

#[tokio::test]
async fn eviction_says_what_it_removed() {
    let w = world("").await;
    let (status, body) = w.evict("token=never-seen-before").await;
    assert_eq!(status, 200);
    assert_eq!(body["evicted"], 0, "nothing was cached: {body}");
    assert_eq!(body["revoked"], true, "{body}");

    let token = w.opaque();
    assert_eq!(w.status(&token).await, 200);
    let (status, body) = w
        .evict(&format!("sha256={}", hex(scopegate::token::token_digest(&token))))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["evicted"], 1, "the cached introspection answer: {body}");
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(body["revoked_until"].as_u64().unwrap() > now, "{body}");
}

#[tokio::test]
async fn eviction_reads_exactly_one_token() {
    let w = world("").await;
    let token = w.opaque();
    assert_eq!(w.status(&token).await, 200);
    for ambiguous in [
        format!("token={token}&token=other"),
        format!("token=other&token={token}"),
        format!("token={token}&sha256={}", hex([0; 32])),
        "token=a+b".to_string(),
        "token=a%zz".to_string(),
        format!("token={token}&note=x"),
    ] {
        assert_eq!(w.evict(&ambiguous).await.0, 400, "{ambiguous}");
    }
    assert_eq!(w.status(&token).await, 200, "no refused eviction touched the token");

    // A '+' in a token is sent as %2B and revokes exactly that token.
    let plus = "made+up/token==";
    let calls = w.issuer.count(Endpoint::Introspect);
    assert_eq!(w.evict("token=made%2Bup%2Ftoken%3D%3D").await.0, 200);
    let (status, challenge) = w.call(plus).await;
    assert_eq!(status, 401);
    assert!(challenge.contains(REVOKED), "{challenge}");
    assert_eq!(
        w.issuer.count(Endpoint::Introspect),
        calls,
        "refused before introspection"
    );
}

#[tokio::test]
async fn a_revoked_jwt_stays_refused_though_it_verifies_again() {
    let w = world("").await;
    eventually("keys loaded", || w.proxy.app.is_ready()).await;
    let token = w.jwt("revoked");
    assert_eq!(w.status(&token).await, 200);
    let before = w.upstream.requests();
    let (status, body) = w.evict(&format!("token={token}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["evicted"], 1, "the verified-JWT cache entry: {body}");
    for _ in 0..3 {
        let (status, challenge) = w.call(&token).await;
        assert_eq!(status, 401);
        assert!(challenge.contains(REVOKED), "{challenge}");
    }
    assert_eq!(w.upstream.requests(), before, "nothing reached the upstream");

    // A reload that rebuilds the authenticator (new issuer settings) keeps the revocation.
    let changed = config(
        &w.template.replace("{leeway}", "31s"),
        &w.upstream.url(),
        w.issuer.issuer(),
    );
    assert!(w.proxy.app.apply(changed).changed);
    assert_eq!(w.status(&token).await, 401, "after a reload");
    assert_eq!(w.status(&w.jwt("another")).await, 200, "other tokens are unaffected");
}

#[tokio::test]
async fn an_answer_that_lands_after_the_eviction_cannot_readmit_the_token() {
    let w = world("").await;
    // Resolve discovery first: the fault below delays every authorization-server call.
    assert_eq!(w.status(&w.opaque()).await, 200);
    let token = w.opaque();
    w.issuer.set_fault(Fault::Delay(Duration::from_secs(1)));
    let calls = w.issuer.count(Endpoint::Introspect);
    let in_flight = {
        let (addr, token) = (w.proxy.addr, token.clone());
        tokio::spawn(async move {
            client()
                .get(format!("http://{addr}/read/x"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    eventually("the introspection call is in flight", || {
        w.issuer.count(Endpoint::Introspect) > calls
    })
    .await;
    assert_eq!(w.evict(&format!("token={token}")).await.0, 200);
    let _ = in_flight.await.unwrap();
    w.issuer.set_fault(Fault::None);
    let before = w.upstream.requests();
    let (status, challenge) = w.call(&token).await;
    assert_eq!(
        status, 401,
        "the active answer stored after the eviction must not admit it"
    );
    assert!(challenge.contains(REVOKED), "{challenge}");
    assert_eq!(w.upstream.requests(), before);
}

#[tokio::test]
async fn admin_connections_are_capped_and_time_out() {
    let w = world("max_connections = 3\nheader_read_timeout = \"1s\"\nidle_timeout = \"1s\"").await;
    let admin = w.proxy.admin_addr;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    // The fourth waits in the kernel's queue: no answer while three connections sit idle.
    let mut waiting = TcpStream::connect(admin).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err() && answer.is_empty(), "answered past the cap: {answer:?}");
    // The data plane answers all the while.
    assert_eq!(w.status(&w.opaque()).await, 200);

    // The idle ones are closed after the header-read timeout, and the waiting one is served.
    for mut connection in idle {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(3), connection.read(&mut byte)).await;
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    }
    tokio::time::timeout(Duration::from_secs(3), waiting.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&answer)), 200);

    // A kept-alive connection with nothing in flight is closed after the idle timeout.
    let mut kept = TcpStream::connect(admin).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    let closed = tokio::time::timeout(Duration::from_secs(3), kept.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
}
