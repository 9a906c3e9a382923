//! Reading a `Bearer` challenge (RFC 6750 §3, RFC 9728 §5.1) from `WWW-Authenticate`: the
//! parameters a client acts on — `resource_metadata`, `scope`, `error`.

use std::collections::BTreeMap;

/// The auth-params of a `Bearer` challenge, names lowercased, quoted values unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    params: BTreeMap<String, String>,
}

impl BearerChallenge {
    /// The first `Bearer` challenge among the `WWW-Authenticate` values, if any.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<BearerChallenge> {
        headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(BearerChallenge::parse)
    }

    /// Parses one header value that starts with the `Bearer` scheme (case-insensitive).
    pub fn parse(value: &str) -> Option<BearerChallenge> {
        let value = value.trim_start();
        let scheme = value.get(..6)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let rest = &value[6..];
        if !(rest.is_empty() || rest.starts_with([' ', ','])) {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while matches!(chars.peek(), Some(' ' | ',' | '\t')) {
                chars.next();
            }
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || name.contains(' ') {
                // The end, or the next challenge's scheme: this one is complete.
                return Some(BearerChallenge { params });
            }
            let value = if chars.peek() == Some(&'"') {
                chars.next();
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                value
            } else {
                chars
                    .by_ref()
                    .take_while(|c| *c != ',')
                    .collect::<String>()
                    .trim()
                    .to_string()
            };
            params.entry(name).or_insert(value);
        }
    }

    /// Every auth-param, by lowercased name.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// RFC 9728 §5.1: where the protected-resource metadata is.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.param("resource_metadata")
    }

    /// The scopes the resource asks for (RFC 6750 §3).
    pub fn scopes(&self) -> Vec<String> {
        self.param("scope")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The error code, e.g. `insufficient_scope`.
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_scopegate_challenges() {
        let c = BearerChallenge::parse(
            r#"Bearer realm="api", resource_metadata="http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp", scope="read write""#,
        )
        .unwrap();
        assert_eq!(
            c.resource_metadata(),
            Some("http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scopes(), ["read", "write"]);
        assert_eq!(c.error(), None);
        let c = BearerChallenge::parse(r#"bearer error=insufficient_scope, scope="a\"b""#).unwrap();
        assert_eq!(c.error(), Some("insufficient_scope"));
        assert_eq!(c.scopes(), ["a\"b"]);
    }

    #[test]
    fn other_schemes_are_not_bearer() {
        assert!(BearerChallenge::parse(r#"Basic realm="x""#).is_none());
        assert!(BearerChallenge::parse("Bearerx realm=1").is_none());
        assert_eq!(BearerChallenge::parse("Bearer").unwrap(), BearerChallenge::default());
        // A following challenge ends this one.
        let c = BearerChallenge::parse(r#"Bearer scope="a", DPoP algs="ES256""#).unwrap();
        assert_eq!(c.scopes(), ["a"]);
    }
}
