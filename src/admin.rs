//! The admin listener: `/healthz` (process alive), `/readyz` (every issuer has keys),
//! `/metrics` (Prometheus text), `/.well-known/jwks.json` (the identity assertion's public
//! key), `POST /cache/evict` (pushed revocation), and the actions of [`actions`]: `POST
//! /revocations` (a subject's or client's tokens) and `POST /ssf/events` (Shared Signals
//! push). Kept off the data port so it is never exposed with the API, and under its own
//! connection cap so it can never take the data plane's descriptors. With
//! `admin.token_file` (required by `[fleet]`) revocations need its token.

mod actions;
mod form;

use std::convert::Infallible;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::body::ProxyBody;
use crate::connection::{Activity, ActivityGuard, InactivityLimits, TrackedBody, accept_within, inactivity};
use crate::fleet::Delivery;
use crate::fleet::revocations::{Record, parse_hex_digest};
use crate::gateway::Gateway;
use crate::token::bearer::is_token68;
use form::{form_decode, respond};

/// `POST /cache/evict` with a form body `token=<token>` or `sha256=<64 hex digits>`: refuses
/// the token from now until it expires (a JWT that still verifies locally included), and
/// drops every cached answer for it. Answers what it did:
/// `{"evicted": <cached answers dropped>, "revoked": true, "revoked_until": <Unix seconds>}`.
async fn evict(app: &Gateway, req: Request<Incoming>) -> Response<ProxyBody> {
    if let Some(refusal) = actions::unauthorized(app, &req) {
        return refusal;
    }
    let form = req.headers().get(CONTENT_TYPE).is_none_or(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form {
        return respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
            "send an application/x-www-form-urlencoded body\n".into(),
        );
    }
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "body too large\n".into()),
    };
    let target = match EvictTarget::parse(&body) {
        Ok(target) => target,
        Err(problem) => return respond(StatusCode::BAD_REQUEST, "text/plain", format!("{problem}\n")),
    };
    let (token, digest) = match &target {
        EvictTarget::Token(token) => (Some(token.as_str()), crate::token::token_digest(token)),
        EvictTarget::Digest(digest) => (None, *digest),
    };
    match app.app().auth.revoke(token, &digest).await {
        Ok(revoked) => {
            let delivery = actions::share(app, &Record::token(&digest, revoked.until), "admin").await;
            let body = serde_json::json!({
                "evicted": revoked.evicted,
                "revoked": true,
                "revoked_until": revoked.until.as_secs(),
                "fleet": delivery.map(Delivery::as_str),
            });
            respond(StatusCode::OK, "application/json", format!("{body}\n"))
        }
        Err(full) => actions::full(full),
    }
}

/// The one token an eviction names.
#[derive(Debug, PartialEq, Eq)]
enum EvictTarget {
    Token(String),
    Digest([u8; 32]),
}

impl EvictTarget {
    /// Reads the form body strictly (application/x-www-form-urlencoded, as the WHATWG URL
    /// standard defines it): exactly one parameter, `token` or `sha256`, given once. What a
    /// lenient reader would guess at is refused instead: a repeated or unknown parameter, a
    /// broken `%` escape, bytes that are not UTF-8, and a token that is not an RFC 6750
    /// b64token — notably one with a space, which is what a raw `+` decodes to: a token
    /// containing `+` must be sent with it percent-encoded as `%2B`.
    fn parse(body: &[u8]) -> Result<EvictTarget, &'static str> {
        const USAGE: &str = "send exactly one of token=<token> or sha256=<64 hex digits>";
        let mut target = None;
        for pair in body.split(|b| *b == b'&') {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            let name = form_decode(name).ok_or("the body is not valid application/x-www-form-urlencoded")?;
            let value = form_decode(value).ok_or("the body is not valid application/x-www-form-urlencoded")?;
            let named = match name.as_str() {
                // Exactly the tokens a client can present in `Authorization: Bearer`.
                "token" if is_token68(&value) => EvictTarget::Token(value),
                "token" if value.contains(' ') => {
                    return Err("the token contains a space: a '+' in a token must be sent percent-encoded as %2B");
                }
                "token" => return Err("the token is not a bearer token (RFC 6750 b64token)"),
                "sha256" => EvictTarget::Digest(parse_hex_digest(&value).ok_or("sha256 must be 64 hex digits")?),
                _ => return Err(USAGE),
            };
            if target.replace(named).is_some() {
                return Err(USAGE);
            }
        }
        target.ok_or(USAGE)
    }
}

fn route(app: &Gateway, req: &Request<Incoming>) -> Response<ProxyBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        // The public key upstreams verify identity assertions with; none when they are off.
        crate::identity::assertion::JWKS_PATH => match &app.app().config.identity.assertion {
            Some(assertion) => respond(
                StatusCode::OK,
                "application/jwk-set+json",
                format!("{}\n", assertion.jwks()),
            ),
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "identity assertions are off\n".into(),
            ),
        },
        "/readyz" if app.is_ready() => respond(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: waiting for issuer keys\n".into(),
        ),
        "/metrics" => {
            let (jwt, introspection) = app.app().auth.cache_entries();
            app.app().auth.record_key_ages();
            app.metrics.cache_entries.with_label_values(&["jwt"]).set(jwt as i64);
            app.metrics
                .cache_entries
                .with_label_values(&["introspection"])
                .set(introspection as i64);
            let revoked = app.app().auth.revocations().len();
            app.metrics
                .cache_entries
                .with_label_values(&["revocations"])
                .set(revoked as i64);
            respond(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves the admin plane under its own limits (`[admin]`, fixed at start): at most
/// `max_connections` connections, each with a header-read and an idle timeout. Its own
/// semaphore bounds the descriptors it can take, so a flood of admin connections cannot
/// use up the data plane's; a failed accept pauses instead of spinning.
pub async fn serve(listener: TcpListener, app: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let limits = app.app().config.admin.clone();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(8);
    let inactivity_limits = InactivityLimits {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        response_progress: Some(limits.idle_timeout),
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, _, permit) = tokio::select! {
            accepted = accept_within(&listener, &slots) => match accepted {
                Some(accepted) => accepted,
                None => return,
            },
            () = &mut shutdown => return,
        };
        let activity = Activity::new();
        let service = {
            let app = Arc::clone(&app);
            let activity = Arc::clone(&activity);
            service_fn(move |req: Request<Incoming>| {
                let app = Arc::clone(&app);
                let guard = ActivityGuard::new(Arc::clone(&activity));
                async move {
                    let response = match (req.method() == Method::POST, req.uri().path()) {
                        (true, "/cache/evict") => evict(&app, req).await,
                        (true, "/revocations") => actions::revoke_holder(&app, req).await,
                        (true, "/ssf/events") => actions::receive_set(&app, req).await,
                        _ => route(&app, &req),
                    };
                    Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, guard)))
                }
            })
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = connection => {}
                _ = inactivity(activity, inactivity_limits) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eviction_names_exactly_one_token() {
        let digest = "ab".repeat(32);
        assert_eq!(
            EvictTarget::parse(b"token=a.b-c_d~e%2Bf%2F=="),
            Ok(EvictTarget::Token("a.b-c_d~e+f/==".into()))
        );
        assert_eq!(
            EvictTarget::parse(format!("sha256={}", digest.to_uppercase()).as_bytes()),
            Ok(EvictTarget::Digest([0xab; 32]))
        );
        for ambiguous in [
            "token=a&token=b".to_string(),
            "token=a&sha256=".to_string() + &digest,
            "token=a+b".into(),
            "token=a%2".into(),
            "token=a%zz".into(),
            "token=%FF".into(),
            "token=".into(),
            "token=a&extra=1".into(),
            "sha256=zz".into(),
            "sha256=".to_string() + &digest[1..],
            "".into(),
        ] {
            assert!(
                EvictTarget::parse(ambiguous.as_bytes()).is_err(),
                "{ambiguous:?} must be refused"
            );
        }
    }
}
