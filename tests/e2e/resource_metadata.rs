//! RFC 9728 metadata for API resources (`[[resource]]`), end to end: documents fetched over a
//! real socket without a token, the `resource_metadata` every 401 names (each route its own
//! resource's), MCP metadata unchanged beside them, unknown metadata paths 404, `explain`
//! and `check` showing the same, and the config mistakes `check` reports.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use crate::common::builder::bearer_params;
use crate::common::{Upstream, client, dev_issuer, start_proxy};
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use scopegate::explain::{Credentials, Loaded, explain};
use serde_json::{Value, json};

const PRM: &str = "/.well-known/oauth-protected-resource";

/// Without `[[resource]]`: the MCP setup as it was before API resources existed.
const MCP_ONLY: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[auth]
realm = "api"
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
name = "items"
path = "/items/**"
scopes = ["read"]
[[route]]
name = "admin"
path = "/admin/**"
any_scopes = [["admin"], ["write", "ops"]]
[[route]]
name = "billing"
path = "/billing/**"
scopes = ["billing"]
[[route]]
name = "mcp"
path = "/mcp"
mcp = true
scopes = ["mcp"]
"#;

/// The API is one resource; billing is another.
const RESOURCES: &str = r#"
[[resource]]
uri = "https://api.test"
name = "Items API"
[[resource]]
uri = "https://api.test/billing/"
routes = ["billing"]
"#;

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
    text: String,
}

async fn world(resources: &str) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let text = format!("{MCP_ONLY}{resources}")
        .replace("{upstream}", &upstream.url())
        .replace("{issuer}", issuer.issuer());
    let config = scopegate::config::Config::from_toml(&text, "resources.toml").unwrap();
    let proxy = start_proxy(config).await;
    crate::common::eventually("the proxy has keys", || proxy.app.is_ready()).await;
    World {
        issuer,
        upstream,
        proxy,
        text,
    }
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    /// The `resource_metadata` of the challenge `path` answers a request without a token.
    async fn challenge_metadata(&self, method: reqwest::Method, path: &str) -> String {
        let r = client().request(method, self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let challenge = crate::common::challenge(&r);
        let params = bearer_params(Some(&challenge)).unwrap();
        assert!(
            !params.contains_key("error"),
            "no credentials: no error code (RFC 6750 §3.1): {challenge}"
        );
        params.get("resource_metadata").cloned().unwrap_or_default()
    }
}

async fn fetch(world: &World, path: &str) -> reqwest::Response {
    client().get(world.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn the_api_document_is_served_at_its_well_known_location_without_a_token() {
    let w = world(RESOURCES).await;
    let r = fetch(&w, PRM).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": "https://api.test",
            "authorization_servers": [w.issuer.issuer()],
            // Every scope its routes ask for, any_scopes alternatives included; not billing's.
            "scopes_supported": ["admin", "ops", "read", "write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Items API",
        })
    );

    // RFC 9728 §3.1: a resource with a path has it after the well-known suffix.
    let r = fetch(&w, &format!("{PRM}/billing")).await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["resource"], "https://api.test/billing/");
    assert_eq!(doc["scopes_supported"], json!(["billing"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert!(doc.get("resource_name").is_none(), "{doc}");
    assert_eq!(w.upstream.requests(), 0, "scopegate answers metadata itself");
}

#[tokio::test]
async fn each_route_names_its_own_resource_in_its_401() {
    let w = world(RESOURCES).await;
    let api = format!("https://api.test{PRM}");
    assert_eq!(w.challenge_metadata(reqwest::Method::GET, "/items/1").await, api);
    assert_eq!(w.challenge_metadata(reqwest::Method::DELETE, "/admin/x").await, api);
    assert_eq!(
        w.challenge_metadata(reqwest::Method::GET, "/billing/invoices").await,
        format!("https://api.test{PRM}/billing")
    );
    assert_eq!(
        w.challenge_metadata(reqwest::Method::POST, "/mcp").await,
        format!("https://api.test{PRM}/mcp"),
        "an MCP route keeps its own metadata"
    );

    // A refused token's challenge names it too, and so does a 403.
    let token = w
        .issuer
        .mint_access_token(&AccessTokenRequest::new("read", &["https://api.test"]));
    let r = client()
        .get(w.url("/billing/invoices"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let params = bearer_params(Some(&crate::common::challenge(&r))).unwrap();
    assert_eq!(params["error"], "insufficient_scope");
    assert_eq!(params["resource_metadata"], format!("https://api.test{PRM}/billing"));
    let r = client()
        .get(w.url("/items/1"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let params = bearer_params(Some(&crate::common::challenge(&r))).unwrap();
    assert_eq!(params["error"], "invalid_token");
    assert_eq!(params["resource_metadata"], api);

    // The token is good where its scopes are enough.
    let r = client()
        .get(w.url("/items/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        w.upstream.requests(),
        1,
        "only the allowed request reached the upstream"
    );
}

#[tokio::test]
async fn mcp_metadata_is_unchanged_by_api_resources() {
    let before = world("").await;
    let after = world(RESOURCES).await;
    let mcp_path = format!("{PRM}/mcp");
    let old = fetch(&before, &mcp_path).await;
    assert_eq!(old.status(), 200);
    let old_type = old.headers()["content-type"].clone();
    let old: Value = old.json().await.unwrap();
    let new = fetch(&after, &mcp_path).await;
    assert_eq!(new.status(), 200);
    assert_eq!(new.headers()["content-type"], old_type);
    let mut new: Value = new.json().await.unwrap();
    // Each world has its own issuer; everything else is the same document.
    new["authorization_servers"] = old["authorization_servers"].clone();
    assert_eq!(new, old);
    assert_eq!(old["resource"], "https://api.test/mcp");

    // Without [[resource]] nothing changes for API routes either: no resource_metadata, and
    // the root form is still MCP's.
    assert_eq!(before.challenge_metadata(reqwest::Method::GET, "/items/1").await, "");
    let root: Value = fetch(&before, PRM).await.json().await.unwrap();
    assert_eq!(root["resource"], "https://api.test/mcp");
    // A path-less API resource owns the root form (RFC 9728 §3.1); MCP keeps its own path.
    let root: Value = fetch(&after, PRM).await.json().await.unwrap();
    assert_eq!(root["resource"], "https://api.test");
}

#[tokio::test]
async fn unknown_metadata_paths_are_404_and_documents_are_only_read() {
    let w = world(RESOURCES).await;
    for path in [
        format!("{PRM}/nope"),
        format!("{PRM}/billing/more"),
        format!("{PRM}/items"),
        "/.well-known/oauth-protected-resourcex".to_string(),
    ] {
        let r = fetch(&w, &path).await;
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = client().post(w.url(PRM)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_eq!(w.upstream.requests(), 0);
    let metrics = crate::common::scrape_metrics(w.proxy.admin_addr).await;
    assert!(
        metrics
            .contains(r#"scopegate_requests_total{decision="public",route="resource-metadata",status_class="4xx"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn explain_shows_the_challenge_with_the_routes_resource_metadata() {
    let w = world(RESOURCES).await;
    let loaded = Loaded::from_toml(&w.text, "resources.toml").unwrap();
    let e = explain(&loaded, "GET", "/billing/x", &Credentials::None).await;
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "WWW-Authenticate: Bearer realm=\"api\", resource_metadata=\"https://api.test{PRM}/billing\", scope=\"billing\""
        )),
        "{text}"
    );
    let e = explain(&loaded, "GET", "/items/1", &Credentials::None).await;
    assert!(
        e.to_string()
            .contains(&format!("resource_metadata=\"https://api.test{PRM}\"")),
        "{e}"
    );
}

#[tokio::test]
async fn check_lists_every_resource_and_its_metadata_url() {
    let dir = std::env::temp_dir().join(format!("scopegate-resources-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resources.toml");
    let text = format!("{MCP_ONLY}{RESOURCES}")
        .replace("{upstream}", "http://127.0.0.1:3000")
        .replace("{issuer}", "https://as.example");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        format!("https://api.test  metadata https://api.test{PRM}  routes: items, admin (default"),
        format!("https://api.test/billing/  metadata https://api.test{PRM}/billing  routes: billing"),
        format!("https://api.test/mcp  metadata https://api.test{PRM}/mcp  MCP routes: mcp"),
        "note: no [[issuer]] lists https://api.test/billing/ in audiences".to_string(),
    ] {
        assert!(stdout.contains(&line), "{line}\n{stdout}");
    }
    assert_eq!(stdout.matches("note: no [[issuer]] lists").count(), 1, "{stdout}");
}

#[test]
fn resource_mistakes_are_reported_with_their_keys() {
    let problems = |resources: &str, extra: &str| -> String {
        // `extra` goes into [auth].
        let text = format!("{MCP_ONLY}{resources}")
            .replace("realm = \"api\"\n", &format!("realm = \"api\"\n{extra}"))
            .replace("{upstream}", "http://127.0.0.1:3000")
            .replace("{issuer}", "https://as.example");
        match scopegate::config::Config::from_toml(&text, "t.toml") {
            Ok(_) => panic!("accepted:\n{resources}"),
            Err(e) => e.to_string(),
        }
    };
    let two_defaults = problems(
        "[[resource]]\nuri = \"https://api.test\"\n[[resource]]\nuri = \"https://other.test\"\n",
        "",
    );
    assert!(two_defaults.contains("resource[1].routes"), "{two_defaults}");
    let listed = problems(
        "[[resource]]\nuri = \"https://a.test\"\nroutes = [\"billing\", \"nope\", \"mcp\", \"health\"]\n\
         [[resource]]\nuri = \"https://b.test\"\nroutes = [\"billing\"]\n",
        "",
    );
    for key in [
        "resource[0].routes[1]",
        "resource[0].routes[2]",
        "resource[0].routes[3]",
        "resource[1].routes[0]",
    ] {
        assert!(listed.contains(key), "{key}: {listed}");
    }
    let clash = problems(
        "[[resource]]\nuri = \"https://api.test/mcp/\"\nroutes = [\"items\"]\n",
        "",
    );
    assert!(clash.contains("resource[0].uri") && clash.contains("/mcp"), "{clash}");
    let bad_uri = problems("[[resource]]\nuri = \"http://api.test/x?y=1\"\n", "");
    assert!(bad_uri.contains("resource[0].uri"), "{bad_uri}");
    let unknown_issuer = problems(
        "[[resource]]\nuri = \"https://api.test\"\nauthorization_servers = [\"https://as.example/\"]\n",
        "",
    );
    assert!(
        unknown_issuer.contains("resource[0].authorization_servers[0]"),
        "{unknown_issuer}"
    );
    let both = problems(
        "[[resource]]\nuri = \"https://api.test\"\n",
        "resource_metadata = \"https://api.test/.well-known/oauth-protected-resource\"\n",
    );
    assert!(both.contains("auth.resource_metadata"), "{both}");
    // Listing its routes, a resource leaves auth.resource_metadata to the others.
    let text = format!("{MCP_ONLY}[[resource]]\nuri = \"https://api.test/billing\"\nroutes = [\"billing\"]\n")
        .replace(
            "realm = \"api\"\n",
            "realm = \"api\"\nresource_metadata = \"https://api.test/m\"\n",
        )
        .replace("{upstream}", "http://127.0.0.1:3000")
        .replace("{issuer}", "https://as.example");
    scopegate::config::Config::from_toml(&text, "t.toml").unwrap();
}
