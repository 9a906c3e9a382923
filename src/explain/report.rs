//! What `explain` reports: each step of the decision for one request, and how it prints.

use std::fmt;

/// Which route the request reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    /// The request was refused before routing.
    NotRouted,
    /// scopegate answers the path itself (RFC 9728 metadata).
    Metadata,
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
    /// No route, but dry run forwards it (counted as would-deny).
    UnmatchedDryRun,
}

/// The verified facts of a token (`--token`, `--claims`).
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
    /// scopegate answers with its own metadata document (GET; 405 for other methods).
    Metadata { status: u16 },
    /// 400: the request is refused before routing (`code: message`).
    BadRequest { reason: String },
    /// 404: no route.
    NotFound,
    /// 401 without a token: what a token needs.
    TokenNeeded { needs: String },
    /// 401 (or 400 for a malformed token) with this reason code.
    Unauthorized { status: u16, reason: String },
    /// 403 `insufficient_scope`, naming these scopes in the challenge.
    Forbidden { challenge: String },
    /// 403 `claim_mismatch`: this claim rule of the route does not hold.
    ClaimMismatch { rule: String },
    /// 503: keys or introspection unavailable.
    Unavailable { reason: String },
    /// Any other refusal (413 for an inspected body over the limit).
    Refused { status: u16, reason: String },
}

impl Decision {
    /// The status the proxy itself answers; `None` when the request is forwarded.
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Metadata { status } => Some(*status),
            Decision::BadRequest { .. } => Some(400),
            Decision::NotFound => Some(404),
            Decision::TokenNeeded { .. } => Some(401),
            Decision::Unauthorized { status, .. } | Decision::Refused { status, .. } => Some(*status),
            Decision::Forbidden { .. } | Decision::ClaimMismatch { .. } => Some(403),
            Decision::Unavailable { .. } => Some(503),
        }
    }
}

/// Every step of the decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The method as sent (methods are case-sensitive).
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
    /// RFC 8707: the audience a token must carry on this (MCP) route.
    pub bound_audience: Option<String>,
    /// Where the route takes DPoP-bound tokens (RFC 9449): what it asks of them.
    pub dpop: Option<String>,
    /// The route's MCP tool rules, as `check` prints them.
    pub tool_rules: Vec<String>,
    /// The route's claim rules, as `check` prints them (all of them must hold).
    pub claim_rules: Vec<String>,
    /// Denials are only counted on this route (`mode = "dry_run"`).
    pub dry_run: bool,
    /// With `--scopes`: the granted scopes after implications.
    pub effective_scopes: Option<Vec<String>>,
    /// With `--token` or `--claims`, when it was valid.
    pub token: Option<TokenFacts>,
    pub decision: Decision,
    /// The stable reason code the access log and metrics carry (`ok` when allowed).
    pub reason: String,
    /// Dry run: the denial that would have been enforced.
    pub would_deny: Option<String>,
    /// The exact `WWW-Authenticate` header of a refusal.
    pub www_authenticate: Option<String>,
}

impl Explanation {
    /// The status scopegate answers itself, `None` when the upstream answers.
    pub fn status(&self) -> Option<u16> {
        self.decision.status()
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
            RouteOutcome::Metadata => writeln!(f, "route:       protected-resource metadata, answered by scopegate")?,
            RouteOutcome::Matched { name, pattern, methods } => {
                writeln!(f, "route:       {name} ({methods} {pattern})")?
            }
            RouteOutcome::NoRoute => writeln!(f, "route:       no route → 404 (auth.unmatched = \"deny\")")?,
            RouteOutcome::UnmatchedAuthenticated => {
                writeln!(f, "route:       no route; auth.unmatched = \"authenticated\"")?
            }
            RouteOutcome::UnmatchedDryRun => writeln!(f, "route:       no route; dry run forwards it")?,
        }
        if let Some(requirement) = &self.requirement {
            writeln!(f, "requires:    {requirement}")?;
        }
        if let Some(audience) = &self.bound_audience {
            writeln!(f, "audience:    the token's aud must include {audience} (RFC 8707)")?;
        }
        if let Some(dpop) = &self.dpop {
            writeln!(f, "dpop:        {dpop}")?;
        }
        for rule in &self.tool_rules {
            writeln!(f, "tool rule:   {rule}")?;
        }
        for rule in &self.claim_rules {
            writeln!(f, "claim rule:  {rule}")?;
        }
        if self.dry_run {
            writeln!(f, "mode:        dry run (denials are counted, not enforced)")?;
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
            Decision::Allow { reason } => writeln!(f, "decision:    allow → forwarded to the upstream ({reason})")?,
            Decision::Metadata { status } => writeln!(
                f,
                "decision:    {status}, answered by scopegate (metadata is read with GET)"
            )?,
            Decision::BadRequest { reason } => writeln!(f, "decision:    400 ({reason})")?,
            Decision::NotFound => writeln!(f, "decision:    404 (no route matches; the upstream is not called)")?,
            Decision::TokenNeeded { .. } => writeln!(
                f,
                "decision:    401 without a token; pass --token, --claims or --scopes to evaluate one"
            )?,
            Decision::Unauthorized { status, reason } => writeln!(f, "decision:    {status} ({reason})")?,
            Decision::Forbidden { challenge } => writeln!(
                f,
                "decision:    403 insufficient_scope (challenge names scope=\"{challenge}\")"
            )?,
            Decision::ClaimMismatch { rule } => writeln!(
                f,
                "decision:    403 claim_mismatch (claim rule {rule} does not hold; no challenge is sent)"
            )?,
            Decision::Unavailable { reason } => {
                writeln!(f, "decision:    503 ({reason}: the token was not judged; retry later)")?
            }
            Decision::Refused { status, reason } => writeln!(f, "decision:    {status} ({reason})")?,
        }
        if let Some(challenge) = &self.www_authenticate {
            writeln!(f, "challenge:   WWW-Authenticate: {challenge}")?;
        }
        writeln!(f, "reason:      {}", self.reason)
    }
}
