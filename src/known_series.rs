//! Metric series whose label values are known before any traffic, exported at zero from the
//! start (and for new routes and issuers on reload). A counter that has never moved then
//! still shows: `rate()` and `increase()` answer 0 instead of "no data", alerts on a reason
//! work before its first occurrence, and a dashboard lists every outcome. `docs/metrics.md`
//! ("Series exported at zero") lists them.
//!
//! Only bounded sets: fixed codes (43 auth outcomes), and at most four series per
//! configured route and two per issuer. Series that depend on what requests look like —
//! status classes other than the usual one for a decision, request-path errors before
//! authentication, MCP inspection codes, dry-run outcomes of unmatched requests — appear
//! when they first happen.

use crate::config::Config;
use crate::error::ProxyError;
use crate::forward::UpstreamError;
use crate::identity::IdentityError;
use crate::metrics::Metrics;
use crate::policy::{Access, EnforcementMode};
use crate::token::config::TokenValidation;
use crate::token::error::AuthError;

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Creates every known series of `config` at zero; series that exist keep their values.
pub fn start_at_zero(metrics: &Metrics, config: &Config) {
    for (decision, reason) in auth_outcomes() {
        metrics.auth_decisions.with_label_values(&[decision, reason]);
    }
    for route in config.routes.iter() {
        let outcomes: &[(&str, &str)] = match route.access {
            Access::Public => &[("public", "2xx")],
            Access::Protected(_) => &[("allow", "2xx"), ("deny", "4xx"), ("unavailable", "5xx")],
        };
        for (decision, status_class) in outcomes {
            metrics
                .requests
                .with_label_values(&[route.name.as_str(), decision, status_class]);
        }
        if route.mode.unwrap_or(config.auth.mode) == EnforcementMode::DryRun {
            metrics
                .requests
                .with_label_values(&[route.name.as_str(), "would_deny", "2xx"]);
        }
    }
    metrics.requests.with_label_values(&[UNMATCHED, "deny", "4xx"]);
    for failure in [
        UpstreamError::Unreachable,
        UpstreamError::Timeout,
        UpstreamError::Failed,
        UpstreamError::Saturated,
    ] {
        metrics.upstream_errors.with_label_values(&[failure.kind()]);
    }
    for cache in ["jwt", "introspection"] {
        for result in ["hit", "miss"] {
            metrics.cache_lookups.with_label_values(&[cache, result]);
        }
    }
    for result in ["active", "inactive", "error"] {
        metrics.introspection_calls.with_label_values(&[result]);
    }
    if config.fleet.is_some() {
        for op in crate::fleet::FLEET_OPS {
            metrics.fleet_errors.with_label_values(&[op]);
        }
        for source in ["admin", "fleet", "ssf"] {
            metrics.fleet_revocations.with_label_values(&[source]);
        }
        for result in ["hit", "miss", "error"] {
            metrics.fleet_shared_lookups.with_label_values(&[result]);
        }
    }
    if config.ssf.is_some() {
        for result in ["applied", "ignored", "refused"] {
            metrics.ssf_events.with_label_values(&[result]);
        }
    }
    // Issuers that verify JWTs fetch keys; introspection-only ones never do.
    let verifying = config
        .tokens
        .issuers
        .iter()
        .filter(|issuer| issuer.token_validation != TokenValidation::Introspection);
    for issuer in verifying {
        for result in ["success", "error"] {
            metrics
                .jwks_fetches
                .with_label_values(&[issuer.issuer.as_str(), result]);
        }
    }
}

/// `(decision, reason)` of every auth outcome a protected route can record: `allow`/`ok`,
/// each refusal of a token, a missing scope and an identity that cannot be forwarded.
fn auth_outcomes() -> Vec<(&'static str, &'static str)> {
    let mut refusals: Vec<ProxyError> = AuthError::every_refusal().into_iter().map(ProxyError::Auth).collect();
    refusals.push(ProxyError::InsufficientScope { scopes: String::new() });
    refusals.extend(
        [
            IdentityError::UnsafeValue,
            IdentityError::Unrepresentable,
            IdentityError::TooLong,
        ]
        .map(ProxyError::Identity),
    );
    let mut outcomes = vec![("allow", "ok")];
    for refusal in &refusals {
        let decision = match refusal {
            ProxyError::Auth(AuthError::Unavailable(_)) => "unavailable",
            _ => "deny",
        };
        outcomes.push((decision, refusal.reason()));
    }
    outcomes.sort_unstable();
    outcomes.dedup();
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_outcomes_are_bounded_and_distinct() {
        let outcomes = auth_outcomes();
        assert!(outcomes.len() < 64, "{}", outcomes.len());
        assert!(outcomes.contains(&("deny", "missing_token")));
        assert!(outcomes.contains(&("deny", "expired")));
        assert!(outcomes.contains(&("deny", "insufficient_scope")));
        assert!(outcomes.contains(&("unavailable", "jwks_unavailable")));
        assert!(!outcomes.iter().any(|(_, reason)| *reason == "as_metadata_unavailable"));
    }
}
