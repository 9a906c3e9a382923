//! `scopegate token` against a third-party authorization server (`oidc-provider`, see
//! tests/thirdparty/server.mjs) behind a real scopegate proxy: discovery from the protected
//! URL, dynamic registration of a native client, PKCE through the loopback redirect with the
//! server's own login and consent interactions (the test plays the browser, keeping
//! cookies), refresh after expiry, step-up on 403, revocation, and client credentials
//! started from the issuer URL.
#![allow(clippy::unwrap_used)]

use tokio::net::TcpListener;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::token_cli::{TokenHome, browse, claims, query};
use crate::common::*;
use crate::thirdparty_as::{APP, AuthServer, OPAQUE, SecretFile};

#[tokio::test]
async fn token_cli_against_oidc_provider() {
    let auth = AuthServer::start();
    let upstream = Upstream::start().await;
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", data.local_addr().unwrap());
    let resource = format!("{base}/mcp");
    let config = ConfigBuilder::new(&upstream.url())
        .mcp(&resource, "token cli test")
        .issuer(
            IssuerBuilder::new(&auth.issuer, &[&resource])
                .algorithms(&["RS256"])
                .set("require_typ", true)
                .set("fetch_timeout", "2s"),
        )
        .route(
            RouteBuilder::new("mcp", "/mcp")
                .mcp()
                .scopes(&["mcp"])
                .mcp_rule("tools/call", None, &["write"]),
        )
        .build();
    let proxy = scopegate::server::start_with_listeners(config, data, TcpListener::bind("127.0.0.1:0").await.unwrap());
    eventually("scopegate loaded the keys of oidc-provider", || proxy.app.is_ready()).await;
    let home = TokenHome::new("oidc-provider");

    // Discovery from the protected URL, registration, the code flow through the server's
    // login and consent pages.
    let mut run = home.spawn(&["get", &resource, "--no-browser", "--grant", "code"]);
    let first = run.authorization_url().await;
    assert!(first.starts_with(&format!("{}/auth?", auth.issuer)), "{first}");
    assert_eq!(query(&first)["code_challenge_method"], "S256");
    browse(&first).await;
    let done = run.finish().await;
    assert!(done.success, "{done:?}");
    let token = done.stdout.trim().to_string();
    let c = claims(&token);
    assert_eq!(c["iss"], auth.issuer.as_str(), "{c}");
    assert_eq!(c["aud"], resource.as_str(), "{c}");
    assert_eq!(c["sub"], "alice", "{c}");
    assert_eq!(c["scope"], "mcp", "{c}");
    let r = client().get(&resource).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert_eq!(upstream.requests(), 1);
    #[cfg(unix)]
    {
        use crate::common::token_cli::mode;
        assert_eq!(mode(&home.store()), 0o600);
        assert_eq!(mode(home.store().parent().unwrap()), 0o700);
    }

    // Expired: refreshed with the refresh token, no new sign-in.
    home.edit(|doc| doc["tokens"][0]["expires_at"] = 1.into());
    let out = home.run(&["get", &resource, "--no-browser"]).await;
    assert!(out.success && out.stderr.contains("(refreshed)"), "{out:?}");
    let refreshed = out.stdout.trim().to_string();
    assert_ne!(refreshed, token);
    assert_eq!(claims(&refreshed)["aud"], resource.as_str());
    let r = client().get(&resource).bearer_auth(&refreshed).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", challenge(&r));

    // tools/call needs `write`: 403, a second sign-in for "mcp write", the call goes through.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note","arguments":{}}}"#;
    let mut run = home.spawn(&[
        "curl",
        "--no-browser",
        "--grant",
        "code",
        &resource,
        "-sS",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data",
        call,
    ]);
    let second = run.authorization_url().await;
    assert_eq!(query(&second)["scope"], "mcp write", "{second}");
    browse(&second).await;
    let done = run.finish().await;
    assert!(done.success && done.stdout.ends_with("upstream saw /mcp"), "{done:?}");
    assert_eq!(upstream.requests(), 3);
    assert_eq!(upstream.last().method, "POST");

    // Revocation ends the refresh tokens at the server, and the file forgets them.
    let stored = home.stored();
    let refresh_tokens: Vec<String> = stored["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["refresh_token"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refresh_tokens.len(), 2, "{stored}");
    for refresh in &refresh_tokens {
        assert_eq!(auth.introspect(refresh).await["active"], true);
    }
    let out = home.run(&["revoke", &resource]).await;
    assert!(out.success, "{out:?}");
    for refresh in &refresh_tokens {
        assert_eq!(auth.introspect(refresh).await["active"], false);
    }
    assert_eq!(home.stored()["tokens"].as_array().unwrap().len(), 0);

    // Client credentials, starting from the issuer URL, for an opaque-token resource.
    let secret = SecretFile::new(APP.1);
    let secret_path = secret.0.to_string_lossy().to_string();
    let machine = [
        "--client-id",
        APP.0,
        "--client-secret-file",
        secret_path.as_str(),
        "--resource",
        OPAQUE,
        "--scope",
        "read",
    ];
    let mut args = vec!["get", auth.issuer.as_str()];
    args.extend_from_slice(&machine);
    let out = home.run(&args).await;
    assert!(out.success && out.stderr.contains("(client_credentials)"), "{out:?}");
    let opaque = out.stdout.trim().to_string();
    let facts = auth.introspect(&opaque).await;
    assert_eq!(facts["active"], true, "{facts}");
    assert_eq!(facts["aud"], OPAQUE, "{facts}");
    let mut args = vec!["revoke", auth.issuer.as_str()];
    args.extend_from_slice(&machine);
    let out = home.run(&args).await;
    assert!(out.success, "{out:?}");
    assert_eq!(auth.introspect(&opaque).await["active"], false);

    proxy.shutdown().await;
}
