//! The request head the decision reads (`Head`), as the proxy received it or as an ingress
//! named it (forward-auth), with what the TLS connection it came on says of it.

use http::{HeaderMap, Method, Request, Uri, Version};

/// What the decision reads of a request: its head, as the client sent it.
pub struct Head<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The target's authority: an HTTP/1.1 absolute-form target's, or HTTP/2 `:authority`.
    pub authority: Option<&'a str>,
    /// The target's path (`uri.path()`), not yet canonical.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// A body follows the head (it is not known to be empty).
    pub has_body: bool,
    /// The connection's TLS, when scopegate terminated it ([`Head::on_tls`]).
    pub tls: Option<TlsSide>,
}

/// What the TLS connection a request came on says of it.
#[derive(Debug, Clone, Default)]
pub struct TlsSide {
    /// `x5t#S256` of the client certificate, when the client sent one (RFC 8705).
    pub client_certificate: Option<String>,
}

impl<'a> Head<'a> {
    pub fn new(
        method: &'a Method,
        uri: &'a Uri,
        version: Version,
        headers: &'a HeaderMap,
        body_is_end_stream: bool,
    ) -> Head<'a> {
        Head {
            method,
            version,
            authority: uri.authority().map(http::uri::Authority::as_str),
            path: uri.path(),
            query: uri.query(),
            headers,
            has_body: !body_is_end_stream && declared_length(headers) != Some(0),
            tls: None,
        }
    }

    /// The same head, received over TLS that scopegate terminated: the request's scheme is
    /// `https` (a DPoP proof's `htu`), and `certificate` is the client's, if it sent one.
    pub fn on_tls(mut self, certificate: Option<&crate::tls::ClientCertificate>) -> Head<'a> {
        self.tls = Some(TlsSide {
            client_certificate: certificate.map(|c| c.thumbprint().to_owned()),
        });
        self
    }

    /// The head of a request an ingress asks about (forward-auth): the method, target and
    /// headers the ingress named ([`crate::forward_auth::original`]). HTTP/1.1 rules apply,
    /// so exactly one `Host` must name the original's host.
    pub fn forwarded(method: &'a Method, target: &'a Uri, headers: &'a HeaderMap, has_body: bool) -> Head<'a> {
        Head {
            method,
            version: Version::HTTP_11,
            authority: target.authority().map(http::uri::Authority::as_str),
            path: target.path(),
            query: target.query(),
            headers,
            has_body,
            tls: None,
        }
    }

    pub fn of<B: http_body::Body>(req: &'a Request<B>) -> Head<'a> {
        Head::new(
            req.method(),
            req.uri(),
            req.version(),
            req.headers(),
            req.body().is_end_stream(),
        )
    }
}

/// The `Content-Length` a request declares, when it is one number.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
