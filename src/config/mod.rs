// Long file: the one place every section is read and compiled, in order; each section's own rules live beside its code.
//! The TOML configuration: loose file types (`FileConfig`), compiled into a validated
//! [`Config`] that the rest of the crate trusts. Every problem is reported at once, each with
//! its TOML path, its line and a hint, so one `scopegate check` run shows the whole list.
//!
//! - [`document`] reads the file section by section, so serde's first error hides nothing.
//! - [`problems`] and [`units`]: the leaf every section's compiler reports into. Sections
//!   compile beside their own code ([`crate::policy::file`], [`crate::token::config`],
//!   [`crate::mcp::config`], [`crate::resource::config`]); this module imports them, never
//!   the reverse.
//! - [`network`]: `[listener]`, `[admin]` and `[upstream]`, the sections that bound
//!   connections, streams and upstream requests; `[forward_auth]` compiles in
//!   [`crate::forward_auth::config`].

mod advertise;
pub mod document;
pub mod network;
pub mod problems;
pub mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::canonical::CanonicalOptions;
use crate::cors::{CorsConfig, FileCors};
use crate::fleet::config::{FileFleet, FileSsf, FleetConfig, SsfConfig, compile_fleet, compile_ssf};
use crate::forward_auth::config::{FileForwardAuth, ForwardAuthConfig, compile_forward_auth};
use crate::hygiene::MethodOverride;
use crate::identity::config::compile_identity;
pub use crate::identity::config::normalize_header_name;
pub use crate::identity::{FileIdentity, IdentityConfig};
use crate::mcp::config::{FileMcp, McpConfig};
use crate::policy::{EnforcementMode, FileRoute, RouteSpec, RouteTable, ScopeImplications};
use crate::resource::{FileResource, ResourceConfig};
use crate::token::config::sender::{CertBindingConfig, DpopConfig, FileCertBinding, FileDpop};
use crate::token::config::{FileIssuer, FileTokenSettings, TokenConfig};
use document::{Document, Unread};
pub use network::{AdminConfig, FileAdmin, FileListener, FileUpstream, ListenerConfig, UpstreamConfig};
use network::{compile_admin, compile_listener, compile_upstream, parse_socket_addr};
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
    /// `[[resource]]`: RFC 9728 metadata for the API's other routes.
    pub resources: Vec<FileResource>,
    /// Browser preflights and CORS headers on scopegate's own refusals.
    pub cors: FileCors,
    /// The forward-auth listener, for an ingress that asks instead of proxying through.
    pub forward_auth: Option<FileForwardAuth>,
    /// `[dpop]`: DPoP-bound tokens (RFC 9449).
    pub dpop: FileDpop,
    /// `[cert_binding]`: certificate-bound tokens behind a TLS-terminating proxy (RFC 8705).
    pub cert_binding: FileCertBinding,
    /// The Redis every sidecar of a fleet shares.
    pub fleet: Option<FileFleet>,
    /// The Shared Signals transmitter whose events are accepted.
    pub ssf: Option<FileSsf>,
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
    /// `[[resource]]`: the protected-resource metadata of non-MCP routes.
    pub resources: ResourceConfig,
    pub cors: CorsConfig,
    /// `None`: no forward-auth listener.
    pub forward_auth: Option<ForwardAuthConfig>,
    pub fleet: Option<FleetConfig>,
    pub ssf: Option<SsfConfig>,
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
const SECTIONS: [&str; 20] = [
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
    "resource",
    "cors",
    "forward_auth",
    "dpop",
    "cert_binding",
    "fleet",
    "ssf",
];

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
            resources: unread.array(document, "resource", issues),
            cors: unread.table(document, "cors", issues),
            forward_auth: unread.table(document, "forward_auth", issues),
            dpop: unread.table(document, "dpop", issues),
            cert_binding: unread.table(document, "cert_binding", issues),
            fleet: unread.table(document, "fleet", issues),
            ssf: unread.table(document, "ssf", issues),
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
            method_override: unread.step(&["forwarding"], issues, |issues| {
                MethodOverride::compile(
                    &self.forwarding.method_override_parameters,
                    &self.forwarding.method_override_form_limit,
                    issues,
                )
            }),
        };
        let global_metadata = self.auth.resource_metadata.is_some();
        let auth = unread.step(&["auth"], issues, |issues| compile_auth(self.auth, issues));
        let implications = unread.step(&["scopes"], issues, |issues| {
            ScopeImplications::compile(&self.scopes.implies, issues)
        });
        let mcp = unread.step(&["mcp", "route", "issuer"], issues, |issues| {
            McpConfig::compile(self.mcp.as_ref(), &self.routes, &self.issuers, issues)
        });
        let resources = unread.step(&["resource", "route", "issuer", "mcp", "auth"], issues, |issues| {
            ResourceConfig::compile(
                &self.resources,
                &self.routes,
                &self.issuers,
                &mcp.documents,
                global_metadata,
                issues,
            )
        });
        let mut tokens = unread.step(&["issuer", "token"], issues, |issues| {
            TokenConfig::compile(&self.issuers, &self.token, issues)
        });
        let cors = unread.step(&["cors"], issues, |issues| CorsConfig::compile(&self.cors, issues));
        tokens.dpop = unread.step(&["dpop"], issues, |issues| DpopConfig::compile(&self.dpop, issues));
        tokens.cert_binding = unread.step(&["cert_binding"], issues, |issues| {
            CertBindingConfig::compile(&self.cert_binding, issues)
        });
        let mut routes = unread.step(&["route"], issues, |issues| {
            let specs: Vec<RouteSpec> = self
                .routes
                .into_iter()
                .enumerate()
                .filter_map(|(index, route)| RouteSpec::compile(index, route, issues))
                .collect();
            RouteTable::new(specs, implications, issues)
        });
        routes.set_bypass_preflight(cors.bypass_preflight);
        // A cached principal keeps only the claims something reads: identity mappings and
        // claim rules. 100,000 cached tokens must not each hold a whole payload.
        let mut retained: std::collections::BTreeSet<String> = self.identity.claims.keys().cloned().collect();
        retained.extend(
            routes
                .iter()
                .flat_map(|r| r.claim_rules.iter().map(|rule| rule.claim.clone())),
        );
        tokens.retained_claims = retained.into_iter().collect();
        unread.step(&["route", "issuer"], issues, |issues| {
            if !routes.all_public() && tokens.issuers.is_empty() {
                issues.push(
                    "issuer",
                    "protected routes need at least one [[issuer]] to validate tokens against",
                );
            }
        });
        let identity = unread.step(&["identity", "forwarding"], issues, |issues| {
            compile_identity(self.identity, forwarding.forward_authorization, issues)
        });
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
        let forward_auth = unread.step(&["forward_auth", "listener", "admin"], issues, |issues| {
            let forward_auth = compile_forward_auth(self.forward_auth.as_ref(), issues);
            let taken = [listener.address, admin_address];
            if let Some(listen) = forward_auth.as_ref().map(|f| f.listen)
                && listen.port() != 0
                && taken.contains(&listen)
            {
                issues.push(
                    "forward_auth.listen",
                    "must differ from listener.address and admin.address: forward-auth has its own port",
                );
            }
            forward_auth
        });
        let fleet = unread.step(&["fleet", "admin"], issues, |issues| {
            self.fleet
                .as_ref()
                .map(|fleet| compile_fleet(fleet, admin.token.is_some(), issues))
        });
        let ssf = unread.step(&["ssf"], issues, |issues| {
            self.ssf.as_ref().map(|ssf| compile_ssf(ssf, issues))
        });
        if !issues.is_empty() {
            return Err(std::mem::take(issues));
        }
        let (mut mcp, mut resources) = (mcp, resources);
        advertise::advertise_dpop(&routes, &tokens.dpop, &mut mcp, &mut resources);
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
            resources,
            cors,
            forward_auth,
            fleet,
            ssf,
        })
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
mod tests;
