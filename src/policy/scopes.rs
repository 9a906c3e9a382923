//! Scope tokens and what routes ask of them: [`ScopeRequirement`] is "any of these sets,
//! each all-of", and [`ScopeImplications`] lets a broader scope satisfy a narrower one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::config::problems::Issues;

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

    /// Any one of `alternatives`, each all-of; no alternatives means any valid token.
    pub fn any_of(alternatives: Vec<Vec<Scope>>) -> Self {
        Self { alternatives }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
