//! The README's identity-provider recipes, each run as written: its config fragment
//! (`tests/recipes/*.toml`, shown verbatim in the README) with only the issuer's scheme and
//! host moved to a development issuer, and tokens in the claim shapes that provider
//! documents. For each: the right scope is let through with identity headers, a missing
//! scope is 403, an ID token for a client is 401, and the issuer spelled differently is 401.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::builder::{ConfigBuilder, bearer_params};
use crate::common::{IntrospectionClient, Upstream, client, dev_issuer, start_proxy};
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, mint};
use serde_json::{Map, Value, json};

const RECIPES: [&str; 8] = [
    "minimal", "keycloak", "auth0", "okta", "entra-v2", "entra-v1", "google", "hydra",
];

fn recipe(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/recipes/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The recipe's issuer URL with its scheme and host replaced by the development issuer's;
/// the path (and a trailing slash) stays, so its spelling is what is tested.
fn issuer_url(text: &str, dev: &DevIssuer) -> String {
    let table: toml::Table = toml::from_str(text).unwrap();
    let url = table["issuer"][0]["url"].as_str().unwrap();
    let after_scheme = &url[url.find("://").unwrap() + 3..];
    let path = after_scheme.find('/').map_or("", |at| &after_scheme[at..]);
    format!("{}{path}", dev.issuer())
}

/// The same issuer with its trailing slash toggled.
fn misspelled(issuer: &str) -> String {
    match issuer.strip_suffix('/') {
        Some(without) => without.to_owned(),
        None => format!("{issuer}/"),
    }
}

/// A running recipe: the development issuer, a counting upstream and the proxy.
struct Bench {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    /// The issuer identifier the recipe's config now names.
    iss: String,
    _introspection: Option<IntrospectionClient>,
}

async fn bench(name: &str, dev: DevIssuerConfig) -> Bench {
    let issuer = dev_issuer(dev).await;
    let upstream = Upstream::start().await;
    let text = recipe(name);
    let iss = issuer_url(&text, &issuer);
    let mut builder = ConfigBuilder::new(&upstream.url())
        .merge_toml(&text)
        .set_issuer(0, "url", iss.as_str());
    let introspection = text
        .contains("[issuer.introspection]")
        .then(|| IntrospectionClient::register(&issuer, "client_secret_basic"));
    builder = match &introspection {
        Some(client) => builder
            .set_issuer(0, "introspection.endpoint", issuer.introspection_endpoint())
            .set_issuer(0, "introspection.client_id", client.client_id.as_str())
            .set_issuer(
                0,
                "introspection.client_secret_file",
                client.secret_file.to_string_lossy().as_ref(),
            ),
        // The development issuer serves metadata at its root only: keys are named directly
        // for issuers with a path (discovery itself is tested elsewhere).
        None => builder
            .set_issuer(0, "discovery", false)
            .set_issuer(0, "jwks_uri", issuer.jwks_uri()),
    };
    if name == "minimal" {
        builder = builder
            .set("listener.address", "127.0.0.1:0")
            .set("admin.address", "127.0.0.1:0")
            .set("upstream.url", upstream.url());
    }
    let proxy = start_proxy(builder.build()).await;
    Bench {
        issuer,
        upstream,
        proxy,
        iss,
        _introspection: introspection,
    }
}

impl Bench {
    /// Signs `claims` (`iss`, `iat` and `exp` added) under `header` (`alg`, `kid` added) with
    /// the issuer's current key.
    fn sign(&self, header: Value, claims: Value) -> String {
        let key = self.issuer.current_key();
        let mut header = header.as_object().unwrap().clone();
        header.insert("alg".into(), key.alg_name().into());
        header.insert("kid".into(), key.kid().into());
        let mut claims: Map<String, Value> = claims.as_object().unwrap().clone();
        claims.entry("iss").or_insert(self.iss.clone().into());
        claims.insert("iat".into(), now().into());
        claims.insert("exp".into(), (now() + 300).into());
        mint(&Value::Object(header), &Value::Object(claims), &key)
    }

    async fn get(&self, token: &str) -> reqwest::Response {
        client()
            .get(format!("http://{}/orders/42", self.proxy.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Allowed, and the upstream learns who called and with which scopes.
    async fn allows(&self, token: &str, subject: &str, scope: &str) {
        let before = self.upstream.requests();
        let r = self.get(token).await;
        assert_eq!(r.status(), 200, "{}", crate::common::challenge(&r));
        assert_eq!(self.upstream.requests(), before + 1);
        let seen = self.upstream.last();
        assert_eq!(seen.header("x-auth-subject"), Some(subject));
        let scopes = seen.header("x-auth-scopes").unwrap_or_default();
        assert!(scopes.split_whitespace().any(|s| s == scope), "{scopes}");
    }

    async fn refuses(&self, token: &str, status: u16, error: &str) {
        let before = self.upstream.requests();
        let r = self.get(token).await;
        assert_eq!(r.status(), status);
        let challenge = crate::common::challenge(&r);
        let params = bearer_params(Some(&challenge)).unwrap();
        assert_eq!(params.get("error").map(String::as_str), Some(error), "{challenge}");
        assert_eq!(self.upstream.requests(), before, "refused requests never reach the API");
    }

    /// The provider's token with the issuer spelled with(out) a trailing slash is refused:
    /// `iss` is compared byte for byte.
    async fn refuses_misspelled_issuer(&self, header: Value, mut claims: Value) {
        claims["iss"] = misspelled(&self.iss).into();
        self.refuses(&self.sign(header, claims), 401, "invalid_token").await;
    }
}

#[test]
fn every_recipe_is_shown_in_the_readme_as_tested() {
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for name in RECIPES {
        let shown = format!("```toml\n{}```", recipe(name));
        assert!(
            readme.contains(&shown),
            "README.md must show tests/recipes/{name}.toml verbatim"
        );
    }
}

#[tokio::test]
async fn minimal_config_protects_an_existing_api() {
    let b = bench("minimal", DevIssuerConfig::default()).await;
    let header = json!({"typ": "at+jwt"});
    let access = json!({"sub": "alice", "aud": "https://api.example.com", "client_id": "web", "scope": "orders:read"});
    b.allows(&b.sign(header.clone(), access.clone()), "alice", "orders:read")
        .await;
    let write_only = json!({"sub": "alice", "aud": "https://api.example.com", "scope": "orders:write"});
    b.refuses(&b.sign(header.clone(), write_only), 403, "insufficient_scope")
        .await;
    // An ID token says typ JWT and names the client: refused twice over.
    let id_token = json!({"sub": "alice", "aud": "web", "nonce": "n"});
    b.refuses(&b.sign(json!({"typ": "JWT"}), id_token), 401, "invalid_token")
        .await;
    b.refuses_misspelled_issuer(header, access).await;
    let health = client()
        .get(format!("http://{}/healthz", b.proxy.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "public route, no token");
}

#[tokio::test]
async fn keycloak_recipe() {
    let b = bench("keycloak", DevIssuerConfig::default()).await;
    let header = json!({"typ": "JWT"});
    // Keycloak access token: aud from the audience mapper (next to "account"), scopes in
    // "scope", the claim typ "Bearer", roles nested under realm_access.
    let access = json!({
        "sub": "f1b8c5e2-1d1b-4c1e-9d2a-6c9d1f0e7a11", "aud": ["orders-api", "account"],
        "typ": "Bearer", "azp": "shop-web", "scope": "openid profile orders:read",
        "preferred_username": "alice", "realm_access": {"roles": ["default-roles-shop"]},
    });
    b.allows(
        &b.sign(header.clone(), access.clone()),
        "f1b8c5e2-1d1b-4c1e-9d2a-6c9d1f0e7a11",
        "orders:read",
    )
    .await;
    let mut no_scope = access.clone();
    no_scope["scope"] = "openid profile".into();
    b.refuses(&b.sign(header.clone(), no_scope), 403, "insufficient_scope")
        .await;
    // Without the audience mapper Keycloak sends only "account".
    let mut unmapped = access.clone();
    unmapped["aud"] = "account".into();
    b.refuses(&b.sign(header.clone(), unmapped), 401, "invalid_token").await;
    let id_token = json!({
        "sub": "f1b8c5e2-1d1b-4c1e-9d2a-6c9d1f0e7a11", "aud": "shop-web", "typ": "ID",
        "azp": "shop-web", "nonce": "n", "preferred_username": "alice",
    });
    b.refuses(&b.sign(header.clone(), id_token), 401, "invalid_token").await;
    b.refuses_misspelled_issuer(header, access).await;
}

#[tokio::test]
async fn auth0_recipe() {
    let b = bench("auth0", DevIssuerConfig::default()).await;
    assert!(b.iss.ends_with('/'), "Auth0's issuer keeps its trailing slash");
    let header = json!({"typ": "JWT"});
    // Auth0 access token for a custom API, requested with openid: the API identifier and
    // the userinfo URL in aud, RBAC permissions in "permissions".
    let access = json!({
        "sub": "auth0|64f0c0ffee", "aud": ["https://orders.example.com", "https://shop.eu.auth0.com/userinfo"],
        "azp": "Xb2cD3eF4gH5", "scope": "openid profile", "permissions": ["read:orders"],
    });
    b.allows(
        &b.sign(header.clone(), access.clone()),
        "auth0|64f0c0ffee",
        "read:orders",
    )
    .await;
    // The RFC 9068 dialect: at+jwt, client_id, scopes in "scope".
    let rfc9068 = json!({
        "sub": "auth0|64f0c0ffee", "aud": "https://orders.example.com",
        "client_id": "Xb2cD3eF4gH5", "scope": "read:orders",
    });
    b.allows(
        &b.sign(json!({"typ": "at+jwt"}), rfc9068),
        "auth0|64f0c0ffee",
        "read:orders",
    )
    .await;
    let mut no_permission = access.clone();
    no_permission["permissions"] = json!(["write:invoices"]);
    b.refuses(&b.sign(header.clone(), no_permission), 403, "insufficient_scope")
        .await;
    let id_token = json!({"sub": "auth0|64f0c0ffee", "aud": "Xb2cD3eF4gH5", "nonce": "n", "name": "Alice"});
    b.refuses(&b.sign(header.clone(), id_token), 401, "invalid_token").await;
    b.refuses_misspelled_issuer(header, access).await;
}

#[tokio::test]
async fn okta_recipe() {
    let b = bench("okta", DevIssuerConfig::default()).await;
    // Okta access token from a custom authorization server: no typ, scopes in "scp".
    let header = json!({});
    let access = json!({
        "ver": 1, "jti": "AT.abc", "aud": "api://default", "cid": "0oa1b2c3d4",
        "uid": "00u1b2c3d4", "scp": ["openid", "orders:read"], "sub": "alice@example.com",
    });
    b.allows(
        &b.sign(header.clone(), access.clone()),
        "alice@example.com",
        "orders:read",
    )
    .await;
    let mut no_scope = access.clone();
    no_scope["scp"] = json!(["openid"]);
    b.refuses(&b.sign(header.clone(), no_scope), 403, "insufficient_scope")
        .await;
    let id_token = json!({"ver": 1, "sub": "00u1b2c3d4", "aud": "0oa1b2c3d4", "nonce": "n", "amr": ["pwd"]});
    b.refuses(&b.sign(header.clone(), id_token), 401, "invalid_token").await;
    b.refuses_misspelled_issuer(header, access).await;
}

/// Entra ID tokens of either version: delegated scopes in `scp` (a string), application
/// permissions in `roles` (an array).
async fn entra(name: &str, api_audience: &str, client_id: &str) {
    let b = bench(name, DevIssuerConfig::default()).await;
    let header = json!({"typ": "JWT"});
    let delegated = json!({
        "aud": api_audience, "azp": client_id, "appid": client_id, "oid": "5f1c0e4a",
        "sub": "delegated-sub", "scp": "Orders.Read User.Read", "tid": "11111111-2222-3333-4444-555555555555",
    });
    b.allows(
        &b.sign(header.clone(), delegated.clone()),
        "delegated-sub",
        "Orders.Read",
    )
    .await;
    let app = json!({
        "aud": api_audience, "azp": client_id, "sub": "app-sub", "oid": "app-sub",
        "roles": ["Orders.Read.All"], "tid": "11111111-2222-3333-4444-555555555555",
    });
    b.allows(&b.sign(header.clone(), app), "app-sub", "Orders.Read.All")
        .await;
    let mut no_scope = delegated.clone();
    no_scope["scp"] = "User.Read".into();
    b.refuses(&b.sign(header.clone(), no_scope), 403, "insufficient_scope")
        .await;
    // An ID token names the signing-in client; the API's own audience keeps it out.
    let id_token = json!({"aud": client_id, "sub": "delegated-sub", "nonce": "n", "roles": ["Orders.Read.All"]});
    b.refuses(&b.sign(header.clone(), id_token), 401, "invalid_token").await;
    b.refuses_misspelled_issuer(header, delegated).await;
}

#[tokio::test]
async fn entra_id_v2_recipe() {
    entra(
        "entra-v2",
        "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        "0c7a3d1b-spa-client",
    )
    .await;
}

#[tokio::test]
async fn entra_id_v1_recipe() {
    entra("entra-v1", "api://orders", "0c7a3d1b-spa-client").await;
}

#[tokio::test]
async fn google_recipe() {
    let b = bench("google", DevIssuerConfig::default()).await;
    let header = json!({"typ": "JWT"});
    // A Google-signed ID token minted for the service's URL (service-to-service).
    let service = json!({
        "aud": "https://orders.example.com", "azp": "1234567890", "sub": "1234567890",
        "email": "caller@project.iam.gserviceaccount.com", "email_verified": true,
    });
    let r = b.get(&b.sign(header.clone(), service.clone())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.upstream.last().header("x-auth-subject"), Some("1234567890"));
    // A sign-in ID token names the OAuth client: not an access token for this API.
    let sign_in = json!({
        "aud": "1234-abc.apps.googleusercontent.com", "azp": "1234-abc.apps.googleusercontent.com",
        "sub": "1171234567", "email": "alice@example.com", "nonce": "n",
    });
    b.refuses(&b.sign(header.clone(), sign_in), 401, "invalid_token").await;
    // A user access token for Google APIs is opaque, and this issuer has no introspection.
    b.refuses("ya29.a0AfB_byC-opaque-google-access-token", 401, "invalid_token")
        .await;
    b.refuses_misspelled_issuer(header, service).await;
}

#[tokio::test]
async fn hydra_recipe_introspects_opaque_tokens() {
    let b = bench(
        "hydra",
        DevIssuerConfig {
            opaque_access_tokens: true,
            ..DevIssuerConfig::default()
        },
    )
    .await;
    let request = |scope: &str| AccessTokenRequest {
        sub: "alice".into(),
        client_id: "shop-web".into(),
        ..AccessTokenRequest::new(scope, &["https://orders.example.com"])
    };
    let token = b.issuer.mint_access_token(&request("openid orders:read"));
    assert!(!token.contains('.'), "opaque, as Hydra issues by default");
    b.allows(&token, "alice", "orders:read").await;
    let no_scope = b.issuer.mint_access_token(&request("openid"));
    b.refuses(&no_scope, 403, "insufficient_scope").await;
    let other_audience = b.issuer.mint_access_token(&AccessTokenRequest {
        sub: "alice".into(),
        ..AccessTokenRequest::new("orders:read", &["shop-web"])
    });
    b.refuses(&other_audience, 401, "invalid_token").await;
    // Hydra's ID tokens are JWTs naming the client; introspection does not know them.
    let id_token = b.sign(
        json!({"typ": "JWT"}),
        json!({"sub": "alice", "aud": ["shop-web"], "nonce": "n"}),
    );
    b.refuses(&id_token, 401, "invalid_token").await;
}
