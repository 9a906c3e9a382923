//! How `check`, `check --online` and `explain` phrase a route's requirements: what a token
//! needs, which scopes imply which, audience binding and MCP tool rules.

use http::Method;

use crate::config::{Config, ConfigError, UnmatchedPolicy};
use crate::mcp::McpRoute;
use crate::policy::{Access, RouteSpec};

/// A validated config plus the parts of the file the compiled form does not expose: the
/// implication map's keys (to say which broader scopes also satisfy a route) and each
/// route's scope alternatives as written.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
}

impl Loaded {
    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Loaded, ConfigError> {
        Config::load(path).map(|config| Loaded { config })
    }

    /// Validates config text; `origin` names it in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Loaded, ConfigError> {
        Config::from_toml(text, origin).map(|config| Loaded { config })
    }

    /// The scopes that imply `scope` (directly or transitively), sorted.
    pub fn implied_by(&self, scope: &str) -> Vec<String> {
        self.config.routes.implications().implied_by(scope)
    }

    /// "a token from ISS for audience AUD" for every configured issuer: on an MCP route the
    /// route's resource only (RFC 8707), elsewhere the issuer's audiences that are not MCP
    /// resources.
    pub(crate) fn token_from(&self, route: Option<&RouteSpec>) -> String {
        let issuers = &self.config.tokens.issuers;
        if issuers.is_empty() {
            return "a token (no issuer is configured, so none can be valid)".into();
        }
        let mcp = &self.config.mcp;
        let bound = route.and_then(|r| mcp.route(&r.name)).map(|m| m.resource.as_str());
        let is_mcp_resource = |aud: &str| mcp.documents.iter().any(|d| d.resource == aud);
        let parts: Vec<String> = issuers
            .iter()
            .map(|i| {
                let audiences: Vec<&str> = match bound {
                    Some(resource) => vec![resource],
                    None => {
                        let api: Vec<&str> = i
                            .audiences
                            .iter()
                            .map(String::as_str)
                            .filter(|a| !is_mcp_resource(a))
                            .collect();
                        if api.is_empty() {
                            i.audiences.iter().map(String::as_str).collect()
                        } else {
                            api
                        }
                    }
                };
                format!("{} for audience {}", i.issuer, audiences.join(" or "))
            })
            .collect();
        format!("a token from {}", parts.join(", or from "))
    }

    fn quoted_with_implications(&self, scope: &str) -> String {
        let by = self.implied_by(scope);
        match by.as_slice() {
            [] => format!("{scope:?}"),
            [one] => format!("{scope:?} (or {one:?}, which implies it)"),
            many => {
                let list: Vec<String> = many.iter().map(|s| format!("{s:?}")).collect();
                format!("{scope:?} (or {}, which imply it)", list.join(" or "))
            }
        }
    }

    /// What a token needs for `route`, e.g. `a token from https://as.example for audience
    /// https://api.example with scope "read" (or "write", which implies it)`.
    pub fn token_needs(&self, route: &RouteSpec) -> String {
        let needs = self.scope_needs(route);
        if route.claim_rules.is_empty() || route.access == Access::Public {
            return needs;
        }
        let rules: Vec<String> = route.claim_rules.iter().map(ToString::to_string).collect();
        format!("{needs}, whose claims meet {}", rules.join(" and "))
    }

    fn scope_needs(&self, route: &RouteSpec) -> String {
        if route.access == Access::Public {
            return "public: no token needed".into();
        }
        let Access::Protected(requirement) = &route.access else {
            return "public: no token needed".into();
        };
        let alternatives = requirement.alternatives();
        if alternatives.is_empty() {
            return format!("{} (any scopes)", self.token_from(Some(route)));
        }
        let phrases: Vec<String> = alternatives
            .iter()
            .map(|set| {
                let scopes: Vec<String> = set.iter().map(|s| self.quoted_with_implications(s.as_str())).collect();
                let noun = if set.len() == 1 { "scope" } else { "scopes" };
                format!("with {noun} {}", scopes.join(" and "))
            })
            .collect();
        format!("{} {}", self.token_from(Some(route)), phrases.join(", or "))
    }

    /// One line per route in precedence order (`GET,HEAD /projects/** (projects-read): …`),
    /// then what happens to requests no route matches.
    pub fn route_examples(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .config
            .routes
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({}): {}",
                    methods_text(r),
                    r.pattern.as_str(),
                    r.name,
                    self.token_needs(r)
                )
            })
            .collect();
        lines.push(match self.config.auth.unmatched {
            UnmatchedPolicy::Deny => "any other request: no route → 404".into(),
            UnmatchedPolicy::Authenticated => format!("any other request: {} (any scopes)", self.token_from(None)),
        });
        lines
    }
}

impl Loaded {
    /// What `check` prints under the route table: RFC 8707 audience binding and the MCP tool
    /// rules of each MCP route, and what API routes refuse.
    pub fn bindings(&self) -> Vec<String> {
        let mcp = &self.config.mcp;
        if !mcp.is_enabled() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        for route in self.config.routes.iter() {
            match mcp.route(&route.name) {
                Some(m) => {
                    lines.push(format!(
                        "{}: MCP endpoint; the token's aud must include {} (RFC 8707); metadata {}",
                        route.name, m.resource, m.metadata_url
                    ));
                    lines.extend(
                        tool_rule_lines(m)
                            .into_iter()
                            .map(|rule| format!("  tool rule: {rule}")),
                    );
                }
                None if route.access != Access::Public => lines.push(format!(
                    "{}: refuses tokens whose only audiences are MCP resources",
                    route.name
                )),
                None => {}
            }
        }
        lines
    }
}

impl Loaded {
    /// What `check` prints about RFC 9728 metadata: every document scopegate serves, the URL
    /// challenges name for it and the routes it covers; then `auth.resource_metadata`.
    pub fn resource_metadata(&self) -> Vec<String> {
        let config = &self.config;
        let protected = || {
            config
                .routes
                .iter()
                .filter(|r| r.access != Access::Public)
                .map(|r| r.name.as_str())
        };
        let mut lines = Vec::new();
        for document in &config.resources.documents {
            let api_routes = protected().filter(|name| config.mcp.route(name).is_none());
            let covered = config.resources.covered_routes(document, api_routes);
            let default = if config.resources.is_default(document) {
                " (default: every route no other resource lists)"
            } else {
                ""
            };
            lines.push(format!(
                "{}  metadata {}  routes: {}{default}",
                document.resource,
                document.metadata_url,
                if covered.is_empty() {
                    "none".to_string()
                } else {
                    covered.join(", ")
                },
            ));
            if !config
                .tokens
                .issuers
                .iter()
                .any(|i| i.audiences.contains(&document.resource))
            {
                lines.push(format!(
                    "  note: no [[issuer]] lists {} in audiences: a token a client asks for this resource (RFC 8707) is refused unless its aud also names a listed audience",
                    document.resource
                ));
            }
        }
        for document in &config.mcp.documents {
            let routes: Vec<&str> = protected()
                .filter(|name| config.mcp.route(name).is_some_and(|m| m.resource == document.resource))
                .collect();
            lines.push(format!(
                "{}  metadata {}  MCP routes: {}",
                document.resource,
                document.metadata_url,
                routes.join(", ")
            ));
        }
        if let Some(url) = &config.auth.resource_metadata {
            lines.push(format!("auth.resource_metadata {url}  for the other protected routes"));
        }
        lines
    }
}

pub(crate) fn methods_text(route: &RouteSpec) -> String {
    if route.methods.is_empty() {
        "*".into()
    } else {
        route.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
    }
}

/// An MCP route's tool rules, one line each: `tools/call delete_* → write`.
pub fn tool_rule_lines(route: &McpRoute) -> Vec<String> {
    route
        .rules
        .iter()
        .map(|rule| {
            let scopes: Vec<&str> = rule.scopes.iter().map(|s| s.as_str()).collect();
            format!(
                "{} {} → {}",
                rule.method.as_str(),
                rule.name.as_ref().map_or("*", |n| n.as_str()),
                scopes.join(" ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TEXT: &str = r#"
[listener]
address = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[scopes.implies]
admin = ["write"]
write = ["read"]
[[issuer]]
url = "https://as.example"
audiences = ["https://api.example"]
[[route]]
name = "r"
path = "/r/**"
scopes = ["read"]
[[route]]
name = "any"
path = "/any"
any_scopes = [["read", "mcp"], ["admin"]]
"#;

    #[test]
    fn implications_are_listed_transitively() {
        let loaded = Loaded::from_toml(TEXT, "t").unwrap();
        assert_eq!(
            loaded.implied_by("read"),
            vec!["admin".to_string(), "write".to_string()]
        );
        assert!(loaded.implied_by("admin").is_empty());
        let any = loaded.config.routes.iter().find(|r| r.name == "any").unwrap();
        assert_eq!(
            loaded.token_needs(any),
            "a token from https://as.example for audience https://api.example with scopes \"read\" \
             (or \"admin\" or \"write\", which imply it) and \"mcp\", or with scope \"admin\""
        );
    }
}
