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
use crate::mcp::config::{FileMcp, McpConfig};
use crate::policy::{EnforcementMode, FileRoute, RouteSpec, RouteTable, ScopeImplications};
use crate::token::config::{FileIssuer, FileTokenSettings, TokenConfig};
use crate::token::revocation::RevocationLimits;
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
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients.
    #[serde(default = "defaults::http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Longest time a response may wait for the client to take its next bytes; "0s" turns
    /// the limit off.
    #[serde(default = "defaults::response_progress_timeout")]
    pub response_progress_timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    #[serde(default = "defaults::admin_address")]
    pub address: String,
    #[serde(default = "defaults::admin_max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::admin_header_read_timeout")]
    pub header_read_timeout: String,
    #[serde(default = "defaults::admin_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "defaults::revocation_max_entries")]
    pub revocation_max_entries: usize,
    #[serde(default = "defaults::revocation_max_ttl")]
    pub revocation_max_ttl: String,
}

impl Default for FileAdmin {
    fn default() -> Self {
        Self {
            address: defaults::admin_address(),
            max_connections: defaults::admin_max_connections(),
            header_read_timeout: defaults::admin_header_read_timeout(),
            idle_timeout: defaults::admin_idle_timeout(),
            revocation_max_entries: defaults::revocation_max_entries(),
            revocation_max_ttl: defaults::revocation_max_ttl(),
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
    /// Requests in flight to the upstream at once, over all client connections.
    #[serde(default = "defaults::upstream_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
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
}

impl Default for FileForwarding {
    fn default() -> Self {
        Self {
            trust_forwarded_headers: false,
            add_via: false,
            forward_authorization: false,
            merge_slashes: true,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIdentity {
    #[serde(default = "defaults::identity_prefix")]
    pub prefix: String,
    /// Extra claim → header mappings, e.g. `email = "x-auth-email"`.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

impl Default for FileIdentity {
    fn default() -> Self {
        Self {
            prefix: defaults::identity_prefix(),
            claims: BTreeMap::new(),
        }
    }
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
    /// Well below hyper's 200: every stream may hold an upstream request, so this is what
    /// one connection can ask of the upstream at once; browsers open at most about 6–10
    /// concurrent requests per origin, and API clients rarely more than a few dozen.
    pub fn http2_max_concurrent_streams() -> u32 {
        64
    }
    pub fn response_progress_timeout() -> String {
        "30s".into()
    }
    pub fn admin_address() -> String {
        "127.0.0.1:9901".into()
    }
    pub fn admin_max_connections() -> usize {
        16
    }
    pub fn admin_header_read_timeout() -> String {
        "5s".into()
    }
    pub fn admin_idle_timeout() -> String {
        "30s".into()
    }
    pub fn revocation_max_entries() -> usize {
        100_000
    }
    pub fn revocation_max_ttl() -> String {
        "24h".into()
    }
    pub fn upstream_max_concurrent_requests() -> usize {
        1024
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
    pub fn identity_prefix() -> String {
        "x-auth-".into()
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
    pub admin: AdminConfig,
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
    pub http2_max_concurrent_streams: u32,
    /// `None`: a response may wait for the client for any time.
    pub response_progress_timeout: Option<Duration>,
}

/// Limits of the admin listener (its address is [`Config::admin_address`]) and of the
/// revocations it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub revocations: RevocationLimits,
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
    pub max_concurrent_requests: usize,
}

#[derive(Debug, Clone)]
pub struct ForwardingConfig {
    pub trust_forwarded_headers: bool,
    pub add_via: bool,
    pub forward_authorization: bool,
    pub canonical: CanonicalOptions,
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

/// Identity headers set for the upstream.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Lower-case, with `_` folded to `-`: every inbound header with this prefix is removed.
    pub prefix: String,
    pub claims: Vec<(String, http::HeaderName)>,
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
        let admin = unread.step(&["admin"], issues, |issues| compile_admin(&self.admin, issues));
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
            admin,
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
        http2_max_concurrent_streams: match file.http2_max_concurrent_streams {
            0 => {
                issues.push(
                    "listener.http2_max_concurrent_streams",
                    "must be at least 1 (RFC 9113 §6.5.2: 0 would refuse every HTTP/2 request)",
                );
                1
            }
            streams => streams,
        },
        response_progress_timeout: Some(issues.duration(
            "listener.response_progress_timeout",
            &file.response_progress_timeout,
            Duration::from_secs(30),
        ))
        .filter(|timeout| !timeout.is_zero()),
    }
}

fn compile_admin(file: &FileAdmin, issues: &mut Issues) -> AdminConfig {
    if !(1..=1024).contains(&file.max_connections) {
        issues.push(
            "admin.max_connections",
            "must be between 1 and 1024: the admin plane must not take the data plane's descriptors",
        );
    }
    let mut positive = |path: &str, text: &str, fallback: Duration| match issues.duration(path, text, fallback) {
        timeout if timeout.is_zero() => {
            issues.push(path, "must be greater than zero");
            fallback
        }
        timeout => timeout,
    };
    let header_read_timeout = positive(
        "admin.header_read_timeout",
        &file.header_read_timeout,
        Duration::from_secs(5),
    );
    let idle_timeout = positive("admin.idle_timeout", &file.idle_timeout, Duration::from_secs(30));
    let max_ttl = positive(
        "admin.revocation_max_ttl",
        &file.revocation_max_ttl,
        Duration::from_secs(86_400),
    );
    if file.revocation_max_entries == 0 {
        issues.push(
            "admin.revocation_max_entries",
            "must be at least 1, or every POST /cache/evict is refused",
        );
    }
    AdminConfig {
        max_connections: file.max_connections.clamp(1, 1024),
        header_read_timeout,
        idle_timeout,
        revocations: RevocationLimits {
            max_entries: file.revocation_max_entries.max(1),
            max_ttl,
        },
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
        max_concurrent_requests: match file.max_concurrent_requests {
            0 => {
                issues.push(
                    "upstream.max_concurrent_requests",
                    "must be at least 1, or no request could reach the upstream",
                );
                1
            }
            requests => requests,
        },
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

fn compile_identity(file: FileIdentity, issues: &mut Issues) -> IdentityConfig {
    let prefix = file.prefix.to_ascii_lowercase().replace('_', "-");
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
    IdentityConfig { prefix, claims }
}

/// Lower-cases a header name and folds `_` to `-`: some servers treat `X_Auth_Sub` as
/// `X-Auth-Sub`, so a client must not be able to smuggle one past the prefix check.
pub fn normalize_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
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
