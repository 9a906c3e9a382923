//! `scopegate explain`: what the proxy would do with one request, step by step, without
//! running the proxy. It runs the proxy's own decision ([`crate::decision`]) on the request
//! it is shown, with a token it verifies through a real [`Authenticator`] (or claims or
//! scopes it is given), and returns a structured [`Explanation`]; the CLI only prints it.
//!
//! It also phrases, per route, what a token needs ("a token from … for audience … with
//! scope …"), which `check --online` prints as well.

mod phrasing;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use crate::config::Config;
use crate::decision::{Head, Inputs, Target, decide};
use crate::error::{ChallengeContext, ProxyError};
use crate::mcp::rules::InspectionError;
use crate::metrics::Metrics;
use crate::policy::{Access, RouteSpec};
use crate::token::binding::Presented;
use crate::token::config::sender::DpopMode;
use crate::token::error::{AuthError, InvalidReason};
use crate::token::{Authenticator, Principal};
use phrasing::methods_text;
pub use phrasing::{Loaded, tool_rule_lines};
pub use report::{Decision, Explanation, RouteOutcome, TokenFacts};

/// How long `explain --token` waits for the issuers' keys before asking anyway.
pub const READY_WAIT: Duration = Duration::from_secs(10);

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
    /// The claims of a token whose signature is taken as verified: they go through the same
    /// claim rules as local verification (issuer, audience, `exp`/`nbf`/`iat`, scopes), so
    /// this is what the proxy would do with a well-signed token that carries them.
    Claims(serde_json::Map<String, serde_json::Value>),
}

/// One request as a client would send it.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    pub method: String,
    /// The request target: path, optionally with a query.
    pub target: String,
    /// The `Host` field line sent before `headers` (`new` sets `localhost`, as an HTTP/1.1
    /// client must send one, RFC 9112 §3.2); `None` sends none.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The body; MCP routes with tool rules, and method override checks of form bodies,
    /// read it.
    pub body: Option<Vec<u8>>,
}

impl RequestSpec {
    pub fn new(method: &str, target: &str) -> RequestSpec {
        RequestSpec {
            method: method.to_string(),
            target: target.to_string(),
            host: Some("localhost".to_string()),
            ..RequestSpec::default()
        }
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
        dpop: None,
        tool_rules: Vec::new(),
        claim_rules: Vec::new(),
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
    let allowed_reason = if decision.preflight {
        crate::cors::PREFLIGHT_REASON
    } else {
        "ok"
    };
    out.reason = decision
        .denial
        .as_ref()
        .or(decision.would_deny.as_ref())
        .map_or(allowed_reason, ProxyError::reason)
        .to_string();
    match &decision.denial {
        None => out.decision = allowed(&decision, credentials, &out),
        Some(denial) => {
            let route_scopes = decision.route_scopes();
            let ctx = ChallengeContext {
                realm: &config.auth.realm,
                resource_metadata: decision.resource_metadata(config),
                route_scopes: route_scopes.as_deref(),
                dpop: config.tokens.dpop.challenge(decision.dpop_mode(config)),
                scheme: decision.scheme,
            };
            let response = denial.clone().into_response(&ctx);
            let challenges: Vec<&str> = response
                .headers()
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            out.www_authenticate = (!challenges.is_empty()).then(|| challenges.join(", "));
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
    if let Some(host) = &spec.host {
        builder = builder.header(http::header::HOST, host.as_str());
    }
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
    principal: Result<Arc<Principal>, AuthError>,
    authenticator: Option<(Authenticator, Vec<tokio::task::JoinHandle<()>>)>,
    body: Bytes,
}

impl ExplainInputs {
    fn new(config: &Config, credentials: &Credentials, body: Vec<u8>) -> ExplainInputs {
        let unknown = AuthError::Invalid(InvalidReason::UnknownIssuer);
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
                        claims: Default::default(),
                        expires_at: u64::MAX,
                        confirmation: None,
                        issued_at: None,
                    })
                })
                .ok_or(unknown),
            Credentials::Claims(claims) => {
                Authenticator::new(&config.tokens, Metrics::new()).principal_from_claims(claims)
            }
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
    async fn authenticate(
        &mut self,
        presented: &Presented<'_>,
        digest: &[u8; 32],
    ) -> Result<Arc<Principal>, AuthError> {
        let Some((authenticator, _)) = &self.authenticator else {
            return self.principal.clone();
        };
        // Waits for the issuers' keys as a starting proxy would before it is ready.
        let deadline = Instant::now() + READY_WAIT;
        while !authenticator.is_ready() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        authenticator.authenticate_presented(presented, digest, None).await
    }

    async fn body(&mut self, limit: usize, _timeout: Duration) -> Result<Bytes, InspectionError> {
        if self.body.len() > limit {
            return Err(InspectionError::TooLarge);
        }
        Ok(self.body.clone())
    }
}

fn describe_route(loaded: &Loaded, decision: &crate::decision::Decision<'_>, out: &mut Explanation) {
    if let Some(path) = &decision.path {
        out.canonical = Some(Ok(path.as_str().to_string()));
    }
    out.dry_run = decision.dry_run;
    out.bound_audience = decision.bound_audience().map(str::to_string);
    out.dpop = match loaded.config.tokens.dpop.challenge(decision.dpop_mode(&loaded.config)) {
        Some((DpopMode::Required, algs)) if decision.needs_token() => Some(format!(
            "DPoP required: Authorization: DPoP with a DPoP-bound token and a proof signed with one of {algs}"
        )),
        Some((_, algs)) if decision.needs_token() => Some(format!(
            "DPoP allowed: a bearer token, or a DPoP-bound token with a proof signed with one of {algs}"
        )),
        _ => None,
    };
    out.tool_rules = decision.mcp.map(tool_rule_lines).unwrap_or_default();
    out.claim_rules = decision
        .route_spec()
        .map(|r| r.claim_rules.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    out.route = match decision.target {
        None if matches!(decision.denial, Some(ProxyError::NoRoute)) => RouteOutcome::NoRoute,
        None => RouteOutcome::NotRouted,
        Some(Target::Metadata | Target::ResourceMetadata(_)) => RouteOutcome::Metadata,
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
        Some(Target::Metadata | Target::ResourceMetadata(_)) => {
            let status = if out.method == "GET" { 200 } else { 405 };
            return Decision::Metadata { status };
        }
        Some(Target::UnmatchedDryRun) => "no route matched; dry run forwards it".to_string(),
        Some(Target::Route(r)) if decision.preflight => format!(
            "CORS preflight: route {} lets preflights through without a token; the upstream answers it",
            r.name
        ),
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
        ProxyError::Request(_) | ProxyError::Inspection(_) if denial.status() == http::StatusCode::BAD_REQUEST => {
            Decision::BadRequest {
                reason: denial.reason().to_string(),
            }
        }
        ProxyError::NoRoute => Decision::NotFound,
        ProxyError::Auth(AuthError::Missing) => Decision::TokenNeeded {
            needs: out.needs.clone().unwrap_or_default(),
        },
        ProxyError::Auth(AuthError::Malformed(_) | AuthError::Invalid(_)) => Decision::Unauthorized {
            status: denial.status().as_u16(),
            reason: denial.reason().into(),
        },
        ProxyError::InsufficientScope { scopes } => Decision::Forbidden {
            challenge: scopes.clone(),
        },
        ProxyError::ClaimMismatch { rule } => Decision::ClaimMismatch { rule: rule.clone() },
        ProxyError::Auth(AuthError::Unavailable(_)) => Decision::Unavailable {
            reason: denial.reason().into(),
        },
        other => Decision::Refused {
            status: other.status().as_u16(),
            reason: other.reason().into(),
        },
    }
}
