//! Who called: the verified facts of an access token, whichever path verified it.
//!
//! A leaf of the token layer: the local (JWS) and remote (introspection) paths both produce
//! it, and the [`super::Authenticator`] hands it on to authorization and identity headers.

/// Who called: the verified facts of an access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// `aud`, as a list (RFC 8707 resource binding is checked against it per route).
    pub audiences: Vec<String>,
    /// The claims configured claim → header mappings read (others are not kept).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds.
    pub expires_at: u64,
}
