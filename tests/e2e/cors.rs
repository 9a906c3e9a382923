//! CORS: a browser preflight passes to the upstream without a token only where a route (or
//! `cors.bypass_preflight`) says so, and only when it is a real preflight; scopegate's own
//! refusals carry CORS headers for configured origins and for no other. Over real sockets,
//! with an upstream that counts what reached it; `explain` and the access log agree.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use scopegate::explain::{Credentials, Decision, Loaded, RequestSpec, explain_request};

const API: &str = "https://api.test";
const APP: &str = "https://app.test";

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    loaded: Loaded,
}

/// Routes: `items` (every method, bypasses preflights), `orders` (PUT only, bypasses
/// preflights: it lists no OPTIONS), `admin` (no bypass).
fn routes(builder: ConfigBuilder) -> ConfigBuilder {
    builder
        .route(
            RouteBuilder::new("items", "/items/**")
                .scopes(&["read"])
                .set("bypass_preflight", true),
        )
        .route(
            RouteBuilder::new("orders", "/orders/{id}")
                .methods(&["PUT"])
                .scopes(&["write"])
                .set("bypass_preflight", true),
        )
        .route(RouteBuilder::new("admin", "/admin/**").scopes(&["admin"]))
}

async fn world(configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let builder = configure(ConfigBuilder::new(&upstream.url()).issuer(IssuerBuilder::new(issuer.issuer(), &[API])));
    let loaded = Loaded::from_toml(&builder.toml(), "cors.toml").unwrap();
    let proxy = start_ready_proxy(loaded.config.clone()).await;
    World {
        issuer,
        upstream,
        proxy,
        loaded,
    }
}

impl World {
    fn token(&self, scope: &str) -> String {
        self.issuer.mint_access_token(&AccessTokenRequest::new(scope, &[API]))
    }

    /// Sends `method target` with `headers` (each `Name: value`); asserts the status and
    /// whether the upstream was reached; returns the raw answer.
    async fn send(&self, method: &str, target: &str, headers: &[&str], status: u16, forwarded: bool) -> String {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        expect(&self.proxy, &self.upstream, &request, status, forwarded).await
    }
}

/// The value of header `name` in a raw answer (the first one), lower-cased name match.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn preflight(method: &'static str) -> [String; 2] {
    [
        format!("Origin: {APP}"),
        format!("Access-Control-Request-Method: {method}"),
    ]
}

fn refs(headers: &[String]) -> Vec<&str> {
    headers.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn preflight_passes_without_a_token_only_where_configured() {
    let (log, _guard) = AccessLog::capture();
    let w = world(|b| routes(b).set("cors.allowed_origins", vec![APP])).await;

    // A real preflight on a route that bypasses: forwarded as OPTIONS, no token needed.
    w.send("OPTIONS", "/items/1", &refs(&preflight("GET")), 200, true).await;
    assert_eq!(w.upstream.last().method, "OPTIONS");
    assert_eq!(w.upstream.last().path_and_query, "/items/1");
    // The route of the announced method decides, though it does not list OPTIONS.
    w.send("OPTIONS", "/orders/7", &refs(&preflight("PUT")), 200, true)
        .await;
    // On a route without the bypass the preflight is an OPTIONS like any other: 401.
    let refused = w
        .send("OPTIONS", "/admin/x", &refs(&preflight("GET")), 401, false)
        .await;
    assert_eq!(header(&refused, "access-control-allow-origin"), Some(APP));
    // The announced method finds no route on this path: routed as OPTIONS, which /orders/{id}
    // does not list either, so 404 as today.
    w.send("OPTIONS", "/orders/7", &refs(&preflight("DELETE")), 404, false)
        .await;
    // No route for the path at all: 404.
    w.send("OPTIONS", "/nowhere", &refs(&preflight("GET")), 404, false)
        .await;

    // Not a preflight: authenticated like any method.
    w.send("OPTIONS", "/items/1", &[], 401, false).await;
    w.send("OPTIONS", "/items/1", &[&format!("Origin: {APP}")], 401, false)
        .await;
    w.send(
        "OPTIONS",
        "/items/1",
        &["Access-Control-Request-Method: GET"],
        401,
        false,
    )
    .await;
    let with_body = [
        preflight("GET").to_vec(),
        vec!["Content-Length: 3".into(), "Content-Type: text/plain".into()],
    ]
    .concat();
    let mut raw = String::from("OPTIONS /items/1 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    for h in &with_body {
        raw.push_str(&format!("{h}\r\n"));
    }
    raw.push_str("\r\nabc");
    expect(&w.proxy, &w.upstream, &raw, 401, false).await;
    let two_methods = [
        preflight("GET").to_vec(),
        vec!["Access-Control-Request-Method: PUT".into()],
    ]
    .concat();
    w.send("OPTIONS", "/items/1", &refs(&two_methods), 401, false).await;
    // A plain OPTIONS with a token is let through by the token.
    let read = format!("Authorization: Bearer {}", w.token("read"));
    w.send("OPTIONS", "/items/1", &[&read], 200, true).await;

    // The access log tells a bypass apart from an allow.
    let events = log.events();
    let bypassed: Vec<_> = events.iter().filter(|e| e["decision"] == "preflight").collect();
    assert_eq!(bypassed.len(), 2, "{events:#?}");
    assert!(
        bypassed
            .iter()
            .all(|e| e["reason"] == "cors_preflight" && e["token"] == "-")
    );
    assert_eq!(bypassed[1]["route"], "orders");
    let metrics = scrape_metrics(w.proxy.admin_addr).await;
    assert!(
        metrics.contains(r#"scopegate_requests_total{decision="preflight",route="orders",status_class="2xx"} 1"#),
        "{metrics}"
    );

    // explain runs the same decision.
    let mut spec = RequestSpec::new("OPTIONS", "/orders/7");
    spec.headers = vec![
        ("Origin".into(), APP.into()),
        ("Access-Control-Request-Method".into(), "PUT".into()),
    ];
    let explained = explain_request(&w.loaded, &spec, &Credentials::None).await;
    assert!(matches!(explained.decision, Decision::Allow { .. }), "{explained}");
    assert_eq!(explained.reason, "cors_preflight");
    spec.target = "/admin/x".into();
    let explained = explain_request(&w.loaded, &spec, &Credentials::None).await;
    assert_eq!(explained.status(), Some(401), "{explained}");
}

#[tokio::test]
async fn global_bypass_with_a_route_that_opts_out() {
    let w = world(|b| {
        b.set("cors.bypass_preflight", true)
            .route(RouteBuilder::new("open", "/open/**"))
            .route(RouteBuilder::new("closed", "/closed/**").set("bypass_preflight", false))
    })
    .await;
    w.send("OPTIONS", "/open/a", &refs(&preflight("POST")), 200, true).await;
    w.send("OPTIONS", "/closed/a", &refs(&preflight("POST")), 401, false)
        .await;
    w.send("OPTIONS", "/open/a", &[], 401, false).await;
}

#[tokio::test]
async fn refusals_carry_cors_headers_for_allowed_origins_only() {
    let w = world(|b| routes(b).set("cors.allowed_origins", vec![APP, "https://other.app.test"])).await;
    let from_app = format!("Origin: {APP}");
    let read = format!("Authorization: Bearer {}", w.token("read"));
    for (target, headers, status) in [
        ("/items/1", vec![from_app.as_str()], 401),
        (
            "/items/1",
            vec![from_app.as_str(), "Authorization: Bearer not-a-token"],
            401,
        ),
        ("/admin/x", vec![from_app.as_str(), read.as_str()], 403),
        ("/nowhere", vec![from_app.as_str(), read.as_str()], 404),
    ] {
        let answer = w.send("GET", target, &headers, status, false).await;
        assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP), "{answer}");
        let exposed = header(&answer, "access-control-expose-headers").unwrap_or_default();
        assert!(exposed.contains("WWW-Authenticate"), "{answer}");
        assert_eq!(header(&answer, "vary"), Some("Origin"), "{answer}");
        assert_eq!(header(&answer, "access-control-allow-credentials"), None, "{answer}");
    }
    // Another origin, a look-alike, several origins, or none: no CORS headers, never reflected.
    for origin in [
        vec!["Origin: https://evil.test"],
        vec!["Origin: https://app.test.evil.test"],
        vec!["Origin: https://APP.test"],
        vec![from_app.as_str(), "Origin: https://evil.test"],
        vec![],
    ] {
        let answer = w.send("GET", "/items/1", &origin, 401, false).await;
        assert_eq!(header(&answer, "access-control-allow-origin"), None, "{answer}");
        assert_eq!(header(&answer, "access-control-expose-headers"), None, "{answer}");
        assert_eq!(header(&answer, "vary"), Some("Origin"), "{answer}");
    }
    // The upstream's answers are its own: scopegate adds nothing to them.
    let answer = w.send("GET", "/items/1", &[&from_app, &read], 200, true).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None, "{answer}");
}

#[tokio::test]
async fn any_origin_and_credentials() {
    let w = world(|b| routes(b).set("cors.allowed_origins", vec!["*"])).await;
    let answer = w
        .send("GET", "/items/1", &["Origin: https://anyone.test"], 401, false)
        .await;
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"), "{answer}");
    assert_eq!(header(&answer, "access-control-allow-credentials"), None, "{answer}");
    let answer = w.send("GET", "/items/1", &[], 401, false).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None, "{answer}");

    let w = world(|b| {
        routes(b)
            .set("cors.allowed_origins", vec![APP])
            .set("cors.allow_credentials", true)
    })
    .await;
    let answer = w
        .send("GET", "/items/1", &[&format!("Origin: {APP}")], 401, false)
        .await;
    assert_eq!(
        header(&answer, "access-control-allow-credentials"),
        Some("true"),
        "{answer}"
    );
}

#[test]
fn cors_config_problems_are_reported_together() {
    let text = ConfigBuilder::new("http://127.0.0.1:1")
        .issuer(IssuerBuilder::new("https://as.example", &[API]))
        .set("cors.allowed_origins", vec!["*", "https://app.test/"])
        .set("cors.allow_credentials", true)
        .route(RouteBuilder::new("r", "/r").set("bypass_preflight", "yes"))
        .toml();
    let Err(scopegate::config::ConfigError::Invalid(issues)) = scopegate::config::Config::from_toml(&text, "t") else {
        panic!("must be refused");
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for path in [
        "cors.allowed_origins",
        "cors.allow_credentials",
        "route[0].bypass_preflight",
    ] {
        assert!(paths.contains(&path), "{path} missing: {issues:#?}");
    }
}
