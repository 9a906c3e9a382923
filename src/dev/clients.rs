//! Registered clients of the development issuer: RFC 7591 metadata as sent, and the client
//! as registered (its grants, redirect URIs and authentication method).

use serde::{Deserialize, Serialize};

use super::keys::{now_unix, random_token};

pub(crate) const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub(crate) const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub(crate) const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8628 §3.4.
pub(crate) const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub(crate) const AUTH_NONE: &str = "none";
pub(crate) const AUTH_BASIC: &str = "client_secret_basic";
pub(crate) const AUTH_POST: &str = "client_secret_post";

/// RFC 7591 client metadata as sent to the registration endpoint (and to
/// [`DevIssuer::register_client`](super::DevIssuer::register_client)).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientRegistration {
    /// Redirection URIs (required for the authorization-code grant).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Grant types; empty means `[authorization_code, refresh_token]`.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Response types; empty means `[code]` when the code grant is allowed.
    #[serde(default)]
    pub response_types: Vec<String>,
    /// `none`, `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// Space-separated scopes the client may request.
    #[serde(default)]
    pub scope: Option<String>,
    /// Human-readable name.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Client home page.
    #[serde(default)]
    pub client_uri: Option<String>,
    /// Software identifier.
    #[serde(default)]
    pub software_id: Option<String>,
    /// Software version.
    #[serde(default)]
    pub software_version: Option<String>,
}

/// A registered client: the RFC 7591 §3.2.1 response body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisteredClient {
    /// Client identifier.
    pub client_id: String,
    /// Secret of a confidential client (None for `none` auth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Issue time (seconds since the epoch).
    pub client_id_issued_at: i64,
    /// 0 (never expires) for confidential clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    /// Registered redirection URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed response types.
    pub response_types: Vec<String>,
    /// Token endpoint authentication method.
    pub token_endpoint_auth_method: String,
    /// Allowed scopes (space-separated), if restricted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Client home page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Software identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// Software version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl RegisteredClient {
    /// Whether the client authenticates with a secret.
    pub fn is_confidential(&self) -> bool {
        self.client_secret.is_some()
    }

    pub(crate) fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

/// Apply RFC 7591 defaults and create the client (no validation).
pub(crate) fn build_client(req: ClientRegistration) -> RegisteredClient {
    let method = req.token_endpoint_auth_method.unwrap_or_else(|| AUTH_BASIC.to_owned());
    let grant_types = if req.grant_types.is_empty() {
        vec![GRANT_AUTHORIZATION_CODE.into(), GRANT_REFRESH_TOKEN.into()]
    } else {
        req.grant_types
    };
    let response_types = if !req.response_types.is_empty() {
        req.response_types
    } else if grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
        vec!["code".into()]
    } else {
        Vec::new()
    };
    let confidential = method != AUTH_NONE;
    RegisteredClient {
        client_id: random_token(16),
        client_secret: confidential.then(|| random_token(32)),
        client_id_issued_at: now_unix(),
        client_secret_expires_at: confidential.then_some(0),
        redirect_uris: req.redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        scope: req.scope,
        client_name: req.client_name,
        client_uri: req.client_uri,
        software_id: req.software_id,
        software_version: req.software_version,
    }
}
