//! Request parameters and OAuth client authentication (RFC 6749 §2.3.1), shared by the
//! token, introspection and revocation endpoints.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::{self, HeaderMap};

use super::respond::{Resp, invalid_client, no_store, oauth_error};
use super::state::{RegisteredClient, Shared, lock};

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
