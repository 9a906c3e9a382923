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
    /// `iat` in Unix seconds, when the token said; fleet rules that refuse a subject's tokens
    /// issued before a time compare it (a token without it is refused by such a rule).
    pub issued_at: Option<u64>,
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
