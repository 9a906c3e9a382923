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
//!   (the inspection step of [`crate::decision`]); resource URIs are compared in normal form ([`uri`]), and an
//!   encoded body is refused. Only routes with rules buffer; every other MCP request (POST
//!   answered with JSON or SSE, GET streams, DELETE) is streamed untouched.

pub mod config;
pub mod metadata;
pub mod rules;
pub mod uri;

use crate::token::Principal;
use crate::token::error::{AuthError, InvalidReason};

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
    pub fn check_api_audience(&self, principal: &Principal, issuer_audiences: &[String]) -> Result<(), AuthError> {
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
            Err(AuthError::Invalid(InvalidReason::WrongResource))
        }
    }

    /// Whether scopegate answers `path` itself: an RFC 9728 document, or the mirrored
    /// authorization-server metadata.
    pub fn is_metadata_path(&self, path: &str) -> bool {
        self.is_enabled()
            && (self.document_at(path).is_some() || (path == metadata::AS_METADATA_PATH && self.mirror.is_some()))
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
    pub fn check_audience(&self, principal: &Principal) -> Result<(), AuthError> {
        if principal.audiences.contains(&self.resource) {
            Ok(())
        } else {
            Err(AuthError::Invalid(InvalidReason::WrongResource))
        }
    }
}
