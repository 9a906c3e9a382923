//! `scopegate check --online`: after the offline validation, ask every configured
//! authorization server the questions the proxy will ask at runtime — discovery, the JWKS,
//! introspection with the configured client credentials — with the issuer's
//! `fetch_timeout` on every call, and report every problem at once. A pre-deploy step for
//! CI pipelines: a typo in an issuer URL or a rotated client secret fails the pipeline
//! instead of the first request.

use std::fmt;
use std::time::Duration;

use crate::explain::Loaded;
use crate::http_client::{IssuerMetadata, discover, get_bounded, http_client, is_json};
use crate::token::config::{IntrospectionConfig, IssuerConfig, TokenValidation};
use crate::token::jwk::KeySet;

/// The result of checking one issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerReport {
    pub issuer: String,
    /// What was checked and found, one line each.
    pub lines: Vec<String>,
    /// Skipped JWKS keys and other findings that do not fail the check.
    pub warnings: Vec<String>,
    /// Findings that fail the check.
    pub problems: Vec<String>,
    /// Usable JWKS keys (`None` when the JWKS was not fetched).
    pub usable_keys: Option<usize>,
}

impl IssuerReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for IssuerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() { "ok" } else { "FAILED" };
        writeln!(f, "issuer {}: {verdict}", self.issuer)?;
        for line in &self.lines {
            writeln!(f, "  {line}")?;
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        for problem in &self.problems {
            writeln!(f, "  problem: {problem}")?;
        }
        Ok(())
    }
}

/// Every issuer's report and the per-route token examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlineReport {
    pub issuers: Vec<IssuerReport>,
    /// `GET,HEAD /projects/** (projects-read): a token from … with scope "read" …`
    pub routes: Vec<String>,
}

impl OnlineReport {
    /// Every problem, prefixed with its issuer.
    pub fn problems(&self) -> Vec<String> {
        self.issuers
            .iter()
            .flat_map(|i| i.problems.iter().map(move |p| format!("{}: {p}", i.issuer)))
            .collect()
    }

    pub fn is_ok(&self) -> bool {
        self.issuers.iter().all(IssuerReport::is_ok)
    }

    /// `online check: 2 issuer(s), 2 ok, 0 failed` (plus the problem count when failing).
    pub fn summary(&self) -> String {
        let ok = self.issuers.iter().filter(|i| i.is_ok()).count();
        let failed = self.issuers.len() - ok;
        let mut line = format!(
            "online check: {} issuer(s), {ok} ok, {failed} failed",
            self.issuers.len()
        );
        if failed > 0 {
            line.push_str(&format!(", {} problem(s)", self.problems().len()));
        }
        line
    }
}

/// What [`check_online`] reports while it works.
pub enum Progress<'a> {
    /// About to check this issuer (index, total).
    Checking {
        issuer: &'a str,
        index: usize,
        total: usize,
    },
    Done(&'a IssuerReport),
}

/// Checks every issuer in turn, calling `progress` before and after each, then phrases
/// what a token needs per route.
pub async fn check_online(loaded: &Loaded, mut progress: impl FnMut(Progress<'_>)) -> OnlineReport {
    let issuers = &loaded.config.tokens.issuers;
    let mut report = OnlineReport::default();
    for (index, issuer) in issuers.iter().enumerate() {
        progress(Progress::Checking {
            issuer: &issuer.issuer,
            index: index + 1,
            total: issuers.len(),
        });
        let result = check_issuer(issuer).await;
        progress(Progress::Done(&result));
        report.issuers.push(result);
    }
    report.routes = loaded.route_examples();
    report
}

/// One issuer: discovery where the proxy would use it, the JWKS where it verifies locally,
/// and an introspection call with a made-up token where it introspects.
pub async fn check_issuer(issuer: &IssuerConfig) -> IssuerReport {
    let mut report = IssuerReport {
        issuer: issuer.issuer.clone(),
        ..IssuerReport::default()
    };
    let client = http_client(issuer.fetch_timeout, issuer.extra_roots.as_ref());
    let uses_keys = issuer.token_validation != TokenValidation::Introspection;
    let introspection = issuer.introspection.as_ref();
    // The proxy discovers the JWKS when no jwks_uri is configured, and the introspection
    // endpoint when none is configured (whatever `discovery` says).
    let jwks_needs_discovery = uses_keys && issuer.jwks_uri.is_none();
    let introspection_needs_discovery = introspection.is_some_and(|i| i.endpoint.is_none());
    let needed = jwks_needs_discovery || introspection_needs_discovery;
    let metadata = if issuer.discovery || needed {
        match discover(&client, &issuer.issuer, issuer.max_response_bytes).await {
            Ok(metadata) => {
                report.lines.push(format!(
                    "discovery: ok (jwks_uri {}, introspection_endpoint {})",
                    url_or_none(metadata.jwks_uri.as_ref()),
                    url_or_none(metadata.introspection_endpoint.as_ref())
                ));
                Some(metadata)
            }
            Err(e) if needed => {
                report.problems.push(format!("discovery failed: {e}"));
                None
            }
            Err(e) => {
                report.warnings.push(format!(
                    "discovery failed ({e}); not needed at runtime because the endpoints are configured"
                ));
                None
            }
        }
    } else {
        report.lines.push("discovery: off (jwks_uri configured)".into());
        None
    };
    if uses_keys {
        check_jwks(issuer, &client, metadata.as_ref(), &mut report).await;
    } else {
        report
            .lines
            .push("jwks: not used (token_validation = \"introspection\")".into());
    }
    if let Some(introspection) = introspection {
        check_introspection(issuer, introspection, metadata.as_ref(), &mut report).await;
    }
    report
}

fn url_or_none(url: Option<&reqwest::Url>) -> String {
    url.map_or_else(|| "none".into(), |u| u.to_string())
}

async fn check_jwks(
    issuer: &IssuerConfig,
    client: &reqwest::Client,
    metadata: Option<&IssuerMetadata>,
    report: &mut IssuerReport,
) {
    let uri = match (&issuer.jwks_uri, metadata) {
        (Some(uri), _) => uri.clone(),
        (
            None,
            Some(IssuerMetadata {
                jwks_uri: Some(uri), ..
            }),
        ) => uri.clone(),
        (None, Some(_)) => {
            report
                .problems
                .push("the discovery document has no jwks_uri and none is configured".into());
            return;
        }
        // Discovery already failed and was reported.
        (None, None) => return,
    };
    let fetched = match get_bounded(client, &uri, issuer.max_response_bytes).await {
        Ok(fetched) => fetched,
        Err(e) => {
            report.problems.push(format!("JWKS fetch from {uri} failed: {e}"));
            return;
        }
    };
    let (keys, warnings) = match KeySet::from_jwks(&fetched.body) {
        Ok(parsed) => parsed,
        Err(e) => {
            report.problems.push(format!("the JWKS at {uri} is not usable: {e}"));
            return;
        }
    };
    report.usable_keys = Some(keys.len());
    report.warnings.extend(warnings.iter().map(|w| w.to_string()));
    let algorithms: Vec<&str> = issuer.algorithms.iter().map(|a| a.name()).collect();
    let matching = keys
        .iter()
        .filter(|k| issuer.algorithms.iter().any(|alg| k.accepts(*alg)))
        .count();
    report.lines.push(format!(
        "jwks: {uri}: {} usable key(s), {matching} for the configured algorithms {algorithms:?}, {} skipped",
        keys.len(),
        warnings.len()
    ));
    if keys.is_empty() {
        report
            .problems
            .push(format!("the JWKS at {uri} has no usable signing key"));
    } else if matching == 0 {
        report.problems.push(format!(
            "no key in the JWKS can verify the configured algorithms {algorithms:?}: every token would be refused"
        ));
    }
}

async fn check_introspection(
    issuer: &IssuerConfig,
    config: &IntrospectionConfig,
    metadata: Option<&IssuerMetadata>,
    report: &mut IssuerReport,
) {
    let endpoint = match (&config.endpoint, metadata) {
        (Some(endpoint), _) => endpoint.clone(),
        (
            None,
            Some(IssuerMetadata {
                introspection_endpoint: Some(endpoint),
                ..
            }),
        ) => endpoint.clone(),
        (None, Some(_)) => {
            report
                .problems
                .push("the discovery document has no introspection_endpoint and none is configured".into());
            return;
        }
        (None, None) => return,
    };
    match probe_introspection(issuer.fetch_timeout, issuer.extra_roots.as_ref(), config, &endpoint).await {
        Ok(()) => report.lines.push(format!(
            "introspection: {endpoint}: ok (client {:?} accepted; a made-up token is inactive)",
            config.client_id
        )),
        Err(problem) => report.problems.push(format!("introspection at {endpoint}: {problem}")),
    }
}

/// POSTs a made-up token with the configured client authentication; a conforming server
/// answers 200 with JSON `{"active": false}`.
async fn probe_introspection(
    timeout: Duration,
    extra_roots: Option<&crate::tls::TrustBundle>,
    config: &IntrospectionConfig,
    endpoint: &reqwest::Url,
) -> Result<(), String> {
    let client = http_client(timeout, extra_roots);
    let token = format!(
        "scopegate-check-online-{}",
        crate::token::fingerprint(&crate::token::sha256(
            format!("{:?}", std::time::SystemTime::now()).as_bytes()
        ))
    );
    let response = crate::token::introspect::introspection_request(&client, endpoint, config, &token)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {timeout:?}")
            } else {
                "request failed (connection refused or reset)".to_string()
            }
        })?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        401 => return Err("HTTP 401: client credentials rejected".into()),
        other => return Err(format!("answered HTTP {other} (expected 200)")),
    }
    let json = is_json(response.headers());
    if !json {
        return Err("the answer is not application/json (the proxy would treat it as an outage)".into());
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| "the answer's body could not be read".to_string())?;
    if body.len() > config.max_response_bytes {
        return Err(format!("the answer is larger than {} bytes", config.max_response_bytes));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "the answer is not valid JSON".to_string())?;
    match value.get("active") {
        Some(serde_json::Value::Bool(false)) => Ok(()),
        Some(serde_json::Value::Bool(true)) => Err("a made-up token was reported active".into()),
        _ => Err("the answer has no boolean \"active\" member (RFC 7662 §2.2)".into()),
    }
}
