//! Resource URIs in normal form, so that a `[[route.mcp_rule]]` naming `file:///secret/*`
//! sees every spelling of a URI under it.
//!
//! Spellings that every reader takes to mean the same resource are rewritten to one form
//! (RFC 3986 §6.2.2): the scheme and host in lower case, percent-escapes of unreserved
//! characters decoded and the others in upper-case hex, and for `file:` (RFC 8089 §2) the
//! host `localhost` — or no authority at all — written as the empty host.
//!
//! Spellings whose meaning depends on the reader are refused instead: dot segments (lexical
//! removal and a file system following a symbolic link disagree), empty segments (`//`,
//! which POSIX paths merge and URI matching does not), encoded `/`, `\` or NUL before the
//! query (decoded into separators by some servers), a `file:` URI on another host (many servers
//! ignore the host), control characters or `\`, malformed escapes, and anything without a
//! scheme. No rule can be written for them that means the same thing to scopegate and to
//! every upstream, and no honest client needs them.
//!
//! Only the matching uses the normal form: the body is forwarded as it was received.

/// A resource URI that is not in a form scopegate can compare safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotNormal;

/// RFC 3986 §2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// The scheme of `text` in lower case and the rest after its `:`, when it has one.
pub fn split_scheme(text: &str) -> Option<(String, &str)> {
    let (scheme, rest) = text.split_once(':')?;
    is_scheme(scheme).then(|| (scheme.to_ascii_lowercase(), rest))
}

/// RFC 3986 §6.2.2.2: decodes escapes of unreserved characters, upper-cases the hex of the
/// others; refuses a `%` not followed by two hex digits, control characters and `\`.
fn normalize_escapes(text: &str) -> Result<String, NotNormal> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte.is_ascii_control() || byte == b'\\' {
            return Err(NotNormal);
        }
        if byte != b'%' {
            out.push(byte);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(NotNormal)?;
        // `from_str_radix` alone would also take a sign (`%+1`).
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(NotNormal);
        }
        let hex = std::str::from_utf8(hex).map_err(|_| NotNormal)?;
        let decoded = u8::from_str_radix(hex, 16).map_err(|_| NotNormal)?;
        if is_unreserved(decoded) {
            out.push(decoded);
        } else {
            out.push(b'%');
            out.extend(hex.to_ascii_uppercase().bytes());
        }
        i += 3;
    }
    // Only ASCII was removed or added, so the text is still UTF-8.
    String::from_utf8(out).map_err(|_| NotNormal)
}

/// Refuses a path with `.`/`..` segments, or empty segments other than the leading one of
/// an absolute path and a trailing one.
fn check_path(path: &str) -> Result<(), NotNormal> {
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        let empty_allowed = (i == 0 && path.starts_with('/')) || i == last;
        if (segment.is_empty() && !empty_allowed) || *segment == "." || *segment == ".." {
            return Err(NotNormal);
        }
    }
    Ok(())
}

/// The host of an authority in lower case (RFC 3986 §6.2.2.1); user information, which is
/// case-sensitive, is kept as it is.
fn normalize_authority(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => format!("{userinfo}@{}", host.to_ascii_lowercase()),
        None => authority.to_ascii_lowercase(),
    }
}

/// The normal form of a resource URI, or [`NotNormal`] (see the module docs).
pub fn normalize(uri: &str) -> Result<String, NotNormal> {
    let (scheme, rest) = split_scheme(uri).ok_or(NotNormal)?;
    let rest = normalize_escapes(rest)?;
    // The hierarchical part ends at the query or fragment (RFC 3986 §3); decoding only
    // unreserved characters cannot have made new delimiters.
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (hier, tail) = rest.split_at(end);
    // An encoded `/`, `\` or NUL anywhere before the query: in the path or in the authority
    // (`note://a%2Fb`), a server that decodes it sees other segments than the rules did.
    if ["%2F", "%5C", "%00"].iter().any(|e| hier.contains(e)) {
        return Err(NotNormal);
    }
    let (authority, path) = match hier.strip_prefix("//") {
        Some(after) => {
            let slash = after.find('/').unwrap_or(after.len());
            let (authority, path) = after.split_at(slash);
            (Some(normalize_authority(authority)), path)
        }
        None => (None, hier),
    };
    check_path(path)?;
    if scheme == "file" {
        // RFC 8089 §2: `file:/p`, `file:///p` and `file://localhost/p` are one local file.
        if !matches!(authority.as_deref(), None | Some("" | "localhost")) || !path.starts_with('/') {
            return Err(NotNormal);
        }
        return Ok(format!("file://{path}{tail}"));
    }
    Ok(match authority {
        Some(authority) => format!("{scheme}://{authority}{path}{tail}"),
        None => format!("{scheme}:{path}{tail}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_spellings_have_one_normal_form() {
        for (uri, normal) in [
            ("file:///secret/key", "file:///secret/key"),
            ("file://localhost/secret/key", "file:///secret/key"),
            ("FILE://LocalHost/secret/key", "file:///secret/key"),
            ("file:/secret/key", "file:///secret/key"),
            ("file:///%73ecret/%7Ekey", "file:///secret/~key"),
            ("file:///a%3fb", "file:///a%3Fb"),
            ("file:///", "file:///"),
            ("file:///dir/", "file:///dir/"),
            ("HTTPS://Example.COM/A/b?Q=%2f#F", "https://example.com/A/b?Q=%2F#F"),
            ("https://User@Example.com", "https://User@example.com"),
            ("note://1", "note://1"),
            ("urn:isbn:0451450523", "urn:isbn:0451450523"),
            ("db://x/a?path=../b", "db://x/a?path=../b"),
            ("file:///caf\u{e9}", "file:///caf\u{e9}"),
        ] {
            assert_eq!(normalize(uri), Ok(normal.to_string()), "{uri}");
            assert_eq!(normalize(normal), Ok(normal.to_string()), "{normal} is normal");
        }
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for uri in [
            "file:///public/../secret/key",
            "file:///./secret/key",
            "file:///secret/.",
            "file:///secret/%2E%2E/x",
            "file:///secret%2Fkey",
            "file:///secret%5ckey",
            "file:///secret%00",
            // Found by the `jsonrpc` fuzz target: an encoded `/` in the authority.
            "note://a%2Fb",
            "fvzc://+%78dapbv+c%2fb?q=%9e",
            "file:////secret/key",
            "file:///secret//key",
            "file://evil.test/secret/key",
            "file://localhost:80/secret",
            "file:secret/key",
            "file://",
            "https://x/a/../b",
            "urn:a//b",
            "/secret/key",
            "secret",
            "",
            ":x",
            "1x:y",
            "file:///a%2",
            "file:///a%zz",
            "file:///a%+1",
            "file:///a\\b",
            "file:///a\nb",
        ] {
            assert_eq!(normalize(uri), Err(NotNormal), "{uri:?}");
        }
    }
}
