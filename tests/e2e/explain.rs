//! `scopegate explain`: the structured [`Explanation`] for hypothetical scopes, real tokens
//! from a development issuer, unroutable and unacceptable paths; and the binary's output.
// The development authorization server these tests run against is behind the `dev` feature.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use std::process::Command;

use crate::common::builder::{ConfigBuilder, IssuerBuilder, RouteBuilder};

use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use scopegate::explain::{Credentials, Decision, Loaded, RouteOutcome, explain};

const AUDIENCE: &str = "https://api.test";

fn builder(issuer: &str, unmatched: &str) -> ConfigBuilder {
    ConfigBuilder::new("http://127.0.0.1:1")
        .set("auth.unmatched", unmatched)
        .implies("write", &["read"])
        .issuer(IssuerBuilder::new(issuer, &[AUDIENCE]).set("fetch_timeout", "2s"))
        .route(RouteBuilder::new("pub", "/pub/**").public())
        .route(RouteBuilder::new("read", "/read/**").scopes(&["read"]))
        .route(
            RouteBuilder::new("write", "/write/**")
                .methods(&["POST"])
                .scopes(&["write"]),
        )
}

fn loaded(issuer: &str, unmatched: &str) -> Loaded {
    Loaded::from_toml(&builder(issuer, unmatched).toml(), "t.toml").unwrap()
}

fn scopes(list: &str) -> Credentials {
    Credentials::Scopes(list.split_whitespace().map(str::to_string).collect())
}

async fn issuer() -> DevIssuer {
    crate::common::dev_issuer(DevIssuerConfig::default()).await
}

const OFFLINE_ISSUER: &str = "https://as.example";

#[tokio::test]
async fn scopes_allow_through_implications_and_deny_with_the_challenge() {
    let l = loaded(OFFLINE_ISSUER, "deny");
    // Methods are case-sensitive: the proxy refuses a lower-case one before routing.
    let e = explain(&l, "get", "/read/x", &scopes("write")).await;
    assert_eq!(e.method, "get");
    assert_eq!(
        e.decision,
        Decision::BadRequest {
            reason: "method_not_uppercase".into()
        },
        "{e}"
    );
    assert_eq!(e.canonical, None);

    let e = explain(&l, "GET", "/read/a/../b?x=1", &scopes("write")).await;
    assert_eq!(e.method, "GET");
    assert_eq!(e.canonical, Some(Ok("/read/b".to_string())));
    assert_eq!(
        e.route,
        RouteOutcome::Matched {
            name: "read".into(),
            pattern: "/read/**".into(),
            methods: "*".into()
        }
    );
    assert_eq!(e.requirement.as_deref(), Some("scopes: read"));
    assert_eq!(e.effective_scopes, Some(vec!["read".to_string(), "write".to_string()]));
    assert!(matches!(e.decision, Decision::Allow { .. }), "{e}");

    let e = explain(&l, "POST", "/write/x", &scopes("read other")).await;
    assert_eq!(
        e.decision,
        Decision::Forbidden {
            challenge: "write".into()
        },
        "{e}"
    );
    assert_eq!(e.decision.status(), Some(403));
    assert!(e.to_string().contains("403 insufficient_scope"), "{e}");
}

#[tokio::test]
async fn without_credentials_it_says_what_a_token_needs() {
    let l = loaded(OFFLINE_ISSUER, "deny");
    let e = explain(&l, "GET", "/read/x", &Credentials::None).await;
    let needs = format!(
        "a token from {OFFLINE_ISSUER} for audience {AUDIENCE} with scope \"read\" (or \"write\", which implies it)"
    );
    assert_eq!(e.decision, Decision::TokenNeeded { needs: needs.clone() });
    assert_eq!(e.needs.as_deref(), Some(needs.as_str()));
    assert_eq!(e.decision.status(), Some(401));

    let e = explain(&l, "GET", "/pub/anything", &Credentials::None).await;
    assert!(matches!(e.decision, Decision::Allow { .. }), "{e}");
    assert_eq!(e.requirement.as_deref(), Some("public"));
}

#[tokio::test]
async fn no_route_bad_path_and_bad_method() {
    let l = loaded(OFFLINE_ISSUER, "deny");
    // A method the route does not list is no route either.
    for (method, path) in [("GET", "/elsewhere"), ("GET", "/write/x")] {
        let e = explain(&l, method, path, &scopes("write")).await;
        assert_eq!(e.route, RouteOutcome::NoRoute, "{e}");
        assert_eq!(e.decision, Decision::NotFound);
        assert!(e.to_string().contains("no route → 404"), "{e}");
    }

    let e = explain(&l, "GET", "/read/a%2Fb", &scopes("read")).await;
    assert_eq!(e.route, RouteOutcome::NotRouted);
    let Some(Err(reason)) = &e.canonical else { panic!("{e}") };
    assert!(reason.starts_with("encoded_slash"), "{reason}");
    assert!(matches!(&e.decision, Decision::BadRequest { reason } if reason.starts_with("encoded_slash")));
    assert_eq!(e.decision.status(), Some(400));

    let e = explain(&l, "GET", "/../read/x", &scopes("read")).await;
    assert!(
        matches!(&e.decision, Decision::BadRequest { reason } if reason.starts_with("escapes_root")),
        "{e}"
    );

    for method in ["G T", "CONNECT"] {
        let e = explain(&l, method, "/read/x", &scopes("read")).await;
        assert_eq!(e.canonical, None);
        assert!(matches!(e.decision, Decision::BadRequest { .. }), "{e}");
    }

    let l = loaded(OFFLINE_ISSUER, "authenticated");
    let e = explain(&l, "GET", "/elsewhere", &scopes("")).await;
    assert_eq!(e.route, RouteOutcome::UnmatchedAuthenticated);
    assert!(matches!(e.decision, Decision::Allow { .. }), "{e}");
}

#[tokio::test]
async fn real_tokens_are_validated_by_the_authenticator() {
    let issuer = issuer().await;
    let l = loaded(issuer.issuer(), "deny");
    let read = issuer.mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));

    let e = explain(&l, "GET", "/read/x", &Credentials::Token(read.clone())).await;
    assert!(matches!(e.decision, Decision::Allow { .. }), "{e}");
    let facts = e.token.as_ref().unwrap();
    assert_eq!(facts.issuer, issuer.issuer());
    assert_eq!(facts.subject.as_deref(), Some("dev-user"));
    assert_eq!(facts.scopes, vec!["read".to_string()]);

    let e = explain(&l, "POST", "/write/x", &Credentials::Token(read)).await;
    assert_eq!(
        e.decision,
        Decision::Forbidden {
            challenge: "write".into()
        },
        "{e}"
    );

    let write = issuer.mint_access_token(&AccessTokenRequest::new("write", &[AUDIENCE]));
    let e = explain(&l, "GET", "/read/x", &Credentials::Token(write)).await;
    assert!(matches!(e.decision, Decision::Allow { .. }), "write implies read: {e}");

    let expired = issuer.mint_access_token(&AccessTokenRequest {
        expires_in_secs: -3600,
        ..AccessTokenRequest::new("read", &[AUDIENCE])
    });
    let e = explain(&l, "GET", "/read/x", &Credentials::Token(expired)).await;
    assert_eq!(
        e.decision,
        Decision::Unauthorized {
            status: 401,
            reason: "expired".into()
        },
        "{e}"
    );
    assert!(e.token.is_none());

    let other_audience = issuer.mint_access_token(&AccessTokenRequest::new("read", &["https://other.test"]));
    let e = explain(&l, "GET", "/read/x", &Credentials::Token(other_audience)).await;
    assert_eq!(
        e.decision,
        Decision::Unauthorized {
            status: 401,
            reason: "wrong_audience".into()
        },
        "{e}"
    );

    let e = explain(&l, "GET", "/read/x", &Credentials::Token("not-a-jwt".into())).await;
    assert!(matches!(e.decision, Decision::Unauthorized { status: 401, .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_the_explanation() {
    let issuer = issuer().await;
    let dir = std::env::temp_dir().join(format!("scopegate-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, builder(issuer.issuer(), "deny").toml()).unwrap();
    let token = issuer.mint_access_token(&AccessTokenRequest::new("read", &[AUDIENCE]));
    let run = |args: Vec<String>| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_scopegate"))
                .arg("explain")
                .arg("--config")
                .arg(path)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(vec!["POST".into(), "/write/x".into(), "--scopes".into(), "read".into()])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("route:       write (POST /write/**)"), "{stdout}");
    assert!(
        stdout.contains("decision:    403 insufficient_scope (challenge names scope=\"write\")"),
        "{stdout}"
    );

    let out = run(vec!["GET".into(), "/read/x".into(), "--token".into(), token])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("token:       valid; issuer"), "{stdout}");
    assert!(stdout.contains("decision:    allow"), "{stdout}");

    let out = run(vec![
        "GET".into(),
        "/x".into(),
        "--token".into(),
        "t".into(),
        "--scopes".into(),
        "read".into(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success(), "--token and --scopes conflict");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn claims_go_through_the_verifiers_claim_rules() {
    let l = loaded(OFFLINE_ISSUER, "deny");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |exp: u64, aud: &str| {
        let json = serde_json::json!({"iss": OFFLINE_ISSUER, "aud": aud, "exp": exp, "scope": "read", "sub": "u"});
        Credentials::Claims(json.as_object().unwrap().clone())
    };
    let e = explain(&l, "GET", "/read/x", &claims(now + 600, AUDIENCE)).await;
    assert!(matches!(e.decision, Decision::Allow { .. }), "{e}");
    assert_eq!(e.token.as_ref().unwrap().subject.as_deref(), Some("u"));
    for (credentials, reason) in [
        (claims(now - 3600, AUDIENCE), "expired"),
        (claims(now + 600, "https://other.test"), "wrong_audience"),
    ] {
        let e = explain(&l, "GET", "/read/x", &credentials).await;
        assert_eq!(e.reason, reason, "{e}");
        assert_eq!(e.status(), Some(401), "{e}");
    }
}
