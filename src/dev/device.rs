//! The device authorization grant (RFC 8628): the device authorization endpoint, the
//! verification page (which, like the authorization endpoint, approves at once as the
//! development user), and the `device_code` grant of the token endpoint.

use std::time::{Duration, Instant};

use http::StatusCode;
use http::header::HeaderMap;
use serde_json::json;

use super::client_auth::{Params, authenticate};
use super::keys::random_token;
use super::registration::{resolve_scope, valid_resource};
use super::respond::{Resp, json_response, no_store, oauth_error, response, token_response};
use super::state::{
    DeviceRecord, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, RefreshTemplate, RegisteredClient, Shared, lock,
};

/// Device codes live this long (RFC 8628 §3.2 `expires_in`).
const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// RFC 8628 §3.1 endpoint path.
pub(crate) const AUTHORIZATION_PATH: &str = "/oauth/device_authorization";
/// Verification path; `?user_code=` approves.
pub(crate) const VERIFICATION_PATH: &str = "/oauth/device";

/// RFC 8628 §6.1: consonants only, so no word is spelled by accident; 8 of 20 characters.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let raw = random_token(16);
    let letters: String = raw
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .take(8)
        .collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// `POST /oauth/device_authorization` (RFC 8628 §3.1–3.2).
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap, params: &Params) -> Resp {
    let client = match authenticate(shared, headers, params, false) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let fail = |code: &str, d: &str| no_store(oauth_error(StatusCode::BAD_REQUEST, code, d));
    if !client.allows_grant(GRANT_DEVICE_CODE) {
        return fail(
            "unauthorized_client",
            "client may not use the device authorization grant",
        );
    }
    let requested = match params.one("scope") {
        Ok(s) => s,
        Err(e) => return fail("invalid_request", &e),
    };
    let Some(scope) = resolve_scope(shared, &client, requested) else {
        return fail("invalid_scope", "requested scope is unknown or not allowed");
    };
    let resources: Vec<String> = params.all("resource").into_iter().map(str::to_owned).collect();
    if resources.iter().any(|r| !valid_resource(r)) {
        return fail("invalid_target", "resource must be an absolute URI without fragment");
    }
    let device_code = random_token(32);
    let user_code = user_code();
    lock(&shared.store).devices.insert(
        device_code.clone(),
        DeviceRecord {
            client_id: client.client_id.clone(),
            user_code: user_code.clone(),
            scope,
            resources,
            expires_at: Instant::now() + DEVICE_CODE_TTL,
            approved: false,
            redeemed: false,
            last_poll: None,
        },
    );
    let verification_uri = shared.url(VERIFICATION_PATH);
    let complete = format!("{verification_uri}?user_code={user_code}");
    no_store(json_response(
        StatusCode::OK,
        &json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": complete,
            "expires_in": DEVICE_CODE_TTL.as_secs(),
            "interval": shared.config.device_poll_interval.as_secs().max(1),
        }),
    ))
}

/// `GET /oauth/device?user_code=…`: approves the pending request with that code.
pub(crate) fn verify(shared: &Shared, params: &Params) -> Resp {
    let page = |status: StatusCode, text: &str| {
        response(
            status,
            "text/html; charset=utf-8",
            format!("<!doctype html><p>{text}</p>").into(),
        )
    };
    let Ok(Some(code)) = params.one("user_code") else {
        return page(StatusCode::BAD_REQUEST, "user_code is required");
    };
    let normalized = code.trim().to_ascii_uppercase();
    let mut store = lock(&shared.store);
    let now = Instant::now();
    match store
        .devices
        .values_mut()
        .find(|d| d.user_code == normalized && d.expires_at > now && !d.redeemed)
    {
        Some(device) => {
            device.approved = true;
            page(StatusCode::OK, "Approved. Return to your device.")
        }
        None => page(StatusCode::BAD_REQUEST, "unknown or expired code"),
    }
}

/// The `device_code` grant (RFC 8628 §3.4–3.5).
pub(crate) fn grant(
    shared: &Shared,
    client: &RegisteredClient,
    params: &Params,
) -> Result<Resp, (&'static str, String)> {
    let code = params
        .one("device_code")
        .map_err(|e| ("invalid_request", e))?
        .ok_or(("invalid_request", "device_code is required".to_owned()))?;
    let interval = shared.config.device_poll_interval.max(Duration::from_secs(1));
    let mut store = lock(&shared.store);
    let Some(device) = store.devices.get_mut(&code.to_owned()) else {
        return Err(("invalid_grant", "unknown device_code".into()));
    };
    if device.client_id != client.client_id {
        return Err(("invalid_grant", "device_code was issued to another client".into()));
    }
    if device.redeemed {
        return Err(("invalid_grant", "device_code already used".into()));
    }
    if device.expires_at <= Instant::now() {
        return Err(("expired_token", "the device code expired".into()));
    }
    let now = Instant::now();
    let too_soon = device.last_poll.is_some_and(|last| now.duration_since(last) < interval);
    device.last_poll = Some(now);
    if !device.approved {
        return Err(if too_soon {
            ("slow_down", "polling faster than the interval".into())
        } else {
            ("authorization_pending", "the user has not approved yet".into())
        });
    }
    device.redeemed = true;
    let (scope, resources) = (device.scope.clone(), device.resources.clone());
    let sub = shared.config.dev_user.clone();
    let aud = shared.audience_for(&resources);
    let family = store.new_family();
    let auth_time = super::state::now_unix();
    let grant = RefreshTemplate {
        client_id: &client.client_id,
        sub: &sub,
        scope: &scope,
        aud: &aud,
        auth_time,
    };
    let (access, refresh) = shared.issue_user_tokens(
        &mut store,
        family,
        &grant,
        client.allows_grant(GRANT_REFRESH_TOKEN),
        &crate::token::principal::Confirmation::default(),
    );
    // Device-grant tokens are bearer tokens here: the development server binds a token to a
    // DPoP key only in the token requests of the other grants.
    Ok(token_response(
        &access,
        &scope,
        refresh.as_deref(),
        shared.access_ttl_secs(),
        None,
    ))
}
