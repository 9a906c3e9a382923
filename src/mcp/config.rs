//! `[mcp]` and the MCP parts of `[[route]]` as written, compiled into [`McpConfig`]: the
//! RFC 9728 documents, each MCP route's resource and tool rules, and the metadata mirror.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::rules::{FileMcpRule, Glob, McpRule, URI_METHODS};
use super::uri;
use crate::config::problems::Issues;
use crate::config::units::{parse_duration, parse_size};
use crate::policy::file::FileRoute;
use crate::policy::scopes::Scope;
use crate::resource::DocumentFields;
use crate::resource::config::{advertised_servers, check_resource_uri, route_scopes};
pub use crate::resource::{PRM_PATH, ResourceDocument};
use crate::token::config::FileIssuer;

/// Never advertised or required on MCP routes: refresh-token issuance is the client's and
/// the authorization server's business, not a resource's (MCP authorization, scope guidance).
const OFFLINE_ACCESS: &str = "offline_access";

/// The `[mcp]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMcp {
    /// Canonical resource URI of the MCP server (RFC 8707 / RFC 9728 `resource`).
    pub resource: String,
    /// Human-readable name for the metadata document.
    pub resource_name: String,
    #[serde(default)]
    pub resource_documentation: Option<String>,
    #[serde(default)]
    pub resource_policy_uri: Option<String>,
    /// Issuers advertised as `authorization_servers`; default every `[[issuer]]`.
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
    /// Largest JSON-RPC body buffered on routes with `mcp_rule`s (413 above it).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: String,
    /// Time allowed to receive such a body.
    #[serde(default = "defaults::body_read_timeout")]
    pub body_read_timeout: String,
    /// Also answer `/.well-known/oauth-authorization-server` with the issuer's metadata.
    #[serde(default)]
    pub mirror_authorization_server_metadata: bool,
}

mod defaults {
    pub fn max_body_bytes() -> String {
        "1MiB".into()
    }
    pub fn body_read_timeout() -> String {
        "10s".into()
    }
}

/// What an `mcp = true` route adds to its route spec.
#[derive(Debug, Clone)]
pub struct McpRoute {
    pub resource: String,
    pub metadata_url: String,
    pub rules: Vec<McpRule>,
}

/// Where the authorization-server metadata mirror fetches from.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub issuer: String,
    pub fetch_timeout: Duration,
    pub max_response_bytes: usize,
    /// The issuer's `ca_file` (its problems are reported under `[[issuer]]`).
    pub extra_roots: Option<crate::tls::TrustBundle>,
}

/// Compiled MCP settings; `Default` is "no `[mcp]` table".
#[derive(Debug, Clone, Default)]
pub struct McpConfig {
    /// The document for `[mcp].resource` comes first (it is also served at the root form).
    pub documents: Vec<ResourceDocument>,
    /// By route name.
    pub routes: BTreeMap<String, McpRoute>,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub mirror: Option<MirrorConfig>,
}

impl McpConfig {
    /// Compiles `[mcp]` and the MCP parts of `[[route]]`s. Reads the routes and issuers as
    /// written (their own validation reports their own keys).
    pub fn compile(
        file: Option<&FileMcp>,
        routes: &[FileRoute],
        issuers: &[FileIssuer],
        issues: &mut Issues,
    ) -> McpConfig {
        let mcp_routes: Vec<(usize, &FileRoute)> = routes.iter().enumerate().filter(|(_, r)| r.mcp).collect();
        for (index, route) in routes.iter().enumerate() {
            if !route.mcp && (!route.mcp_rules.is_empty() || route.mcp_resource.is_some()) {
                issues.push(
                    format!("route[{index}].mcp"),
                    "mcp_rule and mcp_resource apply only to routes with mcp = true",
                );
            }
        }
        let Some(file) = file else {
            if let Some((index, _)) = mcp_routes.first() {
                issues.push(
                    format!("route[{index}].mcp"),
                    "MCP routes need an [mcp] table with at least resource and resource_name",
                );
            }
            return McpConfig::default();
        };
        if mcp_routes.is_empty() {
            issues.push("mcp", "no [[route]] has mcp = true; mark the MCP endpoint's route");
        }
        let check_resource = |issues: &mut Issues, at: &str, text: &str| {
            check_resource_uri(issues, at, text, "https://mcp.example.com/mcp")
        };
        for (key, value) in [
            ("mcp.resource_documentation", &file.resource_documentation),
            ("mcp.resource_policy_uri", &file.resource_policy_uri),
        ] {
            if let Some(text) = value
                && url::Url::parse(text).map_or(true, |u| !matches!(u.scheme(), "https" | "http"))
            {
                issues.push(key, format!("{text:?} must be an absolute http(s) URL"));
            }
        }
        if file.resource_name.trim().is_empty() {
            issues.push("mcp.resource_name", "must not be empty");
        }
        let advertised = advertised_servers(
            issues,
            "mcp.authorization_servers",
            file.authorization_servers.as_deref(),
            issuers,
        );
        let max_body_bytes = issues.size("mcp.max_body_bytes", &file.max_body_bytes, 1 << 20);
        if !(1024..=64 << 20).contains(&max_body_bytes) {
            issues.push("mcp.max_body_bytes", "must be between 1KiB and 64MiB");
        }
        let body_read_timeout = issues.duration(
            "mcp.body_read_timeout",
            &file.body_read_timeout,
            Duration::from_secs(10),
        );
        if body_read_timeout.is_zero() {
            issues.push("mcp.body_read_timeout", "must be greater than zero");
        }

        let default_resource = check_resource(issues, "mcp.resource", &file.resource);
        // Route name → (resource, rules, every scope it may ask for).
        let mut compiled_routes = BTreeMap::new();
        let mut scopes_by_resource: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        scopes_by_resource.insert(file.resource.clone(), BTreeSet::new());
        for (index, route) in &mcp_routes {
            let at = format!("route[{index}]");
            if route.public {
                issues.push(
                    format!("{at}.public"),
                    "an MCP route cannot be public: MCP authorization needs the 401 challenge",
                );
            }
            if route.allow_upgrade && !route.mcp_rules.is_empty() {
                // After a protocol switch the connection's bytes are spliced, never parsed:
                // a tools/call sent over it would pass the rules unseen.
                issues.push(
                    format!("{at}.allow_upgrade"),
                    "a route with mcp_rule cannot allow upgrades: calls sent after a protocol switch are never inspected",
                );
            }
            let resource = match &route.mcp_resource {
                Some(text) => check_resource(issues, &format!("{at}.mcp_resource"), text).map(|_| text.clone()),
                None => default_resource.as_ref().map(|_| file.resource.clone()),
            };
            let mut route_scopes: BTreeSet<String> = route_scopes(route).collect();
            for scope in &route_scopes {
                if scope == OFFLINE_ACCESS {
                    issues.push(
                        format!("{at}.scopes"),
                        "offline_access is never required or advertised by an MCP resource",
                    );
                }
            }
            let mut rules = Vec::new();
            for (i, rule) in route.mcp_rules.iter().enumerate() {
                if let Some(compiled) = compile_rule(&format!("{at}.mcp_rule[{i}]"), rule, issues) {
                    route_scopes.extend(compiled.scopes.iter().map(|s| s.to_string()));
                    rules.push(compiled);
                }
            }
            if let Some(resource) = resource {
                scopes_by_resource
                    .entry(resource.clone())
                    .or_default()
                    .extend(route_scopes);
                compiled_routes.insert(route.name.clone(), (resource, rules));
            }
        }

        // Every advertised issuer must accept tokens minted for each resource.
        for (index, issuer) in issuers.iter().enumerate() {
            if !advertised.contains(&issuer.url) {
                continue;
            }
            for resource in scopes_by_resource.keys() {
                if !issuer.audiences.contains(resource) {
                    issues.push(
                        format!("issuer[{index}].audiences"),
                        format!(
                            "must include the MCP resource {resource:?}: MCP clients request tokens for it (RFC 8707) and tokens are checked against these audiences"
                        ),
                    );
                }
            }
        }

        let mut documents = Vec::new();
        let mut resources: Vec<&String> = vec![&file.resource];
        resources.extend(scopes_by_resource.keys().filter(|r| **r != file.resource));
        for resource in resources {
            let Ok(url) = url::Url::parse(resource) else {
                continue;
            };
            let scopes = scopes_by_resource.get(resource).cloned().unwrap_or_default();
            let document = ResourceDocument::new(
                resource,
                &url,
                protected_resource_document(file, resource, &advertised, &scopes),
            );
            if let Some(other) = documents
                .iter()
                .find(|d: &&ResourceDocument| d.well_known_path == document.well_known_path)
            {
                issues.push(
                    "mcp.resource",
                    format!(
                        "resources {:?} and {resource:?} would share the metadata path {}",
                        other.resource, document.well_known_path
                    ),
                );
                continue;
            }
            documents.push(document);
        }
        let routes = compiled_routes
            .into_iter()
            .filter_map(|(name, (resource, rules))| {
                let doc = documents.iter().find(|d| d.resource == resource)?;
                Some((
                    name,
                    McpRoute {
                        resource,
                        metadata_url: doc.metadata_url.clone(),
                        rules,
                    },
                ))
            })
            .collect();
        let mirror = file.mirror_authorization_server_metadata.then(|| {
            let first = advertised.first().cloned().unwrap_or_default();
            let issuer = issuers.iter().find(|i| i.url == first);
            MirrorConfig {
                issuer: first,
                fetch_timeout: issuer
                    .and_then(|i| parse_duration(&i.fetch_timeout).ok())
                    .unwrap_or(Duration::from_secs(5)),
                max_response_bytes: issuer
                    .and_then(|i| parse_size(&i.max_response_bytes).ok())
                    .unwrap_or(256 << 10) as usize,
                extra_roots: issuer
                    .and_then(|i| i.ca_file.as_deref())
                    .and_then(|path| crate::tls::TrustBundle::load(std::path::Path::new(path)).ok()),
            }
        });
        McpConfig {
            documents,
            routes,
            max_body_bytes: max_body_bytes as usize,
            body_read_timeout,
            mirror,
        }
    }
}

fn compile_rule(at: &str, file: &FileMcpRule, issues: &mut Issues) -> Option<McpRule> {
    let before = issues.count();
    if file.method.is_empty() {
        issues.push(format!("{at}.method"), "must not be empty (use \"*\" for every method)");
    }
    if file.name.as_deref() == Some("") {
        issues.push(format!("{at}.name"), "must not be empty (omit it for any name)");
    }
    if file.scopes.is_empty() {
        issues.push(
            format!("{at}.scopes"),
            "list at least one scope; a rule without scopes does nothing",
        );
    }
    if let Some(name) = &file.name {
        check_resource_name(&format!("{at}.name"), &file.method, name, issues);
    }
    let mut scopes = Vec::new();
    for (i, name) in file.scopes.iter().enumerate() {
        match Scope::parse(name) {
            Ok(_) if name == OFFLINE_ACCESS => issues.push(
                format!("{at}.scopes[{i}]"),
                "offline_access is never required or advertised by an MCP resource",
            ),
            Ok(scope) => scopes.push(scope),
            Err(e) => issues.push(format!("{at}.scopes[{i}]"), e),
        }
    }
    (issues.count() == before).then(|| McpRule {
        method: Glob::new(&file.method),
        name: file.name.as_deref().map(Glob::new),
        scopes,
    })
}

/// Requests' resource URIs are matched in normal form ([`uri`]), so a rule for them is only
/// meaningful in normal form too: say how to write it, or that no request can match it.
fn check_resource_name(at: &str, method: &str, name: &str, issues: &mut Issues) {
    let method = Glob::new(method);
    if !URI_METHODS.iter().any(|m| method.matches(m)) || uri::split_scheme(name).is_none() {
        return;
    }
    match uri::normalize(name) {
        Ok(normal) if normal != name => issues.push(
            at,
            format!("resource URIs are matched in normal form (RFC 3986 §6.2.2); write it as \"{normal}\""),
        ),
        Ok(_) => {}
        Err(_) => issues.push(
            at,
            "no request can match it: resource URIs with dot or empty segments, an encoded '/', \
             or a file: host other than localhost are refused (docs/security.md)",
        ),
    }
}

/// The RFC 9728 §2 document for one MCP resource (`offline_access` is never advertised).
pub fn protected_resource_document(
    file: &FileMcp,
    resource: &str,
    authorization_servers: &[String],
    scopes: &BTreeSet<String>,
) -> Bytes {
    let mut scopes = scopes.clone();
    scopes.remove(OFFLINE_ACCESS);
    DocumentFields {
        resource,
        authorization_servers,
        scopes: &scopes,
        resource_name: Some(&file.resource_name),
        resource_documentation: file.resource_documentation.as_deref(),
        resource_policy_uri: file.resource_policy_uri.as_deref(),
    }
    .to_document()
}

#[cfg(test)]
mod tests;
