//! `[[resource]]` as written, compiled into [`ResourceConfig`]; and the checks every resource
//! declaration shares, `[mcp]` included (the resource URI, the advertised issuers).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::document::{DocumentFields, ResourceDocument};
use crate::config::problems::Issues;
use crate::http_client::is_acceptable_remote_url;
use crate::policy::file::FileRoute;
use crate::token::config::FileIssuer;

/// One `[[resource]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResource {
    /// The resource identifier (RFC 9728 `resource`, what clients ask tokens for).
    pub uri: String,
    /// Names of the routes it covers; left out, every protected route no other resource
    /// lists (and MCP routes aside).
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// Human-readable `resource_name`.
    #[serde(default)]
    pub name: Option<String>,
    /// Issuers advertised as `authorization_servers`; default every `[[issuer]]`.
    #[serde(default)]
    pub authorization_servers: Option<Vec<String>>,
}

/// The compiled `[[resource]]`s: their documents and which routes each one covers.
#[derive(Debug, Clone, Default)]
pub struct ResourceConfig {
    pub documents: Vec<ResourceDocument>,
    /// Route name → index in `documents`, for routes a resource lists.
    by_route: BTreeMap<String, usize>,
    /// The resource without `routes`: every other protected route, and unmatched requests
    /// forwarded under `auth.unmatched = "authenticated"`.
    default: Option<usize>,
}

impl ResourceConfig {
    /// Compiles `[[resource]]`. `taken` are the documents already served (MCP's): a resource
    /// cannot publish at one of their paths. `global_metadata` says `auth.resource_metadata`
    /// is set, which a default resource would replace.
    pub fn compile(
        files: &[FileResource],
        routes: &[FileRoute],
        issuers: &[FileIssuer],
        taken: &[ResourceDocument],
        global_metadata: bool,
        issues: &mut Issues,
    ) -> ResourceConfig {
        let listed = claimed_routes(files, routes, issues);
        let defaults: Vec<usize> = (0..files.len()).filter(|i| files[*i].routes.is_none()).collect();
        for extra in defaults.iter().skip(1) {
            issues.push(
                format!("resource[{extra}].routes"),
                format!(
                    "resource[{}] already covers every route no resource lists; list the routes this one covers",
                    defaults[0]
                ),
            );
        }
        if global_metadata && !defaults.is_empty() {
            issues.push(
                "auth.resource_metadata",
                "a [[resource]] without routes publishes the metadata every challenge names; remove this key",
            );
        }
        let mut config = ResourceConfig::default();
        for (index, file) in files.iter().enumerate() {
            let at = format!("resource[{index}]");
            let url = check_resource_uri(issues, &format!("{at}.uri"), &file.uri, "https://api.example.com");
            if file.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                issues.push(format!("{at}.name"), "must not be empty (leave it out for no name)");
            }
            let servers = advertised_servers(
                issues,
                &format!("{at}.authorization_servers"),
                file.authorization_servers.as_deref(),
                issuers,
            );
            let covers = |route: &FileRoute| match &file.routes {
                Some(names) => names.contains(&route.name),
                None => !listed.contains_key(route.name.as_str()),
            };
            let scopes: BTreeSet<String> = routes
                .iter()
                .filter(|r| !r.mcp && !r.public && covers(r))
                .flat_map(route_scopes)
                .collect();
            let Some(url) = url else {
                continue;
            };
            let body = DocumentFields {
                resource: &file.uri,
                authorization_servers: &servers,
                scopes: &scopes,
                resource_name: file.name.as_deref(),
                resource_documentation: None,
                resource_policy_uri: None,
            }
            .to_document();
            let document = ResourceDocument::new(&file.uri, &url, body);
            if let Some(other) = taken
                .iter()
                .chain(&config.documents)
                .find(|d| d.well_known_path == document.well_known_path)
            {
                issues.push(
                    format!("{at}.uri"),
                    format!(
                        "its metadata would be served at {}, where {:?} publishes its own (RFC 9728 §3.1); give each resource its own path",
                        document.well_known_path, other.resource
                    ),
                );
                continue;
            }
            let slot = config.documents.len();
            config.documents.push(document);
            match &file.routes {
                Some(names) => config.by_route.extend(names.iter().map(|n| (n.clone(), slot))),
                None => config.default = Some(slot),
            }
        }
        config
    }

    /// The resource a (non-MCP) route belongs to.
    pub fn for_route(&self, name: &str) -> Option<&ResourceDocument> {
        let slot = self.by_route.get(name).copied().or(self.default)?;
        self.documents.get(slot)
    }

    /// The resource of requests no route matched (forwarded under `auth.unmatched`).
    pub fn for_unmatched(&self) -> Option<&ResourceDocument> {
        self.documents.get(self.default?)
    }

    /// The document served at a canonical request path, if any.
    pub fn document_at(&self, path: &str) -> Option<&ResourceDocument> {
        self.documents.iter().find(|d| d.well_known_path == path)
    }

    /// The routes a document covers, by name, as `check` lists them.
    pub fn covered_routes<'a>(
        &self,
        document: &ResourceDocument,
        routes: impl Iterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        routes
            .filter(|name| self.for_route(name).is_some_and(|d| d.resource == document.resource))
            .collect()
    }

    /// Whether `document` is the default resource.
    pub fn is_default(&self, document: &ResourceDocument) -> bool {
        self.for_unmatched().is_some_and(|d| d.resource == document.resource)
    }
}

/// Routes named in some resource's `routes`, each by the first resource naming it; every
/// name checked against the `[[route]]`s.
fn claimed_routes<'a>(
    files: &'a [FileResource],
    routes: &[FileRoute],
    issues: &mut Issues,
) -> BTreeMap<&'a str, usize> {
    let mut claimed = BTreeMap::new();
    for (index, file) in files.iter().enumerate() {
        let Some(names) = &file.routes else {
            continue;
        };
        if names.is_empty() {
            issues.push(
                format!("resource[{index}].routes"),
                "list at least one route, or leave routes out to cover every route no other resource lists",
            );
        }
        for (i, name) in names.iter().enumerate() {
            let at = format!("resource[{index}].routes[{i}]");
            match routes.iter().find(|r| r.name == *name) {
                None => issues.push(at, format!("{name:?} is not the name of any [[route]]")),
                Some(route) if route.mcp => issues.push(
                    at,
                    format!("{name:?} is an MCP route: its resource is [mcp].resource or the route's mcp_resource"),
                ),
                Some(route) if route.public => issues.push(
                    at,
                    format!("{name:?} is public: it sends no challenge, so it names no metadata"),
                ),
                Some(_) => {
                    if let Some(first) = claimed.insert(name.as_str(), index) {
                        issues.push(at, format!("{name:?} is already covered by resource[{first}]"));
                        claimed.insert(name.as_str(), first);
                    }
                }
            }
        }
    }
    claimed
}

/// Every scope a route may ask for (its `scopes` and each `any_scopes` list).
pub fn route_scopes(route: &FileRoute) -> impl Iterator<Item = String> + '_ {
    route.scopes.iter().chain(route.any_scopes.iter().flatten()).cloned()
}

/// A resource URI as RFC 9728 §3.3 and RFC 8707 §2 want it: absolute, https (http only for
/// loopback hosts), without query or fragment; and quotable in a challenge without escaping.
pub fn check_resource_uri(issues: &mut Issues, at: &str, text: &str, example: &str) -> Option<url::Url> {
    let quotable = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
    match url::Url::parse(text) {
        Ok(url)
            if is_acceptable_remote_url(&url)
                && url.query().is_none()
                && url.fragment().is_none()
                && quotable(text) =>
        {
            Some(url)
        }
        _ => {
            issues.push(
                at,
                format!(
                    "{text:?} must be an absolute https URI without query or fragment (http only for loopback hosts), e.g. \"{example}\""
                ),
            );
            None
        }
    }
}

/// `authorization_servers` (RFC 9728 §2): the listed issuers, each spelt exactly as an
/// `[[issuer]] url`, or every configured issuer. At least one must be advertised.
pub fn advertised_servers(
    issues: &mut Issues,
    at: &str,
    listed: Option<&[String]>,
    issuers: &[FileIssuer],
) -> Vec<String> {
    let configured: Vec<&str> = issuers.iter().map(|i| i.url.as_str()).collect();
    let advertised: Vec<String> = match listed {
        Some(list) => {
            for (i, url) in list.iter().enumerate() {
                if !configured.contains(&url.as_str()) {
                    issues.push(
                        format!("{at}[{i}]"),
                        format!("{url:?} is not the url of any [[issuer]] (spell it exactly as configured)"),
                    );
                }
            }
            list.to_vec()
        }
        None => configured.iter().map(|s| s.to_string()).collect(),
    };
    if advertised.is_empty() {
        issues.push(
            at,
            "at least one authorization server must be advertised: add an [[issuer]]",
        );
    }
    advertised
}
