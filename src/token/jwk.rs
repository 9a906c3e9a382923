// Long file: every JWK rule (RFC 7517, 7518, 8037: key types, sizes, curves, what is skipped and why) in one reviewable place.
//! JSON Web Key Sets (RFC 7517) reduced to the public signature-verification keys scopegate uses.
//!
//! Only asymmetric signature algorithms are supported (RFC 7518 §3.3–§3.5, RFC 8037 §3.1).
//! A JWKS comes from the network, so every key is validated before use and every unusable key
//! is skipped with a [`KeyWarning`] instead of failing the whole set: one bad key published by
//! the authorization server must not take down verification with the good ones.
//!
//! Signature primitive: this module calls `aws-lc-rs` directly rather than
//! `jsonwebtoken::crypto::verify`. Keys are parsed once, at JWKS load time (so an EC point that
//! is not on its curve is rejected when the set is loaded, not on every request, and an RSA
//! key is not rebuilt from `n` and `e` for every signature), the
//! verification parameters are chosen explicitly here (RSA modulus 2048–8192 bits, PSS salt
//! length equal to the hash length per RFC 7518 §3.5, fixed-width `r || s` ECDSA signatures per
//! RFC 7518 §3.4), the signature is base64url-decoded exactly once by our strict decoder, and
//! there is no code path that could build an HMAC key from JWKS material.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPssSaltLength, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Most JWK entries examined in one JWKS; later entries are skipped with a warning.
pub const MAX_KEYS: usize = 64;
/// Most keys tried for a token without `kid` (bounds the work a single token can cause).
pub const MAX_CANDIDATES: usize = 8;
/// Longest accepted `kid`, in bytes.
pub const MAX_KID_LEN: usize = 256;
/// Smallest accepted RSA modulus (RFC 7518 §3.3 requires at least 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus (the range supported by the verification primitive).
pub const MAX_RSA_BITS: usize = 8192;

/// Strict base64url without padding (RFC 7515 §2, §C): rejects `=`, `+`, `/`, whitespace and
/// encodings whose unused trailing bits are not zero (non-canonical).
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict base64url (see [`B64URL`]).
pub(crate) fn b64url_decode(input: &str) -> Option<Vec<u8>> {
    B64URL.decode(input).ok()
}

// RFC 7518 §3.5: the PSS salt length equals the hash output length. That is the aws-lc-rs
// default; it is pinned here so that a library default change cannot loosen verification.
static PS256_PARAMS: RsaParameters = signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Digest);
static PS384_PARAMS: RsaParameters = signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Digest);
static PS512_PARAMS: RsaParameters = signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(RsaPssSaltLength::Digest);

/// A JWS signature algorithm scopegate can verify (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// `none` and the HMAC algorithms (`HS256`…) are deliberately absent: a resource server that
/// validates tokens with keys fetched from a JWKS must only ever use asymmetric keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    PS512,
    /// ECDSA using P-256 and SHA-256.
    ES256,
    /// ECDSA using P-384 and SHA-384.
    ES384,
    /// EdDSA (RFC 8037); scopegate supports the Ed25519 curve only.
    EdDSA,
}

/// The kind of key an [`Algorithm`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Looks up an `alg` value. Names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The registered JWA name (RFC 7518 §7.1).
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    fn family(self) -> KeyFamily {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 => KeyFamily::P256,
            Algorithm::ES384 => KeyFamily::P384,
            Algorithm::EdDSA => KeyFamily::Ed25519,
        }
    }

    fn rsa_params(self) -> Option<&'static RsaParameters> {
        match self {
            Algorithm::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&PS256_PARAMS),
            Algorithm::PS384 => Some(&PS384_PARAMS),
            Algorithm::PS512 => Some(&PS512_PARAMS),
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned when a configured algorithm name is not one scopegate accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported JWS algorithm {name:?}: accepted algorithms are RS256, RS384, RS512, PS256, \
     PS384, PS512, ES256, ES384, EdDSA (\"none\" and HMAC algorithms such as HS256 are never \
     accepted)"
)]
pub struct ParseAlgorithmError {
    name: String,
}

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(name).ok_or_else(|| ParseAlgorithmError {
            name: name.chars().take(32).collect(),
        })
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Public key material, parsed and validated.
#[derive(Clone)]
enum KeyMaterial {
    /// RSA public key (RFC 7518 §6.3.1); `n` and `e` without leading zero octets (for the
    /// thumbprint), and the key prepared once per RSA algorithm it may verify.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        bits: usize,
        prepared: Vec<(Algorithm, ParsedPublicKey)>,
    },
    /// P-256 or P-384 public point (RFC 7518 §6.2.1), validated to be on the curve.
    Ec { family: KeyFamily, key: ParsedPublicKey },
    /// Ed25519 public key (RFC 8037 §2).
    Ed25519 { key: ParsedPublicKey },
}

impl KeyMaterial {
    fn family(&self) -> KeyFamily {
        match self {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::Ec { family, .. } => *family,
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
        }
    }
}

/// One usable signature-verification key from a JWKS.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    material: KeyMaterial,
    /// Shared with every cached token this key verified.
    thumbprint: std::sync::Arc<str>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("kty", &self.key_type())
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

impl VerifyingKey {
    /// The key's `kid` (RFC 7517 §4.5), if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg` the JWK is restricted to (RFC 7517 §4.4), if it declares one.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// `"RSA"`, `"EC"` or `"OKP"`.
    pub fn key_type(&self) -> &'static str {
        match self.material {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec { .. } => "EC",
            KeyMaterial::Ed25519 { .. } => "OKP",
        }
    }

    /// RSA modulus length in bits (`None` for other key types).
    pub fn rsa_bits(&self) -> Option<usize> {
        match self.material {
            KeyMaterial::Rsa { bits, .. } => Some(bits),
            _ => None,
        }
    }

    /// RFC 7638 JWK SHA-256 thumbprint, base64url: a stable identifier for logs.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The thumbprint, shared rather than copied (a cached token keeps it).
    pub fn shared_thumbprint(&self) -> std::sync::Arc<str> {
        std::sync::Arc::clone(&self.thumbprint)
    }

    /// Whether this key may verify a signature made with `alg`: the key type and curve must be
    /// the ones `alg` uses (RFC 7518 §3) and, if the JWK declares `alg`, it must be equal.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.material.family() == alg.family() && self.alg.is_none_or(|own| own == alg)
    }

    /// Verifies `signature` (raw bytes) over `signing_input` with `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Rsa { bits, prepared, .. } => {
                // RFC 8017 §8.2.2 step 1: the signature is exactly as long as the modulus.
                let Some((_, key)) = prepared.iter().find(|(own, _)| *own == alg) else {
                    return false;
                };
                signature.len() == bits.div_ceil(8) && key.verify_sig(signing_input, signature).is_ok()
            }
            KeyMaterial::Ec { family, key } => {
                let width = if *family == KeyFamily::P256 { 32 } else { 48 };
                ecdsa_shape_ok(signature, width) && key.verify_sig(signing_input, signature).is_ok()
            }
            KeyMaterial::Ed25519 { key } => signature.len() == 64 && key.verify_sig(signing_input, signature).is_ok(),
        }
    }
}

/// RFC 7518 §3.4: an ECDSA JWS signature is `r || s`, each exactly `width` octets; zero `r` or
/// `s` is never valid (the primitive also rejects it; this makes the rule explicit).
fn ecdsa_shape_ok(signature: &[u8], width: usize) -> bool {
    if signature.len() != 2 * width {
        return false;
    }
    let (r, s) = signature.split_at(width);
    r.iter().any(|&b| b != 0) && s.iter().any(|&b| b != 0)
}

/// Why a JWK was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWarning {
    /// The entry's `kid`, if it had a string one (truncated to 64 characters).
    pub kid: Option<String>,
    /// Fixed description of the problem.
    pub reason: &'static str,
}

impl fmt::Display for KeyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "JWK with kid {kid:?} skipped: {}", self.reason),
            None => write!(f, "JWK without kid skipped: {}", self.reason),
        }
    }
}

/// The JWKS document itself is unusable (not a key-level problem).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not valid JSON.
    #[error("JWKS is not valid JSON")]
    Json,
    /// Valid JSON, but not an object with a `keys` array (RFC 7517 §5).
    #[error("JWKS is not a JSON object with a \"keys\" array")]
    Shape,
}

/// Result of looking up a key for a token.
#[derive(Debug, Clone)]
pub enum KeyLookup<'a> {
    /// The token's `kid` names this key, and it accepts the algorithm.
    Found(&'a VerifyingKey),
    /// The token has no `kid`: these keys (at most [`MAX_CANDIDATES`], never empty) accept the
    /// algorithm and should be tried in turn.
    Candidates(Vec<&'a VerifyingKey>),
    /// The token's `kid` is not in the set (the caller may refresh the JWKS once).
    UnknownKid,
    /// The named key (or, without `kid`, every key) cannot be used with the algorithm.
    NoCompatibleKey,
}

/// The usable verification keys of one authorization server.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Parses a JWKS document `{"keys":[...]}` (RFC 7517 §5). The caller bounds its size.
    ///
    /// Unusable keys are skipped and reported, never fatal: symmetric (`oct`) keys, `use` other
    /// than `sig`, `key_ops` without `verify`, private-key members, unknown `kty`/`crv`/`alg`,
    /// `alg` incompatible with the key, RSA moduli outside 2048–8192 bits, RSA exponents that are
    /// even or below 3, EC points not on their curve, wrong-length coordinates. Keys sharing a
    /// `kid` are all dropped (the `kid` would be ambiguous, RFC 7517 §4.5). Entries beyond
    /// [`MAX_KEYS`] are skipped.
    ///
    /// # Errors
    /// [`JwksError`] only if the document is not a JSON object with a `keys` array.
    pub fn from_jwks(json: &[u8]) -> Result<(KeySet, Vec<KeyWarning>), JwksError> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| JwksError::Json)?;
        let entries = doc
            .as_object()
            .and_then(|o| o.get("keys"))
            .and_then(Value::as_array)
            .ok_or(JwksError::Shape)?;
        let mut keys = Vec::new();
        let mut warnings = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let result = if index >= MAX_KEYS {
                Err("too many keys in the JWKS")
            } else {
                parse_jwk(entry)
            };
            match result {
                Ok(key) => keys.push(key),
                Err(reason) => warnings.push(KeyWarning {
                    kid: warning_kid(entry),
                    reason,
                }),
            }
        }
        let keys = drop_duplicate_kids(keys, &mut warnings);
        Ok((KeySet { keys }, warnings))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys that have one.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(VerifyingKey::kid)
    }

    /// The usable keys.
    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// Whether a usable key has this `kid`.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.kids().any(|k| k == kid)
    }

    /// Whether the set holds exactly this key: one whose RFC 7638 thumbprint is `thumbprint`.
    pub fn contains_thumbprint(&self, thumbprint: &str) -> bool {
        self.keys.iter().any(|k| &*k.thumbprint == thumbprint)
    }

    /// Selects the key(s) for a token with header `kid` and `alg`.
    ///
    /// With a `kid`, only the key with exactly that `kid` is considered (a token `kid` never
    /// falls back to keys without one). Without a `kid`, every key accepting `alg` is a
    /// candidate, up to [`MAX_CANDIDATES`].
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid() == Some(kid)) {
                None => KeyLookup::UnknownKid,
                Some(key) if key.accepts(alg) => KeyLookup::Found(key),
                Some(_) => KeyLookup::NoCompatibleKey,
            },
            None => {
                let candidates: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.accepts(alg))
                    .take(MAX_CANDIDATES)
                    .collect();
                if candidates.is_empty() {
                    KeyLookup::NoCompatibleKey
                } else {
                    KeyLookup::Candidates(candidates)
                }
            }
        }
    }
}

/// Members that only private (or symmetric) JWKs carry (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn warning_kid(entry: &Value) -> Option<String> {
    let kid = entry.get("kid")?.as_str()?;
    Some(kid.chars().take(64).collect())
}

/// Validates one JWK (RFC 7517 §4) and builds its verifying key.
pub(crate) fn parse_jwk(entry: &Value) -> Result<VerifyingKey, &'static str> {
    let obj = entry.as_object().ok_or("JWK is not a JSON object")?;
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= MAX_KID_LEN => Some(kid.clone()),
        Some(Value::String(_)) => return Err("\"kid\" is too long"),
        Some(_) => return Err("\"kid\" is not a string"),
    };
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("missing or non-string \"kty\"")?;
    if kty == "oct" {
        return Err("symmetric (\"oct\") keys are never accepted from a JWKS");
    }
    if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
        return Err("JWK contains private key members (server bug: private key published)");
    }
    check_use(obj)?;
    check_key_ops(obj)?;
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(name)) => {
            Some(Algorithm::from_name(name).ok_or("\"alg\" is not a supported signature algorithm")?)
        }
        Some(_) => return Err("\"alg\" is not a string"),
    };
    let material = match kty {
        "RSA" => parse_rsa(obj)?,
        "EC" => parse_ec(obj)?,
        "OKP" => parse_okp(obj)?,
        _ => return Err("unsupported \"kty\""),
    };
    if alg.is_some_and(|alg| alg.family() != material.family()) {
        return Err("\"alg\" does not match the key type or curve");
    }
    let thumbprint = thumbprint(&material).into();
    Ok(VerifyingKey {
        kid,
        alg,
        material,
        thumbprint,
    })
}

/// RFC 7517 §4.2: a verification key has `use` "sig" (or no `use`).
fn check_use(obj: &Map<String, Value>) -> Result<(), &'static str> {
    match obj.get("use") {
        None => Ok(()),
        Some(Value::String(u)) if u == "sig" => Ok(()),
        Some(_) => Err("\"use\" is not \"sig\""),
    }
}

/// RFC 7517 §4.3: if `key_ops` is present it must be an array of strings containing "verify".
fn check_key_ops(obj: &Map<String, Value>) -> Result<(), &'static str> {
    let Some(ops) = obj.get("key_ops") else {
        return Ok(());
    };
    let ops = ops.as_array().ok_or("\"key_ops\" is not an array")?;
    if ops.iter().any(|op| op.as_str() == Some("verify")) {
        Ok(())
    } else {
        Err("\"key_ops\" does not include \"verify\"")
    }
}

/// A required base64url member of the JWK.
fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    let text = obj
        .get(name)
        .and_then(Value::as_str)
        .ok_or("missing or non-string key parameter")?;
    b64url_decode(text).ok_or("key parameter is not valid base64url")
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(&top) => big_endian.len() * 8 - top.leading_zeros() as usize,
    }
}

/// RSA public key, RFC 7518 §6.3.1. Leading zero octets are tolerated (some servers emit
/// them, RFC 7518 §6.3.1.1 notes this) and stripped.
fn parse_rsa(obj: &Map<String, Value>) -> Result<KeyMaterial, &'static str> {
    let n = strip_leading_zeros(b64_member(obj, "n")?);
    let e = strip_leading_zeros(b64_member(obj, "e")?);
    let bits = bit_length(&n);
    if bits < MIN_RSA_BITS {
        return Err("RSA modulus is shorter than 2048 bits");
    }
    if bits > MAX_RSA_BITS {
        return Err("RSA modulus is longer than 8192 bits");
    }
    if n.last().is_some_and(|b| b & 1 == 0) {
        return Err("RSA modulus is even");
    }
    if e.len() > 8 {
        return Err("RSA public exponent is too large");
    }
    let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if exponent < 3 || exponent % 2 == 0 {
        return Err("RSA public exponent is even or smaller than 3");
    }
    if roca::is_vulnerable(&n) {
        return Err("RSA modulus has the ROCA weak-key fingerprint (CVE-2017-15361)");
    }
    // Building the aws-lc key from `n` and `e` costs about as much as a verification; do it
    // once here rather than per token. The key-size range of each algorithm (2048–8192 bits)
    // is still enforced by the primitive on every verification.
    let prepared = Algorithm::ALL
        .into_iter()
        .filter_map(|alg| alg.rsa_params().map(|params| (alg, params)))
        .map(|(alg, params)| {
            let key = RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(params)
                .map_err(|_| "RSA public key is invalid")?;
            Ok((alg, key))
        })
        .collect::<Result<_, &'static str>>()?;
    Ok(KeyMaterial::Rsa { n, e, bits, prepared })
}

/// EC public key, RFC 7518 §6.2.1: `x` and `y` are the full coordinate width.
fn parse_ec(obj: &Map<String, Value>) -> Result<KeyMaterial, &'static str> {
    let (family, width, algorithm) = match obj.get("crv").and_then(Value::as_str) {
        Some("P-256") => (KeyFamily::P256, 32, &signature::ECDSA_P256_SHA256_FIXED),
        Some("P-384") => (KeyFamily::P384, 48, &signature::ECDSA_P384_SHA384_FIXED),
        _ => return Err("unsupported or missing EC \"crv\""),
    };
    let x = b64_member(obj, "x")?;
    let y = b64_member(obj, "y")?;
    if x.len() != width || y.len() != width {
        return Err("EC coordinate has the wrong length for the curve");
    }
    let mut point = Vec::with_capacity(1 + 2 * width);
    point.push(0x04); // SEC 1 §2.3.3 uncompressed point
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = ParsedPublicKey::new(algorithm, point).map_err(|_| "EC point is not on the curve")?;
    Ok(KeyMaterial::Ec { family, key })
}

/// Octet key pair, RFC 8037 §2: only Ed25519 signature keys.
fn parse_okp(obj: &Map<String, Value>) -> Result<KeyMaterial, &'static str> {
    if obj.get("crv").and_then(Value::as_str) != Some("Ed25519") {
        return Err("unsupported or missing OKP \"crv\"");
    }
    let x = b64_member(obj, "x")?;
    if x.len() != signature::ED25519_PUBLIC_KEY_LEN {
        return Err("Ed25519 public key has the wrong length");
    }
    let key = ParsedPublicKey::new(&signature::ED25519, x).map_err(|_| "Ed25519 public key is invalid")?;
    Ok(KeyMaterial::Ed25519 { key })
}

/// RFC 7638 §3: SHA-256 over the required members, lexicographically ordered, no whitespace.
fn thumbprint(material: &KeyMaterial) -> String {
    let canonical = match material {
        KeyMaterial::Rsa { n, e, .. } => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            B64URL.encode(e),
            B64URL.encode(n)
        ),
        KeyMaterial::Ec { family, key } => {
            // The parsed key keeps the uncompressed point we built: 0x04 || x || y.
            let point = key.as_ref();
            let width = (point.len().saturating_sub(1)) / 2;
            let crv = if *family == KeyFamily::P256 { "P-256" } else { "P-384" };
            let x = point.get(1..1 + width).unwrap_or_default();
            let y = point.get(1 + width..).unwrap_or_default();
            format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                B64URL.encode(x),
                B64URL.encode(y)
            )
        }
        KeyMaterial::Ed25519 { key } => format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            B64URL.encode(key.as_ref())
        ),
    };
    B64URL.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// Drops every key whose `kid` occurs more than once (RFC 7517 §4.5: the `kid` could not
/// identify the key, so neither may be used).
fn drop_duplicate_kids(keys: Vec<VerifyingKey>, warnings: &mut Vec<KeyWarning>) -> Vec<VerifyingKey> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for kid in keys.iter().filter_map(VerifyingKey::kid) {
        *counts.entry(kid.to_owned()).or_default() += 1;
    }
    keys.into_iter()
        .filter(|key| {
            let duplicated = key.kid().is_some_and(|kid| counts.get(kid).copied() > Some(1));
            if duplicated {
                warnings.push(KeyWarning {
                    kid: key.kid().map(|k| k.chars().take(64).collect()),
                    reason: "duplicate \"kid\": every key with this kid is ignored",
                });
            }
            !duplicated
        })
        .collect()
}

/// Detection of RSA moduli generated by the Infineon library affected by ROCA
/// (Nemec et al., "The Return of Coppersmith's Attack", CCS 2017, CVE-2017-15361).
///
/// Such primes have the form `k * M + (65537^a mod M)` where `M` is the product of the first
/// small primes (for moduli of 1984 bits and more, the only sizes accepted here, the first 126
/// primes: 2 to 701). Hence for every odd prime `r` up to 701, `n mod r` lies in the
/// multiplicative subgroup generated by 65537 modulo `r`. A random modulus passes all 125
/// tests with probability about 2^-167.
mod roca {
    /// Largest prime factor of `M` for the key sizes scopegate accepts.
    const LARGEST_PRIME: u32 = 701;

    pub(super) fn is_vulnerable(modulus: &[u8]) -> bool {
        (3..=LARGEST_PRIME)
            .filter(|&r| is_prime(r))
            .all(|r| in_subgroup_of_65537(mod_small(modulus, r), r))
    }

    fn is_prime(r: u32) -> bool {
        r >= 2 && (2..r).take_while(|d| d * d <= r).all(|d| !r.is_multiple_of(d))
    }

    fn mod_small(big_endian: &[u8], r: u32) -> u32 {
        big_endian.iter().fold(0u32, |acc, &b| ((acc << 8) | u32::from(b)) % r)
    }

    /// Whether `value` is a power of 65537 modulo the prime `r`.
    fn in_subgroup_of_65537(value: u32, r: u32) -> bool {
        let generator = 65537 % r;
        let mut power = 1u32;
        // The subgroup has at most r - 1 elements; stop when the powers cycle back to 1.
        for _ in 0..r {
            if power == value {
                return true;
            }
            power = power * generator % r;
            if power == 1 {
                return false;
            }
        }
        false
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn subgroup_membership() {
            // 65537 mod 13 = 4, whose powers mod 13 are {1, 4, 3, 12, 9, 10}.
            for v in [1, 4, 3, 12, 9, 10] {
                assert!(in_subgroup_of_65537(v, 13));
            }
            for v in [0, 2, 5, 6, 7, 8, 11] {
                assert!(!in_subgroup_of_65537(v, 13));
            }
        }

        #[test]
        fn small_modulus_reduction() {
            assert_eq!(mod_small(&[0x01, 0x00], 7), 256 % 7);
            assert_eq!(mod_small(&[], 7), 0);
        }
    }
}
