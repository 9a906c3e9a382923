//! The one place where request-path failures become HTTP responses (DESIGN §2). No logging
//! or metrics here: the record step of the request path does both, once per request.

use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::body::{ProxyBody, full_body};
use crate::canonical::{PathError, RequestError};
use crate::forward::UpstreamError;
use crate::forward_auth::original::OriginalError;
use crate::identity::IdentityError;
use crate::mcp::rules::InspectionError;
use crate::token::binding::Scheme;
use crate::token::config::sender::DpopMode;
use crate::token::error::{AuthError, InvalidReason, ProofError};

/// Why a request was not (successfully) forwarded. Each variant is classified as the
/// client's fault, the authorization path's, or the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The path cannot be canonicalized without ambiguity.
    BadPath(PathError),
    /// The request line or headers are unacceptable before any auth question arises.
    Request(RequestError),
    NoRoute,
    /// Authentication failed: no credentials, a malformed `Authorization` header, a token
    /// that is not acceptable, or an authorization server that could not be consulted.
    Auth(AuthError),
    /// Valid token without the scopes the operation needs.
    InsufficientScope {
        scopes: String,
    },
    /// Valid token with the scopes, but a claim rule of the route does not hold; `rule` is
    /// the rule as configured (`org_id = {org}`), never a claim value.
    ClaimMismatch {
        rule: String,
    },
    /// A body that must be inspected (MCP tool rules) cannot be let through.
    Inspection(InspectionError),
    /// The token's identity cannot be told to the upstream unaltered (DESIGN §3.10).
    Identity(IdentityError),
    Upstream(UpstreamError),
    /// Forward-auth: the question cannot be answered with a decision (an untrusted peer, or
    /// no readable original request).
    ForwardAuth(OriginalError),
}

/// The request-specific parts of a `WWW-Authenticate` challenge.
#[derive(Debug, Clone, Default)]
pub struct ChallengeContext<'a> {
    pub realm: &'a str,
    pub resource_metadata: Option<&'a str>,
    /// Space-separated scopes of the matched route, as a hint on 401s.
    pub route_scopes: Option<&'a str>,
    /// The route's DPoP mode and the proof algorithms (`algs`, RFC 9449 §7.1) accepted.
    pub dpop: Option<(DpopMode, &'a str)>,
    /// The scheme the client sent its token with, once read.
    pub scheme: Option<Scheme>,
}

impl ProxyError {
    /// Stable snake_case code for the access log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::BadPath(e) => e.code(),
            ProxyError::Request(e) => e.label(),
            ProxyError::NoRoute => "no_route",
            ProxyError::Auth(e) => e.reason(),
            ProxyError::InsufficientScope { .. } => "insufficient_scope",
            ProxyError::ClaimMismatch { .. } => "claim_mismatch",
            ProxyError::Inspection(e) => e.label(),
            ProxyError::Identity(e) => e.label(),
            ProxyError::Upstream(e) => e.label(),
            ProxyError::ForwardAuth(e) => e.label(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath(_)
            | ProxyError::Request(_)
            | ProxyError::Auth(AuthError::Malformed(_))
            | ProxyError::ForwardAuth(OriginalError::Malformed) => StatusCode::BAD_REQUEST,
            ProxyError::ForwardAuth(OriginalError::UntrustedPeer) => StatusCode::FORBIDDEN,
            ProxyError::Inspection(InspectionError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Inspection(InspectionError::Encoded) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::Inspection(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Auth(AuthError::Missing | AuthError::Invalid(_) | AuthError::Proof(_))
            | ProxyError::Identity(_) => StatusCode::UNAUTHORIZED,
            ProxyError::InsufficientScope { .. } | ProxyError::ClaimMismatch { .. } => StatusCode::FORBIDDEN,
            ProxyError::Auth(AuthError::Unavailable(_)) | ProxyError::Upstream(UpstreamError::Saturated) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Upstream(UpstreamError::Unreachable | UpstreamError::Failed) => StatusCode::BAD_GATEWAY,
            ProxyError::Upstream(UpstreamError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response for this error: status, `WWW-Authenticate` where RFC 6750 wants one,
    /// and a small JSON body.
    pub fn into_response(self, ctx: &ChallengeContext<'_>) -> Response<ProxyBody> {
        let status = self.status();
        let (error, description, challenge) = match &self {
            ProxyError::Auth(AuthError::Missing) => (
                "unauthorized",
                "a bearer token is required",
                Some(bearer_challenge(ctx, None, None, ctx.route_scopes)),
            ),
            ProxyError::Auth(AuthError::Proof(error)) => (
                proof_error_code(*error),
                error.description(),
                Some(bearer_challenge(
                    ctx,
                    Some(proof_error_code(*error)),
                    Some(error.description()),
                    None,
                )),
            ),
            ProxyError::Auth(AuthError::Malformed(_)) => (
                "invalid_request",
                "the Authorization header is malformed",
                Some(bearer_challenge(
                    ctx,
                    Some("invalid_request"),
                    Some("the Authorization header is malformed"),
                    None,
                )),
            ),
            ProxyError::Auth(AuthError::Invalid(reason)) => (
                "invalid_token",
                reason.description(),
                Some(bearer_challenge(
                    ctx,
                    Some("invalid_token"),
                    Some(reason.description()),
                    None,
                )),
            ),
            // RFC 6750 §3.1 `invalid_token`: "invalid for other reasons" — this token's claims
            // cannot be forwarded here; a fixed text, never the claim.
            ProxyError::Identity(_) => (
                "invalid_token",
                IDENTITY_DESCRIPTION,
                Some(bearer_challenge(
                    ctx,
                    Some("invalid_token"),
                    Some(IDENTITY_DESCRIPTION),
                    None,
                )),
            ),
            ProxyError::InsufficientScope { scopes } => (
                "insufficient_scope",
                "the token lacks a scope this operation needs",
                Some(bearer_challenge(
                    ctx,
                    Some("insufficient_scope"),
                    Some("the token lacks a scope this operation needs"),
                    Some(scopes),
                )),
            ),
            // No challenge: RFC 6750's only 403 code, insufficient_scope, would send OAuth and
            // MCP clients to ask for more scopes, which cannot help; RFC 9110 §15.5.4 says the
            // client should not repeat the request with the same credentials. The body names
            // the rule (configuration), never the claim's value.
            ProxyError::ClaimMismatch { .. } => ("claim_mismatch", CLAIM_DESCRIPTION, None),
            ProxyError::BadPath(_) => ("invalid_path", "the request path is not acceptable", None),
            ProxyError::Inspection(InspectionError::TooLarge) => (
                "payload_too_large",
                "the request body is larger than this route inspects",
                None,
            ),
            ProxyError::Inspection(InspectionError::Encoded) => (
                "unsupported_media_type",
                "this route inspects request bodies and accepts no content coding",
                None,
            ),
            ProxyError::Inspection(InspectionError::NotSent) => (
                "bad_request",
                "this decision reads the request body, and the ingress did not send it",
                None,
            ),
            ProxyError::Request(_) | ProxyError::Inspection(_) => {
                ("bad_request", "the request is not acceptable", None)
            }
            ProxyError::ForwardAuth(OriginalError::UntrustedPeer) => (
                "forbidden",
                "this peer is not trusted to ask for forward-auth decisions",
                None,
            ),
            ProxyError::ForwardAuth(OriginalError::Malformed) => (
                "bad_request",
                "the original request's method or target is missing or malformed",
                None,
            ),
            ProxyError::NoRoute => ("not_found", "no route matches this request", None),
            ProxyError::Auth(AuthError::Unavailable(_)) => (
                "temporarily_unavailable",
                "the authorization server cannot be reached; retry later",
                None,
            ),
            ProxyError::Upstream(UpstreamError::Timeout) => {
                ("gateway_timeout", "the upstream did not answer in time", None)
            }
            ProxyError::Upstream(UpstreamError::Saturated) => (
                "temporarily_unavailable",
                "too many requests are in flight to the upstream; retry later",
                None,
            ),
            ProxyError::Upstream(_) => ("bad_gateway", "the upstream did not answer", None),
        };
        let mut body = serde_json::json!({ "error": error, "error_description": description });
        if let (ProxyError::ClaimMismatch { rule }, Some(fields)) = (&self, body.as_object_mut()) {
            fields.insert("claim_rule".into(), rule.as_str().into());
        }
        let body = body.to_string();
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = challenge {
            for value in challenges(&self, ctx, &challenge) {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.append(WWW_AUTHENTICATE, value);
                }
            }
        }
        if let ProxyError::Auth(AuthError::Proof(ProofError::UseNonce(nonce))) = &self
            && let Ok(value) = HeaderValue::from_str(&nonce.encoded())
        {
            // RFC 9449 §8.1: the nonce to put in the next proof.
            headers.insert(DPOP_NONCE, value);
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // RFC 9110 §12.5.3: a 415 for a content coding names the codings accepted.
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// The description of a refusal by a claim rule.
const CLAIM_DESCRIPTION: &str = "the token's claims do not satisfy this route's claim rules";

/// The description of a token whose identity cannot be forwarded unaltered.
const IDENTITY_DESCRIPTION: &str = "the token carries a claim that cannot be forwarded as an identity header";

impl From<AuthError> for ProxyError {
    fn from(error: AuthError) -> ProxyError {
        ProxyError::Auth(error)
    }
}

impl From<RequestError> for ProxyError {
    fn from(error: RequestError) -> ProxyError {
        ProxyError::Request(error)
    }
}

impl From<InspectionError> for ProxyError {
    fn from(error: InspectionError) -> ProxyError {
        ProxyError::Inspection(error)
    }
}

impl From<IdentityError> for ProxyError {
    fn from(error: IdentityError) -> ProxyError {
        ProxyError::Identity(error)
    }
}

impl From<OriginalError> for ProxyError {
    fn from(error: OriginalError) -> ProxyError {
        ProxyError::ForwardAuth(error)
    }
}

impl From<UpstreamError> for ProxyError {
    fn from(error: UpstreamError) -> ProxyError {
        ProxyError::Upstream(error)
    }
}

impl From<crate::canonical::PathError> for ProxyError {
    fn from(error: PathError) -> ProxyError {
        ProxyError::BadPath(error)
    }
}

/// RFC 9449 §8.1.
const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// RFC 9449 §7.1, §8: the error code of a refused proof.
fn proof_error_code(error: ProofError) -> &'static str {
    match error {
        ProofError::UseNonce(_) => "use_dpop_nonce",
        _ => "invalid_dpop_proof",
    }
}

/// The `WWW-Authenticate` values of a refusal whose `Bearer` challenge is `bearer`, by the
/// route's DPoP mode (RFC 9449 §7.1): a refusal about DPoP, or of a token sent with the
/// `DPoP` scheme, is a `DPoP` challenge; a missing token on a route that takes both gets
/// both challenges, on a route that requires DPoP only the `DPoP` one.
fn challenges(error: &ProxyError, ctx: &ChallengeContext<'_>, bearer: &str) -> Vec<String> {
    let Some((mode, algs)) = ctx.dpop.filter(|(mode, _)| *mode != DpopMode::Off) else {
        return vec![bearer.to_string()];
    };
    let as_dpop = || {
        let params = bearer.strip_prefix("Bearer ").unwrap_or_default();
        format!("DPoP {params}, algs=\"{algs}\"")
    };
    let about_dpop = match error {
        ProxyError::Auth(AuthError::Proof(_)) => true,
        ProxyError::Auth(AuthError::Invalid(InvalidReason::Binding(binding))) => binding.is_dpop(),
        ProxyError::Auth(AuthError::Missing) => mode == DpopMode::Required,
        _ => ctx.scheme == Some(Scheme::Dpop),
    };
    match error {
        _ if about_dpop => vec![as_dpop()],
        ProxyError::Auth(AuthError::Missing) => vec![
            bearer.to_string(),
            format!("DPoP realm=\"{}\", algs=\"{algs}\"", ctx.realm),
        ],
        _ => vec![bearer.to_string()],
    }
}

/// Builds an RFC 6750 §3 / RFC 9728 §5.1 challenge. Every value placed here is either
/// configuration validated to be quotable or fixed text, so no escaping is needed.
pub fn bearer_challenge(
    ctx: &ChallengeContext<'_>,
    error: Option<&str>,
    description: Option<&str>,
    scope: Option<&str>,
) -> String {
    let mut params = vec![format!("realm=\"{}\"", ctx.realm)];
    if let Some(url) = ctx.resource_metadata {
        params.push(format!("resource_metadata=\"{url}\""));
    }
    if let Some(error) = error {
        params.push(format!("error=\"{error}\""));
    }
    if let Some(description) = description {
        params.push(format!("error_description=\"{description}\""));
    }
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        params.push(format!("scope=\"{scope}\""));
    }
    format!("Bearer {}", params.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::error::UnavailableReason;

    fn ctx() -> ChallengeContext<'static> {
        ChallengeContext {
            realm: "api",
            resource_metadata: Some("https://api.example/.well-known/oauth-protected-resource"),
            route_scopes: Some("read"),
            dpop: None,
            scheme: None,
        }
    }

    fn challenge(e: ProxyError) -> String {
        let r = e.into_response(&ctx());
        r.headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        let c = challenge(ProxyError::Auth(AuthError::Missing));
        assert_eq!(
            c,
            "Bearer realm=\"api\", resource_metadata=\"https://api.example/.well-known/oauth-protected-resource\", scope=\"read\""
        );
    }

    #[test]
    fn insufficient_scope_lists_scopes() {
        let c = challenge(ProxyError::InsufficientScope {
            scopes: "read mcp".into(),
        });
        assert!(c.contains("error=\"insufficient_scope\""), "{c}");
        assert!(c.ends_with("scope=\"read mcp\""), "{c}");
    }

    #[test]
    fn claim_mismatch_is_403_without_challenge_naming_the_rule() {
        let r = ProxyError::ClaimMismatch {
            rule: "org_id = {org}".into(),
        }
        .into_response(&ctx());
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.headers().contains_key(WWW_AUTHENTICATE));
    }

    #[test]
    fn unavailable_is_503_with_retry_after_and_no_challenge() {
        let r = ProxyError::Auth(AuthError::Unavailable(UnavailableReason::JwksUnavailable)).into_response(&ctx());
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(RETRY_AFTER));
        assert!(!r.headers().contains_key(WWW_AUTHENTICATE));
    }
}
