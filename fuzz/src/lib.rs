//! The checks behind each fuzz target. Each takes the raw input AFL mutates and panics when
//! an invariant breaks; a panic inside scopegate itself is a finding too (DESIGN §3.11: no
//! panic on request input). Outside AFL a target binary reads one input from stdin: that is
//! how `run.sh` replays the seeds and how a crash is reproduced.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, Method};
use scopegate::canonical::{CanonicalOptions, CanonicalPath, canonicalize_path};
use scopegate::config::Config;
use scopegate::mcp::{rules, uri};

/// `Authorization` parsing. Input: one header value per line; a line starting with `?` is
/// the query string instead.
pub fn bearer(data: &[u8]) {
    let mut headers = HeaderMap::new();
    let mut query = None;
    for line in data.split(|&b| b == b'\n') {
        if let Some(q) = line.strip_prefix(b"?") {
            query = std::str::from_utf8(q).ok();
        } else if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(http::header::AUTHORIZATION, value);
        }
    }
    if let Ok(Some(token)) = scopegate::token::bearer::bearer_token(&headers, query) {
        // A token is only ever taken from exactly one header, never empty, and never
        // carries a separator a later parser could split on.
        assert_eq!(headers.get_all(http::header::AUTHORIZATION).iter().count(), 1);
        assert!(!token.is_empty());
        assert!(
            !token.bytes().any(|b| b.is_ascii_whitespace() || b == b','),
            "{token:?}"
        );
    }
    // With DPoP accepted too (RFC 9449 §7.1): the same rules, whichever scheme.
    if let Ok(Some((_, token))) = scopegate::token::bearer::credentials(&headers, query, true) {
        assert_eq!(headers.get_all(http::header::AUTHORIZATION).iter().count(), 1);
        assert!(!token.is_empty() && !token.bytes().any(|b| b.is_ascii_whitespace() || b == b','));
    }
}

/// Compact JWS parsing up to the signature: split, base64url, header and claims JSON.
pub fn jws(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = scopegate::token::jws::parse(token, 16 * 1024) {
        // Whatever parsed is a JWS in compact form: three segments, an `alg` read as sent.
        assert_eq!(token.split('.').count(), 3);
        let _ = (parsed.issuer(), parsed.kid(), parsed.alg_name(), parsed.header().typ());
    }
}

/// Routes that make "the path stays inside the route it matched" checkable: a public tree
/// beside protected ones, nested prefixes, and a single-segment wildcard.
const ROUTES: &str = r#"
[listener]
address = "127.0.0.1:0"
[upstream]
url = "http://127.0.0.1:1"
[[issuer]]
url = "https://issuer.test"
audiences = ["https://api.test"]
[[route]]
name = "public"
path = "/public/**"
public = true
[[route]]
name = "admin"
path = "/admin/**"
scopes = ["admin"]
[[route]]
name = "item-edit"
path = "/items/{id}/edit"
scopes = ["write"]
[[route]]
name = "items"
path = "/items/**"
scopes = ["read"]
[[route]]
name = "root"
path = "/"
public = true
"#;

fn routes() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_toml(ROUTES, "fuzz.toml").unwrap_or_else(|e| panic!("the fuzz route table compiles: {e}"))
    })
}

fn route_of(path: &CanonicalPath) -> Option<&'static str> {
    routes().routes.lookup(&Method::GET, path).map(|r| r.name.as_str())
}

/// What an upstream that decodes every escape once and resolves dot segments itself (RFC
/// 3986 §5.2.4, clamped at the root) makes of a raw path, re-escaped where needed.
fn upstream_reading(raw: &str, merge_slashes: bool) -> Option<String> {
    let mut decoded = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut parts = decoded.split(|&b| b == b'/').skip(1).peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            b"." => {}
            b".." => {
                stack.pop();
            }
            b"" if merge_slashes && !last => {}
            other => stack.push(other),
        }
        if last && (segment == b"." || segment == b"..") {
            stack.push(b"");
        }
    }
    let mut out = String::new();
    for segment in stack {
        out.push('/');
        for &b in segment {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Some(if out.is_empty() { "/".into() } else { out })
}

/// Path canonicalization. Input: the first byte's low bit turns slash merging on, the rest
/// is the raw path. Invariants of an accepted path: idempotent; no `.`/`..` segment, no
/// encoded `/`, no `//` when merging; and it matches the same route as the path an upstream
/// that decodes and resolves it itself would serve.
pub fn canonical(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let options = CanonicalOptions {
        merge_slashes: flags & 1 == 1,
    };
    let Ok(path) = canonicalize_path(raw, options) else {
        return;
    };
    let text = path.as_str();
    assert_eq!(
        canonicalize_path(text, options).as_ref(),
        Ok(&path),
        "idempotent: {raw:?}"
    );
    assert!(text.starts_with('/'));
    assert!(!path.segments().any(|s| s == "." || s == ".."), "{raw:?} -> {text:?}");
    assert!(!text.to_ascii_uppercase().contains("%2F"), "{raw:?} -> {text:?}");
    if options.merge_slashes {
        assert!(!text.contains("//"), "{raw:?} -> {text:?}");
    }
    let reading = upstream_reading(raw, options.merge_slashes).expect("an accepted path decodes");
    let upstream = canonicalize_path(&reading, options)
        .unwrap_or_else(|e| panic!("the upstream's reading {reading:?} of {raw:?} is refused: {e}"));
    assert_eq!(
        route_of(&path),
        route_of(&upstream),
        "{raw:?} is authorized as {text:?} but served as {reading:?}"
    );
}

/// JSON-RPC inspection. Input: the first line is `Mcp-Method` (empty: absent), the second
/// `Mcp-Name`, the rest the body. Every resource URI that comes out is in normal form.
pub fn jsonrpc(data: &[u8]) {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let (method, name, body) = (lines.next(), lines.next(), lines.next().unwrap_or_default());
    let mut headers = HeaderMap::new();
    for (header, value) in [(rules::MCP_METHOD, method), (rules::MCP_NAME, name)] {
        if let Some(value) = value
            .filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            headers.insert(header, value);
        }
    }
    if let Ok(calls) = rules::calls_in_request(&headers, body) {
        for call in calls {
            if let (true, Some(name)) = (rules::URI_METHODS.contains(&call.method.as_str()), &call.name) {
                assert_eq!(
                    uri::normalize(name).as_ref(),
                    Ok(name),
                    "a resource URI is compared in normal form"
                );
            }
        }
    }
    // The URI rules on their own: accepted ⇒ idempotent, no dot or empty segments.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(normal) = uri::normalize(text) {
            assert_eq!(uri::normalize(&normal).as_ref(), Ok(&normal), "{text:?}");
            let path_end = normal.find(['?', '#']).unwrap_or(normal.len());
            let hier = &normal[..path_end];
            assert!(
                !hier.contains("/../") && !hier.contains("/./") && !hier.ends_with("/.."),
                "{text:?}"
            );
            assert!(!hier.to_ascii_uppercase().contains("%2F"), "{text:?}");
        }
    }
}

/// Config parsing and compilation: any text is a config or a list of problems, never a panic.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, "fuzz.toml");
    }
}
