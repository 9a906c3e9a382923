//! Building the development issuer's responses: content type, JSON and RFC 6749 error
//! bodies, `no-store`. Shared by the endpoint handlers and the grant flows.

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue};
use http_body_util::Full;
use hyper::Response;
use serde_json::{Map, Value, json};

use crate::token::principal::Confirmation;

/// A complete response body.
pub(crate) type Resp = Response<Full<Bytes>>;

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

/// RFC 6749 §5.1: a bearer token response.
pub(crate) fn token_response(
    access: &str,
    scope: &str,
    refresh: Option<&str>,
    expires_in: i64,
    jkt: Option<&str>,
) -> Resp {
    // RFC 9449 §5: a token bound to the proof's key is of type `DPoP`.
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    let mut body = json!({
        "access_token": access, "token_type": token_type,
        "expires_in": expires_in, "scope": scope,
    });
    if let (Some(r), Some(obj)) = (refresh, body.as_object_mut()) {
        obj.insert("refresh_token".into(), Value::String(r.to_owned()));
    }
    no_store(json_response(StatusCode::OK, &body))
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

/// The `cnf` claim (RFC 7800) of a token bound as `cnf` says; `None` when it is not bound.
pub(crate) fn cnf_claim(cnf: &Confirmation) -> Option<Value> {
    let mut members = Map::new();
    if let Some(jkt) = &cnf.jkt {
        members.insert("jkt".into(), jkt.as_str().into());
    }
    if let Some(x5t) = &cnf.x5t_s256 {
        members.insert("x5t#S256".into(), x5t.as_str().into());
    }
    (!members.is_empty()).then_some(Value::Object(members))
}
