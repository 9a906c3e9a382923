//! scopegate: an OAuth 2.0 resource-server sidecar. It validates bearer tokens (locally
//! against the issuer's JWKS), enforces the scopes a TOML route map requires, and streams
//! allowed requests to the upstream.
//!
//! Module map, in request order:
//! - [`config`] — TOML file → validated [`config::Config`] (every problem at once).
//! - [`server`] — data and admin listeners, limits, graceful drain.
//! - [`gateway`] — the current config generation behind one swap point; live reload.
//! - [`proxy`] — the request path: canonicalize → route → authenticate → authorize →
//!   rewrite → forward → record.
//! - [`canonical`] — the one path canonicalization used for matching and forwarding.
//! - [`policy`] — compiled route map and scope rules (no I/O).
//! - [`token`] — bearer extraction, JWS verification, JWKS key sets and the token cache.
//! - [`forward`] — header rewriting and the pooled upstream client.
//! - [`error`] — the one error → response mapping; [`body`] — the one body type.
//! - [`mcp`] — MCP routes: RFC 9728 metadata, RFC 8707 audience binding, tool-level scopes.
//! - [`metrics`], [`admin`] — Prometheus metrics and `/metrics`, `/healthz`, `/readyz`.
//! - [`units`] — durations and sizes as the config file spells them.
//! - `dev` — the embedded development authorization server behind `demo`, `dev-issuer`
//!   and the integration tests; only with the `dev` cargo feature (on by default, off in
//!   the production build).
//! - [`explain`] — `scopegate explain`: what the proxy would do with one request.
//! - [`online`] — `scopegate check --online`: probe every issuer before deploying.
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod canonical;
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod error;
pub mod explain;
pub mod forward;
pub mod gateway;
pub mod mcp;
pub mod metrics;
pub mod online;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod token;
pub mod units;
