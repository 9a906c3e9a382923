//! Everything authentication can answer besides a [`super::Principal`], as types: the
//! request path turns an [`AuthError`] into a status, challenge and body in one place
//! (`crate::error`), and its [`AuthError::reason`] is the stable label metrics and the access
//! log carry (`docs/metrics.md` lists them).

use base64::Engine as _;

use super::jws::TokenError;

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer credentials (RFC 6750 §3.1: answered without an `error` attribute).
    #[error("no bearer token")]
    Missing,
    /// The `Authorization` header cannot be read as one bearer credential (400).
    #[error("malformed Authorization header: {}", .0.label())]
    Malformed(MalformedHeader),
    /// The token is not acceptable (401 `invalid_token`).
    #[error("invalid token: {}", .0.label())]
    Invalid(InvalidReason),
    /// The authorization server could not be consulted: the token may well be fine (503).
    #[error("authorization server unavailable: {}", .0.label())]
    Unavailable(UnavailableReason),
    /// The DPoP proof sent with a DPoP-bound token is not acceptable (401 RFC 9449 §7.1
    /// `invalid_dpop_proof`, or §8 `use_dpop_nonce`).
    #[error("DPoP proof refused: {}", .0.label())]
    Proof(ProofError),
}

impl AuthError {
    /// Stable snake_case code for the access log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed(reason) => reason.label(),
            AuthError::Invalid(reason) => reason.label(),
            AuthError::Unavailable(reason) => reason.label(),
            AuthError::Proof(error) => error.label(),
        }
    }

    /// Every way authentication can refuse a request (for metric registration): each
    /// `reason()` a protected route's auth outcome can carry.
    pub fn every_refusal() -> Vec<AuthError> {
        use InactiveReason as I;
        use MalformedHeader as M;
        use UnavailableReason as U;
        let mut all = vec![AuthError::Missing];
        all.extend([M::Malformed, M::MultipleHeaders, M::TokenInHeaderAndQuery].map(AuthError::Malformed));
        let invalid = TokenError::ALL.map(InvalidReason::Jws).into_iter().chain(
            [
                I::Inactive,
                I::WrongIssuer,
                I::WrongAudience,
                I::Expired,
                I::NotYetValid,
                I::IssuedInFuture,
                I::WrongTokenType,
                I::InvalidClaim,
            ]
            .map(InvalidReason::Inactive),
        );
        all.extend(invalid.map(AuthError::Invalid));
        all.extend(
            [
                InvalidReason::UnknownIssuer,
                InvalidReason::WrongResource,
                InvalidReason::Revoked,
            ]
            .map(AuthError::Invalid),
        );
        all.extend(BindingError::ALL.map(|b| AuthError::Invalid(InvalidReason::Binding(b))));
        all.extend(ProofError::ALL.map(AuthError::Proof));
        // Not `AsMetadataUnavailable`: it refuses a metadata request, never a token.
        all.extend(
            [
                U::JwksUnavailable,
                U::JwksStale,
                U::NoKeys,
                U::NoIntrospection,
                U::DiscoveryFailed,
                U::NoIntrospectionEndpoint,
                U::IntrospectionSaturated,
                U::IntrospectionRateLimited,
                U::IntrospectionUnreachable,
                U::IntrospectionErrorStatus,
                U::IntrospectionNotJson,
                U::IntrospectionTooLarge,
                U::IntrospectionMalformed,
            ]
            .map(AuthError::Unavailable),
        );
        all
    }
}

impl From<TokenError> for AuthError {
    fn from(error: TokenError) -> AuthError {
        AuthError::Invalid(InvalidReason::Jws(error))
    }
}

impl From<InvalidReason> for AuthError {
    fn from(reason: InvalidReason) -> AuthError {
        AuthError::Invalid(reason)
    }
}

impl From<UnavailableReason> for AuthError {
    fn from(reason: UnavailableReason) -> AuthError {
        AuthError::Unavailable(reason)
    }
}

/// What is wrong with the `Authorization` header (RFC 6750 §2.1, §3.1 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedHeader {
    /// Not `Bearer <token68>`.
    Malformed,
    /// More than one `Authorization` header.
    MultipleHeaders,
    /// A header token alongside an `access_token` query parameter (RFC 6750 §2: a client
    /// must not use more than one method).
    TokenInHeaderAndQuery,
}

impl MalformedHeader {
    pub fn label(self) -> &'static str {
        match self {
            MalformedHeader::Malformed => "malformed_authorization",
            MalformedHeader::MultipleHeaders => "multiple_authorization_headers",
            MalformedHeader::TokenInHeaderAndQuery => "token_in_header_and_query",
        }
    }
}

/// Why a token is refused. Each reason has a stable label and a fixed description safe for
/// an RFC 6750 `error_description` (never token content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// A JWS that failed local verification.
    Jws(TokenError),
    /// What introspection said (RFC 7662 §2.2), or found unacceptable in its answer.
    Inactive(InactiveReason),
    /// A JOSE-shaped token naming no configured issuer (it is never introspected).
    UnknownIssuer,
    /// A valid token issued for another resource (RFC 8707).
    WrongResource,
    /// Revoked through the admin plane (`POST /cache/evict`) and not yet expired.
    Revoked,
    /// A sender-constrained token whose binding this request does not satisfy.
    Binding(BindingError),
}

impl InvalidReason {
    pub fn label(self) -> &'static str {
        match self {
            InvalidReason::Jws(error) => error.reason(),
            InvalidReason::Inactive(reason) => reason.label(),
            InvalidReason::UnknownIssuer => "unknown_issuer",
            InvalidReason::WrongResource => "wrong_resource",
            InvalidReason::Revoked => "revoked",
            InvalidReason::Binding(error) => error.label(),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            InvalidReason::Jws(error) => error.description(),
            // The answer's details are the authorization server's business: one text for all.
            InvalidReason::Inactive(_) => "the token is not active",
            InvalidReason::UnknownIssuer => "the token was not issued by a trusted issuer",
            InvalidReason::WrongResource => "the token was not issued for this resource",
            InvalidReason::Revoked => "the token has been revoked",
            InvalidReason::Binding(error) => error.description(),
        }
    }
}

/// Why a sender-constrained token was refused besides its proof (401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingError {
    /// A token bound to a DPoP key (or to something scopegate cannot check) sent as a
    /// bearer token: a stolen copy replayed without its key.
    BearerUse,
    /// The proof's key is not the one the token is bound to (`cnf.jkt`).
    DpopKeyMismatch,
    /// `Authorization: DPoP` with a token that has no `cnf.jkt`.
    DpopTokenNotBound,
    /// A bearer token on a route that requires DPoP.
    DpopRequired,
    /// A certificate-bound token without a client certificate.
    CertificateMissing,
    /// The client certificate is not the one the token is bound to (`cnf.x5t#S256`).
    CertificateMismatch,
}

impl BindingError {
    pub const ALL: [BindingError; 6] = [
        BindingError::BearerUse,
        BindingError::DpopKeyMismatch,
        BindingError::DpopTokenNotBound,
        BindingError::DpopRequired,
        BindingError::CertificateMissing,
        BindingError::CertificateMismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BindingError::BearerUse => "sender_constrained",
            BindingError::DpopKeyMismatch => "dpop_binding_mismatch",
            BindingError::DpopTokenNotBound => "dpop_token_not_bound",
            BindingError::DpopRequired => "dpop_required",
            BindingError::CertificateMissing => "cert_missing",
            BindingError::CertificateMismatch => "cert_binding_mismatch",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BindingError::BearerUse => "The token is bound to a proof of possession",
            BindingError::DpopKeyMismatch => "The DPoP proof key is not the key the token is bound to",
            BindingError::DpopTokenNotBound => "The token is not bound to a DPoP key",
            BindingError::DpopRequired => "This resource requires a DPoP-bound token",
            BindingError::CertificateMissing => "The token is bound to a client certificate",
            BindingError::CertificateMismatch => "The client certificate is not the one the token is bound to",
        }
    }

    /// Whether the refusal is about DPoP (answered with a `DPoP` challenge).
    pub fn is_dpop(self) -> bool {
        matches!(
            self,
            BindingError::DpopKeyMismatch | BindingError::DpopTokenNotBound | BindingError::DpopRequired
        )
    }
}

/// Why a DPoP proof was refused (RFC 9449 §7.1 `invalid_dpop_proof`, or §8 `use_dpop_nonce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProofError {
    /// `Authorization: DPoP` without a `DPoP` header.
    Missing,
    /// Several `DPoP` headers (RFC 9449 §4.3 step 1), or a proof that is not a well-formed
    /// compact JWS with `typ` `dpop+jwt`, an accepted `alg`, a public `jwk` and the claims.
    Invalid,
    /// The signature does not verify with the proof's own key.
    BadSignature,
    /// `htm` is not the request method.
    MethodMismatch,
    /// `htu` is not the request URI.
    UriMismatch,
    /// `ath` is not the hash of the access token sent with it.
    TokenHashMismatch,
    /// `iat` is outside the accepted window.
    Stale,
    /// The `jti` was seen within the window: a replayed proof.
    Replay,
    /// A nonce is required and the proof has none, or an old or foreign one; the answer
    /// carries a fresh one.
    UseNonce(Nonce),
}

impl ProofError {
    /// Stable code for metrics and the access log.
    pub fn label(self) -> &'static str {
        match self {
            ProofError::Missing => "dpop_proof_missing",
            ProofError::Invalid => "dpop_proof_invalid",
            ProofError::BadSignature => "dpop_bad_signature",
            ProofError::MethodMismatch => "dpop_htm_mismatch",
            ProofError::UriMismatch => "dpop_htu_mismatch",
            ProofError::TokenHashMismatch => "dpop_ath_mismatch",
            ProofError::Stale => "dpop_proof_stale",
            ProofError::Replay => "dpop_replay",
            ProofError::UseNonce(_) => "dpop_nonce_required",
        }
    }

    /// Fixed text for `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            ProofError::Missing => "A DPoP proof is required with a DPoP-bound token",
            ProofError::Invalid => "The DPoP proof is malformed",
            ProofError::BadSignature => "The DPoP proof signature is invalid",
            ProofError::MethodMismatch => "The DPoP proof is for another method",
            ProofError::UriMismatch => "The DPoP proof is for another URI",
            ProofError::TokenHashMismatch => "The DPoP proof is for another access token",
            ProofError::Stale => "The DPoP proof is too old or from the future",
            ProofError::Replay => "The DPoP proof was already used",
            ProofError::UseNonce(_) => "Resource server requires nonce in DPoP proof",
        }
    }

    /// Every kind, with a placeholder nonce (metric registration).
    pub const ALL: [ProofError; 9] = [
        ProofError::Missing,
        ProofError::Invalid,
        ProofError::BadSignature,
        ProofError::MethodMismatch,
        ProofError::UriMismatch,
        ProofError::TokenHashMismatch,
        ProofError::Stale,
        ProofError::Replay,
        ProofError::UseNonce(Nonce([0; NONCE_BYTES])),
    ];
}

pub(crate) const NONCE_BYTES: usize = 24;

/// A server nonce (RFC 9449 §8): the time window it was made in and an HMAC of it, so any
/// instance holding the key verifies it without remembering it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub(crate) [u8; NONCE_BYTES]);

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonce(..)")
    }
}

impl Nonce {
    /// The `DPoP-Nonce` header value: base64url, so a valid `NQCHAR` string.
    pub fn encoded(&self) -> String {
        super::jwk::B64URL.encode(self.0)
    }
}

/// Why an introspected token is not active for this resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InactiveReason {
    /// `active: false`.
    Inactive,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` names none of the configured audiences (or is absent where required).
    WrongAudience,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iat` is in the future.
    IssuedInFuture,
    /// `token_type` is not an access token type (RFC 6749 §7.1).
    WrongTokenType,
    /// A member has the wrong JSON type.
    InvalidClaim,
}

impl InactiveReason {
    pub fn label(self) -> &'static str {
        match self {
            InactiveReason::Inactive => "inactive",
            InactiveReason::WrongIssuer => "wrong_issuer",
            InactiveReason::WrongAudience => "wrong_audience",
            InactiveReason::Expired => "expired",
            InactiveReason::NotYetValid => "not_yet_valid",
            InactiveReason::IssuedInFuture => "issued_in_future",
            InactiveReason::WrongTokenType => "wrong_token_type",
            InactiveReason::InvalidClaim => "invalid_claim",
        }
    }
}

/// Why the authorization server's answer (keys, metadata, introspection) cannot be had.
/// Always 503, never 401: the token may be fine (DESIGN §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnavailableReason {
    /// No key set has been fetched yet.
    JwksUnavailable,
    /// The last good key set is older than `max_stale`.
    JwksStale,
    /// The issuer verifies no tokens locally.
    NoKeys,
    /// The issuer introspects no tokens.
    NoIntrospection,
    /// Discovery of the introspection endpoint failed.
    DiscoveryFailed,
    /// The metadata names no introspection endpoint and none is configured.
    NoIntrospectionEndpoint,
    /// Every introspection slot stayed busy for the call timeout.
    IntrospectionSaturated,
    /// The client address used up its budget of introspections for never-seen tokens.
    IntrospectionRateLimited,
    /// The introspection call failed in transport or timed out.
    IntrospectionUnreachable,
    /// The introspection endpoint answered a status other than 200.
    IntrospectionErrorStatus,
    /// The introspection answer is not a JSON object.
    IntrospectionNotJson,
    /// The introspection answer exceeds the configured size.
    IntrospectionTooLarge,
    /// The introspection answer lacks a boolean `active`.
    IntrospectionMalformed,
    /// The authorization server's metadata, mirrored for MCP clients, cannot be fetched.
    AsMetadataUnavailable,
}

impl UnavailableReason {
    pub fn label(self) -> &'static str {
        match self {
            UnavailableReason::JwksUnavailable => "jwks_unavailable",
            UnavailableReason::JwksStale => "jwks_stale",
            UnavailableReason::NoKeys => "no_keys",
            UnavailableReason::NoIntrospection => "no_introspection",
            UnavailableReason::DiscoveryFailed => "discovery_failed",
            UnavailableReason::NoIntrospectionEndpoint => "no_introspection_endpoint",
            UnavailableReason::IntrospectionSaturated => "introspection_saturated",
            UnavailableReason::IntrospectionRateLimited => "introspection_rate_limited",
            UnavailableReason::IntrospectionUnreachable => "introspection_unreachable",
            UnavailableReason::IntrospectionErrorStatus => "introspection_error_status",
            UnavailableReason::IntrospectionNotJson => "introspection_not_json",
            UnavailableReason::IntrospectionTooLarge => "introspection_too_large",
            UnavailableReason::IntrospectionMalformed => "introspection_malformed",
            UnavailableReason::AsMetadataUnavailable => "as_metadata_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels are metric label values and access-log codes (`docs/metrics.md`): they
    /// must not drift when variants are renamed.
    #[test]
    fn labels_are_stable() {
        assert_eq!(AuthError::Missing.reason(), "missing_token");
        assert_eq!(
            AuthError::Malformed(MalformedHeader::TokenInHeaderAndQuery).reason(),
            "token_in_header_and_query"
        );
        assert_eq!(AuthError::from(TokenError::Expired).reason(), "expired");
        assert_eq!(
            AuthError::from(InvalidReason::Inactive(InactiveReason::WrongTokenType)).reason(),
            "wrong_token_type"
        );
        assert_eq!(AuthError::from(InvalidReason::UnknownIssuer).reason(), "unknown_issuer");
        assert_eq!(
            AuthError::from(UnavailableReason::IntrospectionSaturated).reason(),
            "introspection_saturated"
        );
        assert_eq!(
            AuthError::from(UnavailableReason::IntrospectionRateLimited).reason(),
            "introspection_rate_limited"
        );
    }

    #[test]
    fn one_reason_two_paths_two_descriptions() {
        // An expired JWT says so; an introspection answer's details stay the server's.
        assert_eq!(
            InvalidReason::Jws(TokenError::Expired).description(),
            "The access token expired"
        );
        assert_eq!(
            InvalidReason::Inactive(InactiveReason::Expired).description(),
            "the token is not active"
        );
    }
}
