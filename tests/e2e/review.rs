//! Attacks on the request path, over real sockets: each is a request that is authorized as
//! one thing and would have run upstream as another.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[scopes.implies]
admin = ["write"]
write = ["read"]
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
[[route]]
name = "items-write"
path = "/items/**"
methods = ["POST", "PUT"]
scopes = ["write"]
[[route]]
name = "items-delete"
path = "/items/**"
methods = ["DELETE"]
scopes = ["admin"]
"#;

/// The issuer, the upstream, the proxy with keys loaded, and a token with the `write` scope.
async fn setup() -> (DevIssuer, Upstream, scopegate::server::Running, String) {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let proxy = start_proxy(config(CONFIG, &upstream.url(), issuer.issuer())).await;
    eventually("the proxy has keys", || proxy.app.is_ready()).await;
    let write = issuer.mint_access_token(&AccessTokenRequest::new("write", &["https://api.test"]));
    (issuer, upstream, proxy, write)
}

/// Rack (`Rack::Request#media_type`) and PHP (`SAPI.c`) take the media type up to the first
/// `;`, `,` or space: both read these bodies as forms, so `_method` in them runs as DELETE.
#[tokio::test]
async fn a_form_body_hidden_behind_a_content_type_list_is_still_checked() {
    let (_issuer, upstream, proxy, write) = setup().await;
    for content_type in [
        "application/x-www-form-urlencoded, text/plain",
        "application/x-www-form-urlencoded,text/plain",
        "application/x-www-form-urlencoded text/plain",
    ] {
        let request = post("/items/1", &write, content_type, "_method=DELETE");
        expect(&proxy, &upstream, &request, 400, false).await;
    }
    // A media type that merely starts with the form type's letters is another type.
    let request = post(
        "/items/1",
        &write,
        "application/x-www-form-urlencodedx",
        "_method=DELETE",
    );
    expect(&proxy, &upstream, &request, 200, true).await;
}

/// PHP turns `.` and spaces in parameter names into `_` (and drops leading spaces) before
/// Symfony and Laravel look for `_method`, so `.method=DELETE` is `_method=DELETE` to them.
#[tokio::test]
async fn override_names_are_compared_as_php_mangles_them() {
    let (_issuer, upstream, proxy, write) = setup().await;
    for target in [
        "/items/1?.method=DELETE",
        "/items/1?%2Emethod=DELETE",
        "/items/1?_method.=x&+.method=DELETE",
    ] {
        expect(&proxy, &upstream, &post(target, &write, "text/plain", ""), 400, false).await;
    }
    for body in [".method=DELETE", "a=1&%2emethod=DELETE", "%20.method=DELETE"] {
        let request = post("/items/1", &write, "application/x-www-form-urlencoded", body);
        expect(&proxy, &upstream, &request, 400, false).await;
    }
    // Other names that only look alike still pass.
    let request = post(
        "/items/1?x.method=1",
        &write,
        "application/x-www-form-urlencoded",
        "method=x",
    );
    expect(&proxy, &upstream, &request, 200, true).await;
}

const MCP_UPGRADE: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test/ws"]
[[route]]
name = "mcp"
path = "/ws"
mcp = true
allow_upgrade = true
scopes = ["mcp"]
[[route.mcp_rule]]
method = "tools/call"
name = "delete_*"
scopes = ["admin"]
[mcp]
resource = "https://api.test/ws"
resource_name = "MCP"
"#;

/// After a protocol switch bytes flow unread, so a route whose JSON-RPC calls must be
/// inspected can never be upgraded: the configuration is refused.
#[test]
fn an_inspected_mcp_route_cannot_allow_upgrades() {
    let text = MCP_UPGRADE
        .replace("{upstream}", "http://127.0.0.1:9")
        .replace("{issuer}", "http://127.0.0.1:9");
    let error = scopegate::config::Config::from_toml(&text, "test.toml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("allow_upgrade"), "{error}");
    // Without tool rules nothing is inspected, and upgrades may be allowed.
    let without_rules = text.replace(
        "[[route.mcp_rule]]\nmethod = \"tools/call\"\nname = \"delete_*\"\nscopes = [\"admin\"]\n",
        "",
    );
    scopegate::config::Config::from_toml(&without_rules, "test.toml").unwrap();
}

/// RFC 9449 §7.1: a DPoP- or mTLS-bound token (`cnf`) presented as a plain bearer token is a
/// stolen copy replayed without its key; it is refused and never forwarded (DESIGN §7).
#[tokio::test]
async fn a_sender_constrained_token_is_not_a_bearer_token() {
    let (issuer, upstream, proxy, _) = setup().await;
    let mut request = AccessTokenRequest::new("write", &["https://api.test"]);
    request.extra_claims.insert(
        "cnf".into(),
        serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
    );
    let bound = issuer.mint_access_token(&request);
    let answer = expect(
        &proxy,
        &upstream,
        &post("/items/1", &bound, "text/plain", ""),
        401,
        false,
    )
    .await;
    assert!(answer.contains("error=\"invalid_token\""), "{answer}");
    // The same token without the binding is fine.
    request.extra_claims.clear();
    let plain = issuer.mint_access_token(&request);
    expect(
        &proxy,
        &upstream,
        &post("/items/1", &plain, "text/plain", ""),
        200,
        true,
    )
    .await;
}

/// DESIGN §4: a broken JWT never turns into a 503. While its issuer's keys cannot be had, a
/// token that no key could make acceptable (`alg` none or HMAC, `crit`, expired, another
/// audience) is still a 401; only a token that might be fine waits for the keys (503).
#[tokio::test]
async fn a_token_no_key_could_save_is_refused_during_a_key_outage() {
    const NO_ISSUER: &str = "http://127.0.0.1:9";
    let upstream = Upstream::start().await;
    let proxy = start_proxy(config(CONFIG, &upstream.url(), NO_ISSUER)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": NO_ISSUER, "aud": "https://api.test", "exp": now + 300, "scope": "write",
    });
    let token = |header: serde_json::Value, claims: &serde_json::Value| {
        format!(
            "{}.c2lnbmF0dXJl",
            scopegate::dev::mint_unsigned(&header, claims).trim_end_matches('.')
        )
    };
    let at = |alg: &str| serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": "k"});
    let mut expired = claims.clone();
    expired["exp"] = serde_json::json!(now - 3600);
    let mut elsewhere = claims.clone();
    elsewhere["aud"] = serde_json::json!("https://other.test");
    for hopeless in [
        token(at("none"), &claims),
        token(at("HS256"), &claims),
        token(
            serde_json::json!({"alg": "RS256", "typ": "at+jwt", "crit": ["x"], "x": 1}),
            &claims,
        ),
        token(at("RS256"), &expired),
        token(at("RS256"), &elsewhere),
    ] {
        let answer = expect(
            &proxy,
            &upstream,
            &post("/items/1", &hopeless, "text/plain", ""),
            401,
            false,
        )
        .await;
        assert!(answer.contains("error=\"invalid_token\""), "{answer}");
    }
    // A token that may well be fine is not judged without keys.
    let hopeful = token(at("RS256"), &claims);
    expect(
        &proxy,
        &upstream,
        &post("/items/1", &hopeful, "text/plain", ""),
        503,
        false,
    )
    .await;
}
