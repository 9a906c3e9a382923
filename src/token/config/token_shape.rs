//! What an issuer's access tokens look like: the `typ` headers accepted and the claims that
//! carry scopes. Identity providers differ here more than anywhere else (RFC 9068 `at+jwt`
//! and `scope`, or plain `JWT` with `scp`, `roles` or `permissions`).

use crate::config::problems::Issues;
use crate::token::jws::full_media_type;

/// RFC 9068 §2.1: the media type of a JWT access token.
const AT_JWT: &str = "at+jwt";

/// Registered claims (RFC 7519 §4.1, RFC 9068 §2.2) that mean something else than a scope;
/// reading scopes from one would grant by accident.
const NOT_SCOPE_CLAIMS: [&str; 9] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "azp"];

/// `require_typ` and `accepted_typ` compiled into one list; empty means any `typ`, or none.
pub(super) fn compile_accepted_typ(
    at: &str,
    require_typ: Option<bool>,
    accepted_typ: Option<&[String]>,
    issues: &mut Issues,
) -> Vec<String> {
    let list = match (require_typ, accepted_typ) {
        (Some(_), Some(_)) => {
            issues.push(
                format!("{at}.accepted_typ"),
                "set either require_typ or accepted_typ, not both (require_typ = true is accepted_typ = [\"at+jwt\"])",
            );
            return vec![AT_JWT.to_owned()];
        }
        (None | Some(true), None) => return vec![AT_JWT.to_owned()],
        (Some(false), None) => return Vec::new(),
        (None, Some(list)) => list,
    };
    if list.is_empty() {
        issues.push(
            format!("{at}.accepted_typ"),
            "list at least one typ, e.g. [\"at+jwt\", \"JWT\"]; to accept any typ, set require_typ = false instead",
        );
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, typ) in list.iter().enumerate() {
        if !is_media_type(typ) {
            issues.push(
                format!("{at}.accepted_typ[{i}]"),
                format!("{typ:?} is not a media type (RFC 6838 §4.2), e.g. \"at+jwt\" or \"JWT\""),
            );
            continue;
        }
        // RFC 7515 §4.1.9: compared case-insensitively, `application/` implied.
        let full = full_media_type(typ);
        if seen.contains(&full) {
            issues.push(format!("{at}.accepted_typ[{i}]"), format!("{typ:?} is listed twice"));
        }
        seen.push(full);
    }
    list.to_vec()
}

/// `type/subtype` or `subtype`, each a RFC 6838 §4.2 restricted-name.
fn is_media_type(typ: &str) -> bool {
    let restricted_name = |name: &str| {
        (1..=127).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    match typ.split_once('/') {
        Some((kind, subtype)) => restricted_name(kind) && restricted_name(subtype),
        None => restricted_name(typ),
    }
}

pub(super) fn compile_scope_claims(at: &str, names: &[String], issues: &mut Issues) -> Vec<String> {
    if names.is_empty() {
        issues.push(
            format!("{at}.scope_claims"),
            "list at least one claim, e.g. [\"scope\", \"scp\"]; without one no token has a scope",
        );
    }
    for (i, name) in names.iter().enumerate() {
        let path = format!("{at}.scope_claims[{i}]");
        if name.is_empty() {
            issues.push(path, "a claim name cannot be empty");
        } else if NOT_SCOPE_CLAIMS.contains(&name.as_str()) {
            issues.push(
                path,
                format!("{name:?} is a registered claim with its own meaning (RFC 7519 §4.1, RFC 9068 §2.2), not a scope list"),
            );
        } else if names[..i].contains(name) {
            issues.push(path, format!("{name:?} is listed twice"));
        }
    }
    names.to_vec()
}

/// Why accepting `accepted` (empty: any `typ`) needs care, if it does: when tokens other than
/// `at+jwt` are accepted, an ID token (typically `typ: JWT`, `aud` = the client's id) is told
/// apart from an access token only by its audience (RFC 9068 §4, RFC 8725 §3.11).
pub(super) fn typ_caution(accepted: &[String]) -> Option<String> {
    if !accepted.is_empty() && accepted.iter().all(|t| full_media_type(t) == full_media_type(AT_JWT)) {
        return None;
    }
    let accepted = if accepted.is_empty() {
        "any typ".to_owned()
    } else {
        format!("typ {}", accepted.join(", "))
    };
    Some(format!(
        "accepts {accepted}: an ID token of this issuer is refused only by its audience, so list the API's own \
         audience, never a client id"
    ))
}
