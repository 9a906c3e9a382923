//! The one decision, seen from outside: `explain` and the running proxy answer every request
//! of a table the same way (status and reason code), and every request — answered, refused,
//! or cancelled by its client mid-way — leaves exactly one access-log event and the
//! in-flight gauge where it was.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::{AccessLog, Upstream, dev_issuer, raw_request, scrape_metrics, start_proxy, status_of};
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use scopegate::explain::{Credentials, Loaded, RequestSpec, explain_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API: &str = "https://api.test";
const MCP: &str = "https://api.test/mcp";

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[auth]
realm = "api"
[scopes.implies]
admin = ["write"]
write = ["read"]
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test", "https://api.test/mcp"]
[mcp]
resource = "https://api.test/mcp"
resource_name = "Notes"
[[route]]
name = "health"
path = "/health"
public = true
[[route]]
name = "items-read"
path = "/items/**"
methods = ["GET"]
scopes = ["read"]
[[route]]
name = "items-write"
path = "/items/**"
methods = ["POST", "PUT", "DELETE"]
scopes = ["write"]
[[route]]
name = "admin"
path = "/admin/**"
scopes = ["admin"]
[[route]]
name = "trial"
path = "/trial/**"
scopes = ["write"]
mode = "dry_run"
[[route]]
name = "slow"
path = "/slow"
public = true
[[route]]
name = "download"
path = "/download"
scopes = ["read"]
[[route]]
name = "sse"
path = "/sse"
scopes = ["read"]
[[route]]
name = "mcp"
path = "/mcp"
mcp = true
scopes = ["mcp"]
[[route.mcp_rule]]
method = "tools/call"
name = "delete_*"
scopes = ["write"]
[[route.mcp_rule]]
method = "resources/read"
name = "file:///secret/*"
scopes = ["write"]
"#;

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    loaded: Loaded,
}

async fn world() -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let text = CONFIG
        .replace("{upstream}", &upstream.url())
        .replace("{issuer}", issuer.issuer());
    let loaded = Loaded::from_toml(&text, "decision.toml").unwrap();
    let proxy = start_proxy(loaded.config.clone()).await;
    crate::common::eventually("the proxy has keys", || proxy.app.is_ready()).await;
    World {
        issuer,
        upstream,
        proxy,
        loaded,
    }
}

impl World {
    fn token(&self, scope: &str, audience: &str) -> String {
        self.issuer
            .mint_access_token(&AccessTokenRequest::new(scope, &[audience]))
    }
}

/// One request of the table: what is sent, and what both must answer.
struct Row {
    method: &'static str,
    target: &'static str,
    token: Option<String>,
    /// The `Host` field line sent first (`None`: none).
    host: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    /// `None`: forwarded (the test upstream answers 200).
    status: Option<u16>,
    reason: &'static str,
}

fn row(
    method: &'static str,
    target: &'static str,
    token: Option<&String>,
    status: Option<u16>,
    reason: &'static str,
) -> Row {
    Row {
        method,
        target,
        token: token.cloned(),
        host: Some("api.test"),
        headers: Vec::new(),
        body: None,
        status,
        reason,
    }
}

fn call(name: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#)
}

fn read_resource(uri: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#)
}

fn raw(row: &Row) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", row.method, row.target);
    if let Some(host) = row.host {
        out.push_str(&format!("Host: {host}\r\n"));
    }
    out.push_str("Connection: close\r\n");
    if let Some(token) = &row.token {
        out.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in &row.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = row.body.clone().unwrap_or_default();
    if row.body.is_some() {
        if !row.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            out.push_str("Content-Type: application/json\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[tokio::test]
async fn explain_and_the_proxy_decide_alike() {
    let (log, _guard) = AccessLog::capture();
    let w = world().await;
    let read = w.token("read", API);
    let write = w.token("write", API);
    let admin = w.token("admin", API);
    let mcp_only = w.token("mcp", MCP);
    let mcp_write = w.token("mcp write", MCP);
    let api_mcp = w.token("mcp write", API);
    let other = w.token("read", "https://other.test");
    let expired = w.issuer.mint_access_token(&AccessTokenRequest {
        expires_in_secs: -3600,
        ..AccessTokenRequest::new("read", &[API])
    });
    let mut tampered = read.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let garbage = "not-a-jwt".to_string();

    let mut rows = vec![
        row("GET", "/health", None, None, "ok"),
        row("HEAD", "/health", None, None, "ok"),
        row("GET", "/items/1", None, Some(401), "missing_token"),
        row("GET", "/items/1", Some(&read), None, "ok"),
        row("HEAD", "/items/1", Some(&read), None, "ok"),
        row("HEAD", "/items/1", None, Some(401), "missing_token"),
        row("get", "/items/1", Some(&read), Some(400), "method_not_uppercase"),
        row("delete", "/items/1", Some(&write), Some(400), "method_not_uppercase"),
        row("POST", "/items/1", Some(&read), Some(403), "insufficient_scope"),
        row("POST", "/items/1", Some(&write), None, "ok"),
        row("DELETE", "/items/1", Some(&admin), None, "ok"),
        row("PATCH", "/items/1", Some(&write), Some(404), "no_route"),
        row("GET", "/nowhere", Some(&read), Some(404), "no_route"),
        row("GET", "/items/a%2Fb", Some(&read), Some(400), "encoded_slash"),
        row("GET", "/../items/1", Some(&read), Some(400), "escapes_root"),
        row(
            "GET",
            "/items/x/%2e%2e/%2e%2e/admin/y",
            Some(&write),
            Some(403),
            "insufficient_scope",
        ),
        row("GET", "/admin/y", Some(&write), Some(403), "insufficient_scope"),
        row("GET", "/admin/y", Some(&admin), None, "ok"),
        row("GET", "/items/1", Some(&expired), Some(401), "expired"),
        row("GET", "/items/1", Some(&other), Some(401), "wrong_audience"),
        row("GET", "/items/1", Some(&tampered), Some(401), "bad_signature"),
        row("GET", "/items/1", Some(&garbage), Some(401), "malformed"),
        row("GET", "/items/1", Some(&mcp_only), Some(401), "wrong_resource"),
        row("GET", "/trial/x", None, None, "missing_token"),
        row("GET", "/trial/x", Some(&read), None, "insufficient_scope"),
        row("GET", "/trial/x", Some(&write), None, "ok"),
        row("GET", "/trial/x", Some(&mcp_only), None, "wrong_resource"),
        row("POST", "/mcp", None, Some(401), "missing_token"),
        row(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            Some(200),
            "ok",
        ),
        row(
            "POST",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            Some(405),
            "ok",
        ),
    ];
    let with = |mut row: Row, headers: Vec<(&'static str, String)>, body: Option<String>| {
        row.headers = headers;
        row.body = body;
        row
    };
    rows.extend([
        with(
            row("POST", "/mcp", Some(&mcp_only), None, "ok"),
            vec![],
            Some(call("read_note")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_only), Some(403), "insufficient_scope"),
            vec![],
            Some(call("delete_note")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_write), None, "ok"),
            vec![],
            Some(call("delete_note")),
        ),
        with(
            row("POST", "/mcp", Some(&api_mcp), Some(401), "wrong_resource"),
            vec![],
            Some(call("read_note")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_write), Some(400), "mcp_invalid_jsonrpc"),
            vec![],
            Some("{not json".into()),
        ),
        with(
            row("GET", "/mcp", Some(&mcp_only), Some(400), "mcp_body_not_allowed"),
            vec![],
            Some(call("delete_note")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_only), Some(400), "mcp_header_mismatch"),
            vec![("Mcp-Method", "tools/call".into()), ("Mcp-Name", "read_note".into())],
            Some(call("delete_note")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_only), Some(403), "insufficient_scope"),
            vec![],
            Some(read_resource("file://localhost/secret/key")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_write), None, "ok"),
            vec![],
            Some(read_resource("file://localhost/secret/key")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_write), Some(400), "mcp_uri_not_normal"),
            vec![],
            Some(read_resource("file:///public/../secret/key")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_write), Some(400), "mcp_uri_not_normal"),
            vec![],
            Some(read_resource("file:///secret%2Fkey")),
        ),
        with(
            row("POST", "/mcp", Some(&mcp_write), Some(415), "mcp_body_encoded"),
            vec![("Content-Encoding", "gzip".into())],
            Some(call("read_note")),
        ),
        // Another scheme is no bearer credential: the plain challenge (RFC 6750 §3.1).
        with(
            row("GET", "/items/1", None, Some(401), "missing_token"),
            vec![("Authorization", "Basic dXNlcjpwYXNz".into())],
            None,
        ),
        with(
            row("GET", "/items/1", None, Some(400), "malformed_authorization"),
            vec![("Authorization", "Bearer a b".into())],
            None,
        ),
        row(
            "GET",
            "/items/1?access_token=x",
            Some(&read),
            Some(400),
            "token_in_header_and_query",
        ),
        with(
            row(
                "GET",
                "/items/1",
                Some(&read),
                Some(400),
                "multiple_authorization_headers",
            ),
            vec![("Authorization", format!("Bearer {read}"))],
            None,
        ),
        // Request hygiene before routing (RFC 9112 §3.2, method override parameters).
        Row {
            host: None,
            ..row("GET", "/health", None, Some(400), "missing_host")
        },
        with(
            row("GET", "/items/1", Some(&read), Some(400), "multiple_host"),
            vec![("Host", "other.test".into())],
            None,
        ),
        Row {
            host: Some("bad host"),
            ..row("GET", "/health", None, Some(400), "invalid_host")
        },
        Row {
            host: Some("other.test"),
            ..row("GET", "http://api.test/items/1", Some(&read), None, "ok")
        },
        row(
            "POST",
            "/items/1?_method=DELETE",
            Some(&write),
            Some(400),
            "method_override",
        ),
        row("GET", "/health?%5Fmethod=DELETE", None, Some(400), "method_override"),
        with(
            row("POST", "/items/1", Some(&write), Some(400), "method_override"),
            vec![("Content-Type", "application/x-www-form-urlencoded".into())],
            Some("a=1&_method=DELETE".into()),
        ),
        with(
            row("POST", "/items/1", Some(&write), None, "ok"),
            vec![("Content-Type", "application/x-www-form-urlencoded".into())],
            Some("a=1&method=DELETE".into()),
        ),
    ]);
    assert!(rows.len() >= 30, "the table has {} rows", rows.len());

    for (i, row) in rows.iter().enumerate() {
        let what = format!("row {i}: {} {}", row.method, row.target);
        let forwarded_before = w.upstream.requests();
        let events_before = log.len();
        let answer = raw_request(w.proxy.addr, &raw(row)).await;
        let proxy_status = status_of(&answer);
        let forwarded = w.upstream.requests() > forwarded_before;
        let events = log.events();
        assert_eq!(events.len(), events_before + 1, "{what}: one access-log event");
        let proxy_reason = events.last().unwrap()["reason"].clone();

        let mut spec = RequestSpec::new(row.method, row.target);
        spec.host = row.host.map(str::to_string);
        spec.headers = row.headers.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
        spec.body = row.body.clone().map(String::into_bytes);
        let credentials = row.token.clone().map_or(Credentials::None, Credentials::Token);
        let explained = explain_request(&w.loaded, &spec, &credentials).await;

        // Each side against the table, so that the two cannot agree on a wrong answer.
        assert_eq!(explained.status(), row.status, "{what}: explain\n{explained}");
        assert_eq!(explained.reason, row.reason, "{what}: explain\n{explained}");
        assert_eq!(proxy_reason, row.reason, "{what}: proxy\n{answer}");
        assert_eq!(forwarded, row.status.is_none(), "{what}: forwarded\n{answer}");
        assert_eq!(proxy_status, row.status.unwrap_or(200), "{what}: proxy\n{answer}");
        if let Some(challenge) = &explained.www_authenticate {
            assert!(
                answer
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("www-authenticate: {challenge}"))),
                "{what}: the proxy's challenge differs from {challenge:?}\n{answer}"
            );
        }
    }
}

fn in_flight(metrics: &str) -> Option<i64> {
    metrics
        .lines()
        .find(|l| l.starts_with("scopegate_in_flight_requests "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Sends `request`, reads until `until` appears in the answer (or nothing: just sent), then
/// drops the connection.
async fn send_and_drop(addr: std::net::SocketAddr, request: String, until: Option<&str>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    if let Some(marker) = until {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&seen).contains(marker) {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .expect("the marker arrives")
                .unwrap();
            assert!(n > 0, "closed before {marker:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stream);
}

#[tokio::test]
async fn cancelled_requests_are_recorded_once_and_leave_no_gauge_behind() {
    let (log, _guard) = AccessLog::capture();
    let w = world().await;
    let read = w.token("read", API);
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer {read}\r\n\r\n");

    // Before the upstream answers: the client leaves while scopegate waits for the head.
    send_and_drop(w.proxy.addr, get("/slow?ms=3000"), None).await;
    // Mid-body: the head and the first bytes of a 50 MiB body arrived.
    send_and_drop(w.proxy.addr, get("/download?mib=50"), Some("xxxx")).await;
    // Mid-SSE: the first event arrived, the second never will.
    send_and_drop(w.proxy.addr, get("/sse"), Some("data: 1")).await;
    // Before a body inspection finished: half a JSON-RPC body, then gone.
    let mcp = w.token("mcp", MCP);
    send_and_drop(
        w.proxy.addr,
        format!(
            "POST /mcp HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer {mcp}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"jsonrpc\":"
        ),
        None,
    )
    .await;

    let admin = w.proxy.admin_addr;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape_metrics(admin).await;
        if in_flight(&metrics) == Some(0) && log.len() >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "in flight {:?}, {} events\n{metrics}",
            in_flight(&metrics),
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing is written twice, however the requests ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = log.events();
    assert_eq!(events.len(), 4, "{events:#?}");
    let by_route = |route: &str| events.iter().find(|e| e["route"] == route).unwrap().clone();
    let slow = by_route("slow");
    assert_eq!(slow["status"], "499", "{slow:?}");
    assert_eq!(slow["reason"], "client_closed");
    assert_eq!(by_route("download")["status"], "200");
    assert_eq!(by_route("sse")["status"], "200");
    // The client's going away ends the body scopegate was reading: recorded as that
    // failure, or as cancelled when hyper drops the request first — once either way.
    let inspected = by_route("mcp");
    let ending = (inspected["status"].as_str(), inspected["reason"].as_str());
    assert!(
        matches!(ending, ("400", "body_read_failed") | ("499", "client_closed")),
        "{inspected:?}"
    );
    let metrics = scrape_metrics(admin).await;
    assert!(
        metrics.contains("scopegate_requests_total{decision=\"cancelled\",route=\"slow\",status_class=\"4xx\"} 1"),
        "{metrics}"
    );
}
