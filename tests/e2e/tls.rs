//! TLS over real sockets, with certificates made here (rcgen): termination on the data
//! listener (HTTP/2 by ALPN, HTTP/1.1), certificate hot reload seen by new connections only,
//! client certificates (required, optional) and the certificate the request path sees,
//! the handshake deadline under the connection cap, HTTPS upstreams with a configured CA,
//! an issuer's discovery and JWKS over HTTPS with an extra CA, and the config errors `check`
//! reports.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder, bearer_params};
use crate::common::pki::{Ca, Files, Leaf};
use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, DpopProver, Endpoint, KeyAlg};
use scopegate::tls::x5t_s256;

const API: &str = "https://api.test";
/// The name the proxy's certificates are issued for; clients resolve it to the listener.
const HOST: &str = "scopegate.test";

/// A client that trusts only `ca`, resolves [`HOST`] to `addr`, records the server's
/// certificate, and presents `identity` when given.
fn tls_client(ca: &Ca, addr: SocketAddr, identity: Option<&Leaf>) -> reqwest::Client {
    crate::common::pki::tls_client(ca, HOST, addr, identity)
}

/// The value of the counter `series` (name and labels exactly as exported), 0 when absent.
fn counter(scraped: &str, series: &str) -> u64 {
    scraped
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn url(proxy: &scopegate::server::Running, path: &str) -> String {
    format!("https://{HOST}:{}{path}", proxy.addr.port())
}

/// The DER of the certificate the server presented for `response`'s connection.
fn served_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .unwrap()
        .to_vec()
}

/// A dev issuer whose tokens name [`API`], an upstream, and a config with one protected
/// route and `[listener.tls]` from `files`.
async fn world(files: &Files) -> (DevIssuer, Upstream, ConfigBuilder) {
    let issuer = dev_issuer(DevIssuerConfig {
        default_audience: Some(API.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let upstream = Upstream::start().await;
    let builder = ConfigBuilder::new(&upstream.url())
        .issuer(IssuerBuilder::new(issuer.issuer(), &[API]))
        .route(RouteBuilder::new("api", "/api/**").scopes(&["read"]))
        .set("listener.tls.cert_file", files.path("cert.pem"))
        .set("listener.tls.key_file", files.path("key.pem"));
    (issuer, upstream, builder)
}

fn token(issuer: &DevIssuer) -> String {
    issuer.mint_access_token(&AccessTokenRequest::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_reaches_the_upstream_with_the_token_checked() {
    let files = Files::new("h2");
    let ca = Ca::new("test CA");
    files.server(&ca.issue(&[HOST], false));
    let (issuer, upstream, builder) = world(&files).await;
    // TLS is terminated on the data plane's own worker threads, as in production.
    let proxy = start_ready_proxy(builder.set("listener.worker_threads", 2).build()).await;
    let client = tls_client(&ca, proxy.addr, None);

    let refused = client.get(url(&proxy, "/api/items")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.version(), http::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(upstream.requests(), 0);

    let allowed = client
        .get(url(&proxy, "/api/items"))
        .bearer_auth(token(&issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.version(), http::Version::HTTP_2);
    assert_eq!(upstream.requests(), 1);
    assert_eq!(upstream.last().path_and_query, "/api/items");

    // An HTTP/1.1-only client negotiates http/1.1 on the same listener.
    let http1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .resolve(HOST, proxy.addr)
        .build()
        .unwrap();
    let allowed = http1
        .get(url(&proxy, "/api/items"))
        .bearer_auth(token(&issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (allowed.status().as_u16(), allowed.version()),
        (200, http::Version::HTTP_11)
    );
    assert_eq!(upstream.requests(), 2);

    // Plain HTTP to the TLS port is not served.
    let plain = raw_request(
        proxy.addr,
        b"GET /api/items HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&plain), 0, "{plain}");
    assert_eq!(upstream.requests(), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_is_served_to_new_connections_and_a_bad_one_is_refused() {
    let files = Files::new("reload");
    let ca = Ca::new("test CA");
    let first = ca.issue(&[HOST], false);
    files.server(&first);
    let (_issuer, _upstream, builder) = world(&files).await;
    let proxy = start_proxy(builder.set("reload.interval", "100ms").build()).await;
    let metrics = proxy.admin_addr;

    let old = tls_client(&ca, proxy.addr, None);
    let before = old.get(url(&proxy, "/healthz-none")).send().await.unwrap();
    assert_eq!(served_certificate(&before), first.der);

    let second = ca.issue(&[HOST], false);
    files.server(&second);
    let seen = eventually_some("a new connection gets the new certificate", || async {
        let fresh = tls_client(&ca, proxy.addr, None);
        let response = fresh.get(url(&proxy, "/x")).send().await.ok()?;
        let served = served_certificate(&response);
        (served != first.der).then_some(served)
    })
    .await;
    assert_eq!(seen, second.der);
    // The established connection keeps the session it started with.
    let still = old.get(url(&proxy, "/y")).send().await.unwrap();
    assert_eq!(served_certificate(&still), first.der);
    const SUCCESS: &str = "scopegate_tls_reloads_total{result=\"success\"}";
    const REJECTED: &str = "scopegate_tls_reloads_total{result=\"rejected\"}";
    let scraped = scrape_metrics(metrics).await;
    assert!(counter(&scraped, SUCCESS) >= 1, "{scraped}");

    // A key that is not the certificate's: rejected, counted, the running one stays.
    let rejected = counter(&scraped, REJECTED);
    let stranger = ca.issue(&[HOST], false);
    files.write("key.pem", &stranger.key_pem);
    eventually_some("the bad pair is rejected", || async {
        (counter(&scrape_metrics(metrics).await, REJECTED) > rejected).then_some(())
    })
    .await;
    let fresh = tls_client(&ca, proxy.addr, None);
    let response = fresh.get(url(&proxy, "/z")).send().await.unwrap();
    assert_eq!(served_certificate(&response), second.der);
    proxy.shutdown().await;
}

/// The `client_cert` field of the access-log events of requests to `path`.
fn logged_client_cert(log: &AccessLog, path: &str) -> Vec<String> {
    log.events()
        .into_iter()
        .filter(|event| event.get("path").map(String::as_str) == Some(path))
        .map(|event| event.get("client_cert").cloned().unwrap_or_default())
        .collect()
}

/// A proxy asking for client certificates chaining to `client_ca`, its access log captured.
struct Mtls {
    ca: Ca,
    client_ca: Ca,
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    log: AccessLog,
    _log_guard: tracing::subscriber::DefaultGuard,
    _files: Files,
}

impl Mtls {
    /// Must run on a current-thread runtime: the access log is captured on this thread.
    async fn start(test: &str, client_auth: &str) -> Mtls {
        Mtls::start_with(test, client_auth, |builder| builder).await
    }

    /// [`Mtls::start`] with more settings.
    async fn start_with(test: &str, client_auth: &str, configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Mtls {
        let files = Files::new(test);
        let (ca, client_ca) = (Ca::new("server CA"), Ca::new("client CA"));
        files.server(&ca.issue(&[HOST], false));
        files.write("clients.pem", &client_ca.pem);
        let (issuer, upstream, builder) = world(&files).await;
        let (log, _log_guard) = AccessLog::capture();
        let config = configure(builder)
            .set("listener.tls.client_auth", client_auth)
            .set("listener.tls.client_ca_file", files.path("clients.pem"))
            .build();
        let proxy = start_ready_proxy(config).await;
        Mtls {
            ca,
            client_ca,
            issuer,
            upstream,
            proxy,
            log,
            _log_guard,
            _files: files,
        }
    }

    /// A GET with a valid token over a new connection presenting `identity`.
    async fn get(&self, identity: Option<&Leaf>, path: &str) -> reqwest::Result<reqwest::Response> {
        tls_client(&self.ca, self.proxy.addr, identity)
            .get(url(&self.proxy, path))
            .bearer_auth(token(&self.issuer))
            .send()
            .await
    }
}

#[tokio::test]
async fn a_required_client_certificate_is_checked_in_the_handshake() {
    let world = Mtls::start("mtls-required", "required").await;
    let refused = world.get(None, "/api/anonymous").await;
    assert!(refused.is_err(), "{refused:?}");
    let mallory = Ca::new("other CA").issue(&["mallory"], true);
    let refused = world.get(Some(&mallory), "/api/outsider").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(world.upstream.requests(), 0);
    let scraped = scrape_metrics(world.proxy.admin_addr).await;
    assert!(
        counter(&scraped, "scopegate_tls_handshake_failures_total{reason=\"failed\"}") >= 2,
        "{scraped}"
    );

    let alice = world.client_ca.issue(&["alice"], true);
    let allowed = world.get(Some(&alice), "/api/alice").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(world.upstream.requests(), 1);
    // The request path saw the verified certificate: its RFC 8705 thumbprint is logged.
    assert_eq!(logged_client_cert(&world.log, "/api/alice"), vec![x5t_s256(&alice.der)]);
    world.proxy.shutdown().await;
}

#[tokio::test]
async fn an_optional_client_certificate_may_be_left_out() {
    let world = Mtls::start("mtls-optional", "optional").await;
    let allowed = world.get(None, "/api/anonymous").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(logged_client_cert(&world.log, "/api/anonymous"), vec!["-".to_string()]);

    let bob = world.client_ca.issue(&["bob"], true);
    let allowed = world.get(Some(&bob), "/api/bob").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(logged_client_cert(&world.log, "/api/bob"), vec![x5t_s256(&bob.der)]);

    // Optional still verifies what is presented.
    let mallory = Ca::new("other CA").issue(&["mallory"], true);
    let refused = world.get(Some(&mallory), "/api/outsider").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(world.upstream.requests(), 2);
    world.proxy.shutdown().await;
}

/// RFC 8705 with scopegate terminating TLS: a token bound to a certificate (`cnf.x5t#S256`)
/// is good only on a connection whose client certificate is that one.
#[tokio::test]
async fn a_certificate_bound_token_needs_the_connections_own_client_certificate() {
    let world = Mtls::start("mtls-bound", "optional").await;
    let alice = world.client_ca.issue(&["alice"], true);
    let bob = world.client_ca.issue(&["bob"], true);
    let mut request = AccessTokenRequest::default();
    request
        .extra_claims
        .insert("cnf".into(), serde_json::json!({ "x5t#S256": x5t_s256(&alice.der) }));
    let bound = world.issuer.mint_access_token(&request);
    let send = |identity: Option<&Leaf>, path: &str| {
        tls_client(&world.ca, world.proxy.addr, identity)
            .get(url(&world.proxy, path))
            .bearer_auth(&bound)
            .send()
    };
    let allowed = send(Some(&alice), "/api/alice").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(world.upstream.requests(), 1);
    // Bob's certificate is valid for the listener, but not the one the token names.
    let refused = send(Some(&bob), "/api/bob").await.unwrap();
    assert_eq!(refused.status(), 401, "{}", challenge(&refused));
    assert_eq!(
        bearer_params(Some(&challenge(&refused))).unwrap()["error"],
        "invalid_token"
    );
    let refused = send(None, "/api/nobody").await.unwrap();
    assert_eq!(refused.status(), 401, "{}", challenge(&refused));
    assert_eq!(world.upstream.requests(), 1, "no refused request reached the upstream");
    let reasons: Vec<String> = world
        .log
        .events()
        .into_iter()
        .filter_map(|event| event.get("reason").cloned())
        .collect();
    assert_eq!(reasons, ["ok", "cert_binding_mismatch", "cert_missing"]);
    world.proxy.shutdown().await;
}

/// A DPoP proof names the URI the client addressed (RFC 9449 §4.2 `htu`): on a TLS listener
/// that is `https://…`; the same proof for `http://…` is refused.
#[tokio::test]
async fn a_dpop_proof_on_a_tls_listener_names_https() {
    let world = Mtls::start_with("dpop-over-tls", "optional", |b| b.set("dpop.mode", "allowed")).await;
    let prover = DpopProver::generate(KeyAlg::ES256).unwrap();
    let mut request = AccessTokenRequest::default();
    request
        .extra_claims
        .insert("cnf".into(), serde_json::json!({ "jkt": prover.thumbprint() }));
    let bound = world.issuer.mint_access_token(&request);
    let https = url(&world.proxy, "/api/items");
    let send = |proof: String| {
        tls_client(&world.ca, world.proxy.addr, None)
            .get(url(&world.proxy, "/api/items"))
            .header("authorization", format!("DPoP {bound}"))
            .header("dpop", proof)
            .send()
    };
    let allowed = send(prover.proof("GET", &https, Some(&bound), None)).await.unwrap();
    assert_eq!(allowed.status(), 200, "{}", challenge(&allowed));
    let plain = https.replacen("https://", "http://", 1);
    let refused = send(prover.proof("GET", &plain, Some(&bound), None)).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(challenge(&refused).starts_with("DPoP "), "{}", challenge(&refused));
    assert_eq!(world.upstream.requests(), 1);
    world.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_handshake_holds_its_connection_slot_until_the_deadline() {
    let files = Files::new("handshake");
    let ca = Ca::new("test CA");
    files.server(&ca.issue(&[HOST], false));
    let (issuer, upstream, builder) = world(&files).await;
    let proxy = start_ready_proxy(
        builder
            .set("listener.max_connections", 1)
            .set("listener.tls.handshake_timeout", "1s")
            .build(),
    )
    .await;

    // Connects and says nothing: it takes the only slot.
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    eventually_some("the silent connection holds the slot", || async {
        scrape_metrics(proxy.admin_addr)
            .await
            .contains("scopegate_open_connections 1")
            .then_some(())
    })
    .await;
    // The server closes it at the deadline.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let scraped = scrape_metrics(proxy.admin_addr).await;
    assert!(
        scraped.contains("scopegate_tls_handshake_failures_total{reason=\"timeout\"} 1"),
        "{scraped}"
    );
    // The slot is free again.
    let client = tls_client(&ca, proxy.addr, None);
    let allowed = client
        .get(url(&proxy, "/api/after"))
        .bearer_auth(token(&issuer))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(upstream.requests(), 1);
    proxy.shutdown().await;
}

/// The status of a plain-HTTP GET of `/api/items` with a valid token from `issuer`.
async fn plain_get(proxy: SocketAddr, issuer: &DevIssuer) -> u16 {
    client()
        .get(format!("http://{proxy}/api/items"))
        .header("host", "api.test")
        .bearer_auth(token(issuer))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// rustls server settings for `leaf` (test upstreams and the issuer's TLS front).
fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![rustls::pki_types::CertificateDer::from(leaf.der.clone())];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_verified_against_its_configured_ca() {
    let files = Files::new("upstream");
    let ca = Ca::new("upstream CA");
    let upstream = Upstream::start_tls(server_config(&ca.issue(&["127.0.0.1"], false))).await;
    let issuer = dev_issuer(DevIssuerConfig {
        default_audience: Some(API.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let ca_file = files.write("upstream-ca.pem", &ca.pem);
    let other_ca_file = files.write("other-ca.pem", &Ca::new("other CA").pem);
    let https = format!("https://127.0.0.1:{}", upstream.addr.port());
    let config = |ca_file: Option<&str>, http2: bool| {
        let mut builder = ConfigBuilder::new(&https)
            .issuer(IssuerBuilder::new(issuer.issuer(), &[API]))
            .route(RouteBuilder::new("api", "/api/**").scopes(&["read"]))
            .set("upstream.http2_prior_knowledge", http2);
        if let Some(ca_file) = ca_file {
            builder = builder.set("upstream.ca_file", ca_file);
        }
        builder.build()
    };

    for http2 in [false, true] {
        let proxy = start_ready_proxy(config(Some(&ca_file), http2)).await;
        let before = upstream.requests();
        assert_eq!(
            plain_get(proxy.addr, &issuer).await,
            200,
            "http2_prior_knowledge = {http2}"
        );
        assert_eq!(upstream.requests(), before + 1);
        proxy.shutdown().await;
    }

    // The system trust store, or another CA, does not know the upstream's: 502, untouched.
    let before = upstream.requests();
    for ca_file in [None, Some(other_ca_file.as_str())] {
        let proxy = start_ready_proxy(config(ca_file, false)).await;
        assert_eq!(plain_get(proxy.addr, &issuer).await, 502, "ca_file = {ca_file:?}");
        proxy.shutdown().await;
    }
    assert_eq!(upstream.requests(), before);
}

/// A TLS front for `backend` on its own port: what an HTTPS authorization server looks
/// like to the proxy. Returns the front's address.
async fn tls_front(listener: TcpListener, config: Arc<rustls::ServerConfig>, backend: SocketAddr) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_jwks_over_https_trust_the_issuers_extra_ca() {
    let files = Files::new("issuer");
    let ca = Ca::new("issuer CA");
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https_issuer = format!("https://127.0.0.1:{}", front.local_addr().unwrap().port());
    let issuer = dev_issuer(DevIssuerConfig {
        issuer: Some(https_issuer.clone()),
        default_audience: Some(API.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let mut config = Arc::unwrap_or_clone(server_config(&ca.issue(&["127.0.0.1"], false)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls_front(front, Arc::new(config), issuer.addr()).await;
    let upstream = Upstream::start().await;
    let ca_file = files.write("issuer-ca.pem", &ca.pem);
    let builder = ConfigBuilder::new(&upstream.url())
        .issuer(IssuerBuilder::new(&https_issuer, &[API]).set("fetch_timeout", "2s"))
        .route(RouteBuilder::new("api", "/api/**").scopes(&["read"]));

    // Without the CA the issuer's certificate does not verify: no keys, 503, and nothing
    // reached the issuer.
    let proxy = start_proxy(builder.build()).await;
    assert_eq!(plain_get(proxy.addr, &issuer).await, 503);
    assert!(!proxy.app.is_ready());
    assert_eq!(issuer.count(Endpoint::Metadata) + issuer.count(Endpoint::Jwks), 0);
    proxy.shutdown().await;

    let proxy = start_ready_proxy(builder.set_issuer(0, "ca_file", ca_file).build()).await;
    assert_eq!(plain_get(proxy.addr, &issuer).await, 200);
    assert!(issuer.count(Endpoint::Metadata) >= 1 && issuer.count(Endpoint::Jwks) >= 1);
    assert_eq!(upstream.requests(), 1);
    proxy.shutdown().await;
}

/// Every problem of `builder`'s config, as `check` prints it.
fn problems(builder: &ConfigBuilder) -> String {
    match scopegate::config::Config::from_toml(&builder.toml(), "tls.toml") {
        Ok(_) => panic!("accepted:\n{}", builder.toml()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn check_reports_unusable_tls_files_and_prints_the_tls_settings() {
    let files = Files::new("check");
    let ca = Ca::new("test CA");
    let leaf = ca.issue(&[HOST], false);
    files.server(&leaf);
    let stranger = ca.issue(&[HOST], false);
    let stranger_key = files.write("stranger-key.pem", &stranger.key_pem);
    let garbage = files.write("garbage.pem", "not a certificate\n");
    let base = || {
        ConfigBuilder::new("http://127.0.0.1:3000")
            .route(RouteBuilder::new("open", "/**").public())
            .set("listener.tls.cert_file", files.path("cert.pem"))
            .set("listener.tls.key_file", files.path("key.pem"))
    };

    let missing = problems(&base().set("listener.tls.cert_file", files.path("absent.pem")));
    assert!(
        missing.contains("listener.tls.cert_file") && missing.contains("cannot read"),
        "{missing}"
    );
    let mismatch = problems(&base().set("listener.tls.key_file", stranger_key));
    assert!(
        mismatch.contains("listener.tls.key_file") && mismatch.contains("is not the private key of the certificate"),
        "{mismatch}"
    );
    let empty = problems(&base().set("listener.tls.cert_file", garbage.clone()));
    assert!(empty.contains("holds no certificate"), "{empty}");
    let endless = problems(&base().set("listener.tls.key_file", "/dev/zero"));
    assert!(endless.contains("larger than 4 MiB"), "{endless}");
    let no_ca = problems(&base().set("listener.tls.client_auth", "required"));
    assert!(
        no_ca.contains("listener.tls.client_ca_file") && no_ca.contains("is needed"),
        "{no_ca}"
    );
    let bad_ca = problems(
        &base()
            .set("listener.tls.client_auth", "optional")
            .set("listener.tls.client_ca_file", garbage.clone()),
    );
    assert!(bad_ca.contains("listener.tls.client_ca_file"), "{bad_ca}");
    let zero = problems(&base().set("listener.tls.handshake_timeout", "0s"));
    assert!(zero.contains("listener.tls.handshake_timeout"), "{zero}");
    let upstream_ca = problems(&base().set("upstream.ca_file", garbage.clone()));
    assert!(upstream_ca.contains("upstream.ca_file"), "{upstream_ca}");
    let issuer_ca = problems(
        &base()
            .issuer(IssuerBuilder::new("https://as.example", &[API]))
            .set_issuer(0, "ca_file", garbage),
    );
    assert!(issuer_ca.contains("issuer[0].ca_file"), "{issuer_ca}");

    let ca_file = files.write("ca.pem", &ca.pem);
    let config = files.write(
        "scopegate.toml",
        &base()
            .set("upstream.url", "https://127.0.0.1:3443")
            .set("upstream.ca_file", ca_file.clone())
            .set("listener.tls.client_auth", "required")
            .set("listener.tls.client_ca_file", ca_file)
            .toml(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .args(["check", "--config", &config])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("listener TLS: TLS 1.2+, ALPN h2 and http/1.1"),
        "{stdout}"
    );
    assert!(stdout.contains("client certificates required"), "{stdout}");
    assert!(
        stdout.contains("upstream TLS: TLS 1.2+, certificate verified against the 1 CA certificate(s)"),
        "{stdout}"
    );
}

#[test]
fn the_thumbprint_is_rfc_8705s_x5t_s256() {
    // RFC 8705 §3.1: base64url(SHA-256(DER)), no padding; SHA-256("abc") as a known vector.
    assert_eq!(x5t_s256(b"abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
}
