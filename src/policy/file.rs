//! `[[route]]` as written, compiled into a [`RouteSpec`].

use serde::Deserialize;

use http::Method;

use super::claims::{ClaimRule, FileClaimRule};
use super::scopes::{Scope, ScopeRequirement};
use super::table::{Access, EnforcementMode, PathPattern, RouteSpec};
use crate::config::problems::Issues;
use crate::mcp::rules::FileMcpRule;
use crate::token::config::sender::DpopMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub public: bool,
    /// All of these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Any one of these lists, each all-of. Never together with `scopes`: whether that
    /// would mean "both" or "either" is a guess a reader should not have to make.
    #[serde(default)]
    pub any_scopes: Vec<Vec<String>>,
    #[serde(default)]
    pub allow_upgrade: bool,
    /// Overrides `auth.mode` for this route.
    #[serde(default)]
    pub mode: Option<EnforcementMode>,
    /// Overrides `dpop.mode` for this route: `off`, `allowed` or `required` (RFC 9449).
    #[serde(default)]
    pub dpop: Option<DpopMode>,
    /// An MCP endpoint: metadata, audience binding and `mcp_rule`s apply (see `[mcp]`).
    #[serde(default)]
    pub mcp: bool,
    /// This route's resource URI when it differs from `[mcp].resource`.
    #[serde(default)]
    pub mcp_resource: Option<String>,
    /// Scopes by JSON-RPC method and tool/prompt/resource name.
    #[serde(default, rename = "mcp_rule")]
    pub mcp_rules: Vec<FileMcpRule>,
    /// `[[route.claim]]`: typed tests on the token's claims, all of which must hold.
    #[serde(default, rename = "claim")]
    pub claim_rules: Vec<FileClaimRule>,
    /// Lets CORS preflights through without a token; overrides `cors.bypass_preflight`.
    #[serde(default)]
    pub bypass_preflight: Option<bool>,
}

impl RouteSpec {
    pub fn compile(index: usize, file: FileRoute, issues: &mut Issues) -> Option<RouteSpec> {
        let at = format!("route[{index}]");
        let before = issues_len(issues);
        if file.name.is_empty()
            || !file
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            issues.push(
                format!("{at}.name"),
                format!(
                    "{:?} must be non-empty letters, digits, '-', '_' or '.' (it is a metrics label)",
                    file.name
                ),
            );
        }
        let pattern = PathPattern::parse(&file.path)
            .map_err(|e| issues.push(format!("{at}.path"), e))
            .ok();
        let mut methods = Vec::new();
        for (i, m) in file.methods.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) if m.bytes().all(|b| b.is_ascii_alphabetic()) => methods.push(method),
                _ => issues.push(format!("{at}.methods[{i}]"), format!("{m:?} is not an HTTP method")),
            }
        }
        if !file.scopes.is_empty() && !file.any_scopes.is_empty() {
            issues.push(
                format!("{at}.any_scopes"),
                both_or_either(&file.scopes, &file.any_scopes),
            );
        }
        let mut alternatives = Vec::new();
        if !file.scopes.is_empty() {
            alternatives.push(scope_list(issues, format!("{at}.scopes"), &file.scopes));
        }
        for (i, set) in file.any_scopes.iter().enumerate() {
            if set.is_empty() {
                issues.push(
                    format!("{at}.any_scopes[{i}]"),
                    "an empty alternative would allow any token; remove it",
                );
            }
            alternatives.push(scope_list(issues, format!("{at}.any_scopes[{i}]"), set));
        }
        let params = pattern.as_ref().map(PathPattern::params);
        let claim_rules: Vec<ClaimRule> = file
            .claim_rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| ClaimRule::compile(&format!("{at}.claim[{i}]"), rule, params.as_ref(), issues))
            .collect();
        let access = if file.public {
            if !alternatives.is_empty() {
                issues.push(
                    format!("{at}.public"),
                    "a public route cannot also require scopes; pick one",
                );
            }
            if !file.claim_rules.is_empty() {
                issues.push(
                    format!("{at}.public"),
                    "a public route reads no token, so it cannot have claim rules; remove one or the other",
                );
            }
            Access::Public
        } else {
            Access::Protected(ScopeRequirement::any_of(alternatives))
        };
        if issues_len(issues) != before {
            return None;
        }
        Some(RouteSpec {
            name: file.name,
            pattern: pattern?,
            methods,
            access,
            allow_upgrade: file.allow_upgrade,
            mode: file.mode,
            dpop: file.dpop,
            index,
            claim_rules,
            bypass_preflight: file.bypass_preflight,
        })
    }
}

fn scope_list(issues: &mut Issues, path: String, names: &[String]) -> Vec<Scope> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Scope::parse(name) {
            Ok(s) => out.push(s),
            Err(e) => issues.push(format!("{path}[{i}]"), e),
        }
    }
    out
}

fn issues_len(issues: &Issues) -> usize {
    // `Issues` only grows; its emptiness before and after tells whether this route added any.
    issues.count()
}

/// The problem with `scopes` next to `any_scopes`, spelled out with this route's own
/// scopes: one list for "all of them", every alternative in `any_scopes` for "any of them".
fn both_or_either(scopes: &[String], any_scopes: &[Vec<String>]) -> String {
    let list = |names: &[String]| {
        let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let mut all: Vec<String> = scopes.to_vec();
    for name in any_scopes.iter().flatten() {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let mut either = vec![list(scopes)];
    either.extend(any_scopes.iter().map(|set| list(set)));
    format!(
        "cannot be combined with scopes on one route; to require all of them write one list, scopes = {}; to accept any one of them write every alternative in any_scopes = [{}]",
        list(&all),
        either.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    #[test]
    fn scopes_with_any_scopes_is_refused_with_both_spellings() {
        let text = "[listener]\naddress = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n\
                    [[issuer]]\nurl = \"https://as.example\"\naudiences = [\"api\"]\n\
                    [[route]]\nname = \"r\"\npath = \"/r\"\nscopes = [\"read\"]\nany_scopes = [[\"admin\"], [\"write\", \"ops\"]]\n";
        let Err(ConfigError::Invalid(issues)) = Config::from_toml(text, "t.toml") else {
            panic!("scopes with any_scopes must be refused");
        };
        let issue = issues
            .iter()
            .find(|i| i.path == "route[0].any_scopes")
            .unwrap_or_else(|| panic!("{issues:?}"));
        assert!(
            issue.message.contains(r#"scopes = ["read", "admin", "write", "ops"]"#),
            "{issue}"
        );
        assert!(
            issue
                .message
                .contains(r#"any_scopes = [["read"], ["admin"], ["write", "ops"]]"#),
            "{issue}"
        );
    }
}
