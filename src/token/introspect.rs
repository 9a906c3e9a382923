//! RFC 7662 token introspection: the remote validation path for opaque tokens (and for JWTs
//! of issuers configured to be asked rather than trusted locally).
//!
//! Any answer that is not a well-formed JSON introspection response — a transport error, a
//! timeout, a non-200 status, HTML, a missing `active` — is an outage (503), never an
//! inactive token and never an allow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::http_client::{http_client_with_connect_timeout, is_json};
use crate::metrics::Metrics;
use crate::token::config::{ClientAuthMethod, IntrospectionConfig, IssuerConfig};
use crate::token::discovery::IssuerDiscovery;
use crate::token::error::{AuthError, InactiveReason, UnavailableReason};
use crate::token::principal::Principal;

/// What the authorization server said about a token.
#[derive(Debug, Clone)]
pub enum Answer {
    Active(Arc<Principal>),
    /// Inactive, or active but not for us (wrong issuer, audience, type, expired).
    Inactive(InactiveReason),
}

/// An RFC 7662 client for one issuer.
pub struct Introspector {
    issuer: String,
    audiences: Vec<String>,
    config: IntrospectionConfig,
    /// Where the endpoint comes from unless configured (shared with the key set).
    discovery: Arc<IssuerDiscovery>,
    client: reqwest::Client,
    slots: Semaphore,
    metrics: Metrics,
}

fn unavailable(reason: UnavailableReason) -> AuthError {
    AuthError::Unavailable(reason)
}

impl Introspector {
    pub fn new(
        issuer: &IssuerConfig,
        config: IntrospectionConfig,
        discovery: Arc<IssuerDiscovery>,
        metrics: Metrics,
    ) -> Introspector {
        let client = http_client_with_connect_timeout(config.timeout, config.connect_timeout);
        Introspector {
            issuer: issuer.issuer.clone(),
            audiences: issuer.audiences.clone(),
            slots: Semaphore::new(config.max_concurrent),
            discovery,
            config,
            client,
            metrics,
        }
    }

    pub fn positive_ttl(&self) -> Duration {
        self.config.positive_ttl
    }

    pub fn negative_ttl(&self) -> Duration {
        self.config.negative_ttl
    }

    pub fn serve_stale_for(&self) -> Duration {
        self.config.serve_stale_for
    }

    /// The configured endpoint, else the one the issuer's metadata names.
    async fn endpoint(&self) -> Result<&reqwest::Url, AuthError> {
        if let Some(endpoint) = &self.config.endpoint {
            return Ok(endpoint);
        }
        let metadata = self.discovery.metadata().await.map_err(|e| {
            tracing::warn!(issuer = %self.issuer, error = %e, "discovery for introspection failed");
            unavailable(UnavailableReason::DiscoveryFailed)
        })?;
        metadata.introspection_endpoint.as_ref().ok_or_else(|| {
            tracing::warn!(issuer = %self.issuer, "the issuer's metadata has no introspection_endpoint");
            unavailable(UnavailableReason::NoIntrospectionEndpoint)
        })
    }

    /// Asks the authorization server about `token`.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when no trustworthy answer could be had.
    pub async fn introspect(&self, token: &str, now: u64) -> Result<Answer, AuthError> {
        let endpoint = self.endpoint().await?;
        // Bounded concurrency: a flood of new tokens queues here instead of overwhelming the
        // authorization server; a caller that waits past the call timeout gets a 503.
        let _slot = tokio::time::timeout(self.config.timeout, self.slots.acquire())
            .await
            .map_err(|_| unavailable(UnavailableReason::IntrospectionSaturated))?
            .map_err(|_| unavailable(UnavailableReason::IntrospectionSaturated))?;
        let started = Instant::now();
        let result = self.call(endpoint, token).await;
        self.metrics
            .introspection_duration
            .observe(started.elapsed().as_secs_f64());
        let answer =
            result.and_then(|body| interpret(&body, &self.issuer, &self.audiences, self.config.require_audience, now));
        let label = match &answer {
            Ok(Answer::Active(_)) => "active",
            Ok(Answer::Inactive(_)) => "inactive",
            Err(_) => "error",
        };
        self.metrics.introspection_calls.with_label_values(&[label]).inc();
        answer
    }

    async fn call(&self, endpoint: &reqwest::Url, token: &str) -> Result<Map<String, Value>, AuthError> {
        let mut response = introspection_request(&self.client, endpoint, &self.config, token)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.issuer, timeout = e.is_timeout(), "introspection request failed");
                unavailable(UnavailableReason::IntrospectionUnreachable)
            })?;
        if response.status() != reqwest::StatusCode::OK {
            tracing::warn!(issuer = %self.issuer, status = response.status().as_u16(), "introspection answered an error status");
            return Err(unavailable(UnavailableReason::IntrospectionErrorStatus));
        }
        if !is_json(response.headers()) {
            return Err(unavailable(UnavailableReason::IntrospectionNotJson));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= self.config.max_response_bytes => {
                    body.extend_from_slice(&chunk)
                }
                Ok(Some(_)) => return Err(unavailable(UnavailableReason::IntrospectionTooLarge)),
                Ok(None) => break,
                Err(_) => return Err(unavailable(UnavailableReason::IntrospectionUnreachable)),
            }
        }
        match serde_json::from_slice(&body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(unavailable(UnavailableReason::IntrospectionNotJson)),
        }
    }
}

/// The RFC 7662 §2.1 request for `token`, with the configured client authentication.
pub fn introspection_request(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    config: &IntrospectionConfig,
    token: &str,
) -> reqwest::RequestBuilder {
    let mut form = vec![("token", token), ("token_type_hint", "access_token")];
    let mut request = client
        .post(endpoint.clone())
        .header(http::header::ACCEPT, "application/json");
    match config.auth_method {
        ClientAuthMethod::ClientSecretBasic => {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!(
                "{}:{}",
                encode(&config.client_id),
                encode(config.client_secret.expose())
            );
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            );
            request = request.header(http::header::AUTHORIZATION, value);
        }
        ClientAuthMethod::ClientSecretPost => {
            form.push(("client_id", &config.client_id));
            form.push(("client_secret", config.client_secret.expose()));
        }
    }
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    request
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
}

/// Turns an RFC 7662 §2.2 response into an answer. `active` is required; other members are
/// checked where present, and one that does not fit makes the token inactive for us.
pub fn interpret(
    body: &Map<String, Value>,
    issuer: &str,
    audiences: &[String],
    require_audience: bool,
    now: u64,
) -> Result<Answer, AuthError> {
    match body.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Answer::Inactive(InactiveReason::Inactive)),
        _ => return Err(unavailable(UnavailableReason::IntrospectionMalformed)),
    }
    let string = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let number = |name: &str| {
        body.get(name)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    if body.get("iss").is_some() && string("iss").as_deref() != Some(issuer) {
        return Ok(Answer::Inactive(InactiveReason::WrongIssuer));
    }
    let exp = match body.get("exp") {
        None => None,
        Some(_) => match number("exp") {
            Some(exp) => Some(exp as u64),
            None => return Ok(Answer::Inactive(InactiveReason::InvalidClaim)),
        },
    };
    if exp.is_some_and(|exp| now > exp) {
        return Ok(Answer::Inactive(InactiveReason::Expired));
    }
    if number("nbf").is_some_and(|nbf| nbf as u64 > now) {
        return Ok(Answer::Inactive(InactiveReason::NotYetValid));
    }
    // RFC 7662 §2.2: token_type as in RFC 6749 §7.1; refresh tokens are not access tokens.
    if let Some(kind) = body.get("token_type") {
        let ok = kind
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("bearer") || k.eq_ignore_ascii_case("access_token"));
        if !ok {
            return Ok(Answer::Inactive(InactiveReason::WrongTokenType));
        }
    }
    let aud: Vec<String> = match body.get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(_) => return Ok(Answer::Inactive(InactiveReason::InvalidClaim)),
    };
    if (require_audience || !aud.is_empty()) && !aud.iter().any(|a| audiences.contains(a)) {
        return Ok(Answer::Inactive(InactiveReason::WrongAudience));
    }
    let scopes = match body.get("scope") {
        None => Vec::new(),
        Some(Value::String(scope)) => scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        Some(_) => return Ok(Answer::Inactive(InactiveReason::InvalidClaim)),
    };
    Ok(Answer::Active(Arc::new(Principal {
        issuer: issuer.to_string(),
        subject: string("sub"),
        client_id: string("client_id"),
        scopes,
        audiences: aud,
        claims: body.clone(),
        expires_at: exp.unwrap_or(u64::MAX),
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<Answer, AuthError> {
        interpret(
            body.as_object().unwrap(),
            "https://as",
            &["api".to_string()],
            true,
            1000,
        )
    }

    fn inactive_reason(body: Value) -> &'static str {
        match check(body) {
            Ok(Answer::Inactive(reason)) => reason.label(),
            other => panic!("expected inactive, got {other:?}"),
        }
    }

    #[test]
    fn active_answer_becomes_a_principal() {
        let Ok(Answer::Active(p)) = check(json!({
            "active": true, "iss": "https://as", "aud": ["api", "x"], "exp": 2000,
            "scope": "read write", "sub": "alice", "client_id": "c", "token_type": "Bearer"
        })) else {
            panic!("expected active")
        };
        assert_eq!(p.scopes, ["read", "write"]);
        assert_eq!(p.subject.as_deref(), Some("alice"));
        assert_eq!(p.expires_at, 2000);
    }

    #[test]
    fn mismatches_are_inactive() {
        assert_eq!(inactive_reason(json!({"active": false})), "inactive");
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "iss": "https://other"})),
            "wrong_issuer"
        );
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "other"})),
            "wrong_audience"
        );
        assert_eq!(inactive_reason(json!({"active": true})), "wrong_audience");
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "exp": 999})),
            "expired"
        );
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "exp": "2000"})),
            "invalid_claim"
        );
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "token_type": "refresh_token"})),
            "wrong_token_type"
        );
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "scope": ["read"]})),
            "invalid_claim"
        );
    }

    #[test]
    fn missing_active_is_an_outage_not_an_answer() {
        assert!(matches!(
            check(json!({"aud": "api"})),
            Err(AuthError::Unavailable(UnavailableReason::IntrospectionMalformed))
        ));
        assert!(matches!(
            check(json!({"active": "true"})),
            Err(AuthError::Unavailable(UnavailableReason::IntrospectionMalformed))
        ));
    }
}
