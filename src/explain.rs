//! `scopegate explain`: what the proxy would do with one request, step by step, without
//! running the proxy. It uses the same pieces as the request path (canonicalization, the
//! route table, the implication map, the [`Authenticator`]) and returns a structured
//! [`Explanation`]; the CLI only prints it.
//!
//! It also phrases, per route, what a token needs ("a token from … for audience … with
//! scope …"), which `check --online` prints as well.

use std::fmt;
use std::time::{Duration, Instant};

use http::Method;

use crate::canonical::canonicalize_path;
use crate::config::{Config, ConfigError, UnmatchedPolicy};
use crate::metrics::Metrics;
use crate::policy::{Access, RouteSpec};
use crate::token::{Authenticator, token_digest};

/// How long `explain --token` waits for the issuers' keys before asking anyway.
pub const READY_WAIT: Duration = Duration::from_secs(10);

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

    /// "a token from ISS for audience AUD" for every configured issuer.
    fn token_from(&self) -> String {
        let issuers = &self.config.tokens.issuers;
        if issuers.is_empty() {
            return "a token (no issuer is configured, so none can be valid)".into();
        }
        let parts: Vec<String> = issuers
            .iter()
            .map(|i| format!("{} for audience {}", i.issuer, i.audiences.join(" or ")))
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
        if route.access == Access::Public {
            return "public: no token needed".into();
        }
        let Access::Protected(requirement) = &route.access else {
            return "public: no token needed".into();
        };
        let alternatives = requirement.alternatives();
        if alternatives.is_empty() {
            return format!("{} (any scopes)", self.token_from());
        }
        let phrases: Vec<String> = alternatives
            .iter()
            .map(|set| {
                let scopes: Vec<String> = set.iter().map(|s| self.quoted_with_implications(s.as_str())).collect();
                let noun = if set.len() == 1 { "scope" } else { "scopes" };
                format!("with {noun} {}", scopes.join(" and "))
            })
            .collect();
        format!("{} {}", self.token_from(), phrases.join(", or "))
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
            UnmatchedPolicy::Authenticated => format!("any other request: {} (any scopes)", self.token_from()),
        });
        lines
    }
}

fn methods_text(route: &RouteSpec) -> String {
    if route.methods.is_empty() {
        "*".into()
    } else {
        route.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
    }
}

/// What the caller presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing: explain what a token needs.
    None,
    /// A hypothetical token holding these scopes (implications are applied).
    Scopes(Vec<String>),
    /// A real token, validated with the real [`Authenticator`] (this fetches keys or
    /// introspects over the network).
    Token(String),
}

/// Which route the request reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// The path was rejected before routing.
    NotRouted,
    Matched {
        name: String,
        pattern: String,
        /// `*` for every method.
        methods: String,
    },
    /// No route; `auth.unmatched = "deny"`.
    NoRoute,
    /// No route; `auth.unmatched = "authenticated"` forwards any valid token.
    UnmatchedAuthenticated,
}

/// The verified facts of a token (`--token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
}

/// What the proxy would answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded to the upstream.
    Allow { reason: String },
    /// 400: the path (or method) is refused before routing.
    BadRequest { reason: String },
    /// 404: no route.
    NotFound,
    /// No credentials given to `explain`: the proxy answers 401 without a token.
    TokenNeeded { needs: String },
    /// 401 (or 400 for a malformed token) with this reason code.
    Unauthorized { status: u16, reason: String },
    /// 403 `insufficient_scope`, naming these scopes in the challenge.
    Forbidden { challenge: String },
    /// 503: keys or introspection unavailable.
    Unavailable { reason: String },
}

impl Decision {
    /// The status the proxy itself answers; `None` when the request is forwarded.
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::Allow { .. } => None,
            Decision::BadRequest { .. } => Some(400),
            Decision::NotFound => Some(404),
            Decision::TokenNeeded { .. } => Some(401),
            Decision::Unauthorized { status, .. } => Some(*status),
            Decision::Forbidden { .. } => Some(403),
            Decision::Unavailable { .. } => Some(503),
        }
    }
}

/// Every step of the decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub method: String,
    /// The path as given (query removed).
    pub path: String,
    /// The canonical path, or why it cannot be canonicalized (`code: message`); `None`
    /// when the method was refused first.
    pub canonical: Option<Result<String, String>>,
    pub route: RouteOutcome,
    /// The route's requirement as `check` prints it (`public`, `scopes: read | write + ops`).
    pub requirement: Option<String>,
    /// What a token needs for this request, when one is needed.
    pub needs: Option<String>,
    /// With `--scopes`: the granted scopes after implications.
    pub effective_scopes: Option<Vec<String>>,
    /// With `--token`, when it was valid.
    pub token: Option<TokenFacts>,
    pub decision: Decision,
}

/// Explains what the proxy would do with `METHOD PATH` and `credentials`.
pub async fn explain(loaded: &Loaded, method: &str, path: &str, credentials: &Credentials) -> Explanation {
    let config = &loaded.config;
    let path = path.split(['?', '#']).next().unwrap_or_default().to_string();
    let mut out = Explanation {
        method: method.to_ascii_uppercase(),
        path: path.clone(),
        canonical: None,
        route: RouteOutcome::NotRouted,
        requirement: None,
        needs: None,
        effective_scopes: None,
        token: None,
        decision: Decision::NotFound,
    };
    let parsed = Method::from_bytes(out.method.as_bytes())
        .ok()
        .filter(|_| method.bytes().all(|b| b.is_ascii_alphabetic()));
    let Some(parsed) = parsed else {
        out.decision = Decision::BadRequest {
            reason: format!("{method:?} is not an HTTP method"),
        };
        return out;
    };
    if parsed == Method::CONNECT {
        out.decision = Decision::BadRequest {
            reason: "connect_not_allowed: CONNECT is never proxied".into(),
        };
        return out;
    }
    let canonical = match canonicalize_path(&path, config.forwarding.canonical) {
        Ok(canonical) => canonical,
        Err(e) => {
            let reason = format!("{}: {e}", e.code());
            out.canonical = Some(Err(reason.clone()));
            out.decision = Decision::BadRequest { reason };
            return out;
        }
    };
    out.canonical = Some(Ok(canonical.as_str().to_string()));
    let route = config.routes.lookup(&parsed, &canonical);
    match route {
        Some(r) => {
            out.route = RouteOutcome::Matched {
                name: r.name.clone(),
                pattern: r.pattern.as_str().to_string(),
                methods: methods_text(r),
            };
            out.requirement = Some(match &r.access {
                Access::Public => "public".into(),
                Access::Protected(req) => format!("scopes: {req}"),
            });
            if r.access == Access::Public {
                out.decision = Decision::Allow {
                    reason: "public route: no token is checked (identity headers are still stripped)".into(),
                };
                return out;
            }
        }
        None if config.auth.unmatched == UnmatchedPolicy::Authenticated => {
            out.route = RouteOutcome::UnmatchedAuthenticated;
            out.requirement = Some("any valid token (auth.unmatched = \"authenticated\")".into());
        }
        None => {
            out.route = RouteOutcome::NoRoute;
            out.decision = Decision::NotFound;
            return out;
        }
    }
    let needs = match route {
        Some(r) => loaded.token_needs(r),
        None => format!("{} (any scopes)", loaded.token_from()),
    };
    out.needs = Some(needs.clone());
    let requirement = route.and_then(|r| match &r.access {
        Access::Protected(req) => Some(req),
        Access::Public => None,
    });
    let implications = config.routes.implications();
    let granted = match credentials {
        Credentials::None => {
            out.decision = Decision::TokenNeeded { needs };
            return out;
        }
        Credentials::Scopes(scopes) => scopes.clone(),
        Credentials::Token(token) => match authenticate(config, token).await {
            Ok(facts) => {
                let scopes = facts.scopes.clone();
                out.token = Some(facts);
                scopes
            }
            Err(decision) => {
                out.decision = decision;
                return out;
            }
        },
    };
    let expanded = implications.expand(granted.iter().map(String::as_str));
    if matches!(credentials, Credentials::Scopes(_)) {
        out.effective_scopes = Some(expanded.iter().map(|s| s.as_str().to_string()).collect());
    }
    let what = if matches!(credentials, Credentials::Token(_)) {
        "the token is valid"
    } else {
        "given a valid token"
    };
    out.decision = match requirement {
        None => Decision::Allow {
            reason: format!("{what}; no route matched and auth.unmatched = \"authenticated\" forwards any valid token"),
        },
        Some(req) if req.is_empty() => Decision::Allow {
            reason: format!("{what}; the route needs no particular scope"),
        },
        Some(req) if req.is_satisfied_by(&expanded) => Decision::Allow {
            reason: format!("{what}, its scopes (after implications) satisfy {req}"),
        },
        Some(req) => Decision::Forbidden {
            challenge: req.challenge_scopes(),
        },
    };
    out
}

/// Validates `token` with a fresh [`Authenticator`]: waits up to [`READY_WAIT`] for keys,
/// then authenticates as the proxy would.
async fn authenticate(config: &Config, token: &str) -> Result<TokenFacts, Decision> {
    let token = token.trim();
    let authenticator = Authenticator::new(&config.tokens, Metrics::new());
    let refreshers = authenticator.spawn_refreshers();
    let deadline = Instant::now() + READY_WAIT;
    while !authenticator.is_ready() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let result = authenticator.authenticate(token, &token_digest(token)).await;
    for handle in refreshers {
        handle.abort();
    }
    match result {
        Ok(principal) => Ok(TokenFacts {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
            client_id: principal.client_id.clone(),
            scopes: principal.scopes.clone(),
            audiences: principal.audiences.clone(),
        }),
        Err(error @ crate::error::ProxyError::AuthUnavailable { .. }) => Err(Decision::Unavailable {
            reason: error.reason().into(),
        }),
        Err(error) => Err(Decision::Unauthorized {
            status: error.status().as_u16(),
            reason: error.reason().into(),
        }),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "request:     {} {}", self.method, self.path)?;
        match &self.canonical {
            Some(Ok(path)) => writeln!(f, "canonical:   {path}")?,
            Some(Err(reason)) => writeln!(f, "canonical:   rejected ({reason})")?,
            None => writeln!(f, "canonical:   not evaluated")?,
        }
        match &self.route {
            RouteOutcome::NotRouted => writeln!(f, "route:       not evaluated")?,
            RouteOutcome::Matched { name, pattern, methods } => {
                writeln!(f, "route:       {name} ({methods} {pattern})")?
            }
            RouteOutcome::NoRoute => writeln!(f, "route:       no route → 404 (auth.unmatched = \"deny\")")?,
            RouteOutcome::UnmatchedAuthenticated => {
                writeln!(f, "route:       no route; auth.unmatched = \"authenticated\"")?
            }
        }
        if let Some(requirement) = &self.requirement {
            writeln!(f, "requires:    {requirement}")?;
        }
        if let Some(needs) = &self.needs {
            writeln!(f, "token needs: {needs}")?;
        }
        if let Some(scopes) = &self.effective_scopes {
            writeln!(f, "scopes:      {} (after implications)", scopes.join(" "))?;
        }
        if let Some(token) = &self.token {
            writeln!(
                f,
                "token:       valid; issuer {}, subject {}, client {}, audience {}, scopes \"{}\"",
                token.issuer,
                token.subject.as_deref().unwrap_or("-"),
                token.client_id.as_deref().unwrap_or("-"),
                token.audiences.join(" "),
                token.scopes.join(" ")
            )?;
        }
        match &self.decision {
            Decision::Allow { reason } => writeln!(f, "decision:    allow → forwarded to the upstream ({reason})"),
            Decision::BadRequest { reason } => writeln!(f, "decision:    400 ({reason})"),
            Decision::NotFound => writeln!(f, "decision:    404 (no route matches; the upstream is not called)"),
            Decision::TokenNeeded { .. } => writeln!(
                f,
                "decision:    401 without a token; pass --token or --scopes to evaluate one"
            ),
            Decision::Unauthorized { status, reason } => writeln!(f, "decision:    {status} ({reason})"),
            Decision::Forbidden { challenge } => writeln!(
                f,
                "decision:    403 insufficient_scope (challenge names scope=\"{challenge}\")"
            ),
            Decision::Unavailable { reason } => {
                writeln!(f, "decision:    503 ({reason}: the token was not judged; retry later)")
            }
        }
    }
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
