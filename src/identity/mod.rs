//! Identity headers: who called, told to the upstream by scopegate alone (DESIGN §3.6) and
//! never altered silently (§3.10). A claim value that is not safe as a plain header value is
//! refused, or — where the deployment chose `identity.unsafe_values = "encode"` — sent in the
//! reversible form of [`encoding`]. The same values are computed for dry-run forwarding.

pub mod assertion;
pub mod config;
pub mod encoding;

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::token::Principal;
pub use config::{FileIdentity, IdentityConfig, UnsafeValues};

/// Why a principal's identity cannot be told to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// A value is not safe as a plain header value and the deployment refuses such values.
    UnsafeValue,
    /// An object or nested array: no header form represents it.
    Unrepresentable,
    /// Longer than `identity.max_value_bytes` once encoded; never truncated.
    TooLong,
}

impl IdentityError {
    /// Stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            IdentityError::UnsafeValue => "identity_unsafe_value",
            IdentityError::Unrepresentable => "identity_unrepresentable",
            IdentityError::TooLong => "identity_too_long",
        }
    }
}

/// Indexes into [`IdentityConfig::standard`] (`config::STANDARD_SUFFIXES`).
const SUBJECT: usize = 0;
const CLIENT_ID: usize = 1;
const SCOPES: usize = 2;
const ISSUER: usize = 3;

/// Every identity header scopegate may set: the standard ones and the configured claims'.
/// Forward-auth names them all, so that an ingress can clear the ones a token did not grant.
pub fn identity_header_names(identity: &IdentityConfig) -> Vec<HeaderName> {
    identity
        .standard
        .iter()
        .flatten()
        .cloned()
        .chain(identity.claims.iter().map(|(_, name)| name.clone()))
        .collect()
}

/// The identity headers for `principal`, in the order they are set.
pub fn identity_headers(
    principal: &Principal,
    identity: &IdentityConfig,
) -> Result<Vec<(HeaderName, HeaderValue)>, IdentityError> {
    let mut headers = Vec::new();
    let mut set = |name: HeaderName, value: Option<HeaderValue>| {
        if let Some(value) = value {
            headers.push((name, value));
        }
    };
    let standard = |which: usize| identity.standard[which].clone();
    if let (Some(name), Some(subject)) = (standard(SUBJECT), &principal.subject) {
        set(name, Some(single(subject, identity)?));
    }
    if let (Some(name), Some(client_id)) = (standard(CLIENT_ID), &principal.client_id) {
        set(name, Some(single(client_id, identity)?));
    }
    if let Some(name) = standard(SCOPES) {
        let scopes: Vec<Cow<'_, str>> = principal.scopes.iter().map(|s| s.as_str().into()).collect();
        set(name, list(&scopes, ' ', identity)?);
    }
    if let Some(name) = standard(ISSUER) {
        set(name, Some(single(&principal.issuer, identity)?));
    }
    for (claim, name) in &identity.claims {
        let value = match principal.claims.get(claim) {
            // OpenID Connect Core §5.3.2: a null claim is an absent one.
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let texts = items.iter().map(scalar_text).collect::<Result<Vec<_>, _>>()?;
                list(&texts, ',', identity)?
            }
            Some(scalar) => Some(single(&scalar_text(scalar)?, identity)?),
        };
        set(name.clone(), value);
    }
    Ok(headers)
}

/// One value, plain when it can be, else refused or encoded as configured.
fn single(value: &str, identity: &IdentityConfig) -> Result<HeaderValue, IdentityError> {
    if identity.unsafe_values == UnsafeValues::Refuse && !encoding::is_plain(value, None) {
        return Err(IdentityError::UnsafeValue);
    }
    bounded(encoding::encode_value(value), identity)
}

/// A list joined by `separator`; `None` when it has no members (a list with no members is
/// not sent, RFC 8941 §3.1).
fn list(
    values: &[Cow<'_, str>],
    separator: char,
    identity: &IdentityConfig,
) -> Result<Option<HeaderValue>, IdentityError> {
    if values.is_empty() {
        return Ok(None);
    }
    let refuse = identity.unsafe_values == UnsafeValues::Refuse;
    if refuse && !values.iter().all(|v| encoding::is_plain(v, Some(separator))) {
        return Err(IdentityError::UnsafeValue);
    }
    bounded(
        encoding::encode_list(values.iter().map(AsRef::as_ref), separator),
        identity,
    )
    .map(Some)
}

/// The header value, if it fits `identity.max_value_bytes`: never truncated.
fn bounded(text: String, identity: &IdentityConfig) -> Result<HeaderValue, IdentityError> {
    if text.len() > identity.max_value_bytes {
        return Err(IdentityError::TooLong);
    }
    HeaderValue::try_from(text).map_err(|_| IdentityError::Unrepresentable)
}

/// A scalar claim as text: strings as they are, numbers and booleans in their JSON spelling.
fn scalar_text(value: &Value) -> Result<Cow<'_, str>, IdentityError> {
    match value {
        Value::String(s) => Ok(s.as_str().into()),
        Value::Number(n) => Ok(n.to_string().into()),
        Value::Bool(b) => Ok(b.to_string().into()),
        Value::Null | Value::Array(_) | Value::Object(_) => Err(IdentityError::Unrepresentable),
    }
}
