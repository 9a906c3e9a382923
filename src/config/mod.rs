//! The TOML configuration: loose file types (`FileConfig`), compiled into a validated
//! [`Config`] that the rest of the crate trusts. Every problem is reported at once, each with
//! its TOML path, its line and a hint, so one `scopegate check` run shows the whole list.
//!
//! - [`document`] reads the file section by section, so serde's first error hides nothing.
//! - [`problems`] and [`units`]: the leaf every section's compiler reports into. Sections
//!   compile beside their own code ([`crate::policy::file`], [`crate::token::config`],
//!   [`crate::mcp::config`]); this module imports them, never the reverse.

pub mod document;
pub mod problems;
pub mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::canonical::CanonicalOptions;
use crate::hygiene::MethodOverride;
use crate::identity::config::compile_identity;
pub use crate::identity::config::normalize_header_name;
pub use crate::identity::{FileIdentity, IdentityConfig};
use crate::mcp::config::{FileMcp, McpConfig};
use crate::policy::{EnforcementMode, FileRoute, RouteSpec, RouteTable, ScopeImplications};
use crate::token::config::{FileIssuer, FileTokenSettings, TokenConfig};
use document::{Document, Section};
use problems::Issues;
pub use problems::{ConfigError, ConfigIssue};

// ---------------------------------------------------------------------------------------
// File types: strings and options, exactly as written.
// ---------------------------------------------------------------------------------------

/// The whole file. Its sections are read one by one ([`FileConfig::read`]) so that a mistake
/// in one does not hide the others'; every section but `[listener]` and `[upstream]` may be
/// left out.
#[derive(Debug)]
pub struct FileConfig {
    pub listener: FileListener,
    pub admin: FileAdmin,
    pub upstream: FileUpstream,
    pub forwarding: FileForwarding,
    pub auth: FileAuth,
    pub scopes: FileScopes,
    pub log: FileLog,
    /// `[[route]]`
    pub routes: Vec<FileRoute>,
    /// `[[issuer]]`
    pub issuers: Vec<FileIssuer>,
    pub token: FileTokenSettings,
    pub identity: FileIdentity,
    pub reload: FileReload,
    /// MCP resource-server settings (RFC 9728 metadata, audience binding, tool scopes).
    pub mcp: Option<FileMcp>,
}

/// `Default` is an empty, invalid section: only a stand-in while a file whose `[listener]`
/// is missing or unreadable is compiled for its other problems.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub address: String,
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: String,
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: String,
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: String,
    /// Longest pause inside a request body; "0s" turns the limit off.
    #[serde(default = "defaults::request_body_idle_timeout")]
    pub request_body_idle_timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    #[serde(default = "defaults::admin_address")]
    pub address: String,
}

impl Default for FileAdmin {
    fn default() -> Self {
        Self {
            address: defaults::admin_address(),
        }
    }
}

/// `Default` is an empty, invalid section, a stand-in like [`FileListener`]'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub url: String,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "defaults::response_header_timeout")]
    pub response_header_timeout: String,
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout: String,
    #[serde(default = "defaults::pool_max_idle_per_host")]
    pub pool_max_idle_per_host: usize,
    #[serde(default)]
    pub http2_prior_knowledge: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForwarding {
    #[serde(default)]
    pub trust_forwarded_headers: bool,
    #[serde(default)]
    pub add_via: bool,
    #[serde(default)]
    pub forward_authorization: bool,
    /// On by default: `//admin` is routed (and forwarded) as `/admin`, because many
    /// upstreams fold slashes and would otherwise serve a path the route map never saw.
    #[serde(default = "defaults::yes")]
    pub merge_slashes: bool,
    /// Query and form parameters that frameworks read as the method (`_method`): refused.
    #[serde(default = "defaults::method_override_parameters")]
    pub method_override_parameters: Vec<String>,
    /// Largest form-encoded body read to look for those parameters.
    #[serde(default = "defaults::method_override_form_limit")]
    pub method_override_form_limit: String,
}

impl Default for FileForwarding {
    fn default() -> Self {
        Self {
            trust_forwarded_headers: false,
            add_via: false,
            forward_authorization: false,
            merge_slashes: true,
            method_override_parameters: defaults::method_override_parameters(),
            method_override_form_limit: defaults::method_override_form_limit(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    #[serde(default = "defaults::realm")]
    pub realm: String,
    #[serde(default)]
    pub unmatched: UnmatchedPolicy,
    #[serde(default)]
    pub resource_metadata: Option<String>,
    /// `enforce` (default) or `dry_run` for every route without its own `mode`.
    #[serde(default)]
    pub mode: EnforcementMode,
}

impl Default for FileAuth {
    fn default() -> Self {
        Self {
            realm: defaults::realm(),
            unmatched: UnmatchedPolicy::default(),
            resource_metadata: None,
            mode: Default::default(),
        }
    }
}

/// `[reload]`: picking up config changes without a restart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReload {
    /// Poll the config file for changes (SIGHUP always reloads).
    #[serde(default = "defaults::yes")]
    pub watch: bool,
    #[serde(default = "defaults::watch_interval")]
    pub interval: String,
}

impl Default for FileReload {
    fn default() -> Self {
        Self {
            watch: true,
            interval: defaults::watch_interval(),
        }
    }
}

/// What happens to a request that no route matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmatchedPolicy {
    /// 404 without touching the upstream.
    #[default]
    Deny,
    /// Forward when a valid token is presented, whatever its scopes.
    Authenticated,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScopes {
    /// `write = ["read"]`: a token holding `write` also satisfies `read`.
    #[serde(default)]
    pub implies: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

mod defaults {
    pub fn header_read_timeout() -> String {
        "10s".into()
    }
    pub fn max_header_bytes() -> String {
        "32KiB".into()
    }
    pub fn idle_timeout() -> String {
        "60s".into()
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn drain_timeout() -> String {
        "30s".into()
    }
    pub fn request_body_idle_timeout() -> String {
        "60s".into()
    }
    pub fn admin_address() -> String {
        "127.0.0.1:9901".into()
    }
    pub fn connect_timeout() -> String {
        "2s".into()
    }
    pub fn response_header_timeout() -> String {
        "30s".into()
    }
    pub fn pool_idle_timeout() -> String {
        "90s".into()
    }
    pub fn pool_max_idle_per_host() -> usize {
        64
    }
    pub fn realm() -> String {
        "scopegate".into()
    }
    pub fn method_override_parameters() -> Vec<String> {
        vec!["_method".into()]
    }
    pub fn method_override_form_limit() -> String {
        "64KiB".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn watch_interval() -> String {
        "5s".into()
    }
}

// ---------------------------------------------------------------------------------------
// Compiled types: what the running proxy uses.
// ---------------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listener: ListenerConfig,
    pub admin_address: SocketAddr,
    pub upstream: UpstreamConfig,
    pub forwarding: ForwardingConfig,
    pub auth: AuthConfig,
    pub routes: RouteTable,
    pub log: FileLogSettings,
    pub tokens: TokenConfig,
    pub identity: IdentityConfig,
    pub reload: ReloadConfig,
    /// First 12 hex digits of the SHA-256 of the file text: which config is loaded.
    pub source_hash: String,
    pub mcp: McpConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// `None`: request bodies may pause for any time.
    pub request_body_idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Scheme and authority of the upstream; requests keep their own path and query.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub http2_prior_knowledge: bool,
}

#[derive(Debug, Clone)]
pub struct ForwardingConfig {
    pub trust_forwarded_headers: bool,
    pub add_via: bool,
    pub forward_authorization: bool,
    pub canonical: CanonicalOptions,
    pub method_override: MethodOverride,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub realm: String,
    pub unmatched: UnmatchedPolicy,
    pub resource_metadata: Option<String>,
    pub mode: EnforcementMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadConfig {
    pub watch: bool,
    pub interval: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileLogSettings {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
}

impl Config {
    /// Reads and compiles a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Compiles config text; `origin` names it in error messages. Invalid TOML is one
    /// error; otherwise every problem is reported, each with the line it is on.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let document = Document::parse(text, origin)?;
        let mut issues = Issues::default();
        let (file, unread) = FileConfig::read(&document, &mut issues);
        let mut config = file.compile_read(&unread, issues).map_err(|mut issues| {
            issues.locate(|path| document.line_of(path));
            ConfigError::Invalid(issues.into_sorted_vec())
        })?;
        let digest = crate::token::sha256(text.as_bytes());
        config.source_hash = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(config)
    }
}

/// Top-level sections, in the order `config.example.toml` documents them.
const SECTIONS: [&str; 13] = [
    "listener",
    "admin",
    "upstream",
    "forwarding",
    "auth",
    "scopes",
    "log",
    "route",
    "issuer",
    "token",
    "identity",
    "reload",
    "mcp",
];

/// Sections that are in the file but could not be read. Compile steps that read one of
/// them run on stand-ins, and their problems are dropped: those would be about the
/// stand-ins, not about the file.
#[derive(Debug, Default)]
struct Unread(Vec<&'static str>);

impl Unread {
    /// Reads an optional table; left out, it takes its defaults.
    fn table<T: DeserializeOwned + Default>(
        &mut self,
        document: &Document<'_>,
        name: &'static str,
        issues: &mut Issues,
    ) -> T {
        self.settle(name, document.table(name, issues))
    }

    /// Reads an array of tables; left out, it is empty.
    fn array<T: DeserializeOwned>(
        &mut self,
        document: &Document<'_>,
        name: &'static str,
        issues: &mut Issues,
    ) -> Vec<T> {
        self.settle(name, document.array(name, issues))
    }

    /// Reads a table the file must have; `example` is the least it must hold.
    fn required<T: DeserializeOwned + Default>(
        &mut self,
        document: &Document<'_>,
        name: &'static str,
        example: &str,
        issues: &mut Issues,
    ) -> T {
        let section = document.table(name, issues);
        if let Section::Absent = section {
            issues.push(
                name,
                format!("is missing: add a [{name}] table with at least {example}"),
            );
            self.0.push(name);
        }
        self.settle(name, section)
    }

    fn settle<T: Default>(&mut self, name: &'static str, section: Section<T>) -> T {
        match section {
            Section::Read(read) => read,
            Section::Absent => T::default(),
            Section::Unreadable => {
                self.0.push(name);
                T::default()
            }
        }
    }

    /// Runs one compile step that reads `sections`.
    fn step<T>(&self, sections: &[&str], issues: &mut Issues, compile: impl FnOnce(&mut Issues) -> T) -> T {
        if sections.iter().any(|name| self.0.contains(name)) {
            compile(&mut Issues::default())
        } else {
            compile(issues)
        }
    }
}

impl FileConfig {
    /// Reads every section on its own, recording each one's problems.
    fn read(document: &Document<'_>, issues: &mut Issues) -> (FileConfig, Unread) {
        document.check_sections(&SECTIONS, issues);
        let mut unread = Unread::default();
        let file = FileConfig {
            listener: unread.required(document, "listener", "address = \"0.0.0.0:8080\"", issues),
            admin: unread.table(document, "admin", issues),
            upstream: unread.required(document, "upstream", "url = \"http://127.0.0.1:3000\"", issues),
            forwarding: unread.table(document, "forwarding", issues),
            auth: unread.table(document, "auth", issues),
            scopes: unread.table(document, "scopes", issues),
            log: unread.table(document, "log", issues),
            routes: unread.array(document, "route", issues),
            issuers: unread.array(document, "issuer", issues),
            token: unread.table(document, "token", issues),
            identity: unread.table(document, "identity", issues),
            reload: unread.table(document, "reload", issues),
            mcp: unread.table(document, "mcp", issues),
        };
        (file, unread)
    }

    /// Validates everything, reporting every problem at once.
    pub fn compile(self) -> Result<Config, ConfigError> {
        self.compile_read(&Unread::default(), Issues::default())
            .map_err(|issues| ConfigError::Invalid(issues.into_vec()))
    }

    /// Compiles what was read, adding to the problems found while reading.
    fn compile_read(self, unread: &Unread, mut issues: Issues) -> Result<Config, Issues> {
        let issues = &mut issues;
        let listener = unread.step(&["listener"], issues, |issues| compile_listener(&self.listener, issues));
        let admin_address = unread.step(&["admin"], issues, |issues| {
            parse_socket_addr(issues, "admin.address", &self.admin.address)
        });
        unread.step(&["admin", "listener"], issues, |issues| {
            if admin_address == listener.address && admin_address.port() != 0 {
                issues.push(
                    "admin.address",
                    "must differ from listener.address: the admin plane has its own port",
                );
            }
        });
        let upstream = unread.step(&["upstream"], issues, |issues| compile_upstream(&self.upstream, issues));
        let forwarding = ForwardingConfig {
            trust_forwarded_headers: self.forwarding.trust_forwarded_headers,
            add_via: self.forwarding.add_via,
            forward_authorization: self.forwarding.forward_authorization,
            canonical: CanonicalOptions {
                merge_slashes: self.forwarding.merge_slashes,
            },
            method_override: unread.step(&["forwarding"], issues, |issues| {
                MethodOverride::compile(
                    &self.forwarding.method_override_parameters,
                    &self.forwarding.method_override_form_limit,
                    issues,
                )
            }),
        };
        let auth = unread.step(&["auth"], issues, |issues| compile_auth(self.auth, issues));
        let implications = unread.step(&["scopes"], issues, |issues| {
            ScopeImplications::compile(&self.scopes.implies, issues)
        });
        let mcp = unread.step(&["mcp", "route", "issuer"], issues, |issues| {
            McpConfig::compile(self.mcp.as_ref(), &self.routes, &self.issuers, issues)
        });
        let mut tokens = unread.step(&["issuer", "token"], issues, |issues| {
            TokenConfig::compile(&self.issuers, &self.token, issues)
        });
        tokens.retained_claims = self.identity.claims.keys().cloned().collect();
        let routes = unread.step(&["route"], issues, |issues| {
            let specs: Vec<RouteSpec> = self
                .routes
                .into_iter()
                .enumerate()
                .filter_map(|(index, route)| RouteSpec::compile(index, route, issues))
                .collect();
            RouteTable::new(specs, implications, issues)
        });
        unread.step(&["route", "issuer"], issues, |issues| {
            if !routes.all_public() && tokens.issuers.is_empty() {
                issues.push(
                    "issuer",
                    "protected routes need at least one [[issuer]] to validate tokens against",
                );
            }
        });
        let identity = unread.step(&["identity"], issues, |issues| compile_identity(self.identity, issues));
        let reload = unread.step(&["reload"], issues, |issues| {
            let interval = issues.duration("reload.interval", &self.reload.interval, Duration::from_secs(5));
            if interval < Duration::from_millis(100) {
                issues.push("reload.interval", "must be at least 100ms");
            }
            ReloadConfig {
                watch: self.reload.watch,
                interval,
            }
        });
        if !issues.is_empty() {
            return Err(std::mem::take(issues));
        }
        Ok(Config {
            listener,
            admin_address,
            upstream,
            forwarding,
            auth,
            routes,
            log: FileLogSettings {
                level: self.log.level,
                format: self.log.format,
            },
            tokens,
            identity,
            reload,
            source_hash: String::new(),
            mcp,
        })
    }
}

fn parse_socket_addr(issues: &mut Issues, path: &str, text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|_| {
        issues.push(
            path,
            format!("{text:?} is not an IP:port address, e.g. \"127.0.0.1:8080\" or \"[::]:8080\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn compile_listener(file: &FileListener, issues: &mut Issues) -> ListenerConfig {
    let max_header_bytes = issues.size("listener.max_header_bytes", &file.max_header_bytes, 32 << 10);
    if !(1024..=1 << 20).contains(&max_header_bytes) {
        issues.push("listener.max_header_bytes", "must be between 1KiB and 1MiB");
    }
    if file.max_connections == 0 {
        issues.push("listener.max_connections", "must be at least 1");
    }
    let header_read_timeout = issues.duration(
        "listener.header_read_timeout",
        &file.header_read_timeout,
        Duration::from_secs(10),
    );
    if header_read_timeout.is_zero() {
        issues.push(
            "listener.header_read_timeout",
            "must be greater than zero: without it a client can hold a connection open by sending headers slowly",
        );
    }
    ListenerConfig {
        address: parse_socket_addr(issues, "listener.address", &file.address),
        header_read_timeout,
        max_header_bytes: max_header_bytes as usize,
        idle_timeout: match issues.duration("listener.idle_timeout", &file.idle_timeout, Duration::from_secs(60)) {
            idle if idle.is_zero() => {
                issues.push("listener.idle_timeout", "must be greater than zero");
                Duration::from_secs(60)
            }
            idle => idle,
        },
        max_connections: file.max_connections.max(1),
        drain_timeout: issues.duration("listener.drain_timeout", &file.drain_timeout, Duration::from_secs(30)),
        request_body_idle_timeout: Some(issues.duration(
            "listener.request_body_idle_timeout",
            &file.request_body_idle_timeout,
            Duration::from_secs(60),
        ))
        .filter(|idle| !idle.is_zero()),
    }
}

fn compile_upstream(file: &FileUpstream, issues: &mut Issues) -> UpstreamConfig {
    let (scheme, authority) = match file.url.parse::<Uri>() {
        Ok(uri) => match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) if scheme == &http::uri::Scheme::HTTP => {
                if uri.path() != "/" && !uri.path().is_empty() {
                    issues.push(
                        "upstream.url",
                        "must not have a path: requests are forwarded with their own path",
                    );
                }
                (scheme.clone(), authority.clone())
            }
            (Some(_), Some(authority)) => {
                issues.push(
                    "upstream.url",
                    "only http:// upstreams are supported (the upstream is the pod's own container on localhost)",
                );
                (http::uri::Scheme::HTTP, authority.clone())
            }
            _ => {
                issues.push("upstream.url", "must be an absolute URL like \"http://127.0.0.1:3000\"");
                (http::uri::Scheme::HTTP, http::uri::Authority::from_static("127.0.0.1"))
            }
        },
        Err(e) => {
            issues.push("upstream.url", format!("{:?} is not a URL: {e}", file.url));
            (http::uri::Scheme::HTTP, http::uri::Authority::from_static("127.0.0.1"))
        }
    };
    UpstreamConfig {
        scheme,
        authority,
        connect_timeout: issues.duration(
            "upstream.connect_timeout",
            &file.connect_timeout,
            Duration::from_secs(2),
        ),
        response_header_timeout: issues.duration(
            "upstream.response_header_timeout",
            &file.response_header_timeout,
            Duration::from_secs(30),
        ),
        pool_idle_timeout: issues.duration(
            "upstream.pool_idle_timeout",
            &file.pool_idle_timeout,
            Duration::from_secs(90),
        ),
        pool_max_idle_per_host: file.pool_max_idle_per_host,
        http2_prior_knowledge: file.http2_prior_knowledge,
    }
}

fn compile_auth(file: FileAuth, issues: &mut Issues) -> AuthConfig {
    // RFC 6750 §3: auth-param values are quoted-strings; keep them to printable ASCII
    // without quotes or backslashes so no escaping is ever needed.
    let quotable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if !quotable(&file.realm) {
        issues.push("auth.realm", "must be printable ASCII without '\"' or '\\'");
    }
    if let Some(url) = &file.resource_metadata {
        let ok = url
            .parse::<Uri>()
            .is_ok_and(|u| u.scheme().is_some() && u.authority().is_some());
        if !ok || !quotable(url) {
            issues.push(
                "auth.resource_metadata",
                "must be an absolute URL of the protected-resource metadata (RFC 9728), e.g. \"https://api.example.com/.well-known/oauth-protected-resource\"",
            );
        }
    }
    AuthConfig {
        realm: file.realm,
        unmatched: file.unmatched,
        resource_metadata: file.resource_metadata,
        mode: file.mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_compiles() {
        let text = include_str!("../../config.example.toml");
        let config = Config::from_toml(text, "config.example.toml").expect("config.example.toml must compile");
        assert!(config.routes.len() >= 3);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = r#"
            [listener]
            address = "not-an-address"
            header_read_timeout = "10"
            [upstream]
            url = "http://127.0.0.1:3000"
            [[route]]
            name = "x"
            path = "/a"
            scopes = ["read data"]
        "#;
        let Err(ConfigError::Invalid(issues)) = Config::from_toml(text, "t.toml") else {
            panic!("expected validation errors");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"listener.address"), "{issues:?}");
        assert!(paths.contains(&"listener.header_read_timeout"), "{issues:?}");
        assert!(paths.contains(&"route[0].scopes[0]"), "{issues:?}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = "[listener]\naddress = \"127.0.0.1:0\"\nadress = 1\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
        let err = Config::from_toml(text, "t.toml").expect_err("typo must be rejected");
        assert!(err.to_string().contains("adress"), "{err}");
    }
}
