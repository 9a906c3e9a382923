//! MCP routes end to end: the development issuer, scopegate and a Rust streamable-HTTP test
//! upstream, all on 127.0.0.1:0. Covers RFC 9728 metadata, challenges, RFC 8707 audience
//! binding, tool-level rules (header- and body-based, two protocol revisions), and
//! streamable HTTP passing through untouched (202, SSE answers, long GET streams, DELETE).
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{client, dev_issuer, eventually, raw_request, status_of};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Both the listener's idle timeout and the upstream's response-header timeout.
const SHORT_TIMEOUT: Duration = Duration::from_secs(1);
const OTHER_RESOURCE: &str = "https://other.test/mcp";

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
idle_timeout = "1s"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
response_header_timeout = "1s"
[auth]
realm = "api"
resource_metadata = "https://api.test/.well-known/oauth-protected-resource"
[scopes.implies]
write = ["read"]
[[issuer]]
url = "{issuer}"
audiences = ["{resource}", "https://other.test/mcp"]
[[route]]
name = "api"
path = "/api/**"
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
method = "resources/*"
scopes = ["read"]
[[route.mcp_rule]]
method = "resources/read"
name = "file:///secret/*"
scopes = ["write"]
[mcp]
resource = "{resource}"
resource_name = "Notes MCP server"
resource_documentation = "https://docs.test/mcp"
max_body_bytes = "2KiB"
mirror_authorization_server_metadata = true
"#;

#[derive(Default, Clone)]
struct Seen {
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A minimal streamable-HTTP MCP endpoint at `/mcp`:
/// - POST `notifications/*` → 202; POST `tools/call` of `stream_*` → an SSE answer;
///   other POSTs → a JSON-RPC result naming the method; `Mcp-Session-Id: sess-1` on all.
/// - GET → an event stream of `?events=N` events `?every=MS` apart, first echoing `Last-Event-ID`.
/// - DELETE → 200.
struct McpUpstream {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
}

impl McpUpstream {
    async fn start() -> McpUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (c, s) = (count.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| mcp_handler(req, c.clone(), s.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        McpUpstream { addr, count, seen }
    }

    fn requests(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn query(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

async fn mcp_handler(
    req: Request<Incoming>,
    count: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
) -> Result<Response<Body>, Infallible> {
    count.fetch_add(1, Ordering::SeqCst);
    let method = req.method().clone();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_string());
    let (events, every) = (query(&req, "events").unwrap_or(3), query(&req, "every").unwrap_or(100));
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    *seen.lock().unwrap() = Seen {
        method: method.to_string(),
        headers,
        body: body.clone(),
    };
    let mut response = match method.as_str() {
        "GET" => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let first = format!(
                    "id: 1\ndata: {{\"last_event_id\":{}}}\n\n",
                    serde_json::to_string(&last_event_id).unwrap()
                );
                let _ = tx.send(Ok(Frame::data(Bytes::from(first)))).await;
                for n in 2..=events {
                    tokio::time::sleep(Duration::from_millis(every)).await;
                    let event = format!("id: {n}\ndata: {{\"n\":{n}}}\n\n");
                    if tx.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                        return;
                    }
                }
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(receiver_stream(rx))));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        "POST" => {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let rpc_method = message["method"].as_str().unwrap_or("batch").to_string();
            let tool = message["params"]["name"].as_str().unwrap_or("").to_string();
            let result = json!({"jsonrpc": "2.0", "id": message["id"], "result": {"method": rpc_method}});
            if rpc_method.starts_with("notifications/") {
                let mut r = Response::new(Full::new(Bytes::new()).boxed());
                *r.status_mut() = StatusCode::ACCEPTED;
                r
            } else if tool.starts_with("stream_") {
                let mut r =
                    Response::new(Full::new(Bytes::from(format!("event: message\ndata: {result}\n\n"))).boxed());
                r.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                r
            } else {
                let mut r = Response::new(Full::new(Bytes::from(result.to_string())).boxed());
                r.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                r
            }
        }
        _ => Response::new(Full::new(Bytes::new()).boxed()),
    };
    response
        .headers_mut()
        .insert("mcp-session-id", "sess-1".parse().unwrap());
    Ok(response)
}

fn receiver_stream<T>(mut rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct World {
    issuer: DevIssuer,
    upstream: McpUpstream,
    proxy: scopegate::server::Running,
    resource: String,
}

impl World {
    async fn start() -> World {
        let issuer = dev_issuer(DevIssuerConfig::default()).await;
        let upstream = McpUpstream::start().await;
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let resource = format!("http://{}/mcp", data.local_addr().unwrap());
        let text = CONFIG
            .replace("{upstream}", &format!("http://{}", upstream.addr))
            .replace("{issuer}", issuer.issuer())
            .replace("{resource}", &resource);
        let config = scopegate::config::Config::from_toml(&text, "test.toml").unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = scopegate::server::start_with_listeners(config, data, admin);
        eventually("keys loaded", || proxy.app.is_ready()).await;
        World {
            issuer,
            upstream,
            proxy,
            resource,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    fn token_for(&self, scope: &str, audience: &str) -> String {
        self.issuer.mint_access_token(&AccessTokenRequest {
            scope: scope.into(),
            audience: vec![audience.to_string()],
            expires_in_secs: 300,
            ..AccessTokenRequest::default()
        })
    }

    fn token(&self, scope: &str) -> String {
        self.token_for(scope, &self.resource)
    }

    fn metadata_url(&self) -> String {
        format!("http://{}/.well-known/oauth-protected-resource/mcp", self.proxy.addr)
    }

    /// A JSON-RPC POST as a 2025-06-18 client sends it (no Mcp-Method/Mcp-Name) or, with
    /// `headers`, as a 2026-07-28 client does.
    async fn post(&self, token: &str, version: &str, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
        let mut request = client()
            .post(self.url("/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", version)
            .header("mcp-session-id", "sess-1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body.to_string()).send().await.unwrap()
    }
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

#[tokio::test]
async fn protected_resource_metadata_is_exact_and_never_built_from_host() {
    let w = World::start().await;
    let expected = json!({
        "resource": w.resource,
        "authorization_servers": [w.issuer.issuer()],
        "scopes_supported": ["mcp", "read", "write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Notes MCP server",
        "resource_documentation": "https://docs.test/mcp",
    });
    assert!(!w.issuer.issuer().ends_with('/'), "issuer spelled as configured");
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let r = client().get(w.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["cache-control"], "public, max-age=300");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(r.json::<Value>().await.unwrap(), expected, "{path}");
    }
    // A forged Host (and X-Forwarded-Host) changes nothing.
    let raw = raw_request(
        w.proxy.addr,
        b"GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let body = raw.split("\r\n\r\n").nth(1).unwrap();
    assert!(!body.contains("evil"), "{raw}");
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), expected);
    // GET only; unknown well-known paths are not answered by the metadata handler.
    let r = client()
        .post(w.url("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = client()
        .get(w.url("/.well-known/oauth-protected-resource/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(w.upstream.requests(), 0, "metadata never reaches the upstream");
}

#[tokio::test]
async fn authorization_server_metadata_mirror_is_fetched_once_and_cached() {
    let w = World::start().await;
    let before = w.issuer.count(Endpoint::Metadata);
    for _ in 0..3 {
        let r = client()
            .get(w.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["issuer"], w.issuer.issuer());
        assert_eq!(doc["token_endpoint"], w.issuer.token_endpoint());
    }
    assert_eq!(w.issuer.count(Endpoint::Metadata), before + 1, "cached after one fetch");
    assert_eq!(w.upstream.requests(), 0);
}

#[tokio::test]
async fn challenges_name_the_route_metadata_and_every_needed_scope() {
    let w = World::start().await;
    let r = client()
        .post(w.url("/mcp"))
        .header("host", "evil.example")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer realm=\"api\", resource_metadata=\"{}\", scope=\"mcp\"",
            w.metadata_url()
        )
    );
    // An early answer to a request whose body is not read closes the connection, and says so.
    assert_eq!(r.headers()["connection"], "close");
    // Non-MCP routes keep auth.resource_metadata.
    let r = client().get(w.url("/api/x")).send().await.unwrap();
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"api\", resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\", scope=\"read\""
    );
    // Missing the route scope.
    let r = w.post(&w.token("read"), "2025-06-18", &[], &call(1, "add")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer realm=\"api\", resource_metadata=\"{}\", error=\"insufficient_scope\", error_description=\"the token lacks a scope this operation needs\", scope=\"mcp\"",
            w.metadata_url()
        )
    );
    assert!(!challenge(&r).contains("offline_access"));
    assert_eq!(w.upstream.requests(), 0);
}

#[tokio::test]
async fn a_token_for_another_resource_is_invalid_and_never_forwarded() {
    let w = World::start().await;
    let token = w.token_for("mcp write read", OTHER_RESOURCE);
    for version in ["2025-06-18", "2026-07-28"] {
        let r = w
            .post(
                &token,
                version,
                &[],
                &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
            )
            .await;
        assert_eq!(r.status(), 401);
        let c = challenge(&r);
        assert!(c.contains("error=\"invalid_token\""), "{c}");
        assert!(
            c.contains("error_description=\"the token was not issued for this resource\""),
            "{c}"
        );
        assert!(
            c.contains(&format!("resource_metadata=\"{}\"", w.metadata_url())),
            "{c}"
        );
    }
    // GET streams and DELETE are bound to the resource too.
    let r = client().get(w.url("/mcp")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client().delete(w.url("/mcp")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The same token is fine where the issuer's audiences, not the MCP resource, decide.
    let r = client().get(w.url("/api/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.upstream.requests(), 1, "only the /api request reached the upstream");
    // And the other way round: a token minted only for the MCP resource does not open the API.
    let mcp_only = w.token_for("mcp write read", &w.resource);
    let r = client()
        .get(w.url("/api/x"))
        .bearer_auth(&mcp_only)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("the token was not issued for this resource"));
    assert_eq!(w.upstream.requests(), 1);
}

#[tokio::test]
async fn tool_rules_from_the_body_2025_06_18() {
    let w = World::start().await;
    let mcp = w.token("mcp");
    let r = w.post(&mcp, "2025-06-18", &[], &call(1, "add")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["mcp-session-id"], "sess-1");
    assert_eq!(r.json::<Value>().await.unwrap()["result"]["method"], "tools/call");
    let seen = w.upstream.last();
    assert_eq!(
        seen.body,
        call(1, "add").to_string().into_bytes(),
        "forwarded unchanged"
    );
    assert_eq!(seen.header("mcp-protocol-version"), Some("2025-06-18"));
    assert_eq!(seen.header("mcp-session-id"), Some("sess-1"));

    let r = w.post(&mcp, "2025-06-18", &[], &call(2, "delete_note")).await;
    assert_eq!(r.status(), 403);
    let c = challenge(&r);
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    assert!(c.ends_with("scope=\"mcp write\""), "{c}");
    assert!(
        c.contains(&format!("resource_metadata=\"{}\"", w.metadata_url())),
        "{c}"
    );
    assert_eq!(w.upstream.requests(), 1);

    let read = json!({"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"note://1"}});
    let r = w.post(&mcp, "2025-06-18", &[], &read).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).ends_with("scope=\"mcp read\""));
    // write implies read (scopes.implies).
    let r = w.post(&w.token("mcp write"), "2025-06-18", &[], &read).await;
    assert_eq!(r.status(), 200);
    let r = w
        .post(&w.token("mcp write"), "2025-06-18", &[], &call(4, "delete_note"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.upstream.requests(), 3);
}

#[tokio::test]
async fn tool_rules_from_headers_2026_07_28_and_mismatches() {
    let w = World::start().await;
    let headers = [("mcp-method", "tools/call"), ("mcp-name", "delete_note")];
    let r = w
        .post(&w.token("mcp"), "2026-07-28", &headers, &call(1, "delete_note"))
        .await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).ends_with("scope=\"mcp write\""));
    let writer = w.token("mcp write");
    let r = w.post(&writer, "2026-07-28", &headers, &call(2, "delete_note")).await;
    assert_eq!(r.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.header("mcp-method"), Some("tools/call"));
    assert_eq!(seen.header("mcp-name"), Some("delete_note"));
    assert_eq!(seen.header("mcp-protocol-version"), Some("2026-07-28"));
    // Base64-encoded names are decoded before comparing.
    let encoded = [
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?ZGVsZXRlX25vdGU=?="),
    ];
    let r = w.post(&writer, "2026-07-28", &encoded, &call(3, "delete_note")).await;
    assert_eq!(r.status(), 200);
    let count = w.upstream.requests();

    // A header that names a harmless tool while the body calls another: 400, not forwarded.
    let lying = [("mcp-method", "tools/call"), ("mcp-name", "add")];
    let r = w.post(&writer, "2026-07-28", &lying, &call(4, "delete_note")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_request");
    let r = w
        .post(&writer, "2026-07-28", &[("mcp-method", "tools/list")], &call(5, "add"))
        .await;
    assert_eq!(r.status(), 400);
    let r = client()
        .post(w.url("/mcp"))
        .bearer_auth(&writer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(w.upstream.requests(), count, "no mismatch reached the upstream");
}

#[tokio::test]
async fn a_batch_with_one_forbidden_call_is_refused_whole() {
    let w = World::start().await;
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/list"},
        call(2, "add"),
        call(3, "delete_everything"),
        {"jsonrpc":"2.0","method":"notifications/progress","params":{}}
    ]);
    let r = w.post(&w.token("mcp"), "2025-06-18", &[], &batch).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).ends_with("scope=\"mcp write\""), "{}", challenge(&r));
    assert_eq!(w.upstream.requests(), 0);
    let r = w.post(&w.token("mcp write"), "2025-06-18", &[], &batch).await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.upstream.requests(), 1);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_never_forwarded() {
    let w = World::start().await;
    let token = w.token("mcp write");
    let big = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"pad":"x".repeat(4096)}}});
    // With Content-Length.
    let r = w.post(&token, "2025-06-18", &[], &big).await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "payload_too_large");
    // Chunked, without a length: counted while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .to_string()
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = client()
        .post(w.url("/mcp"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(w.upstream.requests(), 0);
}

#[tokio::test]
async fn streamable_http_passes_through() {
    let w = World::start().await;
    let token = w.token("mcp");
    // 202 for a notification.
    let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    let r = w.post(&token, "2025-11-25", &[], &note).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["mcp-session-id"], "sess-1");
    // A POST answered with an event stream.
    let r = w
        .post(
            &token,
            "2025-11-25",
            &[("mcp-method", "tools/call"), ("mcp-name", "stream_numbers")],
            &call(1, "stream_numbers"),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert!(text.starts_with("event: message\ndata: {"), "{text}");
    // DELETE ends the session, with its header.
    let r = client()
        .delete(w.url("/mcp"))
        .bearer_auth(&token)
        .header("mcp-session-id", "sess-1")
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.method, "DELETE");
    assert_eq!(seen.header("mcp-session-id"), Some("sess-1"));
    assert_eq!(seen.header("mcp-protocol-version"), Some("2025-11-25"));
}

#[tokio::test]
async fn a_get_event_stream_outlives_the_short_timeouts() {
    let w = World::start().await;
    // 4 events, 1.2 s apart: 3.6 s in all, more than 3x the 1 s idle and response-header
    // timeouts, with every gap longer than either of them.
    let gap = SHORT_TIMEOUT.as_millis() as u64 * 6 / 5;
    let started = Instant::now();
    let r = client()
        .get(w.url(&format!("/mcp?events=4&every={gap}")))
        .bearer_auth(w.token("mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "sess-1")
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", "41")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["mcp-session-id"], "sess-1");
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let elapsed = started.elapsed();
    assert!(
        text.starts_with("id: 1\ndata: {\"last_event_id\":\"41\"}\n\n"),
        "{text}"
    );
    for n in 2..=4 {
        assert!(
            text.contains(&format!("id: {n}\ndata: {{\"n\":{n}}}\n\n")),
            "event {n} lost: {text}"
        );
    }
    assert!(elapsed >= SHORT_TIMEOUT * 3, "the stream was held {elapsed:?}");
    assert_eq!(w.upstream.last().header("last-event-id"), Some("41"));
}

#[tokio::test]
async fn bodies_on_other_methods_cannot_slip_past_tool_rules() {
    let w = World::start().await;
    let token = w.token_for("mcp", &w.resource);
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_note"}});
    for method in [http::Method::PUT, http::Method::PATCH] {
        let r = client()
            .request(method.clone(), w.url("/mcp"))
            .bearer_auth(&token)
            .json(&call)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{method}");
    }
    assert_eq!(w.upstream.requests(), 0);
}

fn read_resource(id: u64, uri: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "resources/read", "params": {"uri": uri}})
}

/// Sends a `resources/read` of `uri` and answers with its status and, for refusals, the
/// JSON error of the body.
async fn read_as(w: &World, token: &str, uri: &str) -> (u16, Value) {
    let r = w.post(token, "2025-06-18", &[], &read_resource(1, uri)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn resource_uris_are_compared_in_normal_form() {
    let w = World::start().await;
    let reader = w.token("mcp read");
    let (status, _) = read_as(&w, &reader, "file:///public/readme").await;
    assert_eq!(status, 200);
    assert_eq!(w.upstream.requests(), 1);
    // Spellings of the guarded URI that RFC 3986 §6.2.2 and RFC 8089 make equal to it: the
    // rule applies to them (403 with the rule's scope).
    for uri in [
        "file:///secret/key",
        "file://localhost/secret/key",
        "file://LOCALHOST/secret/key",
        "FILE:///secret/key",
        "file:///%73ecret/key",
        "file:///secre%74/key",
        "file:/secret/key",
    ] {
        let (status, _) = read_as(&w, &reader, uri).await;
        assert_eq!(status, 403, "{uri}");
    }
    // Spellings whose meaning depends on the upstream (dot segments, empty segments, an
    // encoded separator, another host, no scheme): refused before any rule is looked at.
    for uri in [
        "file:///public/../secret/key",
        "file:///./secret/key",
        "file:///public/%2e%2e/secret/key",
        "file:///secret%2Fkey",
        "file:///secret%2fkey",
        "file:////secret/key",
        "file:///secret//key",
        "file:///secret%5Ckey",
        "file://evil.test/secret/key",
        "/secret/key",
        "file:///secret/%zz",
    ] {
        let (status, body) = read_as(&w, &reader, uri).await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["error"], "bad_request", "{uri}");
    }
    assert_eq!(w.upstream.requests(), 1, "no refused read reached the upstream");

    // With the rule's scope, a normal-but-unusual spelling is forwarded byte for byte.
    let writer = w.token("mcp write");
    let (status, _) = read_as(&w, &writer, "file://localhost/secret/key").await;
    assert_eq!(status, 200);
    assert_eq!(
        w.upstream.last().body,
        read_resource(1, "file://localhost/secret/key").to_string().into_bytes()
    );
    // `Mcp-Name` names the same resource when it is equal in normal form.
    let headers = [("mcp-method", "resources/read"), ("mcp-name", "file:///secret/key")];
    let r = w
        .post(
            &writer,
            "2026-07-28",
            &headers,
            &read_resource(2, "file://localhost/secret/key"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = w
        .post(
            &reader,
            "2026-07-28",
            &headers,
            &read_resource(3, "file://localhost/secret/key"),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(w.upstream.requests(), 3);
}

#[tokio::test]
async fn encoded_bodies_are_refused_on_inspected_routes() {
    let w = World::start().await;
    let writer = w.token("mcp write");
    let post_with = |coding: &'static str| {
        client()
            .post(w.url("/mcp"))
            .bearer_auth(&writer)
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(call(1, "add").to_string())
            .send()
    };
    for coding in ["gzip", "br", "identity, gzip", "GZIP", "x-custom"] {
        let r = post_with(coding).await.unwrap();
        assert_eq!(r.status(), 415, "{coding}");
        assert_eq!(
            r.headers().get("accept-encoding").map(|v| v.to_str().unwrap()),
            Some("identity"),
            "{coding}"
        );
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_media_type");
    }
    assert_eq!(w.upstream.requests(), 0, "no encoded body reached the upstream");
    // `identity` is no encoding at all (RFC 9110 §8.4.1).
    let r = post_with("identity").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.upstream.requests(), 1);
}
