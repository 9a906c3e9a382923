//! `[fleet]` (the Redis every sidecar shares) and `[ssf]` (the Shared Signals transmitter
//! whose events are accepted), as written and compiled.

use std::time::Duration;

use serde::Deserialize;

use crate::config::problems::Issues;
use crate::http_client::is_acceptable_remote_url;
use crate::token::config::{IssuerConfig, Secret, TokenValidation, compile_algorithms, read_optional_secret};

/// `[fleet]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFleet {
    /// `redis://host:port/db` or `rediss://` (TLS, rustls); a user name may be given, a
    /// password never (use `password_file` or `password_env`).
    pub url: String,
    #[serde(default)]
    pub password_file: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// PEM file of the CA certificates a `rediss://` server is checked against, instead of
    /// the web PKI roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "defaults::command_timeout")]
    pub command_timeout: String,
    /// Share active introspection answers between sidecars.
    #[serde(default = "defaults::yes")]
    pub share_introspection: bool,
}

/// `[ssf]` as written: the one transmitter whose Security Event Tokens are accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSsf {
    /// The transmitter's `iss`, compared exactly.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: String,
    /// The `aud` a SET must carry to be for this receiver.
    pub audience: String,
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<String>,
    /// A SET older than this (by `iat`) is refused; replays are remembered this long.
    #[serde(default = "defaults::max_age")]
    pub max_age: String,
}

mod defaults {
    pub fn key_prefix() -> String {
        "scopegate:".into()
    }
    pub fn connect_timeout() -> String {
        "2s".into()
    }
    pub fn command_timeout() -> String {
        "500ms".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn algorithms() -> Vec<String> {
        vec!["RS256".into(), "ES256".into()]
    }
    pub fn max_age() -> String {
        "5m".into()
    }
}

/// A compiled `[fleet]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// The URL as written, without a password.
    pub url: String,
    pub password: Option<Secret>,
    /// PEM CA certificates for `rediss://` (`ca_file`); `None`: the web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub share_introspection: bool,
}

/// A compiled `[ssf]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SsfConfig {
    /// The transmitter, as an issuer whose key set is fetched like any other's.
    pub transmitter: IssuerConfig,
    pub audience: String,
    pub max_age: Duration,
}

/// Compiles `[fleet]`. `admin_token`: whether `admin.token_file` (or `token_env`) is set, which a fleet
/// requires (an unauthenticated revocation would reach every sidecar).
pub fn compile_fleet(file: &FileFleet, admin_token: bool, issues: &mut Issues) -> FleetConfig {
    match url::Url::parse(&file.url) {
        Ok(url) if !matches!(url.scheme(), "redis" | "rediss") => {
            issues.push("fleet.url", "must be a redis:// or rediss:// (TLS) URL");
        }
        Ok(url) if url.password().is_some() => issues.push(
            "fleet.url",
            "must not contain a password: put it in password_file or password_env, so it never appears in the config or logs",
        ),
        Ok(url) if url.host().is_none() => issues.push("fleet.url", "must name a host"),
        Ok(_) => {
            if let Err(e) = redis::IntoConnectionInfo::into_connection_info(file.url.as_str()) {
                issues.push("fleet.url", format!("is not a Redis URL: {e}"));
            }
        }
        Err(e) => issues.push("fleet.url", format!("is not a URL: {e}")),
    }
    let ca_pem = file.ca_file.as_ref().and_then(|path| {
        if !file.url.starts_with("rediss://") {
            issues.push("fleet.ca_file", "only applies to a rediss:// (TLS) url");
        }
        match std::fs::read(path) {
            Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
            Ok(_) => {
                issues.push("fleet.ca_file", format!("{path:?} holds no PEM certificate"));
                None
            }
            Err(e) => {
                issues.push("fleet.ca_file", format!("cannot read {path:?}: {e}"));
                None
            }
        }
    });
    let password = read_optional_secret(
        ("fleet.password_file", file.password_file.as_deref()),
        ("fleet.password_env", file.password_env.as_deref()),
        issues,
    );
    if file.key_prefix.is_empty() || file.key_prefix.len() > 64 || file.key_prefix.contains(char::is_whitespace) {
        issues.push(
            "fleet.key_prefix",
            "must be 1 to 64 characters without spaces, e.g. \"scopegate:\"",
        );
    }
    let connect_timeout =
        issues.positive_duration("fleet.connect_timeout", &file.connect_timeout, Duration::from_secs(2));
    let command_timeout = issues.positive_duration(
        "fleet.command_timeout",
        &file.command_timeout,
        Duration::from_millis(500),
    );
    if !admin_token {
        issues.push(
            "admin.token_file",
            "(or admin.token_env) is required when [fleet] is set: a revocation accepted by one sidecar reaches every sidecar",
        );
    }
    FleetConfig {
        url: file.url.clone(),
        password,
        ca_pem,
        key_prefix: file.key_prefix.clone(),
        connect_timeout,
        command_timeout,
        share_introspection: file.share_introspection,
    }
}

/// Compiles `[ssf]`.
pub fn compile_ssf(file: &FileSsf, issues: &mut Issues) -> SsfConfig {
    let jwks_uri = match reqwest::Url::parse(&file.jwks_uri) {
        Ok(url) if is_acceptable_remote_url(&url) => Some(url),
        _ => {
            issues.push("ssf.jwks_uri", "must be an https URL (http only for loopback hosts)");
            None
        }
    };
    if file.issuer.is_empty() {
        issues.push("ssf.issuer", "must not be empty: it is compared with each event's iss");
    }
    if file.audience.is_empty() {
        issues.push(
            "ssf.audience",
            "must not be empty: events for other receivers must be refused",
        );
    }
    let algorithms = compile_algorithms("ssf", &file.algorithms, issues);
    let max_age = issues.duration("ssf.max_age", &file.max_age, Duration::from_secs(300));
    if max_age < Duration::from_secs(1) || max_age > Duration::from_secs(24 * 3600) {
        issues.push("ssf.max_age", "must be between 1s and 24h");
    }
    SsfConfig {
        transmitter: IssuerConfig {
            issuer: file.issuer.clone(),
            audiences: vec![file.audience.clone()],
            algorithms,
            leeway: Duration::from_secs(30),
            accepted_typ: Vec::new(),
            scope_claims: Vec::new(),
            jwks_uri,
            ca_file: None,
            extra_roots: None,
            discovery: false,
            jwks_refresh_min: Duration::from_secs(60),
            jwks_refresh_max: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(30),
            unknown_kid_recheck_interval: Duration::from_secs(1),
            max_stale: Duration::from_secs(6 * 3600),
            fetch_timeout: Duration::from_secs(5),
            max_response_bytes: 256 << 10,
            token_validation: TokenValidation::Jwt,
            introspection: None,
        },
        audience: file.audience.clone(),
        max_age,
    }
}
