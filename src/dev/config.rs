//! What a development issuer is started with, and the endpoints it counts and can fault.

use std::time::Duration;

use super::keys::KeyAlg;

/// Configuration of a [`DevIssuer`](super::DevIssuer).
#[derive(Clone, Debug)]
pub struct DevIssuerConfig {
    /// Issuer identifier; default `http://<bound addr>` (no trailing slash).
    /// Endpoints are advertised under it, so it should have no path.
    pub issuer: Option<String>,
    /// The auto-approved subject of authorization-code grants.
    pub dev_user: String,
    /// Scopes supported besides `read`, `write`, `mcp` (and `openid`).
    pub extra_scopes: Vec<String>,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_token_ttl: Duration,
    /// Issue random opaque access tokens (only introspection resolves them)
    /// instead of RFC 9068 JWTs.
    pub opaque_access_tokens: bool,
    /// How long a rotated-out key stays in the JWKS.
    pub key_grace: Duration,
    /// Algorithm of generated signing keys.
    pub signing_alg: KeyAlg,
    /// Serve on a non-loopback address.
    pub allow_non_loopback: bool,
    /// `Cache-Control` value for the JWKS response.
    pub jwks_cache_control: Option<String>,
    /// `aud` of tokens requested without an RFC 8707 `resource`; default:
    /// the issuer.
    pub default_audience: Option<String>,
    /// Answer development-only endpoints (`POST /dev/rotate`).
    pub dev_endpoints: bool,
    /// Accept RFC 7591 registrations. When false the endpoint is still advertised (as by
    /// servers whose registration needs an initial access token) but refuses every request.
    pub open_registration: bool,
    /// RFC 8628 §3.2 `interval`: how often device clients may poll (whole seconds, at least 1).
    pub device_poll_interval: Duration,
    /// Serve HTTPS with these files (the issuer defaults to `https://<addr>`); with client
    /// certificates optional or required, a token requested with one is bound to it
    /// (RFC 8705 §3, `cnf.x5t#S256`).
    pub tls: Option<crate::tls::config::TlsFiles>,
}

impl DevIssuerConfig {
    /// Whether tokens can be bound to the client certificate of the connection (RFC 8705
    /// §3.3 `tls_client_certificate_bound_access_tokens`).
    pub fn binds_certificates(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.client_auth != crate::tls::config::ClientAuth::None)
    }
}

impl Default for DevIssuerConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            dev_user: "dev-user".into(),
            extra_scopes: Vec::new(),
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(86_400),
            opaque_access_tokens: false,
            key_grace: Duration::from_secs(600),
            signing_alg: KeyAlg::RS256,
            allow_non_loopback: false,
            jwks_cache_control: None,
            default_audience: None,
            dev_endpoints: false,
            open_registration: true,
            device_poll_interval: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Endpoints with request counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/.well-known/oauth-authorization-server`
    Metadata,
    /// `/.well-known/openid-configuration`
    OidcMetadata,
    /// `/oauth/jwks` and `/.well-known/jwks.json`
    Jwks,
    /// `/oauth/register`
    Register,
    /// `/oauth/authorize`
    Authorize,
    /// `/oauth/token`
    Token,
    /// `/oauth/introspect`
    Introspect,
    /// `/oauth/revoke`
    Revoke,
    /// `/oauth/userinfo`
    Userinfo,
    /// `/oauth/device_authorization` (RFC 8628 §3.1)
    DeviceAuthorization,
    /// `/oauth/device`, the verification page (RFC 8628 §3.3)
    DeviceVerification,
}

pub(crate) const ENDPOINT_COUNT: usize = 11;

impl Endpoint {
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether [`Fault`] injection applies to this endpoint.
    pub(crate) fn faultable(self) -> bool {
        matches!(
            self,
            Endpoint::Metadata | Endpoint::OidcMetadata | Endpoint::Jwks | Endpoint::Introspect
        )
    }
}

/// Injected failure of the discovery, JWKS and introspection endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this HTTP status and a JSON error body.
    Status(u16),
    /// Answer 200 with an HTML page instead of JSON.
    Html,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without answering.
    CloseConnection,
}
