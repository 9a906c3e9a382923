//! Signing keys for the development issuer and their public JWK form.

use std::sync::Arc;

use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

use super::error::DevError;
use crate::token::signing::{SigningAlgorithm, SigningKeyError, SigningKeyPair};

/// base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `len` random bytes, base64url-encoded.
pub(crate) fn random_token(len: usize) -> String {
    let mut buf = vec![0u8; len];
    // The system RNG failing is not recoverable for a token issuer.
    rand::fill(&mut buf).expect("system random generator is available");
    b64url(&buf)
}

/// JWS signature algorithms the development issuer can sign with.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256 (fixed-width r||s signature).
    ES256,
    /// HMAC-SHA256. Only for hostile tests: a resource server must never
    /// accept symmetric tokens from a JWKS.
    HS256,
}

impl KeyAlg {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::RS256 => "RS256",
            KeyAlg::ES256 => "ES256",
            KeyAlg::HS256 => "HS256",
        }
    }
}

#[expect(clippy::large_enum_variant, reason = "one per key, behind an Arc")]
enum Material {
    Pair(SigningKeyPair),
    Hmac { key: hmac::Key, secret: Vec<u8> },
}

/// A private signing key with a key id. Cheap to clone (shared).
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<(String, Material)>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid())
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

fn crypto(error: SigningKeyError) -> DevError {
    DevError::Crypto(error.0)
}

impl SigningKey {
    fn new(kid: &str, material: Material) -> Self {
        Self {
            inner: Arc::new((kid.to_owned(), material)),
        }
    }

    fn pair(kid: &str, pair: SigningKeyPair) -> Self {
        Self::new(kid, Material::Pair(pair))
    }

    /// Generate an RSA key of 2048, 3072, 4096 or 8192 bits.
    ///
    /// aws-lc refuses to generate or sign with keys under 2048 bits, and so does this
    /// issuer: tests that need a hostile small key bring their own.
    pub fn generate_rsa(kid: &str, bits: usize) -> Result<Self, DevError> {
        let pair = SigningKeyPair::generate_rsa(bits).map_err(|e| DevError::Unsupported(e.0))?;
        Ok(Self::pair(kid, pair))
    }

    /// Load an RSA private key (PKCS#8 DER, 2048..=8192 bits).
    pub fn from_rsa_pkcs8_der(kid: &str, der: &[u8]) -> Result<Self, DevError> {
        let pair = SigningKeyPair::from_der(SigningAlgorithm::Rs256, der).map_err(crypto)?;
        Ok(Self::pair(kid, pair))
    }

    /// Generate an ECDSA P-256 key.
    pub fn generate_ec_p256(kid: &str) -> Result<Self, DevError> {
        let pair = SigningKeyPair::generate(SigningAlgorithm::Es256).map_err(crypto)?;
        Ok(Self::pair(kid, pair))
    }

    /// Load an ECDSA P-256 private key (PKCS#8 DER).
    pub fn from_ec_p256_pkcs8_der(kid: &str, der: &[u8]) -> Result<Self, DevError> {
        let pair = SigningKeyPair::from_der(SigningAlgorithm::Es256, der).map_err(crypto)?;
        Ok(Self::pair(kid, pair))
    }

    /// An HMAC-SHA256 key (hostile tests only).
    pub fn hmac(kid: &str, secret: &[u8]) -> Self {
        Self::new(
            kid,
            Material::Hmac {
                key: hmac::Key::new(hmac::HMAC_SHA256, secret),
                secret: secret.to_vec(),
            },
        )
    }

    /// Generate a key for `alg` (RSA keys are 2048-bit; HMAC secrets 32 bytes).
    pub fn generate(kid: &str, alg: KeyAlg) -> Result<Self, DevError> {
        match alg {
            KeyAlg::RS256 => Self::generate_rsa(kid, 2048),
            KeyAlg::ES256 => Self::generate_ec_p256(kid),
            KeyAlg::HS256 => {
                let mut secret = [0u8; 32];
                rand::fill(&mut secret).map_err(|_| DevError::Crypto("random".into()))?;
                Ok(Self::hmac(kid, &secret))
            }
        }
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.inner.0
    }

    /// The signature algorithm this key produces.
    pub fn alg(&self) -> KeyAlg {
        match &self.inner.1 {
            Material::Pair(pair) => match pair.algorithm() {
                SigningAlgorithm::Rs256 => KeyAlg::RS256,
                // The development issuer makes and loads no Ed25519 key.
                SigningAlgorithm::Es256 | SigningAlgorithm::EdDsa => KeyAlg::ES256,
            },
            Material::Hmac { .. } => KeyAlg::HS256,
        }
    }

    /// The JOSE `alg` name (`"RS256"`, `"ES256"`, `"HS256"`).
    pub fn alg_name(&self) -> &'static str {
        self.alg().name()
    }

    /// RSA modulus size in bits (None for non-RSA keys).
    pub fn rsa_bits(&self) -> Option<usize> {
        self.rsa_components().map(|(n, _)| {
            n.first()
                .map_or(0, |b| (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize))
        })
    }

    /// The public JWK. For HMAC keys this is `{"kty":"oct","k":...}`, i.e.
    /// it discloses the secret (hostile tests publish it on purpose).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.inner.1 {
            Material::Pair(pair) => pair.public_members(),
            Material::Hmac { secret, .. } => {
                let mut members = Map::new();
                members.insert("kty".into(), "oct".into());
                members.insert("k".into(), b64url(secret).into());
                members
            }
        };
        jwk.insert("kid".into(), self.kid().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), self.alg_name().into());
        Value::Object(jwk)
    }

    /// Sign a JWS signing input: RSA PKCS#1 v1.5 SHA-256, ECDSA P-256
    /// fixed-width r||s, or HMAC-SHA256.
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        match &self.inner.1 {
            Material::Pair(pair) => pair.sign(signing_input),
            Material::Hmac { key, .. } => hmac::sign(key, signing_input).as_ref().to_vec(),
        }
    }

    /// RSA public components `(n, e)`, big-endian without leading zeros.
    pub fn rsa_components(&self) -> Option<(&[u8], &[u8])> {
        match &self.inner.1 {
            Material::Pair(pair) => pair.rsa_components(),
            Material::Hmac { .. } => None,
        }
    }

    /// PKCS#1 `RSAPublicKey` DER (what `DecodingKey::from_rsa_der` takes):
    /// the bytes a key-confusion attacker would use as an HMAC secret.
    pub fn rsa_public_key_der(&self) -> Option<Vec<u8>> {
        let (n, e) = self.rsa_components()?;
        let mut body = der_integer(n);
        body.extend(der_integer(e));
        Some(der_tlv(0x30, &body))
    }

    /// X.509 `SubjectPublicKeyInfo` DER of the RSA public key.
    pub fn rsa_public_key_spki_der(&self) -> Option<Vec<u8>> {
        let pkcs1 = self.rsa_public_key_der()?;
        // AlgorithmIdentifier { rsaEncryption, NULL }
        let mut body = vec![
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ];
        let mut bits = vec![0u8];
        bits.extend(pkcs1);
        body.extend(der_tlv(0x03, &bits));
        Some(der_tlv(0x30, &body))
    }

    /// PEM (`-----BEGIN PUBLIC KEY-----`) of the RSA public key: the classic
    /// HMAC secret of an RS256→HS256 confusion attack.
    pub fn rsa_public_key_pem(&self) -> Option<String> {
        let der = self.rsa_public_key_spki_der()?;
        let b64 = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Some(pem)
    }

    /// PKCS#8 DER of an RSA or EC private key, for
    /// use with other JWT libraries (e.g. `EncodingKey::from_ec_der`).
    pub fn private_key_pkcs8_der(&self) -> Option<Vec<u8>> {
        match &self.inner.1 {
            Material::Pair(pair) => pair.private_key_pkcs8_der(),
            Material::Hmac { .. } => None,
        }
    }

    /// The raw HMAC secret (None for asymmetric keys).
    pub fn hmac_secret(&self) -> Option<&[u8]> {
        match &self.inner.1 {
            Material::Hmac { secret, .. } => Some(secret),
            _ => None,
        }
    }
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

fn der_tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(body.len()));
    out.extend_from_slice(body);
    out
}

fn der_integer(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut body = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend(trimmed);
    der_tlv(0x02, &body)
}

/// Seconds since the Unix epoch (0 before it, saturating after `i64::MAX`).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_lc_rs::signature;

    #[test]
    fn rsa_der_round_trips_through_aws_lc() {
        let key = SigningKey::generate_rsa("k1", 2048).unwrap();
        let der = key.rsa_public_key_der().unwrap();
        let sig = key.sign(b"msg");
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(b"msg", &sig)
            .unwrap();
        assert_eq!(key.rsa_bits(), Some(2048));
        assert!(
            key.rsa_public_key_pem()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
    }

    #[test]
    fn ec_signature_is_fixed_width_and_verifies() {
        let key = SigningKey::generate_ec_p256("e1").unwrap();
        let sig = key.sign(b"msg");
        assert_eq!(sig.len(), 64);
        let jwk = key.public_jwk();
        assert_eq!(jwk["crv"], "P-256");
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(b"msg", &sig)
            .unwrap();
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        assert!(matches!(
            SigningKey::generate_rsa("weak", 1024),
            Err(DevError::Unsupported(_))
        ));
    }
}
