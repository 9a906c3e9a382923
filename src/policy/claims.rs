//! Claim rules: what a route asks of a verified token beyond its scopes, as typed tests on
//! named top-level claims — no expression language. A route's rules are all-of, evaluated
//! after its scopes, on the claims the token layer verified (JWT claims or the RFC 7662
//! answer). Values are compared exactly: same JSON type, same value, no case folding, no
//! trimming, no splitting of strings.
//!
//! - `equals`: the claim is this string, boolean or integer.
//! - `equals_param`: the claim is a string equal to a `{param}` of the route's path, as the
//!   canonical path spells it, percent-decoded (the UTF-8 text the route matched).
//! - `contains`: the claim is an array holding this value, or this value itself (a single
//!   value is a list of one, as RFC 7519 treats `aud`); a string is never split on spaces.
//! - `one_of`: the claim is one of these values.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::canonical::CanonicalPath;
use crate::config::problems::Issues;

/// The `{parameters}` of a route's path, for `equals_param`: each name with the segment it
/// matches (0-based, as [`CanonicalPath::segments`] counts).
#[derive(Debug, Clone)]
pub struct PathParams<'p> {
    /// The pattern as written, for messages.
    pub pattern: &'p str,
    pub params: Vec<(&'p str, usize)>,
}

impl PathParams<'_> {
    fn segment(&self, name: &str) -> Option<usize> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, segment)| *segment)
    }
}

/// `[[route.claim]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClaimRule {
    /// The top-level claim name, exactly as the token spells it (`org_id`,
    /// `https://example.com/tenant`).
    pub claim: String,
    #[serde(default)]
    pub equals: Option<toml::Value>,
    #[serde(default)]
    pub equals_param: Option<String>,
    #[serde(default)]
    pub contains: Option<toml::Value>,
    #[serde(default)]
    pub one_of: Option<Vec<toml::Value>>,
}

/// A literal a claim is compared with: JSON string, boolean or integer. Floats are left
/// out on purpose: `1.0` and `1` are not exactly the same value to every issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    String(String),
    Bool(bool),
    Integer(i64),
}

impl ClaimValue {
    fn compile(value: &toml::Value) -> Result<ClaimValue, String> {
        match value {
            toml::Value::String(s) => Ok(ClaimValue::String(s.clone())),
            toml::Value::Boolean(b) => Ok(ClaimValue::Bool(*b)),
            toml::Value::Integer(i) => Ok(ClaimValue::Integer(*i)),
            toml::Value::Float(_) => Err("a float is never compared exactly; use an integer or a string".into()),
            other => Err(format!(
                "must be a string, a boolean or an integer, not {}",
                other.type_str()
            )),
        }
    }

    /// Exactly this JSON value: same type, same value.
    fn matches(&self, claim: &Value) -> bool {
        match (self, claim) {
            (ClaimValue::String(want), Value::String(got)) => want == got,
            (ClaimValue::Bool(want), Value::Bool(got)) => want == got,
            (ClaimValue::Integer(want), Value::Number(got)) => got.as_i64() == Some(*want),
            _ => false,
        }
    }
}

impl fmt::Display for ClaimValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // JSON spelling: a reader sees `"true"` and `true` apart.
            ClaimValue::String(s) => write!(f, "{}", Value::String(s.clone())),
            ClaimValue::Bool(b) => write!(f, "{b}"),
            ClaimValue::Integer(i) => write!(f, "{i}"),
        }
    }
}

/// What a rule tests its claim for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimTest {
    Equals(ClaimValue),
    /// The `{name}` parameter, the `segment`th segment of the canonical path.
    EqualsParam {
        name: String,
        segment: usize,
    },
    Contains(ClaimValue),
    OneOf(Vec<ClaimValue>),
}

/// One compiled `[[route.claim]]`. Its `Display` form (`org_id = {org}`) is its name in
/// `check`, `explain`, the access log and refusal bodies: it names configuration, never a
/// claim value a token carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    pub claim: String,
    pub test: ClaimTest,
}

impl ClaimRule {
    /// Compiles rule `at` of a route whose path has `params` (`None` when the path itself
    /// did not compile: parameter names are then not checked).
    pub fn compile(
        at: &str,
        file: &FileClaimRule,
        params: Option<&PathParams<'_>>,
        issues: &mut Issues,
    ) -> Option<ClaimRule> {
        if file.claim.is_empty() {
            issues.push(
                format!("{at}.claim"),
                "names no claim; write the claim's name, e.g. \"org_id\"",
            );
        }
        let set: Vec<&str> = [
            ("equals", file.equals.is_some()),
            ("equals_param", file.equals_param.is_some()),
            ("contains", file.contains.is_some()),
            ("one_of", file.one_of.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        if set.len() != 1 {
            let message = if set.is_empty() {
                "tests nothing; set one of equals, equals_param, contains or one_of".to_string()
            } else {
                format!(
                    "sets {}; a rule tests one thing (rules are all-of: write one rule for each)",
                    set.join(" and ")
                )
            };
            issues.push(at.to_string(), message);
            return None;
        }
        let literal = |key: &str, value: &toml::Value, issues: &mut Issues| {
            ClaimValue::compile(value)
                .map_err(|message| issues.push(format!("{at}.{key}"), message))
                .ok()
        };
        let test = if let Some(value) = &file.equals {
            ClaimTest::Equals(literal("equals", value, issues)?)
        } else if let Some(value) = &file.contains {
            ClaimTest::Contains(literal("contains", value, issues)?)
        } else if let Some(values) = &file.one_of {
            if values.is_empty() {
                issues.push(
                    format!("{at}.one_of"),
                    "is empty: no claim could match, so every request would be refused",
                );
                return None;
            }
            let compiled: Vec<Option<ClaimValue>> = values
                .iter()
                .enumerate()
                .map(|(i, value)| literal(&format!("one_of[{i}]"), value, issues))
                .collect();
            ClaimTest::OneOf(compiled.into_iter().collect::<Option<Vec<_>>>()?)
        } else {
            let name = file.equals_param.clone().unwrap_or_default();
            let segment = match params {
                Some(params) => match params.segment(&name) {
                    Some(segment) => segment,
                    None => {
                        issues.push(format!("{at}.equals_param"), unknown_param(&name, params));
                        return None;
                    }
                },
                None => 0,
            };
            ClaimTest::EqualsParam { name, segment }
        };
        (!file.claim.is_empty()).then(|| ClaimRule {
            claim: file.claim.clone(),
            test,
        })
    }

    /// Whether `claim` (the value of [`ClaimRule::claim`] the token layer verified, `None`
    /// when the token has none) passes this rule on `path`, the canonical path the route
    /// matched. A missing claim never passes.
    pub fn holds(&self, claim: Option<&Value>, path: &CanonicalPath) -> bool {
        let Some(claim) = claim else {
            return false;
        };
        match &self.test {
            ClaimTest::Equals(want) => want.matches(claim),
            ClaimTest::EqualsParam { segment, .. } => match (claim, path.decoded_segment(*segment)) {
                (Value::String(got), Some(param)) => *got == param,
                _ => false,
            },
            ClaimTest::Contains(want) => match claim {
                Value::Array(items) => items.iter().any(|item| want.matches(item)),
                single => want.matches(single),
            },
            ClaimTest::OneOf(values) => values.iter().any(|want| want.matches(claim)),
        }
    }
}

impl fmt::Display for ClaimRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claim = &self.claim;
        match &self.test {
            ClaimTest::Equals(value) => write!(f, "{claim} = {value}"),
            ClaimTest::EqualsParam { name, .. } => write!(f, "{claim} = {{{name}}}"),
            ClaimTest::Contains(value) => write!(f, "{claim} contains {value}"),
            ClaimTest::OneOf(values) => {
                let values: Vec<String> = values.iter().map(ClaimValue::to_string).collect();
                write!(f, "{claim} one of [{}]", values.join(", "))
            }
        }
    }
}

/// The first of `rules` that the claims `claim` looks up break on `path`, if any (rules
/// are all-of).
pub fn first_broken<'r, 'v>(
    rules: &'r [ClaimRule],
    claim: impl Fn(&str) -> Option<&'v Value>,
    path: &CanonicalPath,
) -> Option<&'r ClaimRule> {
    rules.iter().find(|rule| !rule.holds(claim(&rule.claim), path))
}

fn unknown_param(name: &str, params: &PathParams<'_>) -> String {
    let known = if params.params.is_empty() {
        "it has none".to_string()
    } else {
        let quoted: Vec<String> = params.params.iter().map(|(p, _)| format!("{{{p}}}")).collect();
        format!("its parameters are {}", quoted.join(", "))
    };
    format!(
        "{name:?} is not a parameter of this route's path {:?}; {known}",
        params.pattern
    )
}

#[cfg(test)]
mod tests;
