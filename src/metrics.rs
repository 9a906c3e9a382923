//! Prometheus metrics on a private registry. Label values come only from bounded sets:
//! configured route and issuer names, decisions and reason codes — never a raw path,
//! token or subject. `docs/metrics.md` documents each one; a test keeps the two in step.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric scopegate exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub forward_auth_requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub in_flight: IntGauge,
    pub open_connections: IntGauge,
    pub auth_decisions: IntCounterVec,
    pub auth_duration: Histogram,
    pub signature_verifications: IntCounter,
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwks_last_success: IntGaugeVec,
    pub jwks_seconds_since_success: IntGaugeVec,
    pub cache_lookups: IntCounterVec,
    pub cache_entries: IntGaugeVec,
    pub introspection_calls: IntCounterVec,
    pub introspection_duration: Histogram,
    pub config_reloads: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub fleet_connected: IntGauge,
    pub fleet_errors: IntCounterVec,
    pub fleet_revocations: IntCounterVec,
    pub fleet_shared_lookups: IntCounterVec,
    pub ssf_events: IntCounterVec,
}

/// Sub-millisecond buckets for auth, since a cached decision costs microseconds.
const AUTH_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Registers a freshly built collector; names are static and unique, so neither step fails.
fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: Result<C, prometheus::Error>) -> C {
    let collector = collector.expect("static metric definitions are valid");
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric is registered once on a fresh registry");
    collector
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counters = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let gauges = |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(Opts::new(name, help), labels);
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        };
        let metrics = Metrics {
            requests: register(
                &r,
                counters(
                    "scopegate_requests_total",
                    "Requests by route, decision and response status class.",
                    &["route", "decision", "status_class"],
                ),
            ),
            forward_auth_requests: register(
                &r,
                counters(
                    "scopegate_forward_auth_requests_total",
                    "Questions an ingress asked the forward-auth listener, by route, decision and answer status class.",
                    &["route", "decision", "status_class"],
                ),
            ),
            request_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "scopegate_request_duration_seconds",
                        "Time from request head received to response head sent.",
                    )
                    .buckets(REQUEST_BUCKETS.to_vec()),
                    &["route"],
                ),
            ),
            upstream_errors: register(
                &r,
                counters(
                    "scopegate_upstream_errors_total",
                    "Failed upstream exchanges by kind.",
                    &["kind"],
                ),
            ),
            in_flight: register(
                &r,
                IntGauge::new("scopegate_in_flight_requests", "Requests being handled now."),
            ),
            open_connections: register(
                &r,
                IntGauge::new(
                    "scopegate_open_connections",
                    "Open client connections on the data and forward-auth listeners.",
                ),
            ),
            auth_decisions: register(
                &r,
                counters(
                    "scopegate_auth_decisions_total",
                    "Authentication and authorization outcomes by reason.",
                    &["decision", "reason"],
                ),
            ),
            auth_duration: register(
                &r,
                histogram(
                    "scopegate_auth_duration_seconds",
                    "Time spent authenticating one request.",
                    AUTH_BUCKETS,
                ),
            ),
            signature_verifications: register(
                &r,
                IntCounter::new(
                    "scopegate_jwt_signature_verifications_total",
                    "JWT signature verifications performed (cache misses that reached the crypto).",
                ),
            ),
            jwks_fetches: register(
                &r,
                counters(
                    "scopegate_jwks_fetches_total",
                    "JWKS and discovery fetches by issuer and result.",
                    &["issuer", "result"],
                ),
            ),
            jwks_keys: register(
                &r,
                gauges(
                    "scopegate_jwks_keys",
                    "Usable verification keys loaded per issuer.",
                    &["issuer"],
                ),
            ),
            jwks_last_success: register(
                &r,
                gauges(
                    "scopegate_jwks_last_success_timestamp_seconds",
                    "Unix time of the last successful JWKS fetch per issuer.",
                    &["issuer"],
                ),
            ),
            jwks_seconds_since_success: register(
                &r,
                gauges(
                    "scopegate_jwks_seconds_since_last_success",
                    "Seconds since the last successful JWKS fetch per issuer (set at scrape time).",
                    &["issuer"],
                ),
            ),
            cache_lookups: register(
                &r,
                counters(
                    "scopegate_cache_lookups_total",
                    "Cache lookups by cache and result (hit or miss).",
                    &["cache", "result"],
                ),
            ),
            cache_entries: register(
                &r,
                gauges(
                    "scopegate_cache_entries",
                    "Entries currently held per cache.",
                    &["cache"],
                ),
            ),
            introspection_calls: register(
                &r,
                counters(
                    "scopegate_introspection_calls_total",
                    "RFC 7662 introspection calls by result (active, inactive, error).",
                    &["result"],
                ),
            ),
            introspection_duration: register(
                &r,
                histogram(
                    "scopegate_introspection_duration_seconds",
                    "Latency of introspection calls.",
                    REQUEST_BUCKETS,
                ),
            ),
            config_reloads: register(
                &r,
                counters(
                    "scopegate_config_reloads_total",
                    "Config reloads by result (success, rejected).",
                    &["result"],
                ),
            ),
            tls_reloads: register(
                &r,
                counters(
                    "scopegate_tls_reloads_total",
                    "Reloads of the data listener's certificate, key and client CA files by result (success, rejected).",
                    &["result"],
                ),
            ),
            tls_handshake_failures: register(
                &r,
                counters(
                    "scopegate_tls_handshake_failures_total",
                    "TLS handshakes on the data listener that did not finish, by reason (timeout, failed).",
                    &["reason"],
                ),
            ),
            build_info: register(
                &r,
                gauges(
                    "scopegate_build_info",
                    "Build information and the loaded config's hash; the value is always 1.",
                    &["version", "config_hash"],
                ),
            ),
            fleet_connected: register(
                &r,
                IntGauge::new(
                    "scopegate_fleet_connected",
                    "1 while the fleet's Redis is subscribed to and its revocations are loaded, else 0.",
                ),
            ),
            fleet_errors: register(
                &r,
                counters(
                    "scopegate_fleet_errors_total",
                    "Failed operations on the fleet's Redis, by operation.",
                    &["op"],
                ),
            ),
            fleet_revocations: register(
                &r,
                counters(
                    "scopegate_fleet_revocations_total",
                    "Revocations applied to the local set, by where they came from (admin, fleet, ssf).",
                    &["source"],
                ),
            ),
            fleet_shared_lookups: register(
                &r,
                counters(
                    "scopegate_fleet_shared_cache_lookups_total",
                    "Lookups in the fleet's shared introspection answers, by result (hit, miss, error).",
                    &["result"],
                ),
            ),
            ssf_events: register(
                &r,
                counters(
                    "scopegate_ssf_events_total",
                    "Security Event Tokens received, by result (applied, ignored, refused).",
                    &["result"],
                ),
            ),
            registry: r,
        };
        metrics.set_config_hash("none");
        // Known label values start at zero, so the family is exported (and `increase()` works)
        // before the first reload.
        for result in ["success", "rejected"] {
            metrics.config_reloads.with_label_values(&[result]);
            metrics.tls_reloads.with_label_values(&[result]);
        }
        for reason in ["timeout", "failed"] {
            metrics.tls_handshake_failures.with_label_values(&[reason]);
        }
        metrics
    }

    /// Sets `scopegate_jwks_seconds_since_last_success` from the last-success timestamps:
    /// called when rendering, so the value is as of the scrape.
    fn update_jwks_age(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        for family in self.jwks_last_success.collect() {
            for metric in family.get_metric() {
                let issuer = metric.get_label().iter().find(|l| l.name() == "issuer");
                if let Some(issuer) = issuer {
                    let last = metric.get_gauge().get_value() as i64;
                    self.jwks_seconds_since_success
                        .with_label_values(&[issuer.value()])
                        .set(now.saturating_sub(last).max(0));
                }
            }
        }
    }

    /// Marks `hash` as the loaded config (replacing the previous one).
    pub fn set_config_hash(&self, hash: &str) {
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), hash])
            .set(1);
    }

    /// Every metric family name this struct exports, whether or not it has samples yet.
    pub fn names(&self) -> Vec<String> {
        let collectors: [&dyn Collector; 26] = [
            &self.requests,
            &self.forward_auth_requests,
            &self.request_duration,
            &self.upstream_errors,
            &self.in_flight,
            &self.open_connections,
            &self.auth_decisions,
            &self.auth_duration,
            &self.signature_verifications,
            &self.jwks_fetches,
            &self.jwks_keys,
            &self.jwks_last_success,
            &self.jwks_seconds_since_success,
            &self.cache_lookups,
            &self.cache_entries,
            &self.introspection_calls,
            &self.introspection_duration,
            &self.config_reloads,
            &self.tls_reloads,
            &self.tls_handshake_failures,
            &self.build_info,
            &self.fleet_connected,
            &self.fleet_errors,
            &self.fleet_revocations,
            &self.fleet_shared_lookups,
            &self.ssf_events,
        ];
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        names.sort();
        names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.update_jwks_age();
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
