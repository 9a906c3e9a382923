//! RFC 8705 end to end: the development issuer, served over mutual TLS, binds the tokens a
//! client requests with its certificate to that certificate (`cnf.x5t#S256`, in the JWT and
//! in introspection), and scopegate's TLS listener accepts such a token only on a connection
//! presenting the same certificate.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::pki::{Ca, Files, Leaf};
use crate::common::*;
use scopegate::dev::{DevIssuer, DevIssuerConfig};
use scopegate::tls::config::{ClientAuth, TlsFiles};
use scopegate::tls::x5t_s256;
use serde_json::Value;

const API: &str = "https://api.test";
const HOST: &str = "scopegate.test";

/// A client trusting `ca` only, presenting `identity`; [`HOST`] resolves to `addr`.
fn tls_client(ca: &Ca, addr: SocketAddr, identity: Option<&Leaf>) -> reqwest::Client {
    crate::common::pki::tls_client(ca, HOST, addr, identity)
}

async fn metadata(client: reqwest::Client, issuer: &DevIssuer) -> Value {
    client
        .get(issuer.metadata_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

struct World {
    ca: Ca,
    client_ca: Ca,
    issuer: DevIssuer,
    client: IntrospectionClient,
    upstream: Upstream,
    files: Files,
}

/// A dev issuer over HTTPS asking for (optional) client certificates, and a registered
/// confidential client; its tokens are opaque when `opaque`.
async fn world(test: &str, opaque: bool) -> World {
    let files = Files::new(test);
    let (ca, client_ca) = (Ca::new("server CA"), Ca::new("client CA"));
    files.server(&ca.issue(&[HOST], false));
    let issuer_leaf = ca.issue(&["127.0.0.1"], false);
    files.write("issuer-cert.pem", &issuer_leaf.cert_pem);
    files.write("issuer-key.pem", &issuer_leaf.key_pem);
    files.write("clients.pem", &client_ca.pem);
    files.write("ca.pem", &ca.pem);
    let issuer = dev_issuer(DevIssuerConfig {
        default_audience: Some(API.into()),
        opaque_access_tokens: opaque,
        tls: Some(TlsFiles {
            cert_file: PathBuf::from(files.path("issuer-cert.pem")),
            key_file: PathBuf::from(files.path("issuer-key.pem")),
            client_auth: ClientAuth::Optional,
            client_ca_file: Some(PathBuf::from(files.path("clients.pem"))),
        }),
        ..DevIssuerConfig::default()
    })
    .await;
    let client = IntrospectionClient::register(&issuer, "client_secret_basic");
    World {
        ca,
        client_ca,
        issuer,
        client,
        upstream: Upstream::start().await,
        files,
    }
}

impl World {
    /// A client-credentials token requested over a connection presenting `identity`.
    async fn token(&self, identity: Option<&Leaf>) -> Value {
        let response = tls_client(&self.ca, self.issuer.addr(), identity)
            .post(self.issuer.token_endpoint())
            .basic_auth(&self.client.client_id, Some(&self.client.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=read")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn proxy(&self, client_auth: &str, opaque: bool) -> scopegate::server::Running {
        let mut issuer = IssuerBuilder::new(self.issuer.issuer(), &[API]).set("ca_file", self.files.path("ca.pem"));
        if opaque {
            issuer = issuer.introspection(&self.client.client_id, &self.client.secret_file);
        }
        let config = ConfigBuilder::new(&self.upstream.url())
            .issuer(issuer)
            .route(RouteBuilder::new("api", "/api/**").scopes(&["read"]))
            .set("listener.tls.cert_file", self.files.path("cert.pem"))
            .set("listener.tls.key_file", self.files.path("key.pem"))
            .set("listener.tls.client_auth", client_auth)
            .set("listener.tls.client_ca_file", self.files.path("clients.pem"))
            .build();
        start_ready_proxy(config).await
    }
}

async fn call(world: &World, proxy: &scopegate::server::Running, identity: Option<&Leaf>, token: &str) -> u16 {
    tls_client(&world.ca, proxy.addr, identity)
        .get(format!("https://{HOST}:{}/api/x", proxy.addr.port()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn reasons(log: &AccessLog) -> Vec<String> {
    log.events()
        .into_iter()
        .filter_map(|event| event.get("reason").cloned())
        .collect()
}

async fn a_token_from_the_mtls_issuer_is_bound_to_its_certificate(test: &str, opaque: bool) {
    let world = world(test, opaque).await;
    let metadata = metadata(tls_client(&world.ca, world.issuer.addr(), None), &world.issuer).await;
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert!(world.issuer.issuer().starts_with("https://"));

    let (alice, bob) = (
        world.client_ca.issue(&["alice"], true),
        world.client_ca.issue(&["bob"], true),
    );
    let answer = world.token(Some(&alice)).await;
    assert_eq!(answer["token_type"], "Bearer");
    let token = answer["access_token"].as_str().unwrap().to_owned();
    if !opaque {
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
            .unwrap()
            .claims;
        assert_eq!(claims["cnf"]["x5t#S256"], x5t_s256(&alice.der));
    }
    // Without a certificate the token is not bound: a plain bearer token.
    let unbound = world.token(None).await["access_token"].as_str().unwrap().to_owned();

    let (log, _guard) = AccessLog::capture();
    let proxy = world.proxy("optional", opaque).await;
    assert_eq!(call(&world, &proxy, Some(&alice), &token).await, 200);
    assert_eq!(call(&world, &proxy, Some(&bob), &token).await, 401);
    assert_eq!(call(&world, &proxy, None, &token).await, 401);
    assert_eq!(call(&world, &proxy, None, &unbound).await, 200);
    assert_eq!(world.upstream.requests(), 2, "no refused request reached the upstream");
    assert_eq!(reasons(&log), ["ok", "cert_binding_mismatch", "cert_missing", "ok"]);
    proxy.shutdown().await;

    let proxy = world.proxy("required", opaque).await;
    assert_eq!(call(&world, &proxy, Some(&alice), &token).await, 200);
    assert_eq!(call(&world, &proxy, Some(&bob), &token).await, 401);
    assert_eq!(world.upstream.requests(), 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_jwt_from_the_mtls_issuer_is_bound_to_its_certificate() {
    a_token_from_the_mtls_issuer_is_bound_to_its_certificate("issuer-mtls-jwt", false).await;
}

#[tokio::test]
async fn an_introspected_token_from_the_mtls_issuer_is_bound_to_its_certificate() {
    a_token_from_the_mtls_issuer_is_bound_to_its_certificate("issuer-mtls-opaque", true).await;
}

/// Without client certificates the issuer does not claim to bind tokens to them.
#[tokio::test]
async fn a_plain_issuer_does_not_advertise_certificate_bound_tokens() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let metadata = metadata(client(), &issuer).await;
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], false);
}
