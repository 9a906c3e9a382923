//! HTTP routing and the discovery, registration, introspection,
//! revocation and userinfo endpoints. The grant flows live in `flows`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::client_auth::{Params, authenticate};
use super::config::{Endpoint, Fault};
use super::respond::{Resp, cnf_claim, json_response, no_store, oauth_error, response};
use super::state::{
    AUTH_BASIC, AUTH_NONE, AUTH_POST, ClientRegistration, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, Shared, build_client, lock, rotate,
};
use super::{device, flows, registration};

/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;
pub(crate) const JWKS_PATH: &str = "/oauth/jwks";

/// Service error that makes hyper drop the connection without a response.
#[derive(Debug)]
pub(crate) struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection close")
    }
}

impl std::error::Error for CloseConnection {}

/// Result of a request handler: a response or a deliberate connection drop.
pub(crate) type HandlerResult = Result<Resp, CloseConnection>;

/// Route one request.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> HandlerResult {
    let path = req.uri().path().to_owned();
    let endpoint = match path.as_str() {
        "/.well-known/oauth-authorization-server" => Some(Endpoint::Metadata),
        "/.well-known/openid-configuration" => Some(Endpoint::OidcMetadata),
        JWKS_PATH | "/.well-known/jwks.json" => Some(Endpoint::Jwks),
        "/oauth/register" => Some(Endpoint::Register),
        "/oauth/authorize" => Some(Endpoint::Authorize),
        "/oauth/token" => Some(Endpoint::Token),
        "/oauth/introspect" => Some(Endpoint::Introspect),
        "/oauth/revoke" => Some(Endpoint::Revoke),
        "/oauth/userinfo" => Some(Endpoint::Userinfo),
        device::AUTHORIZATION_PATH => Some(Endpoint::DeviceAuthorization),
        device::VERIFICATION_PATH => Some(Endpoint::DeviceVerification),
        _ => None,
    };
    if let Some(ep) = endpoint {
        shared.counters[ep.index()].fetch_add(1, Ordering::Relaxed);
        if ep.faultable() {
            let fault = *lock(&shared.fault);
            match fault {
                Fault::None => {}
                Fault::Status(code) => {
                    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Ok(json_response(
                        status,
                        &json!({"error": "server_error", "error_description": "injected fault"}),
                    ));
                }
                Fault::Html => {
                    return Ok(response(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        "<!doctype html><html><body><h1>Maintenance</h1></body></html>".into(),
                    ));
                }
                Fault::Delay(d) => tokio::time::sleep(d).await,
                Fault::CloseConnection => return Err(CloseConnection),
            }
        }
    }
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_owned();
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let certificate = parts.extensions.get::<crate::tls::ClientCertificate>().cloned();
    let body = if method == Method::POST {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                return Ok(if too_large {
                    oauth_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request",
                        "request body too large",
                    )
                } else {
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "unreadable body")
                });
            }
        }
    } else {
        Bytes::new()
    };
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let resp = match (endpoint, path.as_str()) {
        (Some(Endpoint::Metadata | Endpoint::OidcMetadata), _) if get => {
            json_response(StatusCode::OK, &metadata(&shared))
        }
        (Some(Endpoint::Jwks), _) if get => jwks(&shared),
        (Some(Endpoint::Register), _) if post => register(&shared, &body),
        (Some(Endpoint::Authorize), _) if get => flows::authorize(&shared, &Params::parse(query.as_bytes())),
        (Some(Endpoint::Authorize), _) if post => flows::authorize(&shared, &Params::parse(&body)),
        (Some(Endpoint::Token), _) if post => {
            flows::token(&shared, &headers, &Params::parse(&body), certificate.as_ref())
        }
        (Some(Endpoint::Introspect), _) if post => introspect(&shared, &headers, &Params::parse(&body)),
        (Some(Endpoint::Revoke), _) if post => revoke(&shared, &headers, &Params::parse(&body)),
        (Some(Endpoint::Userinfo), _) if get || post => userinfo(&shared, &headers),
        (Some(Endpoint::DeviceAuthorization), _) if post => device::authorize(&shared, &headers, &Params::parse(&body)),
        (Some(Endpoint::DeviceVerification), _) if get => device::verify(&shared, &Params::parse(query.as_bytes())),
        (Some(_), _) => {
            let mut r = oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "method not allowed");
            let allow = match endpoint {
                Some(Endpoint::Metadata | Endpoint::OidcMetadata | Endpoint::Jwks) => "GET, HEAD",
                Some(Endpoint::Authorize | Endpoint::Userinfo) => "GET, POST",
                Some(Endpoint::DeviceVerification) => "GET",
                _ => "POST",
            };
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            r
        }
        (None, "/dev/rotate") if shared.config.dev_endpoints && post => {
            // RSA key generation takes a moment: keep it off the reactor.
            let worker = shared.clone();
            match tokio::task::spawn_blocking(move || rotate(&worker)).await {
                Ok(kid) => json_response(StatusCode::OK, &json!({ "kid": kid })),
                Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "key rotation failed"),
            }
        }
        (None, _) => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "error_description": format!("no route for {path}")}),
        ),
    };
    Ok(resp)
}

fn metadata(shared: &Shared) -> Value {
    let alg = lock(&shared.keys).current.alg_name();
    json!({
        "issuer": shared.issuer,
        "authorization_endpoint": shared.url("/oauth/authorize"),
        "token_endpoint": shared.url("/oauth/token"),
        "jwks_uri": shared.url(JWKS_PATH),
        "registration_endpoint": shared.url("/oauth/register"),
        "revocation_endpoint": shared.url("/oauth/revoke"),
        "introspection_endpoint": shared.url("/oauth/introspect"),
        "userinfo_endpoint": shared.url("/oauth/userinfo"),
        "scopes_supported": shared.scopes_supported(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE
        ],
        "device_authorization_endpoint": shared.url(device::AUTHORIZATION_PATH),
        "token_endpoint_auth_methods_supported": [AUTH_NONE, AUTH_BASIC, AUTH_POST],
        "revocation_endpoint_auth_methods_supported": [AUTH_NONE, AUTH_BASIC, AUTH_POST],
        "introspection_endpoint_auth_methods_supported": [AUTH_BASIC, AUTH_POST],
        "code_challenge_methods_supported": ["S256"],
        // RFC 9449 §5.1
        "dpop_signing_alg_values_supported": shared.proofs.config().algorithm_names(),
        // RFC 8705 §3.3: tokens requested with a client certificate are bound to it.
        "tls_client_certificate_bound_access_tokens": shared.config.binds_certificates(),
        // RFC 9207
        "authorization_response_iss_parameter_supported": true,
        // Not a registered metadata name: an informational hint that RFC 8707
        // `resource` parameters are honoured (they bind the token's `aud`).
        "resource_indicators_supported": true,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "preferred_username"],
    })
}

fn jwks(shared: &Shared) -> Resp {
    let body = lock(&shared.keys).jwks(shared.config.key_grace);
    let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
    let mut resp = response(StatusCode::OK, "application/jwk-set+json", bytes.into());
    if let Some(cc) = &shared.config.jwks_cache_control
        && let Ok(v) = HeaderValue::from_str(cc)
    {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}

fn register(shared: &Shared, body: &[u8]) -> Resp {
    let reg_error = |code: &str, d: &str| no_store(oauth_error(StatusCode::BAD_REQUEST, code, d));
    if !shared.config.open_registration {
        // RFC 7591 §3: a server may require an initial access token (RFC 6750) to register.
        return no_store(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "registration needs an initial access token",
        ));
    }
    let req: ClientRegistration = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return reg_error("invalid_client_metadata", &format!("invalid JSON: {e}")),
    };
    if let Err((code, d)) = registration::validate_registration(shared, &req) {
        return reg_error(code, &d);
    }
    let client = build_client(req);
    lock(&shared.store)
        .clients
        .insert(client.client_id.clone(), client.clone());
    let body = serde_json::to_value(&client).expect("a client serializes");
    no_store(json_response(StatusCode::CREATED, &body))
}

fn aud_value(aud: &[String]) -> Value {
    match aud {
        [one] => Value::String(one.clone()),
        many => json!(many),
    }
}

fn introspect(shared: &Shared, headers: &HeaderMap, params: &Params) -> Resp {
    if let Err(resp) = authenticate(shared, headers, params, true) {
        return *resp;
    }
    let token = match params.one("token") {
        Ok(Some(t)) => t,
        Ok(None) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
        }
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    let store = lock(&shared.store);
    let body = if let Some(r) = store.active_access(token) {
        let mut body = json!({
            "active": true, "scope": r.scope, "client_id": r.client_id, "sub": r.sub,
            "aud": aud_value(&r.aud), "iss": shared.issuer, "exp": r.exp, "iat": r.iat,
            "token_type": "Bearer", "jti": r.jti,
        });
        if let Some(fields) = body.as_object_mut() {
            // Extra claims of an opaque token, merged last like a JWT's; never `active`.
            fields.extend(
                r.extra
                    .iter()
                    .filter(|(k, _)| *k != "active")
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        // RFC 9449 §6.2: a DPoP-bound token is introspected with its binding.
        if let (Some(cnf), Some(obj)) = (cnf_claim(&r.cnf), body.as_object_mut()) {
            if r.cnf.jkt.is_some() {
                obj.insert("token_type".into(), json!("DPoP"));
            }
            // RFC 8705 §3.2: a certificate-bound token is introspected with its binding too.
            obj.insert("cnf".into(), cnf);
        }
        body
    } else if let Some(r) = store.active_refresh(token) {
        json!({
            "active": true, "scope": r.scope, "client_id": r.client_id, "sub": r.sub,
            "aud": aud_value(&r.aud), "iss": shared.issuer, "exp": r.exp, "iat": r.iat,
            "token_type": "refresh_token",
        })
    } else {
        json!({"active": false})
    };
    no_store(json_response(StatusCode::OK, &body))
}

/// RFC 7009. Tokens of other clients and unknown tokens are ignored (200).
fn revoke(shared: &Shared, headers: &HeaderMap, params: &Params) -> Resp {
    let client = match authenticate(shared, headers, params, false) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let token = match params.one("token") {
        Ok(Some(t)) => t,
        Ok(None) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
        }
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    let key = super::state::token_key(token);
    let mut store = lock(&shared.store);
    if let Some(rec) = store.access.get_mut(&key)
        && rec.client_id == client.client_id
    {
        rec.revoked = true;
    }
    let family = store
        .refresh
        .get(&key)
        .filter(|r| r.client_id == client.client_id)
        .map(|r| r.family);
    if let Some(f) = family {
        store.revoke_family(f);
    }
    no_store(response(StatusCode::OK, "application/json", Bytes::new()))
}

fn userinfo(shared: &Shared, headers: &HeaderMap) -> Resp {
    let challenge = |error: Option<&str>| {
        let value = match error {
            Some(e) => format!("Bearer realm=\"scopegate-dev\", error=\"{e}\""),
            None => "Bearer realm=\"scopegate-dev\"".to_owned(),
        };
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": error.unwrap_or("invalid_request")}),
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        return challenge(None);
    };
    let store = lock(&shared.store);
    match store.active_access(token) {
        Some(r) => no_store(json_response(
            StatusCode::OK,
            &json!({"sub": r.sub, "preferred_username": r.sub, "client_id": r.client_id}),
        )),
        None => challenge(Some("invalid_token")),
    }
}
