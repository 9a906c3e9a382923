//! `scopegate check --online` against development authorization servers started here, and
//! against issuers that are not there.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use crate::common::weak_rsa::WeakRsaKey;
use scopegate::dev::{ClientRegistration, DevIssuer, DevIssuerConfig, Fault, SigningKey};
use scopegate::explain::Loaded;
use scopegate::online::{Progress, check_online};
use tokio::net::TcpListener;

const AUDIENCE: &str = "https://api.test";

/// Removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scopegate-online-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An issuer URL on which nothing listens.
async fn closed_issuer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// A JWT issuer that also publishes two keys scopegate must skip.
async fn jwt_issuer() -> DevIssuer {
    let issuer = DevIssuer::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        DevIssuerConfig::default(),
    )
    .await
    .unwrap();
    issuer.publish_extra_jwk(WeakRsaKey::load("weak-rsa").public_jwk());
    issuer.publish_extra_jwk(SigningKey::hmac("oct-1", b"0123456789abcdef0123456789abcdef").public_jwk());
    issuer
}

/// An issuer of opaque tokens with a registered confidential client; returns the client
/// id and secret.
async fn opaque_issuer() -> (DevIssuer, String, String) {
    let issuer = DevIssuer::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        DevIssuerConfig {
            opaque_access_tokens: true,
            default_audience: Some(AUDIENCE.into()),
            ..DevIssuerConfig::default()
        },
    )
    .await
    .unwrap();
    let client = issuer.register_client(ClientRegistration {
        grant_types: vec!["client_credentials".into()],
        token_endpoint_auth_method: Some("client_secret_basic".into()),
        scope: Some("read".into()),
        ..ClientRegistration::default()
    });
    let secret = client.client_secret.clone().unwrap();
    (issuer, client.client_id, secret)
}

const BASE: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[scopes.implies]
write = ["read"]
[[route]]
name = "health"
path = "/healthz"
methods = ["GET"]
public = true
[[route]]
name = "projects-read"
path = "/projects/**"
methods = ["GET", "HEAD"]
scopes = ["read"]
[[route]]
name = "admin"
path = "/admin/**"
any_scopes = [["admin"], ["write", "ops"]]
"#;

fn jwt_issuer_section(url: &str) -> String {
    format!("[[issuer]]\nurl = \"{url}\"\naudiences = [\"{AUDIENCE}\"]\nfetch_timeout = \"2s\"\n")
}

fn auto_issuer_section(url: &str, client_id: &str, secret_file: &std::path::Path) -> String {
    format!(
        "[[issuer]]\nurl = \"{url}\"\naudiences = [\"{AUDIENCE}\"]\nfetch_timeout = \"2s\"\ntoken_validation = \"auto\"\n\
         [issuer.introspection]\nclient_id = \"{client_id}\"\nclient_secret_file = \"{}\"\n",
        secret_file.display()
    )
}

#[tokio::test]
async fn online_check_passes_against_working_issuers() {
    let dir = TempDir::new("ok");
    let jwt = jwt_issuer().await;
    let (opaque, client_id, secret) = opaque_issuer().await;
    let secret_file = dir.write("secret", &secret);
    let text = format!(
        "{BASE}{}{}",
        jwt_issuer_section(jwt.issuer()),
        auto_issuer_section(opaque.issuer(), &client_id, &secret_file)
    );
    let loaded = Loaded::from_toml(&text, "t.toml").unwrap();
    let mut events = Vec::new();
    let report = check_online(&loaded, |p| match p {
        Progress::Checking { issuer, index, total } => events.push(format!("checking {index}/{total} {issuer}")),
        Progress::Done(r) => events.push(format!("done {}", r.issuer)),
    })
    .await;
    assert!(report.is_ok(), "{:?}", report.problems());
    assert_eq!(
        events,
        vec![
            format!("checking 1/2 {}", jwt.issuer()),
            format!("done {}", jwt.issuer()),
            format!("checking 2/2 {}", opaque.issuer()),
            format!("done {}", opaque.issuer()),
        ]
    );
    let first = &report.issuers[0];
    assert_eq!(first.usable_keys, Some(1), "{first}");
    assert_eq!(first.warnings.len(), 2, "{first}");
    assert!(first.warnings.iter().any(|w| w.contains("weak-rsa")), "{first}");
    assert!(first.warnings.iter().any(|w| w.contains("oct-1")), "{first}");
    assert!(first.lines.iter().any(|l| l.starts_with("discovery: ok")), "{first}");
    let second = &report.issuers[1];
    assert!(
        second
            .lines
            .iter()
            .any(|l| l.starts_with("introspection: ") && l.contains("ok")),
        "{second}"
    );
    assert_eq!(second.usable_keys, Some(1), "{second}");
    let from = format!(
        "a token from {} for audience {AUDIENCE}, or from {} for audience {AUDIENCE}",
        jwt.issuer(),
        opaque.issuer()
    );
    assert!(
        report.routes.contains(&format!(
            "GET,HEAD /projects/** (projects-read): {from} with scope \"read\" (or \"write\", which implies it)"
        )),
        "{:#?}",
        report.routes
    );
    assert!(
        report.routes.contains(&format!(
            "* /admin/** (admin): {from} with scope \"admin\", or with scopes \"write\" and \"ops\""
        )),
        "{:#?}",
        report.routes
    );
    assert!(
        report
            .routes
            .contains(&"GET /healthz (health): public: no token needed".to_string()),
        "{:#?}",
        report.routes
    );
    assert_eq!(report.summary(), "online check: 2 issuer(s), 2 ok, 0 failed");
}

#[tokio::test]
async fn every_unreachable_issuer_is_listed() {
    let (a, b) = (closed_issuer().await, closed_issuer().await);
    let text = format!("{BASE}{}{}", jwt_issuer_section(&a), jwt_issuer_section(&b));
    let loaded = Loaded::from_toml(&text, "t.toml").unwrap();
    let report = check_online(&loaded, |_| {}).await;
    assert!(!report.is_ok());
    let problems = report.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{a}: discovery failed")),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!("{b}: discovery failed")),
        "{problems:?}"
    );
    assert_eq!(
        report.summary(),
        "online check: 2 issuer(s), 0 ok, 2 failed, 2 problem(s)"
    );
}

#[tokio::test]
async fn misbehaving_issuers_are_problems() {
    let dir = TempDir::new("bad");
    // Wrong client secret: the introspection endpoint answers 401.
    let (opaque, client_id, secret) = opaque_issuer().await;
    let wrong = dir.write("secret", "not-the-secret");
    // A JWKS endpoint that fails while discovery works.
    let jwt = jwt_issuer().await;
    jwt.replace_jwks(Some(serde_json::json!({ "keys": [] })));
    let text = format!(
        "{BASE}{}{}",
        auto_issuer_section(opaque.issuer(), &client_id, &wrong),
        jwt_issuer_section(jwt.issuer())
    );
    let loaded = Loaded::from_toml(&text, "t.toml").unwrap();
    let report = check_online(&loaded, |_| {}).await;
    let problems = report.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(opaque.issuer()) && p.contains("client credentials rejected")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(jwt.issuer()) && p.contains("no usable signing key")),
        "{problems:?}"
    );
    assert_eq!(report.issuers[1].usable_keys, Some(0));

    // An introspection endpoint that answers HTML.
    opaque.set_fault(Fault::Html);
    let right = dir.write("secret", &secret);
    let text = format!("{BASE}{}", auto_issuer_section(opaque.issuer(), &client_id, &right));
    let report = check_online(&Loaded::from_toml(&text, "t.toml").unwrap(), |_| {}).await;
    assert!(!report.is_ok(), "an HTML answer must fail the check");
}

fn scopegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scopegate"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exit_status_and_output() {
    let dir = TempDir::new("bin");
    let jwt = jwt_issuer().await;
    let good = dir.write("good.toml", &format!("{BASE}{}", jwt_issuer_section(jwt.issuer())));
    let closed = closed_issuer().await;
    let bad = dir.write(
        "bad.toml",
        &format!(
            "{BASE}{}{}",
            jwt_issuer_section(jwt.issuer()),
            jwt_issuer_section(&closed)
        ),
    );
    let run = |path: PathBuf| {
        tokio::task::spawn_blocking(move || {
            scopegate()
                .args(["check", "--online", "--config"])
                .arg(path)
                .env_remove("SCOPEGATE_CONFIG")
                .output()
                .unwrap()
        })
    };

    let out = run(good).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("precedence"), "the offline table comes first: {stdout}");
    assert!(
        stdout.contains(&format!("[1/1] checking issuer {}", jwt.issuer())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("issuer {}: ok", jwt.issuer())), "{stdout}");
    assert!(stdout.contains("1 usable key(s)"), "{stdout}");
    assert!(
        stdout.contains("warning: JWK with kid \"weak-rsa\" skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "GET,HEAD /projects/** (projects-read): a token from {} for audience {AUDIENCE} with scope \"read\" (or \"write\", which implies it)",
            jwt.issuer()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("online check: 1 issuer(s), 1 ok, 0 failed"), "{stdout}");

    let out = run(bad).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("issuer {}: ok", jwt.issuer())), "{stdout}");
    assert!(stdout.contains(&format!("issuer {closed}: FAILED")), "{stdout}");
    assert!(
        stdout.contains("online check: 2 issuer(s), 1 ok, 1 failed, 1 problem(s)"),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("  - {closed}: discovery failed")), "{stderr}");
}
