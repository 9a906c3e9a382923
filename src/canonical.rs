//! Request-path canonicalization.
//!
//! # Why this module exists
//!
//! scopegate authorizes a request by matching its path against configured
//! routes and then forwards the request upstream. If the proxy and the
//! upstream disagree about what a path *means* (`/public/%2e%2e/admin`,
//! `/public%2F..%2Fadmin`, `/public/..;/admin`, ...), a client can be
//! authorized for one resource and served another. To close that gap, the
//! same [`CanonicalPath`] value is used both for route matching and as the
//! path that is forwarded: what was authorized is byte-identical to what the
//! upstream receives.
//!
//! The canonical form is chosen so that a downstream parser has nothing left
//! to reinterpret:
//!
//! * escapes of unreserved characters are decoded (RFC 3986 §2.3, §6.2.2.2),
//!   so `%2E%2E` cannot hide a dot segment;
//! * dot segments are removed (RFC 3986 §5.2.4), so the upstream never
//!   resolves `..` itself;
//! * every escape that would change the segment structure or is otherwise
//!   interpreted differently by common servers (`%2F`, `%5C`, `%3B`, `%00`,
//!   `%25`, control bytes) is rejected rather than guessed at;
//! * remaining escapes use uppercase hex (RFC 3986 §2.1, §6.2.2.1).
//!
//! Only the path is handled here. The query is never matched and is
//! forwarded untouched by the caller.
//!
//! # Error precedence
//!
//! The path is first checked for origin form and length, then scanned left
//! to right for character and escape errors (the first one wins), then the
//! decoded bytes are checked for UTF-8 validity, and only then are dot
//! segments resolved (which may yield [`PathError::EscapesRoot`]).

use std::fmt;

/// Longest raw path accepted, in bytes.
///
/// Canonicalization never makes a path longer, so this also bounds every
/// [`CanonicalPath`].
pub const MAX_PATH_LEN: usize = 8192;

/// Options from config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanonicalOptions {
    /// Collapse runs of `/` into a single `/` before resolving dot segments.
    ///
    /// When false, empty segments are kept as they are: RFC 3986 gives them
    /// no special meaning, and some upstreams distinguish `/a//b` from
    /// `/a/b`. Either way the forwarded path equals the matched path.
    pub merge_slashes: bool,
}

/// A path that passed [`canonicalize_path`].
///
/// Invariants:
/// * starts with `/` and is at most [`MAX_PATH_LEN`] bytes;
/// * contains no `.` or `..` segment;
/// * contains only RFC 3986 `pchar` characters (§3.3) other than `;`, plus
///   `/`;
/// * every percent-escape is uppercase hex and encodes a byte that is not
///   unreserved and is not one of the forbidden bytes (`/`, `\`, `;`, `%`,
///   control characters); the escaped bytes form valid UTF-8;
/// * it is a fixed point: canonicalizing it again with the same options
///   yields the same value.
///
/// The only way to obtain one is [`canonicalize_path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalPath(String);

impl CanonicalPath {
    /// The canonical path; this exact string is what gets forwarded.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the value and returns the canonical path string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The segments between `/` characters, still percent-encoded.
    ///
    /// Convention: the leading `/` does not start a segment, and the root
    /// path `/` has no segments at all. A trailing slash produces a final
    /// empty segment, and `//` produces empty segments in between:
    ///
    /// | path     | segments         |
    /// |----------|------------------|
    /// | `/`      | (none)           |
    /// | `/a`     | `["a"]`          |
    /// | `/a/`    | `["a", ""]`      |
    /// | `/a/b`   | `["a", "b"]`     |
    /// | `/a//b`  | `["a", "", "b"]` |
    /// | `//`     | `["", ""]`       |
    ///
    /// This makes a route such as `/public/**` a simple "first segment is
    /// `public`" check, while `/public` and `/public/` stay distinguishable.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        let rest = self.0.strip_prefix('/').unwrap_or(&self.0);
        let rest = if rest.is_empty() { None } else { Some(rest) };
        rest.into_iter().flat_map(|r| r.split('/'))
    }

    /// The `index`th segment (as [`CanonicalPath::segments`] counts), percent-decoded: the
    /// text a route parameter matched. The escapes a canonical path keeps decode to UTF-8
    /// and never to `/`, `\\`, `;`, `%` or a control byte, so the decoded text means the
    /// same to every reader; `None` when there is no such segment.
    pub fn decoded_segment(&self, index: usize) -> Option<String> {
        let segment = self.segments().nth(index)?.as_bytes();
        let mut out = Vec::with_capacity(segment.len());
        let mut i = 0;
        while i < segment.len() {
            let escaped = (segment[i] == b'%')
                .then(|| Some((hex_value(*segment.get(i + 1)?)? << 4) | hex_value(*segment.get(i + 2)?)?))
                .flatten();
            match escaped {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    out.push(segment[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok()
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CanonicalPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a request line is refused before its path is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// CONNECT is never proxied.
    Connect,
    /// Methods are case-sensitive (RFC 9110 §9.1), but frameworks that upper-case them would
    /// run `delete` as DELETE after it missed the DELETE route.
    MethodNotUppercase,
    /// The target cannot be rebuilt for the upstream.
    InvalidTarget,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// More than one `Host` field line (RFC 9112 §3.2).
    MultipleHost,
    /// A `Host` that is not `host[:port]` (RFC 9110 §7.2).
    InvalidHost,
    /// HTTP/2 `:authority` and `host` disagree (RFC 9113 §8.3.1).
    HostMismatch,
    /// A parameter that frameworks read as the method (`_method`), in the query or a form body.
    MethodOverride,
}

impl RequestError {
    /// Stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            RequestError::Connect => "connect_not_allowed",
            RequestError::MethodNotUppercase => "method_not_uppercase",
            RequestError::InvalidTarget => "invalid_target",
            RequestError::MissingHost => "missing_host",
            RequestError::MultipleHost => "multiple_host",
            RequestError::InvalidHost => "invalid_host",
            RequestError::HostMismatch => "host_mismatch",
            RequestError::MethodOverride => "method_override",
        }
    }
}

/// Why a path was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, `*`, or anything else not starting with `/` (RFC 9112 §3.2.1
    /// origin-form is the only form a path-routed proxy can authorize).
    #[error("request path is not in origin form")]
    NotOriginForm,
    /// Longer than [`MAX_PATH_LEN`] bytes.
    #[error("request path is too long")]
    TooLong,
    /// A `%` not followed by two hex digits (RFC 3986 §2.1).
    #[error("malformed percent-escape in request path")]
    InvalidEscape,
    /// `%2F`: an encoded segment separator. Servers disagree on whether it
    /// splits segments, so it cannot be authorized safely.
    #[error("encoded '/' in request path")]
    EncodedSlash,
    /// `%5C`: some servers treat `\` as a separator.
    #[error("encoded '\\' in request path")]
    EncodedBackslash,
    /// `%3B`: some servers strip `;` path parameters, which would let a
    /// segment mean something other than what was matched.
    #[error("encoded ';' in request path")]
    EncodedSemicolon,
    /// `%00`: truncates paths in C-string based upstreams.
    #[error("encoded NUL in request path")]
    EncodedNul,
    /// An escape of a control byte (0x01-0x1F, 0x7F), e.g. `%0D%0A`.
    #[error("encoded control character in request path")]
    EncodedControl,
    /// `%25`: an escaped `%`. One decode later it would introduce a new
    /// escape (`%252F` becomes `%2F`), so the path means different things to
    /// parsers that decode a different number of times.
    #[error("double percent-encoding in request path")]
    DoubleEncoding,
    /// The escaped bytes are not valid UTF-8. Rejects overlong forms such as
    /// `%C0%AE` (a historical way to smuggle `.` and `/` past filters).
    #[error("percent-escapes in request path are not valid UTF-8")]
    InvalidUtf8,
    /// A raw character that is not allowed in a canonical path: `\`, `;`,
    /// controls, space, `"`, `<`, `>`, `{`, `}`, `|`, `^`, `` ` ``, `#`,
    /// `?`, `[`, `]` or any non-ASCII character.
    #[error("forbidden character in request path")]
    ForbiddenCharacter,
    /// A `..` segment would climb above `/`. RFC 3986 §5.2.4 clamps this at
    /// the root, but a well-behaved client never sends it, so it is treated
    /// as an attack rather than silently rewritten.
    #[error("request path escapes the root")]
    EscapesRoot,
}

impl PathError {
    /// Short stable snake_case code for logs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not_origin_form",
            PathError::TooLong => "too_long",
            PathError::InvalidEscape => "invalid_escape",
            PathError::EncodedSlash => "encoded_slash",
            PathError::EncodedBackslash => "encoded_backslash",
            PathError::EncodedSemicolon => "encoded_semicolon",
            PathError::EncodedNul => "encoded_nul",
            PathError::EncodedControl => "encoded_control",
            PathError::DoubleEncoding => "double_encoding",
            PathError::InvalidUtf8 => "invalid_utf8",
            PathError::ForbiddenCharacter => "forbidden_character",
            PathError::EscapesRoot => "escapes_root",
        }
    }
}

/// Canonicalizes a raw request path (`http::Uri::path()`, without query).
///
/// The returned value is used both to match routes and as the forwarded
/// path. See the module documentation for the rules and the reasoning.
pub fn canonicalize_path(raw: &str, options: CanonicalOptions) -> Result<CanonicalPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let normalized = normalize_escapes(raw)?;
    let resolved = resolve_segments(normalized, options.merge_slashes)?;
    Ok(CanonicalPath(resolved))
}

/// What to do with one percent-escaped byte.
enum Escape {
    /// Unreserved: `%XX` and the character are equivalent (RFC 3986
    /// §2.3), so the decoded character is the canonical spelling.
    Decode(char),
    /// Keep it encoded (with uppercase hex).
    Keep,
}

/// Decides the fate of an escaped byte, rejecting the dangerous ones.
fn classify_escape(byte: u8) -> Result<Escape, PathError> {
    match byte {
        b if is_unreserved(b) => Ok(Escape::Decode(char::from(b))),
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        b';' => Err(PathError::EncodedSemicolon),
        b'%' => Err(PathError::DoubleEncoding),
        0 => Err(PathError::EncodedNul),
        0x01..=0x1F | 0x7F => Err(PathError::EncodedControl),
        _ => Ok(Escape::Keep),
    }
}

/// Unreserved characters, RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters allowed unescaped in a canonical path: RFC 3986 `pchar`
/// (§3.3) without `;`, plus the `/` separator. `%` is handled separately.
///
/// `;` is excluded although it is a sub-delim, because servers such as
/// Tomcat treat `;...` as path parameters and drop it before routing.
fn is_allowed_raw(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@' | b'/'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Validates characters and escapes, decoding unreserved escapes and
/// uppercasing the rest. Does not touch segment structure.
fn normalize_escapes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // Raw characters are all ASCII, so only escapes can contribute
    // non-ASCII bytes, and a multi-byte sequence is valid only if it is
    // spelled entirely with consecutive escapes. The decoded path is UTF-8
    // exactly when each run of non-ASCII bytes between ASCII ones is, so
    // only those runs are collected and checked: most paths have none and
    // pay nothing for the check.
    let mut run = Vec::new();
    let mut utf8 = true;
    let mut end_run = |run: &mut Vec<u8>| {
        if !run.is_empty() {
            utf8 &= std::str::from_utf8(run).is_ok();
            run.clear();
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::InvalidEscape);
            };
            let value = (hi << 4) | lo;
            if value.is_ascii() {
                end_run(&mut run);
            } else {
                run.push(value);
            }
            match classify_escape(value)? {
                Escape::Decode(c) => out.push(c),
                Escape::Keep => {
                    out.push('%');
                    out.push(char::from(UPPER_HEX[usize::from(hi)]));
                    out.push(char::from(UPPER_HEX[usize::from(lo)]));
                }
            }
            i += 3;
        } else if is_allowed_raw(b) {
            out.push(char::from(b));
            end_run(&mut run);
            i += 1;
        } else {
            return Err(PathError::ForbiddenCharacter);
        }
    }
    end_run(&mut run);
    if !utf8 {
        return Err(PathError::InvalidUtf8);
    }
    Ok(out)
}

/// Removes dot segments (RFC 3986 §5.2.4) and optionally merges slashes.
///
/// Works on a segment stack, which is equivalent to the RFC's buffer
/// algorithm for absolute paths except that climbing above the root is an
/// error instead of being clamped. A final `.` or `..` leaves a trailing
/// slash, as in the RFC (`/a/b/..` becomes `/a/`).
///
/// The input must start with `/` and have had unreserved escapes decoded,
/// so `%2E%2E` already reads `..` here and every `/` is a real separator.
fn resolve_segments(path: String, merge_slashes: bool) -> Result<String, PathError> {
    let rest = path.strip_prefix('/').unwrap_or(&path);
    // The common case: no segment can be a dot segment and no slashes are to be merged,
    // so the path is already its own result (one byte search instead of a segment stack).
    let may_change = path.contains("/.") || (merge_slashes && path.contains("//"));
    if !may_change {
        return Ok(path);
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
            }
            // A run of slashes shows up as empty segments; the last one is
            // the trailing slash and is kept.
            "" if merge_slashes && !is_last => {}
            _ => stack.push(segment),
        }
        if is_last && (segment == "." || segment == "..") {
            stack.push("");
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &stack {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        // Unreachable in practice (the last segment always leaves an entry),
        // but the result must start with '/' regardless.
        out.push('/');
    }
    Ok(out)
}
