//! RFC 7591 client-metadata validation and URI checks.

use super::state::{
    AUTH_BASIC, AUTH_NONE, AUTH_POST, ClientRegistration, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, RegisteredClient, Shared,
};

/// `https` URI, or `http` with a loopback host; no fragment (RFC 8252 §7.3,
/// RFC 6749 §3.1.2).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.contains('#') {
        return Err(format!("redirect_uri must not contain a fragment: {uri}"));
    }
    let (https, rest) = if let Some(rest) = uri.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = uri.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("redirect_uri must be https or loopback http: {uri}"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') || authority.is_empty() {
        return Err(format!("redirect_uri has an invalid authority: {uri}"));
    }
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let port = &authority[host.len()..];
    if !(port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
    {
        return Err(format!("redirect_uri has an invalid port: {uri}"));
    }
    if host.is_empty() {
        return Err(format!("redirect_uri has no host: {uri}"));
    }
    if !https && !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
        return Err(format!("http redirect_uri must use a loopback host: {uri}"));
    }
    Ok(())
}

/// Whether `requested` is the registered redirect URI `registered`. RFC 8252 §7.3: for a
/// loopback IP redirect the port is whatever the native app could bind at the time, so it
/// is ignored; everything else must match exactly.
pub(crate) fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let without_port = |uri: &str| -> Option<(String, String)> {
        let rest = uri.strip_prefix("http://")?;
        let (authority, path) = rest.find(['/', '?']).map_or((rest, ""), |i| rest.split_at(i));
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        };
        matches!(host, "127.0.0.1" | "[::1]").then(|| (host.to_owned(), path.to_owned()))
    };
    matches!((without_port(registered), without_port(requested)), (Some(a), Some(b)) if a == b)
}

/// Resolve the requested scope against the supported and client scopes.
pub(crate) fn resolve_scope(shared: &Shared, client: &RegisteredClient, requested: Option<&str>) -> Option<String> {
    let text = requested
        .map(str::to_owned)
        .or_else(|| client.scope.clone())
        .unwrap_or_else(|| "read".to_owned());
    let supported = shared.scopes_supported();
    let allowed: Option<Vec<&str>> = client.scope.as_deref().map(|s| s.split_whitespace().collect());
    let mut out: Vec<&str> = Vec::new();
    for s in text.split_whitespace() {
        if !supported.iter().any(|x| x == s) || allowed.as_ref().is_some_and(|a| !a.contains(&s)) {
            return None;
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// An absolute URI without fragment (RFC 8707 §2).
pub(crate) fn valid_resource(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !uri.contains('#')
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// RFC 7591 §2 checks; `Err((error_code, description))`.
pub(crate) fn validate_registration(shared: &Shared, req: &ClientRegistration) -> Result<(), (&'static str, String)> {
    let meta = |d: String| ("invalid_client_metadata", d);
    let method = req.token_endpoint_auth_method.as_deref().unwrap_or(AUTH_BASIC);
    if ![AUTH_NONE, AUTH_BASIC, AUTH_POST].contains(&method) {
        return Err(meta(format!("unsupported token_endpoint_auth_method {method}")));
    }
    let default_grants = [GRANT_AUTHORIZATION_CODE.to_owned(), GRANT_REFRESH_TOKEN.to_owned()];
    let grants: &[String] = if req.grant_types.is_empty() {
        &default_grants
    } else {
        &req.grant_types
    };
    for g in grants {
        if ![
            GRANT_AUTHORIZATION_CODE,
            GRANT_REFRESH_TOKEN,
            GRANT_CLIENT_CREDENTIALS,
            GRANT_DEVICE_CODE,
        ]
        .contains(&g.as_str())
        {
            return Err(meta(format!("unsupported grant_type {g}")));
        }
    }
    let has_code = grants.iter().any(|g| g == GRANT_AUTHORIZATION_CODE);
    if grants.iter().any(|g| g == GRANT_CLIENT_CREDENTIALS) && method == AUTH_NONE {
        return Err(meta("client_credentials requires a confidential client".into()));
    }
    for r in &req.response_types {
        if r != "code" {
            return Err(meta(format!("unsupported response_type {r}")));
        }
    }
    if !req.response_types.is_empty() && !has_code {
        return Err(meta("response_type code requires the authorization_code grant".into()));
    }
    if has_code && req.redirect_uris.is_empty() {
        return Err((
            "invalid_redirect_uri",
            "redirect_uris is required for the authorization_code grant".into(),
        ));
    }
    for uri in &req.redirect_uris {
        check_redirect_uri(uri).map_err(|d| ("invalid_redirect_uri", d))?;
    }
    if let Some(scope) = &req.scope {
        let supported = shared.scopes_supported();
        if let Some(bad) = scope.split_whitespace().find(|s| !supported.iter().any(|x| x == s)) {
            return Err(meta(format!("unsupported scope {bad}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:1/cb?x=1").is_ok());
        assert!(check_redirect_uri("http://app.example/cb").is_err());
        assert!(check_redirect_uri("https://app.example/cb#frag").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("https://user@app.example/cb").is_err());
        assert!(check_redirect_uri("http://127.0.0.1.evil.example/cb").is_err());
        assert!(check_redirect_uri("https:///cb").is_err());
    }

    #[test]
    fn loopback_ip_redirects_match_on_any_port() {
        assert!(redirect_matches("http://127.0.0.1:1000/cb", "http://127.0.0.1:2000/cb"));
        assert!(redirect_matches("http://127.0.0.1/cb", "http://127.0.0.1:2000/cb"));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(!redirect_matches(
            "http://127.0.0.1:1000/cb",
            "http://127.0.0.1:2000/other"
        ));
        assert!(!redirect_matches(
            "https://app.example:1/cb",
            "https://app.example:2/cb"
        ));
        assert!(!redirect_matches("http://localhost:1/cb", "http://localhost:2/cb"));
    }

    #[test]
    fn resource_rules() {
        assert!(valid_resource("https://api.example/mcp"));
        assert!(valid_resource("urn:example:api"));
        assert!(!valid_resource("/relative"));
        assert!(!valid_resource("https://api.example/#x"));
    }
}
