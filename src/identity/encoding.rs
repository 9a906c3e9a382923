//! The one reversible form of identity header values (DESIGN §3.10).
//!
//! A value is sent **plain** when it is printable ASCII (`0x20`–`0x7E`), not empty, neither
//! starts nor ends with a space, and does not start with `:`. Any other value is sent as an
//! RFC 8941 §3.3.5 Byte Sequence of its UTF-8 bytes: `:` + standard base64 with padding + `:`.
//! Since no plain value starts with `:`, the parsing rule is unambiguous:
//!
//! - a value that starts with `:` is encoded: strip the colons, base64-decode, read as UTF-8;
//! - any other value is the claim as it is.
//!
//! Lists (array claims, scopes) are their elements, each in that form, joined by one
//! separator: `,` for claims, a space for scopes. An element that contains the separator is
//! encoded (base64 never contains `,` or a space), so no element can be read as two: split on
//! the separator, trim spaces around `,`-separated elements (RFC 9110 §5.6.1 OWS), decode each.
//! `["users,admins", "x"]` is sent as `:dXNlcnMsYWRtaW5z:,x`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Whether `value` can be sent as it is, alone or (with `separator`) as a list element.
pub fn is_plain(value: &str, separator: Option<char>) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| (0x20..0x7f).contains(b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && bytes.first() != Some(&b':')
        && separator.is_none_or(|s| !value.contains(s))
}

/// RFC 8941 §3.3.5 Byte Sequence of the value's UTF-8 bytes.
fn byte_sequence(value: &str) -> String {
    format!(":{}:", STANDARD.encode(value.as_bytes()))
}

/// `value` as it is sent: plain when it can be, else its byte sequence.
pub fn encode_value(value: &str) -> String {
    encode_element(value, None)
}

fn encode_element(value: &str, separator: Option<char>) -> String {
    if is_plain(value, separator) {
        value.to_string()
    } else {
        byte_sequence(value)
    }
}

/// The elements, each plain or encoded, joined by `separator`.
pub fn encode_list<'a>(values: impl IntoIterator<Item = &'a str>, separator: char) -> String {
    let mut out = String::new();
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(separator);
        }
        out.push_str(&encode_element(value, Some(separator)));
    }
    out
}

/// Reads a value sent by [`encode_value`]; `None` when it is not in that form.
pub fn decode_value(sent: &str) -> Option<String> {
    match sent.strip_prefix(':') {
        Some(rest) => {
            let inner = rest.strip_suffix(':')?;
            String::from_utf8(STANDARD.decode(inner).ok()?).ok()
        }
        None => Some(sent.to_string()),
    }
}

/// Reads a list sent by [`encode_list`] with the same `separator`; `None` when an element is
/// not in the documented form.
pub fn decode_list(sent: &str, separator: char) -> Option<Vec<String>> {
    sent.split(separator)
        .map(|element| {
            let element = if separator == ' ' {
                element
            } else {
                element.trim_matches([' ', '\t'])
            };
            decode_value(element)
        })
        .collect()
}
