//! The original request an ingress asks about, read the way the configured ingress names it
//! (docs/forward-auth.md): nginx and Traefik in headers they set, Envoy as the request's own
//! method, `Host` and path. Only a trusted peer is asked what it means; the headers of the
//! other conventions are never read, so a client cannot slip one past an ingress that does
//! not set it.

use std::net::IpAddr;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use super::config::{ForwardAuthConfig, Ingress};

/// Why an ingress's question is not answered with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalError {
    /// The peer is not in `forward_auth.trusted_peers` (403).
    UntrustedPeer,
    /// A header naming the original method or URI is missing, repeated, or names no valid
    /// method or origin-form target (400).
    Malformed,
}

impl OriginalError {
    /// Stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            OriginalError::UntrustedPeer => "forward_auth_untrusted_peer",
            OriginalError::Malformed => "forward_auth_bad_original",
        }
    }
}

/// The request the ingress holds, as far as the decision needs it.
#[derive(Debug)]
pub struct Original {
    pub method: Method,
    /// Origin-form (or absolute-form) target: path and query.
    pub target: Uri,
    /// The original's headers: those the ingress sent, with the original `Host`.
    pub headers: HeaderMap,
    /// The original carries a body (whether or not the ingress sent it along).
    pub has_body: bool,
    /// The client's address as the ingress reports it (last `X-Forwarded-For` entry), for
    /// per-client budgets; else the ingress's own.
    pub client: IpAddr,
}

/// Envoy marks a body it cut at `max_request_bytes` (when `allow_partial_message` is on).
pub const ENVOY_PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

impl Original {
    /// Reads the original request from an ingress's question. `sent_body` is true when the
    /// question itself carries a body.
    pub fn read(
        parts: &Parts,
        sent_body: bool,
        config: &ForwardAuthConfig,
        peer: IpAddr,
    ) -> Result<Original, OriginalError> {
        if !config.trusts(peer) {
            return Err(OriginalError::UntrustedPeer);
        }
        let (method, target, host) = match config.ingress {
            Ingress::Nginx => named(
                &parts.headers,
                "x-original-method",
                "x-original-uri",
                "x-forwarded-host",
            )?,
            Ingress::Traefik => named(
                &parts.headers,
                "x-forwarded-method",
                "x-forwarded-uri",
                "x-forwarded-host",
            )?,
            Ingress::Envoy => (
                parts.method.clone(),
                unprefixed(&parts.uri, config.path_prefix.as_deref())?,
                parts.headers.get(HOST).cloned(),
            ),
        };
        let mut headers = parts.headers.clone();
        // The `Host` of the question names scopegate (nginx and Traefik) or the original
        // (Envoy): only the original's counts, and only once (RFC 9112 §3.2).
        headers.remove(HOST);
        if let Some(host) = host {
            headers.insert(HOST, host);
        }
        let has_body = sent_body
            || content_length(&headers).is_some_and(|length| length > 0)
            || headers.contains_key(TRANSFER_ENCODING)
            || headers.contains_key(CONTENT_TYPE);
        let client = last_forwarded_for(&headers).unwrap_or(peer);
        Ok(Original {
            method,
            target,
            headers,
            has_body,
            client,
        })
    }
}

/// Method, target and host from the headers an ingress sets.
fn named(
    headers: &HeaderMap,
    method: &str,
    target: &str,
    host: &str,
) -> Result<(Method, Uri, Option<HeaderValue>), OriginalError> {
    let method = single(headers, method)?.ok_or(OriginalError::Malformed)?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| OriginalError::Malformed)?;
    let target = single(headers, target)?.ok_or(OriginalError::Malformed)?;
    let target = request_target(target)?;
    let host = single(headers, host)?.and_then(|h| HeaderValue::from_str(h).ok());
    Ok((method, target, host))
}

/// The one value of a header; a repeated one is refused, since two readers could each pick
/// a different one.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, OriginalError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| OriginalError::Malformed)?;
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(OriginalError::Malformed);
    }
    first
        .map(|v| v.to_str().map_err(|_| OriginalError::Malformed))
        .transpose()
}

/// A request target as the client sent it: origin-form, or absolute-form with an http(s)
/// authority (RFC 9112 §3.2).
fn request_target(text: &str) -> Result<Uri, OriginalError> {
    let uri: Uri = text.parse().map_err(|_| OriginalError::Malformed)?;
    let origin_form = uri.scheme().is_none() && uri.authority().is_none();
    let absolute_form = matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some();
    if !text.is_empty() && uri.path().starts_with('/') && (origin_form || absolute_form) {
        Ok(uri)
    } else {
        Err(OriginalError::Malformed)
    }
}

/// Envoy's question: its own path behind `path_prefix` (`/ext_authz/a/b?q` → `/a/b?q`).
fn unprefixed(uri: &Uri, prefix: Option<&str>) -> Result<Uri, OriginalError> {
    let path = uri.path();
    let rest = match prefix {
        None => path,
        Some(prefix) => path.strip_prefix(prefix).ok_or(OriginalError::Malformed)?,
    };
    let rest = match rest {
        "" => "/",
        rest if rest.starts_with('/') => rest,
        // `/ext_authzfoo` is not behind `/ext_authz`.
        _ => return Err(OriginalError::Malformed),
    };
    let target = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_string(),
    };
    request_target(&target)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The address the ingress appended last to `X-Forwarded-For`.
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_origin_or_absolute_form() {
        assert!(request_target("/a/b?c=d").is_ok());
        assert!(request_target("http://api.test/a").is_ok());
        for bad in ["", "*", "a/b", "api.test:443", "ftp://x/a"] {
            assert!(request_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envoy_prefix_is_removed_at_a_segment_boundary() {
        let uri: Uri = "/ext_authz/items/1?x=1".parse().expect("a valid test value");
        assert_eq!(
            unprefixed(&uri, Some("/ext_authz")).expect("a valid test value"),
            "/items/1?x=1"
        );
        let bare: Uri = "/ext_authz".parse().expect("a valid test value");
        assert_eq!(unprefixed(&bare, Some("/ext_authz")).expect("a valid test value"), "/");
        let glued: Uri = "/ext_authzfoo".parse().expect("a valid test value");
        assert!(unprefixed(&glued, Some("/ext_authz")).is_err());
        let other: Uri = "/items".parse().expect("a valid test value");
        assert!(unprefixed(&other, Some("/ext_authz")).is_err());
    }
}
