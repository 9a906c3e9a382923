//! HTTP routing, helpers and the discovery, registration, introspection,
//! revocation and userinfo endpoints. The grant flows live in `flows`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::server::{CloseConnection, Endpoint, Fault, HandlerResult, Resp, rotate};
use super::state::{
    AUTH_BASIC, AUTH_NONE, AUTH_POST, ClientRegistration, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN, RegisteredClient, Shared, build_client, lock,
};
use super::{flows, registration};

/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;
pub(crate) const JWKS_PATH: &str = "/oauth/jwks";

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
        (Some(Endpoint::Token), _) if post => flows::token(&shared, &headers, &Params::parse(&body)),
        (Some(Endpoint::Introspect), _) if post => introspect(&shared, &headers, &Params::parse(&body)),
        (Some(Endpoint::Revoke), _) if post => revoke(&shared, &headers, &Params::parse(&body)),
        (Some(Endpoint::Userinfo), _) if get || post => userinfo(&shared, &headers),
        (Some(_), _) => {
            let mut r = oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "method not allowed");
            let allow = match endpoint {
                Some(Endpoint::Metadata | Endpoint::OidcMetadata | Endpoint::Jwks) => "GET, HEAD",
                Some(Endpoint::Authorize | Endpoint::Userinfo) => "GET, POST",
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

pub(crate) fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Resp::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Resp {
    let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    response(status, "application/json", bytes.into())
}

/// RFC 6749 §5.2 style error body.
pub(crate) fn oauth_error(status: StatusCode, code: &str, description: &str) -> Resp {
    json_response(status, &json!({"error": code, "error_description": description}))
}

/// Add `Cache-Control: no-store` and `Pragma: no-cache`.
pub(crate) fn no_store(mut resp: Resp) -> Resp {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// 401 `invalid_client` with a Basic challenge.
pub(crate) fn invalid_client(description: &str) -> Resp {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"scopegate-dev\""),
    );
    no_store(resp)
}

/// Decoded form or query parameters. Empty values count as absent
/// (RFC 6749 §3.1).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(raw)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A single-valued parameter; `Err` names it when it is repeated.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(format!("parameter {name} is repeated"));
        }
        Ok(first)
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// HTTP Basic credentials, each part form-urldecoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let parsed = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| {
            let (id, secret) = text.split_once(':')?;
            Some((percent_decode(id)?, percent_decode(secret)?))
        });
    Some(parsed.ok_or(()))
}

fn secrets_equal(a: &str, b: &str) -> bool {
    use aws_lc_rs::digest::{SHA256, digest};
    // Hash first so lengths never leak; then compare in constant time.
    let (da, db) = (digest(&SHA256, a.as_bytes()), digest(&SHA256, b.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(da.as_ref(), db.as_ref()).is_ok()
}

/// Authenticate the client: `client_secret_basic`, `client_secret_post` or
/// `none` (client_id only, public clients). Confidential clients may use
/// either secret method. The error is a ready response.
pub(crate) fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    params: &Params,
    require_confidential: bool,
) -> Result<RegisteredClient, Box<Resp>> {
    let bad_request = |d: &str| {
        Err(Box::new(no_store(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            d,
        ))))
    };
    let (form_id, form_secret) = match (params.one("client_id"), params.one("client_secret")) {
        (Ok(id), Ok(secret)) => (id, secret),
        (Err(e), _) | (_, Err(e)) => return bad_request(&e),
    };
    let deny = |d: &str| Err(Box::new(invalid_client(d)));
    let (id, secret) = match basic_credentials(headers) {
        Some(Err(())) => return deny("malformed Basic credentials"),
        Some(Ok((id, secret))) => {
            if form_secret.is_some() {
                return bad_request("more than one client authentication method used");
            }
            if form_id.is_some_and(|f| f != id) {
                return bad_request("client_id does not match the Basic credentials");
            }
            (id, (!secret.is_empty()).then_some(secret))
        }
        None => match form_id {
            Some(id) => (id.to_owned(), form_secret.map(str::to_owned)),
            None => return deny("client authentication required"),
        },
    };
    let client = lock(&shared.store).clients.get(&id).cloned();
    let Some(client) = client else {
        return deny("unknown client");
    };
    match (&client.client_secret, secret) {
        (Some(expected), Some(given)) if secrets_equal(expected, &given) => {}
        (Some(_), _) => return deny("client authentication failed"),
        (None, Some(_)) => return deny("public client must not send a secret"),
        (None, None) if require_confidential => {
            return deny("this endpoint requires a confidential client");
        }
        (None, None) => {}
    }
    Ok(client)
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
            GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS
        ],
        "token_endpoint_auth_methods_supported": [AUTH_NONE, AUTH_BASIC, AUTH_POST],
        "revocation_endpoint_auth_methods_supported": [AUTH_NONE, AUTH_BASIC, AUTH_POST],
        "introspection_endpoint_auth_methods_supported": [AUTH_BASIC, AUTH_POST],
        "code_challenge_methods_supported": ["S256"],
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
        json!({
            "active": true, "scope": r.scope, "client_id": r.client_id, "sub": r.sub,
            "aud": aud_value(&r.aud), "iss": shared.issuer, "exp": r.exp, "iat": r.iat,
            "token_type": "Bearer", "jti": r.jti,
        })
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
