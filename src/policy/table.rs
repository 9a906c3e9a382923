//! The route table: path patterns, precedence and lookup. Given a method and a canonical
//! path, [`RouteTable::lookup`] answers which route applies.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use http::Method;

use super::claims::{ClaimRule, PathParams};
use super::scopes::{ScopeImplications, ScopeRequirement};
use crate::canonical::CanonicalPath;
use crate::config::problems::Issues;

/// One segment of a route's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param(String),
}

/// `/a/b`, `/projects/{id}`, or a prefix ending in `/**` (zero or more further segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<PatternSegment>,
    prefix: bool,
    text: String,
}

impl PathPattern {
    pub(super) fn parse(text: &str) -> Result<PathPattern, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} must start with '/'"));
        };
        let (body, prefix) = match rest.strip_suffix("**") {
            Some(body) if body.is_empty() || body.ends_with('/') => (body.trim_end_matches('/'), true),
            Some(_) => {
                return Err(format!(
                    "{text:?}: '**' is only allowed as a whole final segment, as in \"/api/**\""
                ));
            }
            None => (rest, false),
        };
        let mut segments = Vec::new();
        if !body.is_empty() || (!prefix && !rest.is_empty()) {
            for raw in body.split('/') {
                segments.push(Self::parse_segment(text, raw)?);
            }
        }
        Ok(PathPattern {
            segments,
            prefix,
            text: text.to_string(),
        })
    }

    fn parse_segment(text: &str, raw: &str) -> Result<PatternSegment, String> {
        if let Some(name) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "{text:?}: parameter {raw:?} needs a name of letters, digits or '_'"
                ));
            }
            return Ok(PatternSegment::Param(name.to_string()));
        }
        if raw.contains(['{', '}', '*']) {
            return Err(format!(
                "{text:?}: segment {raw:?} mixes wildcards with text; use a whole segment \"{{name}}\" or a final \"**\""
            ));
        }
        if raw == "." || raw == ".." {
            return Err(format!("{text:?}: dot segments never match a canonical path"));
        }
        // A literal must itself be canonical, or it could never match.
        let probe = format!("/{raw}");
        match crate::canonical::canonicalize_path(&probe, Default::default()) {
            Ok(canonical) if canonical.as_str() == probe => Ok(PatternSegment::Literal(raw.to_string())),
            _ => Err(format!(
                "{text:?}: segment {raw:?} is not in canonical form (percent-escape only what must be, uppercase hex)"
            )),
        }
    }

    fn matches(&self, path: &CanonicalPath) -> bool {
        let mut segments = path.segments();
        for expected in &self.segments {
            match (expected, segments.next()) {
                (PatternSegment::Literal(lit), Some(actual)) if lit == actual => {}
                (PatternSegment::Param(_), Some(actual)) if !actual.is_empty() => {}
                _ => return false,
            }
        }
        self.prefix || segments.next().is_none()
    }

    /// Segment-wise specificity: a literal beats a parameter, which beats the end of an
    /// exact pattern, which beats `**`.
    fn specificity_cmp(&self, other: &PathPattern) -> Ordering {
        fn rank(pattern: &PathPattern, index: usize) -> u8 {
            match pattern.segments.get(index) {
                Some(PatternSegment::Literal(_)) => 3,
                Some(PatternSegment::Param(_)) => 2,
                None if !pattern.prefix => 1,
                None => 0,
            }
        }
        let longest = self.segments.len().max(other.segments.len()) + 1;
        (0..longest)
            .map(|i| rank(self, i).cmp(&rank(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pattern's `{parameters}` and the segment each one matches.
    pub fn params(&self) -> PathParams<'_> {
        PathParams {
            pattern: &self.text,
            params: self
                .segments
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    PatternSegment::Param(name) => Some((name.as_str(), i)),
                    PatternSegment::Literal(_) => None,
                })
                .collect(),
        }
    }
}

/// Whether a decision is enforced or only recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementMode {
    /// Deny what the policy denies.
    #[default]
    Enforce,
    /// Evaluate everything, log and count the would-be denial, and forward anyway: for
    /// rolling out a new route map. Never the default.
    DryRun,
}

/// What a route asks of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Public,
    Protected(ScopeRequirement),
}

/// One compiled `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub pattern: PathPattern,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub access: Access,
    pub allow_upgrade: bool,
    /// `None`: the global `auth.mode` applies.
    pub mode: Option<EnforcementMode>,
    /// `None`: the global `dpop.mode` applies.
    pub dpop: Option<crate::token::config::sender::DpopMode>,
    /// Position in the file: breaks specificity ties.
    pub index: usize,
    /// Tests on the verified claims, all of which must hold (after the scopes).
    pub claim_rules: Vec<ClaimRule>,
    /// Whether CORS preflights are let through without a token; `None`: the global
    /// `cors.bypass_preflight` applies.
    pub bypass_preflight: Option<bool>,
}

impl RouteSpec {
    /// RFC 9110 §9.3.2: HEAD is GET without a body, and servers answer it with their GET
    /// handler, so a route that lists GET also governs HEAD. Otherwise a HEAD request could
    /// fall through to a broader route and run the GET handler under weaker rules.
    fn allows_method(&self, method: &Method) -> bool {
        self.methods.is_empty()
            || self.methods.contains(method)
            || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// Precedence: more specific path first, then routes that name methods, then file order.
    fn precedence_cmp(&self, other: &RouteSpec) -> Ordering {
        other
            .pattern
            .specificity_cmp(&self.pattern)
            .then_with(|| other.methods.is_empty().cmp(&self.methods.is_empty()).reverse())
            .then_with(|| self.index.cmp(&other.index))
    }
}

/// The route map in precedence order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<RouteSpec>,
    implications: ScopeImplications,
    /// `cors.bypass_preflight`: for routes that do not say.
    bypass_preflight: bool,
}

impl RouteTable {
    pub fn new(mut routes: Vec<RouteSpec>, implications: ScopeImplications, issues: &mut Issues) -> RouteTable {
        let mut names = BTreeSet::new();
        for route in &routes {
            if !names.insert(route.name.clone()) {
                issues.push(
                    format!("route[{}].name", route.index),
                    format!(
                        "{:?} is used by an earlier route; names are metrics labels and must be unique",
                        route.name
                    ),
                );
            }
        }
        routes.sort_by(RouteSpec::precedence_cmp);
        RouteTable {
            routes,
            implications,
            bypass_preflight: false,
        }
    }

    /// Sets `cors.bypass_preflight`, the choice of routes without their own.
    pub fn set_bypass_preflight(&mut self, bypass: bool) {
        self.bypass_preflight = bypass;
    }

    /// Whether CORS preflights to `route` pass without a token: the route's own
    /// `bypass_preflight`, else `cors.bypass_preflight`.
    pub fn bypasses_preflight(&self, route: &RouteSpec) -> bool {
        route.bypass_preflight.unwrap_or(self.bypass_preflight)
    }

    /// The first route, in precedence order, whose pattern and method match.
    pub fn lookup(&self, method: &Method, path: &CanonicalPath) -> Option<&RouteSpec> {
        self.routes
            .iter()
            .find(|r| r.pattern.matches(path) && r.allows_method(method))
    }

    pub fn implications(&self) -> &ScopeImplications {
        &self.implications
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn all_public(&self) -> bool {
        self.routes.iter().all(|r| r.access == Access::Public)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RouteSpec> {
        self.routes.iter()
    }

    /// The table as `check` prints it: one line per route, in precedence order.
    pub fn describe(&self) -> String {
        let mut out = String::from(
            "precedence  name                      methods                path                               access\n",
        );
        for (i, r) in self.routes.iter().enumerate() {
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
            };
            let access = match &r.access {
                Access::Public => "public".to_string(),
                Access::Protected(req) => format!("scopes: {req}"),
            };
            let upgrade = if r.allow_upgrade { " (upgrades allowed)" } else { "" };
            let mut upgrade = match r.mode {
                Some(EnforcementMode::DryRun) => format!("{upgrade} (dry run)"),
                _ => upgrade.to_string(),
            };
            if self.bypasses_preflight(r) {
                upgrade.push_str(" (CORS preflights pass without a token)");
            }
            out.push_str(&format!(
                "{:<11} {:<25} {:<22} {:<34} {access}{upgrade}\n",
                i + 1,
                r.name,
                methods,
                r.pattern.as_str()
            ));
            for rule in &r.claim_rules {
                out.push_str(&format!("{:<95} claim: {rule}\n", ""));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::canonical::canonicalize_path;
    use crate::policy::file::FileRoute;

    fn route(index: usize, name: &str, path: &str, methods: &[&str]) -> RouteSpec {
        let file = FileRoute {
            name: name.into(),
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            public: true,
            scopes: vec![],
            any_scopes: vec![],
            allow_upgrade: false,
            mode: None,
            dpop: None,
            mcp: false,
            mcp_resource: None,
            mcp_rules: vec![],
            claim_rules: vec![],
            bypass_preflight: None,
        };
        RouteSpec::compile(index, file, &mut Issues::default()).unwrap()
    }

    fn table(routes: Vec<RouteSpec>) -> RouteTable {
        RouteTable::new(routes, ScopeImplications::default(), &mut Issues::default())
    }

    fn lookup<'a>(t: &'a RouteTable, method: &str, path: &str) -> Option<&'a str> {
        let path = canonicalize_path(path, Default::default()).unwrap();
        t.lookup(&Method::from_bytes(method.as_bytes()).unwrap(), &path)
            .map(|r| r.name.as_str())
    }

    #[test]
    fn most_specific_wins_regardless_of_file_order() {
        let t = table(vec![
            route(0, "all", "/**", &[]),
            route(1, "projects", "/projects/**", &[]),
            route(2, "project", "/projects/{id}", &[]),
            route(3, "special", "/projects/special", &[]),
            route(4, "project-get", "/projects/{id}", &["GET"]),
        ]);
        assert_eq!(lookup(&t, "GET", "/projects/special"), Some("special"));
        assert_eq!(lookup(&t, "GET", "/projects/7"), Some("project-get"));
        assert_eq!(lookup(&t, "POST", "/projects/7"), Some("project"));
        assert_eq!(lookup(&t, "GET", "/projects/7/tasks"), Some("projects"));
        assert_eq!(lookup(&t, "GET", "/projects"), Some("projects"));
        assert_eq!(lookup(&t, "GET", "/other"), Some("all"));
        assert_eq!(lookup(&t, "GET", "/"), Some("all"));
    }

    #[test]
    fn ties_go_to_file_order_and_methods_filter() {
        let t = table(vec![
            route(0, "first", "/a/{x}", &[]),
            route(1, "second", "/a/{y}", &[]),
            route(2, "get", "/b", &["GET"]),
        ]);
        assert_eq!(lookup(&t, "GET", "/a/1"), Some("first"));
        assert_eq!(lookup(&t, "GET", "/b"), Some("get"));
        assert_eq!(lookup(&t, "HEAD", "/b"), Some("get"), "a GET route governs HEAD");
        assert_eq!(lookup(&t, "DELETE", "/b"), None);
        assert_eq!(lookup(&t, "GET", "/a"), None);
        assert_eq!(
            lookup(&t, "GET", "/a/"),
            None,
            "a parameter never matches an empty segment"
        );
    }

    #[test]
    fn exact_pattern_does_not_match_longer_paths() {
        let t = table(vec![route(0, "exact", "/a/b", &[]), route(1, "root", "/", &[])]);
        assert_eq!(lookup(&t, "GET", "/a/b"), Some("exact"));
        assert_eq!(lookup(&t, "GET", "/a/b/c"), None);
        assert_eq!(lookup(&t, "GET", "/a/b/"), None);
        assert_eq!(lookup(&t, "GET", "/"), Some("root"));
    }

    #[test]
    fn bad_patterns_are_reported() {
        for bad in ["a/b", "/a*/b", "/a/**/b", "/{}", "/a/../b", "/a/%2e"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
