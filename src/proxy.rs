//! The request path (DESIGN §1): canonicalize → route → authenticate → authorize →
//! rewrite → forward → record. Each step is a function; [`handle`] reads top to bottom.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{ProxyBody, stream_body};
use crate::canonical::{CanonicalPath, canonicalize_path};
use crate::config::{Config, UnmatchedPolicy};
use crate::error::{ChallengeContext, ProxyError};
use crate::forward::{
    RewriteContext, UpstreamClient, clean_trailers, rewrite_request, rewrite_response, splice_upgrade, strip_identity,
    upgrade_matches, wants_upgrade,
};
use crate::metrics::Metrics;
use crate::policy::{Access, EnforcementMode, RouteSpec};
use crate::token::{AuthError, Authenticator, Principal, bearer::bearer_token, fingerprint, token_digest};

/// One generation of the compiled config and what was built from it. A reload swaps in a
/// new `App` as a whole (see [`crate::gateway`]); a request keeps the one it started with.
pub struct App {
    pub config: Config,
    pub metrics: Metrics,
    pub upstream: UpstreamClient,
    pub auth: Arc<Authenticator>,
    pub mcp: crate::mcp::McpRuntime,
}

impl App {
    pub fn new(config: Config, metrics: Metrics) -> App {
        let upstream = UpstreamClient::new(&config.upstream);
        let auth = Arc::new(Authenticator::new(&config.tokens, metrics.clone()));
        let mcp = crate::mcp::McpRuntime::new(&config.mcp);
        App {
            config,
            metrics,
            upstream,
            auth,
            mcp,
        }
    }

    /// Ready to serve protected routes: every issuer has keys.
    pub fn is_ready(&self) -> bool {
        self.auth.is_ready()
    }

    fn mode(&self, route: Option<&RouteSpec>) -> EnforcementMode {
        route.and_then(|r| r.mode).unwrap_or(self.config.auth.mode)
    }
}

/// What the route step decided.
enum RouteDecision<'a> {
    Route(&'a RouteSpec),
    /// No route matched, but `auth.unmatched = "authenticated"` lets any valid token through.
    UnmatchedAuthenticated,
    /// No route matched and the global mode is dry run: forwarded, counted as would-deny.
    UnmatchedDryRun,
}

impl RouteDecision<'_> {
    fn spec(&self) -> Option<&RouteSpec> {
        match self {
            RouteDecision::Route(spec) => Some(spec),
            _ => None,
        }
    }
}

/// Facts gathered along the way, for the one access-log event and the metrics.
#[derive(Default)]
struct Record {
    route: Option<String>,
    public: bool,
    token_fingerprint: Option<String>,
    client_id: Option<String>,
    canonical_path: Option<String>,
    /// In dry-run mode: the denial that was not enforced.
    would_deny: Option<ProxyError>,
    /// An MCP route's own RFC 9728 metadata URL: wins over `auth.resource_metadata`.
    resource_metadata: Option<String>,
}

/// Handles one request end to end. Never panics on request input and never answers 500:
/// every failure is a [`ProxyError`] with its own status.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
    let started = Instant::now();
    app.metrics.in_flight.inc();
    let method = req.method().clone();
    // An HTTP/1 request whose body may go unread: hyper closes such a connection after an
    // early answer, so the answer must say so, or a client may reuse it (MCP clients POST a
    // body first and are answered 401) and see it drop without a response.
    let body_may_be_unread = req.version() <= http::Version::HTTP_11 && !http_body::Body::is_end_stream(req.body());
    let mut record = Record::default();
    let (response, error) = match process(&app, req, peer, &mut record).await {
        Ok(response) => (response, None),
        Err(error) => {
            let route_scopes = record_scopes(&app, &record);
            let ctx = ChallengeContext {
                realm: &app.config.auth.realm,
                resource_metadata: record
                    .resource_metadata
                    .as_deref()
                    .or(app.config.auth.resource_metadata.as_deref()),
                route_scopes: route_scopes.as_deref(),
            };
            let mut response = error.clone().into_response(&ctx);
            if body_may_be_unread {
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            (response, Some(error))
        }
    };
    record_outcome(&app, &method, &record, &response, error.as_ref(), started);
    app.metrics.in_flight.dec();
    response
}

async fn process(
    app: &App,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    record: &mut Record,
) -> Result<Response<ProxyBody>, ProxyError> {
    let path = canonicalize(app, &req)?;
    record.canonical_path = Some(path.as_str().to_string());
    if let Some(answer) = app.mcp.well_known(&app.config.mcp, req.method(), path.as_str()).await {
        record.route = Some(crate::mcp::metadata::METADATA_ROUTE.to_string());
        record.public = true;
        return answer;
    }
    let global_dry_run = app.mode(None) == EnforcementMode::DryRun;
    let routed = route(app, req.method(), &path, record);
    let route = unless_dry_run(global_dry_run, record, routed, |_| RouteDecision::UnmatchedDryRun)?;
    let mcp_route = route.spec().and_then(|r| app.config.mcp.route(&r.name));
    record.resource_metadata = mcp_route.map(|m| m.metadata_url.clone());
    let dry_run = app.mode(route.spec()) == EnforcementMode::DryRun;
    let authenticated = authenticate(app, &req, &route, record).await;
    let principal = unless_dry_run(dry_run, record, authenticated, |_| None)?;
    let verified = principal.clone();
    let principal = unless_dry_run(dry_run, record, admit(app, &route, mcp_route, principal), |denial| {
        // A token for another resource lends no identity, even in a dry run.
        verified.filter(|_| !matches!(denial, ProxyError::Auth(AuthError::Invalid(_))))
    })?;
    let upgrade = matches!(route, RouteDecision::Route(r) if r.allow_upgrade) && wants_upgrade(req.headers());
    let client_upgrade = if upgrade { take_upgrade(&mut req) } else { None };
    let req = match mcp_route {
        Some(mcp_route) => {
            crate::mcp::authorize_calls(
                &app.config.mcp,
                mcp_route,
                record_scopes(app, record).as_deref().unwrap_or_default(),
                app.config.routes.implications(),
                principal.as_deref(),
                req,
            )
            .await?
        }
        None => req.map(stream_body),
    };
    let upstream_req = rewrite_request(
        req,
        &RewriteContext {
            path: &path,
            peer,
            principal: principal.as_deref(),
            upgrade,
            forwarding: &app.config.forwarding,
            identity: &app.config.identity,
            upstream: &app.config.upstream,
            body_idle_timeout: app.config.listener.request_body_idle_timeout,
        },
    )?;
    forward(app, upstream_req, client_upgrade).await
}

/// In dry-run mode a denial is recorded (the first one counts) and `instead` stands in for
/// the result; otherwise the result is returned as it is.
fn unless_dry_run<T>(
    dry_run: bool,
    record: &mut Record,
    result: Result<T, ProxyError>,
    instead: impl FnOnce(&ProxyError) -> T,
) -> Result<T, ProxyError> {
    match result {
        Err(denial) if dry_run => {
            let value = instead(&denial);
            record.would_deny.get_or_insert(denial);
            Ok(value)
        }
        other => other,
    }
}

/// Audience binding (RFC 8707) and scopes: the principal that may proceed.
fn admit(
    app: &App,
    route: &RouteDecision<'_>,
    mcp_route: Option<&crate::mcp::McpRoute>,
    principal: Option<Arc<Principal>>,
) -> Result<Option<Arc<Principal>>, ProxyError> {
    if let Some(principal) = principal.as_deref() {
        match mcp_route {
            Some(mcp_route) => mcp_route.check_audience(principal)?,
            None => app
                .config
                .mcp
                .check_api_audience(principal, issuer_audiences(app, principal))?,
        }
    }
    authorize(app, route, principal.as_deref())?;
    Ok(principal)
}

/// Takes the client side of a WebSocket upgrade, with the connection's slot to keep.
fn take_upgrade(req: &mut Request<Incoming>) -> Option<ClientUpgrade> {
    let lease = req.extensions().get::<crate::server::ConnectionLease>().cloned()?;
    let protocol = req.headers().get(http::header::UPGRADE).cloned();
    Some(ClientUpgrade {
        on_upgrade: hyper::upgrade::on(req),
        protocol,
        lease,
    })
}

/// The configured audiences of the issuer that vouched for `principal`.
fn issuer_audiences<'a>(app: &'a App, principal: &Principal) -> &'a [String] {
    app.config
        .tokens
        .issuers
        .iter()
        .find(|issuer| issuer.issuer == principal.issuer)
        .map_or(&[], |issuer| issuer.audiences.as_slice())
}

/// DESIGN §3.1: the one canonical form is used for matching and for forwarding.
fn canonicalize(app: &App, req: &Request<Incoming>) -> Result<CanonicalPath, ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("connect_not_allowed"));
    }
    // Methods are case-sensitive (RFC 9110 §9.1) but some frameworks upper-case them: `delete`
    // must not miss a `DELETE` route and then run as DELETE upstream.
    if req.method().as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(ProxyError::BadRequest("method_not_uppercase"));
    }
    canonicalize_path(req.uri().path(), app.config.forwarding.canonical).map_err(ProxyError::BadPath)
}

fn route<'a>(
    app: &'a App,
    method: &Method,
    path: &CanonicalPath,
    record: &mut Record,
) -> Result<RouteDecision<'a>, ProxyError> {
    match app.config.routes.lookup(method, path) {
        Some(route) => {
            record.route = Some(route.name.clone());
            record.public = route.access == Access::Public;
            Ok(RouteDecision::Route(route))
        }
        None if app.config.auth.unmatched == UnmatchedPolicy::Authenticated => {
            Ok(RouteDecision::UnmatchedAuthenticated)
        }
        None => Err(ProxyError::NoRoute),
    }
}

async fn authenticate(
    app: &App,
    req: &Request<Incoming>,
    route: &RouteDecision<'_>,
    record: &mut Record,
) -> Result<Option<Arc<Principal>>, ProxyError> {
    if matches!(route, RouteDecision::Route(r) if r.access == Access::Public)
        || matches!(route, RouteDecision::UnmatchedDryRun)
    {
        return Ok(None);
    }
    let token = bearer_token(req.headers(), req.uri().query())?.ok_or(AuthError::Missing)?;
    let digest = token_digest(token);
    record.token_fingerprint = Some(fingerprint(&digest));
    let started = Instant::now();
    let result = app.auth.authenticate(token, &digest).await;
    app.metrics.auth_duration.observe(started.elapsed().as_secs_f64());
    let principal = result?;
    record.client_id = principal.client_id.clone();
    Ok(Some(principal))
}

fn authorize(app: &App, route: &RouteDecision<'_>, principal: Option<&Principal>) -> Result<(), ProxyError> {
    let (
        RouteDecision::Route(RouteSpec {
            access: Access::Protected(requirement),
            ..
        }),
        Some(principal),
    ) = (route, principal)
    else {
        return Ok(());
    };
    let granted = app
        .config
        .routes
        .implications()
        .expand(principal.scopes.iter().map(String::as_str));
    if requirement.is_satisfied_by(&granted) {
        Ok(())
    } else {
        Err(ProxyError::InsufficientScope {
            scopes: requirement.challenge_scopes(),
        })
    }
}

/// The client side of a requested WebSocket upgrade.
struct ClientUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    protocol: Option<http::HeaderValue>,
    lease: crate::server::ConnectionLease,
}

async fn forward(
    app: &App,
    upstream_req: Request<ProxyBody>,
    client_upgrade: Option<ClientUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let mut response = app.upstream.send(upstream_req).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only a switch the client asked for, to the protocol it named, is passed on.
        let Some(client) = client_upgrade.filter(|c| upgrade_matches(c.protocol.as_ref(), &response)) else {
            return Err(ProxyError::UpstreamFailed);
        };
        rewrite_response(&mut response, &app.config.identity);
        let idle = client.lease.idle_timeout;
        splice_upgrade(client.on_upgrade, hyper::upgrade::on(&mut response), idle, client.lease);
        return Ok(response.map(stream_body));
    }
    rewrite_response(&mut response, &app.config.identity);
    let identity = app.config.identity.clone();
    Ok(response.map(|body| clean_trailers(body, move |trailers| strip_identity(trailers, &identity))))
}

/// The scope hint for a 401 on a protected route.
fn record_scopes(app: &App, record: &Record) -> Option<String> {
    let name = record.route.as_deref()?;
    app.config
        .routes
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| match &r.access {
            Access::Protected(req) => Some(req.challenge_scopes()).filter(|s: &String| !s.is_empty()),
            Access::Public => None,
        })
}

/// Outcome label for metrics: bounded set.
fn decision(record: &Record, error: Option<&ProxyError>) -> &'static str {
    let upstream_failure = matches!(
        error,
        Some(ProxyError::UpstreamTimeout | ProxyError::UpstreamUnreachable | ProxyError::UpstreamFailed)
    );
    match error {
        _ if record.would_deny.is_some() && (error.is_none() || upstream_failure) => "would_deny",
        _ if record.public && (error.is_none() || upstream_failure) => "public",
        None => "allow",
        _ if upstream_failure => "allow",
        Some(ProxyError::Auth(AuthError::Unavailable(_))) => "unavailable",
        Some(_) => "deny",
    }
}

fn record_outcome(
    app: &App,
    method: &Method,
    record: &Record,
    response: &Response<ProxyBody>,
    error: Option<&ProxyError>,
    started: Instant,
) {
    let route = record.route.as_deref().unwrap_or("unmatched");
    let decision = decision(record, error);
    let status = response.status().as_u16();
    let status_class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let elapsed = started.elapsed();
    app.metrics
        .requests
        .with_label_values(&[route, decision, status_class])
        .inc();
    app.metrics
        .request_duration
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    let reason = error.or(record.would_deny.as_ref()).map_or("ok", ProxyError::reason);
    // Auth outcomes: every request that reached the authentication step.
    let pre_auth = matches!(
        error,
        Some(ProxyError::NoRoute | ProxyError::BadPath(_) | ProxyError::BadRequest(_))
    );
    if decision != "public" && !pre_auth {
        let auth_reason = if decision == "allow" { "ok" } else { reason };
        if decision == "would_deny" {
            tracing::warn!(target: "scopegate::dry_run", route, reason, "dry run: this request would have been denied");
        }
        app.metrics
            .auth_decisions
            .with_label_values(&[decision, auth_reason])
            .inc();
    }
    if let Some(kind) = match error {
        Some(ProxyError::UpstreamTimeout) => Some("timeout"),
        Some(ProxyError::UpstreamUnreachable) => Some("connect"),
        Some(ProxyError::UpstreamFailed) => Some("protocol"),
        _ => None,
    } {
        app.metrics.upstream_errors.with_label_values(&[kind]).inc();
    }
    tracing::info!(
        target: "scopegate::access",
        route,
        method = method.as_str(),
        path = record.canonical_path.as_deref().unwrap_or("-"),
        status,
        decision,
        reason,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        client_id = record.client_id.as_deref().unwrap_or("-"),
        token = record.token_fingerprint.as_deref().unwrap_or("-"),
    );
}
