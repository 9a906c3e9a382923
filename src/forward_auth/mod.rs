//! Forward-auth (DESIGN §7): an ingress that proxies itself — nginx `auth_request`, Traefik
//! `ForwardAuth`, Envoy HTTP `ext_authz` — asks whether a request it holds may pass.
//! scopegate runs the proxy's own decision ([`crate::decision`]) on the original request and
//! answers 200 with the identity headers to copy upstream, or the proxy's refusal: the same
//! status, `WWW-Authenticate` and body. Nothing is forwarded from here.
//!
//! It has a listener of its own, because trust is per listener: there, and only from
//! `forward_auth.trusted_peers`, headers name the original request ([`original`]); every
//! other peer is refused. On the proxy listener the same headers are origin claims and are
//! stripped ([`crate::forward`]). [`config`] compiles `[forward_auth]`.

pub mod config;
pub mod original;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{ProxyBody, full_body};
use crate::config::{IdentityConfig, normalize_header_name};
use crate::decision::{Decision, Head, Inputs};
use crate::error::ProxyError;
use crate::gateway::App;
use crate::identity::identity_header_names;
use crate::mcp::rules::InspectionError;
use crate::proxy::ProxyInputs;
use crate::record::{RequestRecord, Via, body_may_go_unread};
use crate::token::Principal;
use crate::token::binding::Presented;
use crate::token::error::AuthError;
use config::Ingress;
use original::{ENVOY_PARTIAL_BODY, Original, OriginalError};

/// Envoy HTTP `ext_authz`: headers named here are removed from the upstream request.
const ENVOY_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// Answers one question from an ingress. Never panics on request input and never answers
/// 500 (nginx reads a 500 as its own failure): every refusal is the proxy's.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
    let mut record = RequestRecord::start(Arc::clone(&app), Via::ForwardAuth, req.method().clone());
    let body_may_go_unread = body_may_go_unread(&req);
    record.note_origin(req.headers());
    let result = answer(&app, req, peer, &mut record).await;
    record.settle(result, body_may_go_unread)
}

/// Reads the original request, decides on it, and settles the answer.
async fn answer(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
    record: &mut RequestRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let config = &app.config;
    // The listener runs only while `[forward_auth]` is configured; a reload that removes it
    // leaves no peer trusted until the restart that closes the listener.
    let settings = config.forward_auth.as_ref().ok_or(OriginalError::UntrustedPeer)?;
    let (parts, body) = req.into_parts();
    let sent_body = !http_body::Body::is_end_stream(&body);
    let original = Original::read(&parts, sent_body, settings, peer.ip())?;
    record.method(&original.method);
    let head = Head::forwarded(&original.method, &original.target, &original.headers, original.has_body);
    let mut decision = Decision::route(config, &head);
    record.routed(&decision, config);
    let mut inputs = ForwardedInputs {
        inner: ProxyInputs {
            app,
            body: Some(body),
            client: original.client,
        },
        // Only Envoy sets it; from another ingress it can only make the answer stricter.
        partial: parts
            .headers
            .get(ENVOY_PARTIAL_BODY)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true")),
    };
    decision.finish(config, &head, &mut inputs).await;
    record.decided(&decision);
    if let Some(denial) = decision.denial {
        return Err(denial);
    }
    let mut answer = allowed(&decision.identity, &config.identity, settings.ingress, &parts.headers);
    // A body the decision did not need (Envoy sends every one along) stays unread, and hyper
    // closes such a connection after the answer: say so, or the ingress may reuse it.
    if inputs
        .inner
        .body
        .as_ref()
        .is_some_and(|b| !http_body::Body::is_end_stream(b))
    {
        answer
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(answer)
}

/// The answer that lets a request pass: 200 (the one status Envoy reads as allow) with the
/// identity headers the proxy would have set upstream. Envoy keeps a client's own header
/// whenever the answer does not set that header, so for Envoy every other identity header
/// — configured, or sent by the client in the identity namespace — is named for removal.
fn allowed(
    granted: &[(HeaderName, HeaderValue)],
    identity: &IdentityConfig,
    ingress: Ingress,
    question: &HeaderMap,
) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in granted {
        headers.insert(name.clone(), value.clone());
    }
    if ingress == Ingress::Envoy {
        let is_granted = |name: &str| granted.iter().any(|(g, _)| g.as_str().eq_ignore_ascii_case(name));
        let mut doomed: Vec<String> = Vec::new();
        let configured = identity_header_names(identity)
            .into_iter()
            .map(|n| n.as_str().to_string());
        let claimed = question
            .keys()
            .filter(|name| normalize_header_name(name.as_str()).starts_with(identity.prefix.as_str()))
            .map(|name| name.as_str().to_string());
        for name in configured.chain(claimed) {
            if !is_granted(&name) && !doomed.contains(&name) {
                doomed.push(name);
            }
        }
        if let Some(value) = Some(doomed.join(",")).filter(|list| !list.is_empty())
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            headers.insert(ENVOY_HEADERS_TO_REMOVE, value);
        }
    }
    response
}

/// The proxy's inputs, read from the question: its body is the original's body when the
/// ingress sends it along (Envoy `with_request_body`); a body the decision must read and
/// the ingress kept back refuses the request rather than pass unread.
struct ForwardedInputs<'a> {
    inner: ProxyInputs<'a>,
    /// Envoy cut the body at its `max_request_bytes`.
    partial: bool,
}

impl Inputs for ForwardedInputs<'_> {
    async fn authenticate(
        &mut self,
        presented: &Presented<'_>,
        digest: &[u8; 32],
    ) -> Result<Arc<Principal>, AuthError> {
        self.inner.authenticate(presented, digest).await
    }

    async fn body(&mut self, limit: usize, timeout: Duration) -> Result<Bytes, InspectionError> {
        if self.partial {
            return Err(InspectionError::TooLarge);
        }
        match self.inner.body(limit, timeout).await? {
            body if body.is_empty() => Err(InspectionError::NotSent),
            body => Ok(body),
        }
    }
}
