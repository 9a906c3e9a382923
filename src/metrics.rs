//! Prometheus metrics on a private registry. Label values come only from bounded sets:
//! configured route and issuer names, decisions and reason codes — never a raw path,
//! token or subject.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric scopegate exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
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
    pub cache_lookups: IntCounterVec,
    pub cache_entries: IntGaugeVec,
    pub introspection_calls: IntCounterVec,
    pub introspection_duration: Histogram,
}

/// Sub-millisecond buckets for auth, since a cached decision costs microseconds.
const AUTH_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let metrics = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "scopegate_requests_total",
                    "Requests by route, decision and response status class.",
                ),
                &["route", "decision", "status_class"],
            )
            .expect("static metric definition is valid"),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scopegate_request_duration_seconds",
                    "Time from request head received to response head sent.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["route"],
            )
            .expect("static metric definition is valid"),
            upstream_errors: IntCounterVec::new(
                Opts::new("scopegate_upstream_errors_total", "Failed upstream exchanges by kind."),
                &["kind"],
            )
            .expect("static metric definition is valid"),
            in_flight: IntGauge::new("scopegate_in_flight_requests", "Requests being handled now.")
                .expect("static metric definition is valid"),
            open_connections: IntGauge::new(
                "scopegate_open_connections",
                "Open client connections on the data listener.",
            )
            .expect("static metric definition is valid"),
            auth_decisions: IntCounterVec::new(
                Opts::new(
                    "scopegate_auth_decisions_total",
                    "Authentication and authorization outcomes by reason.",
                ),
                &["decision", "reason"],
            )
            .expect("static metric definition is valid"),
            auth_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "scopegate_auth_duration_seconds",
                    "Time spent authenticating one request.",
                )
                .buckets(AUTH_BUCKETS.to_vec()),
            )
            .expect("static metric definition is valid"),
            signature_verifications: IntCounter::new(
                "scopegate_jwt_signature_verifications_total",
                "JWT signature verifications performed (cache misses that reached the crypto).",
            )
            .expect("static metric definition is valid"),
            jwks_fetches: IntCounterVec::new(
                Opts::new(
                    "scopegate_jwks_fetches_total",
                    "JWKS and discovery fetches by issuer and result.",
                ),
                &["issuer", "result"],
            )
            .expect("static metric definition is valid"),
            jwks_keys: IntGaugeVec::new(
                Opts::new("scopegate_jwks_keys", "Usable verification keys loaded per issuer."),
                &["issuer"],
            )
            .expect("static metric definition is valid"),
            jwks_last_success: IntGaugeVec::new(
                Opts::new(
                    "scopegate_jwks_last_success_timestamp_seconds",
                    "Unix time of the last successful JWKS fetch per issuer.",
                ),
                &["issuer"],
            )
            .expect("static metric definition is valid"),
            cache_lookups: IntCounterVec::new(
                Opts::new(
                    "scopegate_cache_lookups_total",
                    "Cache lookups by cache and result (hit or miss).",
                ),
                &["cache", "result"],
            )
            .expect("static metric definition is valid"),
            cache_entries: IntGaugeVec::new(
                Opts::new("scopegate_cache_entries", "Entries currently held per cache."),
                &["cache"],
            )
            .expect("static metric definition is valid"),
            introspection_calls: IntCounterVec::new(
                Opts::new(
                    "scopegate_introspection_calls_total",
                    "RFC 7662 introspection calls by result (active, inactive, error).",
                ),
                &["result"],
            )
            .expect("static metric definition is valid"),
            introspection_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "scopegate_introspection_duration_seconds",
                    "Latency of introspection calls.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
            )
            .expect("static metric definition is valid"),
            registry,
        };
        let build_info = IntGaugeVec::new(
            Opts::new("scopegate_build_info", "Build information; the value is always 1."),
            &["version"],
        )
        .expect("static metric definition is valid");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.request_duration.clone()),
            Box::new(metrics.upstream_errors.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.open_connections.clone()),
            Box::new(metrics.auth_decisions.clone()),
            Box::new(metrics.auth_duration.clone()),
            Box::new(metrics.signature_verifications.clone()),
            Box::new(metrics.jwks_fetches.clone()),
            Box::new(metrics.jwks_keys.clone()),
            Box::new(metrics.jwks_last_success.clone()),
            Box::new(metrics.cache_lookups.clone()),
            Box::new(metrics.cache_entries.clone()),
            Box::new(metrics.introspection_calls.clone()),
            Box::new(metrics.introspection_duration.clone()),
            Box::new(build_info),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once on a fresh registry");
        }
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
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
