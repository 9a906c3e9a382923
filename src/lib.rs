//! scopegate: an OAuth 2.0 resource-server sidecar. It validates bearer tokens (locally
//! against the issuer's JWKS), enforces the scopes a TOML route map requires, and streams
//! allowed requests to the upstream.
//!
//! Module map, in request order:
//! - [`config`] — TOML file → validated [`config::Config`] (every problem at once); the
//!   sections it owns ([`config::network`]: listener, admin, upstream).
//!   [`config::problems`] (the problem list) and [`config::units`] (durations and sizes as
//!   the file spells them) are the leaf every section's compiler reports into; each
//!   section's file types live beside the code that compiles them ([`policy::file`],
//!   [`token::config`], [`mcp::config`], [`resource::config`]).
//! - [`server`] — data, forward-auth and admin listeners, the data plane's worker threads (one
//!   single-threaded runtime each), limits, graceful drain; [`connection`] —
//!   accepting under a connection cap, per-connection activity, the idle and
//!   response-progress timeouts, and the slot a WebSocket tunnel keeps.
//! - [`tls`] — rustls everywhere: `[listener.tls]` termination (the accept-time seam that
//!   yields plain or TLS I/O and the verified [`tls::ClientCertificate`]), certificate hot
//!   reload, CA bundles for the HTTPS upstream and authorization servers.
//! - [`gateway`] — the current config generation ([`gateway::App`]) behind one swap point;
//!   live reload.
//! - [`proxy`] — the request path: decide → rewrite → forward → record; [`record`] — the
//!   one access-log event and metric update of each request.
//! - [`forward_auth`] — the forward-auth listener: an ingress (nginx, Traefik, Envoy) asks,
//!   the same decision answers ([`forward_auth::original`] reads the original request the
//!   way the configured ingress names it; [`forward_auth::config`] is `[forward_auth]`).
//! - [`decision`] — the one decision (canonicalize, route, CORS preflight bypass,
//!   authenticate, authorize: scopes, claim rules, MCP tool rules; dry run), shared by the
//!   proxy, forward-auth and `explain`; [`cors`] — which requests are preflights, and the CORS
//!   headers of scopegate's own refusals (`[cors]`).
//! - [`canonical`] — the one path canonicalization used for matching and forwarding;
//!   [`hygiene`] — `Host` rules and method override parameters, refused before routing.
//! - [`policy`] — compiled route map, scope and claim rules (no I/O): [`policy::file`]
//!   (`[[route]]` as written), [`policy::scopes`], [`policy::claims`], [`policy::table`].
//! - [`token`] — token extraction (`Bearer`, `DPoP`), JWS verification, JWKS key sets,
//!   introspection, one discovery per issuer, the token caches and their clock;
//!   [`token::dpop`] and [`token::binding`] check, per request, that a sender-constrained
//!   token's holder sent it (RFC 9449 proofs, RFC 8705 certificates; `[dpop]` and
//!   `[cert_binding]` in [`token::config::sender`]); [`token::error`] is what
//!   authentication answers besides a principal; [`token::signing`] — the asymmetric JWS
//!   signer (identity assertions, the development issuer).
//! - [`http_client`] — bounded fetches from an authorization server (client, size-capped
//!   GETs, metadata discovery); a leaf shared by the token layer, MCP and `check --online`.
//! - [`forward`] — header rewriting and the upstream client ([`forward::upstream`]):
//!   HTTP/1.1 over scopegate's own connection pool, one per thread ([`forward::pool`]),
//!   HTTP/2 over hyper-util's client;
//!   [`admission`] — the cap on requests in flight to the upstream; [`identity`] — the
//!   identity headers it sets, never altered silently ([`identity::encoding`]), and
//!   `[identity]`; [`identity::assertion`] — the scopegate-signed JWT that replaces the
//!   client's token for the upstream (`[identity.assertion]`), its key and JWKS.
//! - [`error`] — the one error → response mapping; [`body`] — the one body type.
//! - [`resource`] — RFC 9728 protected-resource metadata: the documents, where they are
//!   served, and `[[resource]]` ([`resource::config`]) for API routes.
//! - [`mcp`] — MCP routes: RFC 9728 metadata, RFC 8707 audience binding, tool-level scopes;
//!   [`mcp::config`] compiles `[mcp]` and the MCP parts of routes.
//! - [`metrics`], [`admin`] — Prometheus metrics and `/metrics`, `/healthz`, `/readyz`, and
//!   the admin actions (revocations, the Shared Signals push endpoint);
//!   [`known_series`] — the series exported at zero from the start.
//! - [`fleet`] — `[fleet]` and `[ssf]`: revocations shared by every sidecar through Redis
//!   (pub/sub plus a durable sorted set, reloaded on every reconnect), shared introspection
//!   answers, and Security Event Tokens turned into subject revocations; it feeds the
//!   token layer's revocation set, which stays the enforcement point.
//! - `dev` — the embedded development authorization server behind `demo`, `dev-issuer`
//!   and the integration tests (optionally over TLS, binding tokens to client certificates); only with the `dev` cargo feature (on by default, off in
//!   the production build).
//! - [`explain`] — `scopegate explain`: what the proxy would do with one request.
//! - [`online`] — `scopegate check --online`: probe every issuer before deploying;
//!   [`output`] — command output on stdout that ends quietly when the reader goes away.
//! - [`client`] — `scopegate token`: discovery from a protected URL, client registration,
//!   PKCE through a loopback redirect, the device grant, client credentials, a private
//!   token file, refresh, revocation, and `token curl`/`exec` with step-up. Outside the
//!   request path.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod body;
pub mod canonical;
pub mod client;
pub mod config;
pub mod connection;
pub mod cors;
pub mod decision;
#[cfg(feature = "dev")]
pub mod dev;
pub mod error;
pub mod explain;
pub mod fleet;
pub mod forward;
pub mod forward_auth;
pub mod gateway;
pub mod http_client;
pub mod hygiene;
pub mod identity;
pub mod known_series;
pub mod mcp;
pub mod metrics;
pub mod online;
pub mod output;
pub mod policy;
pub mod proxy;
pub mod record;
pub mod resource;
pub mod server;
pub mod tls;
pub mod token;
