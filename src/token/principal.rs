//! Who called: the verified facts of an access token, whichever path verified it.
//!
//! A leaf of the token layer: the local (JWS) and remote (introspection) paths both produce
//! it, and the [`super::Authenticator`] hands it on to authorization and identity headers.

use serde_json::{Map, Value};

/// Who called: the verified facts of an access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// `aud`, as a list (RFC 8707 resource binding is checked against it per route).
    pub audiences: Vec<String>,
    /// The claims identity header mappings and claim rules read (others are not kept).
    pub claims: RetainedClaims,
    /// Unix seconds.
    pub expires_at: u64,
    /// The token's `cnf`: checked against every request's proof, never cached with it.
    pub confirmation: Option<Confirmation>,
    /// `iat` in Unix seconds, when the token said; fleet rules that refuse a subject's tokens
    /// issued before a time compare it (a token without it is refused by such a rule).
    pub issued_at: Option<u64>,
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

/// The claims a [`Principal`] keeps besides the standard ones: only those something reads
/// (identity header mappings, claim rules), decided when the config is compiled. A boxed
/// slice rather than a `serde_json::Map`: the map is a B-tree whose first node alone takes
/// about 650 bytes however few claims it holds, and up to `token.cache_max_entries`
/// principals are cached; one short claim kept this way takes about 70.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetainedClaims(Box<[(Box<str>, Value)]>);

impl RetainedClaims {
    /// Keeps the claims of `all` that `names` lists, moving them out.
    pub fn keep(all: Map<String, Value>, names: &[String]) -> RetainedClaims {
        all.into_iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, value)| (name.into_boxed_str(), value))
            .collect::<Vec<_>>()
            .into()
    }

    /// A copy holding only the claims `names` lists.
    pub fn only(&self, names: &[String]) -> RetainedClaims {
        self.0
            .iter()
            .filter(|(name, _)| names.iter().any(|n| **n == **name))
            .cloned()
            .collect::<Vec<_>>()
            .into()
    }

    /// The value of claim `name`, if the token carried it and it is kept.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| &**n == name).map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (&**name, value))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(Box<str>, Value)>> for RetainedClaims {
    fn from(claims: Vec<(Box<str>, Value)>) -> RetainedClaims {
        RetainedClaims(claims.into_boxed_slice())
    }
}

/// Every claim of `all` (a principal built by hand: tests, `explain --scopes`).
impl From<Map<String, Value>> for RetainedClaims {
    fn from(all: Map<String, Value>) -> RetainedClaims {
        all.into_iter()
            .map(|(name, value)| (name.into_boxed_str(), value))
            .collect::<Vec<_>>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_named_claims_are_kept() {
        let all = json!({"org_id": "acme", "groups": ["a", "b"], "name": "Alice", "email": "a@x"});
        let names = ["groups".to_string(), "org_id".to_string(), "absent".to_string()];
        let kept = RetainedClaims::keep(all.as_object().cloned().unwrap_or_default(), &names);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.get("org_id"), Some(&json!("acme")));
        assert_eq!(kept.get("groups"), Some(&json!(["a", "b"])));
        assert_eq!(kept.get("name"), None);
        let fewer = kept.only(&["org_id".to_string()]);
        assert_eq!(fewer.iter().map(|(n, _)| n).collect::<Vec<_>>(), vec!["org_id"]);
    }
}
