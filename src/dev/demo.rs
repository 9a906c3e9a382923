//! `scopegate demo`: the development authorization server, a small echo API and the proxy
//! with a built-in route map, all on loopback, plus ready-to-paste requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::{AccessTokenRequest, DevError, DevIssuer, DevIssuerConfig, DpopProver, KeyAlg};
use crate::config::Config;
use crate::server::Running;

/// Where the demo listens.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address of the proxy (the protected API). Use 127.0.0.1:0 for any free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Run the example requests, print their statuses, and exit (non-zero on a mismatch).
    #[arg(long)]
    pub check: bool,
}

/// The demo's route map: public, read, write and MCP-style routes.
const DEMO_CONFIG: &str = r#"
[listener]
address = "{listen}"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[auth]
realm = "scopegate-demo"
[dpop]
mode = "allowed"
[scopes.implies]
write = ["read"]
[identity.claims]
email = "x-auth-email"
[[issuer]]
url = "{issuer}"
audiences = ["{audience}", "{audience}/mcp"]
[[route]]
name = "public"
path = "/api/public"
public = true
[[route]]
name = "projects-read"
path = "/api/projects/**"
methods = ["GET", "HEAD"]
scopes = ["read"]
[[route]]
name = "projects-write"
path = "/api/projects/**"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["write"]
[[route]]
name = "mcp"
path = "/mcp"
mcp = true
scopes = ["read", "mcp"]
[[route.mcp_rule]]
method = "tools/call"
name = "delete_*"
scopes = ["write"]
[mcp]
resource = "{audience}/mcp"
resource_name = "scopegate demo MCP endpoint"
"#;

const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const DELETE_CALL: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_note","arguments":{"id":1}}}"#;

/// One example request and the status it must produce.
pub struct Example {
    pub what: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub token: Option<String>,
    /// A JSON request body (sent with `Content-Type: application/json`).
    pub body: Option<&'static str>,
    /// Send the token with `Authorization: DPoP` and a fresh proof of this key (RFC 9449).
    pub dpop: Option<DpopProver>,
    pub expect: u16,
}

/// A running demo.
pub struct Demo {
    pub proxy: Running,
    pub issuer: DevIssuer,
    pub upstream: SocketAddr,
    pub examples: Vec<Example>,
}

impl Demo {
    pub async fn start(args: &DemoArgs) -> Result<Demo, DevError> {
        let issuer_listener = TcpListener::bind("127.0.0.1:0").await?;
        let data = crate::server::bind("demo proxy listener", "--listen", args.listen).await?;
        let audience = format!("http://{}", data.local_addr()?);
        let issuer = DevIssuer::start(
            issuer_listener,
            DevIssuerConfig {
                default_audience: Some(audience.clone()),
                dev_endpoints: true,
                ..DevIssuerConfig::default()
            },
        )
        .await?;
        let upstream = start_echo().await?;
        let text = DEMO_CONFIG
            .replace("{listen}", &data.local_addr()?.to_string())
            .replace("{upstream}", &format!("http://{upstream}"))
            .replace("{issuer}", issuer.issuer())
            .replace("{audience}", &audience);
        let config = Config::from_toml(&text, "demo").map_err(|e| DevError::Config(e.to_string()))?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = crate::server::start_with_listeners(config, data, admin);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !proxy.app.is_ready() {
            if tokio::time::Instant::now() > deadline {
                return Err(DevError::Config("the proxy did not load the issuer's keys".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let token = |scope: &str, ttl: i64| {
            issuer.mint_access_token(&AccessTokenRequest {
                scope: scope.into(),
                audience: vec![audience.clone()],
                expires_in_secs: ttl,
                extra_claims: serde_json::json!({"email": "dev-user@example.test"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ..AccessTokenRequest::default()
            })
        };
        let read = token("read", 3600);
        let write = token("write", 3600);
        let mcp_token = |scope: &str| {
            issuer.mint_access_token(&AccessTokenRequest {
                scope: scope.into(),
                audience: vec![format!("{audience}/mcp")],
                expires_in_secs: 3600,
                ..AccessTokenRequest::default()
            })
        };
        let mcp = mcp_token("read mcp");
        let mcp_other_resource = token("read mcp", 3600);
        let expired = token("read", -120);
        // RFC 9449: a token bound to this key (`cnf.jkt`), good only with its proofs.
        let prover = DpopProver::generate(KeyAlg::ES256)?;
        let bound = issuer.mint_access_token(&AccessTokenRequest {
            scope: "read".into(),
            audience: vec![audience.clone()],
            expires_in_secs: 3600,
            extra_claims: serde_json::json!({"cnf": {"jkt": prover.thumbprint()}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..AccessTokenRequest::default()
        });
        let examples = vec![
            Example {
                what: "public route, no token",
                method: "GET",
                path: "/api/public",
                token: None,
                body: None,
                dpop: None,
                expect: 200,
            },
            Example {
                what: "read token on a read route",
                method: "GET",
                path: "/api/projects/42",
                token: Some(read.clone()),
                body: None,
                dpop: None,
                expect: 200,
            },
            Example {
                what: "no token on a protected route",
                method: "GET",
                path: "/api/projects/42",
                token: None,
                body: None,
                dpop: None,
                expect: 401,
            },
            Example {
                what: "expired token",
                method: "GET",
                path: "/api/projects/42",
                token: Some(expired),
                body: None,
                dpop: None,
                expect: 401,
            },
            Example {
                what: "DPoP-bound token with its proof (RFC 9449)",
                method: "GET",
                path: "/api/projects/42",
                token: Some(bound.clone()),
                body: None,
                dpop: Some(prover),
                expect: 200,
            },
            Example {
                what: "the same DPoP-bound token sent as a bearer token",
                method: "GET",
                path: "/api/projects/42",
                token: Some(bound),
                body: None,
                dpop: None,
                expect: 401,
            },
            Example {
                what: "read token on a write route (missing scope)",
                method: "POST",
                path: "/api/projects",
                token: Some(read.clone()),
                body: None,
                dpop: None,
                expect: 403,
            },
            Example {
                what: "write token (write implies read)",
                method: "POST",
                path: "/api/projects",
                token: Some(write),
                body: None,
                dpop: None,
                expect: 200,
            },
            Example {
                what: "MCP route without the mcp scope",
                method: "POST",
                path: "/mcp",
                token: Some(mcp_token("read")),
                body: Some(TOOLS_LIST),
                dpop: None,
                expect: 403,
            },
            Example {
                what: "MCP route with read + mcp",
                method: "POST",
                path: "/mcp",
                token: Some(mcp.clone()),
                body: Some(TOOLS_LIST),
                dpop: None,
                expect: 200,
            },
            Example {
                what: "MCP tool that needs write (mcp_rule delete_*), read + mcp token",
                method: "POST",
                path: "/mcp",
                token: Some(mcp),
                body: Some(DELETE_CALL),
                dpop: None,
                expect: 403,
            },
            Example {
                what: "MCP route with a token for another resource (RFC 8707 audience)",
                method: "POST",
                path: "/mcp",
                token: Some(mcp_other_resource),
                body: Some(TOOLS_LIST),
                dpop: None,
                expect: 401,
            },
            Example {
                what: "MCP protected-resource metadata (RFC 9728), answered by scopegate",
                method: "GET",
                path: "/.well-known/oauth-protected-resource/mcp",
                token: None,
                body: None,
                dpop: None,
                expect: 200,
            },
            Example {
                what: "no route matches",
                method: "GET",
                path: "/nowhere",
                token: None,
                body: None,
                dpop: None,
                expect: 404,
            },
        ];
        Ok(Demo {
            proxy,
            issuer,
            upstream,
            examples,
        })
    }

    /// The banner and copy-paste `curl` lines.
    pub fn instructions(&self) -> String {
        let mut out = String::new();
        out.push_str("scopegate demo: development only (in-memory authorization server, auto-approved user)\n\n");
        out.push_str(&format!("  proxy (protected API)  http://{}\n", self.proxy.addr));
        out.push_str(&format!("  upstream echo API      http://{}\n", self.upstream));
        out.push_str(&format!(
            "  authorization server   {}  (metadata: {})\n",
            self.issuer.issuer(),
            self.issuer.metadata_url()
        ));
        out.push_str(&format!(
            "  metrics                http://{}/metrics\n\n",
            self.proxy.admin_addr
        ));
        out.push_str("Try these (tokens are valid for an hour; a DPoP proof is good once, within a minute):\n\n");
        for example in &self.examples {
            out.push_str(&format!(
                "# {} -> {}\n{}\n\n",
                example.what,
                example.expect,
                self.curl(example)
            ));
        }
        out.push_str("Press Ctrl-C to stop.\n");
        out
    }

    fn curl(&self, example: &Example) -> String {
        let method = if example.method == "GET" {
            String::new()
        } else {
            format!("-X {} ", example.method)
        };
        let auth = match (&example.token, &example.dpop) {
            (Some(t), Some(prover)) => format!(
                "-H 'Authorization: DPoP {t}' -H 'DPoP: {}' ",
                prover.proof(example.method, &self.url(example.path), Some(t), None)
            ),
            (Some(t), None) => format!("-H 'Authorization: Bearer {t}' "),
            (None, _) => String::new(),
        };
        let body = example
            .body
            .map(|b| format!("-H 'Content-Type: application/json' -d '{b}' "))
            .unwrap_or_default();
        format!("curl -i {method}{auth}{body}{}", self.url(example.path))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    /// Sends every example request; returns one line per example and whether all matched.
    pub async fn self_check(&self) -> (Vec<String>, bool) {
        let client = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
        let mut lines = Vec::new();
        let mut all_ok = true;
        for example in &self.examples {
            let method = http::Method::from_bytes(example.method.as_bytes()).unwrap_or(http::Method::GET);
            let mut request = client.request(method, format!("http://{}{}", self.proxy.addr, example.path));
            request = match (&example.token, &example.dpop) {
                (Some(token), Some(prover)) => request
                    .header(http::header::AUTHORIZATION, format!("DPoP {token}"))
                    .header(
                        "dpop",
                        prover.proof(example.method, &self.url(example.path), Some(token), None),
                    ),
                (Some(token), None) => request.bearer_auth(token),
                (None, _) => request,
            };
            if let Some(body) = example.body {
                request = request
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            let status = request.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            let ok = status == example.expect;
            all_ok &= ok;
            lines.push(format!(
                "{} {status} (expected {}) {} {} — {}",
                if ok { "ok  " } else { "FAIL" },
                example.expect,
                example.method,
                example.path,
                example.what
            ));
        }
        (lines, all_ok)
    }

    pub async fn shutdown(self) {
        self.proxy.shutdown().await;
        self.issuer.shutdown().await;
    }
}

/// A tiny upstream that answers with what it was sent, so the demo shows the identity
/// headers scopegate adds.
async fn start_echo() -> Result<SocketAddr, DevError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(echo))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let identity: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-auth-") || name.as_str().starts_with("x-forwarded-"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").into()))
        .collect();
    let body = serde_json::json!({
        "echo": { "method": req.method().as_str(), "path": req.uri().path(), "headers": identity }
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{body:#}\n"))));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
