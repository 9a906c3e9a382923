//! `[issuer.introspection]` as written, compiled into [`IntrospectionConfig`] (RFC 7662
//! client settings, budgets and caching), and the client secret that is never printed.

use std::time::Duration;

use serde::Deserialize;

use crate::config::problems::Issues;
use crate::http_client::is_acceptable_remote_url;

/// `[issuer.introspection]`: the RFC 7662 client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIntrospection {
    /// Overrides the discovered `introspection_endpoint`.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub client_id: String,
    /// Secrets never live in the config file itself: name a file or an environment variable.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    #[serde(default = "defaults::introspection_timeout")]
    pub timeout: String,
    #[serde(default = "defaults::introspection_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "defaults::introspection_max_response_bytes")]
    pub max_response_bytes: String,
    /// Longest time an active answer is reused (also capped by the token's `exp`).
    #[serde(default = "defaults::positive_ttl")]
    pub positive_ttl: String,
    /// How long an inactive answer is reused.
    #[serde(default = "defaults::negative_ttl")]
    pub negative_ttl: String,
    /// Reject active answers without an `aud` naming one of the issuer's audiences.
    #[serde(default = "defaults::yes")]
    pub require_audience: bool,
    /// Introspection calls in flight at once; further misses wait for a slot.
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent: usize,
    /// Of those, calls for tokens never seen active; default: half of `max_concurrent`. The
    /// rest is kept for re-validating tokens that were active before.
    #[serde(default)]
    pub new_token_max_concurrent: Option<usize>,
    /// Introspections of never-seen tokens each client address may cause per second (0: no
    /// per-client limit), with bursts of up to `client_new_token_burst`.
    #[serde(default = "defaults::client_new_tokens_per_second")]
    pub client_new_tokens_per_second: u32,
    #[serde(default = "defaults::client_new_token_burst")]
    pub client_new_token_burst: u32,
    /// During an outage, keep allowing tokens that were active at most this long ago.
    /// Off ("0s") by default: a revoked token would be accepted for this long.
    #[serde(default = "defaults::serve_stale_for")]
    pub serve_stale_for: String,
}

/// RFC 7591 §2 names of the client authentication methods scopegate can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// A client secret read from a file or the environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads a secret from the file or the environment variable a config names (each given as
/// its TOML path and value; surrounding whitespace of a file is dropped). `None` when
/// neither or both are set: the caller says which it needs. An unreadable or empty source
/// is reported and read as an empty secret.
pub fn read_secret(file: (&str, Option<&str>), env: (&str, Option<&str>), issues: &mut Issues) -> Option<Secret> {
    match (file, env) {
        ((at, Some(path)), (_, None)) => Some(match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Secret(text.trim().to_string()),
            Ok(_) => {
                issues.push(at, format!("{path:?} is empty"));
                Secret(String::new())
            }
            Err(e) => {
                issues.push(at, format!("cannot read {path:?}: {e}"));
                Secret(String::new())
            }
        }),
        ((_, None), (at, Some(var))) => Some(match std::env::var(var) {
            Ok(value) if !value.is_empty() => Secret(value),
            _ => {
                issues.push(at, format!("environment variable {var:?} is not set or empty"));
                Secret(String::new())
            }
        }),
        _ => None,
    }
}

/// [`read_secret`] for a secret that may be left out: both sources set is reported.
pub fn read_optional_secret(
    file: (&str, Option<&str>),
    env: (&str, Option<&str>),
    issues: &mut Issues,
) -> Option<Secret> {
    if file.1.is_some() && env.1.is_some() {
        let (file_key, env_key) = (file.0, env.0);
        issues.push(file_key, format!("set at most one of {file_key} or {env_key}"));
        return None;
    }
    read_secret(file, env, issues)
}

/// A compiled `[issuer.introspection]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionConfig {
    pub endpoint: Option<reqwest::Url>,
    pub client_id: String,
    pub client_secret: Secret,
    pub auth_method: ClientAuthMethod,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
    pub require_audience: bool,
    pub max_concurrent: usize,
    pub new_token_max_concurrent: usize,
    pub client_new_tokens_per_second: u32,
    pub client_new_token_burst: u32,
    pub serve_stale_for: Duration,
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn introspection_timeout() -> String {
        "2s".into()
    }
    pub fn introspection_connect_timeout() -> String {
        "1s".into()
    }
    pub fn introspection_max_response_bytes() -> String {
        "64KiB".into()
    }
    pub fn positive_ttl() -> String {
        "60s".into()
    }
    pub fn negative_ttl() -> String {
        "5s".into()
    }
    pub fn max_concurrent() -> usize {
        64
    }
    pub fn serve_stale_for() -> String {
        "0s".into()
    }
    pub fn client_new_tokens_per_second() -> u32 {
        10
    }
    pub fn client_new_token_burst() -> u32 {
        20
    }
}

pub(super) fn compile_introspection(at: &str, file: &FileIntrospection, issues: &mut Issues) -> IntrospectionConfig {
    let endpoint = file.endpoint.as_ref().and_then(|text| match reqwest::Url::parse(text) {
        Ok(url) if is_acceptable_remote_url(&url) => Some(url),
        _ => {
            issues.push(
                format!("{at}.endpoint"),
                "must be an https URL (http only for loopback hosts)",
            );
            None
        }
    });
    if file.client_id.is_empty() {
        issues.push(format!("{at}.client_id"), "must not be empty");
    }
    let client_secret = read_secret(
        (&format!("{at}.client_secret_file"), file.client_secret_file.as_deref()),
        (&format!("{at}.client_secret_env"), file.client_secret_env.as_deref()),
        issues,
    )
    .unwrap_or_else(|| {
        issues.push(
            format!("{at}.client_secret_file"),
            "set exactly one of client_secret_file or client_secret_env (secrets are never written inline)",
        );
        Secret(String::new())
    });
    if file.max_concurrent == 0 {
        issues.push(format!("{at}.max_concurrent"), "must be at least 1");
    }
    let max_concurrent = file.max_concurrent.max(1);
    let new_token_max_concurrent = match file.new_token_max_concurrent {
        None => max_concurrent.div_ceil(2),
        Some(n) if (1..=max_concurrent).contains(&n) => n,
        Some(_) => {
            issues.push(
                format!("{at}.new_token_max_concurrent"),
                "must be between 1 and max_concurrent: it is the share of introspection calls tokens never seen before may use",
            );
            max_concurrent.div_ceil(2)
        }
    };
    if file.client_new_tokens_per_second > 0 && file.client_new_token_burst == 0 {
        issues.push(
            format!("{at}.client_new_token_burst"),
            "must be at least 1 (or set client_new_tokens_per_second = 0 to turn the per-client limit off)",
        );
    }
    IntrospectionConfig {
        endpoint,
        client_id: file.client_id.clone(),
        client_secret,
        auth_method: file.auth_method,
        timeout: issues.duration(&format!("{at}.timeout"), &file.timeout, Duration::from_secs(2)),
        connect_timeout: issues.duration(
            &format!("{at}.connect_timeout"),
            &file.connect_timeout,
            Duration::from_secs(1),
        ),
        max_response_bytes: issues.size(&format!("{at}.max_response_bytes"), &file.max_response_bytes, 64 << 10)
            as usize,
        positive_ttl: issues.duration(
            &format!("{at}.positive_ttl"),
            &file.positive_ttl,
            Duration::from_secs(60),
        ),
        negative_ttl: issues.duration(
            &format!("{at}.negative_ttl"),
            &file.negative_ttl,
            Duration::from_secs(5),
        ),
        require_audience: file.require_audience,
        max_concurrent,
        new_token_max_concurrent,
        client_new_tokens_per_second: file.client_new_tokens_per_second,
        client_new_token_burst: file.client_new_token_burst.max(1),
        serve_stale_for: issues.duration(&format!("{at}.serve_stale_for"), &file.serve_stale_for, Duration::ZERO),
    }
}
