//! The record step (DESIGN §1, §6): one access-log event and one metric update per request,
//! written when the request's record is dropped. The proxy and the forward-auth endpoint
//! keep one each; `via` says which answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::ProxyBody;
use crate::config::Config;
use crate::decision::Decision;
use crate::error::{ChallengeContext, ProxyError};
use crate::gateway::App;
use crate::token::binding::Scheme;
use crate::token::config::sender::DpopMode;
use crate::token::error::AuthError;

/// Which endpoint answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The proxy listener: decided, then forwarded.
    Proxy,
    /// The forward-auth listener: decided and answered to an ingress, never forwarded.
    ForwardAuth,
}

impl Via {
    /// The `via` field of the access log.
    pub fn label(self) -> &'static str {
        match self {
            Via::Proxy => "proxy",
            Via::ForwardAuth => "forward_auth",
        }
    }
}

/// An HTTP/1 request whose body may go unread: hyper closes such a connection after an
/// early answer, so the answer must say so, or a client may reuse it (MCP clients POST a
/// body first and are answered 401) and see it drop without a response.
pub fn body_may_go_unread<B: http_body::Body>(req: &Request<B>) -> bool {
    req.version() <= http::Version::HTTP_11 && !req.body().is_end_stream()
}

/// The one access-log event and metric update of a request, written when it is dropped:
/// after the response head is handed to hyper, or when the client went away first and
/// hyper dropped the request's future. The in-flight gauge goes up in [`RequestRecord::start`]
/// and down in `drop`, so it cannot leak.
pub struct RequestRecord {
    app: Arc<App>,
    via: Via,
    started: Instant,
    method: Method,
    route: Option<String>,
    public: bool,
    /// A CORS preflight let through without a token.
    preflight: bool,
    /// The request's `Origin`, kept only when refusals may carry CORS headers for it.
    origin: Option<HeaderValue>,
    canonical_path: Option<String>,
    route_scopes: Option<String>,
    resource_metadata: Option<String>,
    token_fingerprint: Option<String>,
    /// The route's DPoP mode: which challenges a refusal carries.
    dpop: DpopMode,
    /// The scheme the client sent its token with, once read.
    scheme: Option<Scheme>,
    client_id: Option<String>,
    /// RFC 8705 `x5t#S256` of the client certificate the TLS connection verified.
    client_certificate: Option<String>,
    /// In dry-run mode: the denial that was not enforced.
    would_deny: Option<ProxyError>,
    error: Option<ProxyError>,
    /// `None` until a response exists: a record dropped without one was cancelled.
    status: Option<StatusCode>,
    /// Whether the access log is on: what only the log reads is not collected otherwise.
    log_access: bool,
}

/// A latency in milliseconds with three decimals (microsecond resolution): the access log's
/// `latency_ms`, e.g. `0.412`, never `0.41234567800000003`.
fn millis_to_microseconds(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// nginx's convention for a request whose client closed the connection before the answer.
const CLIENT_CLOSED: u16 = 499;

impl RequestRecord {
    pub fn start(app: Arc<App>, via: Via, method: Method) -> RequestRecord {
        app.metrics.in_flight.inc();
        RequestRecord {
            app,
            via,
            started: Instant::now(),
            method,
            route: None,
            public: false,
            preflight: false,
            origin: None,
            canonical_path: None,
            route_scopes: None,
            resource_metadata: None,
            token_fingerprint: None,
            dpop: DpopMode::Off,
            scheme: None,
            client_id: None,
            client_certificate: None,
            would_deny: None,
            error: None,
            status: None,
            log_access: tracing::enabled!(target: "scopegate::access", tracing::Level::INFO),
        }
    }

    /// The method of the request decided on, when it is not the one received (forward-auth:
    /// the original request's, as the ingress named it).
    pub fn method(&mut self, method: &Method) {
        self.method = method.clone();
    }

    /// Keeps the request's `Origin` when `[cors]` may decorate refusals for it.
    pub fn note_origin(&mut self, headers: &HeaderMap) {
        if self.app.config.cors.decorates_refusals() {
            self.origin = crate::cors::request_origin(headers).cloned();
        }
    }

    /// The client certificate of the request's TLS connection, if it presented one.
    pub fn note_client_certificate(&mut self, certificate: Option<&crate::tls::ClientCertificate>) {
        if self.log_access {
            self.client_certificate = certificate.map(|c| c.thumbprint().to_owned());
        }
    }

    /// What routing settled, known before any token is read.
    pub fn routed(&mut self, decision: &Decision<'_>, config: &Config) {
        self.route = decision.route_name().map(str::to_string);
        self.public = decision.is_public();
        self.preflight = decision.preflight;
        if self.log_access {
            self.canonical_path = decision.path.as_ref().map(|p| p.as_str().to_string());
        }
        self.route_scopes = decision.route_scopes();
        self.resource_metadata = decision.resource_metadata(config).map(str::to_string);
        self.dpop = decision.dpop_mode(config);
    }

    /// What authentication and authorization settled.
    pub fn decided(&mut self, decision: &Decision<'_>) {
        if self.log_access {
            self.token_fingerprint = decision.token_fingerprint.clone();
            self.client_id = decision.verified.as_ref().and_then(|p| p.client_id.clone());
        }
        self.scheme = decision.scheme;
        self.would_deny = decision.would_deny.clone();
    }

    /// The response to send, noted for the record: the answer, or for a refusal the one
    /// error mapping with the challenge this request's route calls for. `body_may_go_unread`
    /// (see [`body_may_go_unread`]) makes a refusal close the connection.
    pub fn settle(
        &mut self,
        result: Result<Response<ProxyBody>, ProxyError>,
        body_may_go_unread: bool,
    ) -> Response<ProxyBody> {
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let ctx = ChallengeContext {
                    realm: &self.app.config.auth.realm,
                    resource_metadata: self.resource_metadata.as_deref(),
                    route_scopes: self.route_scopes.as_deref(),
                    dpop: self.app.config.tokens.dpop.challenge(self.dpop),
                    scheme: self.scheme,
                };
                let mut response = error.clone().into_response(&ctx);
                self.app
                    .config
                    .cors
                    .decorate_refusal(response.headers_mut(), self.origin.as_ref());
                if body_may_go_unread {
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                self.error = Some(error);
                response
            }
        };
        self.status = Some(response.status());
        response
    }

    /// Outcome label for metrics: a bounded set.
    fn decision(&self) -> &'static str {
        let error = self.error.as_ref();
        let upstream_failure = matches!(error, Some(ProxyError::Upstream(_)));
        match error {
            _ if self.status.is_none() => "cancelled",
            _ if self.would_deny.is_some() && (error.is_none() || upstream_failure) => "would_deny",
            _ if self.preflight && (error.is_none() || upstream_failure) => "preflight",
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
        let requests = match self.via {
            Via::Proxy => &metrics.requests,
            Via::ForwardAuth => &metrics.forward_auth_requests,
        };
        requests.with_label_values(&[route, decision, status_class]).inc();
        if self.via == Via::Proxy {
            metrics
                .request_duration
                .with_label_values(&[route])
                .observe(elapsed.as_secs_f64());
        }
        let error = self.error.as_ref();
        let reason = match error.or(self.would_deny.as_ref()) {
            _ if decision == "cancelled" => "client_closed",
            Some(error) => error.reason(),
            None if self.preflight => crate::cors::PREFLIGHT_REASON,
            None => "ok",
        };
        // The rule that refused (or would have), as configured: never the claim's value.
        let claim_rule = match error.or(self.would_deny.as_ref()) {
            Some(ProxyError::ClaimMismatch { rule }) => rule.as_str(),
            _ => "-",
        };
        // Auth outcomes: every request that reached the authentication step and was settled.
        let pre_auth = matches!(
            error,
            Some(ProxyError::NoRoute | ProxyError::BadPath(_) | ProxyError::Request(_) | ProxyError::ForwardAuth(_))
        );
        if !matches!(decision, "public" | "preflight" | "cancelled") && !pre_auth {
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
            via = self.via.label(),
            route,
            method = self.method.as_str(),
            path = self.canonical_path.as_deref().unwrap_or("-"),
            status,
            decision,
            reason,
            claim_rule,
            latency_ms = millis_to_microseconds(elapsed),
            client_id = self.client_id.as_deref().unwrap_or("-"),
            token = self.token_fingerprint.as_deref().unwrap_or("-"),
            client_cert = self.client_certificate.as_deref().unwrap_or("-"),
        );
        metrics.in_flight.dec();
    }
}
