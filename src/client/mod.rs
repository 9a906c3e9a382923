//! `scopegate token`: the client side of the flow scopegate protects. From a protected URL it
//! finds the authorization server as an MCP client does (401 → RFC 9728 metadata → RFC 8414
//! or OpenID Connect metadata), registers a public client (RFC 7591), gets a token (PKCE
//! through a loopback redirect, the device grant, or client credentials), keeps it in a
//! private file, refreshes and revokes it, and runs curl or any command with it.
//!
//! Not in the request path: the proxy never imports this module.
//
// Imports run one way: cli → (process, flows) → (grants, discovery, store) → (endpoints,
// loopback, pkce, challenge) → error.

pub mod challenge;
pub mod cli;
pub mod discovery;
pub mod endpoints;
pub mod error;
pub mod flows;
pub mod grants;
pub mod loopback;
pub mod pkce;
pub mod process;
pub mod store;

pub use error::ClientError;
