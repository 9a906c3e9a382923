//! `scopegate token` against a real scopegate proxy (in front of a counting upstream) and the
//! development authorization server: discovery from the protected URL, registration, PKCE
//! through the loopback redirect (the test plays the browser), the private token file,
//! refresh after expiry, step-up on 403, client credentials, exec, revocation, and the
//! errors a user meets.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use scopegate::dev::{ClientRegistration, DevIssuer, DevIssuerConfig, Endpoint};
use tokio::net::TcpListener;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};
use crate::common::token_cli::{Finished, Running, TokenHome, browse, claims, query};
use crate::common::*;

/// An MCP endpoint (`/mcp`, RFC 9728 metadata, scope `mcp`; `tools/call` also needs
/// `write`) and a plain API (`/read/**`, `/write/**`, audience `{base}/api`) behind one proxy.
struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    _proxy: scopegate::server::Running,
    base: String,
}

impl World {
    async fn start() -> World {
        World::with_issuer(DevIssuerConfig::default()).await
    }

    async fn with_issuer(config: DevIssuerConfig) -> World {
        World::with_setup(config, false).await
    }

    /// With `api_resource`, the plain API (`/read/**`, `/write/**`) is also an RFC 9728
    /// resource (`[[resource]]`, identifier: the proxy's origin), so its 401s name metadata.
    async fn with_setup(config: DevIssuerConfig, api_resource: bool) -> World {
        let issuer = dev_issuer(config).await;
        let upstream = Upstream::start().await;
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", data.local_addr().unwrap());
        let resource = format!("{base}/mcp");
        let api = format!("{base}/api");
        let mut builder = ConfigBuilder::new(&upstream.url());
        if api_resource {
            builder = builder.merge_toml(&format!(
                "[[resource]]\nuri = \"{base}\"\nroutes = [\"read\", \"write\"]\n"
            ));
        }
        let config = builder
            .mcp(&resource, "token cli test")
            .issuer(IssuerBuilder::new(issuer.issuer(), &[&resource, &api, &base]))
            .route(
                RouteBuilder::new("mcp", "/mcp")
                    .mcp()
                    .scopes(&["mcp"])
                    .mcp_rule("tools/call", None, &["write"]),
            )
            .route(RouteBuilder::new("read", "/read/**").scopes(&["read"]))
            .route(RouteBuilder::new("write", "/write/**").scopes(&["write"]))
            .build();
        let proxy =
            scopegate::server::start_with_listeners(config, data, TcpListener::bind("127.0.0.1:0").await.unwrap());
        eventually("the issuer's keys are loaded", || proxy.app.is_ready()).await;
        World {
            issuer,
            upstream,
            _proxy: proxy,
            base,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn resource(&self) -> String {
        self.url("/mcp")
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        client().get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// `token get` through the code flow, the test playing the browser.
    async fn code_flow(&self, home: &TokenHome, path: &str, extra: &[&str]) -> String {
        let url = self.url(path);
        let mut args = vec!["get", url.as_str(), "--no-browser", "--grant", "code"];
        args.extend_from_slice(extra);
        let mut run = home.spawn(&args);
        browse(&run.authorization_url().await).await;
        let done = run.finish().await;
        assert!(done.success, "{done:?}");
        done.stdout.trim().to_string()
    }
}

/// A plain API published as an RFC 9728 resource: `token get` needs no `--issuer`, the 401
/// names the document, and the token is minted for that resource with the route's scope.
#[tokio::test]
async fn get_discovers_a_plain_api_published_as_a_resource() {
    let world = World::with_setup(DevIssuerConfig::default(), true).await;
    let home = TokenHome::new("api-resource");

    let token = world.code_flow(&home, "/read/items", &[]).await;
    let claims = claims(&token);
    assert_eq!(
        claims["aud"], world.base,
        "RFC 8707 resource from [[resource]]: {claims}"
    );
    assert_eq!(claims["scope"], "read", "the 401 challenge's scope: {claims}");
    let r = world.get("/read/items", &token).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert_eq!(world.upstream.requests(), 1);
    // The same token does not carry `write`.
    let r = world.get("/write/items", &token).await;
    assert_eq!(r.status(), 403, "{}", challenge(&r));
    assert_eq!(world.upstream.requests(), 1);
}

/// A confidential client for client credentials, its secret in a file.
fn machine_client(world: &World, home: &TokenHome) -> (String, std::path::PathBuf) {
    let client = world.issuer.register_client(ClientRegistration {
        grant_types: vec!["client_credentials".into()],
        token_endpoint_auth_method: Some("client_secret_basic".into()),
        scope: Some("read write".into()),
        ..ClientRegistration::default()
    });
    let secret = home.dir.join("secret");
    std::fs::write(&secret, format!("{}\n", client.client_secret.unwrap())).unwrap();
    (client.client_id, secret)
}

/// What the development issuer says of a token (RFC 7662), asked by a confidential client.
async fn active(world: &World, token: &str) -> bool {
    let introspector = IntrospectionClient::register(&world.issuer, "client_secret_basic");
    let r = client()
        .post(world.issuer.introspection_endpoint())
        .basic_auth(&introspector.client_id, Some(&introspector.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    r.json::<serde_json::Value>().await.unwrap()["active"] == true
}

fn tools_call() -> &'static str {
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_note","arguments":{}}}"#
}

#[tokio::test]
async fn get_discovers_from_the_protected_url_and_stores_privately() {
    let world = World::start().await;
    let home = TokenHome::new("discover");

    let token = world.code_flow(&home, "/mcp", &[]).await;
    let claims = claims(&token);
    assert_eq!(
        claims["aud"],
        world.resource(),
        "RFC 8707 resource from the metadata: {claims}"
    );
    assert_eq!(claims["scope"], "mcp", "the 401 challenge's scope: {claims}");
    assert_eq!(world.issuer.count(Endpoint::Register), 1);
    assert_eq!(world.issuer.count(Endpoint::Authorize), 1);

    let r = world.get("/mcp", &token).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert_eq!(world.upstream.requests(), 1);

    #[cfg(unix)]
    {
        use crate::common::token_cli::mode;
        assert_eq!(mode(&home.store()), 0o600, "the token file is the user's only");
        assert_eq!(mode(home.store().parent().unwrap()), 0o700, "so is its directory");
    }
    let stored = home.stored();
    assert_eq!(stored["tokens"][0]["issuer"], world.issuer.issuer());
    assert_eq!(stored["tokens"][0]["resource"], world.resource());
    assert!(stored["tokens"][0]["refresh_token"].is_string());

    // A second run answers from the file: no new sign-in, no registration.
    let again = home.run(&["get", &world.url("/mcp"), "--no-browser"]).await;
    assert!(again.success, "{again:?}");
    assert_eq!(again.stdout.trim(), token);
    assert!(again.stderr.contains("(stored)"), "{again:?}");
    assert_eq!(world.issuer.count(Endpoint::Authorize), 1);
    assert_eq!(world.issuer.count(Endpoint::Register), 1);

    // `list` shows what is stored, never the token.
    let list = home.run(&["list"]).await;
    assert!(
        list.stdout.contains(&world.resource()) && list.stdout.contains("\"mcp\""),
        "{list:?}"
    );
    assert!(!list.stdout.contains(&token), "{list:?}");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_revoke_ends_it() {
    let world = World::start().await;
    let home = TokenHome::new("refresh");
    let first = world.code_flow(&home, "/mcp", &[]).await;
    let old_refresh = home.stored()["tokens"][0]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();

    home.edit(|doc| doc["tokens"][0]["expires_at"] = 1.into());
    let tokens_before = world.issuer.count(Endpoint::Token);
    let out = home.run(&["get", &world.url("/mcp"), "--no-browser"]).await;
    assert!(out.success, "{out:?}");
    assert!(out.stderr.contains("(refreshed)"), "{out:?}");
    let second = out.stdout.trim().to_string();
    assert_ne!(second, first);
    assert_eq!(world.issuer.count(Endpoint::Token), tokens_before + 1);
    assert_eq!(world.issuer.count(Endpoint::Authorize), 1, "no new sign-in");
    let r = world.get("/mcp", &second).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    let new_refresh = home.stored()["tokens"][0]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_refresh, old_refresh, "the rotated refresh token is kept");
    assert!(active(&world, &new_refresh).await);

    let out = home.run(&["revoke", &world.url("/mcp")]).await;
    assert!(out.success, "{out:?}");
    assert_eq!(
        world.issuer.count(Endpoint::Revoke),
        2,
        "refresh token and access token"
    );
    assert!(!active(&world, &new_refresh).await);
    assert!(!active(&world, &second).await);
    assert_eq!(home.stored()["tokens"].as_array().unwrap().len(), 0, "forgotten");
}

#[tokio::test]
async fn a_client_the_server_forgot_is_registered_again() {
    let world = World::start().await;
    let home = TokenHome::new("forgotten");
    world.code_flow(&home, "/mcp", &[]).await;
    // As after the server lost its registrations: the stored client and token are unknown.
    home.edit(|doc| {
        doc["clients"][0]["client_id"] = "no-longer-registered".into();
        doc["tokens"][0]["client_id"] = "no-longer-registered".into();
        doc["tokens"][0]["expires_at"] = 1.into();
    });
    let token = world.code_flow(&home, "/mcp", &[]).await;
    assert_eq!(
        world.issuer.count(Endpoint::Register),
        2,
        "the refused refresh led to a new registration"
    );
    assert_ne!(home.stored()["clients"][0]["client_id"], "no-longer-registered");
    let r = world.get("/mcp", &token).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
}

#[tokio::test]
async fn curl_steps_up_on_insufficient_scope() {
    let world = World::start().await;
    let home = TokenHome::new("stepup");
    world.code_flow(&home, "/mcp", &[]).await;

    // tools/call needs `write` too: 403 insufficient_scope, then a sign-in for more.
    let url = world.url("/mcp");
    let mut run = home.spawn(&[
        "curl",
        "--no-browser",
        "--grant",
        "code",
        &url,
        "-sS",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data",
        tools_call(),
    ]);
    let second_sign_in = run.authorization_url().await;
    let asked = query(&second_sign_in);
    assert_eq!(asked["scope"], "mcp write", "{second_sign_in}");
    assert_eq!(asked["resource"], world.resource());
    browse(&second_sign_in).await;
    let done = run.finish().await;
    assert!(done.success, "{done:?}");
    assert!(done.stdout.ends_with("upstream saw /mcp"), "{done:?}");
    assert!(done.stderr.contains("403 insufficient_scope"), "{done:?}");
    assert_eq!(
        world.upstream.requests(),
        1,
        "only the stepped-up request reached the upstream"
    );
    assert_eq!(world.upstream.last().method, "POST");
    assert_eq!(
        world.issuer.count(Endpoint::Register),
        1,
        "the registered client is reused"
    );

    // The wider token now serves plain MCP requests too, from the file.
    let out = home.run(&["curl", &url, "-sS"]).await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, "upstream saw /mcp");
    assert_eq!(world.issuer.count(Endpoint::Authorize), 2);
}

#[tokio::test]
async fn client_credentials_exec_and_revoke() {
    let world = World::start().await;
    let home = TokenHome::new("machine");
    let (client_id, secret) = machine_client(&world, &home);
    let secret_arg = secret.to_string_lossy().to_string();
    let api = world.url("/api");
    // A plain API publishes no RFC 9728 metadata: the issuer and the resource are named.
    let machine = [
        "--client-id",
        client_id.as_str(),
        "--client-secret-file",
        secret_arg.as_str(),
        "--issuer",
        world.issuer.issuer(),
        "--resource",
        api.as_str(),
    ];

    let url = world.url("/write/items");
    let mut args = vec!["get", url.as_str()];
    args.extend_from_slice(&machine);
    let out = home.run(&args).await;
    assert!(out.success, "{out:?}");
    assert!(out.stderr.contains("(client_credentials)"), "{out:?}");
    let token = out.stdout.trim().to_string();
    let claims = claims(&token);
    assert_eq!(claims["client_id"], client_id.as_str());
    assert_eq!(claims["aud"], api.as_str());
    assert_eq!(claims["scope"], "write", "the challenge's scope: {claims}");
    assert_eq!(world.issuer.count(Endpoint::Authorize), 0);
    assert_eq!(world.issuer.count(Endpoint::Register), 0);
    let r = client()
        .post(world.url("/write/items"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", challenge(&r));

    // The secret from the environment instead; exec hands the stored token to a command.
    let mut command = home.command(&[
        "exec",
        "--client-id",
        client_id.as_str(),
        "--client-secret-env",
        "TEST_SECRET",
        "--issuer",
        world.issuer.issuer(),
        "--resource",
        api.as_str(),
        url.as_str(),
        "--",
        "sh",
        "-c",
        "printf %s \"$SCOPEGATE_ACCESS_TOKEN\"",
    ]);
    command.env("TEST_SECRET", std::fs::read_to_string(&secret).unwrap().trim());
    let out = Running::spawn(command).finish().await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, token);

    let mut args = vec!["revoke", url.as_str()];
    args.extend_from_slice(&machine);
    let out = home.run(&args).await;
    assert!(out.success, "{out:?}");
    assert_eq!(world.issuer.count(Endpoint::Revoke), 1);
    assert!(!active(&world, &token).await);
    assert_eq!(home.stored()["tokens"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn without_a_browser_the_device_grant_is_used() {
    let world = World::with_issuer(DevIssuerConfig {
        device_poll_interval: std::time::Duration::from_secs(1),
        ..DevIssuerConfig::default()
    })
    .await;
    let home = TokenHome::new("device");
    // No DISPLAY, no --no-browser, and the server offers RFC 8628: the device grant.
    let mut run = home.spawn(&["get", &world.url("/mcp")]);
    let verification = run.verification_url().await;
    let user_code = query(&verification)["user_code"].clone();
    assert_eq!(user_code.len(), 9, "{verification}");
    let r = client().get(&verification).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done = run.finish().await;
    assert!(done.success, "{done:?}");
    assert!(
        done.stderr.contains(&user_code) && done.stderr.contains("(device)"),
        "{done:?}"
    );
    let token = done.stdout.trim();
    assert_eq!(claims(token)["aud"], world.resource());
    assert_eq!(world.issuer.count(Endpoint::Authorize), 0);
    assert_eq!(world.issuer.count(Endpoint::DeviceAuthorization), 1);
    let r = world.get("/mcp", token).await;
    assert_eq!(r.status(), 200, "{}", challenge(&r));
    assert!(home.stored()["tokens"][0]["refresh_token"].is_string());
}

/// Runs a command that must fail; its stderr.
async fn failing(home: &TokenHome, args: &[&str]) -> String {
    let out: Finished = home.run(args).await;
    assert!(!out.success, "{args:?} succeeded: {out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    out.stderr
}

#[tokio::test]
async fn clear_errors_for_what_a_user_meets() {
    let world = World::start().await;
    let home = TokenHome::new("errors");

    // An ordinary page: no challenge, and not an issuer.
    let stderr = failing(&home, &["get", &format!("{}/plain", world.upstream.url())]).await;
    assert!(
        stderr.contains("without a Bearer challenge") && stderr.contains("not an issuer"),
        "{stderr}"
    );
    let reached = world.upstream.requests();

    // A plain API without RFC 9728 metadata: the MCP resource's document does not cover it.
    let stderr = failing(&home, &["get", &world.url("/read/items"), "--no-browser"]).await;
    assert!(stderr.contains("--issuer"), "{stderr}");

    // Nobody completes the sign-in.
    let url = world.url("/mcp");
    let stderr = failing(
        &home,
        &["get", &url, "--no-browser", "--grant", "code", "--timeout", "1s"],
    )
    .await;
    assert!(
        stderr.contains("no redirect reached") && stderr.contains("--timeout"),
        "{stderr}"
    );

    // A scope the server does not know.
    let mut run = home.spawn(&["get", &url, "--no-browser", "--grant", "code", "--scope", "bogus"]);
    browse(&run.authorization_url().await).await;
    let done = run.finish().await;
    assert!(
        !done.success && done.stderr.contains("refused the requested scope \"bogus\""),
        "{done:?}"
    );

    // A redirect that names another issuer (RFC 9207): a mix-up attempt.
    let mut run = home.spawn(&["get", &url, "--no-browser", "--grant", "code"]);
    let asked = query(&run.authorization_url().await);
    let forged = format!(
        "{}?code=stolen&state={}&iss=https%3A%2F%2Fevil.example",
        asked["redirect_uri"], asked["state"]
    );
    assert_eq!(client().get(&forged).send().await.unwrap().status(), 200);
    let done = run.finish().await;
    assert!(!done.success && done.stderr.contains("RFC 9207"), "{done:?}");
    assert!(!done.stderr.contains("stolen"), "{done:?}");
    assert_eq!(world.upstream.requests(), reached, "nothing got through the proxy");

    // A token never travels in clear text off this machine.
    let stderr = failing(&home, &["get", "http://api.example.com/mcp"]).await;
    assert!(stderr.contains("only sent over https"), "{stderr}");

    // Client credentials without a client id.
    let stderr = failing(&home, &["get", &url, "--grant", "client-credentials"]).await;
    assert!(stderr.contains("--client-id"), "{stderr}");
}

#[tokio::test]
async fn a_refused_registration_says_what_to_do() {
    let world = World::with_issuer(DevIssuerConfig {
        open_registration: false,
        ..DevIssuerConfig::default()
    })
    .await;
    let home = TokenHome::new("closed");
    let stderr = failing(&home, &["get", &world.url("/mcp"), "--no-browser", "--grant", "code"]).await;
    assert!(
        stderr.contains("refused to register a client (HTTP 401)") && stderr.contains("--client-id"),
        "{stderr}"
    );
}
