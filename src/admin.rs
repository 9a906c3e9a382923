//! The admin listener: `/healthz` (process alive), `/readyz` (every issuer has keys),
//! `/metrics` (Prometheus text), and `POST /cache/evict` (pushed revocation). Kept off the data port so it is never exposed with the API.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{ProxyBody, full_body};
use crate::gateway::Gateway;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `POST /cache/evict` with a form body `token=<token>` or `sha256=<64 hex digits>`: forgets
/// every cached answer for that token, so a revocation pushed by the platform takes effect
/// on the next request instead of after the positive TTL.
async fn evict(app: &Gateway, req: Request<Incoming>) -> Response<ProxyBody> {
    let body = match http_body_util::Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "body too large\n".into()),
    };
    let mut digest = None;
    for (name, value) in form_urlencoded::parse(&body) {
        match name.as_ref() {
            "token" => digest = Some(crate::token::token_digest(&value)),
            "sha256" => digest = parse_hex_digest(&value),
            _ => {}
        }
    }
    let Some(digest) = digest else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "send token=<token> or sha256=<64 hex digits>\n".into(),
        );
    };
    app.app().auth.evict(&digest).await;
    respond(StatusCode::OK, "application/json", "{\"evicted\":true}\n".into())
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
            respond(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

pub async fn serve(listener: TcpListener, app: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let app = Arc::clone(&app);
        let service = service_fn(move |req: Request<Incoming>| {
            let app = Arc::clone(&app);
            async move {
                let response = if req.method() == Method::POST && req.uri().path() == "/cache/evict" {
                    evict(&app, req).await
                } else {
                    route(&app, &req)
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), connection).await;
        });
    }
}
