//! Reading the token from a request (RFC 6750 §2.1, RFC 9449 §7.1). Tokens are taken from
//! the `Authorization` header only: never from the query string or a form body.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::token::error::{AuthError, MalformedHeader};

/// The authentication scheme the token was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    /// RFC 9449 §7.1.
    Dpop,
}

/// The token of a well-formed `Authorization: Bearer <token68>` header, `None` when the
/// request carries no bearer credentials at all.
///
/// # Errors
/// As [`credentials`].
pub fn bearer_token<'a>(headers: &'a HeaderMap, query: Option<&str>) -> Result<Option<&'a str>, AuthError> {
    Ok(credentials(headers, query, false)?.map(|(_, token)| token))
}

/// The scheme and token of a well-formed `Authorization: Bearer <token68>` header, or with
/// `dpop`, `Authorization: DPoP <token68>` (RFC 9449 §7.1); `None` when the request carries
/// no such credentials at all (another scheme is not a credential here: the client gets the
/// plain challenge that tells it what is expected).
///
/// # Errors
/// [`AuthError::Malformed`] (400) for several `Authorization` headers, a malformed header of
/// an accepted scheme, or a header token alongside an `access_token` query parameter (RFC 6750
/// §2: a client must not use more than one method).
pub fn credentials<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
    dpop: bool,
) -> Result<Option<(Scheme, &'a str)>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        // A query-only token counts as no credentials: it is never read.
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(MalformedHeader::MultipleHeaders));
    }
    // The common case in one pass: `Bearer ` (or `DPoP `) and a token68, nothing else.
    if let Some((scheme, token)) = well_formed(value.as_bytes(), dpop) {
        if query.is_some_and(has_access_token_param) {
            return Err(AuthError::Malformed(MalformedHeader::TokenInHeaderAndQuery));
        }
        return Ok(Some((scheme, token)));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed(MalformedHeader::Malformed))?;
    if value.trim().is_empty() {
        return Err(AuthError::Malformed(MalformedHeader::Malformed));
    }
    let (written, rest) = value.split_once(' ').unwrap_or((value, ""));
    let accepted: &[(&str, Scheme)] = if dpop {
        &[("bearer", Scheme::Bearer), ("dpop", Scheme::Dpop)]
    } else {
        &[("bearer", Scheme::Bearer)]
    };
    for (name, _) in accepted {
        // `Bearer<TAB>token` and the like: meant as such a credential, but malformed.
        let n = name.len();
        let looks_like = written.len() > n && written.get(..n).is_some_and(|p| p.eq_ignore_ascii_case(name));
        if looks_like && !written[n..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(AuthError::Malformed(MalformedHeader::Malformed));
        }
    }
    let Some((_, scheme)) = accepted.iter().find(|(name, _)| written.eq_ignore_ascii_case(name)) else {
        return Ok(None);
    };
    let token = rest.trim_start_matches(' ');
    if !is_token68(token) {
        return Err(AuthError::Malformed(MalformedHeader::Malformed));
    }
    if query.is_some_and(has_access_token_param) {
        return Err(AuthError::Malformed(MalformedHeader::TokenInHeaderAndQuery));
    }
    Ok(Some((*scheme, token)))
}

/// `<scheme> SP+ <token68>` with an accepted scheme, read from the raw bytes: the header
/// [`credentials`] accepts, without its separate checks for text, emptiness and scheme.
/// `None` sends the header down the full checks, which also name what is wrong.
fn well_formed(value: &[u8], dpop: bool) -> Option<(Scheme, &str)> {
    let (scheme, rest) = if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
        (Scheme::Bearer, &value[7..])
    } else if dpop && value.len() > 5 && value[..5].eq_ignore_ascii_case(b"dpop ") {
        (Scheme::Dpop, &value[5..])
    } else {
        return None;
    };
    let start = rest.iter().position(|b| *b != b' ')?;
    let token = &rest[start..];
    if !is_token68_bytes(token) {
        return None;
    }
    // A token68 is ASCII, so this never fails.
    std::str::from_utf8(token).ok().map(|token| (scheme, token))
}

/// RFC 7235 §2.1 `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(token: &str) -> bool {
    is_token68_bytes(token.as_bytes())
}

fn is_token68_bytes(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|b| **b == b'=').count();
    let body = &token[..token.len() - padding];
    !body.is_empty() && body.iter().all(|b| TOKEN68[usize::from(*b)])
}

/// The bytes of a token68 before its padding.
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

fn has_access_token_param(query: &str) -> bool {
    // Case-insensitively: some upstream frameworks read `ACCESS_TOKEN` as the same parameter.
    form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name.eq_ignore_ascii_case("access_token"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accepts_well_formed_bearer() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def-_~+/=="]), None),
            Ok(Some("abc.def-_~+/=="))
        );
        assert_eq!(bearer_token(&headers(&["bearer abc"]), None), Ok(Some("abc")));
    }

    #[test]
    fn dpop_scheme_only_where_accepted() {
        let dpop = headers(&["DPoP abc"]);
        assert_eq!(credentials(&dpop, None, true), Ok(Some((Scheme::Dpop, "abc"))));
        assert_eq!(credentials(&dpop, None, false), Ok(None));
        assert_eq!(
            credentials(&headers(&["bearer abc"]), None, true),
            Ok(Some((Scheme::Bearer, "abc")))
        );
        assert!(matches!(
            credentials(&headers(&["DPoP\tabc"]), None, true),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn no_or_other_credentials() {
        assert_eq!(bearer_token(&headers(&[]), Some("access_token=abc")), Ok(None));
        assert_eq!(bearer_token(&headers(&["Basic dXNlcjpwYXNz"]), None), Ok(None));
    }

    #[test]
    fn malformed_is_invalid_request() {
        for bad in [
            "",
            "Bearer\tabc",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =abc",
            "Bearer ab\"c",
        ] {
            assert!(
                matches!(bearer_token(&headers(&[bad]), None), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"]), None),
            Err(AuthError::Malformed(MalformedHeader::MultipleHeaders))
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a"]), Some("x=1&access_token=b")),
            Err(AuthError::Malformed(MalformedHeader::TokenInHeaderAndQuery))
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a"]), Some("ACCESS_TOKEN=b")),
            Err(AuthError::Malformed(MalformedHeader::TokenInHeaderAndQuery))
        );
        assert_eq!(
            bearer_token(&headers(&["Bearerish abc"]), None),
            Ok(None),
            "another scheme"
        );
    }
}
