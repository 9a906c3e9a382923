//! Tests for `scopegate::canonical`, written against the public API only.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use scopegate::canonical::{CanonicalOptions, CanonicalPath, MAX_PATH_LEN, PathError, canonicalize_path};

const KEEP: CanonicalOptions = CanonicalOptions { merge_slashes: false };
const MERGE: CanonicalOptions = CanonicalOptions { merge_slashes: true };

/// Which option sets a table row applies to.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Both,
    KeepOnly,
    MergeOnly,
}

use Mode::{Both, KeepOnly, MergeOnly};
use PathError::*;

/// (raw path, options, expected canonical path or error)
#[rustfmt::skip]
const TABLE: &[(&str, Mode, Result<&str, PathError>)] = &[
    // Plain paths.
    ("/", Both, Ok("/")),
    ("/a/b", Both, Ok("/a/b")),
    ("/a/b/", Both, Ok("/a/b/")),
    ("/a:b@c!$&'()*+,=-._~", Both, Ok("/a:b@c!$&'()*+,=-._~")),
    // Not origin form / too short.
    ("", Both, Err(NotOriginForm)),
    ("*", Both, Err(NotOriginForm)),
    ("a/b", Both, Err(NotOriginForm)),
    ("http://h/a", Both, Err(NotOriginForm)),
    // Dot segments (RFC 3986 §5.2.4), literal and encoded.
    ("/a/./b/", Both, Ok("/a/b/")),
    ("/a/b/..", Both, Ok("/a/")),
    ("/a/b/.", Both, Ok("/a/b/")),
    ("/.", Both, Ok("/")),
    ("/a/..", Both, Ok("/")),
    ("/public/../admin", Both, Ok("/admin")),
    ("/public/%2e%2e/admin", Both, Ok("/admin")),
    ("/a/%2e%2e/b", Both, Ok("/b")),
    ("/a/%2E/b", Both, Ok("/a/b")),
    ("/a/%2e%2E/", Both, Ok("/")),
    ("/%2E", Both, Ok("/")),
    ("/...", Both, Ok("/...")),
    ("/a/..b/.c", Both, Ok("/a/..b/.c")),
    ("/a%2Eb", Both, Ok("/a.b")),
    // Climbing above the root is rejected, never clamped.
    ("/..", Both, Err(EscapesRoot)),
    ("/../", Both, Err(EscapesRoot)),
    ("/a/../..", Both, Err(EscapesRoot)),
    ("/%2e%2e/etc", Both, Err(EscapesRoot)),
    ("/.%2E/x", Both, Err(EscapesRoot)),
    ("/%2E./x", Both, Err(EscapesRoot)),
    // Empty segments: kept or merged.
    ("/a//b", KeepOnly, Ok("/a//b")),
    ("/a//b", MergeOnly, Ok("/a/b")),
    ("//", KeepOnly, Ok("//")),
    ("//", MergeOnly, Ok("/")),
    ("/a//", KeepOnly, Ok("/a//")),
    ("/a//", MergeOnly, Ok("/a/")),
    ("/a//../b", KeepOnly, Ok("/a/b")),
    ("/a//../b", MergeOnly, Ok("/b")),
    ("/public//..//admin", KeepOnly, Ok("/public//admin")),
    ("/public//..//admin", MergeOnly, Ok("/admin")),
    ("//..", KeepOnly, Ok("/")),
    // Merging happens first, leaving "/.." which climbs above the root.
    ("//..", MergeOnly, Err(EscapesRoot)),
    // Unreserved escapes are decoded (RFC 3986 §2.3).
    ("/%7Euser", Both, Ok("/~user")),
    ("/%41%42c", Both, Ok("/ABc")),
    ("/A%2D%2e%5F%7e%30", Both, Ok("/A-._~0")),
    // Other escapes are kept with uppercase hex (RFC 3986 §2.1).
    ("/a%c3%a9", Both, Ok("/a%C3%A9")),
    ("/%E2%82%ac", Both, Ok("/%E2%82%AC")),
    ("/a%20b", Both, Ok("/a%20b")),
    ("/a%2bb", Both, Ok("/a%2Bb")),
    ("/a%3a", Both, Ok("/a%3A")),
    ("/a%3f%23", Both, Ok("/a%3F%23")),
    // Forbidden escapes.
    ("/public%2F..%2Fadmin", Both, Err(EncodedSlash)),
    ("/a/..%2Fb", Both, Err(EncodedSlash)),
    ("/a%2fb", Both, Err(EncodedSlash)),
    ("/%2e%2e%2f", Both, Err(EncodedSlash)),
    ("/../a%2F", Both, Err(EncodedSlash)),
    ("/a%5cb", Both, Err(EncodedBackslash)),
    ("/a%5C..%5Cb", Both, Err(EncodedBackslash)),
    ("/a%3Bb", Both, Err(EncodedSemicolon)),
    ("/a%3b", Both, Err(EncodedSemicolon)),
    ("/a%00", Both, Err(EncodedNul)),
    ("/a%01", Both, Err(EncodedControl)),
    ("/a%0D%0Ab", Both, Err(EncodedControl)),
    ("/a%1f", Both, Err(EncodedControl)),
    ("/a%7F", Both, Err(EncodedControl)),
    ("/a%252F", Both, Err(DoubleEncoding)),
    ("/a%252e%252e/", Both, Err(DoubleEncoding)),
    ("/a%25", Both, Err(DoubleEncoding)),
    ("/a%25zz", Both, Err(DoubleEncoding)),
    // "%25" followed by escapes that decode to "2F": one more decode would
    // yield "%2F", so this must fail although "%25" is not followed by hex.
    ("/%25%32%46", Both, Err(DoubleEncoding)),
    // Malformed escapes.
    ("/%", Both, Err(InvalidEscape)),
    ("/%zz", Both, Err(InvalidEscape)),
    ("/%2", Both, Err(InvalidEscape)),
    ("/a%g0", Both, Err(InvalidEscape)),
    ("/a%%41", Both, Err(InvalidEscape)),
    // Escaped bytes must be valid UTF-8 (no overlong "." or "/").
    ("/%C0%AE%C0%AE/etc", Both, Err(InvalidUtf8)),
    ("/%c0%af", Both, Err(InvalidUtf8)),
    ("/%ff", Both, Err(InvalidUtf8)),
    ("/a%C3", Both, Err(InvalidUtf8)),
    ("/a%C3/%A9", Both, Err(InvalidUtf8)),
    // Forbidden raw characters.
    ("/a\\b", Both, Err(ForbiddenCharacter)),
    ("/a;jsessionid=1", Both, Err(ForbiddenCharacter)),
    ("/public/..;/admin", Both, Err(ForbiddenCharacter)),
    ("/é", Both, Err(ForbiddenCharacter)),
    ("/a b", Both, Err(ForbiddenCharacter)),
    ("/a#b", Both, Err(ForbiddenCharacter)),
    ("/a?b", Both, Err(ForbiddenCharacter)),
    ("/a\tb", Both, Err(ForbiddenCharacter)),
    ("/a\u{7f}", Both, Err(ForbiddenCharacter)),
    ("/a\0", Both, Err(ForbiddenCharacter)),
    ("/a\"b", Both, Err(ForbiddenCharacter)),
    ("/a<b>", Both, Err(ForbiddenCharacter)),
    ("/a{b}", Both, Err(ForbiddenCharacter)),
    ("/a|b", Both, Err(ForbiddenCharacter)),
    ("/a^b", Both, Err(ForbiddenCharacter)),
    ("/a`b", Both, Err(ForbiddenCharacter)),
    ("/a[0]", Both, Err(ForbiddenCharacter)),
    // Errors are reported in scan order, before dot-segment resolution.
    ("/../a;", Both, Err(ForbiddenCharacter)),
    ("/a%2F%00", Both, Err(EncodedSlash)),
    ("/a%00%2F", Both, Err(EncodedNul)),
];

#[test]
fn table() {
    assert!(TABLE.len() >= 30);
    let mut failures = Vec::new();
    for &(raw, mode, expected) in TABLE {
        let options: &[CanonicalOptions] = match mode {
            Both => &[KEEP, MERGE],
            KeepOnly => &[KEEP],
            MergeOnly => &[MERGE],
        };
        for &opts in options {
            let got = canonicalize_path(raw, opts);
            let got_str = got.as_ref().map(CanonicalPath::as_str).map_err(|e| *e);
            if got_str != expected {
                failures.push(format!("{raw:?} {opts:?}: expected {expected:?}, got {got_str:?}"));
            }
            if let Ok(c) = got {
                // Every accepted row is also a fixed point.
                assert_eq!(canonicalize_path(c.as_str(), opts), Ok(c.clone()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn length_bound() {
    let at_limit = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
    assert_eq!(canonicalize_path(&at_limit, KEEP).unwrap().as_str(), at_limit);
    let over = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(canonicalize_path(&over, KEEP), Err(TooLong));
    // The bound applies to the raw input, even if decoding would shrink it.
    let encoded = format!("/{}", "%41".repeat(MAX_PATH_LEN / 3 + 1));
    assert_eq!(canonicalize_path(&encoded, KEEP), Err(TooLong));
}

#[test]
fn segments_convention() {
    let segs = |p: &str| -> Vec<String> {
        canonicalize_path(p, KEEP)
            .unwrap()
            .segments()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(segs("/"), Vec::<String>::new());
    assert_eq!(segs("/a"), ["a"]);
    assert_eq!(segs("/a/"), ["a", ""]);
    assert_eq!(segs("/a/b"), ["a", "b"]);
    assert_eq!(segs("/a//b"), ["a", "", "b"]);
    assert_eq!(segs("//"), ["", ""]);
    assert_eq!(segs("/x/%2e%2e/public/%c3%a9"), ["public", "%C3%A9"]);
}

#[test]
fn display_and_codes() {
    let c = canonicalize_path("/a/%7e/../b", KEEP).unwrap();
    assert_eq!(c.to_string(), "/a/b");
    assert_eq!(c.as_ref() as &str, "/a/b");
    assert_eq!(c.clone().into_string(), "/a/b");

    let all = [
        NotOriginForm,
        TooLong,
        InvalidEscape,
        EncodedSlash,
        EncodedBackslash,
        EncodedSemicolon,
        EncodedNul,
        EncodedControl,
        DoubleEncoding,
        InvalidUtf8,
        ForbiddenCharacter,
        EscapesRoot,
    ];
    let mut codes: Vec<&str> = all.iter().map(PathError::code).collect();
    for code in &codes {
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{code}"
        );
    }
    assert_eq!(EncodedSlash.code(), "encoded_slash");
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all.len(), "codes must be distinct");
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

/// Fragments that combine into interesting paths: separators, dots, their
/// encodings in both cases, the characters of forbidden escapes, and
/// ordinary text.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        // Mostly harmless building blocks, so that many paths are accepted.
        14 => prop::sample::select(vec![
            "/", "/", "/", ".", "..", "%2e", "%2E", "%2e%2e", ".%2E", "a", "b",
            "~", "%7e", "%41", "public", "admin", "%c3%a9", "%20", "-", ":",
            "@", "e", "E", "F", "f", "2", "5", "c", "C",
        ]),
        // Raw characters that often complete or break escapes.
        2 => prop::sample::select(vec!["%", "%2", "%5", ";", "\\", "%25", "%3b", "%00"]),
        // Complete dangerous escapes.
        1 => prop::sample::select(vec![
            "%2f", "%2F", "%5c", "%5C", "%3B", "%C0%AE", "%0a", "é", "?", " ",
        ]),
    ]
}

fn join(prefix: &str, parts: Vec<&str>) -> String {
    let mut s = String::from(prefix);
    for p in parts {
        s.push_str(p);
    }
    s
}

/// Raw paths, occasionally without the leading '/'.
fn raw_path() -> impl Strategy<Value = String> {
    (prop::bool::weighted(0.95), prop::collection::vec(fragment(), 0..24))
        .prop_map(|(slash, parts)| join(if slash { "/" } else { "" }, parts))
}

/// Raw paths that start under `/public` and then try to leave it.
fn public_path() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..16).prop_map(|parts| join("/public", parts))
}

fn options() -> impl Strategy<Value = CanonicalOptions> {
    any::<bool>().prop_map(|merge_slashes| CanonicalOptions { merge_slashes })
}

/// Reference interpretation of a naive upstream, step 1: percent-decode
/// every well-formed `%XX` once; malformed escapes stay literal.
fn decode_once(s: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Reference interpretation, step 2: RFC 3986 §5.2.4 `remove_dot_segments`
/// written as the RFC's literal input/output-buffer algorithm (clamping at
/// the root, as many servers do), independent of the code under test.
fn rfc_remove_dot_segments(path: &[u8]) -> Vec<u8> {
    fn drop_last_segment(out: &mut Vec<u8>) {
        let cut = out.iter().rposition(|&c| c == b'/').unwrap_or(0);
        out.truncate(cut);
    }
    let mut input: &[u8] = path;
    let mut output = Vec::new();
    while !input.is_empty() {
        if input.starts_with(b"../") {
            // Rule A.
            input = &input[3..];
        } else if input.starts_with(b"./") || input.starts_with(b"/./") {
            // Rules A and B: both drop two bytes ("./", or "/." of "/./").
            input = &input[2..];
        } else if input == b"/." {
            // Rule B.
            input = b"/";
        } else if input.starts_with(b"/../") {
            // Rule C.
            input = &input[3..];
            drop_last_segment(&mut output);
        } else if input == b"/.." {
            // Rule C.
            input = b"/";
            drop_last_segment(&mut output);
        } else if input == b"." || input == b".." {
            // Rule D.
            input = b"";
        } else {
            // Rule E.
            let start = usize::from(input[0] == b'/');
            let end = input[start..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(input.len(), |p| p + start);
            output.extend_from_slice(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

/// The ways a naive upstream might read the forwarded path, before dot
/// segments are resolved.
fn upstream_readings(forwarded: &str) -> Vec<Vec<u8>> {
    let decoded = decode_once(forwarded.as_bytes());
    // Treats '\' as a separator (Windows-style servers).
    let backslash: Vec<u8> = decoded.iter().map(|&b| if b == b'\\' { b'/' } else { b }).collect();
    // Strips ";params" from each segment (Servlet-style servers).
    let mut params = Vec::new();
    let mut skipping = false;
    for &b in &decoded {
        match b {
            b'/' => {
                skipping = false;
                params.push(b);
            }
            b';' => skipping = true,
            _ if !skipping => params.push(b),
            _ => {}
        }
    }
    // Merges slashes before resolving dots (nginx-style).
    let mut merged = Vec::new();
    for &b in &decoded {
        if !(b == b'/' && merged.last() == Some(&b'/')) {
            merged.push(b);
        }
    }
    // Decodes a second time.
    let twice = decode_once(&decoded);
    vec![decoded, backslash, params, merged, twice]
}

fn is_under_public(path: &[u8]) -> bool {
    path == b"/public" || path.starts_with(b"/public/")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// (a) Canonicalization is idempotent: the output is a fixed point.
    #[test]
    fn idempotent(raw in raw_path(), opts in options()) {
        if let Ok(c) = canonicalize_path(&raw, opts) {
            prop_assert_eq!(canonicalize_path(c.as_str(), opts), Ok(c.clone()));
            // Merging is a refinement: merged output is also fixed without it.
            if opts.merge_slashes {
                prop_assert_eq!(canonicalize_path(c.as_str(), KEEP), Ok(c));
            }
        }
    }

    /// (b) Prefix safety: if the canonical path would match `/public/**`,
    /// a naive upstream that decodes the forwarded string once and then
    /// resolves dot segments (and the variants in `upstream_readings`)
    /// still lands under `/public`. Moreover, no reading has any dot
    /// segment left to resolve, and decoding again changes nothing.
    #[test]
    fn prefix_safety(raw in prop_oneof![public_path(), raw_path()], opts in options()) {
        if let Ok(c) = canonicalize_path(&raw, opts) {
            let readings = upstream_readings(c.as_str());
            let once = decode_once(c.as_str().as_bytes());
            prop_assert_eq!(decode_once(&once), once.clone(), "decoding twice differs for {:?}", c);
            for reading in &readings {
                let resolved = rfc_remove_dot_segments(reading);
                prop_assert_eq!(&resolved, reading, "upstream re-resolved {:?}", c);
                if c.segments().next() == Some("public") {
                    prop_assert!(
                        is_under_public(&resolved),
                        "{:?} -> {:?} read as {:?}",
                        raw, c, String::from_utf8_lossy(&resolved)
                    );
                }
            }
        }
    }

    /// (c) The output never contains forbidden characters, forbidden
    /// escapes, lowercase or unreserved escapes, or dot segments.
    #[test]
    fn output_shape(raw in raw_path(), opts in options()) {
        if let Ok(c) = canonicalize_path(&raw, opts) {
            let s = c.as_str();
            prop_assert!(s.starts_with('/'));
            prop_assert!(s.len() <= raw.len());
            for bad in ["\\", ";", "%2F", "%5C", "%00", "%25"] {
                prop_assert!(!s.to_ascii_uppercase().contains(bad), "{:?} in {:?}", bad, s);
            }
            for seg in c.segments() {
                prop_assert!(seg != "." && seg != "..", "dot segment in {:?}", s);
            }
            if opts.merge_slashes {
                prop_assert!(!s.contains("//"), "unmerged slashes in {:?}", s);
            }
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let esc = &s[i + 1..i + 3];
                    prop_assert!(esc.bytes().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)));
                    let v = u8::from_str_radix(esc, 16).unwrap();
                    prop_assert!(
                        !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
                        "escaped unreserved byte in {:?}", s
                    );
                    prop_assert!(v >= 0x20 && v != 0x7F, "escaped control byte in {:?}", s);
                    i += 3;
                } else {
                    prop_assert!(
                        b[i].is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&b[i]),
                        "raw {:?} in {:?}", b[i] as char, s
                    );
                    i += 1;
                }
            }
        }
    }
}
