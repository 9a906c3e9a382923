//! Registration validation, the authorization endpoint and the grants of
//! the token endpoint.

use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::client_auth::{Params, authenticate};
use super::keys::{b64url, random_token};
use super::registration::{self, resolve_scope, valid_resource};
use super::respond::{Resp, no_store, oauth_error, response, token_response};
use super::state::{
    AccessGrant, CodeRecord, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN, RefreshTemplate, RegisteredClient, Shared, lock, now_unix, token_key,
};
use crate::token::principal::Confirmation;

/// Authorization codes live this long.
const CODE_TTL: Duration = Duration::from_secs(60);

fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

fn redirect(location: &str) -> Resp {
    let mut resp = response(StatusCode::FOUND, "text/plain", Default::default());
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    no_store(resp)
}

/// `GET /oauth/authorize`: auto-approves as the development user.
pub(crate) fn authorize(shared: &Shared, params: &Params) -> Resp {
    let page = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d);
    let client_id = match params.one("client_id") {
        Ok(Some(id)) => id,
        Ok(None) => return page("client_id is required"),
        Err(e) => return page(&e),
    };
    let Some(client) = lock(&shared.store).clients.get(&client_id.to_owned()).cloned() else {
        return page("unknown client_id");
    };
    let (redirect_uri, redirect_uri_sent) = match params.one("redirect_uri") {
        Err(e) => return page(&e),
        Ok(Some(r))
            if client
                .redirect_uris
                .iter()
                .any(|x| registration::redirect_matches(x, r)) =>
        {
            (r.to_owned(), true)
        }
        Ok(Some(_)) => return page("redirect_uri is not registered for this client"),
        Ok(None) => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => return page("redirect_uri is required"),
        },
    };
    let state = params.one("state").ok().flatten();
    let fail = |code: &str, d: &str| {
        let mut pairs = vec![("error", code), ("error_description", d)];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &shared.issuer));
        redirect(&append_query(&redirect_uri, &pairs))
    };
    let mut single = std::collections::HashMap::new();
    for name in [
        "response_type",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    ] {
        match params.one(name) {
            Ok(v) => {
                single.insert(name, v);
            }
            Err(e) => return fail("invalid_request", &e),
        }
    }
    match single["response_type"] {
        None => return fail("invalid_request", "response_type is required"),
        Some("code") => {}
        Some(_) => return fail("unsupported_response_type", "only response_type=code"),
    }
    if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
        return fail("unauthorized_client", "client may not use the authorization code grant");
    }
    let Some(scope) = resolve_scope(shared, &client, single["scope"]) else {
        return fail("invalid_scope", "requested scope is unknown or not allowed");
    };
    let challenge = match (single["code_challenge"], single["code_challenge_method"]) {
        (None, None) if client.is_confidential() => None,
        (None, None) => return fail("invalid_request", "PKCE code_challenge is required"),
        (None, Some(_)) => return fail("invalid_request", "code_challenge is required"),
        (Some(_), m) if m != Some("S256") => {
            return fail("invalid_request", "code_challenge_method must be S256");
        }
        (Some(c), _) => {
            let ok = c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return fail("invalid_request", "code_challenge is not a S256 challenge");
            }
            Some(c.to_owned())
        }
    };
    let resources: Vec<String> = params.all("resource").into_iter().map(str::to_owned).collect();
    if resources.iter().any(|r| !valid_resource(r)) {
        return fail("invalid_target", "resource must be an absolute URI without fragment");
    }
    let code = random_token(32);
    lock(&shared.store).codes.insert(
        code.clone(),
        CodeRecord {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            redirect_uri_sent,
            scope,
            resources,
            challenge,
            sub: shared.config.dev_user.clone(),
            auth_time: now_unix(),
            expires_at: Instant::now() + CODE_TTL,
            redeemed_family: None,
        },
    );
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &shared.issuer));
    redirect(&append_query(&redirect_uri, &pairs))
}

fn token_error(code: &str, description: &str) -> Resp {
    no_store(oauth_error(StatusCode::BAD_REQUEST, code, description))
}

fn token_success(shared: &Shared, access: &str, scope: &str, refresh: Option<&str>, cnf: &Confirmation) -> Resp {
    token_response(access, scope, refresh, shared.access_ttl_secs(), cnf.jkt.as_deref())
}

/// `POST /oauth/token`.
///
/// RFC 8705 §3: a client that presented a TLS client certificate gets tokens bound to it
/// (`cnf.x5t#S256`), whichever way it authenticated.
pub(crate) fn token(
    shared: &Shared,
    headers: &HeaderMap,
    params: &Params,
    certificate: Option<&crate::tls::ClientCertificate>,
) -> Resp {
    let grant = match params.one("grant_type") {
        Ok(Some(g)) => g,
        Ok(None) => return token_error("invalid_request", "grant_type is required"),
        Err(e) => return token_error("invalid_request", &e),
    };
    let client = match authenticate(shared, headers, params, false) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    if ![
        GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN,
        GRANT_CLIENT_CREDENTIALS,
        GRANT_DEVICE_CODE,
    ]
    .contains(&grant)
    {
        return token_error("unsupported_grant_type", "unsupported grant_type");
    }
    if !client.allows_grant(grant) {
        return token_error("unauthorized_client", "grant type not allowed for this client");
    }
    let jkt = match dpop_key(shared, headers) {
        Ok(jkt) => jkt,
        Err(description) => return token_error("invalid_dpop_proof", description),
    };
    let cnf = Confirmation {
        jkt,
        x5t_s256: certificate.map(|c| c.thumbprint().to_owned()),
    };
    let result = match grant {
        GRANT_AUTHORIZATION_CODE => code_grant(shared, &client, params, &cnf),
        GRANT_REFRESH_TOKEN => refresh_grant(shared, &client, params, &cnf),
        GRANT_DEVICE_CODE => super::device::grant(shared, &client, params),
        _ => client_credentials_grant(shared, &client, params, &cnf),
    };
    result.unwrap_or_else(|(code, d)| token_error(code, &d))
}

/// RFC 9449 §5: the thumbprint of the key of a valid `DPoP` proof sent to the token
/// endpoint, `None` without one.
fn dpop_key(shared: &Shared, headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut proofs = headers.get_all("dpop").iter();
    let proof = match (proofs.next(), proofs.next()) {
        (None, _) => return Ok(None),
        (Some(proof), None) => proof.to_str().map_err(|_| "the DPoP proof is malformed")?,
        (Some(_), Some(_)) => return Err("only one DPoP proof may be sent"),
    };
    let uri = shared.url("/oauth/token");
    let target = crate::token::dpop::ProofTarget {
        method: "POST",
        uri: &uri,
        token: None,
    };
    let now = u64::try_from(now_unix()).unwrap_or_default();
    shared
        .proofs
        .check(proof, &target, now)
        .map(Some)
        .map_err(crate::token::error::ProofError::description)
}

type GrantResult = Result<Resp, (&'static str, String)>;

fn one<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, (&'static str, String)> {
    params.one(name).map_err(|e| ("invalid_request", e))
}

fn narrow_resources(params: &Params, granted: &[String]) -> Result<Vec<String>, (&'static str, String)> {
    let requested = params.all("resource");
    if requested.iter().any(|r| !granted.iter().any(|g| g == r)) {
        return Err(("invalid_target", "resource was not part of the grant".into()));
    }
    Ok(requested.into_iter().map(str::to_owned).collect())
}

fn code_grant(shared: &Shared, client: &RegisteredClient, params: &Params, cnf: &Confirmation) -> GrantResult {
    let code = one(params, "code")?.ok_or(("invalid_request", "code is required".to_owned()))?;
    let redirect_uri = one(params, "redirect_uri")?;
    let verifier = one(params, "code_verifier")?;
    let invalid = |d: &str| Err(("invalid_grant", d.to_owned()));
    let mut store = lock(&shared.store);
    let Some(rec) = store.codes.get(&code.to_owned()) else {
        return invalid("unknown authorization code");
    };
    if rec.client_id != client.client_id {
        return invalid("authorization code was issued to another client");
    }
    if let Some(family) = rec.redeemed_family {
        // RFC 6749 §4.1.2: revoke what the first redemption produced.
        store.revoke_family(family);
        return invalid("authorization code already used; its tokens are revoked");
    }
    if rec.expires_at <= Instant::now() {
        return invalid("authorization code expired");
    }
    match redirect_uri {
        Some(r) if r != rec.redirect_uri => return invalid("redirect_uri does not match"),
        None if rec.redirect_uri_sent => return invalid("redirect_uri is required"),
        _ => {}
    }
    match (&rec.challenge, verifier) {
        (None, None) => {}
        (None, Some(_)) => return invalid("code_verifier sent but no code_challenge was"),
        (Some(_), None) => return invalid("code_verifier is required"),
        (Some(challenge), Some(v)) => {
            let well_formed =
                (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = b64url(digest::digest(&digest::SHA256, v.as_bytes()).as_ref());
            if !well_formed || computed != *challenge {
                return invalid("code_verifier does not match the code_challenge");
            }
        }
    }
    let aud_resources = match narrow_resources(params, &rec.resources)? {
        narrowed if narrowed.is_empty() => rec.resources.clone(),
        narrowed => narrowed,
    };
    let (sub, scope, auth_time) = (rec.sub.clone(), rec.scope.clone(), rec.auth_time);
    let aud = shared.audience_for(&aud_resources);
    let family = store.new_family();
    if let Some(rec) = store.codes.get_mut(&code.to_owned()) {
        rec.redeemed_family = Some(family);
    }
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
        cnf,
    );
    Ok(token_success(shared, &access, &scope, refresh.as_deref(), cnf))
}

fn refresh_grant(shared: &Shared, client: &RegisteredClient, params: &Params, cnf: &Confirmation) -> GrantResult {
    let presented = one(params, "refresh_token")?.ok_or(("invalid_request", "refresh_token is required".to_owned()))?;
    let requested_scope = one(params, "scope")?;
    let invalid = |d: &str| Err(("invalid_grant", d.to_owned()));
    let key = token_key(presented);
    let mut store = lock(&shared.store);
    let Some(rec) = store.refresh.get(&key) else {
        return invalid("unknown refresh token");
    };
    if rec.client_id != client.client_id {
        return invalid("refresh token was issued to another client");
    }
    let family = rec.family;
    if rec.rotated {
        store.revoke_family(family);
        return invalid("refresh token reuse detected; the token family is revoked");
    }
    if !store.family_live(family) || rec.exp <= now_unix() {
        return invalid("refresh token is revoked or expired");
    }
    let granted: Vec<&str> = rec.scope.split_whitespace().collect();
    let access_scope = match requested_scope {
        None => rec.scope.clone(),
        Some(s) => {
            if s.split_whitespace().any(|x| !granted.contains(&x)) {
                return Err(("invalid_scope", "scope exceeds the original grant".into()));
            }
            s.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    let aud = match narrow_resources(params, &rec.aud)? {
        narrowed if narrowed.is_empty() => rec.aud.clone(),
        narrowed => narrowed,
    };
    let (sub, scope, rec_aud, auth_time) = (rec.sub.clone(), rec.scope.clone(), rec.aud.clone(), rec.auth_time);
    if let Some(rec) = store.refresh.get_mut(&key) {
        rec.rotated = true;
    }
    let access = shared.issue_access(
        &mut store,
        &AccessGrant {
            sub: &sub,
            client_id: &client.client_id,
            scope: &access_scope,
            aud: &aud,
            expires_in: shared.access_ttl_secs(),
            family: Some(family),
            auth_time: Some(auth_time),
            extra: None,
            cnf,
        },
    );
    // RFC 6749 §6: the new refresh token keeps the original scope.
    let template = RefreshTemplate {
        client_id: &client.client_id,
        sub: &sub,
        scope: &scope,
        aud: &rec_aud,
        auth_time,
    };
    let refresh = shared.issue_refresh(&mut store, family, &template);
    Ok(token_success(shared, &access, &access_scope, Some(&refresh), cnf))
}

fn client_credentials_grant(
    shared: &Shared,
    client: &RegisteredClient,
    params: &Params,
    cnf: &Confirmation,
) -> GrantResult {
    if !client.is_confidential() {
        return Err((
            "unauthorized_client",
            "client_credentials needs a confidential client".into(),
        ));
    }
    let Some(scope) = resolve_scope(shared, client, one(params, "scope")?) else {
        return Err(("invalid_scope", "requested scope is unknown or not allowed".into()));
    };
    let resources: Vec<String> = params.all("resource").into_iter().map(str::to_owned).collect();
    if resources.iter().any(|r| !valid_resource(r)) {
        return Err((
            "invalid_target",
            "resource must be an absolute URI without fragment".into(),
        ));
    }
    let aud = shared.audience_for(&resources);
    let mut store = lock(&shared.store);
    let access = shared.issue_access(
        &mut store,
        &AccessGrant {
            sub: &client.client_id,
            client_id: &client.client_id,
            scope: &scope,
            aud: &aud,
            expires_in: shared.access_ttl_secs(),
            family: None,
            auth_time: None,
            extra: None,
            cnf,
        },
    );
    Ok(token_success(shared, &access, &scope, None, cnf))
}
