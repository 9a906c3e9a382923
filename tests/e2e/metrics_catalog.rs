//! `docs/metrics.md` against the code: the documented names equal `Metrics::names()`, and
//! real traffic through a proxy (a JWT issuer, an introspecting issuer, an upstream that
//! also times out, breaks the protocol and goes away) exports every documented family and
//! moves every counter and histogram.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::pki::{Ca, Files};
use crate::common::{
    IntrospectionClient, client, dev_issuer, eventually, eventually_some, raw_request, scrape_metrics, start_proxy,
};
use scopegate::dev::{AccessTokenRequest, DevIssuerConfig, Fault};
use scopegate::gateway::Gateway;
use scopegate::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const AUDIENCE: &str = "https://api.test";

/// `(name, type)` from every table row of docs/metrics.md whose first cell is a
/// backticked `scopegate_` name.
fn documented() -> BTreeMap<String, String> {
    let text = include_str!("../../docs/metrics.md");
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            name.starts_with("scopegate_")
                .then(|| (name.to_string(), cells.get(2).unwrap_or(&"").to_string()))
        })
        .collect()
}

#[test]
fn documented_names_equal_the_exported_names() {
    let documented: BTreeSet<String> = documented().into_keys().collect();
    let exported: BTreeSet<String> = Metrics::new().names().into_iter().collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "undocumented: {undocumented:?}; documented but not exported: {stale:?}"
    );
    assert_eq!(documented.len(), 26, "the catalog table lost a row");
}

/// A parsed Prometheus text exposition.
struct Scrape {
    types: BTreeMap<String, String>,
    /// `(sample name, labels text, value)`.
    samples: Vec<(String, String, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                samples.push((name.to_string(), labels.to_string(), value.parse().unwrap()));
            }
        }
        Scrape { types, samples }
    }

    /// Sum of the samples named `name` whose labels contain every `k="v"` in `with`.
    fn sum(&self, name: &str, with: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| n == name && with.iter().all(|w| labels.split(',').any(|l| l == *w)))
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// An upstream that answers `/read/slow` after 3 s, `/read/garbage` with bytes that are
/// not HTTP, and everything else with 200; every response closes the connection, so after
/// the accept loop is aborted the proxy gets "connection refused".
async fn raw_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                if path == "/read/slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let response: &[u8] = if path == "/read/garbage" {
                    b"this is not HTTP\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn traffic_exports_every_documented_family() {
    let jwt_issuer = dev_issuer(DevIssuerConfig::default()).await;
    let opaque = dev_issuer(DevIssuerConfig {
        opaque_access_tokens: true,
        default_audience: Some(AUDIENCE.into()),
        ..DevIssuerConfig::default()
    })
    .await;
    let registered = IntrospectionClient::register(&opaque, "client_secret_basic");
    let (upstream_url, upstream_task) = raw_upstream().await;
    let builder = ConfigBuilder::new(&upstream_url)
        .set("upstream.response_header_timeout", "500ms")
        .issuer(IssuerBuilder::new(jwt_issuer.issuer(), &[AUDIENCE]).set("fetch_timeout", "2s"))
        .issuer(
            IssuerBuilder::new(opaque.issuer(), &[AUDIENCE])
                .introspection(&registered.client_id, &registered.secret_file)
                .set("introspection.timeout", "500ms")
                .set("introspection.negative_ttl", "1h"),
        )
        .route(RouteBuilder::new("pub", "/pub/**").public())
        .route(RouteBuilder::new("read", "/read/**").scopes(&["read"]))
        .set("forward_auth.listen", "127.0.0.1:0")
        .set("forward_auth.ingress", "traefik")
        .set("forward_auth.trusted_peers", vec!["127.0.0.1"]);
    // Served from a file, so that reloads (good and bad) can move the reload counter.
    let config_text = builder.toml();
    let config_file = registered.secret_file.with_extension("toml");
    std::fs::write(&config_file, &config_text).unwrap();
    let gateway = Gateway::new(builder.build(), Metrics::new(), Some(config_file.clone()));
    let proxy = scopegate::server::serve_all(
        gateway,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
    );
    eventually("keys loaded", || proxy.app.is_ready()).await;

    let http = client();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("http://{}{path}", proxy.addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let jwt = |scope: &str| jwt_issuer.mint_access_token(&AccessTokenRequest::new(scope, &[AUDIENCE]));
    let opaque_token = || {
        opaque.mint_access_token(&AccessTokenRequest {
            client_id: registered.client_id.clone(),
            ..AccessTokenRequest::new("read", &[AUDIENCE])
        })
    };

    let read = jwt("read");
    assert_eq!(get("/pub/x", None).await, 200, "public");
    assert_eq!(get("/read/x", Some(&read)).await, 200, "allow, jwt miss");
    assert_eq!(get("/read/x", Some(&read)).await, 200, "allow, jwt hit");
    let asked = http
        .get(format!("http://{}/", proxy.forward_auth_addr.unwrap()))
        .bearer_auth(&read)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/read/x")
        .header("x-forwarded-host", "api.test")
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200, "forward-auth allow");
    assert_eq!(get("/read/x", None).await, 401, "deny: missing token");
    assert_eq!(
        get("/read/x", Some(&jwt("other"))).await,
        403,
        "deny: insufficient scope"
    );
    let active = opaque_token();
    assert_eq!(get("/read/x", Some(&active)).await, 200, "introspection miss, active");
    assert_eq!(get("/read/x", Some(&active)).await, 200, "introspection hit");
    assert_eq!(get("/read/x", Some("made-up-opaque-token")).await, 401, "inactive");
    assert_eq!(get("/read/slow", Some(&read)).await, 504, "upstream timeout");
    assert_eq!(get("/read/garbage", Some(&read)).await, 502, "upstream protocol error");
    opaque.set_fault(Fault::Status(500));
    assert_eq!(get("/read/x", Some(&opaque_token())).await, 503, "introspection error");
    upstream_task.abort();
    let _ = upstream_task.await;
    assert_eq!(get("/read/x", Some(&read)).await, 502, "upstream connect error");
    std::fs::write(&config_file, format!("{config_text}\n# edited\n")).unwrap();
    assert!(proxy.app.reload_file().unwrap().changed, "reload: success");
    std::fs::write(&config_file, format!("{config_text}\n[unknown_table]\n")).unwrap();
    assert!(proxy.app.reload_file().is_err(), "reload: rejected");
    let _ = std::fs::remove_file(&config_file);

    let text = scrape_metrics(proxy.admin_addr).await + &tls_traffic().await;
    let scrape = Scrape::parse(&text);

    // The fleet's families need a Redis and a transmitter: tests/e2e/fleet.rs moves them.
    let core = documented()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("scopegate_fleet_") && !name.starts_with("scopegate_ssf_"));
    for (name, documented_type) in core {
        let exported = scrape
            .types
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not exported:\n{text}"));
        assert_eq!(exported, &documented_type, "{name}: docs say {documented_type}");
        let moved = match exported.as_str() {
            "counter" => scrape.sum(&name, &[]) > 0.0,
            "histogram" => scrape.sum(&format!("{name}_count"), &[]) > 0.0,
            _ => continue,
        };
        assert!(moved, "{name} has no non-zero sample:\n{text}");
    }
    for result in ["success", "rejected"] {
        let label = format!("result=\"{result}\"");
        assert!(
            scrape
                .samples
                .iter()
                .any(|(n, l, v)| n == "scopegate_config_reloads_total" && l == &label && *v == 1.0),
            "one {result} reload:\n{text}"
        );
    }

    // The documented label values, as traffic produced them.
    let requests = "scopegate_requests_total";
    for decision in ["public", "allow", "deny", "unavailable"] {
        let label = format!("decision=\"{decision}\"");
        assert!(scrape.sum(requests, &[&label]) > 0.0, "{decision}:\n{text}");
    }
    for class in ["2xx", "4xx", "5xx"] {
        let label = format!("status_class=\"{class}\"");
        assert!(scrape.sum(requests, &[&label]) > 0.0, "{class}:\n{text}");
    }
    for kind in ["timeout", "connect", "protocol"] {
        let label = format!("kind=\"{kind}\"");
        assert_eq!(
            scrape.sum("scopegate_upstream_errors_total", &[&label]),
            1.0,
            "{kind}:\n{text}"
        );
    }
    for cache in ["jwt", "introspection"] {
        for result in ["hit", "miss"] {
            let (c, r) = (format!("cache=\"{cache}\""), format!("result=\"{result}\""));
            assert!(
                scrape.sum("scopegate_cache_lookups_total", &[&c, &r]) > 0.0,
                "{cache} {result}:\n{text}"
            );
        }
        let c = format!("cache=\"{cache}\"");
        assert!(
            scrape.sum("scopegate_cache_entries", &[&c]) > 0.0,
            "{cache} entries:\n{text}"
        );
    }
    for result in ["active", "inactive", "error"] {
        let label = format!("result=\"{result}\"");
        assert_eq!(
            scrape.sum("scopegate_introspection_calls_total", &[&label]),
            1.0,
            "{result}:\n{text}"
        );
    }
    for decision in ["allow", "deny", "unavailable"] {
        let label = format!("decision=\"{decision}\"");
        assert!(
            scrape.sum("scopegate_auth_decisions_total", &[&label]) > 0.0,
            "{decision}:\n{text}"
        );
    }
    let issuer = format!("issuer=\"{}\"", jwt_issuer.issuer());
    assert_eq!(scrape.sum("scopegate_jwks_keys", &[&issuer]), 1.0, "{text}");
    assert!(scrape.sum("scopegate_jwks_last_success_timestamp_seconds", &[&issuer]) > 1.0e9);
    let age = scrape.sum("scopegate_jwks_seconds_since_last_success", &[&issuer]);
    assert!((0.0..60.0).contains(&age), "JWKS age {age}:\n{text}");
    assert!(scrape.sum("scopegate_build_info", &[]) == 1.0, "{text}");

    proxy.shutdown().await;
}

/// The TLS families of a second proxy, one that terminates TLS, after one failed handshake
/// and one certificate reload (the proxy above serves plain HTTP).
async fn tls_traffic() -> String {
    let files = Files::new("catalog");
    let ca = Ca::new("catalog CA");
    files.server(&ca.issue(&["scopegate.test"], false));
    let config = ConfigBuilder::new("http://127.0.0.1:9")
        .route(RouteBuilder::new("pub", "/**").public())
        .set("listener.tls.cert_file", files.path("cert.pem"))
        .set("listener.tls.key_file", files.path("key.pem"))
        .set("reload.interval", "100ms")
        .build();
    let proxy = start_proxy(config).await;
    // Plain HTTP to the TLS port: a failed handshake.
    let _ = raw_request(proxy.addr, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n").await;
    files.server(&ca.issue(&["scopegate.test"], false));
    let text = eventually_some("a failed handshake and a certificate reload are counted", || async {
        let text = scrape_metrics(proxy.admin_addr).await;
        let moved = text.contains(r#"scopegate_tls_reloads_total{result="success"} 1"#)
            && text.contains(r#"scopegate_tls_handshake_failures_total{reason="failed"} 1"#);
        moved.then_some(text)
    })
    .await;
    proxy.shutdown().await;
    text.lines()
        .filter(|line| line.contains("scopegate_tls_"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The number of auth-outcome series docs/metrics.md says are exported at zero.
fn documented_auth_outcome_count() -> usize {
    let text = include_str!("../../docs/metrics.md");
    let row = text
        .lines()
        .find(|line| line.starts_with("| scopegate_auth_decisions_total |"))
        .unwrap();
    row.trim_end_matches(" |").rsplit("| ").next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_fresh_instance_exports_known_series_at_zero() {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = crate::common::Upstream::start().await;
    let config = ConfigBuilder::new(&upstream.url())
        .issuer(IssuerBuilder::new(issuer.issuer(), &[AUDIENCE]))
        .route(RouteBuilder::new("health", "/health").public())
        .route(RouteBuilder::new("items", "/items/**").scopes(&["read"]))
        .route(RouteBuilder::new("trial", "/trial/**").scopes(&["write"]).dry_run())
        .build();
    let proxy = crate::common::start_proxy(config).await;
    let fresh = scrape_metrics(proxy.admin_addr).await;
    for line in [
        r#"scopegate_auth_decisions_total{decision="allow",reason="ok"} 0"#,
        r#"scopegate_auth_decisions_total{decision="deny",reason="missing_token"} 0"#,
        r#"scopegate_auth_decisions_total{decision="deny",reason="expired"} 0"#,
        r#"scopegate_auth_decisions_total{decision="deny",reason="insufficient_scope"} 0"#,
        r#"scopegate_auth_decisions_total{decision="deny",reason="wrong_resource"} 0"#,
        r#"scopegate_auth_decisions_total{decision="unavailable",reason="jwks_unavailable"} 0"#,
        r#"scopegate_requests_total{decision="public",route="health",status_class="2xx"} 0"#,
        r#"scopegate_requests_total{decision="allow",route="items",status_class="2xx"} 0"#,
        r#"scopegate_requests_total{decision="deny",route="items",status_class="4xx"} 0"#,
        r#"scopegate_requests_total{decision="unavailable",route="items",status_class="5xx"} 0"#,
        r#"scopegate_requests_total{decision="would_deny",route="trial",status_class="2xx"} 0"#,
        r#"scopegate_requests_total{decision="deny",route="unmatched",status_class="4xx"} 0"#,
        r#"scopegate_upstream_errors_total{kind="timeout"} 0"#,
        r#"scopegate_upstream_errors_total{kind="saturated"} 0"#,
        r#"scopegate_cache_lookups_total{cache="introspection",result="miss"} 0"#,
        r#"scopegate_introspection_calls_total{result="error"} 0"#,
    ] {
        assert!(fresh.contains(line), "missing {line}\n{fresh}");
    }
    let lines = |text: &str, prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        lines(&fresh, "scopegate_auth_decisions_total{"),
        documented_auth_outcome_count(),
        "docs/metrics.md states how many auth outcomes are exported at zero"
    );
    // Only the usual outcomes of each route: bounded, not routes × decisions × classes.
    assert_eq!(lines(&fresh, "scopegate_requests_total{"), 1 + 3 + 4 + 1, "{fresh}");
    assert!(!fresh.contains(r#"route="health",status_class="4xx""#), "{fresh}");

    // Traffic moves the series that were there, it does not add a second one.
    eventually("the proxy has keys", || proxy.app.is_ready()).await;
    let r = client()
        .get(format!("http://{}/items/1", proxy.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let after = scrape_metrics(proxy.admin_addr).await;
    assert!(
        after.contains(r#"scopegate_auth_decisions_total{decision="deny",reason="missing_token"} 1"#),
        "{after}"
    );
    assert!(
        after.contains(r#"scopegate_requests_total{decision="deny",route="items",status_class="4xx"} 1"#),
        "{after}"
    );
    assert_eq!(
        lines(&after, "scopegate_auth_decisions_total{"),
        documented_auth_outcome_count()
    );
    assert_eq!(upstream.requests(), 0);
}
