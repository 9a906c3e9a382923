//! scopegate in front of a third-party authorization server: the npm package `oidc-provider`
//! (pinned in tests/thirdparty/package-lock.json), run by Node.js on 127.0.0.1 with keys it
//! generates at start. Tokens come from its real token endpoint (client credentials with RFC
//! 8707 resource indicators, and an authorization-code flow for a refresh token); scopegate
//! finds its keys through discovery (RFC 8414, then OpenID Connect) or introspects (RFC 7662).
//! DPoP (RFC 9449) interop: tokens the server binds to keys of the npm package `dpop` (pinned
//! beside it), with that package's proofs, made by tests/thirdparty/dpop-client.mjs.
//!
//! Needs `node` on PATH and `npm ci --prefix tests/thirdparty` (run here when
//! tests/thirdparty/node_modules is missing).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::token_cli::follow_redirects;
use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// JWT access tokens (RFC 9068) signed RS256.
const API: &str = "https://api.scopegate.test";
/// JWT access tokens signed ES256.
const API_ES: &str = "https://api-es.scopegate.test";
/// JWT access tokens for a resource server scopegate does not protect.
const OTHER: &str = "https://other.scopegate.test";
/// Opaque access tokens, for introspection.
pub(crate) const OPAQUE: &str = "https://opaque.scopegate.test";
/// Opaque access tokens for another resource server.
const OPAQUE_OTHER: &str = "https://opaque-other.scopegate.test";

pub(crate) const APP: (&str, &str) = ("app", "app-secret");
const INTROSPECTION_SECRET: &str = "scopegate-secret";
const REDIRECT_URI: &str = "https://app.scopegate.test/callback";

/// The routes every proxy here protects; `write` implies `read`.
fn with_routes(builder: ConfigBuilder) -> ConfigBuilder {
    builder
        .implies("write", &["read"])
        .route(RouteBuilder::new("read", "/read/**").scopes(&["read"]))
        .route(RouteBuilder::new("write", "/write/**").scopes(&["write"]))
}

fn jwt_config(upstream: &str, issuer: &str) -> ConfigBuilder {
    with_routes(ConfigBuilder::new(upstream)).issuer(
        IssuerBuilder::new(issuer, &["https://api.scopegate.test", "https://api-es.scopegate.test"])
            .algorithms(&["RS256", "ES256"])
            .set("require_typ", true)
            .set("fetch_timeout", "2s"),
    )
}

fn introspection_config(upstream: &str, issuer: &str, secret_file: &std::path::Path) -> ConfigBuilder {
    with_routes(ConfigBuilder::new(upstream)).issuer(
        IssuerBuilder::new(issuer, &["https://opaque.scopegate.test"])
            .introspection("scopegate", secret_file)
            .set("fetch_timeout", "2s")
            .set("introspection.auth_method", "client_secret_basic")
            .set("introspection.positive_ttl", "1s")
            .set("introspection.negative_ttl", "1s"),
    )
}

fn thirdparty_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("thirdparty")
}

/// Runs `command` to completion within `limit`, killing it past that.
fn run_bounded(mut command: Command, what: &str, limit: Duration) {
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks for Node.js and installs the pinned packages once per test process (CI runs
/// `npm ci --prefix tests/thirdparty` beforehand, so this is for local runs).
fn ensure_installed() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let version = Command::new("node").arg("--version").stdin(Stdio::null()).output();
    match version {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "tests/thirdparty_as.rs needs Node.js (`node` on PATH, v18 or later) to run the oidc-provider \
             authorization server; install Node.js and npm, then run `npm ci --prefix tests/thirdparty` \
             ({other:?})"
        ),
    }
    let dir = thirdparty_dir();
    if dir
        .join("node_modules")
        .join("oidc-provider")
        .join("package.json")
        .is_file()
    {
        return;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
    run_bounded(
        npm,
        "`npm ci` in tests/thirdparty (needs npm and the npm registry)",
        Duration::from_secs(300),
    );
}

/// The oidc-provider process; killed and reaped when dropped.
pub(crate) struct AuthServer {
    child: Child,
    pub(crate) issuer: String,
    log: Arc<Mutex<String>>,
}

impl AuthServer {
    pub(crate) fn start() -> AuthServer {
        ensure_installed();
        let dir = thirdparty_dir();
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["0", "--exit-on-stdin-close"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node tests/thirdparty/server.mjs: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let mut server = AuthServer {
            child,
            issuer: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready.recv_timeout(left) {
                Ok(line) => {
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        server.issuer = issuer.trim().to_string();
                        return server;
                    }
                }
                Err(e) => panic!(
                    "oidc-provider did not print READY ({e}); its stderr:\n{}",
                    server.log.lock().unwrap()
                ),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// POSTs a form with client_secret_basic authentication and returns status and JSON.
    async fn post_form(&self, path: &str, (id, secret): (&str, &str), form: &[(&str, &str)]) -> (u16, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = client()
            .post(self.url(path))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// A client-credentials access token for `resource` (RFC 8707).
    async fn client_credentials(&self, scope: &str, resource: &str) -> String {
        let (status, json) = self
            .post_form(
                "/token",
                APP,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", scope),
                    ("resource", resource),
                ],
            )
            .await;
        assert_eq!(status, 200, "token endpoint: {json}");
        assert_eq!(json["token_type"], "Bearer", "{json}");
        json["access_token"].as_str().unwrap().to_string()
    }

    /// Revokes a token the app client holds (RFC 7009).
    async fn revoke(&self, token: &str) {
        let (status, json) = self.post_form("/token/revocation", APP, &[("token", token)]).await;
        assert_eq!(status, 200, "revocation endpoint: {json}");
    }

    /// Asks the server itself what it thinks of a token (as scopegate's client).
    pub(crate) async fn introspect(&self, token: &str) -> Value {
        let (status, json) = self
            .post_form(
                "/token/introspection",
                ("scopegate", INTROSPECTION_SECRET),
                &[("token", token)],
            )
            .await;
        assert_eq!(status, 200, "introspection endpoint: {json}");
        json
    }

    /// An authorization-code flow with PKCE, logged in as "alice" by the server's automatic
    /// interaction, `resource` in both the authorization and the token request: the token
    /// response.
    async fn authorization_code(&self, scope: &str, resource: Option<&str>) -> Value {
        let verifier = URL_SAFE_NO_PAD.encode(scopegate::token::token_digest(&format!("verifier-{scope}")));
        let challenge = URL_SAFE_NO_PAD.encode(scopegate::token::token_digest(&verifier));
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs([
            ("client_id", APP.0),
            ("response_type", "code"),
            ("scope", scope),
            ("redirect_uri", REDIRECT_URI),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "state-1"),
        ]);
        if let Some(resource) = resource {
            query.append_pair("resource", resource);
        }
        let query = query.finish();
        let start = self.url(&format!("/auth?{query}"));
        let landed = follow_redirects(&start, |next| next.as_str().starts_with(&format!("{REDIRECT_URI}?"))).await;
        let params: BTreeMap<String, String> = landed.query_pairs().into_owned().collect();
        assert_eq!(params.get("state").map(String::as_str), Some("state-1"), "{landed}");
        let code = params.get("code").cloned();
        let code = code.expect("the authorization flow did not come back with a code");
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier.as_str()),
        ];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let (status, json) = self.post_form("/token", APP, &form).await;
        assert_eq!(status, 200, "code exchange: {json}");
        json
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decoded JOSE header and claims of a compact JWT.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || -> Value {
        let segment = parts.next().unwrap_or_else(|| panic!("not a JWT: {token}"));
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    (decode(), decode())
}

struct Proxy {
    running: scopegate::server::Running,
    upstream: Upstream,
}

impl Proxy {
    async fn jwt(issuer: &AuthServer) -> Proxy {
        let upstream = Upstream::start().await;
        let running = start_proxy(jwt_config(&upstream.url(), &issuer.issuer).build()).await;
        eventually("scopegate loaded the keys of oidc-provider", || running.app.is_ready()).await;
        Proxy { running, upstream }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = client().request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, token).await
    }
}

async fn assert_invalid_token(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    let challenge = challenge(&response);
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 401, "{what}: {challenge} {body}");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
}

#[tokio::test]
async fn jwt_mode_enforces_scopes_on_oidc_provider_tokens() {
    let auth = AuthServer::start();
    let proxy = Proxy::jwt(&auth).await;

    let read = auth.client_credentials("read", API).await;
    let (header, claims) = jwt_parts(&read);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(claims["iss"], auth.issuer.as_str(), "{claims}");
    assert_eq!(claims["aud"], API, "{claims}");
    assert_eq!(claims["scope"], "read", "{claims}");

    let r = proxy.get("/read/items", Some(&read)).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert_eq!(r.text().await.unwrap(), "upstream saw /read/items");
    assert_eq!(proxy.upstream.requests(), 1);
    let seen = proxy.upstream.last();
    assert_eq!(seen.header("x-auth-client-id"), Some("app"), "{seen:?}");
    assert_eq!(seen.header("x-auth-issuer"), Some(auth.issuer.as_str()), "{seen:?}");
    assert!(!seen.has_header("authorization"), "{seen:?}");

    let r = proxy.send(reqwest::Method::POST, "/write/items", Some(&read)).await;
    assert_eq!(r.status(), 403);
    let c = challenge(&r);
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("write"), "{c}");

    let r = proxy.get("/read/items", None).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).starts_with("Bearer"), "{}", challenge(&r));
    assert!(!challenge(&r).contains("error="), "{}", challenge(&r));

    // Minted by the same server for another resource server: the audience does not match.
    let foreign = auth.client_credentials("read write", OTHER).await;
    assert_eq!(jwt_parts(&foreign).1["aud"], OTHER);
    assert_invalid_token(
        proxy.get("/read/items", Some(&foreign)).await,
        "token for another resource",
    )
    .await;

    assert_invalid_token(proxy.get("/read/items", Some("not-a-token")).await, "garbage").await;

    // Only the one allowed request reached the upstream.
    assert_eq!(proxy.upstream.requests(), 1);

    // A write token also satisfies read (scopes.implies); ES256 keys from the same JWKS.
    let write = auth.client_credentials("write", API_ES).await;
    assert_eq!(jwt_parts(&write).0["alg"], "ES256");
    let r = proxy.send(reqwest::Method::POST, "/write/items", Some(&write)).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    let r = proxy.get("/read/items", Some(&write)).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert_eq!(proxy.upstream.requests(), 3);

    proxy.running.shutdown().await;
}

#[tokio::test]
async fn jwt_mode_user_tokens_from_the_authorization_code_flow() {
    let auth = AuthServer::start();
    let proxy = Proxy::jwt(&auth).await;

    let tokens = auth.authorization_code("openid read", Some(API)).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(access);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    let r = proxy.get("/read/me", Some(access)).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    let seen = proxy.upstream.last();
    assert_eq!(seen.header("x-auth-subject"), Some("alice"), "{seen:?}");
    assert_eq!(seen.header("x-auth-client-id"), Some("app"), "{seen:?}");

    // The ID token is a JWT from the same issuer and keys, but not an access token.
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_ne!(jwt_parts(id_token).0["typ"], "at+jwt");
    assert_invalid_token(proxy.get("/read/me", Some(id_token)).await, "ID token").await;
    // The refresh token is opaque to a JWT-only resource server.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_invalid_token(proxy.get("/read/me", Some(refresh)).await, "refresh token").await;

    assert_eq!(proxy.upstream.requests(), 1);
    proxy.running.shutdown().await;
}

/// The introspection client's secret, in a file removed when dropped.
pub(crate) struct SecretFile(pub(crate) PathBuf);

impl SecretFile {
    pub(crate) fn new(secret: &str) -> SecretFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "scopegate-thirdparty-{}-{}.secret",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, secret).unwrap();
        SecretFile(path)
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn introspection_proxy(auth: &AuthServer, secret: &SecretFile) -> Proxy {
    let upstream = Upstream::start().await;
    let running = start_proxy(introspection_config(&upstream.url(), &auth.issuer, &secret.0).build()).await;
    Proxy { running, upstream }
}

/// Retries a request with a known-good token until scopegate has what it needs from the
/// authorization server (503 before that), bounded.
async fn until_served(proxy: &Proxy, token: &str) -> reqwest::Response {
    eventually_some("scopegate has what it needs from oidc-provider", || async {
        let r = proxy.get("/read/items", Some(token)).await;
        (r.status() != 503).then_some(r)
    })
    .await
}

#[tokio::test]
async fn introspection_mode_follows_revocation_at_oidc_provider() {
    let auth = AuthServer::start();
    let secret = SecretFile::new(INTROSPECTION_SECRET);
    let proxy = introspection_proxy(&auth, &secret).await;

    let opaque = auth.client_credentials("read", OPAQUE).await;
    assert_eq!(opaque.split('.').count(), 1, "expected an opaque token: {opaque}");
    let facts = auth.introspect(&opaque).await;
    assert_eq!(facts["active"], true, "{facts}");
    assert_eq!(facts["aud"], OPAQUE, "{facts}");

    let r = until_served(&proxy, &opaque).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert_eq!(proxy.upstream.requests(), 1);
    assert_eq!(proxy.upstream.last().header("x-auth-client-id"), Some("app"));
    let r = proxy.send(reqwest::Method::POST, "/write/items", Some(&opaque)).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("insufficient_scope"), "{}", challenge(&r));

    auth.revoke(&opaque).await;
    assert_eq!(auth.introspect(&opaque).await["active"], false);
    // positive_ttl is 1 s: the revocation must show within that plus a margin.
    let revoked_at = Instant::now();
    loop {
        let r = proxy.get("/read/items", Some(&opaque)).await;
        if r.status() == 401 {
            assert_invalid_token(r, "revoked token").await;
            break;
        }
        assert_eq!(r.status(), 200, "{}", challenge(&r));
        assert!(
            revoked_at.elapsed() < Duration::from_secs(4),
            "a revoked token was still accepted {:?} after revocation (positive_ttl = 1s)",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let allowed = proxy.upstream.requests();
    assert_invalid_token(proxy.get("/read/items", Some(&opaque)).await, "revoked token, again").await;
    assert_eq!(proxy.upstream.requests(), allowed);

    proxy.running.shutdown().await;
}

#[tokio::test]
async fn introspection_mode_refuses_inactive_foreign_and_refresh_tokens() {
    let auth = AuthServer::start();
    let secret = SecretFile::new(INTROSPECTION_SECRET);
    let proxy = introspection_proxy(&auth, &secret).await;

    let good = auth.client_credentials("read", OPAQUE).await;
    let r = until_served(&proxy, &good).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));

    assert_invalid_token(proxy.get("/read/items", Some("garbage-token")).await, "garbage").await;

    // Active at the authorization server, but for another resource server.
    let foreign = auth.client_credentials("read", OPAQUE_OTHER).await;
    let facts = auth.introspect(&foreign).await;
    assert_eq!(facts["active"], true, "{facts}");
    assert_eq!(facts["aud"], OPAQUE_OTHER, "{facts}");
    assert_invalid_token(
        proxy.get("/read/items", Some(&foreign)).await,
        "token for another resource",
    )
    .await;

    // A refresh token is active at the authorization server but is not an access token.
    let tokens = auth.authorization_code("openid read", None).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(auth.introspect(refresh).await["active"], true);
    assert_invalid_token(proxy.get("/read/items", Some(refresh)).await, "refresh token").await;

    // No token at all.
    let r = proxy.get("/read/items", None).await;
    assert_eq!(r.status(), 401);

    assert_eq!(proxy.upstream.requests(), 1);
    proxy.running.shutdown().await;
}

/// Runs tests/thirdparty/dpop-client.mjs (the `dpop` npm package): DPoP-bound tokens from
/// oidc-provider for `resource`, and proofs for GET `api_url`, by key algorithm.
fn dpop_client(issuer: &str, resource: &str, api_url: &str) -> Value {
    let mut child = Command::new("node")
        .arg(thirdparty_dir().join("dpop-client.mjs"))
        .args([issuer, resource, api_url])
        .current_dir(thirdparty_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node tests/thirdparty/dpop-client.mjs: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dpop-client.mjs did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "dpop-client.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// RFC 9449 interop: tokens oidc-provider binds to keys of the `dpop` npm package, with that
/// package's proofs, are accepted through scopegate (locally verified JWTs and introspected
/// opaque tokens alike); the package's proofs for another URI, method or token, by another
/// key, without `ath`, replayed or tampered with, and the tokens as bearer tokens, are not.
#[tokio::test]
async fn dpop_bound_tokens_and_proofs_from_third_party_code() {
    let auth = AuthServer::start();
    let secret = SecretFile::new(INTROSPECTION_SECRET);
    for resource in [API, OPAQUE] {
        let upstream = Upstream::start().await;
        let config = if resource == API {
            jwt_config(&upstream.url(), &auth.issuer)
        } else {
            introspection_config(&upstream.url(), &auth.issuer, &secret.0)
        };
        let running = start_proxy(config.set("dpop.mode", "allowed").build()).await;
        let proxy = Proxy { running, upstream };
        // Ready: keys loaded, or the introspection endpoint discovered.
        let plain = auth.client_credentials("read", resource).await;
        assert_eq!(until_served(&proxy, &plain).await.status(), 200);
        let mut forwarded = proxy.upstream.requests();

        let url = proxy.url("/read/items");
        let made = tokio::task::spawn_blocking({
            let (issuer, resource, url) = (auth.issuer.clone(), resource.to_string(), url.clone());
            move || dpop_client(&issuer, &resource, &url)
        })
        .await
        .unwrap();
        for alg in ["ES256", "PS256", "RS256"] {
            let made = &made[alg];
            assert_eq!(made["token_type"], "DPoP", "{alg}: {made}");
            let token = made["access_token"].as_str().unwrap();
            if resource == API {
                assert_eq!(jwt_parts(token).1["cnf"]["jkt"], made["jkt"], "{alg}");
            } else {
                assert_eq!(auth.introspect(token).await["cnf"]["jkt"], made["jkt"], "{alg}");
            }
            let send = |proof: &str, scheme: &str| {
                client()
                    .get(&url)
                    .header("authorization", format!("{scheme} {token}"))
                    .header("dpop", proof)
                    .send()
            };
            let proofs = &made["proofs"];
            let good = proofs["good"].as_str().unwrap();
            let r = send(good, "DPoP").await.unwrap();
            assert_eq!(r.status(), 200, "{alg}: {}", challenge(&r));
            forwarded += 1;
            assert_eq!(proxy.upstream.requests(), forwarded);
            let r = send(good, "DPoP").await.unwrap();
            assert_eq!(r.status(), 401, "{alg}: replayed");
            for variant in [
                "wrong_htu",
                "wrong_htm",
                "no_ath",
                "other_token",
                "other_key",
                "tampered_signature",
                "tampered_payload",
            ] {
                let r = send(proofs[variant].as_str().unwrap(), "DPoP").await.unwrap();
                let c = challenge(&r);
                assert_eq!(r.status(), 401, "{alg} {variant}: {c}");
                assert!(c.starts_with("DPoP ") && c.contains("error="), "{alg} {variant}: {c}");
            }
            let r = send(good, "Bearer").await.unwrap();
            assert_eq!(r.status(), 401, "{alg}: a DPoP-bound token as a bearer token");
            assert_eq!(
                proxy.upstream.requests(),
                forwarded,
                "{alg}: refusals are not forwarded"
            );
        }
        proxy.running.shutdown().await;
    }
}
