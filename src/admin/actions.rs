//! The admin plane's actions beyond a single eviction: who may perform them (`[admin]
//! token_file`), holder revocations (`POST /revocations`), the Shared Signals push endpoint
//! (`POST /ssf/events`, RFC 8935), and handing every accepted revocation to the fleet.

use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::form::{read_form, respond};
use crate::body::ProxyBody;
use crate::fleet::Delivery;
use crate::fleet::revocations::Record;
use crate::fleet::ssf::MAX_SET_BYTES;
use crate::gateway::Gateway;
use crate::token::revocation::{Holder, RevocationsFull, RuleKey, RuleTerms};

/// The refusal of an admin action without the configured token (`None`: allowed). The
/// token is compared in constant time, over SHA-256 digests so its length does not show.
pub(super) fn unauthorized(app: &Gateway, req: &Request<Incoming>) -> Option<Response<ProxyBody>> {
    let config = app.app();
    let expected = config.config.admin.token.as_ref()?;
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let same = aws_lc_rs::constant_time::verify_slices_are_equal(
        &crate::token::sha256(presented.as_bytes()),
        &crate::token::sha256(expected.expose().as_bytes()),
    )
    .is_ok();
    if same && !presented.is_empty() {
        return None;
    }
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain",
        "admin actions need Authorization: Bearer <the token in admin.token_file>\n".into(),
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"scopegate-admin\""),
    );
    Some(response)
}

/// Sends a revocation applied here to the fleet, when there is one.
pub(super) async fn share(app: &Gateway, record: &Record, source: &str) -> Option<Delivery> {
    app.metrics.fleet_revocations.with_label_values(&[source]).inc();
    match &app.fleet {
        Some(fleet) => Some(fleet.publish(record).await),
        None => None,
    }
}

/// 503 for a full revocation set: nothing was revoked.
pub(super) fn full(error: RevocationsFull) -> Response<ProxyBody> {
    let body = json!({ "evicted": 0, "revoked": false, "error": error.to_string() });
    let mut response = respond(StatusCode::SERVICE_UNAVAILABLE, "application/json", format!("{body}\n"));
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("60"));
    response
}

/// `POST /revocations` with a form body: `subject=<sub>` or `client_id=<id>`, optionally
/// `iss=<issuer>` (else every issuer) and `issued_before=<Unix seconds>` (else now):
/// refuses every such token issued at or before that time, for `admin.revocation_max_ttl`
/// (which should exceed the longest token lifetime). A token without `iat` is refused.
pub(super) async fn revoke_holder(app: &Gateway, req: Request<Incoming>) -> Response<ProxyBody> {
    if let Some(refusal) = unauthorized(app, &req) {
        return refusal;
    }
    let usage = "send subject=<sub> or client_id=<id>, optionally iss=<issuer> and issued_before=<Unix seconds>";
    let bad = |message: &str| respond(StatusCode::BAD_REQUEST, "text/plain", format!("{message}\n"));
    let pairs = match read_form(req).await {
        Ok(pairs) => pairs,
        Err(refusal) => return refusal,
    };
    let current = app.app();
    let now = current.auth.clock().since_epoch();
    let (mut holder, mut issuer, mut issued_before) = (None, None, now.as_secs());
    for (name, value) in pairs {
        match name.as_str() {
            _ if value.is_empty() => return bad(&format!("{name} must not be empty")),
            "subject" if holder.is_none() => holder = Some(Holder::Subject(value)),
            "client_id" if holder.is_none() => holder = Some(Holder::Client(value)),
            "iss" => issuer = Some(value),
            "issued_before" => match value.parse::<u64>() {
                Ok(at) if at <= now.as_secs() => issued_before = at,
                _ => return bad("issued_before must be Unix seconds, not in the future"),
            },
            _ => return bad(usage),
        }
    }
    let Some(holder) = holder else { return bad(usage) };
    let revocations = current.auth.revocations();
    let key = RuleKey { issuer, holder };
    let terms = RuleTerms {
        issued_before,
        until: revocations.default_until(now),
    };
    let terms = match revocations.revoke_holder(key.clone(), terms, now) {
        Ok(terms) => terms,
        Err(error) => return full(error),
    };
    let delivery = share(app, &Record::holder(&key, terms), "admin").await;
    let body = json!({
        "revoked": true,
        "issued_before": terms.issued_before,
        "revoked_until": terms.until.as_secs(),
        "fleet": delivery.map(Delivery::as_str),
    });
    respond(StatusCode::OK, "application/json", format!("{body}\n"))
}

/// An RFC 8935 §2.3 error answer.
fn set_error(code: &str, description: &str) -> Response<ProxyBody> {
    let body = json!({ "err": code, "description": description });
    respond(StatusCode::BAD_REQUEST, "application/json", format!("{body}\n"))
}

/// `POST /ssf/events`: RFC 8935 push delivery of one SET (`application/secevent+jwt`).
/// 202 once verified and applied (here and, through the fleet, everywhere); 400 with an
/// RFC 8935 error for a SET that is not acted on; 503 when the transmitter's keys cannot
/// be had (the transmitter retries); 404 without `[ssf]`.
pub(super) async fn receive_set(app: &Gateway, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(receiver) = &app.ssf else {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    };
    let is_set = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/secevent+jwt"));
    let refused = |code: &str, description: &str| {
        app.metrics.ssf_events.with_label_values(&["refused"]).inc();
        tracing::warn!(code, description, "ssf: a security event token was refused");
        set_error(code, description)
    };
    if !is_set {
        return refused("invalid_request", "the content type must be application/secevent+jwt");
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_SET_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return refused("invalid_request", "the SET is too large"),
    };
    let Ok(set) = std::str::from_utf8(&body) else {
        return refused("invalid_request", "the SET is not text");
    };
    let current = app.app();
    let now = current.auth.clock().since_epoch();
    let verdict = match receiver.receive(set.trim(), now.as_secs()).await {
        Ok(Some(verdict)) => verdict,
        Ok(None) => {
            let mut response = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the transmitter's keys cannot be fetched; retry later\n".into(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("30"));
            return response;
        }
        Err(error) => return refused(error.code, &error.description),
    };
    // Another sidecar may have received the same SET (the transmitter's pushes spread over
    // the Service's pods): the fleet remembers every jti too.
    if let Some(fleet) = &app.fleet
        && fleet.first_sighting(&verdict.jti, receiver.max_age()).await == Some(false)
    {
        let replay = crate::fleet::ssf::replayed();
        return refused(replay.code, &replay.description);
    }
    let revocations = current.auth.revocations();
    for (key, issued_before) in &verdict.revoke {
        let terms = RuleTerms {
            issued_before: *issued_before,
            until: revocations.default_until(now),
        };
        match revocations.revoke_holder(key.clone(), terms, now) {
            Ok(terms) => {
                share(app, &Record::holder(key, terms), "ssf").await;
            }
            Err(error) => return full(error),
        }
    }
    let result = if verdict.revoke.is_empty() {
        "ignored"
    } else {
        "applied"
    };
    app.metrics.ssf_events.with_label_values(&[result]).inc();
    tracing::info!(
        revoked = verdict.revoke.len(),
        ignored = verdict.ignored,
        "ssf: a security event token was accepted"
    );
    let mut response = respond(StatusCode::ACCEPTED, "text/plain", String::new());
    response.headers_mut().remove(CONTENT_TYPE);
    response
}
