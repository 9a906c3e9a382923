//! MCP servers behind scopegate: the resource-server duties of the MCP authorization spec
//! (revisions 2025-06-18, 2025-11-25 and 2026-07-28), met for any MCP server.
//!
//! - `[mcp]` and `mcp = true` routes compile into [`McpConfig`] ([`config`]).
//! - RFC 9728 protected-resource metadata at `/.well-known/oauth-protected-resource` and its
//!   path-inserted forms, and the optional authorization-server metadata mirror
//!   ([`metadata`]), answered by scopegate itself.
//! - RFC 8707 audience binding: on an MCP route the token's `aud` must name the route's
//!   resource ([`McpRoute::check_audience`]).
//! - Tool-level scopes by JSON-RPC method and tool/prompt/resource name ([`rules`]), read
//!   from a bounded buffer of the body and cross-checked with `Mcp-Method`/`Mcp-Name`
//!   ([`authorize_calls`]). Only routes with rules buffer; every other MCP request (POST
//!   answered with JSON or SSE, GET streams, DELETE) is streamed untouched.

pub mod config;
pub mod metadata;
pub mod rules;

use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::{ProxyBody, full_body};
use crate::error::ProxyError;
use crate::policy::ScopeImplications;
use crate::token::Principal;
use rules::{InspectError, Verdict};

pub use config::{McpConfig, McpRoute, PRM_PATH, ResourceDocument};
pub use metadata::McpRuntime;

impl McpConfig {
    pub fn is_enabled(&self) -> bool {
        !self.documents.is_empty()
    }

    pub fn route(&self, name: &str) -> Option<&McpRoute> {
        self.routes.get(name)
    }

    /// On a route that is not an MCP endpoint, a token minted only for an MCP resource
    /// (RFC 8707) is refused: MCP clients, often dynamically registered, must not reach the
    /// rest of the API with it. The token needs an audience of its issuer's that is not an
    /// MCP resource. A principal without audiences (an introspection answer without `aud`,
    /// accepted by `require_audience = false`) was judged by its issuer's policy already.
    pub fn check_api_audience(&self, principal: &Principal, issuer_audiences: &[String]) -> Result<(), ProxyError> {
        if !self.is_enabled() || principal.audiences.is_empty() {
            return Ok(());
        }
        let is_mcp_resource = |aud: &String| self.documents.iter().any(|d| &d.resource == aud);
        if principal
            .audiences
            .iter()
            .any(|aud| issuer_audiences.contains(aud) && !is_mcp_resource(aud))
        {
            Ok(())
        } else {
            Err(ProxyError::InvalidToken {
                reason: "wrong_resource",
                description: "the token was not issued for this resource",
            })
        }
    }

    /// The document served at a canonical request path, if any.
    pub fn document_at(&self, path: &str) -> Option<&ResourceDocument> {
        if path == PRM_PATH {
            return self.documents.first();
        }
        self.documents.iter().find(|d| d.well_known_path == path)
    }
}

impl McpRoute {
    /// RFC 8707: the token must have been issued for this resource. Anything else is an
    /// `invalid_token` with fixed text, whatever other audiences the issuer accepts.
    pub fn check_audience(&self, principal: &Principal) -> Result<(), ProxyError> {
        if principal.audiences.contains(&self.resource) {
            Ok(())
        } else {
            Err(ProxyError::InvalidToken {
                reason: "wrong_resource",
                description: "the token was not issued for this resource",
            })
        }
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Tool-level authorization of a request on an MCP route. Without rules (or for anything
/// but POST) the body streams through untouched. Otherwise it is buffered up to the limit,
/// its calls checked, and the same bytes forwarded.
///
/// `route_scopes` is what the route itself asks for (the challenge lists it too).
pub async fn authorize_calls(
    config: &McpConfig,
    route: &McpRoute,
    route_scopes: &str,
    implications: &ScopeImplications,
    principal: Option<&Principal>,
    req: Request<Incoming>,
) -> Result<Request<ProxyBody>, ProxyError> {
    if route.rules.is_empty() {
        return Ok(req.map(crate::body::stream_body));
    }
    if req.method() != http::Method::POST {
        // JSON-RPC messages travel in POST bodies; a body on any other method could carry a
        // call the rules never saw.
        if !http_body::Body::is_end_stream(req.body()) && declared_length(req.headers()) != Some(0) {
            return Err(ProxyError::BadRequest("mcp_body_not_allowed"));
        }
        return Ok(req.map(crate::body::stream_body));
    }
    let (parts, body) = req.into_parts();
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|len| len > config.max_body_bytes as u64) {
        return Err(ProxyError::PayloadTooLarge);
    }
    let collected = tokio::time::timeout(
        config.body_read_timeout,
        Limited::new(body, config.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| ProxyError::BadRequest("body_read_timeout"))?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(ProxyError::PayloadTooLarge);
        }
        Err(_) => return Err(ProxyError::BadRequest("body_read_failed")),
    };
    let calls =
        rules::calls_in_request(&parts.headers, &bytes).map_err(|e: InspectError| ProxyError::BadRequest(e.code()))?;
    let granted = implications.expand(principal.iter().flat_map(|p| p.scopes.iter().map(String::as_str)));
    if let Verdict::Forbidden { needed } = rules::evaluate(&route.rules, &calls, &granted) {
        let mut all: Vec<String> = route_scopes.split_whitespace().map(str::to_string).collect();
        for scope in needed {
            if !all.iter().any(|s| s == scope.as_str()) {
                all.push(scope.to_string());
            }
        }
        return Err(ProxyError::InsufficientScope { scopes: all.join(" ") });
    }
    Ok(Request::from_parts(parts, full_body(bytes)))
}
