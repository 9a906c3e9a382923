//! The one decision (DESIGN §1–2), shared by the proxy and `scopegate explain`: from the
//! compiled config, the request head as sent and what the token turned out to be, it settles
//! the route, whether a CORS preflight passes without a token, every scope the operation
//! needs (route, implications, MCP tool rules), the route's claim rules, RFC 8707 audience
//! binding, the dry-run verdict, and the status and challenge of a refusal.
//!
//! The steps are pure; the two things that need I/O — judging a token and reading a body
//! whose JSON-RPC calls must be inspected — come through [`Inputs`], which the proxy backs
//! with the [`Authenticator`](crate::token::Authenticator) and the client's body, and
//! `explain` with a token it verifies (or claims it is given) and a body it is shown. So the
//! two cannot drift apart: they run this code, in this order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

use crate::canonical::{CanonicalPath, RequestError, canonicalize_path};
use crate::config::{Config, UnmatchedPolicy};
use crate::cors::preflight_method;
use crate::error::ProxyError;
use crate::hygiene;
use crate::identity::identity_headers;
use crate::mcp::McpRoute;
use crate::mcp::rules::{self, InspectionError, Verdict};
use crate::policy::claims::first_broken;
use crate::policy::{Access, EnforcementMode, RouteSpec};
use crate::resource::ResourceDocument;
use crate::token::binding::{Presented, Scheme};
use crate::token::config::sender::DpopMode;
use crate::token::error::AuthError;
use crate::token::{Principal, fingerprint, token_digest};

mod head;

use head::declared_length;
pub use head::{Head, TlsSide};

type AuthResult = Result<Arc<Principal>, ProxyError>;

/// Where a request goes, decided before any token is read.
#[derive(Debug, Clone, Copy)]
pub enum Target<'c> {
    /// RFC 9728 metadata of an MCP resource (or mirrored RFC 8414 metadata), answered by
    /// scopegate itself.
    Metadata,
    /// The RFC 9728 document of a `[[resource]]`, answered by scopegate itself.
    ResourceMetadata(&'c ResourceDocument),
    Route(&'c RouteSpec),
    /// No route matched, but `auth.unmatched = "authenticated"` lets any valid token through.
    UnmatchedAuthenticated,
    /// No route matched and the global mode is dry run: forwarded, counted as would-deny.
    UnmatchedDryRun,
}

/// The I/O a decision needs, supplied by its caller.
pub trait Inputs {
    /// Judges the token a request presents, and for a sender-constrained one whether the
    /// request holds it (`digest` is the token's SHA-256, the cache key).
    fn authenticate(
        &mut self,
        presented: &Presented<'_>,
        digest: &[u8; 32],
    ) -> impl Future<Output = Result<Arc<Principal>, AuthError>> + Send;

    /// The whole body of a request whose JSON-RPC calls must be inspected, at most `limit`
    /// bytes, received within `timeout`.
    fn body(&mut self, limit: usize, timeout: Duration) -> impl Future<Output = Result<Bytes, InspectionError>> + Send;
}

/// Everything decided about one request, step by step.
#[derive(Debug)]
pub struct Decision<'c> {
    /// The canonical path; `None` when the request was refused before canonicalization.
    pub path: Option<CanonicalPath>,
    /// `None` until routed (or when refused before routing).
    pub target: Option<Target<'c>>,
    /// The MCP endpoint the route is, if it is one.
    pub mcp: Option<&'c McpRoute>,
    /// The `[[resource]]` a non-MCP target belongs to, if one covers it.
    pub resource: Option<&'c ResourceDocument>,
    /// Denials are recorded in `would_deny` and the request goes on.
    pub dry_run: bool,
    /// A CORS preflight that the route lets through without a token (`bypass_preflight`):
    /// nothing after routing is checked and it is forwarded as it came.
    pub preflight: bool,
    /// Log fingerprint of the presented token.
    pub token_fingerprint: Option<String>,
    /// The scheme the token was presented with (`Bearer` or `DPoP`).
    pub scheme: Option<Scheme>,
    /// The token as it was verified, whatever came after.
    pub verified: Option<Arc<Principal>>,
    /// The identity forwarded to the upstream (none when its token was refused).
    pub principal: Option<Arc<Principal>>,
    /// The identity headers told to the upstream, computed from `principal`.
    pub identity: Vec<(HeaderName, HeaderValue)>,
    /// A body that was read to inspect its calls; it is forwarded as it was received.
    pub body: Option<Bytes>,
    /// Dry run: the first denial that was not enforced.
    pub would_deny: Option<ProxyError>,
    /// The enforced refusal; `None` when the request is answered as decided.
    pub denial: Option<ProxyError>,
}

/// Runs the whole decision: [`Decision::route`], then [`Decision::finish`].
pub async fn decide<'c>(config: &'c Config, head: &Head<'_>, inputs: &mut impl Inputs) -> Decision<'c> {
    let mut decision = Decision::route(config, head);
    decision.finish(config, head, inputs).await;
    decision
}

impl<'c> Decision<'c> {
    /// The steps before any token is read: method, `Host`, method override parameters,
    /// canonical path, metadata, route.
    pub fn route(config: &'c Config, head: &Head<'_>) -> Decision<'c> {
        let mut decision = Decision {
            path: None,
            target: None,
            mcp: None,
            resource: None,
            dry_run: false,
            preflight: false,
            token_fingerprint: None,
            scheme: None,
            verified: None,
            principal: None,
            identity: Vec::new(),
            body: None,
            would_deny: None,
            denial: None,
        };
        if let Err(denial) = decision.route_steps(config, head) {
            decision.denial = Some(denial);
        }
        decision
    }

    /// The steps after routing: authenticate, admit (audience, scopes, claim rules), MCP
    /// tool rules.
    pub async fn finish(&mut self, config: &Config, head: &Head<'_>, inputs: &mut impl Inputs) {
        if self.denial.is_some() || self.preflight || self.is_metadata() {
            return;
        }
        if let Err(denial) = self.finish_steps(config, head, inputs).await {
            self.denial = Some(denial);
        }
    }

    fn route_steps(&mut self, config: &'c Config, head: &Head<'_>) -> Result<(), ProxyError> {
        let path = canonicalize(config, head)?;
        let metadata = match config.resources.document_at(path.as_str()) {
            Some(document) => Some(Target::ResourceMetadata(document)),
            None => config.mcp.is_metadata_path(path.as_str()).then_some(Target::Metadata),
        };
        self.path = Some(path);
        if metadata.is_some() {
            self.target = metadata;
            return Ok(());
        }
        if let Some(route) = self.path.as_ref().and_then(|p| preflight_route(config, head, p)) {
            self.target = Some(Target::Route(route));
            self.preflight = true;
            self.mcp = config.mcp.route(&route.name);
            return Ok(());
        }
        let global_dry_run = config.auth.mode == EnforcementMode::DryRun;
        let routed = match self.path.as_ref().and_then(|p| config.routes.lookup(head.method, p)) {
            Some(route) => Ok(Target::Route(route)),
            None if config.auth.unmatched == UnmatchedPolicy::Authenticated => Ok(Target::UnmatchedAuthenticated),
            None => Err(ProxyError::NoRoute),
        };
        self.dry_run = global_dry_run;
        let target = self.unless_dry_run(routed, |_| Target::UnmatchedDryRun)?;
        self.target = Some(target);
        if let Target::Route(route) = target {
            self.dry_run = route.mode.unwrap_or(config.auth.mode) == EnforcementMode::DryRun;
            self.mcp = config.mcp.route(&route.name);
        }
        self.resource = match target {
            Target::Route(route) if self.mcp.is_none() => config.resources.for_route(&route.name),
            Target::UnmatchedAuthenticated => config.resources.for_unmatched(),
            _ => None,
        };
        Ok(())
    }

    async fn finish_steps(
        &mut self,
        config: &Config,
        head: &Head<'_>,
        inputs: &mut impl Inputs,
    ) -> Result<(), ProxyError> {
        if self.needs_token() {
            let authenticated = self.authenticate(config, head, inputs).await;
            self.verified = self.unless_dry_run(authenticated.map(Some), |_| None)?;
        }
        let admitted = self.admit(config);
        let verified = self.verified.clone();
        self.principal = self.unless_dry_run(admitted, |denial| {
            // A token for another resource lends no identity, even in a dry run.
            verified.filter(|_| !matches!(denial, ProxyError::Auth(AuthError::Invalid(_))))
        })?;
        // DESIGN §3.10, enforced in dry runs too: a dry run forwards, and what it forwards
        // must not carry an altered identity.
        if let Some(principal) = &self.principal {
            self.identity = identity_headers(principal, &config.identity)?;
        }
        self.check_form(config, head, inputs).await?;
        self.inspect_calls(config, head, inputs).await
    }

    /// Method override in a form body: a body declared form-encoded is read (at most
    /// `forwarding.method_override_form_limit`, else 413) and refused if it names an
    /// override parameter. The body read is forwarded as it was received.
    async fn check_form(
        &mut self,
        config: &Config,
        head: &Head<'_>,
        inputs: &mut impl Inputs,
    ) -> Result<(), ProxyError> {
        let overrides = &config.forwarding.method_override;
        if !head.has_body || !overrides.reads_body(head.headers) {
            return Ok(());
        }
        let body = self
            .read_body(head, inputs, overrides.form_limit, config.listener.header_read_timeout)
            .await?;
        if overrides.named_in(&body) {
            return Err(RequestError::MethodOverride.into());
        }
        self.body = Some(body);
        Ok(())
    }

    /// The whole body, at most `limit` bytes (else 413, before reading when its declared
    /// length says so): the one read earlier by another check, or read now.
    async fn read_body(
        &mut self,
        head: &Head<'_>,
        inputs: &mut impl Inputs,
        limit: usize,
        timeout: Duration,
    ) -> Result<Bytes, InspectionError> {
        if declared_length(head.headers).is_some_and(|len| len > limit as u64) {
            return Err(InspectionError::TooLarge);
        }
        match self.body.take() {
            Some(read) if read.len() > limit => Err(InspectionError::TooLarge),
            Some(read) => Ok(read),
            None => inputs.body(limit, timeout).await,
        }
    }

    /// Whether the route asks for a token at all.
    pub fn needs_token(&self) -> bool {
        match self.target {
            Some(Target::Route(route)) => route.access != Access::Public,
            Some(Target::UnmatchedAuthenticated) => true,
            Some(Target::Metadata | Target::ResourceMetadata(_) | Target::UnmatchedDryRun) | None => false,
        }
    }

    async fn authenticate(&mut self, config: &Config, head: &Head<'_>, inputs: &mut impl Inputs) -> AuthResult {
        // DESIGN §7: a proof is checked against the request as received.
        let target = (head.method.as_str(), head.authority, head.path);
        let forwarded = config.forwarding.trust_forwarded_headers;
        let scheme = if head.tls.is_some() { "https" } else { "http" };
        let mut presented = Presented::read(
            head.headers,
            head.query,
            target,
            self.dpop_mode(config),
            (scheme, forwarded),
        )?;
        presented.tls_certificate = head.tls.as_ref().and_then(|tls| tls.client_certificate.clone());
        let digest = token_digest(presented.token);
        self.token_fingerprint = Some(fingerprint(&digest));
        self.scheme = Some(presented.scheme);
        Ok(inputs.authenticate(&presented, &digest).await?)
    }

    /// The DPoP mode of the target: the route's own, else `dpop.mode`.
    pub fn dpop_mode(&self, config: &Config) -> DpopMode {
        self.route_spec()
            .and_then(|route| route.dpop)
            .unwrap_or(config.tokens.dpop.mode)
    }

    /// Audience binding (RFC 8707), then the route's scopes after implications, then its
    /// claim rules (all of them, on the verified claims, against the canonical path).
    fn admit(&self, config: &Config) -> Result<Option<Arc<Principal>>, ProxyError> {
        let Some(principal) = self.verified.as_deref() else {
            return Ok(None);
        };
        match self.mcp {
            Some(mcp) => mcp.check_audience(principal)?,
            None => config
                .mcp
                .check_api_audience(principal, issuer_audiences(config, principal))?,
        }
        if let Some(Target::Route(RouteSpec {
            access: Access::Protected(requirement),
            ..
        })) = self.target
        {
            let granted = config
                .routes
                .implications()
                .expand(principal.scopes.iter().map(String::as_str));
            if !requirement.is_satisfied_by(&granted) {
                return Err(ProxyError::InsufficientScope {
                    scopes: requirement.challenge_scopes(),
                });
            }
        }
        if let (Some(route), Some(path)) = (self.route_spec(), &self.path)
            && let Some(rule) = first_broken(&route.claim_rules, |name| principal.claims.get(name), path)
        {
            return Err(ProxyError::ClaimMismatch { rule: rule.to_string() });
        }
        Ok(self.verified.clone())
    }

    /// MCP tool rules: on a route that has them, a POST body is read (bounded) and every
    /// JSON-RPC call in it checked; the 403 names every scope the operation needs. Without
    /// rules, or on other methods, the body streams through untouched.
    async fn inspect_calls(
        &mut self,
        config: &Config,
        head: &Head<'_>,
        inputs: &mut impl Inputs,
    ) -> Result<(), ProxyError> {
        let Some(mcp) = self.mcp.filter(|m| !m.rules.is_empty()) else {
            return Ok(());
        };
        if head.method != Method::POST {
            // JSON-RPC messages travel in POST bodies; a body on any other method could carry
            // a call the rules never saw.
            return if head.has_body {
                Err(InspectionError::BodyNotAllowed.into())
            } else {
                Ok(())
            };
        }
        if rules::is_encoded(head.headers) {
            return Err(InspectionError::Encoded.into());
        }
        let body = self
            .read_body(head, inputs, config.mcp.max_body_bytes, config.mcp.body_read_timeout)
            .await?;
        let calls = rules::calls_in_request(head.headers, &body).map_err(InspectionError::from)?;
        self.body = Some(body);
        let granted = config
            .routes
            .implications()
            .expand(self.principal.iter().flat_map(|p| p.scopes.iter().map(String::as_str)));
        let verdict = match rules::evaluate(&mcp.rules, &calls, &granted) {
            Verdict::Forbidden { needed } => {
                let mut all: Vec<String> = self
                    .route_scopes()
                    .map(|s| s.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                for scope in needed {
                    if !all.iter().any(|s| s == scope.as_str()) {
                        all.push(scope.to_string());
                    }
                }
                Err(ProxyError::InsufficientScope { scopes: all.join(" ") })
            }
            Verdict::Allowed => Ok(()),
        };
        self.unless_dry_run(verdict, |_| ())
    }

    /// In dry-run mode a denial is recorded (the first one counts) and `instead` stands in
    /// for the result; otherwise the result is returned as it is.
    fn unless_dry_run<T>(
        &mut self,
        result: Result<T, ProxyError>,
        instead: impl FnOnce(&ProxyError) -> T,
    ) -> Result<T, ProxyError> {
        match result {
            Err(denial) if self.dry_run => {
                let value = instead(&denial);
                self.would_deny.get_or_insert(denial);
                Ok(value)
            }
            other => other,
        }
    }

    /// The matched route, if any.
    pub fn route_spec(&self) -> Option<&'c RouteSpec> {
        match self.target {
            Some(Target::Route(route)) => Some(route),
            _ => None,
        }
    }

    /// The route label of metrics and the access log.
    pub fn route_name(&self) -> Option<&'c str> {
        match self.target {
            Some(Target::Route(route)) => Some(route.name.as_str()),
            Some(Target::Metadata) => Some(crate::mcp::metadata::METADATA_ROUTE),
            Some(Target::ResourceMetadata(_)) => Some(crate::resource::RESOURCE_METADATA_ROUTE),
            _ => None,
        }
    }

    /// A public route, or metadata scopegate answers: no token is asked for.
    pub fn is_public(&self) -> bool {
        match self.target {
            Some(Target::Route(route)) => route.access == Access::Public,
            Some(Target::Metadata | Target::ResourceMetadata(_)) => true,
            _ => false,
        }
    }

    /// Metadata scopegate answers itself, whoever asks.
    pub fn is_metadata(&self) -> bool {
        matches!(self.target, Some(Target::Metadata | Target::ResourceMetadata(_)))
    }

    /// The route's own scopes, as the hint of a 401 (RFC 6750 §3 `scope`).
    pub fn route_scopes(&self) -> Option<String> {
        match self.route_spec().map(|r| &r.access) {
            Some(Access::Protected(requirement)) => Some(requirement.challenge_scopes()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// The RFC 9728 metadata URL a challenge names (§5.1): an MCP route's own, else that of
    /// the `[[resource]]` covering the route, else `auth.resource_metadata`.
    pub fn resource_metadata<'a>(&'a self, config: &'a Config) -> Option<&'a str> {
        self.mcp
            .map(|m| m.metadata_url.as_str())
            .or(self.resource.map(|r| r.metadata_url.as_str()))
            .or(config.auth.resource_metadata.as_deref())
    }

    /// The audience a token must carry on this route, when RFC 8707 binds it to one.
    pub fn bound_audience(&self) -> Option<&'c str> {
        self.mcp.map(|m| m.resource.as_str())
    }
}

/// The request line and `Host` checks, then DESIGN §3.1: the one canonical form is used for
/// matching and for forwarding.
fn canonicalize(config: &Config, head: &Head<'_>) -> Result<CanonicalPath, ProxyError> {
    if head.method == Method::CONNECT {
        return Err(RequestError::Connect.into());
    }
    // Methods are case-sensitive (RFC 9110 §9.1) but some frameworks upper-case them: `delete`
    // must not miss a `DELETE` route and then run as DELETE upstream.
    if head.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(RequestError::MethodNotUppercase.into());
    }
    hygiene::check_host(head.version, head.authority, head.headers)?;
    if head
        .query
        .is_some_and(|query| config.forwarding.method_override.named_in(query.as_bytes()))
    {
        return Err(RequestError::MethodOverride.into());
    }
    canonicalize_path(head.path, config.forwarding.canonical).map_err(ProxyError::BadPath)
}

/// The route a CORS preflight may pass to without a token: the one that governs the request
/// it announces (same path, the method of `Access-Control-Request-Method`), when that route
/// bypasses preflights. Routes rarely list `OPTIONS`, and the route the browser is about to
/// call is the one whose policy should decide. Otherwise the preflight is an ordinary
/// `OPTIONS` request, routed and authenticated like any other.
fn preflight_route<'c>(config: &'c Config, head: &Head<'_>, path: &CanonicalPath) -> Option<&'c RouteSpec> {
    let announced = preflight_method(head.method, head.headers, head.has_body)?;
    let route = config.routes.lookup(&announced, path)?;
    config.routes.bypasses_preflight(route).then_some(route)
}

/// The configured audiences of the issuer that vouched for `principal`.
fn issuer_audiences<'a>(config: &'a Config, principal: &Principal) -> &'a [String] {
    config
        .tokens
        .issuers
        .iter()
        .find(|issuer| issuer.issuer == principal.issuer)
        .map_or(&[], |issuer| issuer.audiences.as_slice())
}
