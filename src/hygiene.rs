//! Request hygiene before routing: the `Host` a request names (RFC 9112 §3.2, RFC 9113
//! §8.3.1) and method override by parameter (`_method`), both refused with 400 so that the
//! proxy and `explain` agree ([`crate::decision`] calls these).

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, Version};

use crate::canonical::RequestError;
use crate::config::problems::Issues;

/// `Host` rules: exactly one `Host` on HTTP/1.1 (none allowed on HTTP/1.0), a value that is
/// a host and optional port, and on HTTP/2 agreement with `:authority`. An HTTP/1.1
/// absolute-form target's authority wins over `Host` (§3.2.2); the rewrite step forwards it.
pub fn check_host(version: Version, authority: Option<&str>, headers: &HeaderMap) -> Result<(), RequestError> {
    // RFC 9110 §4.2.4: userinfo in a target is deprecated, and a host that carries it is no
    // host a `Host` field could name.
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(RequestError::InvalidHost);
    }
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::MultipleHost);
    }
    let Some(host) = host else {
        return match version {
            // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
            Version::HTTP_11 => Err(RequestError::MissingHost),
            _ => Ok(()),
        };
    };
    let host = host
        .to_str()
        .ok()
        .filter(|h| is_host(h))
        .ok_or(RequestError::InvalidHost)?;
    match authority {
        // RFC 9113 §8.3.1: `:authority` and `host` name one target; a proxy that used one
        // for routing while the upstream read the other could be steered between tenants.
        Some(authority) if version >= Version::HTTP_2 && !authority.eq_ignore_ascii_case(host) => {
            Err(RequestError::HostMismatch)
        }
        _ => Ok(()),
    }
}

/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]` — an authority without userinfo (empty
/// when the target has no authority).
fn is_host(value: &str) -> bool {
    value.is_empty() || (!value.contains('@') && value.parse::<http::uri::Authority>().is_ok())
}

/// The parameters some frameworks read as the request's method (Rails' `Rack::MethodOverride`,
/// Laravel, Express's `method-override`): `POST /items/1?_method=DELETE` would run as a DELETE
/// that was authorized as a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodOverride {
    /// Lower-case names; empty turns the check off.
    pub parameters: Vec<String>,
    /// Largest form-encoded body read to look for them; a larger one is refused (413).
    pub form_limit: usize,
}

impl MethodOverride {
    /// Compiles `forwarding.method_override_parameters` and `method_override_form_limit`.
    pub fn compile(parameters: &[String], form_limit: &str, issues: &mut Issues) -> MethodOverride {
        for (i, name) in parameters.iter().enumerate() {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && !b"&;=#?[]+%".contains(&b)) {
                issues.push(
                    format!("forwarding.method_override_parameters[{i}]"),
                    format!("{name:?} must be a plain parameter name, e.g. \"_method\""),
                );
            }
        }
        let limit = issues.size("forwarding.method_override_form_limit", form_limit, 64 << 10);
        if !(1..=1 << 20).contains(&limit) {
            issues.push(
                "forwarding.method_override_form_limit",
                "must be between 1B and 1MiB: form bodies up to it are held while they are checked",
            );
        }
        MethodOverride {
            parameters: parameters.iter().map(|p| p.to_ascii_lowercase()).collect(),
            form_limit: usize::try_from(limit).unwrap_or(usize::MAX),
        }
    }

    pub fn is_on(&self) -> bool {
        !self.parameters.is_empty()
    }

    /// Whether `pairs` (a query or a form body) name an override parameter. Names are
    /// decoded as forms are (`+`, percent-escapes), split on `&` and on `;` (which older
    /// Rack versions also split on), and compared case-insensitively, with or without a
    /// `[...]` suffix (`_method[]`), and as PHP registers them (`.method` is `_method` to
    /// Symfony and Laravel).
    pub fn named_in(&self, pairs: &[u8]) -> bool {
        self.is_on()
            && pairs
                .split(|b| *b == b'&' || *b == b';')
                .filter_map(|pair| form_urlencoded::parse(pair).next())
                .any(|(name, _)| {
                    let name = name.to_ascii_lowercase();
                    let base = name.split_once('[').map_or(name.as_str(), |(base, _)| base);
                    let base = php_variable_name(base.trim());
                    self.parameters.iter().any(|p| php_variable_name(p) == base)
                })
    }

    /// Whether the body must be read to look for override parameters: it is declared
    /// `application/x-www-form-urlencoded`, the only body these frameworks read without
    /// further parsing we could mirror. Other bodies are forwarded as they are.
    pub fn reads_body(&self, headers: &HeaderMap) -> bool {
        self.is_on()
            && headers
                .get_all(CONTENT_TYPE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    // Rack (`Rack::MediaType`) and PHP (`SAPI.c`) end the media type at the
                    // first `;`, `,` or space: `application/x-www-form-urlencoded, text/plain`
                    // is a form to them, so it must be one here.
                    v.trim_start()
                        .split([';', ',', ' ', '\t'])
                        .next()
                        .is_some_and(|media| media.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
                })
    }
}

/// A parameter name as PHP registers it (`php_register_variable_ex`): leading spaces
/// dropped, `.` and space turned into `_`. Symfony and Laravel read `_method` from what PHP
/// registered, so `?.method=DELETE` overrides the method there.
fn php_variable_name(name: &str) -> String {
    name.trim_start_matches(' ')
        .chars()
        .map(|c| if matches!(c, '.' | ' ') { '_' } else { c })
        .collect()
}
