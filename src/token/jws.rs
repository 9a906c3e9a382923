// Long file: every compact-JWS header and JWT claim rule (RFC 7515, 7519, 9068) in one reviewable place.
//! Compact JWS parsing and verification (RFC 7515) and JWT access-token claim validation
//! (RFC 7519, RFC 9068).
//!
//! Everything is checked here explicitly; only the signature primitive comes from `aws-lc-rs`
//! (see [`super::jwk`]). Rules, in the order they are applied:
//!
//! 1. Size: a token longer than the configured maximum is rejected before any decoding.
//! 2. Structure (RFC 7515 §7.1): exactly three `.`-separated segments (JWE, JSON serialization
//!    and extra segments are rejected), each strict unpadded base64url; header and, for access
//!    tokens, payload are JSON objects without duplicate member names (RFC 7515 §5.2 step 4
//!    allows rejecting duplicates, which removes parser-differential attacks); the signature is
//!    not empty.
//! 3. Header (RFC 7515 §4.1): `alg` must be a string naming an allowed algorithm; `none` (any
//!    case) and `HS*` are always rejected; any `crit` is rejected because scopegate implements no
//!    extension (RFC 7515 §4.1.11 forbids an empty `crit`); `b64` other than `true` is rejected
//!    (RFC 7797); `kid` and `typ` must be strings. `jwk`, `jku`, `x5u`, `x5c`, `x5t` are ignored:
//!    keys only ever come from the configured JWKS, never from the token itself.
//! 4. Key (RFC 7515 §4.1.4, RFC 7517 §4.4): see [`KeySet::find`]; an unknown `kid` is
//!    [`TokenError::UnknownKey`], a key that cannot be used with `alg` is
//!    [`TokenError::KeyMismatch`].
//! 5. Signature (RFC 7518 §3): see `VerifyingKey::verify`.
//! 6. Type (RFC 9068 §2.1, RFC 8725 §3.11): `typ` one of the accepted media types, when
//!    any are configured.
//! 7. Claims (RFC 7519 §4.1, RFC 9068 §2.2): see [`verify`].

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::jwk::{Algorithm, KeyLookup, KeySet, VerifyingKey, b64url_decode};
use super::principal::{Confirmation, confirmation};

/// Default bound on the size of a bearer token, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims scopes are read from unless an issuer names others: RFC 9068 §2.2.3 `scope`
/// and the common vendor `scp`.
pub const DEFAULT_SCOPE_CLAIMS: [&str; 2] = ["scope", "scp"];

/// Why a token was rejected.
///
/// [`TokenError::reason`] is a stable machine code for logs and metrics;
/// [`TokenError::description`] is fixed human text safe for an RFC 6750 `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{}", self.description())]
pub enum TokenError {
    /// Longer than the configured maximum.
    TooLarge,
    /// Not a compact JWS with JSON header/payload (segments, base64url, JSON).
    Malformed,
    /// `alg` missing from the allowlist, `none`, or HMAC.
    UnsupportedAlgorithm,
    /// The header `kid` is not in the key set (the caller may refresh the JWKS once).
    UnknownKey,
    /// The selected key cannot be used with the header `alg`.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
    /// A `crit` header (or an extension such as `b64: false`) scopegate does not implement.
    CriticalHeader,
    /// The `typ` header is not the required type.
    WrongType,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not contain a configured audience.
    WrongAudience,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// A required claim (`iss`, `aud`, `exp`) is absent.
    MissingClaim,
    /// A claim has the wrong JSON type or an invalid value.
    InvalidClaim,
}

impl TokenError {
    /// Every variant (for tests and metric registration).
    pub const ALL: [TokenError; 15] = [
        TokenError::TooLarge,
        TokenError::Malformed,
        TokenError::UnsupportedAlgorithm,
        TokenError::UnknownKey,
        TokenError::KeyMismatch,
        TokenError::BadSignature,
        TokenError::CriticalHeader,
        TokenError::WrongType,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::MissingClaim,
        TokenError::InvalidClaim,
    ];

    /// Stable snake_case code.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedAlgorithm => "unsupported_algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::KeyMismatch => "key_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::CriticalHeader => "critical_header",
            TokenError::WrongType => "wrong_type",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::MissingClaim => "missing_claim",
            TokenError::InvalidClaim => "invalid_claim",
        }
    }

    /// Fixed human-readable text for an RFC 6750 §3 `error_description`: never contains token
    /// content, only characters in %x20-21 / %x23-5B / %x5D-7E.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "The access token is too large",
            TokenError::Malformed => "The access token is malformed",
            TokenError::UnsupportedAlgorithm => "The token signing algorithm is not accepted",
            TokenError::UnknownKey => "The token signing key is unknown",
            TokenError::KeyMismatch => "The token signing key does not match the algorithm",
            TokenError::BadSignature => "The token signature is invalid",
            TokenError::CriticalHeader => "The token uses an unsupported critical header",
            TokenError::WrongType => "The token type is not accepted",
            TokenError::WrongIssuer => "The token issuer is not accepted",
            TokenError::WrongAudience => "The token audience is not accepted",
            TokenError::Expired => "The access token expired",
            TokenError::NotYetValid => "The access token is not yet valid",
            TokenError::IssuedInFuture => "The token issue time is in the future",
            TokenError::MissingClaim => "A required token claim is missing",
            TokenError::InvalidClaim => "A token claim has an invalid value",
        }
    }
}

/// A decoded JOSE header (RFC 7515 §4).
#[derive(Debug, Clone)]
pub struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    raw: Map<String, Value>,
}

impl Header {
    fn from_object(raw: Map<String, Value>) -> Result<Self, TokenError> {
        let alg = match raw.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(TokenError::Malformed),
        };
        let kid = optional_header_string(&raw, "kid")?;
        let typ = optional_header_string(&raw, "typ")?;
        Ok(Header { alg, kid, typ, raw })
    }

    /// The `alg` value as sent (not necessarily supported).
    pub fn alg_name(&self) -> &str {
        &self.alg
    }

    /// The `kid` value, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `typ` value, if any.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// All header members.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
}

fn optional_header_string(raw: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// A token whose signature verified (payload not interpreted).
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: Header,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// `kid` of the key that verified the signature.
    pub kid: Option<String>,
    /// The verified algorithm.
    pub alg: Algorithm,
}

/// Structurally parsed, unverified token: used to pick the issuer before verification.
/// Nothing in it may be trusted until [`UnverifiedJws::verify`] succeeds.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    header: Header,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
    token_len: usize,
}

/// The three segments of a compact JWS, decoded.
pub(crate) struct Decoded<'a> {
    pub(crate) header: Header,
    pub(crate) payload: Vec<u8>,
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
}

/// RFC 7515 §7.1 / §5.2: splits and decodes a compact JWS; the payload is left as bytes.
pub(crate) fn decode(token: &str, max_bytes: usize) -> Result<Decoded<'_>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(TokenError::Malformed);
    };
    if signature_b64.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = b64url_decode(header_b64).ok_or(TokenError::Malformed)?;
    let header = Header::from_object(parse_object(&header_bytes)?)?;
    let payload = b64url_decode(payload_b64).ok_or(TokenError::Malformed)?;
    let signature = b64url_decode(signature_b64).ok_or(TokenError::Malformed)?;
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(TokenError::Malformed)?;
    Ok(Decoded {
        header,
        payload,
        signing_input,
        signature,
    })
}

/// Parses a structurally valid compact JWS whose payload is a JSON object, without verifying
/// it. `max_bytes` bounds the token length and is checked before any decoding.
///
/// # Errors
/// [`TokenError::TooLarge`] or [`TokenError::Malformed`].
pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedJws<'_>, TokenError> {
    let decoded = decode(token, max_bytes)?;
    let claims = parse_object(&decoded.payload)?;
    Ok(UnverifiedJws {
        header: decoded.header,
        claims,
        signing_input: decoded.signing_input,
        signature: decoded.signature,
        token_len: token.len(),
    })
}

impl UnverifiedJws<'_> {
    /// The unverified `iss`, only if it is a JSON string.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The unverified header `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.header.kid()
    }

    /// The unverified header `alg`, as sent.
    pub fn alg_name(&self) -> &str {
        self.header.alg_name()
    }

    /// The unverified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The rules that need no key — header (`alg`, `crit`, `b64`), `typ` and claims — so
    /// that a token breaking one is refused (401) while its issuer's keys cannot be had,
    /// rather than answered 503 as if it might be fine (DESIGN §4 "Token kind"). Refusing
    /// on an unverified claim is safe: no signature could make the token acceptable.
    ///
    /// # Errors
    /// The first of those rules the token breaks.
    pub fn check_without_keys(&self, policy: &VerifyPolicy, now_unix_secs: u64) -> Result<(), TokenError> {
        if self.token_len > policy.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        check_header(&self.header, &policy.algorithms)?;
        check_typ(&self.header, &policy.accepted_typ)?;
        claim_rules(&self.claims, policy, now_unix_secs).map(drop)
    }

    /// Verifies signature, type and claims under `policy` (see [`verify`]).
    ///
    /// # Errors
    /// The first rule the token breaks.
    pub fn verify(
        &self,
        keys: &KeySet,
        policy: &VerifyPolicy,
        now_unix_secs: u64,
    ) -> Result<VerifiedToken, TokenError> {
        self.verify_keeping(keys, policy, now_unix_secs, |_| true)
    }

    /// [`UnverifiedJws::verify`], keeping in `claims.raw` only the claims `keep` names: a
    /// cached token copies no more of its payload than it uses.
    ///
    /// # Errors
    /// The first rule the token breaks.
    pub fn verify_keeping(
        &self,
        keys: &KeySet,
        policy: &VerifyPolicy,
        now_unix_secs: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<VerifiedToken, TokenError> {
        if self.token_len > policy.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let alg = check_header(&self.header, &policy.algorithms)?;
        let key = verify_with_keys(
            keys,
            self.header.kid(),
            alg,
            self.signing_input.as_bytes(),
            &self.signature,
        )?;
        check_typ(&self.header, &policy.accepted_typ)?;
        let mut claims = claim_rules(&self.claims, policy, now_unix_secs)?;
        claims.raw = self
            .claims
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok(VerifiedToken {
            claims,
            kid: key.kid().map(str::to_owned),
            thumbprint: key.shared_thumbprint(),
            alg,
        })
    }
}

/// What a verified access token must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Required `iss`, compared byte for byte (RFC 7519 §4.1.1, RFC 9068 §4).
    pub issuer: String,
    /// `aud` must contain at least one of these (RFC 7519 §4.1.3). Empty: every token fails.
    pub audiences: Vec<String>,
    /// Allowed `alg` values (RFC 8725 §3.1).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp`, `nbf`, `iat` (whole seconds are used).
    pub leeway: Duration,
    /// Accepted `typ` headers, e.g. `at+jwt` (RFC 9068 §2.1), compared as media types. Empty:
    /// any `typ`, or none, is accepted.
    pub accepted_typ: Vec<String>,
    /// Claims that carry scopes, read in this order (see [`collect_scopes`]).
    pub scope_claims: Vec<String>,
    /// Longest accepted token, in bytes.
    pub max_token_bytes: usize,
}

impl VerifyPolicy {
    /// A policy with every supported algorithm, 60 s leeway, no `typ` requirement, scopes in
    /// `scope` and `scp`, and [`DEFAULT_MAX_TOKEN_BYTES`].
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        VerifyPolicy {
            issuer: issuer.into(),
            audiences,
            algorithms: Algorithm::ALL.to_vec(),
            leeway: Duration::from_secs(60),
            accepted_typ: Vec::new(),
            scope_claims: DEFAULT_SCOPE_CLAIMS.map(str::to_owned).to_vec(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

/// Validated access-token claims (RFC 9068 §2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `sub`, if present.
    pub sub: Option<String>,
    /// `aud`, normalised to a list.
    pub aud: Vec<String>,
    /// `exp`, seconds since the epoch (fractions rounded down).
    pub exp: u64,
    /// `nbf`, seconds since the epoch (fractions rounded up).
    pub nbf: Option<u64>,
    /// `iat`, seconds since the epoch (fractions rounded up).
    pub iat: Option<u64>,
    /// `client_id` (RFC 9068 §2.2), else `azp`.
    pub client_id: Option<String>,
    /// Union of the policy's scope claims (by default `scope`, RFC 8693 §4.2, and `scp`),
    /// de-duplicated, in first-seen order.
    pub scopes: Vec<String>,
    /// `cnf` (RFC 7800): the key or certificate the token is bound to, if any.
    pub cnf: Option<Confirmation>,
    /// Every claim.
    pub raw: Map<String, Value>,
}

impl Claims {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// A verified access token.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// Its validated claims.
    pub claims: Claims,
    /// `kid` of the key that verified it.
    pub kid: Option<String>,
    /// RFC 7638 thumbprint of the key that verified it: a cached result stands only while
    /// the key set still holds this exact key (a `kid` can be reused for new material).
    pub thumbprint: std::sync::Arc<str>,
    /// The signature algorithm.
    pub alg: Algorithm,
}

/// Signature layer only: structure, header checks, key lookup and signature. The payload is
/// not interpreted (it need not be JSON).
///
/// # Errors
/// The first rule the token breaks (see the module documentation).
pub fn verify_signature(
    token: &str,
    keys: &KeySet,
    algorithms: &[Algorithm],
    max_bytes: usize,
) -> Result<VerifiedJws, TokenError> {
    let decoded = decode(token, max_bytes)?;
    let alg = check_header(&decoded.header, algorithms)?;
    let key = verify_with_keys(
        keys,
        decoded.header.kid(),
        alg,
        decoded.signing_input.as_bytes(),
        &decoded.signature,
    )?;
    Ok(VerifiedJws {
        kid: key.kid().map(str::to_owned),
        header: decoded.header,
        payload: decoded.payload,
        alg,
    })
}

/// Full access-token verification: [`verify_signature`]'s rules, then the `typ` requirement,
/// then the claims:
///
/// * `iss` (RFC 7519 §4.1.1): required JSON string, byte-equal to the policy issuer.
/// * `aud` (§4.1.3): required string or array of strings intersecting the policy audiences.
/// * `exp` (§4.1.4): required NumericDate; expired when `now > exp + leeway`.
/// * `nbf` (§4.1.5): optional NumericDate; not yet valid when `now + leeway < nbf`.
/// * `iat` (§4.1.6): optional NumericDate; rejected when `iat > now + leeway`.
/// * `cnf` (RFC 7800): an object whose `jkt` and `x5t#S256` are strings; the binding itself
///   is checked per request (`token::binding`).
/// * `sub`, `client_id`, `azp`: strings when present; the policy's scope claims as
///   [`collect_scopes`] reads them.
///
/// NumericDate (RFC 7519 §2) is a non-negative finite JSON number; fractions are rounded in
/// the stricter direction (`exp` down, `nbf`/`iat` up).
///
/// # Errors
/// The first rule the token breaks.
pub fn verify(
    token: &str,
    keys: &KeySet,
    policy: &VerifyPolicy,
    now_unix_secs: u64,
) -> Result<VerifiedToken, TokenError> {
    parse(token, policy.max_token_bytes)?.verify(keys, policy, now_unix_secs)
}

/// Header rules (RFC 7515 §4.1, RFC 8725 §3.1); returns the algorithm to verify with.
pub(crate) fn check_header(header: &Header, allowed: &[Algorithm]) -> Result<Algorithm, TokenError> {
    let name = header.alg_name();
    if name.eq_ignore_ascii_case("none") || name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("hs")) {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    let alg = Algorithm::from_name(name)
        .filter(|alg| allowed.contains(alg))
        .ok_or(TokenError::UnsupportedAlgorithm)?;
    if header.raw.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }
    if header.raw.get("b64").is_some_and(|b64| b64 != &Value::Bool(true)) {
        return Err(TokenError::CriticalHeader);
    }
    Ok(alg)
}

/// Key selection and signature verification; returns the key that verified.
fn verify_with_keys<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<&'k VerifyingKey, TokenError> {
    match keys.find(kid, alg) {
        KeyLookup::Found(key) if key.verify(alg, signing_input, signature) => Ok(key),
        KeyLookup::Found(_) => Err(TokenError::BadSignature),
        KeyLookup::Candidates(candidates) => candidates
            .into_iter()
            .find(|key| key.verify(alg, signing_input, signature))
            .ok_or(TokenError::BadSignature),
        KeyLookup::UnknownKid => Err(TokenError::UnknownKey),
        // Without a kid and without any usable key, a JWKS refresh may help.
        KeyLookup::NoCompatibleKey if kid.is_none() && keys.is_empty() => Err(TokenError::UnknownKey),
        KeyLookup::NoCompatibleKey => Err(TokenError::KeyMismatch),
    }
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, with `application/`
/// implied when it contains no `/` (so `at+jwt` equals `application/at+jwt`, RFC 9068 §2.1).
/// An empty `accepted` list accepts any `typ`, or none.
fn check_typ(header: &Header, accepted: &[String]) -> Result<(), TokenError> {
    if accepted.is_empty() {
        return Ok(());
    }
    match header.typ().map(full_media_type) {
        Some(typ) if accepted.iter().any(|a| full_media_type(a) == typ) => Ok(()),
        _ => Err(TokenError::WrongType),
    }
}

/// `typ` as a full, lower-case media type (RFC 7515 §4.1.9: `application/` implied).
pub(crate) fn full_media_type(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    if lower.contains('/') {
        lower
    } else {
        format!("application/{lower}")
    }
}

/// The claim rules of [`verify`] on their own (issuer, audience, time claims, `cnf`, types,
/// scopes): what a token carrying `raw` would be, its signature taken as verified.
///
/// # Errors
/// The first claim rule `raw` breaks.
pub fn validate_claims(raw: &Map<String, Value>, policy: &VerifyPolicy, now: u64) -> Result<Claims, TokenError> {
    let mut claims = claim_rules(raw, policy, now)?;
    claims.raw = raw.clone();
    Ok(claims)
}

/// [`validate_claims`] without the copy of the payload (`raw` is left empty).
fn claim_rules(raw: &Map<String, Value>, policy: &VerifyPolicy, now: u64) -> Result<Claims, TokenError> {
    let iss = check_issuer(raw, &policy.issuer)?;
    let aud = check_audience(raw, &policy.audiences)?;
    if !raw.contains_key("exp") {
        return Err(TokenError::MissingClaim);
    }
    let TimeClaims { exp, nbf, iat } = check_time_claims(raw, now, policy.leeway)?;
    let exp = exp.ok_or(TokenError::MissingClaim)?;
    // RFC 9449 §7.1, RFC 8705 §3 (DESIGN §7): a token bound to a key is accepted only with a
    // proof of possession, which is per request: `cnf` is read here and checked against each
    // request's proof (`token::binding`), never taken as a plain bearer token.
    let cnf = confirmation(raw).map_err(|_| TokenError::InvalidClaim)?;
    let sub = optional_claim_string(raw, "sub")?;
    let client_id = match optional_claim_string(raw, "client_id")? {
        Some(client_id) => Some(client_id),
        None => optional_claim_string(raw, "azp")?,
    };
    let scopes = collect_scopes(raw, &policy.scope_claims)?;
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf,
        iat,
        client_id,
        scopes,
        cnf,
        raw: Map::new(),
    })
}

/// RFC 7519 §4.1.1 / RFC 9068 §4: `iss` is a string equal to the configured issuer.
fn check_issuer(raw: &Map<String, Value>, expected: &str) -> Result<String, TokenError> {
    match raw.get("iss") {
        None => Err(TokenError::MissingClaim),
        Some(Value::String(iss)) if !expected.is_empty() && iss == expected => Ok(iss.clone()),
        Some(Value::String(_)) => Err(TokenError::WrongIssuer),
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// RFC 7519 §4.1.3: `aud` is a string or an array of strings; one must be ours.
fn check_audience(raw: &Map<String, Value>, accepted: &[String]) -> Result<Vec<String>, TokenError> {
    let aud: Vec<String> = match raw.get("aud") {
        None => return Err(TokenError::MissingClaim),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(TokenError::InvalidClaim))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(TokenError::InvalidClaim),
    };
    if aud.iter().any(|a| accepted.contains(a)) {
        Ok(aud)
    } else {
        Err(TokenError::WrongAudience)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Round {
    Down,
    Up,
}

/// RFC 7519 §2 NumericDate: a non-negative, finite JSON number of seconds (fractions allowed).
pub(crate) fn numeric_date(value: &Value, round: Round) -> Result<u64, TokenError> {
    if let Some(secs) = value.as_u64() {
        return Ok(secs);
    }
    match value.as_f64() {
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            let rounded = match round {
                Round::Down => secs.floor(),
                Round::Up => secs.ceil(),
            };
            // `as` saturates at u64::MAX for huge values.
            Ok(rounded as u64)
        }
        _ => Err(TokenError::InvalidClaim),
    }
}

fn optional_numeric_date(raw: &Map<String, Value>, name: &str, round: Round) -> Result<Option<u64>, TokenError> {
    raw.get(name).map(|value| numeric_date(value, round)).transpose()
}

/// The time claims of a token, each a NumericDate when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeClaims {
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

/// Reads and checks `exp`, `nbf` and `iat` (RFC 7519 §4.1.4–§4.1.6) with `leeway` for clock
/// skew. JWT claims and introspection answers (RFC 7662 §2.2 uses the same members and
/// NumericDate) both come through here, so a member is never ignored on one path for a type
/// that is refused on the other: anything but a non-negative finite number is
/// [`TokenError::InvalidClaim`], `null` included. Whether `exp` is required is the caller's
/// rule.
pub(crate) fn check_time_claims(
    raw: &Map<String, Value>,
    now: u64,
    leeway: Duration,
) -> Result<TimeClaims, TokenError> {
    let leeway = leeway.as_secs();
    let exp = optional_numeric_date(raw, "exp", Round::Down)?;
    if exp.is_some_and(|exp| now > exp.saturating_add(leeway)) {
        return Err(TokenError::Expired);
    }
    let nbf = optional_numeric_date(raw, "nbf", Round::Up)?;
    if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    let iat = optional_numeric_date(raw, "iat", Round::Up)?;
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(TimeClaims { exp, nbf, iat })
}

/// Whether `token` is a compact JOSE object rather than an opaque token: its first
/// `.`-separated segment is base64url of a JSON object (RFC 7515 §7.1; a JWE, RFC 7516 §7.1,
/// has the same first segment and five segments in all). Such a token is always judged
/// locally, never sent to introspection (DESIGN §4 "Token kind"): a broken or forged JWT
/// must cost no authorization-server call, and one authorization server must never be
/// shown another's tokens. The test is deliberately lenient (padding, the standard
/// alphabet, non-canonical trailing bits, duplicate members are all accepted here): the
/// strict rules apply when the token is parsed, and anything that looks like a JOSE header
/// is refused there rather than introspected.
pub fn is_jose_shaped(token: &str) -> bool {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    let header: String = header
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    LENIENT
        .decode(header)
        .ok()
        .is_some_and(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).is_ok())
}

fn optional_claim_string(raw: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match raw.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// Reads scopes from each claim in `names` (absent ones are skipped). `scope` is a
/// space-delimited string (RFC 8693 §4.2, RFC 9068 §2.2.3); any other claim — `scp`, Entra
/// ID's `roles`, Auth0's `permissions` — may be such a string or an array of strings. Each
/// scope token must match RFC 6749 §3.3 `1*NQCHAR`; anything else refuses the token, so a
/// scope is never half-read.
///
/// # Errors
/// [`TokenError::InvalidClaim`] for a claim of another JSON type or a token that is not
/// `1*NQCHAR`.
pub fn collect_scopes(raw: &Map<String, Value>, names: &[String]) -> Result<Vec<String>, TokenError> {
    let mut scopes = ScopeList::default();
    for name in names {
        match raw.get(name.as_str()) {
            None => {}
            Some(Value::String(list)) => scopes.push_delimited(list)?,
            Some(Value::Array(items)) if name != "scope" => {
                for item in items {
                    scopes.push_one(item.as_str().ok_or(TokenError::InvalidClaim)?)?;
                }
            }
            Some(_) => return Err(TokenError::InvalidClaim),
        }
    }
    Ok(scopes.list)
}

#[derive(Default)]
struct ScopeList {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl ScopeList {
    fn push_delimited(&mut self, list: &str) -> Result<(), TokenError> {
        list.split(' ')
            .filter(|scope| !scope.is_empty())
            .try_for_each(|scope| self.push_one(scope))
    }

    fn push_one(&mut self, scope: &str) -> Result<(), TokenError> {
        let nqchar = |b: u8| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b);
        if scope.is_empty() || !scope.bytes().all(nqchar) {
            return Err(TokenError::InvalidClaim);
        }
        if self.seen.insert(scope.to_owned()) {
            self.list.push(scope.to_owned());
        }
        Ok(())
    }
}

/// Parses a JSON object, rejecting duplicate member names at the top level.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, TokenError> {
    serde_json::from_slice::<UniqueObject>(bytes)
        .map(|object| object.0)
        .map_err(|_| TokenError::Malformed)
}

/// A JSON object whose member names are unique (RFC 7515 §5.2 step 4, RFC 7519 §7.2 step 4).
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let value: Value = access.next_value()?;
            map.insert(name, value);
        }
        Ok(UniqueObject(map))
    }
}
