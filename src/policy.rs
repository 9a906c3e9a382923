//! The compiled route map and scope rules. No I/O: given a method and a canonical path,
//! [`RouteTable::lookup`] answers which route applies, and a [`ScopeRequirement`] answers
//! whether a set of granted scopes is enough.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use http::Method;

use crate::canonical::CanonicalPath;
use crate::config::{FileRoute, Issues};

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
    fn parse(text: &str) -> Result<PathPattern, String> {
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
}

/// A scope token (RFC 6749 §3.3: `%x21 / %x23-5B / %x5D-7E`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        if let Some(bad) = text
            .chars()
            .find(|&c| !(c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c)))
        {
            let what = if bad == ' ' {
                "a space".to_string()
            } else {
                format!("{bad:?}")
            };
            return Err(format!("{text:?} contains {what}; scope tokens cannot (RFC 6749 §3.3)"));
        }
        Ok(Scope(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// "Any of these sets, each all-of". Empty means "any valid token".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeRequirement {
    alternatives: Vec<Vec<Scope>>,
}

impl ScopeRequirement {
    pub fn all_of(scopes: Vec<Scope>) -> Self {
        Self {
            alternatives: vec![scopes],
        }
    }

    /// Whether `granted` (already expanded by the implication map) satisfies this requirement.
    pub fn is_satisfied_by(&self, granted: &BTreeSet<Scope>) -> bool {
        self.alternatives.is_empty()
            || self
                .alternatives
                .iter()
                .any(|set| set.iter().all(|s| granted.contains(s)))
    }

    /// The scopes named in challenges: RFC 6750 §3 wants those needed to access the
    /// resource, so this is the first alternative in full (the one the route lists first).
    pub fn challenge_scopes(&self) -> String {
        self.alternatives
            .first()
            .map(|set| set.iter().map(Scope::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.alternatives.is_empty()
    }

    /// The alternatives: any one of them, each all-of; empty means any valid token.
    pub fn alternatives(&self) -> &[Vec<Scope>] {
        &self.alternatives
    }
}

impl fmt::Display for ScopeRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.alternatives.is_empty() {
            return f.write_str("any valid token");
        }
        let sets: Vec<String> = self
            .alternatives
            .iter()
            .map(|set| set.iter().map(Scope::as_str).collect::<Vec<_>>().join(" + "))
            .collect();
        f.write_str(&sets.join(" | "))
    }
}

/// `write ⇒ read`: applied to granted scopes before matching, transitively. The MCP
/// authorization spec expects a broader scope to satisfy a narrower one.
#[derive(Debug, Clone, Default)]
pub struct ScopeImplications {
    implies: BTreeMap<Scope, Vec<Scope>>,
}

impl ScopeImplications {
    pub fn compile(file: &BTreeMap<String, Vec<String>>, issues: &mut Issues) -> Self {
        let mut implies = BTreeMap::new();
        for (from, targets) in file {
            let from_scope = match Scope::parse(from) {
                Ok(s) => s,
                Err(e) => {
                    issues.push(format!("scopes.implies.{from}"), e);
                    continue;
                }
            };
            let mut parsed = Vec::new();
            for (i, target) in targets.iter().enumerate() {
                match Scope::parse(target) {
                    Ok(s) => parsed.push(s),
                    Err(e) => issues.push(format!("scopes.implies.{from}[{i}]"), e),
                }
            }
            implies.insert(from_scope, parsed);
        }
        ScopeImplications { implies }
    }

    /// The scopes that imply `scope`, directly or transitively, sorted.
    pub fn implied_by(&self, scope: &str) -> Vec<String> {
        self.implies
            .keys()
            .filter(|candidate| candidate.as_str() != scope)
            .filter(|candidate| self.expand([candidate.as_str()]).iter().any(|s| s.as_str() == scope))
            .map(|candidate| candidate.as_str().to_string())
            .collect()
    }

    /// The granted scopes plus everything they imply.
    pub fn expand<'a>(&self, granted: impl IntoIterator<Item = &'a str>) -> BTreeSet<Scope> {
        let mut result = BTreeSet::new();
        let mut pending: Vec<Scope> = granted.into_iter().filter_map(|s| Scope::parse(s).ok()).collect();
        while let Some(scope) = pending.pop() {
            if let Some(implied) = self.implies.get(&scope) {
                pending.extend(implied.iter().filter(|s| !result.contains(*s)).cloned());
            }
            result.insert(scope);
        }
        result
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
    /// Position in the file: breaks specificity ties.
    pub index: usize,
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
        let access = if file.public {
            if !alternatives.is_empty() {
                issues.push(
                    format!("{at}.public"),
                    "a public route cannot also require scopes; pick one",
                );
            }
            Access::Public
        } else {
            Access::Protected(ScopeRequirement { alternatives })
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
            index,
        })
    }

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

/// The route map in precedence order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<RouteSpec>,
    implications: ScopeImplications,
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
        RouteTable { routes, implications }
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
            let upgrade = match r.mode {
                Some(EnforcementMode::DryRun) => format!("{upgrade} (dry run)"),
                _ => upgrade.to_string(),
            };
            out.push_str(&format!(
                "{:<11} {:<25} {:<22} {:<34} {access}{upgrade}\n",
                i + 1,
                r.name,
                methods,
                r.pattern.as_str()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::canonical::canonicalize_path;

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
            mcp: false,
            mcp_resource: None,
            mcp_rules: vec![],
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

    #[test]
    fn implications_are_transitive() {
        let mut file = BTreeMap::new();
        file.insert("admin".to_string(), vec!["write".to_string()]);
        file.insert("write".to_string(), vec!["read".to_string()]);
        let imp = ScopeImplications::compile(&file, &mut Issues::default());
        let granted = imp.expand(["admin"]);
        let req = ScopeRequirement::all_of(vec![Scope::parse("read").unwrap()]);
        assert!(req.is_satisfied_by(&granted));
        assert!(!req.is_satisfied_by(&imp.expand(["mcp"])));
    }

    #[test]
    fn any_of_alternatives() {
        let req = ScopeRequirement {
            alternatives: vec![
                vec![Scope::parse("read").unwrap(), Scope::parse("mcp").unwrap()],
                vec![Scope::parse("admin").unwrap()],
            ],
        };
        let imp = ScopeImplications::default();
        assert!(req.is_satisfied_by(&imp.expand(["mcp", "read"])));
        assert!(req.is_satisfied_by(&imp.expand(["admin"])));
        assert!(!req.is_satisfied_by(&imp.expand(["read"])));
        assert_eq!(req.challenge_scopes(), "read mcp");
    }

    #[test]
    fn scope_syntax() {
        assert!(Scope::parse("read data").is_err());
        assert!(Scope::parse("a\"b").is_err());
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse("files:read").is_ok());
    }
}
