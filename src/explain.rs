//! `scopegate explain`: what the proxy would do with one request, step by step, without
//! running the proxy. It runs the proxy's own decision ([`crate::decision`]) on the request
//! it is shown, with a token it verifies through a real [`Authenticator`] (or claims or
//! scopes it is given), and returns a structured [`Explanation`]; the CLI only prints it.
//!
//! It also phrases, per route, what a token needs ("a token from … for audience … with
//! scope …"), which `check --online` prints as well.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use crate::config::{Config, ConfigError, UnmatchedPolicy};
use crate::decision::{Head, Inputs, Target, decide};
use crate::error::{ChallengeContext, ProxyError};
use crate::mcp::McpRoute;
use crate::metrics::Metrics;
use crate::policy::{Access, RouteSpec};
use crate::token::{Authenticator, Principal};

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

    /// "a token from ISS for audience AUD" for every configured issuer: on an MCP route the
    /// route's resource only (RFC 8707), elsewhere the issuer's audiences that are not MCP
    /// resources.
    fn token_from(&self, route: Option<&RouteSpec>) -> String {
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

fn methods_text(route: &RouteSpec) -> String {
    if route.methods.is_empty() {
        "*".into()
    } else {
        route.methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
    }
}

/// What the caller presents.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    /// Nothing: explain what a token needs.
    None,
    /// A hypothetical token of the first issuer, for every audience it accepts, holding these
    /// scopes (implications are applied).
    Scopes(Vec<String>),
    /// A real token, validated with the real [`Authenticator`] (this fetches keys or
    /// introspects over the network).
    Token(String),
    /// The claims of a token taken as verified (`iss`, `sub`, `client_id`/`azp`, `scope`/`scp`,
    /// `aud`, `exp`): what the proxy would do with a token that carries them.
    Claims(serde_json::Map<String, serde_json::Value>),
}

/// One request as a client would send it.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    pub method: String,
    /// The request target: path, optionally with a query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The body; only an MCP route with tool rules reads it.
    pub body: Option<Vec<u8>>,
}

impl RequestSpec {
    pub fn new(method: &str, target: &str) -> RequestSpec {
        RequestSpec {
            method: method.to_string(),
            target: target.to_string(),
            ..RequestSpec::default()
        }
    }
}

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
            Decision::Forbidden { .. } => Some(403),
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
    /// The route's MCP tool rules, as `check` prints them.
    pub tool_rules: Vec<String>,
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

/// Explains what the proxy would do with `METHOD PATH` and `credentials`.
pub async fn explain(loaded: &Loaded, method: &str, path: &str, credentials: &Credentials) -> Explanation {
    explain_request(loaded, &RequestSpec::new(method, path), credentials).await
}

/// Explains what the proxy would do with `request` and `credentials`: the proxy's own
/// decision, run on this request.
pub async fn explain_request(loaded: &Loaded, request: &RequestSpec, credentials: &Credentials) -> Explanation {
    let config = &loaded.config;
    let path = request.target.split(['?', '#']).next().unwrap_or_default().to_string();
    let mut out = Explanation {
        method: request.method.clone(),
        path,
        canonical: None,
        route: RouteOutcome::NotRouted,
        requirement: None,
        needs: None,
        bound_audience: None,
        tool_rules: Vec::new(),
        dry_run: false,
        effective_scopes: None,
        token: None,
        decision: Decision::NotFound,
        reason: String::new(),
        would_deny: None,
        www_authenticate: None,
    };
    let built = match build_request(request, credentials) {
        Ok(built) => built,
        Err(reason) => {
            out.decision = Decision::BadRequest { reason };
            out.reason = "bad_request".into();
            return out;
        }
    };
    let mut inputs = ExplainInputs::new(config, credentials, request.body.clone().unwrap_or_default());
    let head = Head::of(&built);
    let decision = decide(config, &head, &mut inputs).await;
    inputs.stop();
    describe_route(loaded, &decision, &mut out);
    if let Credentials::Scopes(scopes) = credentials {
        let expanded = config.routes.implications().expand(scopes.iter().map(String::as_str));
        out.effective_scopes = Some(expanded.iter().map(|s| s.as_str().to_string()).collect());
    }
    out.token = decision.verified.as_deref().and_then(|p| {
        (!matches!(credentials, Credentials::Scopes(_))).then(|| TokenFacts {
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            client_id: p.client_id.clone(),
            scopes: p.scopes.clone(),
            audiences: p.audiences.clone(),
        })
    });
    out.would_deny = decision.would_deny.as_ref().map(|e| e.reason().to_string());
    out.reason = decision
        .denial
        .as_ref()
        .or(decision.would_deny.as_ref())
        .map_or("ok", ProxyError::reason)
        .to_string();
    match &decision.denial {
        None => out.decision = allowed(&decision, credentials, &out),
        Some(denial) => {
            let route_scopes = decision.route_scopes();
            let ctx = ChallengeContext {
                realm: &config.auth.realm,
                resource_metadata: decision.resource_metadata(config),
                route_scopes: route_scopes.as_deref(),
            };
            let response = denial.clone().into_response(&ctx);
            out.www_authenticate = response
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            out.decision = refused(denial, &out);
            if let ProxyError::BadPath(e) = denial {
                out.canonical = Some(Err(format!("{}: {e}", e.code())));
            }
        }
    }
    out
}

/// The request as the proxy would receive it: the given headers, and the token (or a
/// stand-in for given claims or scopes) in an `Authorization` header of its own.
fn build_request(spec: &RequestSpec, credentials: &Credentials) -> Result<http::Request<Full<Bytes>>, String> {
    let method =
        Method::from_bytes(spec.method.as_bytes()).map_err(|_| format!("{:?} is not an HTTP method", spec.method))?;
    let uri: http::Uri = spec
        .target
        .split('#')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("{:?} is not a request target: {e}", spec.target))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in &spec.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let token = match credentials {
        Credentials::None => None,
        Credentials::Token(token) => Some(token.trim().to_string()),
        Credentials::Scopes(_) | Credentials::Claims(_) => Some(STAND_IN.to_string()),
    };
    if let Some(token) = token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = Full::new(Bytes::from(spec.body.clone().unwrap_or_default()));
    builder
        .body(body)
        .map_err(|e| format!("the request cannot be built: {e}"))
}

/// The bearer value that stands for hypothetical scopes or given claims.
const STAND_IN: &str = "explain-stand-in";

/// `explain`'s side of the decision: a token judged by a fresh [`Authenticator`], or the
/// principal that given claims or scopes describe; the body it was shown.
struct ExplainInputs {
    principal: Result<Arc<Principal>, ProxyError>,
    authenticator: Option<(Authenticator, Vec<tokio::task::JoinHandle<()>>)>,
    body: Bytes,
}

impl ExplainInputs {
    fn new(config: &Config, credentials: &Credentials, body: Vec<u8>) -> ExplainInputs {
        let unknown = ProxyError::InvalidToken {
            reason: "unknown_issuer",
            description: "the token was not issued by a trusted issuer",
        };
        let principal = match credentials {
            Credentials::Scopes(scopes) => config
                .tokens
                .issuers
                .first()
                .map(|issuer| {
                    Arc::new(Principal {
                        issuer: issuer.issuer.clone(),
                        subject: None,
                        client_id: None,
                        scopes: scopes.clone(),
                        audiences: issuer.audiences.clone(),
                        claims: serde_json::Map::new(),
                        expires_at: u64::MAX,
                    })
                })
                .ok_or(unknown),
            Credentials::Claims(claims) => principal_from_claims(config, claims).ok_or(unknown),
            Credentials::None | Credentials::Token(_) => Err(unknown),
        };
        let authenticator = matches!(credentials, Credentials::Token(_)).then(|| {
            let authenticator = Authenticator::new(&config.tokens, Metrics::new());
            let refreshers = authenticator.spawn_refreshers();
            (authenticator, refreshers)
        });
        ExplainInputs {
            principal,
            authenticator,
            body: Bytes::from(body),
        }
    }

    fn stop(&mut self) {
        if let Some((_, refreshers)) = self.authenticator.take() {
            refreshers.iter().for_each(tokio::task::JoinHandle::abort);
        }
    }
}

impl Inputs for ExplainInputs {
    async fn authenticate(&mut self, token: &str, digest: &[u8; 32]) -> Result<Arc<Principal>, ProxyError> {
        let Some((authenticator, _)) = &self.authenticator else {
            return self.principal.clone();
        };
        // Waits for the issuers' keys as a starting proxy would before it is ready.
        let deadline = Instant::now() + READY_WAIT;
        while !authenticator.is_ready() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        authenticator.authenticate(token, digest).await
    }

    async fn body(&mut self, limit: usize, _timeout: Duration) -> Result<Bytes, ProxyError> {
        if self.body.len() > limit {
            return Err(ProxyError::PayloadTooLarge);
        }
        Ok(self.body.clone())
    }
}

/// The principal given claims describe, if their `iss` is a configured issuer.
fn principal_from_claims(
    config: &Config,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Option<Arc<Principal>> {
    use serde_json::Value;
    let issuer = claims.get("iss").and_then(Value::as_str)?;
    config.tokens.issuers.iter().find(|i| i.issuer == issuer)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        }
    };
    let mut scopes = list(claims.get("scope"));
    scopes.extend(list(claims.get("scp")));
    Some(Arc::new(Principal {
        issuer: issuer.to_string(),
        subject: text("sub"),
        client_id: text("client_id").or_else(|| text("azp")),
        scopes,
        audiences: match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.clone()],
            other => list(other),
        },
        claims: claims.clone(),
        expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(u64::MAX),
    }))
}

fn describe_route(loaded: &Loaded, decision: &crate::decision::Decision<'_>, out: &mut Explanation) {
    if let Some(path) = &decision.path {
        out.canonical = Some(Ok(path.as_str().to_string()));
    }
    out.dry_run = decision.dry_run;
    out.bound_audience = decision.bound_audience().map(str::to_string);
    out.tool_rules = decision.mcp.map(tool_rule_lines).unwrap_or_default();
    out.route = match decision.target {
        None if matches!(decision.denial, Some(ProxyError::NoRoute)) => RouteOutcome::NoRoute,
        None => RouteOutcome::NotRouted,
        Some(Target::Metadata) => RouteOutcome::Metadata,
        Some(Target::UnmatchedAuthenticated) => RouteOutcome::UnmatchedAuthenticated,
        Some(Target::UnmatchedDryRun) => RouteOutcome::UnmatchedDryRun,
        Some(Target::Route(r)) => RouteOutcome::Matched {
            name: r.name.clone(),
            pattern: r.pattern.as_str().to_string(),
            methods: methods_text(r),
        },
    };
    match decision.target {
        Some(Target::Route(r)) => {
            out.requirement = Some(match &r.access {
                Access::Public => "public".into(),
                Access::Protected(req) => format!("scopes: {req}"),
            });
            if r.access != Access::Public {
                out.needs = Some(loaded.token_needs(r));
            }
        }
        Some(Target::UnmatchedAuthenticated) => {
            out.requirement = Some("any valid token (auth.unmatched = \"authenticated\")".into());
            out.needs = Some(format!("{} (any scopes)", loaded.token_from(None)));
        }
        _ => {}
    }
}

fn allowed(decision: &crate::decision::Decision<'_>, credentials: &Credentials, out: &Explanation) -> Decision {
    let what = match credentials {
        Credentials::Token(_) => "the token is valid",
        Credentials::Claims(_) => "given a token with these claims",
        _ => "given a valid token",
    };
    let reason = match decision.target {
        Some(Target::Metadata) => {
            let status = if out.method == "GET" { 200 } else { 405 };
            return Decision::Metadata { status };
        }
        Some(Target::UnmatchedDryRun) => "no route matched; dry run forwards it".to_string(),
        _ if decision.would_deny.is_some() => format!(
            "dry run: would have been denied ({}), forwarded",
            out.would_deny.as_deref().unwrap_or_default()
        ),
        Some(Target::Route(r)) if r.access == Access::Public => {
            "public route: no token is checked (identity headers are still stripped)".into()
        }
        Some(Target::UnmatchedAuthenticated) => {
            format!("{what}; no route matched and auth.unmatched = \"authenticated\" forwards any valid token")
        }
        Some(Target::Route(RouteSpec {
            access: Access::Protected(req),
            ..
        })) if req.is_empty() => format!("{what}; the route needs no particular scope"),
        Some(Target::Route(RouteSpec {
            access: Access::Protected(req),
            ..
        })) => format!("{what}, its scopes (after implications) satisfy {req}"),
        _ => what.to_string(),
    };
    Decision::Allow { reason }
}

fn refused(denial: &ProxyError, out: &Explanation) -> Decision {
    match denial {
        ProxyError::BadPath(e) => Decision::BadRequest {
            reason: format!("{}: {e}", e.code()),
        },
        ProxyError::BadRequest(code) => Decision::BadRequest {
            reason: (*code).to_string(),
        },
        ProxyError::NoRoute => Decision::NotFound,
        ProxyError::MissingToken => Decision::TokenNeeded {
            needs: out.needs.clone().unwrap_or_default(),
        },
        ProxyError::InvalidRequest(_) | ProxyError::InvalidToken { .. } => Decision::Unauthorized {
            status: denial.status().as_u16(),
            reason: denial.reason().into(),
        },
        ProxyError::InsufficientScope { scopes } => Decision::Forbidden {
            challenge: scopes.clone(),
        },
        ProxyError::AuthUnavailable { .. } => Decision::Unavailable {
            reason: denial.reason().into(),
        },
        other => Decision::Refused {
            status: other.status().as_u16(),
            reason: other.reason().into(),
        },
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
        for rule in &self.tool_rules {
            writeln!(f, "tool rule:   {rule}")?;
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
scopes = ["read", "mcp"]
any_scopes = [["admin"]]
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
