//! `[[issuer]]` and `[token]` config sections, compiled into [`TokenConfig`].

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::problems::Issues;
use crate::http_client::is_acceptable_remote_url;
use crate::tls::TrustBundle;
use crate::tls::config::compile_ca_file;
use crate::token::jwk::Algorithm;

mod introspection;
pub mod sender;
mod token_shape;
use introspection::compile_introspection;
pub use introspection::{
    ClientAuthMethod, FileIntrospection, IntrospectionConfig, Secret, read_optional_secret, read_secret,
};
use sender::{CertBindingConfig, DpopConfig};
use token_shape::{compile_accepted_typ, compile_scope_claims, typ_caution};

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
    /// RFC 9068 §2.1: require `typ: at+jwt`, so an ID token is never taken as an access token
    /// (default true; false accepts any `typ`). Shorthand for `accepted_typ`; not both.
    #[serde(default)]
    pub require_typ: Option<bool>,
    /// The `typ` headers accepted, compared as media types, e.g. `["at+jwt", "JWT"]` for
    /// providers that sign access tokens as plain `JWT`.
    #[serde(default)]
    pub accepted_typ: Option<Vec<String>>,
    /// The claims scopes are read from: `scope` (a space-delimited string), or any other
    /// claim holding such a string or an array of strings (`scp`, `roles`, `permissions`).
    #[serde(default = "defaults::scope_claims")]
    pub scope_claims: Vec<String>,
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
    /// PEM bundle of CAs trusted for this issuer's discovery, JWKS and introspection calls,
    /// besides the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
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
    pub fn scope_claims() -> Vec<String> {
        crate::token::jws::DEFAULT_SCOPE_CLAIMS.map(str::to_owned).to_vec()
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
}

/// One trusted authorization server.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// Accepted `typ` headers (media types); empty: any, or none.
    pub accepted_typ: Vec<String>,
    /// Claims scopes are read from, in order.
    pub scope_claims: Vec<String>,
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
    /// `ca_file` as written, and the extra CAs it holds.
    pub ca_file: Option<String>,
    pub extra_roots: Option<TrustBundle>,
}

impl IssuerConfig {
    /// A note for `check` when this issuer accepts tokens other than `at+jwt`: its ID tokens
    /// are then kept out by the audience alone.
    pub fn typ_caution(&self) -> Option<String> {
        typ_caution(&self.accepted_typ)
    }
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
    /// `[dpop]`: how DPoP proofs are checked.
    pub dpop: DpopConfig,
    /// `[cert_binding]`: where a certificate-bound token's client certificate comes from.
    pub cert_binding: CertBindingConfig,
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
            dpop: DpopConfig::default(),
            cert_binding: CertBindingConfig::default(),
        }
    }
}

/// `<at>.algorithms`: names of allowed JWS algorithms, at least one.
pub fn compile_algorithms(at: &str, names: &[String], issues: &mut Issues) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Algorithm::from_str(name) {
            Ok(alg) => algorithms.push(alg),
            Err(e) => issues.push(format!("{at}.algorithms[{i}]"), e.to_string()),
        }
    }
    if names.is_empty() {
        issues.push(
            format!("{at}.algorithms"),
            "list at least one algorithm, e.g. [\"RS256\", \"ES256\"]",
        );
    }
    algorithms
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
    let algorithms = compile_algorithms(at, &file.algorithms, issues);
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
        accepted_typ: compile_accepted_typ(at, file.require_typ, file.accepted_typ.as_deref(), issues),
        scope_claims: compile_scope_claims(at, &file.scope_claims, issues),
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
        ca_file: file.ca_file.clone(),
        extra_roots: compile_ca_file(&format!("{at}.ca_file"), file.ca_file.as_deref(), issues),
    }
}

#[cfg(test)]
mod tests;
