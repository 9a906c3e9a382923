//! Wycheproof JOSE vectors (see `tests/vectors/wycheproof/README.md`) run through scopegate's
//! signature layer: `KeySet::from_jwks` + `jws::verify_signature`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scopegate::token::jwk::{Algorithm, KeySet, KeyWarning};
use scopegate::token::jws::{self, TokenError};
use serde_json::{Value, json};

const MAX_BYTES: usize = 16 * 1024;

/// `valid` vectors that scopegate rejects on purpose, with the error it must give.
///
/// RFC 7520 Figure 20 is signed with PS384, but the group's JWK declares `"alg": "PS256"`
/// (the key in RFC 7520 §3.3 has no `alg`; Wycheproof added it). scopegate enforces the JWK
/// `alg` (RFC 7517 §4.4; RFC 8725 §3.1: "each key MUST be used with exactly one algorithm"), so
/// these are rejected as a key/algorithm mismatch.
const JWS_POLICY_REJECTIONS: [(u64, TokenError); 2] = [(346, TokenError::KeyMismatch), (350, TokenError::KeyMismatch)];

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read Wycheproof vector file");
    serde_json::from_str(&text).expect("parse Wycheproof vector file")
}

/// The group's public key(s), or the private ones when there is no public form (symmetric
/// keys), as a JWKS. Private/symmetric keys must be skipped by `from_jwks`.
fn group_key_set(group: &Value) -> (KeySet, Vec<KeyWarning>) {
    let source = group
        .get("public")
        .or_else(|| group.get("private"))
        .expect("group has a key");
    let jwks = if source.get("keys").is_some() {
        source.clone()
    } else {
        json!({ "keys": [source] })
    };
    KeySet::from_jwks(&serde_json::to_vec(&jwks).unwrap()).expect("JWKS shape")
}

/// Whether scopegate implements the token's header `alg` at all. Used only to classify `valid`
/// vectors as unsupported, so the header is decoded leniently (some `valid` HS256 vectors
/// deliberately contain characters outside the base64url alphabet).
fn alg_supported(jws: &str) -> bool {
    let header = jws.split('.').next().unwrap_or_default();
    serde_json::from_slice::<Value>(&lenient_b64url_decode(header))
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
        .and_then(|alg| Algorithm::from_name(&alg))
        .is_some()
}

fn lenient_b64url_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    use base64::engine::{GeneralPurpose, general_purpose};
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        general_purpose::NO_PAD.with_decode_allow_trailing_bits(true),
    );
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    engine.decode(cleaned).unwrap_or_default()
}

#[derive(Debug, Default)]
struct Tally {
    accepted_valid: usize,
    rejected_invalid: usize,
    skipped_unsupported: usize,
    policy_rejected_valid: usize,
    failures: Vec<String>,
}

fn run_file(name: &str, policy_rejections: &[(u64, TokenError)]) -> Tally {
    let doc = load(name);
    let mut tally = Tally::default();
    for group in doc["testGroups"].as_array().unwrap() {
        let (keys, warnings) = group_key_set(group);
        for warning in &warnings {
            println!("  group {:?}: {warning}", group["comment"]);
        }
        for test in group["tests"].as_array().unwrap() {
            let tc_id = test["tcId"].as_u64().unwrap();
            let comment = test["comment"].as_str().unwrap_or("");
            let expected_valid = test["result"] == "valid";
            // JSON-serialized vectors are objects, not strings: never a compact JWS.
            let token = test["jws"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| test["jws"].to_string());
            let outcome = jws::verify_signature(&token, &keys, &Algorithm::ALL, MAX_BYTES);
            let expected_policy = policy_rejections.iter().find(|(id, _)| *id == tc_id);
            match (expected_valid, outcome) {
                (false, Err(err)) => {
                    println!("  tc {tc_id} ({comment}): rejected, {}", err.reason());
                    tally.rejected_invalid += 1;
                }
                (false, Ok(_)) => tally
                    .failures
                    .push(format!("tc {tc_id} ({comment}): invalid vector was accepted")),
                (true, Ok(_)) => tally.accepted_valid += 1,
                (true, Err(err)) if !alg_supported(&token) => {
                    println!("  tc {tc_id} ({comment}): skipped, unsupported alg ({})", err.reason());
                    tally.skipped_unsupported += 1;
                }
                (true, Err(err)) if expected_policy.is_some_and(|(_, e)| *e == err) => {
                    println!("  tc {tc_id} ({comment}): rejected by policy, {}", err.reason());
                    tally.policy_rejected_valid += 1;
                }
                (true, Err(err)) => tally.failures.push(format!(
                    "tc {tc_id} ({comment}): valid vector rejected: {}",
                    err.reason()
                )),
            }
        }
    }
    println!("{name}: {tally:?}");
    tally
}

#[test]
fn json_web_signature_vectors() {
    let tally = run_file("json_web_signature_test.json", &JWS_POLICY_REJECTIONS);
    assert!(tally.failures.is_empty(), "failures: {:#?}", tally.failures);
    // 401 vectors, 46 valid and 355 invalid. Valid: 34 use an algorithm scopegate supports
    // (32 accepted, 2 rejected by policy, see JWS_POLICY_REJECTIONS); 12 are HS256 or ES512
    // (P-521) vectors, skipped as unsupported. Every invalid vector is rejected.
    assert_eq!(tally.accepted_valid, 32);
    assert_eq!(tally.policy_rejected_valid, JWS_POLICY_REJECTIONS.len());
    assert_eq!(tally.skipped_unsupported, 12);
    assert_eq!(tally.rejected_invalid, 355);
}

#[test]
fn json_web_key_vectors() {
    let tally = run_file("json_web_key_test.json", &[]);
    assert!(tally.failures.is_empty(), "failures: {:#?}", tally.failures);
    // 26 vectors: the RS256 key is accepted and verifies; the 4 valid HS* key sets are
    // skipped as unsupported (symmetric keys are never taken from a JWKS); all 21 invalid ones
    // (symmetric, wrong use, ROCA, 1024-bit, e = 1, alg/curve/kty mismatches, off-curve point,
    // duplicate kid) are rejected.
    assert_eq!(tally.accepted_valid, 1);
    assert_eq!(tally.skipped_unsupported, 4);
    assert_eq!(tally.rejected_invalid, 21);
}
