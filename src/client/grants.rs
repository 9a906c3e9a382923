//! The three ways to a new token: authorization code with PKCE through the loopback
//! redirect (RFC 6749 §4.1, RFC 7636, RFC 8252), the device authorization grant (RFC 8628)
//! and client credentials (RFC 6749 §4.4). Each asks for `resource` (RFC 8707) and the
//! scopes wanted.

use std::time::{Duration, Instant};

use super::discovery::ServerMetadata;
use super::endpoints::{
    ClientIdentity, DEVICE_CODE_GRANT, EndpointError, TokenResponse, device_authorization, token_request,
};
use super::error::ClientError;
use super::loopback::{CallbackParams, Loopback};
use super::pkce::{Pkce, random_text};

/// What the person at the terminal is asked to do.
pub enum Prompt<'a> {
    /// Visit this authorization URL (or let the browser open it).
    Authorize { url: &'a str },
    /// Visit `uri` and enter `user_code` (RFC 8628 §3.3).
    Device {
        uri: &'a str,
        user_code: &'a str,
        complete: Option<&'a str>,
    },
}

/// The token being asked for.
pub struct Wanted<'a> {
    pub scopes: &'a [String],
    pub resource: Option<&'a str>,
}

impl Wanted<'_> {
    fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    /// `scope` and `resource` as request parameters (absent when empty).
    fn params(&self, scope: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !scope.is_empty() {
            out.push(("scope", scope.to_string()));
        }
        if let Some(resource) = self.resource {
            out.push(("resource", resource.to_string()));
        }
        out
    }
}

fn with_wanted<'a>(form: &mut Vec<(&'a str, &'a str)>, extra: &'a [(&'static str, String)]) {
    form.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
}

/// RFC 6749 §4.4.
pub async fn client_credentials(
    http: &reqwest::Client,
    server: &ServerMetadata,
    client: &ClientIdentity,
    wanted: &Wanted<'_>,
) -> Result<TokenResponse, ClientError> {
    let scope = wanted.scope();
    let extra = wanted.params(&scope);
    let mut form = vec![("grant_type", "client_credentials")];
    with_wanted(&mut form, &extra);
    token_request(http, server, client, &form)
        .await
        .map_err(|e| scope_error(e, &scope))
}

/// Names the scope in an `invalid_scope` refusal.
fn scope_error(e: EndpointError, scope: &str) -> ClientError {
    match ClientError::from(e) {
        ClientError::ScopeRefused { detail, .. } => ClientError::ScopeRefused {
            scope: scope.to_string(),
            detail,
        },
        other => other,
    }
}

/// Authorization code with PKCE S256 through `loopback`: the URL goes to `prompt`, the
/// redirect must come back with this request's `state` and, per RFC 9207, this issuer.
pub async fn authorization_code(
    http: &reqwest::Client,
    server: &ServerMetadata,
    client: &ClientIdentity,
    loopback: Loopback,
    wanted: &Wanted<'_>,
    timeout: Duration,
    prompt: &dyn Fn(&Prompt<'_>),
) -> Result<TokenResponse, ClientError> {
    let unavailable = |reason: &str| ClientError::Unsupported {
        issuer: server.issuer.clone(),
        what: "the authorization code grant with PKCE S256",
        reason: reason.to_string(),
    };
    let Some(endpoint) = &server.authorization_endpoint else {
        return Err(unavailable("its metadata has no authorization_endpoint"));
    };
    // RFC 8414 §2: no list means no PKCE; MCP clients refuse such servers, and so does this one.
    let s256 = server
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|methods| methods.iter().any(|m| m == "S256"));
    if !s256 {
        return Err(unavailable("code_challenge_methods_supported does not list S256"));
    }
    let pkce = Pkce::new();
    let state = random_text(16);
    let redirect_uri = loopback.redirect_uri();
    let scope = wanted.scope();
    let extra = wanted.params(&scope);
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query.extend_pairs([
            ("response_type", "code"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("state", state.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        query.extend_pairs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    }
    prompt(&Prompt::Authorize { url: url.as_str() });
    let params = loopback.wait(timeout).await?;
    let code = check_callback(&params, &state, server, &scope)?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    if let Some(resource) = wanted.resource {
        form.push(("resource", resource));
    }
    token_request(http, server, client, &form)
        .await
        .map_err(|e| scope_error(e, &scope))
}

/// RFC 6749 §4.1.2 and §10.12, RFC 9207 §2.4: the code, once state and issuer check out.
fn check_callback<'p>(
    params: &'p CallbackParams,
    state: &str,
    server: &ServerMetadata,
    scope: &str,
) -> Result<&'p str, ClientError> {
    if params.get("state").map(String::as_str) != Some(state) {
        return Err(ClientError::StateMismatch);
    }
    match params.get("iss") {
        Some(iss) if *iss != server.issuer => {
            return Err(ClientError::IssuerMismatch {
                expected: server.issuer.clone(),
                got: iss.clone(),
            });
        }
        None if server.iss_parameter_supported => {
            return Err(ClientError::IssuerMismatch {
                expected: server.issuer.clone(),
                got: String::new(),
            });
        }
        _ => {}
    }
    if let Some(error) = params.get("error") {
        let detail = params.get("error_description").cloned();
        return Err(if error == "invalid_scope" {
            ClientError::ScopeRefused {
                scope: scope.to_string(),
                detail: detail.unwrap_or_else(|| error.clone()),
            }
        } else {
            ClientError::AuthorizationDenied {
                error: error.clone(),
                detail,
            }
        });
    }
    params
        .get("code")
        .map(String::as_str)
        .ok_or_else(|| ClientError::AuthorizationDenied {
            error: "the redirect carries neither a code nor an error".into(),
            detail: None,
        })
}

/// RFC 8628: show the user code, then poll at the server's pace until the user is done,
/// the code expires, or `timeout`.
pub async fn device(
    http: &reqwest::Client,
    server: &ServerMetadata,
    client: &ClientIdentity,
    wanted: &Wanted<'_>,
    timeout: Duration,
    prompt: &dyn Fn(&Prompt<'_>),
) -> Result<TokenResponse, ClientError> {
    let scope = wanted.scope();
    let extra = wanted.params(&scope);
    let mut form = Vec::new();
    with_wanted(&mut form, &extra);
    let authorization = device_authorization(http, server, client, &form)
        .await
        .map_err(|e| match e {
            ClientError::ScopeRefused { detail, .. } => ClientError::ScopeRefused {
                scope: scope.clone(),
                detail,
            },
            other => other,
        })?;
    prompt(&Prompt::Device {
        uri: &authorization.verification_uri,
        user_code: &authorization.user_code,
        complete: authorization.verification_uri_complete.as_deref(),
    });
    let deadline = Instant::now() + timeout.min(Duration::from_secs(authorization.expires_in));
    let mut interval = Duration::from_secs(authorization.interval.max(1));
    let form = [
        ("grant_type", DEVICE_CODE_GRANT),
        ("device_code", authorization.device_code.as_str()),
    ];
    loop {
        if Instant::now() + interval > deadline {
            return Err(ClientError::DeviceCodeExpired);
        }
        tokio::time::sleep(interval).await;
        match token_request(http, server, client, &form).await {
            Ok(response) => return Ok(response),
            // RFC 8628 §3.5.
            Err(e) if e.error == "authorization_pending" => {}
            Err(e) if e.error == "slow_down" => interval += Duration::from_secs(5),
            Err(e) if e.error == "expired_token" => return Err(ClientError::DeviceCodeExpired),
            Err(e) if e.error == "access_denied" => {
                return Err(ClientError::AuthorizationDenied {
                    error: e.error,
                    detail: e.description,
                });
            }
            Err(e) => return Err(scope_error(e, &scope)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn server(iss_supported: bool) -> ServerMetadata {
        ServerMetadata {
            issuer: "https://as.example".into(),
            authorization_endpoint: None,
            token_endpoint: reqwest::Url::parse("https://as.example/token").unwrap(),
            registration_endpoint: None,
            revocation_endpoint: None,
            device_authorization_endpoint: None,
            scopes_supported: Vec::new(),
            grant_types_supported: None,
            token_endpoint_auth_methods_supported: None,
            code_challenge_methods_supported: None,
            iss_parameter_supported: iss_supported,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> CallbackParams {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn callback_checks() {
        let ok = params(&[("code", "c"), ("state", "s"), ("iss", "https://as.example")]);
        assert_eq!(check_callback(&ok, "s", &server(true), "read").unwrap(), "c");
        assert!(matches!(
            check_callback(&ok, "other", &server(true), "read"),
            Err(ClientError::StateMismatch)
        ));
        let foreign = params(&[("code", "c"), ("state", "s"), ("iss", "https://evil.example")]);
        assert!(matches!(
            check_callback(&foreign, "s", &server(false), "read"),
            Err(ClientError::IssuerMismatch { .. })
        ));
        let silent = params(&[("code", "c"), ("state", "s")]);
        assert!(check_callback(&silent, "s", &server(false), "read").is_ok());
        assert!(matches!(
            check_callback(&silent, "s", &server(true), "read"),
            Err(ClientError::IssuerMismatch { .. })
        ));
        let refused = params(&[("error", "invalid_scope"), ("state", "s")]);
        assert!(matches!(
            check_callback(&refused, "s", &server(false), "admin"),
            Err(ClientError::ScopeRefused { scope, .. }) if scope == "admin"
        ));
    }
}
