//! The request path (DESIGN §1): decide → rewrite → forward → record. The decision —
//! canonicalize, route, authenticate, authorize — is [`crate::decision`], shared with
//! `scopegate explain`; this module supplies its I/O (the authenticator, the client's body),
//! forwards what it allows, and records every request exactly once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::admission::hold_slot;
use crate::body::{ProxyBody, full_body, stream_body};
use crate::decision::{Decision, Head, Inputs, Target};
use crate::error::ProxyError;
use crate::forward::UpstreamError;
use crate::forward::{
    RewriteContext, clean_trailers, rewrite_request, rewrite_response, splice_upgrade, strip_identity, upgrade_matches,
    wants_upgrade,
};
use crate::gateway::App;
use crate::mcp::rules::InspectionError;
use crate::record::{RequestRecord, Via, body_may_go_unread};
use crate::token::Principal;
use crate::token::binding::{Presented, strip_untrusted_certificate};
use crate::token::error::AuthError;

/// Handles one request end to end. Never panics on request input and never answers 500:
/// every failure is a [`ProxyError`] with its own status.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
    // Written when dropped: answered, refused, or cancelled by the client mid-way.
    let mut record = RequestRecord::start(Arc::clone(&app), Via::Proxy, req.method().clone());
    let body_may_go_unread = body_may_go_unread(&req);
    record.note_origin(req.headers());
    record.note_client_certificate(req.extensions().get());
    let result = process(&app, req, peer, &mut record).await;
    record.settle(result, body_may_go_unread)
}

async fn process(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    record: &mut RequestRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let config = &app.config;
    let (mut parts, body) = req.into_parts();
    let mut head = Head::new(
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        http_body::Body::is_end_stream(&body),
    );
    if config.listener.tls.is_some() {
        head = head.on_tls(parts.extensions.get());
    }
    let mut decision = Decision::route(config, &head);
    record.routed(&decision, config);
    if let Some(Target::ResourceMetadata(document)) = decision.target {
        return Ok(document.response(&parts.method));
    }
    if let Some(Target::Metadata) = decision.target {
        let path = decision.path.as_ref().map_or("", |p| p.as_str());
        let answer = app.mcp.well_known(&config.mcp, &parts.method, path).await;
        return answer.map_or(Err(ProxyError::NoRoute), |answer| Ok(answer?));
    }
    let mut inputs = ProxyInputs {
        app,
        body: Some(body),
        client: peer.ip(),
    };
    decision.finish(config, &head, &mut inputs).await;
    record.decided(&decision);
    if let Some(denial) = decision.denial {
        return Err(denial);
    }
    let Some(path) = decision.path.as_ref() else {
        return Err(ProxyError::NoRoute);
    };
    strip_untrusted_certificate(&config.tokens.cert_binding, &mut parts.headers, peer.ip());
    if let (Some(assertion), Some(principal)) = (&config.identity.assertion, &decision.principal) {
        let now = app.auth.clock().unix_secs();
        decision.identity.push(assertion.header_for(principal, now));
    }
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
/// address (introspection budgets are per client address). Forward-auth answers with it too.
pub(crate) struct ProxyInputs<'a> {
    pub app: &'a App,
    pub body: Option<Incoming>,
    pub client: IpAddr,
}

impl Inputs for ProxyInputs<'_> {
    async fn authenticate(
        &mut self,
        presented: &Presented<'_>,
        digest: &[u8; 32],
    ) -> Result<Arc<Principal>, AuthError> {
        let started = Instant::now();
        let result = self
            .app
            .auth
            .authenticate_presented(presented, digest, Some(self.client))
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
