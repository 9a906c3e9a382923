//! One token for one request: discover where it comes from, reuse a stored one while it is
//! fresh, refresh it when it is not, and otherwise run the grant that fits (client
//! credentials with a secret; the device grant without a browser when the server offers
//! it; authorization code with PKCE through the loopback redirect). What was obtained is
//! stored; `revoke` ends it at the server and forgets it.

use std::path::PathBuf;
use std::time::Duration;

use super::discovery::{ServerMetadata, Target, discover, server_metadata};
use super::endpoints::{
    ClientIdentity, DEVICE_CODE_GRANT, TokenResponse, register, revoke as revoke_token, token_request,
};
use super::error::ClientError;
use super::grants::{self, Prompt, Wanted};
use super::loopback::Loopback;
use super::store::{self, StoredClient, StoredToken, scope_set};

/// Which grant gets a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrantChoice {
    /// Client credentials with a secret; else the device grant when no browser is available
    /// and the server offers it; else authorization code.
    #[default]
    Auto,
    AuthorizationCode,
    Device,
    ClientCredentials,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// A protected URL, or an issuer.
    pub url: String,
    /// Which of the resource's authorization servers to use.
    pub issuer: Option<String>,
    /// Scopes named by the user; empty means the challenge's or the metadata's.
    pub scopes: Vec<String>,
    /// RFC 8707 resource; default the protected resource's identifier.
    pub resource: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub grant: GrantChoice,
    /// No browser can be opened here and the user did not ask for the URL to be printed:
    /// [`GrantChoice::Auto`] takes the device grant when the server offers it.
    pub device_preferred: bool,
    /// How long to wait for the person at the browser.
    pub timeout: Duration,
    pub store: PathBuf,
    /// Get a new token even when a stored one would do.
    pub fresh: bool,
}

/// A token and where it came from.
pub struct Obtained {
    pub target: Target,
    pub token: StoredToken,
    /// `stored`, `refreshed`, or the grant that produced it.
    pub how: &'static str,
}

impl TokenRequest {
    fn resource<'a>(&'a self, target: &'a Target) -> Option<&'a str> {
        self.resource.as_deref().or(target.resource.as_deref())
    }

    fn scopes(&self, target: &Target) -> Vec<String> {
        if self.scopes.is_empty() {
            scope_set(&target.suggested_scopes)
        } else {
            scope_set(&self.scopes)
        }
    }

    fn identity(&self, server: &ServerMetadata, client_id: &str) -> ClientIdentity {
        let secret = match &self.client_id {
            Some(id) if id == client_id => self.client_secret.clone(),
            _ => None,
        };
        ClientIdentity {
            client_id: client_id.to_string(),
            post: server.prefers_post(),
            secret,
        }
    }
}

/// Finds the authorization server for the request's URL.
pub async fn resolve(http: &reqwest::Client, request: &TokenRequest) -> Result<Target, ClientError> {
    discover(http, &request.url, request.issuer.as_deref()).await
}

/// A usable token for `target`: stored, refreshed, or new.
pub async fn obtain(
    http: &reqwest::Client,
    request: &TokenRequest,
    target: Target,
    prompt: &dyn Fn(&Prompt<'_>),
) -> Result<Obtained, ClientError> {
    let scopes = request.scopes(&target);
    let resource = request.resource(&target).map(str::to_string);
    let issuer = target.server.issuer.clone();
    let mut store = store::load(&request.store)?;
    if !request.fresh
        && let Some(stored) = store.find(&issuer, resource.as_deref(), &scopes).cloned()
    {
        if stored.is_fresh() {
            return Ok(Obtained {
                target,
                token: stored,
                how: "stored",
            });
        }
        match refresh(http, request, &target.server, &stored).await {
            Ok(refreshed) => {
                store.put(refreshed.clone());
                store::save(&request.store, &store)?;
                return Ok(Obtained {
                    target,
                    token: refreshed,
                    how: "refreshed",
                });
            }
            Err(refused) => {
                tracing::warn!(error = %refused, "the stored token could not be refreshed; getting a new one");
                if refused == "invalid_client" && request.client_id.is_none() {
                    store.clients.retain(|c| c.issuer != issuer);
                }
            }
        }
        store.remove(&stored.issuer, stored.resource.as_deref(), &stored.scopes);
    }
    let wanted = Wanted {
        scopes: &scopes,
        resource: resource.as_deref(),
    };
    let (client_id, response, how) = match new_token(http, request, &target.server, &mut store, &wanted, prompt).await {
        Ok(got) => got,
        // A registration the server has since dropped: forget it so the next run registers.
        Err(ClientError::TokenRefused { error, detail, .. })
            if error == "invalid_client" && request.client_id.is_none() && store.client(&issuer).is_some() =>
        {
            store.clients.retain(|c| c.issuer != issuer);
            store::save(&request.store, &store)?;
            return Err(ClientError::ClientForgotten {
                issuer,
                detail: detail.unwrap_or(error),
            });
        }
        Err(e) => return Err(e),
    };
    let token = stored_token(&issuer, resource, &scopes, client_id, response)?;
    store.put(token.clone());
    store::save(&request.store, &store)?;
    Ok(Obtained { target, token, how })
}

/// RFC 6749 §6, with the stored token's own scopes and resource. The error code when the
/// server will not refresh (the caller falls back to a new grant).
async fn refresh(
    http: &reqwest::Client,
    request: &TokenRequest,
    server: &ServerMetadata,
    stored: &StoredToken,
) -> Result<StoredToken, String> {
    let refresh_token = stored.refresh_token.as_deref().ok_or("no refresh token")?;
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    if let Some(resource) = &stored.resource {
        form.push(("resource", resource));
    }
    let client = request.identity(server, &stored.client_id);
    match token_request(http, server, &client, &form).await {
        Ok(mut response) => {
            // RFC 6749 §6: without a new refresh token, the old one stays valid.
            if response.refresh_token.is_none() {
                response.refresh_token = Some(refresh_token.to_string());
            }
            stored_token(
                &stored.issuer,
                stored.resource.clone(),
                &stored.scopes,
                stored.client_id.clone(),
                response,
            )
            .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.error),
    }
}

async fn new_token(
    http: &reqwest::Client,
    request: &TokenRequest,
    server: &ServerMetadata,
    store: &mut store::Store,
    wanted: &Wanted<'_>,
    prompt: &dyn Fn(&Prompt<'_>),
) -> Result<(String, TokenResponse, &'static str), ClientError> {
    let device_offered = server.device_authorization_endpoint.is_some() && server.offers_grant(DEVICE_CODE_GRANT);
    let grant = match request.grant {
        GrantChoice::Auto if request.client_secret.is_some() => GrantChoice::ClientCredentials,
        GrantChoice::Auto if request.device_preferred && device_offered => GrantChoice::Device,
        GrantChoice::Auto => GrantChoice::AuthorizationCode,
        chosen => chosen,
    };
    if grant == GrantChoice::ClientCredentials {
        let (Some(client_id), Some(_)) = (&request.client_id, &request.client_secret) else {
            return Err(ClientError::Usage(
                "client credentials need --client-id and a secret (--client-secret-file or --client-secret-env)".into(),
            ));
        };
        let client = request.identity(server, client_id);
        let response = grants::client_credentials(http, server, &client, wanted).await?;
        return Ok((client_id.clone(), response, "client_credentials"));
    }
    if grant == GrantChoice::Device {
        if !device_offered {
            return Err(ClientError::Unsupported {
                issuer: server.issuer.clone(),
                what: "the device authorization grant (RFC 8628)",
                reason: "its metadata lists no device_authorization_endpoint or device_code grant".into(),
            });
        }
        // RFC 8628 §3.1 needs no redirect; a registration still names the loopback form.
        let client_id = client_id(http, request, server, store, "http://127.0.0.1/callback", true).await?;
        let client = request.identity(server, &client_id);
        let response = grants::device(http, server, &client, wanted, request.timeout, prompt).await?;
        return Ok((client_id, response, "device"));
    }
    let loopback = Loopback::bind().await?;
    let client_id = client_id(http, request, server, store, &loopback.redirect_uri(), device_offered).await?;
    let client = request.identity(server, &client_id);
    let response = grants::authorization_code(http, server, &client, loopback, wanted, request.timeout, prompt).await?;
    Ok((client_id, response, "authorization_code"))
}

/// The client to use: the one named, the one registered here before, or a new registration
/// (RFC 7591) kept for next time. Loopback redirects match on any port (RFC 8252 §7.3), so
/// one registration serves every run.
async fn client_id(
    http: &reqwest::Client,
    request: &TokenRequest,
    server: &ServerMetadata,
    store: &mut store::Store,
    redirect_uri: &str,
    device: bool,
) -> Result<String, ClientError> {
    if let Some(id) = &request.client_id {
        return Ok(id.clone());
    }
    if let Some(stored) = store.client(&server.issuer) {
        return Ok(stored.client_id.clone());
    }
    let client_id = register(http, server, redirect_uri, device).await?;
    store.put_client(StoredClient {
        issuer: server.issuer.clone(),
        client_id: client_id.clone(),
    });
    // Kept even if the sign-in that follows fails: the next run reuses it.
    store::save(&request.store, store)?;
    Ok(client_id)
}

/// The token as stored: under the scopes granted (RFC 6749 §5.1: absent means as
/// requested), refused when the grant lacks any requested scope.
fn stored_token(
    issuer: &str,
    resource: Option<String>,
    requested: &[String],
    client_id: String,
    response: TokenResponse,
) -> Result<StoredToken, ClientError> {
    let scopes = match &response.scope {
        Some(granted) => {
            let granted: Vec<String> = granted.split_whitespace().map(str::to_string).collect();
            let missing: Vec<&str> = requested
                .iter()
                .filter(|s| !granted.contains(s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(ClientError::ScopeNotGranted {
                    granted: granted.join(" "),
                    missing: missing.join(" "),
                });
            }
            scope_set(&granted)
        }
        None => scope_set(requested),
    };
    Ok(StoredToken {
        issuer: issuer.to_string(),
        resource,
        scopes,
        client_id,
        access_token: response.access_token,
        refresh_token: response.refresh_token,
        expires_at: response.expires_in.map(|s| store::now_unix().saturating_add(s)),
    })
}

/// RFC 7009: revokes the stored tokens of the request's issuer and resource (only the exact
/// scope set when scopes are named), then forgets them. Returns how many were revoked.
pub async fn revoke(http: &reqwest::Client, request: &TokenRequest, target: &Target) -> Result<usize, ClientError> {
    let resource = request.resource(target).map(str::to_string);
    let named = (!request.scopes.is_empty()).then(|| scope_set(&request.scopes));
    let mut store = store::load(&request.store)?;
    let chosen: Vec<StoredToken> = store
        .tokens
        .iter()
        .filter(|t| t.issuer == target.server.issuer && t.resource == resource)
        .filter(|t| named.as_ref().is_none_or(|n| *n == t.scopes))
        .cloned()
        .collect();
    revoke_and_forget(http, request, &target.server, &mut store, &chosen).await
}

/// Revokes every stored token at its issuer and forgets it.
pub async fn revoke_all(http: &reqwest::Client, request: &TokenRequest) -> Result<usize, ClientError> {
    let mut store = store::load(&request.store)?;
    let mut issuers: Vec<String> = store.tokens.iter().map(|t| t.issuer.clone()).collect();
    issuers.sort();
    issuers.dedup();
    let mut count = 0;
    for issuer in issuers {
        let server = server_metadata(http, &issuer).await?;
        let chosen: Vec<StoredToken> = store.tokens.iter().filter(|t| t.issuer == issuer).cloned().collect();
        count += revoke_and_forget(http, request, &server, &mut store, &chosen).await?;
    }
    Ok(count)
}

async fn revoke_and_forget(
    http: &reqwest::Client,
    request: &TokenRequest,
    server: &ServerMetadata,
    store: &mut store::Store,
    chosen: &[StoredToken],
) -> Result<usize, ClientError> {
    for token in chosen {
        let client = request.identity(server, &token.client_id);
        // The refresh token first: revoking it also ends its access tokens at most servers.
        if let Some(refresh) = &token.refresh_token {
            revoke_token(http, server, &client, refresh, "refresh_token").await?;
        }
        revoke_token(http, server, &client, &token.access_token, "access_token").await?;
        store.remove(&token.issuer, token.resource.as_deref(), &token.scopes);
        store::save(&request.store, store)?;
    }
    Ok(chosen.len())
}
