//! `[identity]`: the header namespace scopegate owns, extra claim mappings, and what happens
//! to a claim value that is not safe as a plain header value.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::assertion::Assertion;
use super::assertion::config::{FileAssertion, compile_assertion};
use crate::config::problems::Issues;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIdentity {
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Extra claim → header mappings, e.g. `email = "x-auth-email"`.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    #[serde(default)]
    pub unsafe_values: UnsafeValues,
    /// Longest identity header value, once encoded.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: String,
    /// `[identity.assertion]`: a signed assertion instead of the client's token.
    #[serde(default)]
    pub assertion: FileAssertion,
}

impl Default for FileIdentity {
    fn default() -> Self {
        Self {
            prefix: default_prefix(),
            claims: BTreeMap::new(),
            unsafe_values: UnsafeValues::default(),
            max_value_bytes: default_max_value_bytes(),
            assertion: FileAssertion::default(),
        }
    }
}

fn default_prefix() -> String {
    "x-auth-".into()
}

fn default_max_value_bytes() -> String {
    "4KiB".into()
}

/// What a claim value that cannot be sent plain (see [`super::encoding`]) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsafeValues {
    /// The request is refused (401 `invalid_token`) and never forwarded.
    #[default]
    Refuse,
    /// The value is sent as an RFC 8941 Byte Sequence (`:base64:`), which upstreams decode.
    Encode,
}

/// Identity headers set for the upstream.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Lower-case, with `_` folded to `-`: every inbound header with this prefix is removed.
    pub prefix: String,
    pub claims: Vec<(String, http::HeaderName)>,
    pub unsafe_values: UnsafeValues,
    pub max_value_bytes: usize,
    /// `None`: the upstream gets the identity headers only.
    pub assertion: Option<std::sync::Arc<Assertion>>,
    /// The standard identity headers' names (`prefix` + `subject`, `client-id`, `scopes`,
    /// `issuer`), made once here rather than per request.
    pub standard: [Option<http::HeaderName>; 4],
}

/// The suffixes of the identity headers every principal may have, after `identity.prefix`,
/// in the order of [`IdentityConfig::standard`].
pub(crate) const STANDARD_SUFFIXES: [&str; 4] = ["subject", "client-id", "scopes", "issuer"];

/// Compiles `[identity]`; `forward_authorization` is `forwarding.forward_authorization`, which
/// the assertion excludes.
pub fn compile_identity(file: FileIdentity, forward_authorization: bool, issues: &mut Issues) -> IdentityConfig {
    let prefix = normalize_header_name(&file.prefix);
    if prefix.len() < 3 || http::HeaderName::from_bytes(prefix.as_bytes()).is_err() {
        issues.push(
            "identity.prefix",
            "must be a header-name prefix of at least 3 characters, e.g. \"x-auth-\"",
        );
    }
    let mut claims = Vec::new();
    for (claim, header) in file.claims {
        let path = format!("identity.claims.{claim}");
        match http::HeaderName::from_bytes(header.as_bytes()) {
            Ok(name) if normalize_header_name(name.as_str()).starts_with(&prefix) => claims.push((claim, name)),
            Ok(_) => issues.push(
                path,
                format!("{header:?} must start with the identity prefix {prefix:?} so that clients can never set it themselves"),
            ),
            Err(_) => issues.push(path, format!("{header:?} is not a valid header name")),
        }
    }
    let max_value_bytes = issues.size("identity.max_value_bytes", &file.max_value_bytes, 4096);
    if !(256..=64 << 10).contains(&max_value_bytes) {
        issues.push(
            "identity.max_value_bytes",
            "must be between 256B and 64KiB: longer values are refused, never truncated",
        );
    }
    let standard =
        STANDARD_SUFFIXES.map(|suffix| http::HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes()).ok());
    IdentityConfig {
        standard,
        prefix,
        claims,
        unsafe_values: file.unsafe_values,
        max_value_bytes: usize::try_from(max_value_bytes).unwrap_or(usize::MAX),
        assertion: compile_assertion(file.assertion, forward_authorization, issues),
    }
}

/// Lower-cases a header name and folds `_` to `-`: some servers treat `X_Auth_Sub` as
/// `X-Auth-Sub`, so a client must not be able to smuggle one past the prefix check.
pub fn normalize_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}
