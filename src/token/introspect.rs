//! RFC 7662 token introspection: the remote validation path for opaque tokens (and for JWTs
//! of issuers configured to be asked rather than trusted locally).
//!
//! Any answer that is not a well-formed JSON introspection response — a transport error, a
//! timeout, a non-200 status, HTML, a missing `active` — is an outage (503), never an
//! inactive token and never an allow.
//!
//! Every random string an unauthenticated client sends as a token would cost one
//! authorization-server call, so calls are budgeted: at most `max_concurrent` in flight, of
//! which tokens never seen active may use `new_token_max_concurrent` (the rest stays for
//! re-validating tokens that were active before), and each client address may cause
//! `client_new_tokens_per_second` calls for never-seen tokens (bursts of
//! `client_new_token_burst`). Over its budget a client is answered 503 with `Retry-After`
//! at once, without a call; other clients' new tokens still find a free slot.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::http_client::{http_client_with_connect_timeout, is_json};
use crate::metrics::Metrics;
use crate::token::config::{ClientAuthMethod, IntrospectionConfig, IssuerConfig};
use crate::token::discovery::IssuerDiscovery;
use crate::token::error::{AuthError, InactiveReason, UnavailableReason};
use crate::token::jws::{TokenError, check_time_claims};
use crate::token::principal::{Principal, confirmation};

/// Client addresses whose new-token budget is remembered; beyond that, the least recently
/// seen are forgotten (and start again with a full bucket).
const CLIENTS_REMEMBERED: u64 = 65_536;

/// Whether the token was answered active before (by its digest): re-validations use the
/// shared budget, tokens never seen active the smaller new-token budget and their client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    SeenActive,
    New { client: Option<IpAddr> },
}

/// A token bucket: `rate` per second, up to `burst` at once.
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The budget key of a client address: IPv4 addresses one by one, IPv6 by /64 (one
/// subscriber's usual allocation, so rotating addresses within it does not help).
fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

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
    leeway: Duration,
    /// Calls in flight, for every token.
    slots: Semaphore,
    /// Calls in flight for tokens never seen active (taken before a shared slot).
    new_token_slots: Semaphore,
    /// Each client address's budget for never-seen tokens.
    clients: moka::sync::Cache<IpAddr, Arc<Mutex<Bucket>>>,
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
        let client =
            http_client_with_connect_timeout(config.timeout, config.connect_timeout, issuer.extra_roots.as_ref());
        // A bucket left alone this long is full again: forgetting it changes nothing.
        let refill = f64::from(config.client_new_token_burst) / f64::from(config.client_new_tokens_per_second.max(1));
        Introspector {
            issuer: issuer.issuer.clone(),
            audiences: issuer.audiences.clone(),
            leeway: issuer.leeway,
            slots: Semaphore::new(config.max_concurrent),
            new_token_slots: Semaphore::new(config.new_token_max_concurrent),
            clients: moka::sync::Cache::builder()
                .max_capacity(CLIENTS_REMEMBERED)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_idle(Duration::from_secs_f64(refill.ceil() + 1.0))
                .build(),
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

    /// Whether `client` may cause one more call for a never-seen token now.
    fn client_may_call(&self, client: IpAddr) -> bool {
        let rate = self.config.client_new_tokens_per_second;
        if rate == 0 {
            return true;
        }
        let burst = f64::from(self.config.client_new_token_burst);
        let now = Instant::now();
        let bucket = self.clients.get_with(client_key(client), || {
            Arc::new(Mutex::new(Bucket {
                tokens: burst,
                updated: now,
            }))
        });
        let mut bucket = bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.take(f64::from(rate), burst, now)
    }

    /// Asks the authorization server about `token`, within the budget `admission` names.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] when no trustworthy answer could be had, or the client is
    /// over its budget for new tokens.
    pub async fn introspect(&self, token: &str, now: u64, admission: Admission) -> Result<Answer, AuthError> {
        let endpoint = self.endpoint().await?;
        if let Admission::New { client: Some(client) } = admission
            && !self.client_may_call(client)
        {
            return Err(unavailable(UnavailableReason::IntrospectionRateLimited));
        }
        // Bounded concurrency: a flood of new tokens queues here instead of overwhelming the
        // authorization server or the re-validation of known tokens; a caller that waits past
        // the call timeout gets a 503.
        let slots = async {
            let new_token_slot = match admission {
                Admission::New { .. } => Some(self.new_token_slots.acquire().await?),
                Admission::SeenActive => None,
            };
            Ok::<_, tokio::sync::AcquireError>((new_token_slot, self.slots.acquire().await?))
        };
        let _slots = tokio::time::timeout(self.config.timeout, slots)
            .await
            .map_err(|_| unavailable(UnavailableReason::IntrospectionSaturated))?
            .map_err(|_| unavailable(UnavailableReason::IntrospectionSaturated))?;
        let started = Instant::now();
        let result = self.call(endpoint, token).await;
        self.metrics
            .introspection_duration
            .observe(started.elapsed().as_secs_f64());
        let expected = Expected {
            issuer: &self.issuer,
            audiences: &self.audiences,
            require_audience: self.config.require_audience,
            leeway: self.leeway,
        };
        let answer = result.and_then(|body| interpret(&body, &expected, now));
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

/// What an introspection answer must fit.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    /// Reject active answers without an `aud` naming one of `audiences`.
    pub require_audience: bool,
    /// Clock-skew allowance for `exp`, `nbf`, `iat` (the issuer's, as for its JWTs).
    pub leeway: Duration,
}

/// Turns an RFC 7662 §2.2 response into an answer. `active` is required; other members are
/// checked where present, and one that does not fit makes the token inactive for us. The
/// time members are read and checked exactly as a JWT's are.
pub fn interpret(body: &Map<String, Value>, expected: &Expected<'_>, now: u64) -> Result<Answer, AuthError> {
    match body.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Answer::Inactive(InactiveReason::Inactive)),
        _ => return Err(unavailable(UnavailableReason::IntrospectionMalformed)),
    }
    let string = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    if body.get("iss").is_some() && string("iss").as_deref() != Some(expected.issuer) {
        return Ok(Answer::Inactive(InactiveReason::WrongIssuer));
    }
    let exp = match check_time_claims(body, now, expected.leeway) {
        Ok(times) => times.exp,
        Err(error) => return Ok(Answer::Inactive(inactive_for(error))),
    };
    // RFC 7662 §2.2: token_type as in RFC 6749 §7.1 (`DPoP`: RFC 9449 §6.2); refresh tokens
    // are not access tokens.
    if let Some(kind) = body.get("token_type") {
        let kind = kind.as_str().map(str::to_ascii_lowercase);
        if !matches!(kind.as_deref(), Some("bearer" | "access_token" | "dpop")) {
            return Ok(Answer::Inactive(InactiveReason::WrongTokenType));
        }
    }
    // Ory Hydra answers for refresh tokens too, with token_type "Bearer" and token_use
    // "refresh_token": a refresh token is never a bearer credential (RFC 6749 §1.5).
    if body
        .get("token_use")
        .is_some_and(|use_| use_.as_str() != Some("access_token"))
    {
        return Ok(Answer::Inactive(InactiveReason::WrongTokenType));
    }
    // RFC 7662 §2.2 `cnf` (RFC 9449 §6.2, RFC 8705 §3.2): bound to a key or certificate, so
    // only good with a proof of possession; read here, checked per request (`token::binding`).
    let Ok(confirmation) = confirmation(body) else {
        return Ok(Answer::Inactive(InactiveReason::InvalidClaim));
    };
    let aud: Vec<String> = match body.get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(_) => return Ok(Answer::Inactive(InactiveReason::InvalidClaim)),
    };
    if (expected.require_audience || !aud.is_empty()) && !aud.iter().any(|a| expected.audiences.contains(a)) {
        return Ok(Answer::Inactive(InactiveReason::WrongAudience));
    }
    let scopes = match body.get("scope") {
        None => Vec::new(),
        Some(Value::String(scope)) => scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        Some(_) => return Ok(Answer::Inactive(InactiveReason::InvalidClaim)),
    };
    Ok(Answer::Active(Arc::new(Principal {
        issuer: expected.issuer.to_string(),
        subject: string("sub"),
        client_id: string("client_id"),
        scopes,
        audiences: aud,
        // Every member for now; the authenticator keeps only what is read before caching.
        claims: body.clone().into(),
        expires_at: exp.unwrap_or(u64::MAX),
        confirmation,
        // Already checked as a NumericDate by `check_time_claims`; rounded up like a JWT's.
        issued_at: body.get("iat").and_then(Value::as_f64).map(|iat| iat.ceil() as u64),
    })))
}

/// The introspection reason for a time claim a JWT would be refused for.
fn inactive_for(error: TokenError) -> InactiveReason {
    match error {
        TokenError::Expired => InactiveReason::Expired,
        TokenError::NotYetValid => InactiveReason::NotYetValid,
        TokenError::IssuedInFuture => InactiveReason::IssuedInFuture,
        _ => InactiveReason::InvalidClaim,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<Answer, AuthError> {
        let audiences = ["api".to_string()];
        let expected = Expected {
            issuer: "https://as",
            audiences: &audiences,
            require_audience: true,
            leeway: Duration::ZERO,
        };
        interpret(body.as_object().unwrap(), &expected, 1000)
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
        for (member, value, reason) in [
            ("nbf", json!(2000), "not_yet_valid"),
            ("nbf", json!("2000"), "invalid_claim"),
            ("nbf", json!("1"), "invalid_claim"),
            ("nbf", Value::Null, "invalid_claim"),
            ("iat", json!(2000), "issued_in_future"),
            ("iat", json!("900"), "invalid_claim"),
            ("exp", json!(-1), "invalid_claim"),
        ] {
            let mut body = json!({"active": true, "aud": "api"});
            body[member] = value;
            assert_eq!(inactive_reason(body), reason, "{member}");
        }
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "token_type": "refresh_token"})),
            "wrong_token_type"
        );
        assert_eq!(
            inactive_reason(
                json!({"active": true, "aud": "api", "token_type": "Bearer", "token_use": "refresh_token"})
            ),
            "wrong_token_type",
            "Hydra's refresh tokens"
        );
        assert!(matches!(
            check(json!({"active": true, "aud": "api", "token_type": "Bearer", "token_use": "access_token"})),
            Ok(Answer::Active(_))
        ));
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "scope": ["read"]})),
            "invalid_claim"
        );
        assert_eq!(
            inactive_reason(json!({"active": true, "aud": "api", "cnf": "0ZcOCORZNYy"})),
            "invalid_claim",
            "a cnf that cannot be read is not ignored"
        );
        assert!(matches!(
            check(json!({"active": true, "aud": "api", "token_type": "DPoP", "cnf": {"jkt": "x"}})),
            Ok(Answer::Active(p)) if p.confirmation.as_ref().and_then(|c| c.jkt.as_deref()) == Some("x")
        ));
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
