//! Request hygiene over real sockets (raw HTTP/1.x and h2c): `Host` rules (RFC 9112 §3.2,
//! RFC 9113 §8.3.1), headers that must never reach the upstream, and method override by
//! parameter. Each refusal is proven with the upstream's request counter.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use scopegate::dev::{AccessTokenRequest, DevIssuerConfig};

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
name = "public"
path = "/pub/**"
public = true
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

const NO_ISSUER: &str = "http://127.0.0.1:9";

async fn setup_with(extra: &str, issuer: &str) -> (Upstream, scopegate::server::Running) {
    let upstream = Upstream::start().await;
    let proxy = start_proxy(config(&format!("{CONFIG}{extra}"), &upstream.url(), issuer)).await;
    (upstream, proxy)
}

async fn setup() -> (Upstream, scopegate::server::Running) {
    setup_with("", NO_ISSUER).await
}

#[tokio::test]
async fn http11_requests_need_exactly_one_host() {
    let (upstream, proxy) = setup().await;
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host…
    let answer = expect(
        &proxy,
        &upstream,
        "GET /pub/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        400,
        false,
    )
    .await;
    assert!(answer.contains("bad_request"), "{answer}");
    // …and to any request with more than one Host field line.
    expect(
        &proxy,
        &upstream,
        "GET /pub/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        400,
        false,
    )
    .await;
    expect(
        &proxy,
        &upstream,
        "GET /pub/x HTTP/1.0\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
        400,
        false,
    )
    .await;
    // HTTP/1.0 clients may leave Host out.
    expect(&proxy, &upstream, "GET /pub/x HTTP/1.0\r\n\r\n", 200, true).await;
    // The ordinary case.
    expect(
        &proxy,
        &upstream,
        "GET /pub/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        200,
        true,
    )
    .await;
    assert_eq!(upstream.last().header("x-forwarded-host"), Some("a.test"));
}

#[tokio::test]
async fn an_absolute_form_target_names_the_host() {
    let (upstream, proxy) = setup().await;
    // RFC 9112 §3.2.2: the target's authority replaces whatever Host says.
    expect(
        &proxy,
        &upstream,
        "GET http://api.test/pub/x HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
        200,
        true,
    )
    .await;
    let seen = upstream.last();
    assert_eq!(seen.path_and_query, "/pub/x");
    expect(
        &proxy,
        &upstream,
        "GET http://user@api.test/pub/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
        400,
        false,
    )
    .await;
    assert_eq!(seen.header("host"), Some("api.test"), "{seen:?}");
    assert_eq!(seen.header("x-forwarded-host"), Some("api.test"), "{seen:?}");
}

/// Sends one h2c request with `:authority` from `uri` and, if given, a `host` field.
async fn h2c_status(addr: std::net::SocketAddr, uri: &str, host: Option<&str>) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder().uri(uri);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn h2_authority_and_host_must_agree() {
    let (upstream, proxy) = setup().await;
    let uri = "http://api.test/pub/x";
    assert_eq!(h2c_status(proxy.addr, uri, Some("evil.test")).await, 400);
    assert_eq!(
        upstream.requests(),
        0,
        "a mismatched :authority never reaches the upstream"
    );
    assert_eq!(
        h2c_status(proxy.addr, uri, Some("API.test")).await,
        200,
        "host is case-insensitive"
    );
    assert_eq!(h2c_status(proxy.addr, uri, None).await, 200);
    assert_eq!(upstream.requests(), 2);
    // RFC 9113 §8.3.1: the upstream hears of the authority as Host.
    assert_eq!(upstream.last().header("host"), Some("api.test"));
}

#[tokio::test]
async fn h2c_settings_and_origin_claims_never_reach_the_upstream() {
    let (upstream, proxy) = setup().await;
    expect(
        &proxy,
        &upstream,
        "GET /pub/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\
         HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
         X-Forwarded-Uri: /admin\r\nX-Forwarded-Path: /admin\r\nX-Forwarded-Method: DELETE\r\n\
         X-Original-Uri: /admin\r\nX-Original-Method: DELETE\r\nX-Forwarded-Prefix: /admin\r\n\
         X_Forwarded_Url: /admin\r\nX-Forwarded-Server: evil\r\nX-Normal: yes\r\n\r\n",
        200,
        true,
    )
    .await;
    let seen = upstream.last();
    assert_eq!(seen.header("x-normal"), Some("yes"), "{seen:?}");
    for name in [
        "http2-settings",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-method",
        "x-original-uri",
        "x-original-method",
        "x-forwarded-prefix",
        "x_forwarded_url",
        "x-forwarded-server",
    ] {
        assert!(!seen.has_header(name), "{name} reached the upstream: {seen:?}");
    }
}

#[tokio::test]
async fn trusted_forwarded_headers_keep_the_uri_claims_but_never_the_method() {
    let (upstream, proxy) = setup_with("[forwarding]\ntrust_forwarded_headers = true\n", NO_ISSUER).await;
    expect(
        &proxy,
        &upstream,
        "GET /pub/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\
         X-Forwarded-Uri: /pub/x\r\nX-Forwarded-Prefix: /api\r\nX-Forwarded-Method: DELETE\r\n\r\n",
        200,
        true,
    )
    .await;
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-uri"), Some("/pub/x"), "{seen:?}");
    assert_eq!(seen.header("x-forwarded-prefix"), Some("/api"), "{seen:?}");
    assert!(!seen.has_header("x-forwarded-method"), "{seen:?}");
}

#[tokio::test]
async fn method_override_parameters_are_refused() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let (upstream, proxy) = setup_with("", issuer.issuer()).await;
    eventually("the proxy has keys", || proxy.app.is_ready()).await;
    let write = issuer.mint_access_token(&AccessTokenRequest::new("write", &["https://api.test"]));
    const FORM: &str = "application/x-www-form-urlencoded";

    // Rails, Laravel and Express's method-override would run these as DELETE, which needs admin.
    for target in [
        "/items/1?_method=DELETE",
        "/items/1?a=1&%5Fmethod=delete",
        "/items/1?_METHOD=DELETE",
        "/items/1?_method[]=DELETE",
    ] {
        let answer = expect(&proxy, &upstream, &post(target, &write, "text/plain", ""), 400, false).await;
        assert!(answer.contains("bad_request"), "{answer}");
    }
    for body in [
        "_method=DELETE",
        "a=1&_method=DELETE",
        "a=1&%5Fmethod=DELETE",
        "a=1;_method=DELETE",
    ] {
        expect(&proxy, &upstream, &post("/items/1", &write, FORM, body), 400, false).await;
    }
    // Only bodies declared form-encoded are read as forms.
    expect(
        &proxy,
        &upstream,
        &post("/items/1", &write, "text/plain", "_method=DELETE"),
        200,
        true,
    )
    .await;
    expect(
        &proxy,
        &upstream,
        &post(
            "/items/1",
            &write,
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            "_method=DELETE",
        ),
        400,
        false,
    )
    .await;
    // A form without the parameter goes through, body intact.
    expect(
        &proxy,
        &upstream,
        &post("/items/1", &write, FORM, "a=1&method=x"),
        200,
        true,
    )
    .await;
    // A form too large to check is refused rather than passed unchecked.
    let big = format!("a={}", "x".repeat(70 * 1024));
    expect(&proxy, &upstream, &post("/items/1", &write, FORM, &big), 413, false).await;
    // Other parameters and bodies are left alone.
    expect(
        &proxy,
        &upstream,
        &post("/items/1?method=DELETE", &write, "application/json", "{\"_method\":1}"),
        200,
        true,
    )
    .await;
}

#[tokio::test]
async fn method_override_checks_can_be_configured() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let write = issuer.mint_access_token(&AccessTokenRequest::new("write", &["https://api.test"]));
    let form = "application/x-www-form-urlencoded";
    // (parameters, target, form body, status)
    let cases: [(&str, &str, &str, u16); 4] = [
        ("[]", "/items/1?_method=DELETE", "_method=DELETE", 200),
        ("[\"_verb\"]", "/items/1?_verb=DELETE", "", 400),
        ("[\"_verb\"]", "/items/1", "_verb=DELETE", 400),
        ("[\"_verb\"]", "/items/1?_method=DELETE", "_method=DELETE", 200),
    ];
    for (parameters, target, body, status) in cases {
        let extra = format!("[forwarding]\nmethod_override_parameters = {parameters}\n");
        let (upstream, proxy) = setup_with(&extra, issuer.issuer()).await;
        eventually("the proxy has keys", || proxy.app.is_ready()).await;
        let request = post(target, &write, form, body);
        expect(&proxy, &upstream, &request, status, status == 200).await;
    }
}

#[test]
fn method_override_settings_are_validated() {
    let text = |extra: &str| {
        format!("{CONFIG}{extra}")
            .replace("{upstream}", "http://127.0.0.1:1")
            .replace("{issuer}", NO_ISSUER)
    };
    for bad in [
        "[forwarding]\nmethod_override_parameters = [\"\"]\n",
        "[forwarding]\nmethod_override_parameters = [\"a b\"]\n",
        "[forwarding]\nmethod_override_form_limit = \"0\"\n",
        "[forwarding]\nmethod_override_form_limit = \"2MiB\"\n",
    ] {
        let err = scopegate::config::Config::from_toml(&text(bad), "t.toml").expect_err(bad);
        assert!(err.to_string().contains("forwarding.method_override"), "{bad}: {err}");
    }
    let good =
        "[forwarding]\nmethod_override_parameters = [\"_verb\", \"_method\"]\nmethod_override_form_limit = \"16KiB\"\n";
    scopegate::config::Config::from_toml(&text(good), "t.toml").unwrap();
}
