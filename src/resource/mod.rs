//! RFC 9728 protected-resource metadata for every resource scopegate protects: the document
//! a resource publishes, where it is published (§3.1), and the answer to a request for it
//! ([`document`]).
//!
//! - `[[resource]]` (an API, or part of one) compiles into [`ResourceConfig`] ([`config`]);
//!   MCP routes take their resource from `[mcp]` ([`crate::mcp::config`]) and build their
//!   documents with the same pieces.
//! - Documents are built from configuration only: the request's `Host` never shapes them.
//! - A 401 on a route names its resource's document in `resource_metadata` (§5.1):
//!   [`crate::decision::Decision::resource_metadata`].

pub mod config;
pub mod document;

pub use config::{FileResource, ResourceConfig};
pub use document::{
    DocumentFields, METADATA_CACHE_CONTROL, PRM_PATH, RESOURCE_METADATA_ROUTE, ResourceDocument, json_response,
    method_not_allowed,
};
