//! `[[issuer]]` and `[token]` config sections, compiled into [`TokenConfig`].

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::problems::Issues;
use crate::http_client::is_acceptable_remote_url;
use crate::token::jwk::Algorithm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIssuer {
    /// The issuer identifier, compared byte-for-byte with `iss` and the discovery document.
    pub url: String,
    /// Accepted `aud` values: a token must name at least one.
    pub audiences: Vec<String>,
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "defaults::leeway")]
    pub leeway: String,
    /// RFC 9068 §2.1: require `typ: at+jwt`, so an ID token is never taken as an access token.
    #[serde(default = "defaults::yes")]
    pub require_typ: bool,
    /// Overrides the `jwks_uri` from discovery; with `discovery = false` it is required.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "defaults::yes")]
    pub discovery: bool,
    #[serde(default = "defaults::jwks_refresh_min")]
    pub jwks_refresh_min: String,
    #[serde(default = "defaults::jwks_refresh_max")]
    pub jwks_refresh_max: String,
    #[serde(default = "defaults::unknown_kid_cooldown")]
    pub unknown_kid_cooldown: String,
    /// A `kid` seen again before any fetch looked for it may fetch once per this interval.
    #[serde(default = "defaults::unknown_kid_recheck_interval")]
    pub unknown_kid_recheck_interval: String,
    #[serde(default = "defaults::max_stale")]
    pub max_stale: String,
    #[serde(default = "defaults::fetch_timeout")]
    pub fetch_timeout: String,
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: String,
    /// `jwt` (verify locally), `introspection` (RFC 7662), or `auto` (JWTs of this issuer
    /// locally, anything else by introspection).
    #[serde(default)]
    pub token_validation: TokenValidation,
    #[serde(default)]
    pub introspection: Option<FileIntrospection>,
}

/// How an issuer's tokens are validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenValidation {
    #[default]
    Jwt,
    Introspection,
    Auto,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenSettings {
    #[serde(default = "defaults::max_token_bytes")]
    pub max_token_bytes: String,
    #[serde(default = "defaults::cache_max_entries")]
    pub cache_max_entries: u64,
    #[serde(default = "defaults::cache_ttl")]
    pub cache_ttl: String,
    #[serde(default = "defaults::cache_max_entries")]
    pub introspection_cache_max_entries: u64,
}

impl Default for FileTokenSettings {
    fn default() -> Self {
        Self {
            max_token_bytes: defaults::max_token_bytes(),
            cache_max_entries: defaults::cache_max_entries(),
            cache_ttl: defaults::cache_ttl(),
            introspection_cache_max_entries: defaults::cache_max_entries(),
        }
    }
}

mod defaults {
    pub fn algorithms() -> Vec<String> {
        vec!["RS256".into(), "ES256".into()]
    }
    pub fn leeway() -> String {
        "30s".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn jwks_refresh_min() -> String {
        "1m".into()
    }
    pub fn jwks_refresh_max() -> String {
        "1h".into()
    }
    pub fn unknown_kid_cooldown() -> String {
        "30s".into()
    }
    pub fn unknown_kid_recheck_interval() -> String {
        "1s".into()
    }
    pub fn client_new_tokens_per_second() -> u32 {
        10
    }
    pub fn client_new_token_burst() -> u32 {
        20
    }
    pub fn max_stale() -> String {
        "6h".into()
    }
    pub fn fetch_timeout() -> String {
        "5s".into()
    }
    pub fn max_response_bytes() -> String {
        "256KiB".into()
    }
    pub fn max_token_bytes() -> String {
        "8KiB".into()
    }
    pub fn cache_max_entries() -> u64 {
        100_000
    }
    pub fn cache_ttl() -> String {
        "5m".into()
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

/// One trusted authorization server.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub require_typ: bool,
    pub jwks_uri: Option<reqwest::Url>,
    pub discovery: bool,
    pub jwks_refresh_min: Duration,
    pub jwks_refresh_max: Duration,
    pub unknown_kid_cooldown: Duration,
    pub unknown_kid_recheck_interval: Duration,
    pub max_stale: Duration,
    pub fetch_timeout: Duration,
    pub max_response_bytes: usize,
    pub token_validation: TokenValidation,
    pub introspection: Option<IntrospectionConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub issuers: Vec<IssuerConfig>,
    pub max_token_bytes: usize,
    pub cache_max_entries: u64,
    pub cache_ttl: Duration,
    pub introspection_cache_max_entries: u64,
    /// Claims kept on a cached principal besides the standard ones: those mapped to identity
    /// headers. Everything else is dropped, so a cache entry stays small.
    pub retained_claims: Vec<String>,
}

impl TokenConfig {
    pub fn compile(files: &[FileIssuer], settings: &FileTokenSettings, issues: &mut Issues) -> TokenConfig {
        let mut issuers: Vec<IssuerConfig> = Vec::new();
        for (index, file) in files.iter().enumerate() {
            let issuer = compile_issuer(&format!("issuer[{index}]"), file, issues);
            if issuers.iter().any(|i| i.issuer == issuer.issuer) {
                issues.push(format!("issuer[{index}].url"), "the same issuer is configured twice");
            }
            issuers.push(issuer);
        }
        let max_token_bytes = issues.size("token.max_token_bytes", &settings.max_token_bytes, 8 << 10);
        if !(512..=64 << 10).contains(&max_token_bytes) {
            issues.push("token.max_token_bytes", "must be between 512 and 64KiB");
        }
        if settings.cache_max_entries == 0 {
            issues.push(
                "token.cache_max_entries",
                "must be at least 1 (the cache is what makes repeated tokens cheap)",
            );
        }
        TokenConfig {
            issuers,
            max_token_bytes: max_token_bytes as usize,
            cache_max_entries: settings.cache_max_entries.max(1),
            cache_ttl: issues.duration("token.cache_ttl", &settings.cache_ttl, Duration::from_secs(300)),
            introspection_cache_max_entries: settings.introspection_cache_max_entries.max(1),
            retained_claims: Vec::new(),
        }
    }
}

fn compile_issuer(at: &str, file: &FileIssuer, issues: &mut Issues) -> IssuerConfig {
    match reqwest::Url::parse(&file.url) {
        Ok(url) if is_acceptable_remote_url(&url) && url.query().is_none() && url.fragment().is_none() => {}
        Ok(_) => issues.push(
            format!("{at}.url"),
            "must be an https URL without query or fragment (RFC 8414 §2); plain http is allowed only for loopback hosts",
        ),
        Err(e) => issues.push(format!("{at}.url"), format!("{:?} is not a URL: {e}", file.url)),
    }
    if file.audiences.is_empty() || file.audiences.iter().any(|a| a.is_empty()) {
        issues.push(
            format!("{at}.audiences"),
            "list at least one non-empty audience: tokens minted for other resources must be refused (RFC 9068 §4)",
        );
    }
    let mut algorithms = Vec::new();
    for (i, name) in file.algorithms.iter().enumerate() {
        match Algorithm::from_str(name) {
            Ok(alg) => algorithms.push(alg),
            Err(e) => issues.push(format!("{at}.algorithms[{i}]"), e.to_string()),
        }
    }
    if file.algorithms.is_empty() {
        issues.push(
            format!("{at}.algorithms"),
            "list at least one algorithm, e.g. [\"RS256\", \"ES256\"]",
        );
    }
    let jwks_uri = file.jwks_uri.as_ref().and_then(|text| match reqwest::Url::parse(text) {
        Ok(url) if is_acceptable_remote_url(&url) => Some(url),
        _ => {
            issues.push(
                format!("{at}.jwks_uri"),
                "must be an https URL (http only for loopback hosts)",
            );
            None
        }
    });
    if !file.discovery && file.jwks_uri.is_none() {
        issues.push(format!("{at}.jwks_uri"), "is required when discovery = false");
    }
    let refresh_min = issues.duration(
        &format!("{at}.jwks_refresh_min"),
        &file.jwks_refresh_min,
        Duration::from_secs(60),
    );
    let refresh_max = issues.duration(
        &format!("{at}.jwks_refresh_max"),
        &file.jwks_refresh_max,
        Duration::from_secs(3600),
    );
    if refresh_min > refresh_max || refresh_min.is_zero() {
        issues.push(
            format!("{at}.jwks_refresh_min"),
            "must be greater than zero and not above jwks_refresh_max",
        );
    }
    let leeway = issues.duration(&format!("{at}.leeway"), &file.leeway, Duration::from_secs(30));
    if leeway > Duration::from_secs(300) {
        issues.push(
            format!("{at}.leeway"),
            "must be at most 5m; a large leeway keeps expired tokens alive",
        );
    }
    let max_response_bytes = issues.size(&format!("{at}.max_response_bytes"), &file.max_response_bytes, 256 << 10);
    let recheck = issues.duration(
        &format!("{at}.unknown_kid_recheck_interval"),
        &file.unknown_kid_recheck_interval,
        Duration::from_secs(1),
    );
    if recheck < Duration::from_millis(100) {
        issues.push(
            format!("{at}.unknown_kid_recheck_interval"),
            "must be at least 100ms: each interval a repeated unknown kid may cost one JWKS fetch",
        );
    }
    let introspection = file
        .introspection
        .as_ref()
        .map(|i| compile_introspection(&format!("{at}.introspection"), i, issues));
    if file.token_validation != TokenValidation::Jwt && file.introspection.is_none() {
        issues.push(
            format!("{at}.token_validation"),
            "\"introspection\" and \"auto\" need an [issuer.introspection] table with client_id and a secret",
        );
    }
    if file.token_validation == TokenValidation::Jwt && file.introspection.is_some() {
        issues.push(
            format!("{at}.introspection"),
            "is unused with token_validation = \"jwt\"; set token_validation = \"introspection\" or \"auto\"",
        );
    }
    IssuerConfig {
        issuer: file.url.clone(),
        audiences: file.audiences.clone(),
        algorithms,
        leeway,
        require_typ: file.require_typ,
        jwks_uri,
        discovery: file.discovery,
        jwks_refresh_min: refresh_min,
        jwks_refresh_max: refresh_max,
        unknown_kid_cooldown: issues.duration(
            &format!("{at}.unknown_kid_cooldown"),
            &file.unknown_kid_cooldown,
            Duration::from_secs(30),
        ),
        unknown_kid_recheck_interval: recheck,
        max_stale: issues.duration(
            &format!("{at}.max_stale"),
            &file.max_stale,
            Duration::from_secs(6 * 3600),
        ),
        fetch_timeout: issues.duration(
            &format!("{at}.fetch_timeout"),
            &file.fetch_timeout,
            Duration::from_secs(5),
        ),
        max_response_bytes: max_response_bytes as usize,
        token_validation: file.token_validation,
        introspection,
    }
}

fn compile_introspection(at: &str, file: &FileIntrospection, issues: &mut Issues) -> IntrospectionConfig {
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
    let client_secret = match (&file.client_secret_file, &file.client_secret_env) {
        (Some(path), None) => match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Secret(text.trim().to_string()),
            Ok(_) => {
                issues.push(format!("{at}.client_secret_file"), format!("{path:?} is empty"));
                Secret(String::new())
            }
            Err(e) => {
                issues.push(format!("{at}.client_secret_file"), format!("cannot read {path:?}: {e}"));
                Secret(String::new())
            }
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Secret(value),
            _ => {
                issues.push(
                    format!("{at}.client_secret_env"),
                    format!("environment variable {var:?} is not set or empty"),
                );
                Secret(String::new())
            }
        },
        _ => {
            issues.push(
                format!("{at}.client_secret_file"),
                "set exactly one of client_secret_file or client_secret_env (secrets are never written inline)",
            );
            Secret(String::new())
        }
    };
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

#[cfg(test)]
mod tests;
