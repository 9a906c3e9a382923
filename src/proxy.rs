//! The request path (DESIGN §1): decide → rewrite → forward → record. The decision —
//! canonicalize, route, authenticate, authorize — is [`crate::decision`], shared with
//! `scopegate explain`; this module supplies its I/O (the authenticator, the client's body),
//! forwards what it allows, and records every request exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::admission::hold_slot;
use crate::body::{ProxyBody, full_body, stream_body};
use crate::config::Config;
use crate::decision::{Decision, Head, Inputs, Target};
use crate::error::{ChallengeContext, ProxyError};
use crate::forward::UpstreamError;
use crate::forward::{
    RewriteContext, clean_trailers, rewrite_request, rewrite_response, splice_upgrade, strip_identity, upgrade_matches,
    wants_upgrade,
};
use crate::gateway::App;
use crate::mcp::rules::InspectionError;
use crate::token::Principal;
use crate::token::error::AuthError;

/// Handles one request end to end. Never panics on request input and never answers 500:
/// every failure is a [`ProxyError`] with its own status.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
    // Written when dropped: answered, refused, or cancelled by the client mid-way.
    let mut record = RequestRecord::start(Arc::clone(&app), req.method().clone());
    // An HTTP/1 request whose body may go unread: hyper closes such a connection after an
    // early answer, so the answer must say so, or a client may reuse it (MCP clients POST a
    // body first and are answered 401) and see it drop without a response.
    let body_may_be_unread = req.version() <= http::Version::HTTP_11 && !http_body::Body::is_end_stream(req.body());
    let response = match process(&app, req, peer, &mut record).await {
        Ok(response) => response,
        Err(error) => {
            let ctx = ChallengeContext {
                realm: &app.config.auth.realm,
                resource_metadata: record.resource_metadata.as_deref(),
                route_scopes: record.route_scopes.as_deref(),
            };
            let mut response = error.clone().into_response(&ctx);
            if body_may_be_unread {
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            record.error = Some(error);
            response
        }
    };
    record.status = Some(response.status());
    response
}

async fn process(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    record: &mut RequestRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let config = &app.config;
    let (mut parts, body) = req.into_parts();
    let head = Head::new(
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        http_body::Body::is_end_stream(&body),
    );
    let mut decision = Decision::route(config, &head);
    record.routed(&decision, config);
    if let Some(Target::Metadata) = decision.target {
        let path = decision.path.as_ref().map_or("", |p| p.as_str());
        let answer = app.mcp.well_known(&config.mcp, &parts.method, path).await;
        return answer.map_or(Err(ProxyError::NoRoute), |answer| Ok(answer?));
    }
    let mut inputs = ProxyInputs {
        app,
        body: Some(body),
        peer,
    };
    decision.finish(config, &head, &mut inputs).await;
    record.decided(&decision);
    if let Some(denial) = decision.denial {
        return Err(denial);
    }
    let Some(path) = decision.path.as_ref() else {
        return Err(ProxyError::NoRoute);
    };
    let upgrade = decision.route_spec().is_some_and(|r| r.allow_upgrade) && wants_upgrade(&parts.headers);
    let client_upgrade = if upgrade { take_upgrade(&mut parts) } else { None };
    let body = match (decision.body.take(), inputs.body.take()) {
        (Some(inspected), _) => full_body(inspected),
        (None, Some(untouched)) => stream_body(untouched),
        (None, None) => full_body(Bytes::new()),
    };
    let upstream_req = rewrite_request(
        Request::from_parts(parts, body),
        &RewriteContext {
            path,
            peer,
            identity_headers: &decision.identity,
            upgrade,
            forwarding: &config.forwarding,
            identity: &config.identity,
            upstream: &config.upstream,
            body_idle_timeout: config.listener.request_body_idle_timeout,
        },
    )?;
    forward(app, upstream_req, client_upgrade).await
}

/// The proxy's side of a decision: the shared authenticator, the client's body, and its
/// address (introspection budgets are per client address).
struct ProxyInputs<'a> {
    app: &'a App,
    body: Option<Incoming>,
    peer: SocketAddr,
}

impl Inputs for ProxyInputs<'_> {
    async fn authenticate(&mut self, token: &str, digest: &[u8; 32]) -> Result<Arc<Principal>, AuthError> {
        let started = Instant::now();
        let result = self
            .app
            .auth
            .authenticate_from(token, digest, Some(self.peer.ip()))
            .await;
        self.app.metrics.auth_duration.observe(started.elapsed().as_secs_f64());
        result
    }

    async fn body(&mut self, limit: usize, timeout: Duration) -> Result<Bytes, InspectionError> {
        let body = self.body.take().ok_or(InspectionError::ReadFailed)?;
        let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
            .await
            .map_err(|_| InspectionError::ReadTimeout)?;
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(InspectionError::TooLarge),
            Err(_) => Err(InspectionError::ReadFailed),
        }
    }
}

/// Takes the client side of a WebSocket upgrade, with the connection's slot to keep.
fn take_upgrade(parts: &mut Parts) -> Option<ClientUpgrade> {
    let lease = parts.extensions.get::<crate::connection::ConnectionLease>().cloned()?;
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
    Some(ClientUpgrade {
        on_upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?,
        protocol,
        lease,
    })
}

/// The client side of a requested WebSocket upgrade.
struct ClientUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    protocol: Option<http::HeaderValue>,
    lease: crate::connection::ConnectionLease,
}

async fn forward(
    app: &Arc<App>,
    upstream_req: Request<ProxyBody>,
    client_upgrade: Option<ClientUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let slot = app.upstream_slots.try_take()?;
    let mut response = app.upstream.send(upstream_req).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only a switch the client asked for, to the protocol it named, is passed on.
        let Some(client) = client_upgrade.filter(|c| upgrade_matches(c.protocol.as_ref(), &response)) else {
            return Err(UpstreamError::Failed.into());
        };
        rewrite_response(&mut response, &app.config.identity);
        let idle = client.lease.idle_timeout;
        let held = (client.lease, slot);
        splice_upgrade(client.on_upgrade, hyper::upgrade::on(&mut response), idle, held);
        return Ok(response.map(stream_body));
    }
    rewrite_response(&mut response, &app.config.identity);
    // The generation is shared, not its identity settings copied, for every response.
    let generation = Arc::clone(app);
    Ok(response.map(|body| {
        let body = clean_trailers(body, move |trailers| {
            strip_identity(trailers, &generation.config.identity)
        });
        hold_slot(body, slot)
    }))
}

/// The one access-log event and metric update of a request, written when it is dropped:
/// after the response head is handed to hyper, or when the client went away first and
/// hyper dropped the request's future. The in-flight gauge goes up in [`RequestRecord::start`]
/// and down in `drop`, so it cannot leak.
struct RequestRecord {
    app: Arc<App>,
    started: Instant,
    method: Method,
    route: Option<String>,
    public: bool,
    canonical_path: Option<String>,
    route_scopes: Option<String>,
    resource_metadata: Option<String>,
    token_fingerprint: Option<String>,
    client_id: Option<String>,
    /// In dry-run mode: the denial that was not enforced.
    would_deny: Option<ProxyError>,
    error: Option<ProxyError>,
    /// `None` until a response exists: a record dropped without one was cancelled.
    status: Option<StatusCode>,
    /// Whether the access log is on: what only the log reads is not collected otherwise.
    log_access: bool,
}

/// nginx's convention for a request whose client closed the connection before the answer.
const CLIENT_CLOSED: u16 = 499;

impl RequestRecord {
    fn start(app: Arc<App>, method: Method) -> RequestRecord {
        app.metrics.in_flight.inc();
        RequestRecord {
            app,
            started: Instant::now(),
            method,
            route: None,
            public: false,
            canonical_path: None,
            route_scopes: None,
            resource_metadata: None,
            token_fingerprint: None,
            client_id: None,
            would_deny: None,
            error: None,
            status: None,
            log_access: tracing::enabled!(target: "scopegate::access", tracing::Level::INFO),
        }
    }

    /// What routing settled, known before any token is read.
    fn routed(&mut self, decision: &Decision<'_>, config: &Config) {
        self.route = decision.route_name().map(str::to_string);
        self.public = decision.is_public();
        if self.log_access {
            self.canonical_path = decision.path.as_ref().map(|p| p.as_str().to_string());
        }
        self.route_scopes = decision.route_scopes();
        self.resource_metadata = decision.resource_metadata(config).map(str::to_string);
    }

    /// What authentication and authorization settled.
    fn decided(&mut self, decision: &Decision<'_>) {
        if self.log_access {
            self.token_fingerprint = decision.token_fingerprint.clone();
            self.client_id = decision.verified.as_ref().and_then(|p| p.client_id.clone());
        }
        self.would_deny = decision.would_deny.clone();
    }

    /// Outcome label for metrics: a bounded set.
    fn decision(&self) -> &'static str {
        let error = self.error.as_ref();
        let upstream_failure = matches!(error, Some(ProxyError::Upstream(_)));
        match error {
            _ if self.status.is_none() => "cancelled",
            _ if self.would_deny.is_some() && (error.is_none() || upstream_failure) => "would_deny",
            _ if self.public && (error.is_none() || upstream_failure) => "public",
            None => "allow",
            _ if upstream_failure => "allow",
            Some(ProxyError::Auth(AuthError::Unavailable(_))) => "unavailable",
            Some(_) => "deny",
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let metrics = &self.app.metrics;
        let route = self.route.as_deref().unwrap_or("unmatched");
        let decision = self.decision();
        let status = self.status.map_or(CLIENT_CLOSED, |s| s.as_u16());
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let elapsed = self.started.elapsed();
        metrics
            .requests
            .with_label_values(&[route, decision, status_class])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        let error = self.error.as_ref();
        let reason = match error.or(self.would_deny.as_ref()) {
            _ if decision == "cancelled" => "client_closed",
            Some(error) => error.reason(),
            None => "ok",
        };
        // Auth outcomes: every request that reached the authentication step and was settled.
        let pre_auth = matches!(
            error,
            Some(ProxyError::NoRoute | ProxyError::BadPath(_) | ProxyError::Request(_))
        );
        if !matches!(decision, "public" | "cancelled") && !pre_auth {
            let auth_reason = if decision == "allow" { "ok" } else { reason };
            if decision == "would_deny" {
                tracing::warn!(target: "scopegate::dry_run", route, reason, "dry run: this request would have been denied");
            }
            metrics.auth_decisions.with_label_values(&[decision, auth_reason]).inc();
        }
        if let Some(ProxyError::Upstream(failure)) = error {
            metrics.upstream_errors.with_label_values(&[failure.kind()]).inc();
        }
        tracing::info!(
            target: "scopegate::access",
            route,
            method = self.method.as_str(),
            path = self.canonical_path.as_deref().unwrap_or("-"),
            status,
            decision,
            reason,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            client_id = self.client_id.as_deref().unwrap_or("-"),
            token = self.token_fingerprint.as_deref().unwrap_or("-"),
        );
        metrics.in_flight.dec();
    }
}
