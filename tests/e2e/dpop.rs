//! Sender-constrained tokens end to end over real sockets: DPoP-bound tokens (RFC 9449) with
//! proofs made per request, each way a proof can be wrong, server nonces, the challenges of
//! each route mode, tokens the development issuer binds at its token endpoint (JWT and
//! introspection), certificate-bound tokens (RFC 8705) with a forwarded certificate from a
//! trusted or untrusted peer, and the RFC 9728 metadata. Every refusal leaves the upstream
//! untouched.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::{IntrospectionClient, Upstream, client, dev_issuer, scrape_metrics, start_proxy};
use scopegate::dev::{
    AccessTokenRequest, DevIssuer, DevIssuerConfig, DpopProver, KeyAlg, SigningKey, mint, mint_unsigned,
};
use serde_json::{Value, json};

const API: &str = "https://api.test";

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
}

/// `items` takes both schemes (`dpop.mode = "allowed"`), `strict` requires DPoP, `legacy`
/// has DPoP off.
fn routes(builder: ConfigBuilder) -> ConfigBuilder {
    builder
        .set("dpop.mode", "allowed")
        .route(RouteBuilder::new("items", "/items/**").scopes(&["read"]))
        .route(
            RouteBuilder::new("strict", "/strict/**")
                .scopes(&["read"])
                .set("dpop", "required"),
        )
        .route(
            RouteBuilder::new("legacy", "/legacy/**")
                .scopes(&["read"])
                .set("dpop", "off"),
        )
}

async fn world_with(edit: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let builder = routes(ConfigBuilder::new(&upstream.url()).issuer(IssuerBuilder::new(issuer.issuer(), &[API])));
    let proxy = start_proxy(edit(builder).build()).await;
    wait_ready(&proxy).await;
    World {
        issuer,
        upstream,
        proxy,
    }
}

async fn wait_ready(proxy: &scopegate::server::Running) {
    crate::common::eventually("the proxy loads the issuer's keys", || proxy.app.is_ready()).await;
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    /// A token for `API` with `read`, bound by `cnf` when given.
    fn token(&self, cnf: Option<Value>) -> String {
        let mut request = AccessTokenRequest::new("read", &[API]);
        if let Some(cnf) = cnf {
            request.extra_claims.insert("cnf".into(), cnf);
        }
        self.issuer.mint_access_token(&request)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        authorization: Option<String>,
        proofs: &[String],
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client().request(method, self.url(path));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        for proof in proofs {
            request = request.header("dpop", proof);
        }
        request.send().await.unwrap()
    }

    /// Sends with `Authorization: DPoP` and one proof.
    async fn dpop(&self, method: &str, path: &str, token: &str, proof: String) -> reqwest::Response {
        self.send(method, path, Some(format!("DPoP {token}")), &[proof]).await
    }
}

fn challenges(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Asserts a 401 whose one challenge is `DPoP` with `error` (and `algs`), and that nothing
/// reached the upstream.
fn assert_dpop_refusal(world: &World, response: &reqwest::Response, error: &str, what: &str, upstream_before: u64) {
    assert_eq!(response.status(), 401, "{what}");
    let challenges = challenges(response);
    assert_eq!(challenges.len(), 1, "{what}: {challenges:?}");
    let challenge = &challenges[0];
    assert!(challenge.starts_with("DPoP "), "{what}: {challenge}");
    assert!(challenge.contains(&format!("error=\"{error}\"")), "{what}: {challenge}");
    assert!(
        challenge.contains("algs=\"ES256 ES384 RS256 PS256 EdDSA\""),
        "{what}: {challenge}"
    );
    assert_eq!(
        world.upstream.requests(),
        upstream_before,
        "{what}: nothing is forwarded"
    );
}

#[tokio::test]
async fn a_proof_is_checked_on_every_request_and_each_broken_one_is_refused() {
    let world = world_with(|b| b).await;
    let prover = DpopProver::generate(KeyAlg::ES256).unwrap();
    let bound = world.token(Some(json!({ "jkt": prover.thumbprint() })));
    let url = world.url("/items/1");

    let accepted = prover.proof("GET", &url, Some(&bound), None);
    let response = world.dpop("GET", "/items/1", &bound, accepted.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(world.upstream.requests(), 1);
    assert!(
        !world.upstream.last().has_header("dpop"),
        "a proof is scopegate's to check, not the upstream's"
    );

    // From here the token's verification is cached: only the proof decides.
    let before = world.upstream.requests();
    let replayed = world.dpop("GET", "/items/1", &bound, accepted).await;
    assert_dpop_refusal(&world, &replayed, "invalid_dpop_proof", "replayed jti", before);

    // Each a proof for GET /items/1 with `bound`, wrong in one way.
    let proof_with = |edit: &dyn Fn(&mut Value, &mut serde_json::Map<String, Value>)| {
        let (mut header, mut claims) = prover.parts("GET", &url, Some(&bound), None);
        edit(&mut header, &mut claims);
        prover.sign(&header, &claims)
    };
    let other_key = DpopProver::generate(KeyAlg::ES256).unwrap();
    let another_token = world.token(Some(json!({ "jkt": prover.thumbprint() })));
    let elsewhere = format!("http://localhost:{}/items/1", world.proxy.addr.port());
    let (header, claims) = prover.parts("GET", &url, Some(&bound), None);
    let mut none = header.clone();
    none["alg"] = json!("none");
    let hmac = SigningKey::hmac("k", b"a shared secret of thirty-two b!");
    let mut hs256 = header.clone();
    hs256["alg"] = json!("HS256");
    hs256["jwk"] = hmac.public_jwk();
    let signed = prover.sign(&header, &claims);
    let (head, _) = signed.rsplit_once('.').unwrap();
    let other_claims = proof_with(&|_, c| {
        c.insert("htm".into(), json!("GET "));
    });
    let (_, other_signature) = other_claims.rsplit_once('.').unwrap();
    let invalid = "invalid_dpop_proof";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "thumbprint is not cnf.jkt",
            other_key.proof("GET", &url, Some(&bound), None),
            "invalid_token",
        ),
        (
            "htu of another path",
            prover.proof("GET", &world.url("/items/2"), Some(&bound), None),
            invalid,
        ),
        (
            "htu of another host",
            prover.proof("GET", &elsewhere, Some(&bound), None),
            invalid,
        ),
        (
            "htm of another method",
            prover.proof("POST", &url, Some(&bound), None),
            invalid,
        ),
        (
            "stale iat",
            proof_with(&|_, c| drop(c.insert("iat".into(), json!(now() - 600)))),
            invalid,
        ),
        (
            "iat in the future",
            proof_with(&|_, c| drop(c.insert("iat".into(), json!(now() + 600)))),
            invalid,
        ),
        (
            "ath of another token",
            prover.proof("GET", &url, Some(&another_token), None),
            invalid,
        ),
        ("no ath", proof_with(&|_, c| drop(c.remove("ath"))), invalid),
        (
            "alg none",
            mint_unsigned(&none, &Value::Object(claims.clone())),
            invalid,
        ),
        (
            "HS256 with an oct key",
            mint(&hs256, &Value::Object(claims.clone()), &hmac),
            invalid,
        ),
        // Whatever the private scalar's value: a `jwk` with a private member is refused
        // before its signature is looked at.
        (
            "private key in jwk",
            proof_with(&|h, _| h["jwk"]["d"] = json!("bm90IHRoZSByZWFsIHNjYWxhcg")),
            invalid,
        ),
        (
            "typ is not dpop+jwt",
            proof_with(&|h, _| h["typ"] = json!("JWT")),
            invalid,
        ),
        (
            "signature of other claims",
            format!("{head}.{other_signature}"),
            invalid,
        ),
    ];
    for (what, proof, error) in cases {
        let response = world.dpop("GET", "/items/1", &bound, proof).await;
        assert_dpop_refusal(&world, &response, error, what, before);
    }

    let response = world.send("GET", "/items/1", Some(format!("DPoP {bound}")), &[]).await;
    assert_dpop_refusal(&world, &response, "invalid_dpop_proof", "no proof", before);
    let two = [
        prover.proof("GET", &url, Some(&bound), None),
        prover.proof("GET", &url, Some(&bound), None),
    ];
    let response = world.send("GET", "/items/1", Some(format!("DPoP {bound}")), &two).await;
    assert_dpop_refusal(&world, &response, "invalid_dpop_proof", "two DPoP headers", before);

    // A bound token as a bearer token: today's refusal, with its Bearer challenge.
    let response = world
        .send("GET", "/items/1", Some(format!("Bearer {bound}")), &[])
        .await;
    assert_eq!(response.status(), 401);
    assert!(
        challenges(&response)[0].starts_with("Bearer ") && challenges(&response)[0].contains("invalid_token"),
        "{:?}",
        challenges(&response)
    );
    // ... also with a valid proof alongside: the Bearer scheme is a bearer request.
    let response = world
        .send(
            "GET",
            "/items/1",
            Some(format!("Bearer {bound}")),
            &[prover.proof("GET", &url, Some(&bound), None)],
        )
        .await;
    assert_eq!(response.status(), 401);

    // The DPoP scheme with a token bound to nothing.
    let plain = world.token(None);
    let response = world
        .dpop("GET", "/items/1", &plain, prover.proof("GET", &url, Some(&plain), None))
        .await;
    assert_dpop_refusal(&world, &response, "invalid_token", "DPoP with an unbound token", before);
    assert_eq!(world.upstream.requests(), before);

    // After all that, a fresh proof still works, and the refusals were counted by reason.
    let response = world
        .dpop("GET", "/items/1", &bound, prover.proof("GET", &url, Some(&bound), None))
        .await;
    assert_eq!(response.status(), 200);
    let metrics = scrape_metrics(world.proxy.admin_addr).await;
    for reason in [
        "dpop_replay",
        "dpop_binding_mismatch",
        "dpop_htu_mismatch",
        "dpop_htm_mismatch",
        "dpop_proof_stale",
        "dpop_proof_missing",
        "dpop_ath_mismatch",
        "dpop_proof_invalid",
        "dpop_bad_signature",
        "dpop_token_not_bound",
        "sender_constrained",
    ] {
        let line = format!("scopegate_auth_decisions_total{{decision=\"deny\",reason=\"{reason}\"}}");
        let counted = metrics
            .lines()
            .find(|l| l.starts_with(&line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(counted >= 1.0, "{reason} counted: {line} in\n{metrics}");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn an_rsa_proof_key_works_too() {
    let world = world_with(|b| b).await;
    let prover = DpopProver::generate(KeyAlg::RS256).unwrap();
    let bound = world.token(Some(json!({ "jkt": prover.thumbprint() })));
    let proof = prover.proof("DELETE", &world.url("/strict/9"), Some(&bound), None);
    let response = world.dpop("DELETE", "/strict/9", &bound, proof).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn challenges_follow_the_route_mode() {
    let world = world_with(|b| b).await;
    let prover = DpopProver::generate(KeyAlg::ES256).unwrap();
    let bound = world.token(Some(json!({ "jkt": prover.thumbprint() })));
    let plain = world.token(None);

    // A route that takes both: a missing token is told about both schemes.
    let response = world.send("GET", "/items/1", None, &[]).await;
    let both = challenges(&response);
    assert_eq!(response.status(), 401);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(
        both[0].starts_with("Bearer ") && !both[0].contains("error="),
        "{both:?}"
    );
    assert!(
        both[1].starts_with("DPoP ") && both[1].contains("algs=\"") && !both[1].contains("error="),
        "{both:?}"
    );
    let response = world
        .send("GET", "/items/1", Some(format!("Bearer {plain}")), &[])
        .await;
    assert_eq!(response.status(), 200, "a bearer token where both are allowed");

    // Required: only DPoP, and a bearer token is refused in the DPoP scheme.
    let response = world.send("GET", "/strict/1", None, &[]).await;
    let only = challenges(&response);
    assert_eq!(only.len(), 1, "{only:?}");
    assert!(
        only[0].starts_with("DPoP ") && only[0].contains("scope=\"read\""),
        "{only:?}"
    );
    let before = world.upstream.requests();
    let response = world
        .send("GET", "/strict/1", Some(format!("Bearer {plain}")), &[])
        .await;
    assert_dpop_refusal(
        &world,
        &response,
        "invalid_token",
        "bearer on a DPoP-only route",
        before,
    );
    let proof = prover.proof("GET", &world.url("/strict/1"), Some(&bound), None);
    assert_eq!(world.dpop("GET", "/strict/1", &bound, proof).await.status(), 200);

    // Off: today's behaviour. `DPoP` is not a credential there, and bound tokens are refused.
    let response = world.send("GET", "/legacy/1", None, &[]).await;
    assert_eq!(challenges(&response).len(), 1);
    assert!(challenges(&response)[0].starts_with("Bearer "));
    let before = world.upstream.requests();
    let proof = prover.proof("GET", &world.url("/legacy/1"), Some(&bound), None);
    let response = world.dpop("GET", "/legacy/1", &bound, proof).await;
    assert_eq!(response.status(), 401);
    assert!(!challenges(&response)[0].contains("error="), "no credentials it takes");
    let response = world
        .send("GET", "/legacy/1", Some(format!("Bearer {bound}")), &[])
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(world.upstream.requests(), before);
}

#[tokio::test]
async fn with_nonces_the_first_proof_is_answered_with_one_and_the_retry_accepted() {
    let world = world_with(|b| b.set("dpop.use_nonce", true)).await;
    let prover = DpopProver::generate(KeyAlg::ES256).unwrap();
    let bound = world.token(Some(json!({ "jkt": prover.thumbprint() })));
    let url = world.url("/items/1");

    let response = world
        .dpop("GET", "/items/1", &bound, prover.proof("GET", &url, Some(&bound), None))
        .await;
    assert_dpop_refusal(&world, &response, "use_dpop_nonce", "no nonce", 0);
    let nonce = response.headers()["dpop-nonce"].to_str().unwrap().to_string();

    let response = world
        .dpop(
            "GET",
            "/items/1",
            &bound,
            prover.proof("GET", &url, Some(&bound), Some("forged")),
        )
        .await;
    assert_dpop_refusal(&world, &response, "use_dpop_nonce", "a nonce scopegate did not make", 0);
    assert!(response.headers().contains_key("dpop-nonce"));

    let response = world
        .dpop(
            "GET",
            "/items/1",
            &bound,
            prover.proof("GET", &url, Some(&bound), Some(&nonce)),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(world.upstream.requests(), 1);
}

/// The development issuer binds the tokens of a token request that carries a proof, in
/// the JWT (`cnf.jkt`) and in introspection; scopegate takes them with proofs only.
#[tokio::test]
async fn tokens_bound_at_the_token_endpoint_work_with_their_proofs_jwt_and_introspected() {
    for opaque in [false, true] {
        let issuer = dev_issuer(DevIssuerConfig {
            opaque_access_tokens: opaque,
            ..DevIssuerConfig::default()
        })
        .await;
        let caller = IntrospectionClient::register(&issuer, "client_secret_basic");
        let upstream = Upstream::start().await;
        let mut issuer_config = IssuerBuilder::new(issuer.issuer(), &[API]);
        if opaque {
            issuer_config = issuer_config
                .introspection(&caller.client_id, &caller.secret_file)
                .set("token_validation", "introspection");
        }
        let config = routes(ConfigBuilder::new(&upstream.url()).issuer(issuer_config)).build();
        let proxy = start_proxy(config).await;
        if !opaque {
            wait_ready(&proxy).await;
        }
        let world = World {
            issuer,
            upstream,
            proxy,
        };

        let prover = DpopProver::generate(KeyAlg::ES256).unwrap();
        let token_endpoint = world.issuer.token_endpoint();
        let answer: Value = client()
            .post(&token_endpoint)
            .basic_auth(&caller.client_id, Some(&caller.client_secret))
            .header("dpop", prover.proof("POST", &token_endpoint, None, None))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=read&resource=https%3A%2F%2Fapi.test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["token_type"], "DPoP", "{answer}");
        let token = answer["access_token"].as_str().unwrap().to_string();
        if !opaque {
            let payload = token.split('.').nth(1).unwrap();
            let claims: Value = serde_json::from_slice(&b64url_decode(payload)).unwrap();
            assert_eq!(claims["cnf"]["jkt"], prover.thumbprint());
        }
        let refused = client()
            .post(&token_endpoint)
            .basic_auth(&caller.client_id, Some(&caller.client_secret))
            .header("dpop", prover.proof("GET", &token_endpoint, None, None))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=read")
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            400,
            "a proof for another method is refused by the issuer"
        );

        let proof = prover.proof("GET", &world.url("/strict/1"), Some(&token), None);
        let response = world.dpop("GET", "/strict/1", &token, proof).await;
        assert_eq!(response.status(), 200, "opaque={opaque}");
        let response = world
            .send("GET", "/items/1", Some(format!("Bearer {token}")), &[])
            .await;
        assert_eq!(response.status(), 401, "opaque={opaque}: bound token as bearer");
        let stranger = DpopProver::generate(KeyAlg::ES256).unwrap();
        let proof = stranger.proof("GET", &world.url("/strict/1"), Some(&token), None);
        let response = world.dpop("GET", "/strict/1", &token, proof).await;
        assert_eq!(
            response.status(),
            401,
            "opaque={opaque}: stolen token with the thief's key"
        );
        assert_eq!(world.upstream.requests(), 1);
    }
}

const XFCC: &str = "x-forwarded-client-cert";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// RFC 8705 behind a TLS-terminating proxy: the certificate comes from `XFCC`, believed only
/// from trusted peers.
#[tokio::test]
async fn certificate_bound_tokens_need_the_forwarded_certificate_of_a_trusted_peer() {
    // Stand-in DER bytes: only their SHA-256 is compared (RFC 8705 §3.1).
    let certificate = b"0\x82\x01\x0a a client certificate's DER".to_vec();
    let other = b"0\x82\x01\x0a another certificate".to_vec();
    let x5t = scopegate::tls::x5t_s256(&certificate);
    let trusted = |peers: &'static [&'static str]| {
        move |b: ConfigBuilder| {
            b.set("cert_binding.header", XFCC).set(
                "cert_binding.trusted_peers",
                peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            )
        }
    };
    let world = world_with(trusted(&["127.0.0.1/32", "::1/128"])).await;
    let bound = world.token(Some(json!({ "x5t#S256": x5t })));
    let send = |xfcc: Option<String>| {
        let mut request = client()
            .get(world.url("/items/1"))
            .header("authorization", format!("Bearer {bound}"));
        if let Some(xfcc) = xfcc {
            request = request.header(XFCC, xfcc);
        }
        request.send()
    };
    let by_hash = format!(
        "By=spiffe://mesh/api;Hash={};Subject=\"CN=client\"",
        hex(&sha256(&certificate))
    );
    assert_eq!(send(Some(by_hash.clone())).await.unwrap().status(), 200);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64_standard(&certificate)
    );
    let by_cert = format!("Cert=\"{}\"", url_encode(&pem));
    assert_eq!(send(Some(by_cert)).await.unwrap().status(), 200);

    let before = world.upstream.requests();
    let wrong = send(Some(format!("Hash={}", hex(&sha256(&other))))).await.unwrap();
    assert_eq!(wrong.status(), 401);
    let challenge = challenges(&wrong).join(" ");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(send(None).await.unwrap().status(), 401, "no certificate");
    assert_eq!(world.upstream.requests(), before);

    // nginx's URL-encoded PEM, under a name no other rule strips: from a peer that is not
    // trusted it is removed, never believed; from a trusted one believed and passed on.
    const NGINX: &str = "ssl-client-cert";
    let escaped = url_encode(&pem);
    for (peers, trusted) in [("10.0.0.0/8", false), ("127.0.0.0/8", true)] {
        let world = world_with(|b| {
            b.set("cert_binding.header", NGINX)
                .set("cert_binding.format", "pem_url_encoded")
                .set("cert_binding.trusted_peers", vec![peers.to_string()])
        })
        .await;
        let send = |token: String| {
            client()
                .get(world.url("/items/1"))
                .header("authorization", format!("Bearer {token}"))
                .header(NGINX, &escaped)
                .send()
        };
        let bound = world.token(Some(json!({ "x5t#S256": x5t })));
        let expected = if trusted { 200 } else { 401 };
        assert_eq!(send(bound).await.unwrap().status(), expected, "trusted: {trusted}");
        assert_eq!(world.upstream.requests(), u64::from(trusted));
        assert_eq!(send(world.token(None)).await.unwrap().status(), 200);
        let forwarded = world.upstream.last().header(NGINX).map(str::to_string);
        assert_eq!(forwarded, trusted.then(|| escaped.clone()), "trusted: {trusted}");
    }
}

fn b64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// RFC 9728 §2: the metadata of resources whose routes take DPoP says so.
#[tokio::test]
async fn protected_resource_metadata_advertises_dpop() {
    let world = world_with(|b| {
        b.merge_toml(
            r#"
[[resource]]
uri = "https://api.test"
[[resource]]
uri = "https://api.test/strict/"
routes = ["strict"]
"#,
        )
    })
    .await;
    let document = |path: &'static str| {
        let url = world.url(path);
        async move { client().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let api = document("/.well-known/oauth-protected-resource").await;
    assert_eq!(
        api["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "RS256", "PS256", "EdDSA"])
    );
    assert_eq!(api["dpop_bound_access_tokens_required"], json!(false));
    let strict = document("/.well-known/oauth-protected-resource/strict").await;
    assert_eq!(strict["dpop_bound_access_tokens_required"], json!(true), "{strict}");
}

/// `explain` says what a route asks of DPoP, and shows the challenges a client would get.
#[tokio::test]
async fn explain_names_the_dpop_requirement() {
    use scopegate::explain::{Credentials, Loaded, explain};
    let config =
        routes(ConfigBuilder::new("http://127.0.0.1:9").issuer(IssuerBuilder::new("https://issuer.test", &[API])))
            .build();
    let loaded = Loaded { config };
    let strict = explain(&loaded, "GET", "/strict/1", &Credentials::None).await;
    let text = strict.to_string();
    assert!(text.contains("DPoP required"), "{text}");
    assert!(
        strict.www_authenticate.as_deref().unwrap().starts_with("DPoP "),
        "{text}"
    );
    let items = explain(&loaded, "GET", "/items/1", &Credentials::None)
        .await
        .to_string();
    assert!(items.contains("DPoP allowed"), "{items}");
    let legacy = explain(&loaded, "GET", "/legacy/1", &Credentials::None)
        .await
        .to_string();
    assert!(!legacy.contains("dpop:"), "{legacy}");
}
