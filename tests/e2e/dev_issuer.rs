//! End-to-end tests of the embedded development authorization server over
//! real HTTP on 127.0.0.1.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::weak_rsa::WeakRsaKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use scopegate::dev::{
    AccessTokenRequest, ClientRegistration, DevIssuer, DevIssuerConfig, Endpoint, Fault, KeyAlg, RegisteredClient,
    SigningKey, b64url, mint, mint_unsigned,
};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:7777/callback";

struct Fx {
    issuer: DevIssuer,
    http: reqwest::Client,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn start_with(config: DevIssuerConfig) -> Fx {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = DevIssuer::start(listener, config).await.unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Fx { issuer, http }
}

async fn start() -> Fx {
    start_with(DevIssuerConfig::default()).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn pkce() -> (String, String) {
    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let verifier = b64url(&random);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, b64url(digest.as_ref()))
}

fn query_map(location: &str) -> HashMap<String, String> {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn claims(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let decode = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]))
}

impl Fx {
    async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    async fn get(&self, url: &str) -> Reply {
        Self::reply(self.http.get(url).send().await.unwrap()).await
    }

    async fn post_form(&self, url: &str, pairs: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        Self::reply(req.send().await.unwrap()).await
    }

    async fn register(&self, body: Value) -> Reply {
        let resp = self
            .http
            .post(self.issuer.registration_endpoint())
            .json(&body)
            .send()
            .await
            .unwrap();
        Self::reply(resp).await
    }

    async fn register_ok(&self, body: Value) -> RegisteredClient {
        let r = self.register(body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        serde_json::from_value(r.body).unwrap()
    }

    fn confidential(&self, grants: &[&str]) -> RegisteredClient {
        self.issuer.register_client(ClientRegistration {
            redirect_uris: vec![REDIRECT.into()],
            grant_types: grants.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
    }

    /// GET /oauth/authorize without following the redirect.
    async fn authorize(&self, pairs: &[(&str, &str)]) -> Reply {
        let url = format!("{}?{}", self.issuer.authorization_endpoint(), form(pairs));
        self.get(&url).await
    }

    async fn authorize_code(&self, pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let r = self.authorize(pairs).await;
        assert_eq!(r.status, StatusCode::FOUND, "{:?}", r.body);
        let location = r.headers["location"].to_str().unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        query_map(location)
    }

    /// Authorization code + PKCE for a public client; returns the token response.
    async fn public_flow(&self, client_id: &str, scope: &str) -> Value {
        let (verifier, challenge) = pkce();
        let q = self
            .authorize_code(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("scope", scope),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .await;
        let r = self
            .post_form(
                &self.issuer.token_endpoint(),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &q["code"]),
                    ("redirect_uri", REDIRECT),
                    ("client_id", client_id),
                    ("code_verifier", &verifier),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }

    async fn public_client(&self) -> RegisteredClient {
        self.register_ok(json!({
            "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "client_name": "test public client",
        }))
        .await
    }

    async fn introspect(&self, token: &str) -> Value {
        let rs = self.confidential(&["client_credentials"]);
        let secret = rs.client_secret.clone().unwrap();
        let r = self
            .post_form(
                &self.issuer.introspection_endpoint(),
                &[("token", token)],
                Some((&rs.client_id, &secret)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str, scope: Option<&str>) -> Reply {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        self.post_form(&self.issuer.token_endpoint(), &pairs, None).await
    }

    async fn jwks_kids(&self) -> Vec<String> {
        let r = self.get(&self.issuer.jwks_uri()).await;
        r.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Verify a JWT's signature against the issuer's JWKS.
    async fn verify_with_jwks(&self, jwt: &str) -> bool {
        let (header, _) = claims(jwt);
        let jwks = self.get(&self.issuer.jwks_uri()).await.body;
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("kid published")
            .clone();
        let (key, alg) = match jwk["kty"].as_str().unwrap() {
            "RSA" => (
                DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap(),
                Algorithm::RS256,
            ),
            "EC" => (
                DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap()).unwrap(),
                Algorithm::ES256,
            ),
            other => panic!("unexpected kty {other}"),
        };
        let (message, signature) = jwt.rsplit_once('.').unwrap();
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg).unwrap()
    }
}

#[tokio::test]
async fn discovery_documents() {
    let fx = start_with(DevIssuerConfig {
        extra_scopes: vec!["admin".into()],
        ..Default::default()
    })
    .await;
    let issuer = fx.issuer.issuer().to_owned();
    assert_eq!(issuer, format!("http://{}", fx.issuer.addr()));
    for url in [
        format!("{issuer}/.well-known/oauth-authorization-server"),
        format!("{issuer}/.well-known/openid-configuration"),
    ] {
        let r = fx.get(&url).await;
        assert_eq!(r.status, StatusCode::OK);
        let m = r.body;
        assert_eq!(m["issuer"], issuer);
        assert_eq!(m["authorization_endpoint"], format!("{issuer}/oauth/authorize"));
        assert_eq!(m["token_endpoint"], format!("{issuer}/oauth/token"));
        assert_eq!(m["jwks_uri"], fx.issuer.jwks_uri());
        assert_eq!(m["registration_endpoint"], format!("{issuer}/oauth/register"));
        assert_eq!(m["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
        assert_eq!(m["introspection_endpoint"], fx.issuer.introspection_endpoint());
        assert_eq!(m["userinfo_endpoint"], format!("{issuer}/oauth/userinfo"));
        assert_eq!(
            m["scopes_supported"],
            json!(["read", "write", "mcp", "admin", "openid"])
        );
        assert_eq!(m["response_types_supported"], json!(["code"]));
        assert_eq!(
            m["grant_types_supported"],
            json!([
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:device_code"
            ])
        );
        assert_eq!(
            m["device_authorization_endpoint"],
            format!("{issuer}/oauth/device_authorization")
        );
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!(["none", "client_secret_basic", "client_secret_post"])
        );
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(m["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(m["subject_types_supported"], json!(["public"]));
    }
    assert_eq!(fx.issuer.count(Endpoint::Metadata), 1);
    assert_eq!(fx.issuer.count(Endpoint::OidcMetadata), 1);
    let r = fx.get(&format!("{issuer}/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"], "not_found");
    let r = fx
        .post_form(&format!("{issuer}/.well-known/openid-configuration"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn jwks_publishes_current_key_with_cache_control() {
    let fx = start_with(DevIssuerConfig {
        jwks_cache_control: Some("max-age=300".into()),
        ..Default::default()
    })
    .await;
    let r = fx.get(&fx.issuer.jwks_uri()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["cache-control"], "max-age=300");
    let key = &r.body["keys"][0];
    assert_eq!(key["kid"], fx.issuer.current_key().kid());
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(key.get("d").is_none(), "no private material");
    let alias = fx.get(&format!("{}/.well-known/jwks.json", fx.issuer.issuer())).await;
    assert_eq!(alias.body, r.body);
    assert_eq!(fx.issuer.count(Endpoint::Jwks), 2);
}

#[tokio::test]
async fn registration_public_and_confidential() {
    let fx = start().await;
    let public = fx
        .register(json!({
            "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "cli",
        }))
        .await;
    assert_eq!(public.status, StatusCode::CREATED);
    assert_eq!(public.headers["cache-control"], "no-store");
    let b = &public.body;
    assert!(b["client_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(b.get("client_secret").is_none());
    assert!(b["client_id_issued_at"].as_i64().unwrap() > 0);
    assert_eq!(b["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(b["response_types"], json!(["code"]));
    assert_eq!(b["token_endpoint_auth_method"], "none");
    assert_eq!(b["client_name"], "cli");
    assert_eq!(b["redirect_uris"], json!([REDIRECT]));

    let conf = fx
        .register(json!({"redirect_uris": ["https://app.example/cb"], "scope": "read write"}))
        .await;
    assert_eq!(conf.status, StatusCode::CREATED, "{:?}", conf.body);
    assert_eq!(conf.body["token_endpoint_auth_method"], "client_secret_basic");
    assert!(conf.body["client_secret"].as_str().is_some_and(|s| s.len() >= 32));
    assert_eq!(conf.body["client_secret_expires_at"], 0);
    assert_eq!(conf.body["scope"], "read write");

    let m2m = fx
        .register(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}))
        .await;
    assert_eq!(m2m.status, StatusCode::CREATED, "{:?}", m2m.body);
    assert_eq!(m2m.body["response_types"], json!([]));
    assert_eq!(fx.issuer.count(Endpoint::Register), 3);
}

#[tokio::test]
async fn registration_errors() {
    let fx = start().await;
    let cases = [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://app.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["ftp://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"token_endpoint_auth_method": "none"}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "scope": "read root"}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": "not-a-list"}), "invalid_client_metadata"),
    ];
    for (body, expected) in cases {
        let r = fx.register(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["error"], expected, "{body}: {:?}", r.body);
        assert!(r.body["error_description"].is_string());
    }
    let raw = fx
        .http
        .post(fx.issuer.registration_endpoint())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(Fx::reply(raw).await.body["error"], "invalid_client_metadata");
}

#[tokio::test]
async fn authorization_code_pkce_flow_issues_rfc9068_jwt() {
    let fx = start().await;
    let client = fx.public_client().await;
    let (verifier, challenge) = pkce();
    let q = fx
        .authorize_code(&[
            ("response_type", "code"),
            ("client_id", &client.client_id),
            ("redirect_uri", REDIRECT),
            ("scope", "read mcp"),
            ("state", "xyz"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", "https://api.example/mcp"),
        ])
        .await;
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], fx.issuer.issuer());
    let r = fx
        .post_form(
            &fx.issuer.token_endpoint(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
                ("client_id", &client.client_id),
                ("code_verifier", &verifier),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 300);
    assert_eq!(r.body["scope"], "read mcp");
    assert!(r.body["refresh_token"].is_string());
    let at = r.body["access_token"].as_str().unwrap();
    let (header, c) = claims(at);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], fx.issuer.current_key().kid());
    assert_eq!(c["iss"], fx.issuer.issuer());
    assert_eq!(c["sub"], "dev-user");
    assert_eq!(c["aud"], "https://api.example/mcp");
    assert_eq!(c["client_id"], client.client_id.as_str());
    assert_eq!(c["scope"], "read mcp");
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 300);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(c["auth_time"].is_i64());
    assert!(fx.verify_with_jwks(at).await, "signature verifies with the JWKS key");

    let i = fx.introspect(at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], "dev-user");
    assert_eq!(i["aud"], "https://api.example/mcp");
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(i["jti"], c["jti"]);
    assert_eq!(i["iss"], fx.issuer.issuer());

    // Without a resource the audience defaults to the issuer.
    let plain = fx.public_flow(&client.client_id, "read").await;
    let (_, c2) = claims(plain["access_token"].as_str().unwrap());
    assert_eq!(c2["aud"], fx.issuer.issuer());
    assert_eq!(fx.issuer.count(Endpoint::Authorize), 2);
    assert_eq!(fx.issuer.count(Endpoint::Token), 2);
}

#[tokio::test]
async fn refresh_rotation_and_reuse_revokes_family() {
    let fx = start().await;
    let client = fx.public_client().await;
    let first = fx.public_flow(&client.client_id, "read write").await;
    let rt1 = first["refresh_token"].as_str().unwrap();
    let r2 = fx.refresh(&client.client_id, rt1, None).await;
    assert_eq!(r2.status, StatusCode::OK, "{:?}", r2.body);
    let rt2 = r2.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt2, rt1, "refresh tokens rotate");
    assert_eq!(r2.body["scope"], "read write");

    let narrowed = fx.refresh(&client.client_id, &rt2, Some("read")).await;
    assert_eq!(narrowed.status, StatusCode::OK, "{:?}", narrowed.body);
    assert_eq!(narrowed.body["scope"], "read");
    let rt3 = narrowed.body["refresh_token"].as_str().unwrap().to_owned();
    let at3 = narrowed.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&at3).1["scope"], "read");

    let widened = fx.refresh(&client.client_id, &rt3, Some("read write mcp")).await;
    assert_eq!(widened.status, StatusCode::BAD_REQUEST);
    assert_eq!(widened.body["error"], "invalid_scope");

    // The refresh token keeps the original scope (RFC 6749 §6).
    let again = fx.refresh(&client.client_id, &rt3, None).await;
    assert_eq!(again.body["scope"], "read write");
    let rt4 = again.body["refresh_token"].as_str().unwrap().to_owned();
    let at4 = again.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(fx.introspect(&at4).await["active"], true);

    // Replaying an already-rotated token revokes the whole family.
    let replay = fx.refresh(&client.client_id, rt1, None).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["error"], "invalid_grant");
    let newest = fx.refresh(&client.client_id, &rt4, None).await;
    assert_eq!(newest.body["error"], "invalid_grant", "newest refresh token dies too");
    assert_eq!(fx.introspect(&at4).await["active"], false);
    assert_eq!(fx.introspect(&at3).await["active"], false);
    assert_eq!(fx.introspect(&rt4).await["active"], false);
}

#[tokio::test]
async fn authorization_code_negative_cases() {
    let fx = start().await;
    let client = fx.public_client().await;
    let id = client.client_id.as_str();
    let token_url = fx.issuer.token_endpoint();
    let (verifier, challenge) = pkce();
    let base = |c: &str| {
        vec![
            ("response_type", "code".to_owned()),
            ("client_id", id.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("state", "st".to_owned()),
            ("code_challenge", c.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
        ]
    };
    let new_code = || async {
        let pairs = base(&challenge);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fx.authorize_code(&refs).await["code"].clone()
    };
    let exchange = |code: String, redirect: &'static str, verifier: String| {
        let token_url = token_url.clone();
        let fx = &fx;
        async move {
            fx.post_form(
                &token_url,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", id),
                    ("code_verifier", &verifier),
                ],
                None,
            )
            .await
        }
    };

    // Wrong code_verifier.
    let code = new_code().await;
    let (other_verifier, _) = pkce();
    let r = exchange(code.clone(), REDIRECT, other_verifier).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Mismatched redirect_uri.
    let r = exchange(code.clone(), "http://127.0.0.1:7777/other", verifier.clone()).await;
    assert_eq!(r.body["error"], "invalid_grant");
    // Reuse: the first redemption works, the second fails and revokes its tokens.
    let ok = exchange(code.clone(), REDIRECT, verifier.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let at = ok.body["access_token"].as_str().unwrap().to_owned();
    let rt = ok.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(fx.introspect(&at).await["active"], true);
    let reused = exchange(code, REDIRECT, verifier.clone()).await;
    assert_eq!(reused.body["error"], "invalid_grant");
    assert_eq!(fx.introspect(&at).await["active"], false);
    assert_eq!(fx.refresh(id, &rt, None).await.body["error"], "invalid_grant");
    // Unknown code.
    let r = exchange("nope".into(), REDIRECT, verifier.clone()).await;
    assert_eq!(r.body["error"], "invalid_grant");

    // Public client without PKCE: error redirect.
    let r = fx
        .authorize(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", REDIRECT),
            ("state", "st"),
        ])
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let q = query_map(r.headers["location"].to_str().unwrap());
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("invalid_request", "st"));
    // plain PKCE refused.
    let r = fx
        .authorize(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &verifier),
            ("code_challenge_method", "plain"),
        ])
        .await;
    assert_eq!(
        query_map(r.headers["location"].to_str().unwrap())["error"],
        "invalid_request"
    );
    // Unknown scope.
    let r = fx
        .authorize(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", REDIRECT),
            ("state", "s9"),
            ("scope", "read root"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .await;
    let q = query_map(r.headers["location"].to_str().unwrap());
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("invalid_scope", "s9"));
    // Unsupported response type.
    let r = fx
        .authorize(&[
            ("response_type", "token"),
            ("client_id", id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .await;
    assert_eq!(
        query_map(r.headers["location"].to_str().unwrap())["error"],
        "unsupported_response_type"
    );
    // Bad resource.
    let r = fx
        .authorize(&[
            ("response_type", "code"),
            ("client_id", id),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", "https://api.example/#frag"),
        ])
        .await;
    assert_eq!(
        query_map(r.headers["location"].to_str().unwrap())["error"],
        "invalid_target"
    );
    // Unknown client or unregistered redirect_uri: 400, never a redirect.
    let r = fx
        .authorize(&[
            ("response_type", "code"),
            ("client_id", "ghost"),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.headers.get("location").is_none());
    let r = fx
        .authorize(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", "https://evil.example/cb"),
        ])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.headers.get("location").is_none());
}

#[tokio::test]
async fn confidential_client_authentication() {
    let fx = start().await;
    let client = fx.confidential(&["client_credentials"]);
    let secret = client.client_secret.clone().unwrap();
    let url = fx.issuer.token_endpoint();
    let cc = [("grant_type", "client_credentials")];

    let bad = fx.post_form(&url, &cc, Some((&client.client_id, "wrong-secret"))).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["error"], "invalid_client");
    assert!(bad.headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let missing = fx
        .post_form(
            &url,
            &[("grant_type", "client_credentials"), ("client_id", &client.client_id)],
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let unknown = fx.post_form(&url, &cc, Some(("ghost", "x"))).await;
    assert_eq!(unknown.body["error"], "invalid_client");
    let both = fx
        .post_form(
            &url,
            &[("grant_type", "client_credentials"), ("client_secret", &secret)],
            Some((&client.client_id, &secret)),
        )
        .await;
    assert_eq!(both.body["error"], "invalid_request");

    let basic = fx.post_form(&url, &cc, Some((&client.client_id, &secret))).await;
    assert_eq!(basic.status, StatusCode::OK, "{:?}", basic.body);
    let post = fx
        .post_form(
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client.client_id),
                ("client_secret", &secret),
                ("scope", "read write"),
                ("resource", "https://api.example/"),
            ],
            None,
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{:?}", post.body);
    assert!(post.body.get("refresh_token").is_none());
    assert_eq!(post.body["scope"], "read write");
    let (_, c) = claims(post.body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], client.client_id.as_str());
    assert_eq!(c["aud"], "https://api.example/");

    let grant = fx
        .post_form(
            &url,
            &[("grant_type", "authorization_code"), ("code", "x")],
            Some((&client.client_id, &secret)),
        )
        .await;
    assert_eq!(grant.body["error"], "unauthorized_client");
    let unsupported = fx
        .post_form(&url, &[("grant_type", "password")], Some((&client.client_id, &secret)))
        .await;
    assert_eq!(unsupported.body["error"], "unsupported_grant_type");

    // A public client can never use client_credentials.
    let public = fx.issuer.register_client(ClientRegistration {
        grant_types: vec!["client_credentials".into()],
        token_endpoint_auth_method: Some("none".into()),
        ..Default::default()
    });
    let r = fx
        .post_form(
            &url,
            &[("grant_type", "client_credentials"), ("client_id", &public.client_id)],
            None,
        )
        .await;
    assert_eq!(r.body["error"], "unauthorized_client");
}

#[tokio::test]
async fn revocation_then_introspection() {
    let fx = start().await;
    let client = fx.public_client().await;
    let tokens = fx.public_flow(&client.client_id, "read").await;
    let at = tokens["access_token"].as_str().unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let url = fx.issuer.revocation_endpoint();

    let r = fx
        .post_form(
            &url,
            &[
                ("token", at),
                ("token_type_hint", "access_token"),
                ("client_id", &client.client_id),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let i = fx.introspect(at).await;
    assert_eq!(i, json!({"active": false}));
    let u = fx
        .http
        .get(fx.issuer.userinfo_endpoint())
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(u.status(), StatusCode::UNAUTHORIZED);

    // Revoking the refresh token revokes its family's access tokens.
    let fresh = fx.refresh(&client.client_id, rt, None).await.body;
    let at2 = fresh["access_token"].as_str().unwrap();
    let rt2 = fresh["refresh_token"].as_str().unwrap();
    assert_eq!(fx.introspect(at2).await["active"], true);
    let r = fx
        .post_form(&url, &[("token", rt2), ("client_id", &client.client_id)], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(fx.introspect(at2).await["active"], false);
    assert_eq!(
        fx.refresh(&client.client_id, rt2, None).await.body["error"],
        "invalid_grant"
    );

    let unknown = fx
        .post_form(
            &url,
            &[("token", "never-issued"), ("client_id", &client.client_id)],
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    let unauthenticated = fx.post_form(&url, &[("token", "x")], None).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.issuer.count(Endpoint::Revoke), 4);
}

#[tokio::test]
async fn introspection_requires_client_auth() {
    let fx = start().await;
    let token = fx.issuer.mint_access_token(&AccessTokenRequest::default());
    let url = fx.issuer.introspection_endpoint();
    let r = fx.post_form(&url, &[("token", &token)], None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_client");
    let public = fx.public_client().await;
    let r = fx
        .post_form(&url, &[("token", &token), ("client_id", &public.client_id)], None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let rs = fx.confidential(&["client_credentials"]);
    let r = fx
        .post_form(
            &url,
            &[("token", &token)],
            Some((&rs.client_id, rs.client_secret.as_deref().unwrap())),
        )
        .await;
    assert_eq!(r.body["active"], true);
    assert_eq!(r.headers["cache-control"], "no-store");
    for garbage in ["not-a-token", "a.b.c", &format!("{token}x")] {
        assert_eq!(fx.introspect(garbage).await, json!({"active": false}), "{garbage}");
    }
    let missing = fx
        .post_form(&url, &[], Some((&rs.client_id, rs.client_secret.as_deref().unwrap())))
        .await;
    assert_eq!(missing.body["error"], "invalid_request");
    assert!(fx.issuer.count(Endpoint::Introspect) >= 6);
}

#[tokio::test]
async fn userinfo_requires_a_valid_token() {
    let fx = start().await;
    let url = fx.issuer.userinfo_endpoint();
    let none = fx.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let bad = fx.http.get(&url).bearer_auth("garbage").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(
        bad.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let client = fx.public_client().await;
    let tokens = fx.public_flow(&client.client_id, "read").await;
    let at = tokens["access_token"].as_str().unwrap();
    let ok = fx.http.get(&url).bearer_auth(at).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().await.unwrap()["sub"], "dev-user");
    let post = fx.http.post(&url).bearer_auth(at).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::OK);
    let expired = fx.issuer.mint_access_token(&AccessTokenRequest {
        expires_in_secs: -10,
        ..Default::default()
    });
    let r = fx.http.get(&url).bearer_auth(&expired).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fx.issuer.count(Endpoint::Userinfo), 5);
}

#[tokio::test]
async fn key_rotation_with_grace_period() {
    let fx = start().await;
    let old = fx.issuer.current_key().kid().to_owned();
    let new = fx.issuer.rotate_keys();
    assert_ne!(old, new);
    assert_eq!(fx.issuer.current_key().kid(), new);
    let kids = fx.jwks_kids().await;
    assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");
    let token = fx
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &["https://api.example"]));
    assert_eq!(claims(&token).0["kid"], new.as_str());
    assert!(fx.verify_with_jwks(&token).await);
    fx.issuer.expire_retired_keys();
    assert_eq!(fx.jwks_kids().await, vec![new.clone()]);
    // No dev endpoints by default.
    let r = fx
        .post_form(&format!("{}/dev/rotate", fx.issuer.issuer()), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Zero grace: the old key disappears at once.
    let fx = start_with(DevIssuerConfig {
        key_grace: Duration::ZERO,
        dev_endpoints: true,
        ..Default::default()
    })
    .await;
    let r = fx
        .post_form(&format!("{}/dev/rotate", fx.issuer.issuer()), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(fx.jwks_kids().await, vec![r.body["kid"].as_str().unwrap().to_owned()]);
}

#[tokio::test]
async fn es256_issuer_signs_verifiable_tokens() {
    let fx = start_with(DevIssuerConfig {
        signing_alg: KeyAlg::ES256,
        ..Default::default()
    })
    .await;
    assert_eq!(fx.issuer.current_key().alg(), KeyAlg::ES256);
    let token = fx.issuer.mint_access_token(&AccessTokenRequest::default());
    assert_eq!(claims(&token).0["alg"], "ES256");
    assert!(fx.verify_with_jwks(&token).await);
    let meta = fx.get(&fx.issuer.metadata_url()).await.body;
    assert_eq!(meta["id_token_signing_alg_values_supported"], json!(["ES256"]));
}

#[tokio::test]
async fn mint_produces_hostile_tokens() {
    let fx = start().await;
    let claims_v = json!({"iss": fx.issuer.issuer(), "sub": "mallory", "aud": "https://api.example", "scope": "write", "exp": 4_000_000_000i64});
    // alg: none with an empty signature.
    let none = mint_unsigned(&json!({"alg": "none", "typ": "at+jwt"}), &claims_v);
    assert!(none.ends_with('.'));
    assert_eq!(claims(&format!("{none}x")).0["alg"], "none");
    // RS256 -> HS256 key confusion: HMAC keyed with the public key PEM / DER.
    let current = fx.issuer.current_key();
    let pem = current.rsa_public_key_pem().unwrap();
    let confused = mint(
        &json!({"alg": "HS256", "kid": current.kid(), "typ": "at+jwt"}),
        &claims_v,
        &SigningKey::hmac("x", pem.as_bytes()),
    );
    let (message, sig) = confused.rsplit_once('.').unwrap();
    assert!(
        jsonwebtoken::crypto::verify(
            sig,
            message.as_bytes(),
            &DecodingKey::from_secret(pem.as_bytes()),
            Algorithm::HS256
        )
        .unwrap()
    );
    assert!(current.rsa_public_key_der().unwrap().starts_with(&[0x30]));
    // A validly signed token from the real key with hostile headers.
    let crit = mint(
        &json!({"alg": "RS256", "kid": current.kid(), "crit": ["exp"], "jku": "https://evil.example/jwks"}),
        &claims_v,
        &current,
    );
    assert!(fx.verify_with_jwks(&crit).await);
    // Not recorded by the issuer, so introspection says inactive.
    assert_eq!(fx.introspect(&crit).await["active"], false);
    // Weak 1024-bit key and an oct key published in the JWKS.
    let weak = WeakRsaKey::load("weak-1024");
    assert_eq!(weak.bits(), 1024);
    fx.issuer.publish_extra_jwk(weak.public_jwk());
    let oct = SigningKey::hmac("oct-key", b"shared-secret");
    fx.issuer.publish_extra_jwk(oct.public_jwk());
    let kids = fx.jwks_kids().await;
    assert!(kids.contains(&"weak-1024".to_owned()) && kids.contains(&"oct-key".to_owned()));
    let weak_token = weak.mint(&json!({"alg": "RS256", "kid": "weak-1024"}), &claims_v);
    let (message, sig) = weak_token.rsplit_once('.').unwrap();
    let (n, e) = weak.components();
    aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            message.as_bytes(),
            &URL_SAFE_NO_PAD.decode(sig).unwrap(),
        )
        .unwrap();
    // Replace the JWKS body entirely.
    fx.issuer.replace_jwks(Some(json!({"keys": "nope"})));
    assert_eq!(fx.get(&fx.issuer.jwks_uri()).await.body, json!({"keys": "nope"}));
    fx.issuer.replace_jwks(None);
    // Minted legit tokens: active until expired.
    let live = fx.issuer.mint_access_token(&AccessTokenRequest::new(
        "read write",
        &["https://a.example", "https://b.example"],
    ));
    let (_, c) = claims(&live);
    assert_eq!(c["aud"], json!(["https://a.example", "https://b.example"]));
    assert_eq!(fx.introspect(&live).await["active"], true);
    let expired = fx.issuer.mint_access_token(&AccessTokenRequest {
        expires_in_secs: -1,
        ..Default::default()
    });
    assert_eq!(fx.introspect(&expired).await["active"], false);
}

#[tokio::test]
async fn opaque_tokens_resolve_only_via_introspection() {
    let fx = start_with(DevIssuerConfig {
        opaque_access_tokens: true,
        ..Default::default()
    })
    .await;
    let client = fx.public_client().await;
    let tokens = fx.public_flow(&client.client_id, "read mcp").await;
    let at = tokens["access_token"].as_str().unwrap();
    assert!(!at.contains('.'));
    assert_eq!(URL_SAFE_NO_PAD.decode(at).unwrap().len(), 32);
    let i = fx.introspect(at).await;
    assert_eq!(
        (i["active"].as_bool(), i["scope"].as_str()),
        (Some(true), Some("read mcp"))
    );
    assert_eq!(i["client_id"], client.client_id.as_str());
}

#[tokio::test]
async fn fault_injection_and_counters() {
    let fx = start().await;
    let meta = fx.issuer.metadata_url();
    fx.issuer.set_fault(Fault::Status(503));
    assert_eq!(fx.get(&meta).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        fx.get(&fx.issuer.jwks_uri()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    fx.issuer.set_fault(Fault::Html);
    let r = fx.get(&meta).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    fx.issuer.set_fault(Fault::CloseConnection);
    assert!(fx.http.get(&meta).send().await.is_err());
    assert!(
        fx.http
            .post(fx.issuer.introspection_endpoint())
            .body("token=x")
            .send()
            .await
            .is_err()
    );
    // Non-faultable endpoints keep working.
    assert_eq!(
        fx.get(&fx.issuer.userinfo_endpoint()).await.status,
        StatusCode::UNAUTHORIZED
    );
    fx.issuer.set_fault(Fault::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    assert_eq!(fx.get(&meta).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    fx.issuer.set_fault(Fault::None);
    assert_eq!(fx.get(&meta).await.status, StatusCode::OK);
    assert_eq!(fx.issuer.count(Endpoint::Metadata), 5);
    assert_eq!(fx.issuer.count(Endpoint::Jwks), 1);
    assert_eq!(fx.issuer.count(Endpoint::Introspect), 1);
    assert_eq!(fx.issuer.count(Endpoint::Userinfo), 1);
}

#[tokio::test]
async fn stop_and_resume_keep_keys_and_state() {
    let fx = start().await;
    let kid = fx.issuer.current_key().kid().to_owned();
    let token = fx.issuer.mint_access_token(&AccessTokenRequest::default());
    fx.issuer.stop().await;
    assert!(
        fx.http.get(fx.issuer.jwks_uri()).send().await.is_err(),
        "stopped server refuses"
    );
    fx.issuer.resume().await.unwrap();
    assert_eq!(fx.jwks_kids().await, vec![kid]);
    assert_eq!(fx.introspect(&token).await["active"], true);
    fx.issuer.clone().shutdown().await;
    assert!(fx.http.get(fx.issuer.jwks_uri()).send().await.is_err());
}

#[tokio::test]
async fn refuses_non_loopback_and_oversized_bodies() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = DevIssuer::start(listener, DevIssuerConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");

    let fx = start().await;
    let big = "a".repeat(70 * 1024);
    let r = fx.http.post(fx.issuer.token_endpoint()).body(big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn custom_issuer_and_default_audience() {
    let fx = start_with(DevIssuerConfig {
        issuer: Some("http://localhost:1234".into()),
        default_audience: Some("https://api.example".into()),
        dev_user: "alice".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(fx.issuer.issuer(), "http://localhost:1234");
    assert_eq!(fx.issuer.token_endpoint(), "http://localhost:1234/oauth/token");
    let token = fx.issuer.mint_access_token(&AccessTokenRequest::default());
    let (_, c) = claims(&token);
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str()),
        (Some("http://localhost:1234"), Some("https://api.example"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_interop() {
    if std::env::var("SCOPEGATE_SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
        println!("authlib_interop: skipped (SCOPEGATE_SKIP_PYTHON_INTEROP=1)");
        return;
    }
    let probe = std::process::Command::new("python3")
        .args(["-c", "import authlib, requests"])
        .output();
    let install = "pip install -r tests/requirements.txt";
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import authlib/requests ({}); install them with `{install}` \
             or set SCOPEGATE_SKIP_PYTHON_INTEROP=1",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 not runnable ({e}); install Python 3 and run `{install}`"),
    }
    let fx = start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/authlib_flow.py");
    let issuer = fx.issuer.issuer().to_owned();
    // The issuer serves on this runtime's other threads while python runs.
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new("python3").arg(script).arg(&issuer).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "authlib interop failed");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("authlib interop:") && l.ends_with(" 0 failed"))
    );
    assert!(fx.issuer.count(Endpoint::Token) >= 2);
}
