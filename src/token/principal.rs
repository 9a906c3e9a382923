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
    /// The token's `cnf`: checked against every request's proof, never cached with it.
    pub confirmation: Option<Confirmation>,
}

/// What a token is bound to (RFC 7800 `cnf`): it is good only with proof of possession.
/// Members scopegate cannot check are not kept, and a `cnf` with none it can check binds the
/// token to something no request can prove: it is refused everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// RFC 9449 §6.1: the RFC 7638 thumbprint of the DPoP key.
    pub jkt: Option<String>,
    /// RFC 8705 §3.1: base64url SHA-256 of the client certificate's DER.
    pub x5t_s256: Option<String>,
}

/// A `cnf` member that cannot be read as a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadableConfirmation;

/// Reads the `cnf` member of JWT claims or an introspection answer (RFC 9449 §6, RFC 8705
/// §3.1–3.2), `None` when the token is not bound.
///
/// # Errors
/// [`UnreadableConfirmation`] when `cnf` is not an object, or `jkt` / `x5t#S256` is not a
/// non-empty string: a binding half-read would be a binding ignored.
pub fn confirmation(
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Confirmation>, UnreadableConfirmation> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let cnf = cnf.as_object().ok_or(UnreadableConfirmation)?;
    let member = |name: &str| match cnf.get(name) {
        None => Ok(None),
        Some(serde_json::Value::String(value)) if !value.is_empty() => Ok(Some(value.clone())),
        Some(_) => Err(UnreadableConfirmation),
    };
    Ok(Some(Confirmation {
        jkt: member("jkt")?,
        x5t_s256: member("x5t#S256")?,
    }))
}
