//! Operating scopegate: live reload (API, file, ConfigMap-style symlink swap), rejected
//! reloads, dry-run rollout.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use scopegate::config::Config;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig, Endpoint};
use scopegate::gateway::Gateway;
use scopegate::metrics::Metrics;
use tokio::net::TcpListener;

const BASE: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[auth]
mode = "{mode}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
[[route]]
name = "always"
path = "/always"
public = true
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
"#;

const EXTRA_ROUTE: &str = r#"
[[route]]
name = "extra"
path = "/extra"
public = true
"#;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("scopegate-ops-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
}

fn text(upstream: &Upstream, issuer: &DevIssuer, mode: &str, extra: bool) -> String {
    let mut text = BASE
        .replace("{upstream}", &upstream.url())
        .replace("{issuer}", issuer.issuer())
        .replace("{mode}", mode);
    if extra {
        text.push_str(EXTRA_ROUTE);
    }
    text
}

async fn world(mode: &str, config_path: Option<&Path>) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let text = text(&upstream, &issuer, mode, false);
    if let Some(path) = config_path {
        std::fs::write(path, &text).unwrap();
    }
    let config = Config::from_toml(&text, "ops").unwrap();
    let gateway = Gateway::new(config, Metrics::new(), config_path.map(Path::to_path_buf));
    let proxy = scopegate::server::serve(
        gateway,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    eventually("keys loaded", || proxy.app.is_ready()).await;
    World {
        issuer,
        upstream,
        proxy,
    }
}

impl World {
    async fn status(&self, path: &str) -> u16 {
        client()
            .get(format!("http://{}{path}", self.proxy.addr))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn config(&self, mode: &str, extra: bool) -> Config {
        Config::from_toml(&text(&self.upstream, &self.issuer, mode, extra), "ops").unwrap()
    }

    async fn metrics(&self) -> String {
        scrape_metrics(self.proxy.admin_addr).await
    }
}

#[tokio::test]
async fn reload_under_load_fails_no_request_and_keeps_keys() {
    let w = world("enforce", None).await;
    let token = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &["https://api.test"]));
    let jwks_before = w.issuer.count(Endpoint::Jwks);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let successes = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (stop, failures, successes) = (stop.clone(), failures.clone(), successes.clone());
        let (url, token) = (format!("http://{}/read/x", w.proxy.addr), token.clone());
        loops.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => successes.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..20 {
        let report = w.proxy.app.apply(w.config("enforce", i % 2 == 0));
        assert!(report.changed);
        assert!(report.restart_required.is_empty());
        let expected = if i % 2 == 0 { 200 } else { 404 };
        assert_eq!(w.status("/extra").await, expected, "reload {i} applied at once");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(successes.load(Ordering::Relaxed) > 20);
    assert_eq!(
        w.issuer.count(Endpoint::Jwks),
        jwks_before,
        "unchanged issuer: keys kept, no refetch"
    );
    assert!(w.proxy.app.is_ready());
}

#[tokio::test]
async fn broken_file_is_rejected_whole_and_old_routes_stay() {
    let dir = TempDir::new("broken");
    let path = dir.0.join("scopegate.toml");
    let w = world("enforce", Some(&path)).await;
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{good}{EXTRA_ROUTE}\n[[route]]\nname = \"bad\"\npath = \"no-slash\"\nscopes = [\"a b\"]\n"),
    )
    .unwrap();
    let err = w.proxy.app.reload_file().unwrap_err().to_string();
    assert!(
        err.contains("route[3].path") && err.contains("route[3].scopes[0]"),
        "{err}"
    );
    assert_eq!(w.status("/extra").await, 404, "nothing of the rejected file applied");
    assert_eq!(w.status("/always").await, 200);
    std::fs::write(&path, format!("{good}{EXTRA_ROUTE}")).unwrap();
    assert!(w.proxy.app.reload_file().unwrap().changed);
    assert_eq!(w.status("/extra").await, 200);
    let metrics = w.metrics().await;
    assert!(
        metrics.contains("scopegate_config_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scopegate_config_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    let hash = &w.proxy.app.app().config.source_hash;
    assert!(metrics.contains(&format!("config_hash=\"{hash}\"")), "{metrics}");
}

#[cfg(unix)]
#[tokio::test]
async fn configmap_style_symlink_swap_is_picked_up() {
    // Kubernetes mounts config.toml -> ..data/config.toml, ..data -> ..<timestamp>/ and
    // updates by pointing ..data at a new directory with one rename.
    let dir = TempDir::new("configmap");
    let v1 = dir.0.join("..v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::os::unix::fs::symlink("..v1", dir.0.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.toml", dir.0.join("config.toml")).unwrap();
    let path = dir.0.join("config.toml");
    let w = world("enforce", Some(&v1.join("config.toml"))).await;
    // Re-point the running gateway at the symlinked path by serving a second one.
    let gateway = Gateway::new(w.config("enforce", false), Metrics::new(), Some(path.clone()));
    let proxy = scopegate::server::serve(
        Arc::clone(&gateway),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let watcher = tokio::spawn(Arc::clone(&gateway).watch_config(Duration::from_millis(100)));
    let url = format!("http://{}/extra", proxy.addr);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 404);

    let v2 = dir.0.join("..v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("config.toml"), text(&w.upstream, &w.issuer, "enforce", true)).unwrap();
    std::os::unix::fs::symlink("..v2", dir.0.join("..data_tmp")).unwrap();
    std::fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while client().get(&url).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "symlink swap not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher.abort();
    proxy.shutdown().await;
}

#[tokio::test]
async fn listener_changes_are_reported_as_needing_a_restart() {
    let w = world("enforce", None).await;
    let mut config = w.config("enforce", true);
    config.listener.address = "127.0.0.1:1".parse().unwrap();
    config.source_hash.push('x');
    let report = w.proxy.app.apply(config);
    assert_eq!(report.restart_required, vec!["listener.address"]);
    assert_eq!(w.status("/extra").await, 200, "the rest was applied");
}

#[tokio::test]
async fn dry_run_forwards_and_counts_would_be_denials() {
    let w = world("dry_run", None).await;
    assert_eq!(w.status("/read/x").await, 200, "no token, forwarded anyway");
    assert_eq!(w.status("/nowhere").await, 200, "no route, forwarded anyway");
    let wrong = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("write", &["https://other.test"]));
    let r = client()
        .get(format!("http://{}/read/x", w.proxy.addr))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !w.upstream.last().has_header("x-auth-subject"),
        "no identity from a rejected token"
    );
    assert_eq!(w.upstream.requests(), 3);
    let metrics = w.metrics().await;
    for line in [
        "scopegate_requests_total{decision=\"would_deny\",route=\"read\",status_class=\"2xx\"} 2",
        "scopegate_requests_total{decision=\"would_deny\",route=\"unmatched\",status_class=\"2xx\"} 1",
        "scopegate_auth_decisions_total{decision=\"would_deny\",reason=\"missing_token\"} 1",
        "scopegate_auth_decisions_total{decision=\"would_deny\",reason=\"wrong_audience\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    // Unsafe paths are never forwarded, dry run or not.
    let raw = raw_request(
        w.proxy.addr,
        b"GET /a%2F..%2Fb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 400);

    // Back to enforcing: the same request is denied.
    w.proxy.app.apply(w.config("enforce", false));
    assert_eq!(w.status("/read/x").await, 401);
    assert_eq!(w.upstream.requests(), 3);
}

#[tokio::test]
async fn dry_run_can_be_set_per_route() {
    let w = world("enforce", None).await;
    let text = text(&w.upstream, &w.issuer, "enforce", false).replace(
        "name = \"read\"\npath = \"/read/**\"",
        "name = \"read\"\npath = \"/read/**\"\nmode = \"dry_run\"",
    ) + "\n[[route]]\nname = \"strict\"\npath = \"/strict\"\nscopes = [\"read\"]\n";
    w.proxy.app.apply(Config::from_toml(&text, "ops").unwrap());
    assert_eq!(w.status("/read/x").await, 200);
    assert_eq!(w.status("/strict").await, 401);
    assert_eq!(w.upstream.requests(), 1);
}
