//! The authorization server of `bench/compare.sh`: a development issuer whose JWKS holds an
//! RS256 and an ES256 key, plus the files the other proxies in the comparison need.
//!
//! `cargo run --release --example load_issuer -- <listen addr> <out dir> <tokens per alg>`
//!
//! Writes into `<out dir>`: `issuer` (the issuer URL), `audience`, `jwks.json`,
//! `rs256.pem` and `es256.pem` (public keys, SubjectPublicKeyInfo), `rs256.tokens` and
//! `es256.tokens` (one read-scoped access token per line, valid for two hours), and for a
//! second issuer that hands out opaque tokens and answers introspection: `opaque.issuer`,
//! `opaque.token`, `opaque.client_id` and `opaque.secret` (its client's credentials); then
//! `ready`; it serves the JWKS and introspection until stdin closes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use scopegate::dev::{AccessTokenRequest, ClientRegistration, DevIssuer, DevIssuerConfig, KeyAlg, SigningKey, mint};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://api.bench";
/// SubjectPublicKeyInfo prefix of an uncompressed P-256 point (RFC 5480): id-ecPublicKey,
/// prime256v1, then the BIT STRING header for 65 bytes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn ec_public_pem(key: &SigningKey) -> String {
    let jwk = key.public_jwk();
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.push(0x04);
    der.extend(coordinate("x"));
    der.extend(coordinate("y"));
    pem("PUBLIC KEY", &der)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args.get(1).map_or("127.0.0.1:0", String::as_str);
    let out = PathBuf::from(args.get(2).map_or(".", String::as_str));
    let count: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2000);

    let issuer = DevIssuer::start(
        tokio::net::TcpListener::bind(listen).await.unwrap(),
        DevIssuerConfig {
            signing_alg: KeyAlg::RS256,
            default_audience: Some(AUDIENCE.into()),
            access_token_ttl: Duration::from_secs(7200),
            ..DevIssuerConfig::default()
        },
    )
    .await
    .unwrap();
    let rsa = issuer.current_key();
    let ec = SigningKey::generate("bench-es256", KeyAlg::ES256).unwrap();
    issuer.publish_extra_jwk(ec.public_jwk());

    let request = AccessTokenRequest::new("read", &[AUDIENCE]).with_ttl(Duration::from_secs(7200));
    let rs256: Vec<String> = (0..count).map(|_| issuer.mint_access_token(&request)).collect();
    // Same claims (each with its own `jti`), signed with the EC key.
    let es256: Vec<String> = rs256
        .iter()
        .map(|token| {
            let payload = token.split('.').nth(1).unwrap();
            let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
            mint(&json!({"alg": "ES256", "typ": "at+jwt", "kid": ec.kid()}), &claims, &ec)
        })
        .collect();

    // Opaque tokens, introspected by the scopegate that is configured for them.
    let opaque = DevIssuer::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        DevIssuerConfig {
            opaque_access_tokens: true,
            default_audience: Some(AUDIENCE.into()),
            access_token_ttl: Duration::from_secs(7200),
            ..DevIssuerConfig::default()
        },
    )
    .await
    .unwrap();
    let client = opaque.register_client(ClientRegistration {
        grant_types: vec!["client_credentials".into()],
        ..ClientRegistration::default()
    });

    let jwks = json!({"keys": [rsa.public_jwk(), ec.public_jwk()]});
    let write = |name: &str, text: String| std::fs::write(out.join(name), text).unwrap();
    write("issuer", issuer.issuer().to_string());
    write("audience", AUDIENCE.to_string());
    write("jwks.json", jwks.to_string());
    write("rs256.pem", rsa.rsa_public_key_pem().unwrap());
    write("es256.pem", ec_public_pem(&ec));
    write("rs256.tokens", rs256.join("\n") + "\n");
    write("es256.tokens", es256.join("\n") + "\n");
    write("opaque.issuer", opaque.issuer().to_string());
    write("opaque.token", opaque.mint_access_token(&request) + "\n");
    write("opaque.client_id", client.client_id.clone());
    write("opaque.secret", client.client_secret.clone().unwrap());
    write("ready", String::new());

    // Serve until the script closes our stdin (or goes away).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .unwrap();
    issuer.shutdown().await;
    opaque.shutdown().await;
}
