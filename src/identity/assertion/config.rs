//! `[identity.assertion]`: whether the upstream receives a scopegate-signed identity
//! assertion instead of the client's token, signed with which key, for whom.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Assertion, AssertionKey};
use crate::config::problems::Issues;
use crate::token::signing::{SigningAlgorithm, SigningKeyPair};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAssertion {
    #[serde(default)]
    pub enabled: bool,
    /// PEM private key; absent: a key is generated at start.
    pub key_file: Option<PathBuf>,
    pub algorithm: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub lifetime: Option<String>,
    pub header: Option<String>,
}

const PATH: &str = "identity.assertion";
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Headers an assertion may not travel in: the request's framing, its target, or another
/// credential.
const RESERVED: &[&str] = &[
    "host",
    "dpop",
    "cookie",
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "forwarded",
];

/// Compiles `[identity.assertion]`; `None` when it is not enabled.
pub fn compile_assertion(
    file: FileAssertion,
    forward_authorization: bool,
    issues: &mut Issues,
) -> Option<Arc<Assertion>> {
    if !file.enabled {
        return None;
    }
    if forward_authorization {
        issues.push(
            "forwarding.forward_authorization",
            "cannot be true with identity.assertion enabled: the assertion replaces the client's token, which never reaches the upstream",
        );
    }
    let required = |value: Option<String>, key: &str, example: &str, issues: &mut Issues| match value {
        Some(value) if !value.trim().is_empty() => value,
        _ => {
            issues.push(
                format!("{PATH}.{key}"),
                format!("is required when the assertion is enabled, e.g. {example}"),
            );
            String::new()
        }
    };
    let issuer = required(file.issuer, "issuer", "\"https://scopegate.internal\"", issues);
    let audience = required(file.audience, "audience", "\"https://orders.internal\"", issues);
    let algorithm = match file.algorithm.as_deref() {
        None => SigningAlgorithm::Es256,
        Some(name) => SigningAlgorithm::from_name(name).unwrap_or_else(|| {
            issues.push(
                format!("{PATH}.algorithm"),
                format!("{name:?} is not one of \"ES256\", \"RS256\", \"EdDSA\""),
            );
            SigningAlgorithm::Es256
        }),
    };
    let lifetime = match &file.lifetime {
        Some(text) => issues.duration(&format!("{PATH}.lifetime"), text, DEFAULT_LIFETIME),
        None => DEFAULT_LIFETIME,
    };
    if !(Duration::from_secs(1)..=MAX_LIFETIME).contains(&lifetime) {
        issues.push(
            format!("{PATH}.lifetime"),
            "must be between 1s and 5m: an assertion is a per-request credential",
        );
    }
    let header = compile_header(file.header.as_deref(), issues);
    let key = match &file.key_file {
        Some(path) => load_key(path, algorithm).map(|pair| AssertionKey::new(pair, false)),
        None => SigningKeyPair::generate(algorithm)
            .map(|pair| AssertionKey::new(pair, true))
            .map_err(|e| e.to_string()),
    };
    let key = key
        .map_err(|problem| issues.push(format!("{PATH}.key_file"), problem))
        .ok()?;
    Some(Arc::new(Assertion {
        issuer,
        audience,
        lifetime,
        header,
        key: Arc::new(key),
    }))
}

fn compile_header(name: Option<&str>, issues: &mut Issues) -> http::HeaderName {
    let Some(name) = name else {
        return http::header::AUTHORIZATION;
    };
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(header) if RESERVED.contains(&header.as_str().replace('_', "-").as_str()) => {
            issues.push(
                format!("{PATH}.header"),
                format!("{name:?} is reserved; use \"authorization\" or a header of your own, e.g. \"x-scopegate-assertion\""),
            );
            http::header::AUTHORIZATION
        }
        Ok(header) => header,
        Err(_) => {
            issues.push(format!("{PATH}.header"), format!("{name:?} is not a valid header name"));
            http::header::AUTHORIZATION
        }
    }
}

/// Reads a PEM private key (bounded, like every TLS file) for `algorithm`.
fn load_key(path: &std::path::Path, algorithm: SigningAlgorithm) -> Result<SigningKeyPair, String> {
    let der = crate::tls::read_private_key(path).map_err(|e| e.to_string())?;
    SigningKeyPair::from_der(algorithm, der.secret_der()).map_err(|e| format!("{}: {e}", path.display()))
}
