//! Claim rules (`[[route.claim]]`): typed, exact tests on verified claims, after the scopes.
//! Over real sockets with real tokens (JWTs and introspected opaque tokens) and an upstream
//! that counts what reached it; `explain --claims` answers every row as the proxy does.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use scopegate::explain::{Credentials, Decision, Loaded, RequestSpec, explain_request};
use serde_json::{Value, json};

const API: &str = "https://api.test";

fn routes(builder: ConfigBuilder) -> ConfigBuilder {
    builder
        .route(
            RouteBuilder::new("org", "/orgs/{org}/**")
                .scopes(&["read"])
                .claim("org_id", "equals_param", "org"),
        )
        .route(
            RouteBuilder::new("verified", "/verified")
                .claim("email_verified", "equals", true)
                .claim("region", "equals", "eu"),
        )
        .route(RouteBuilder::new("billing", "/billing/**").claim("groups", "contains", "billing"))
        .route(RouteBuilder::new("strong", "/strong/**").claim("acr", "one_of", vec!["gold", "silver"]))
        .route(
            RouteBuilder::new("scoped", "/scoped/{org}")
                .scopes(&["write"])
                .claim("org_id", "equals_param", "org"),
        )
        .route(
            RouteBuilder::new("trial", "/trial/**")
                .dry_run()
                .claim("tier", "equals", 2),
        )
}

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    loaded: Loaded,
    /// Keeps the introspection client's secret file while the proxy runs.
    _client: Option<IntrospectionClient>,
}

async fn world(opaque: bool) -> World {
    let issuer = dev_issuer(DevIssuerConfig {
        opaque_access_tokens: opaque,
        default_audience: Some(API.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let upstream = Upstream::start().await;
    let client = opaque.then(|| IntrospectionClient::register(&issuer, "client_secret_basic"));
    let mut issuer_config = IssuerBuilder::new(issuer.issuer(), &[API]);
    if let Some(client) = &client {
        // One never-seen token per row, all from one address: above the default burst.
        issuer_config = issuer_config
            .introspection(&client.client_id, &client.secret_file)
            .set("introspection.client_new_token_burst", 200);
    }
    let builder = routes(ConfigBuilder::new(&upstream.url()).issuer(issuer_config));
    let loaded = Loaded::from_toml(&builder.toml(), "claims.toml").unwrap();
    let proxy = start_ready_proxy(loaded.config.clone()).await;
    World {
        issuer,
        upstream,
        proxy,
        loaded,
        _client: client,
    }
}

impl World {
    fn token(&self, scope: &str, claims: &Value) -> String {
        let mut request = AccessTokenRequest::new(scope, &[API]);
        if let Some(client) = &self._client {
            request.client_id = client.client_id.clone();
        }
        request.extra_claims = claims.as_object().cloned().unwrap();
        self.issuer.mint_access_token(&request)
    }

    /// GETs `target` with a token of `scope` carrying `claims`; asserts the status and that
    /// the upstream was reached exactly when it is not a refusal. Returns the raw answer.
    async fn get(&self, target: &str, scope: &str, claims: &Value, status: u16) -> String {
        let token = self.token(scope, claims);
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        expect(&self.proxy, &self.upstream, &request, status, status == 200).await
    }
}

/// The cases both token kinds and `explain` must answer alike: target, scope, claims,
/// status, reason code.
fn table() -> Vec<(&'static str, &'static str, Value, u16, &'static str)> {
    vec![
        (
            "/verified",
            "read",
            json!({"email_verified": true, "region": "eu"}),
            200,
            "ok",
        ),
        (
            "/verified",
            "read",
            json!({"email_verified": "true", "region": "eu"}),
            403,
            "claim_mismatch",
        ),
        (
            "/verified",
            "read",
            json!({"email_verified": false, "region": "eu"}),
            403,
            "claim_mismatch",
        ),
        (
            "/verified",
            "read",
            json!({"email_verified": true, "region": "EU"}),
            403,
            "claim_mismatch",
        ),
        (
            "/verified",
            "read",
            json!({"email_verified": true, "region": "eu "}),
            403,
            "claim_mismatch",
        ),
        (
            "/verified",
            "read",
            json!({"email_verified": true}),
            403,
            "claim_mismatch",
        ),
        ("/billing/x", "read", json!({"groups": ["ops", "billing"]}), 200, "ok"),
        (
            "/billing/x",
            "read",
            json!({"groups": ["ops", "Billing"]}),
            403,
            "claim_mismatch",
        ),
        (
            "/billing/x",
            "read",
            json!({"groups": "ops billing"}),
            403,
            "claim_mismatch",
        ),
        ("/billing/x", "read", json!({}), 403, "claim_mismatch"),
        ("/strong/x", "read", json!({"acr": "silver"}), 200, "ok"),
        ("/strong/x", "read", json!({"acr": "bronze"}), 403, "claim_mismatch"),
        ("/strong/x", "read", json!({"acr": ["gold"]}), 403, "claim_mismatch"),
        ("/orgs/acme/projects", "read", json!({"org_id": "acme"}), 200, "ok"),
        (
            "/orgs/acme/projects",
            "read",
            json!({"org_id": "Acme"}),
            403,
            "claim_mismatch",
        ),
        (
            "/orgs/acme/projects",
            "read",
            json!({"org_id": "other"}),
            403,
            "claim_mismatch",
        ),
        ("/orgs/acme/projects", "read", json!({}), 403, "claim_mismatch"),
        (
            "/orgs/%C3%A9t%C3%A9/projects",
            "read",
            json!({"org_id": "été"}),
            200,
            "ok",
        ),
        (
            "/orgs/%c3%a9t%c3%a9/projects",
            "read",
            json!({"org_id": "été"}),
            200,
            "ok",
        ),
        (
            "/orgs/%C3%A9t%C3%A9/projects",
            "read",
            json!({"org_id": "%C3%A9t%C3%A9"}),
            403,
            "claim_mismatch",
        ),
        // Exact: no Unicode normalization (NFD "été" is not the NFC path).
        (
            "/orgs/%C3%A9t%C3%A9/projects",
            "read",
            json!({"org_id": "e\u{301}te\u{301}"}),
            403,
            "claim_mismatch",
        ),
        ("/orgs/%61cme/projects", "read", json!({"org_id": "acme"}), 200, "ok"),
        ("/orgs/a%20b/projects", "read", json!({"org_id": "a b"}), 200, "ok"),
        // An encoded '/' never reaches a claim rule: canonicalization refuses the path.
        (
            "/orgs/a%2Fb/projects",
            "read",
            json!({"org_id": "a/b"}),
            400,
            "encoded_slash",
        ),
        // Scopes come first: the challenge asks for the scope, not the claim.
        (
            "/scoped/acme",
            "read",
            json!({"org_id": "other"}),
            403,
            "insufficient_scope",
        ),
        (
            "/scoped/acme",
            "write",
            json!({"org_id": "other"}),
            403,
            "claim_mismatch",
        ),
        ("/scoped/acme", "write", json!({"org_id": "acme"}), 200, "ok"),
    ]
}

async fn proxy_answers_the_table(w: &World) {
    for (target, scope, claims, status, _) in table() {
        let answer = w.get(target, scope, &claims, status).await;
        if status == 403 && answer.contains("claim_mismatch") {
            assert!(!answer.to_ascii_lowercase().contains("www-authenticate"), "{answer}");
        }
    }
}

#[tokio::test]
async fn jwt_claims_are_checked_exactly_and_refusals_never_reach_the_upstream() {
    let (log, _guard) = AccessLog::capture();
    let w = world(false).await;
    proxy_answers_the_table(&w).await;

    // What the upstream receives is the canonical path the rule was checked against.
    w.get("/orgs/%c3%a9t%c3%a9/projects", "read", &json!({"org_id": "été"}), 200)
        .await;
    assert_eq!(w.upstream.last().path_and_query, "/orgs/%C3%A9t%C3%A9/projects");

    // The refusal names the rule, never the claim's value; so does the access log.
    let answer = w
        .get("/orgs/acme/x", "read", &json!({"org_id": "secret-tenant"}), 403)
        .await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"], "claim_mismatch");
    assert_eq!(body["claim_rule"], "org_id = {org}");
    assert!(!answer.contains("secret-tenant"), "{answer}");
    let events = log.events();
    let refused = events.iter().rev().find(|e| e["reason"] == "claim_mismatch").unwrap();
    assert_eq!(refused["claim_rule"], "org_id = {org}");
    assert_eq!(refused["route"], "org");
    assert!(!format!("{events:?}").contains("secret-tenant"));
    let metrics = scrape_metrics(w.proxy.admin_addr).await;
    assert!(
        metrics.contains(r#"scopegate_auth_decisions_total{decision="deny",reason="claim_mismatch"}"#),
        "{metrics}"
    );

    // Dry run: counted as would-deny, forwarded.
    w.get("/trial/x", "read", &json!({"tier": 1}), 200).await;
    let last = log.events().pop().unwrap();
    assert_eq!(last["decision"], "would_deny");
    assert_eq!(last["reason"], "claim_mismatch");
    assert_eq!(last["claim_rule"], "tier = 2");
}

#[tokio::test]
async fn introspection_answers_are_checked_like_jwt_claims() {
    let w = world(true).await;
    let token = w.token("read", &json!({"org_id": "acme"}));
    assert!(!token.contains('.'), "the dev issuer mints opaque tokens here");
    proxy_answers_the_table(&w).await;
}

#[tokio::test]
async fn explain_agrees_with_the_proxy() {
    let w = world(false).await;
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (target, scope, extra, status, reason) in table() {
        let mut claims = json!({"iss": w.issuer.issuer(), "aud": API, "exp": now + 300, "scope": scope, "sub": "u"});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let credentials = Credentials::Claims(claims.as_object().unwrap().clone());
        let e = explain_request(&w.loaded, &RequestSpec::new("GET", target), &credentials).await;
        assert_eq!(e.status().unwrap_or(200), status, "{target} {extra}\n{e}");
        assert_eq!(e.reason, reason, "{target} {extra}\n{e}");
        if reason == "claim_mismatch" {
            assert!(matches!(e.decision, Decision::ClaimMismatch { .. }), "{e}");
            assert_eq!(e.www_authenticate, None, "{e}");
        }
    }
    let e = explain_request(
        &w.loaded,
        &RequestSpec::new("GET", "/orgs/acme/x"),
        &Credentials::Claims(
            json!({"iss": w.issuer.issuer(), "aud": API, "exp": now + 300, "scope": "read", "org_id": "x"})
                .as_object()
                .unwrap()
                .clone(),
        ),
    )
    .await;
    let printed = e.to_string();
    assert!(printed.contains("claim rule:  org_id = {org}"), "{printed}");
    assert!(
        printed.contains("403 claim_mismatch (claim rule org_id = {org} does not hold"),
        "{printed}"
    );
    assert!(
        e.needs
            .as_deref()
            .unwrap_or_default()
            .contains("whose claims meet org_id = {org}"),
        "{e}"
    );
    // `check` prints each route's rules under it.
    let table = w.loaded.config.routes.describe();
    assert!(table.contains("claim: org_id = {org}"), "{table}");
    assert!(table.contains(r#"claim: acr one of ["gold", "silver"]"#), "{table}");
    assert!(table.contains("claim: email_verified = true"), "{table}");
}

/// A reload that adds a rule on a claim the cache did not keep starts new token caches: a
/// token verified before is judged by its own claim, not refused for a claim dropped then.
#[tokio::test]
async fn a_reload_that_adds_a_rule_judges_tokens_verified_before_it() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let base = ConfigBuilder::new(&upstream.url()).issuer(IssuerBuilder::new(issuer.issuer(), &[API]));
    let proxy = start_ready_proxy(base.clone().route(RouteBuilder::new("late", "/late/**")).build()).await;
    let mint = |team: &str| {
        issuer.mint_access_token(&AccessTokenRequest {
            extra_claims: json!({ "team": team }).as_object().cloned().unwrap(),
            ..AccessTokenRequest::new("read", &[API])
        })
    };
    let (red, blue) = (mint("red"), mint("blue"));
    let get = |token: &str| {
        format!("GET /late/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n")
    };
    expect(&proxy, &upstream, &get(&red), 200, true).await;
    expect(&proxy, &upstream, &get(&blue), 200, true).await;
    let report = proxy.app.apply(
        base.route(RouteBuilder::new("late", "/late/**").claim("team", "equals", "red"))
            .build(),
    );
    assert!(report.changed);
    expect(&proxy, &upstream, &get(&red), 200, true).await;
    expect(&proxy, &upstream, &get(&blue), 403, false).await;
}
