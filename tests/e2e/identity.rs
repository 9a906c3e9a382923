//! Identity headers are never altered silently (DESIGN §3.10): a claim value that is not safe
//! as a plain header value is refused (the default) or encoded reversibly, and list claims are
//! encoded so that no element can be read as two. Proven end to end with the upstream's
//! request log, and for the encoding itself by round-trip properties.
#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used)]

use crate::common::*;
use proptest::prelude::*;
use scopegate::dev::{AccessTokenRequest, DevIssuer, DevIssuerConfig};
use scopegate::identity::encoding::{decode_list, decode_value, encode_list, encode_value};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.test";

const CONFIG: &str = r#"
[listener]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[issuer]]
url = "{issuer}"
audiences = ["https://api.test"]
[[route]]
name = "read"
path = "/read/**"
scopes = ["read"]
[[route]]
name = "trial"
path = "/trial/**"
scopes = ["read"]
mode = "dry_run"
[identity.claims]
email = "x-auth-email"
groups = "x-auth-groups"
"#;

struct World {
    issuer: DevIssuer,
    upstream: Upstream,
    proxy: scopegate::server::Running,
}

async fn world(extra: &str) -> World {
    let issuer = dev_issuer(DevIssuerConfig::default()).await;
    let upstream = Upstream::start().await;
    let text = CONFIG.replace("[identity.claims]", &format!("[identity]\n{extra}\n[identity.claims]"));
    let proxy = start_proxy(config(&text, &upstream.url(), issuer.issuer())).await;
    eventually("the proxy has keys", || proxy.app.is_ready()).await;
    World {
        issuer,
        upstream,
        proxy,
    }
}

impl World {
    fn token(&self, sub: &str, claims: Value) -> String {
        let mut request = AccessTokenRequest::new("read", &[AUDIENCE]);
        request.sub = sub.to_string();
        request.extra_claims = claims.as_object().cloned().unwrap_or_default();
        self.issuer.mint_access_token(&request)
    }

    /// GETs `path` with `token`: the status, and what the upstream saw if it was forwarded.
    async fn get(&self, path: &str, token: &str) -> (u16, Option<Seen>) {
        let before = self.upstream.requests();
        let answer = raw_request(
            self.proxy.addr,
            format!(
                "GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let forwarded = self.upstream.requests() > before;
        (status_of(&answer), forwarded.then(|| self.upstream.last()))
    }
}

/// Values that today's cleaning would have turned into something else.
fn hostile() -> Vec<(&'static str, Value)> {
    vec![
        ("ad\u{200b}min", json!({})),
        ("alice", json!({"email": "adm\u{e9}in@x"})),
        ("alice", json!({"email": "a@x\r\nx-auth-subject: root"})),
        ("alice", json!({"email": " padded "})),
        ("alice", json!({"groups": ["users,admins", "x"]})),
        ("alice", json!({"groups": ["ok", "ro\u{200b}ot"]})),
        ("alice", json!({"groups": ["ok", {"nested": true}]})),
        ("alice", json!({"email": ":looks-encoded:"})),
        ("alice", json!({"email": "x".repeat(5000)})),
    ]
}

#[tokio::test]
async fn unsafe_claim_values_are_refused_by_default() {
    let w = world("").await;
    for (sub, claims) in hostile() {
        let token = w.token(sub, claims.clone());
        let (status, seen) = w.get("/read/x", &token).await;
        assert_eq!(status, 401, "{sub:?} {claims}: {seen:?}");
        assert!(seen.is_none(), "{sub:?} {claims} reached the upstream: {seen:?}");
        // A dry run lends no altered identity either.
        let (status, seen) = w.get("/trial/x", &token).await;
        assert_eq!(status, 401, "dry run, {sub:?} {claims}: {seen:?}");
    }
    // Plain values pass as they always did.
    let token = w.token(
        "alice",
        json!({"email": "alice@example.test", "groups": ["users", "ops team"]}),
    );
    let (status, seen) = w.get("/read/x", &token).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-email"), Some("alice@example.test"));
    assert_eq!(seen.header("x-auth-groups"), Some("users,ops team"));
    assert_eq!(seen.header("x-auth-scopes"), Some("read"));
}

#[tokio::test]
async fn unsafe_claim_values_are_encoded_when_configured() {
    let w = world("unsafe_values = \"encode\"").await;
    let token = w.token(
        "ad\u{200b}min",
        json!({"email": "adm\u{e9}in@x\r\n", "groups": ["users,admins", "x", ":b:"]}),
    );
    let (status, seen) = w.get("/read/x", &token).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    let subject = seen.header("x-auth-subject").unwrap();
    assert_ne!(subject, "admin");
    assert_eq!(decode_value(subject).as_deref(), Some("ad\u{200b}min"), "{subject}");
    let email = seen.header("x-auth-email").unwrap();
    assert_eq!(decode_value(email).as_deref(), Some("adm\u{e9}in@x\r\n"), "{email}");
    let groups = seen.header("x-auth-groups").unwrap();
    let members = decode_list(groups, ',').unwrap();
    assert_eq!(members, ["users,admins", "x", ":b:"], "{groups}");
    assert!(
        !members.iter().any(|m| m == "admins"),
        "{groups} reads as membership of admins"
    );
    assert!(!groups.split(',').any(|m| m.trim() == "admins"), "{groups}");

    // Structures cannot be represented in any mode.
    let token = w.token("alice", json!({"groups": [["a"]]}));
    assert_eq!(w.get("/read/x", &token).await.0, 401);
    // Nor values longer than the limit: never truncated.
    let token = w.token("alice", json!({"email": "x".repeat(5000)}));
    assert_eq!(w.get("/read/x", &token).await.0, 401);
}

#[test]
fn identity_settings_are_validated() {
    let text = |extra: &str| {
        CONFIG
            .replace("[identity.claims]", &format!("[identity]\n{extra}\n[identity.claims]"))
            .replace("{upstream}", "http://127.0.0.1:1")
            .replace("{issuer}", "http://127.0.0.1:9")
    };
    let err = scopegate::config::Config::from_toml(&text("unsafe_values = \"strip\""), "t.toml").unwrap_err();
    assert!(err.to_string().contains("unsafe_values"), "{err}");
    let err = scopegate::config::Config::from_toml(&text("max_value_bytes = \"10\""), "t.toml").unwrap_err();
    assert!(err.to_string().contains("identity.max_value_bytes"), "{err}");
    scopegate::config::Config::from_toml(
        &text("unsafe_values = \"encode\"\nmax_value_bytes = \"1KiB\""),
        "t.toml",
    )
    .unwrap();
}

#[test]
fn plain_values_are_never_encoded_and_never_look_encoded() {
    for plain in [
        "alice",
        "alice@example.test",
        "a b",
        "https://issuer.test/",
        "{\"x\"}",
        "a\\b",
    ] {
        assert_eq!(encode_value(plain), plain);
        assert_eq!(decode_value(plain).as_deref(), Some(plain));
    }
    for needs in ["", " a", "a ", ":a", ":a:", "é", "a\u{200b}", "a\r\nb", "\t"] {
        let encoded = encode_value(needs);
        assert!(
            encoded.starts_with(':') && encoded.ends_with(':'),
            "{needs:?} → {encoded}"
        );
        assert_eq!(decode_value(&encoded).as_deref(), Some(needs));
    }
    assert_eq!(encode_list(["users,admins", "x"], ','), ":dXNlcnMsYWRtaW5z:,x");
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "[a-z,:\\\\\" ]{0,20}",
        prop::collection::vec(
            prop_oneof![
                Just('\u{200b}'),
                Just('\u{e9}'),
                Just('\r'),
                Just('\n'),
                Just('"'),
                Just(','),
                Just('\\'),
                Just(':'),
                Just(' '),
                Just('a'),
            ],
            0..64
        )
        .prop_map(|chars| chars.into_iter().collect()),
        (1usize..20_000).prop_map(|n| "\u{200b}x".repeat(n / 2)),
    ]
}

proptest! {
    #[test]
    fn values_round_trip(value in hostile_string()) {
        let encoded = encode_value(&value);
        prop_assert!(http::HeaderValue::from_str(&encoded).is_ok(), "{encoded:?}");
        prop_assert_eq!(decode_value(&encoded), Some(value));
    }

    #[test]
    fn lists_round_trip_and_never_split(values in prop::collection::vec(hostile_string(), 1..8)) {
        for separator in [',', ' '] {
            let encoded = encode_list(values.iter().map(String::as_str), separator);
            prop_assert!(http::HeaderValue::from_str(&encoded).is_ok(), "{encoded:?}");
            prop_assert_eq!(decode_list(&encoded, separator), Some(values.clone()));
        }
    }
}
