//! scopegate's integration tests in one test binary: one link instead of one per file. Each
//! module is what used to be a file of its own under `tests/`; they share `tests/common/`
//! (a counting upstream, the typed config builder, the development issuer, access-log
//! capture). `proxy_core` stays a binary of its own: it measures this process's peak memory.

#[path = "../common/mod.rs"]
mod common;

mod admin_plane;
mod assertion;
mod binary;
mod canonical;
mod check_online;
mod claim_rules;
mod cli;
mod cors;
mod decision;
mod demo;
mod dev_issuer;
mod dpop;
mod explain;
mod fleet;
mod forward_auth;
mod forward_auth_ingress;
mod hygiene;
mod identity;
mod introspection;
mod jws;
mod mcp_proxy;
mod mcp_sdk;
mod metrics_catalog;
mod mtls_issuer;
mod operations;
mod recipes;
mod resource_limits;
mod resource_metadata;
mod review;
mod thirdparty_as;
mod tls;
mod token_cli;
mod token_cli_thirdparty;
mod token_hardening;
mod token_validation;
mod upstream_pool;
mod workers;
mod wycheproof;
