//! Sender-constrained tokens: what a request presents ([`Presented`]) and the per-request
//! check of a verified token's `cnf` against it — a DPoP proof (RFC 9449) or the client
//! certificate (RFC 8705). Token verification is cached; this check never is: a proof is
//! good for one request only.
//!
//! The decision, by the scheme of `Authorization` and the route's DPoP mode:
//!
//! | scheme | token | outcome |
//! |---|---|---|
//! | `Bearer` on a `required` route | any | 401 `DPoP error="invalid_token"` (`dpop_required`) |
//! | `Bearer` | no `cnf` | accepted; a `DPoP` header alongside is ignored (RFC 9449 §7.2: the request is a bearer request) |
//! | `Bearer` | `cnf.jkt` | 401 `invalid_token` (`sender_constrained`): a DPoP-bound token needs its proof |
//! | `Bearer` | `cnf.x5t#S256` only | the client certificate must match (RFC 8705 §3) |
//! | `DPoP` | `cnf.jkt` | exactly one valid proof whose key's thumbprint is `jkt` |
//! | `DPoP` | no `cnf.jkt` | 401 `DPoP error="invalid_token"` (`dpop_token_not_bound`) |
//!
//! A token whose `cnf` also names a certificate needs both. `DPoP` on an `off` route is
//! not read as credentials at all (see [`super::bearer`]).

use std::net::IpAddr;

use base64::Engine as _;
use http::HeaderMap;

pub use super::bearer::Scheme;
use super::bearer::credentials;
use super::config::sender::{CertBindingConfig, CertHeaderFormat, DpopMode};
use super::dpop::{ProofTarget, ProofVerifier};
use super::error::{AuthError, BindingError, InvalidReason, ProofError};
use super::jwk::B64URL;
use super::principal::Principal;
use crate::tls::x5t_s256;

/// The `DPoP` request headers (RFC 9449 §4.3 step 1: exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofHeader<'a> {
    None,
    One(&'a str),
    /// Several headers, or one that is not visible ASCII.
    Unusable,
}

impl<'a> ProofHeader<'a> {
    pub fn of(headers: &'a HeaderMap) -> ProofHeader<'a> {
        let mut values = headers.get_all("dpop").iter();
        match (values.next(), values.next()) {
            (None, _) => ProofHeader::None,
            (Some(one), None) => one.to_str().map_or(ProofHeader::Unusable, ProofHeader::One),
            (Some(_), Some(_)) => ProofHeader::Unusable,
        }
    }
}

/// What a request presents to prove it holds a token: the token, its scheme, and what the
/// binding check compares the token's `cnf` with.
#[derive(Debug, Clone)]
pub struct Presented<'a> {
    pub scheme: Scheme,
    pub token: &'a str,
    pub proof: ProofHeader<'a>,
    /// The request method, as sent.
    pub method: &'a str,
    /// The URI the client addressed (see [`received_uri`]); `None` when it cannot be known.
    pub uri: Option<String>,
    /// The route's DPoP mode.
    pub mode: DpopMode,
    /// The request headers (where a trusted proxy forwards the client certificate).
    pub headers: &'a HeaderMap,
    /// `x5t#S256` of the client certificate of the TLS connection the request came on, when
    /// scopegate terminated TLS and the client sent one (set by the listener's side).
    pub tls_certificate: Option<String>,
}

impl<'a> Presented<'a> {
    /// What a request presents: the token and scheme of its `Authorization` header (`DPoP`
    /// only where `mode` takes it), its `DPoP` header, and the URI the client addressed
    /// (`target` is the method, authority and path as received; `listener_scheme` is `https`
    /// on a TLS listener, else `http`; see [`received_uri`], where forwarded headers count
    /// when `trust_forwarded`).
    ///
    /// # Errors
    /// [`AuthError::Missing`] without credentials, [`AuthError::Malformed`] as
    /// [`credentials`] says.
    pub fn read(
        headers: &'a HeaderMap,
        query: Option<&str>,
        (method, authority, path): (&'a str, Option<&str>, &str),
        mode: DpopMode,
        (listener_scheme, trust_forwarded): (&str, bool),
    ) -> Result<Presented<'a>, AuthError> {
        let (scheme, token) = credentials(headers, query, mode != DpopMode::Off)?.ok_or(AuthError::Missing)?;
        Ok(Presented {
            scheme,
            token,
            proof: ProofHeader::of(headers),
            method,
            // Only a proof is compared with it: a bearer request does not pay for it.
            uri: (scheme == Scheme::Dpop)
                .then(|| received_uri(headers, authority, path, listener_scheme, trust_forwarded))
                .flatten(),
            mode,
            headers,
            tls_certificate: None,
        })
    }
}

/// Checks that the request holds the token it presents (see the module table).
///
/// # Errors
/// A refused proof ([`AuthError::Proof`]) or binding ([`InvalidReason::Binding`]).
pub fn check(
    principal: &Principal,
    presented: &Presented<'_>,
    verifier: &ProofVerifier,
    certificate: Option<&str>,
    now: u64,
) -> Result<(), AuthError> {
    let cnf = principal.confirmation.as_ref();
    match presented.scheme {
        Scheme::Bearer if presented.mode == DpopMode::Required => {
            return Err(InvalidReason::Binding(BindingError::DpopRequired).into());
        }
        Scheme::Bearer => {
            // A `cnf` naming nothing a bearer request can prove (a DPoP key, or only members
            // scopegate does not know) makes the token unusable as a bearer token.
            if cnf.is_some_and(|c| c.jkt.is_some() || c.x5t_s256.is_none()) {
                return Err(InvalidReason::Binding(BindingError::BearerUse).into());
            }
        }
        Scheme::Dpop => {
            let proof = match presented.proof {
                ProofHeader::One(proof) => proof,
                ProofHeader::None => return Err(AuthError::Proof(ProofError::Missing)),
                ProofHeader::Unusable => return Err(AuthError::Proof(ProofError::Invalid)),
            };
            let uri = presented
                .uri
                .as_deref()
                .ok_or(AuthError::Proof(ProofError::UriMismatch))?;
            let target = ProofTarget {
                method: presented.method,
                uri,
                token: Some(presented.token),
            };
            let thumbprint = verifier.check(proof, &target, now).map_err(AuthError::Proof)?;
            match cnf.and_then(|c| c.jkt.as_deref()) {
                None => return Err(InvalidReason::Binding(BindingError::DpopTokenNotBound).into()),
                Some(jkt) if !constant_time_eq(jkt, &thumbprint) => {
                    return Err(InvalidReason::Binding(BindingError::DpopKeyMismatch).into());
                }
                Some(_) => {}
            }
        }
    }
    if let Some(expected) = cnf.and_then(|c| c.x5t_s256.as_deref()) {
        let presented = certificate.ok_or(InvalidReason::Binding(BindingError::CertificateMissing))?;
        if !constant_time_eq(expected, presented) {
            return Err(InvalidReason::Binding(BindingError::CertificateMismatch).into());
        }
    }
    Ok(())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The client certificate's thumbprint as a trusted TLS-terminating proxy forwarded it;
/// `None` when the header is not configured, `peer` is not trusted, or it holds none.
pub fn forwarded_certificate(config: &CertBindingConfig, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
    let name = config.header.as_ref()?;
    if !peer.is_some_and(|peer| config.trusts(peer)) {
        return None;
    }
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        // Which one would be the client's? None: a certificate is not guessed.
        return None;
    }
    match config.format {
        CertHeaderFormat::EnvoyXfcc => xfcc_thumbprint(value),
        CertHeaderFormat::PemUrlEncoded => pem_thumbprint(&percent_decode(value)?),
    }
}

/// Removes the certificate header sent by an untrusted peer, so that neither scopegate nor
/// the upstream takes a client's word for its certificate.
pub fn strip_untrusted_certificate(config: &CertBindingConfig, headers: &mut HeaderMap, peer: IpAddr) {
    if let Some(name) = &config.header
        && !config.trusts(peer)
    {
        headers.remove(name);
    }
}

/// Envoy's `x-forwarded-client-cert`: comma-separated elements (the last one added by the
/// proxy next to scopegate), each `;`-separated `Key=Value` pairs, values optionally quoted.
/// `Hash` is the hex SHA-256 of the DER; else `Cert` is the URL-encoded PEM.
fn xfcc_thumbprint(value: &str) -> Option<String> {
    let element = split_unquoted(value, ',').pop()?;
    let mut hash = None;
    let mut cert = None;
    for pair in split_unquoted(element, ';') {
        let (key, value) = pair.split_once('=')?;
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "hash" => hash = Some(value),
            "cert" => cert = Some(value),
            _ => {}
        }
    }
    if let Some(hash) = hash {
        let bytes = hex_decode(hash).filter(|b| b.len() == 32)?;
        return Some(B64URL.encode(bytes));
    }
    pem_thumbprint(&percent_decode(cert?)?)
}

fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The thumbprint of the one certificate in a PEM text.
fn pem_thumbprint(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let body = pem.trim().strip_prefix(BEGIN)?;
    let (body, rest) = body.split_once(END)?;
    if !rest.trim().is_empty() {
        return None;
    }
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(base64).ok()?;
    (!der.is_empty()).then(|| x5t_s256(&der))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The URI the client addressed, without query (RFC 9449 §4.3 `htu`): the scheme and
/// authority the client used, and the path as received.
///
/// The scheme is the listener's (`http`: scopegate's data listener is plain HTTP today); the
/// authority is the request target's (absolute form or HTTP/2 `:authority`), else `Host`.
/// With `forwarding.trust_forwarded_headers`, a TLS-terminating proxy in front tells both:
/// the first `X-Forwarded-Proto` and `X-Forwarded-Host` values win.
pub fn received_uri(
    headers: &HeaderMap,
    authority: Option<&str>,
    path: &str,
    listener_scheme: &str,
    trust_forwarded: bool,
) -> Option<String> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let forwarded = |name| if trust_forwarded { first(name) } else { None };
    let scheme = forwarded("x-forwarded-proto").unwrap_or(listener_scheme);
    let host = forwarded("x-forwarded-host").or(authority).or_else(|| first("host"))?;
    Some(format!("{scheme}://{host}{path}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xfcc_hash_and_cert() {
        let hash = "a".repeat(64);
        let value = format!("By=spiffe://a;Hash=00,By=spiffe://b;Hash={hash};Subject=\"CN=x,O=y\"");
        assert_eq!(xfcc_thumbprint(&value), Some(B64URL.encode([0xaa; 32])));
        assert_eq!(xfcc_thumbprint("By=x;Hash=zz"), None);
        let pem = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        let encoded: String = pem
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(
            xfcc_thumbprint(&format!("Cert=\"{encoded}\"")),
            Some(x5t_s256(&[1, 2, 3]))
        );
        assert_eq!(
            pem_thumbprint(&percent_decode(&encoded).unwrap()),
            Some(x5t_s256(&[1, 2, 3]))
        );
    }

    #[test]
    fn received_uri_trusts_forwarded_headers_only_when_told() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "internal:8080".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("x-forwarded-host", "api.example, internal".parse().unwrap());
        assert_eq!(
            received_uri(&headers, None, "/a", "http", false).as_deref(),
            Some("http://internal:8080/a")
        );
        assert_eq!(
            received_uri(&headers, None, "/a", "http", true).as_deref(),
            Some("https://api.example/a")
        );
    }
}
