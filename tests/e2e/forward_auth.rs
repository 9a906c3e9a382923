//! Forward-auth (DESIGN §7): the listener an ingress asks. Asked directly here, over real
//! sockets, the way each ingress asks: the answer is the proxy's own decision (compared
//! with the proxy listener's answer to the same request), only trusted peers are answered,
//! each ingress's convention is read and no other, and nothing reaches the upstream. The
//! real nginx and Envoy in front are in `forward_auth_ingress`.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder, bearer_params};
use crate::common::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const AUDIENCE: &str = "https://api.test";
pub const MCP_RESOURCE: &str = "https://api.test/mcp";
/// A loopback address that is not among the trusted peers (Linux routes all of 127/8).
pub const UNTRUSTED: &str = "127.0.0.2";

/// An authorization server, one that is down, a counting upstream, and scopegate with a
/// forward-auth listener for `ingress` that trusts 127.0.0.1 only.
pub struct World {
    pub issuer: DevIssuer,
    /// Stopped before scopegate starts: its tokens meet an unreachable JWKS (503).
    pub down: DevIssuer,
    pub upstream: Upstream,
    pub proxy: scopegate::server::Running,
}

pub fn config(upstream: &str, issuer: &str, down: &str, ingress: &str) -> ConfigBuilder {
    ConfigBuilder::new(upstream)
        .set("forward_auth.listen", "127.0.0.1:0")
        .set("forward_auth.ingress", ingress)
        .set("forward_auth.trusted_peers", vec!["127.0.0.1"])
        .set("auth.realm", "api")
        .set("identity.claims.email", "x-auth-email")
        .mcp(MCP_RESOURCE, "Notes")
        .issuer(IssuerBuilder::new(issuer, &[AUDIENCE, MCP_RESOURCE]))
        .issuer(IssuerBuilder::new(down, &[AUDIENCE, MCP_RESOURCE]).set("fetch_timeout", "1s"))
        .route(RouteBuilder::new("read", "/read/**").scopes(&["read"]))
        .route(RouteBuilder::new("write", "/write/**").scopes(&["write"]))
        .route(RouteBuilder::new("public", "/pub/**").public())
        .route(RouteBuilder::new("mcp", "/mcp").mcp().scopes(&["mcp"]).mcp_rule(
            "tools/call",
            Some("delete_*"),
            &["write"],
        ))
}

impl World {
    pub async fn start(ingress: &str, adjust: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> World {
        let issuer = dev_issuer(DevIssuerConfig::default()).await;
        let down = dev_issuer(DevIssuerConfig::default()).await;
        down.stop().await;
        let upstream = Upstream::start().await;
        let builder = adjust(config(&upstream.url(), issuer.issuer(), down.issuer(), ingress));
        let proxy = scopegate::server::start(builder.build(), None).await.unwrap();
        let world = World {
            issuer,
            down,
            upstream,
            proxy,
        };
        // Ready for this test once the live issuer's keys are in (the other never will be).
        let probe = world.token("read");
        let proxy_addr = world.proxy.addr;
        eventually_some("the live issuer's keys are loaded", || {
            let request = get("/read/probe", Some(&probe), &[]);
            async move { (status_of(&raw_request(proxy_addr, request.as_bytes()).await) == 200).then_some(()) }
        })
        .await;
        world
    }

    pub fn forward_auth(&self) -> SocketAddr {
        self.proxy
            .forward_auth_addr
            .expect("the forward-auth listener is configured")
    }

    pub fn token(&self, scope: &str) -> String {
        self.issuer
            .mint_access_token(&AccessTokenRequest::new(scope, &[AUDIENCE]))
    }

    pub fn token_with_email(&self, scope: &str, email: &str) -> String {
        let mut request = AccessTokenRequest::new(scope, &[AUDIENCE]);
        request
            .extra_claims
            .insert("email".into(), serde_json::Value::String(email.into()));
        self.issuer.mint_access_token(&request)
    }

    pub fn mcp_token(&self, scope: &str) -> String {
        self.issuer
            .mint_access_token(&AccessTokenRequest::new(scope, &[MCP_RESOURCE]))
    }

    /// A token of the issuer that is down: its keys cannot be fetched.
    pub fn unverifiable_token(&self) -> String {
        self.down
            .mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]))
    }
}

/// A raw HTTP/1.1 GET for the proxy listener, with extra header lines.
pub fn get(target: &str, token: Option<&str>, extra: &[&str]) -> String {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// The question nginx's `auth_request` asks about `method target` (as the documented
/// configuration sets it up).
pub fn nginx_question(method: &str, target: &str, token: Option<&str>, extra: &[&str]) -> String {
    let mut lines = vec![
        format!("X-Original-Method: {method}"),
        format!("X-Original-URI: {target}"),
        "X-Forwarded-Host: api.test".to_string(),
    ];
    lines.extend(extra.iter().map(|l| l.to_string()));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    get("/_scopegate", token, &lines).replacen("Host: api.test", "Host: scopegate", 1)
}

/// Sends raw bytes from the local address `from` and reads the whole answer.
pub async fn ask_from(from: &str, addr: SocketAddr, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A header of a raw answer (first occurrence, name case-insensitive).
pub fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status of the answer to `request` sent to `addr`.
pub async fn status(addr: SocketAddr, request: &str) -> u16 {
    status_of(&raw_request(addr, request.as_bytes()).await)
}

pub fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn answers_are_the_proxys_decision() {
    let w = World::start("nginx", |b| b).await;
    let read = w.token("read");
    let down = w.unverifiable_token();
    // (name, target, token, extra header lines, status)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<&'a str>, u16);
    let cases: Vec<Case<'_>> = vec![
        ("allowed", "/read/a?x=1", Some(&read), vec![], 200),
        ("public", "/pub/a", None, vec![], 200),
        ("no token", "/read/a", None, vec![], 401),
        ("bad token", "/read/a", Some("not.a.jwt"), vec![], 401),
        ("scope missing", "/write/a", Some(&read), vec![], 403),
        (
            "two Authorization headers",
            "/read/a",
            Some(&read),
            vec!["Authorization: Bearer x"],
            400,
        ),
        ("encoded slash", "/read/a%2Fb", Some(&read), vec![], 400),
        ("method override", "/read/a?_method=DELETE", Some(&read), vec![], 400),
        ("no route", "/nothing", Some(&read), vec![], 404),
        ("issuer down", "/read/a", Some(&down), vec![], 503),
    ];
    for (name, target, token, extra, status) in cases {
        let through_proxy = raw_request(w.proxy.addr, get(target, token, &extra).as_bytes()).await;
        let before = w.upstream.requests();
        let answer = raw_request(
            w.forward_auth(),
            nginx_question("GET", target, token, &extra).as_bytes(),
        )
        .await;
        assert_eq!(w.upstream.requests(), before, "{name}: forward-auth never forwards");
        assert_eq!(status_of(&through_proxy), status, "{name}: proxy\n{through_proxy}");
        assert_eq!(status_of(&answer), status, "{name}: forward-auth\n{answer}");
        if status != 200 {
            for name_ in ["www-authenticate", "retry-after", "content-type"] {
                assert_eq!(header(&answer, name_), header(&through_proxy, name_), "{name}: {name_}");
            }
            assert_eq!(body(&answer), body(&through_proxy), "{name}: body");
        }
    }
    let fa = w.forward_auth();
    let challenge = |target: &str, token: Option<&str>| {
        let question = nginx_question("GET", target, token, &[]);
        async move {
            let answer = raw_request(fa, question.as_bytes()).await;
            bearer_params(header(&answer, "www-authenticate")).unwrap()
        }
    };
    let missing = challenge("/read/a", None).await;
    assert_eq!(missing.get("scope").map(String::as_str), Some("read"));
    assert!(
        !missing.contains_key("error"),
        "RFC 6750 §3.1: no error without credentials"
    );
    let forbidden = challenge("/write/a", Some(&read)).await;
    assert_eq!(forbidden["error"], "insufficient_scope");
    assert_eq!(forbidden["scope"], "write");
}

#[tokio::test]
async fn an_allowed_request_is_answered_with_its_identity_headers() {
    let w = World::start("nginx", |b| b).await;
    let token = w.token_with_email("read", "ana@example.com");
    let answer = raw_request(
        w.forward_auth(),
        nginx_question("GET", "/read/a", Some(&token), &["X-Auth-Subject: forged"]).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(header(&answer, "x-auth-subject"), Some("dev-user"));
    assert_eq!(header(&answer, "x-auth-client-id"), Some("dev-client"));
    assert_eq!(header(&answer, "x-auth-scopes"), Some("read"));
    assert_eq!(header(&answer, "x-auth-issuer"), Some(w.issuer.issuer()));
    assert_eq!(header(&answer, "x-auth-email"), Some("ana@example.com"));
    // The same values the proxy sends upstream.
    raw_request(w.proxy.addr, get("/read/a", Some(&token), &[]).as_bytes()).await;
    let seen = w.upstream.last();
    for name in [
        "x-auth-subject",
        "x-auth-client-id",
        "x-auth-scopes",
        "x-auth-issuer",
        "x-auth-email",
    ] {
        assert_eq!(seen.header(name), header(&answer, name), "{name}");
    }
    // A public route lends no identity.
    let public = raw_request(
        w.forward_auth(),
        nginx_question("GET", "/pub/a", Some(&token), &[]).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&public), 200);
    assert_eq!(header(&public, "x-auth-subject"), None);
}

#[tokio::test]
async fn only_trusted_peers_are_answered() {
    let w = World::start("nginx", |b| b).await;
    let read = w.token("read");
    let spoofed = nginx_question("GET", "/pub/a", None, &[]).replace("/_scopegate", "/read/secret");
    let answer = ask_from(UNTRUSTED, w.forward_auth(), &spoofed).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(body(&answer).contains("not trusted"), "{answer}");
    assert_eq!(header(&answer, "www-authenticate"), None);
    // Not even a question that would be allowed.
    let allowed = nginx_question("GET", "/read/a", Some(&read), &[]);
    assert_eq!(status_of(&ask_from(UNTRUSTED, w.forward_auth(), &allowed).await), 403);
    assert_eq!(status_of(&ask_from("127.0.0.1", w.forward_auth(), &allowed).await), 200);
    assert_eq!(
        w.upstream.requests(),
        1,
        "only the readiness probe reached the upstream"
    );
}

#[tokio::test]
async fn a_missing_repeated_or_malformed_original_is_400() {
    let w = World::start("nginx", |b| b).await;
    let read = w.token("read");
    let no_uri = get(
        "/_scopegate",
        Some(&read),
        &["X-Original-Method: GET", "X-Forwarded-Host: api.test"],
    );
    let no_method = get(
        "/_scopegate",
        Some(&read),
        &["X-Original-URI: /read/a", "X-Forwarded-Host: api.test"],
    );
    let two_uris = nginx_question("GET", "/read/a", Some(&read), &["X-Original-URI: /pub/a"]);
    let not_a_target = nginx_question("GET", "read/a", Some(&read), &[]);
    let not_a_method = nginx_question("G(T", "/read/a", Some(&read), &[]);
    for (name, question) in [
        ("no uri", no_uri),
        ("no method", no_method),
        ("two uris", two_uris),
        ("relative target", not_a_target),
        ("bad method", not_a_method),
    ] {
        let answer = raw_request(w.forward_auth(), question.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{name}: {answer}");
    }
    // The original's own rules hold: no Host is 400, a lower-case method is 400.
    let no_host = nginx_question("GET", "/read/a", Some(&read), &[]).replace("X-Forwarded-Host: api.test\r\n", "");
    assert_eq!(status(w.forward_auth(), &no_host).await, 400);
    let lower = nginx_question("get", "/read/a", Some(&read), &[]);
    assert_eq!(status(w.forward_auth(), &lower).await, 400);
    // The original method is the one decided on, not the question's GET.
    let delete = nginx_question("DELETE", "/write/a", Some(&read), &[]);
    assert_eq!(status(w.forward_auth(), &delete).await, 403);
}

#[tokio::test]
async fn each_ingress_convention_is_read_and_no_other() {
    let w = World::start("traefik", |b| b).await;
    let read = w.token("read");
    let traefik = |target: &str, extra: &[&str]| {
        let mut lines = vec![
            "X-Forwarded-Method: GET".to_string(),
            format!("X-Forwarded-Uri: {target}"),
            "X-Forwarded-Host: api.test".to_string(),
            "X-Forwarded-Proto: https".to_string(),
        ];
        lines.extend(extra.iter().map(|l| l.to_string()));
        lines
    };
    let fa = w.forward_auth();
    let ask = |lines: Vec<String>, token: Option<String>| async move {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        raw_request(fa, get("/", token.as_deref(), &lines).as_bytes()).await
    };
    assert_eq!(status_of(&ask(traefik("/read/a", &[]), Some(read.clone())).await), 200);
    assert_eq!(status_of(&ask(traefik("/write/a", &[]), Some(read.clone())).await), 403);
    // nginx's headers mean nothing to a Traefik listener: a client cannot name a public
    // route with them.
    let smuggled = traefik("/read/a", &["X-Original-URI: /pub/a", "X-Original-Method: GET"]);
    assert_eq!(status_of(&ask(smuggled, None).await), 401);
}

#[tokio::test]
async fn envoy_asks_with_its_own_method_and_path_behind_the_prefix() {
    let w = World::start("envoy", |b| b.set("forward_auth.path_prefix", "/ext_authz")).await;
    let read = w.token("read");
    let fa = w.forward_auth();
    let ask = |method: &str, target: &str, token: Option<&str>, extra: &[&str]| {
        let request = get(target, token, extra).replacen("GET", method, 1);
        async move { raw_request(fa, request.as_bytes()).await }
    };
    let allowed = ask(
        "GET",
        "/ext_authz/read/a?x=1",
        Some(&read),
        &[
            "X-Auth-Email: smuggled@example.com",
            "X_Auth_Role: admin",
            "X-Original-URI: /pub/a",
        ],
    )
    .await;
    assert_eq!(status_of(&allowed), 200, "{allowed}");
    assert_eq!(header(&allowed, "x-auth-subject"), Some("dev-user"));
    // Envoy keeps a client's header unless the answer sets or removes it: every identity
    // header the token did not grant, configured or sent, is named for removal.
    let removed: Vec<String> = header(&allowed, "x-envoy-auth-headers-to-remove")
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    assert!(removed.contains(&"x-auth-email".to_string()), "{removed:?}");
    assert!(removed.contains(&"x_auth_role".to_string()), "{removed:?}");
    assert!(!removed.contains(&"x-auth-subject".to_string()), "{removed:?}");
    assert_eq!(
        status_of(&ask("POST", "/ext_authz/write/a", Some(&read), &[]).await),
        403
    );
    assert_eq!(status_of(&ask("GET", "/ext_authz/read/a", None, &[]).await), 401);
    // A body the decision did not need is left unread: the answer closes the connection.
    let with_body = format!(
        "POST /ext_authz/read/a HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer {read}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let answer = raw_request(fa, with_body.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(header(&answer, "connection"), Some("close"), "{answer}");
    // Not behind the prefix: not a question this listener understands.
    assert_eq!(status_of(&ask("GET", "/read/a", Some(&read), &[]).await), 400);
    assert_eq!(status_of(&ask("GET", "/ext_authzread/a", Some(&read), &[]).await), 400);
}

/// A JSON-RPC `tools/call` POST to `{prefix}/mcp` (Envoy asks with the body when it has
/// `with_request_body`).
pub fn tools_call(prefix: &str, tool: &str, token: &str) -> String {
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#);
    format!(
        "POST {prefix}/mcp HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn mcp_tool_rules_read_the_body_when_the_ingress_sends_it() {
    let w = World::start("envoy", |b| b.set("forward_auth.path_prefix", "/ext_authz")).await;
    let mcp = w.mcp_token("mcp");
    let answer = raw_request(
        w.forward_auth(),
        tools_call("/ext_authz", "delete_note", &mcp).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    let params = bearer_params(header(&answer, "www-authenticate")).unwrap();
    assert_eq!(params["scope"], "mcp write");
    let allowed = raw_request(
        w.forward_auth(),
        tools_call("/ext_authz", "list_notes", &mcp).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&allowed), 200, "{allowed}");
    // A body cut at Envoy's limit is never judged by its first part.
    let partial = tools_call("/ext_authz", "list_notes", &mcp).replacen(
        "Connection: close\r\n",
        "Connection: close\r\nx-envoy-auth-partial-body: true\r\n",
        1,
    );
    assert_eq!(status(w.forward_auth(), &partial).await, 413);
}

#[tokio::test]
async fn a_body_the_decision_must_read_and_did_not_get_is_refused() {
    let w = World::start("nginx", |b| b).await;
    let mcp = w.mcp_token("mcp");
    // nginx never sends the body: an MCP call on a route with tool rules cannot be judged.
    let question = nginx_question("POST", "/mcp", Some(&mcp), &["Content-Type: application/json"]);
    let answer = raw_request(w.forward_auth(), question.as_bytes()).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(body(&answer).contains("did not send"), "{answer}");
    // Nor can a form body that might name `_method`.
    let read = w.token("write");
    let form = nginx_question(
        "POST",
        "/write/a",
        Some(&read),
        &["Content-Type: application/x-www-form-urlencoded"],
    );
    assert_eq!(status(w.forward_auth(), &form).await, 400);
    // Without a body, nothing needs reading.
    let plain = nginx_question("POST", "/write/a", Some(&read), &[]);
    assert_eq!(status(w.forward_auth(), &plain).await, 200);
}

#[tokio::test]
async fn the_proxy_listener_ignores_and_strips_original_request_headers() {
    let w = World::start("nginx", |b| b).await;
    let claims = [
        "X-Original-Method: DELETE",
        "X-Original-URI: /write/a",
        "X-Forwarded-Method: DELETE",
        "X-Forwarded-Uri: /write/a",
    ];
    let answer = expect(&w.proxy, &w.upstream, &get("/pub/a", None, &claims), 200, true).await;
    let seen = w.upstream.last();
    assert_eq!(
        (seen.method.as_str(), seen.path_and_query.as_str()),
        ("GET", "/pub/a"),
        "{answer}"
    );
    for name in [
        "x-original-method",
        "x-original-uri",
        "x-forwarded-method",
        "x-forwarded-uri",
    ] {
        assert!(!seen.has_header(name), "{name} reached the upstream");
    }
    // Nor do they make a protected route public.
    let claims = ["X-Original-URI: /pub/a", "X-Forwarded-Uri: /pub/a"];
    expect(&w.proxy, &w.upstream, &get("/read/a", None, &claims), 401, false).await;
}

#[tokio::test]
async fn access_log_and_metrics_say_forward_auth() {
    let (log, _guard) = AccessLog::capture();
    let w = World::start("nginx", |b| b).await;
    let read = w.token("read");
    let fa = w.forward_auth();
    raw_request(fa, nginx_question("GET", "/read/a", Some(&read), &[]).as_bytes()).await;
    raw_request(fa, nginx_question("GET", "/write/a", Some(&read), &[]).as_bytes()).await;
    ask_from(UNTRUSTED, fa, &nginx_question("GET", "/read/a", Some(&read), &[])).await;
    let events: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.get("via").map(String::as_str) == Some("forward_auth"))
        .collect();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| (e["route"].clone(), e["status"].clone(), e["reason"].clone()))
        .collect();
    assert!(
        summary.contains(&("read".into(), "200".into(), "ok".into())),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("write".into(), "403".into(), "insufficient_scope".into())),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("unmatched".into(), "403".into(), "forward_auth_untrusted_peer".into())),
        "{summary:?}"
    );
    let text = scrape_metrics(w.proxy.admin_addr).await;
    for series in [
        r#"scopegate_forward_auth_requests_total{decision="allow",route="read",status_class="2xx"} 1"#,
        r#"scopegate_forward_auth_requests_total{decision="deny",route="write",status_class="4xx"} 1"#,
        r#"scopegate_forward_auth_requests_total{decision="deny",route="unmatched",status_class="4xx"} 1"#,
    ] {
        assert!(text.contains(series), "{series}\n{text}");
    }
}

#[test]
fn forward_auth_config_mistakes_are_reported() {
    let base = |fragment: &str| {
        format!(
            "[listener]\naddress = \"127.0.0.1:8080\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n\
             [[route]]\nname = \"p\"\npath = \"/**\"\npublic = true\n[forward_auth]\n{fragment}"
        )
    };
    let problems = |fragment: &str| match scopegate::config::Config::from_toml(&base(fragment), "t.toml") {
        Ok(_) => panic!("accepted: {fragment}"),
        Err(e) => e.to_string(),
    };
    let none = problems("listen = \"127.0.0.1:9191\"\ningress = \"nginx\"\n");
    assert!(
        none.contains("forward_auth.trusted_peers") && none.contains("every request would be refused"),
        "{none}"
    );
    let everyone = problems("listen = \"127.0.0.1:9191\"\ningress = \"nginx\"\ntrusted_peers = [\"0.0.0.0/0\"]\n");
    assert!(everyone.contains("trusted_peers[0]"), "{everyone}");
    let prefix = problems(
        "listen = \"127.0.0.1:9191\"\ningress = \"nginx\"\ntrusted_peers = [\"10.0.0.0/8\"]\npath_prefix = \"/x\"\n",
    );
    assert!(prefix.contains("forward_auth.path_prefix"), "{prefix}");
    let clash = problems("listen = \"127.0.0.1:8080\"\ningress = \"envoy\"\ntrusted_peers = [\"10.0.0.1\"]\n");
    assert!(clash.contains("forward_auth.listen"), "{clash}");
    let ingress = problems("listen = \"127.0.0.1:9191\"\ningress = \"haproxy\"\ntrusted_peers = [\"10.0.0.1\"]\n");
    assert!(ingress.contains("forward_auth.ingress"), "{ingress}");
    let ok = base(
        "listen = \"127.0.0.1:9191\"\ningress = \"envoy\"\ntrusted_peers = [\"10.0.0.0/8\", \"::1\"]\npath_prefix = \"/ext_authz\"\n",
    );
    let config = scopegate::config::Config::from_toml(&ok, "t.toml").unwrap();
    assert_eq!(config.forward_auth.unwrap().path_prefix.as_deref(), Some("/ext_authz"));
}

#[test]
fn the_documented_example_section_compiles() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
    let (before, section) = text.split_once("# [forward_auth]").unwrap();
    // The section's block of comments ends at the first blank line; what follows is not its.
    let (section, after) = section.split_once("\n\n").unwrap_or((section, ""));
    let section: String = section
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(key) if key.contains(" = ") && key.starts_with(|c: char| c.is_ascii_lowercase()) => key,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    // The documented ingress is nginx; its keys must be accepted except the Envoy-only one.
    let section = section.replace("path_prefix = ", "# path_prefix = ");
    let config =
        scopegate::config::Config::from_toml(&format!("{before}{after}\n[forward_auth]{section}\n"), "example")
            .unwrap_or_else(|e| panic!("{e}"));
    let forward_auth = config.forward_auth.unwrap();
    assert_eq!(forward_auth.listen.to_string(), "127.0.0.1:9191");
    assert_eq!(forward_auth.trusted_peers.len(), 2);
}

#[tokio::test]
async fn a_reload_changes_trust_at_once_and_the_listener_at_restart() {
    let w = World::start("nginx", |b| b).await;
    let read = w.token("read");
    let question = nginx_question("GET", "/read/a", Some(&read), &[]);
    assert_eq!(status(w.forward_auth(), &question).await, 200);
    let base = config(&w.upstream.url(), w.issuer.issuer(), w.down.issuer(), "nginx");
    // Trusted peers reload live: 127.0.0.1 is no longer one.
    let report = w.proxy.app.apply(
        base.clone()
            .set("forward_auth.trusted_peers", vec!["10.0.0.0/8"])
            .build(),
    );
    assert!(report.restart_required.is_empty(), "{report:?}");
    assert_eq!(status(w.forward_auth(), &question).await, 403);
    // Without the section the listener trusts no one until the restart that closes it.
    let mut without = base.build();
    without.forward_auth = None;
    let report = w.proxy.app.apply(without);
    assert_eq!(report.restart_required, vec!["forward_auth.listen"], "{report:?}");
    assert_eq!(status(w.forward_auth(), &question).await, 403);
}
