//! JWS signing with aws-lc-rs: the asymmetric key pairs scopegate signs with (its identity
//! assertions, and the development issuer's tokens), their public JWK, and the compact
//! serialization (RFC 7515 §7.1). Verification stays in [`super::jws`]; the two share the
//! base64url alphabet and the RFC 7638 thumbprint.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::jwk::{B64URL, parse_jwk};

/// The asymmetric algorithms scopegate signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256, fixed-width `r || s` (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3), 2048 to 8192 bits.
    Rs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm a JOSE `alg` name stands for, among those scopegate signs with.
    pub fn from_name(name: &str) -> Option<SigningAlgorithm> {
        [
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
            SigningAlgorithm::EdDsa,
        ]
        .into_iter()
        .find(|alg| alg.name() == name)
    }
}

/// Why a private key cannot be used for signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SigningKeyError(pub String);

enum Pair {
    Rsa { pair: RsaKeyPair, n: Vec<u8>, e: Vec<u8> },
    Ec { pair: EcdsaKeyPair, x: Vec<u8>, y: Vec<u8> },
    Ed { pair: Ed25519KeyPair, x: Vec<u8> },
}

/// An asymmetric private key and its public half.
pub struct SigningKeyPair(Pair);

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// A fresh key: P-256 for ES256, 2048-bit RSA for RS256, Ed25519 for EdDSA.
    ///
    /// # Errors
    /// Only when aws-lc cannot generate the key (no system randomness).
    pub fn generate(alg: SigningAlgorithm) -> Result<SigningKeyPair, SigningKeyError> {
        let failed = |_| SigningKeyError(format!("{} key generation failed", alg.name()));
        match alg {
            SigningAlgorithm::Es256 => {
                Self::from_ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?)
            }
            SigningAlgorithm::Rs256 => Self::generate_rsa(2048),
            SigningAlgorithm::EdDsa => Ok(Self::from_ed(Ed25519KeyPair::generate().map_err(failed)?)),
        }
    }

    /// A fresh RSA key of 2048, 3072, 4096 or 8192 bits (aws-lc refuses smaller ones).
    ///
    /// # Errors
    /// Another size, or no system randomness.
    pub fn generate_rsa(bits: usize) -> Result<SigningKeyPair, SigningKeyError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            8192 => KeySize::Rsa8192,
            _ => {
                return Err(SigningKeyError(format!(
                    "RSA keys of 2048, 3072, 4096 or 8192 bits, not {bits}"
                )));
            }
        };
        let pair = RsaKeyPair::generate(size).map_err(|_| SigningKeyError("RSA key generation failed".into()))?;
        Ok(Self::from_rsa(pair))
    }

    /// Reads a private key in DER for `alg`: PKCS#8 for every algorithm, PKCS#1 for RSA,
    /// SEC1 (RFC 5915) for P-256.
    ///
    /// # Errors
    /// The key is not one `alg` signs with (another type or curve, an RSA key outside
    /// 2048..=8192 bits) or cannot be parsed.
    pub fn from_der(alg: SigningAlgorithm, der: &[u8]) -> Result<SigningKeyPair, SigningKeyError> {
        let refused =
            |e: &dyn std::fmt::Display| SigningKeyError(format!("not a usable {} private key: {e}", alg.name()));
        match alg {
            SigningAlgorithm::Es256 => {
                let fixed = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pair = EcdsaKeyPair::from_pkcs8(fixed, der)
                    .or_else(|_| EcdsaKeyPair::from_private_key_der(fixed, der))
                    .map_err(|e| refused(&e))?;
                Self::from_ec(pair)
            }
            SigningAlgorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(|e| refused(&e))?;
                Ok(Self::from_rsa(pair))
            }
            SigningAlgorithm::EdDsa => Ok(Self::from_ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| refused(&e))?,
            )),
        }
    }

    fn from_rsa(pair: RsaKeyPair) -> SigningKeyPair {
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        SigningKeyPair(Pair::Rsa { pair, n, e })
    }

    fn from_ec(pair: EcdsaKeyPair) -> Result<SigningKeyPair, SigningKeyError> {
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(SigningKeyError("unexpected EC public key encoding".into()));
        }
        let (x, y) = (point[1..33].to_vec(), point[33..].to_vec());
        Ok(SigningKeyPair(Pair::Ec { pair, x, y }))
    }

    fn from_ed(pair: Ed25519KeyPair) -> SigningKeyPair {
        let x = pair.public_key().as_ref().to_vec();
        SigningKeyPair(Pair::Ed { pair, x })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match &self.0 {
            Pair::Rsa { .. } => SigningAlgorithm::Rs256,
            Pair::Ec { .. } => SigningAlgorithm::Es256,
            Pair::Ed { .. } => SigningAlgorithm::EdDsa,
        }
    }

    /// The public key's JWK members (`kty`, and `n`/`e`, `crv`/`x`/`y` or `crv`/`x`), without
    /// `kid`, `alg` or `use`, which the key's owner adds.
    pub fn public_members(&self) -> Map<String, Value> {
        let b64 = |bytes: &[u8]| Value::String(B64URL.encode(bytes));
        let members = match &self.0 {
            Pair::Rsa { n, e, .. } => json!({ "kty": "RSA", "n": b64(n), "e": b64(e) }),
            Pair::Ec { x, y, .. } => json!({ "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y) }),
            Pair::Ed { x, .. } => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(x) }),
        };
        match members {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The RFC 7638 thumbprint of the public key, computed by the verifier's own JWK reader.
    pub fn thumbprint(&self) -> String {
        parse_jwk(&Value::Object(self.public_members()))
            .map(|key| key.thumbprint().to_owned())
            .unwrap_or_default()
    }

    /// Signs a JWS signing input.
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        match &self.0 {
            Pair::Rsa { pair, .. } => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rand::SystemRandom::new(),
                    signing_input,
                    &mut sig,
                )
                .expect(
                    "RSA signing with a parsed key and a modulus-sized buffer fails only without system randomness",
                );
                sig
            }
            Pair::Ec { pair, .. } => pair
                .sign(&rand::SystemRandom::new(), signing_input)
                .expect("ECDSA signing with a parsed key fails only without system randomness")
                .as_ref()
                .to_vec(),
            Pair::Ed { pair, .. } => pair.sign(signing_input).as_ref().to_vec(),
        }
    }

    /// RSA public components `(n, e)`, big-endian without leading zeros.
    pub fn rsa_components(&self) -> Option<(&[u8], &[u8])> {
        match &self.0 {
            Pair::Rsa { n, e, .. } => Some((n, e)),
            _ => None,
        }
    }

    /// The private key as PKCS#8 DER (RSA and P-256 keys).
    pub fn private_key_pkcs8_der(&self) -> Option<Vec<u8>> {
        match &self.0 {
            Pair::Rsa { pair, .. } => pair.as_der().ok().map(|d| d.as_ref().to_vec()),
            Pair::Ec { pair, .. } => pair.to_pkcs8v1().ok().map(|d| d.as_ref().to_vec()),
            Pair::Ed { .. } => None,
        }
    }
}

/// base64url without padding of a JSON value (RFC 7515 §2).
pub fn encode_json(value: &Value) -> String {
    // Serializing a `serde_json::Value` cannot fail: every key is a string.
    B64URL.encode(serde_json::to_vec(value).expect("a JSON value serializes"))
}

/// `"<header>.<payload>.<signature>"` over already-encoded segments (RFC 7515 §7.1).
pub fn sign_compact(header_b64: &str, payload_b64: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let signature = sign(input.as_bytes());
    format!("{input}.{}", B64URL.encode(signature))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_the_verifier() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
            SigningAlgorithm::EdDsa,
        ] {
            let pair = SigningKeyPair::generate(alg).unwrap();
            let mut jwk = pair.public_members();
            jwk.insert("alg".into(), alg.name().into());
            let key = parse_jwk(&Value::Object(jwk)).unwrap();
            let verifier_alg = crate::token::jwk::Algorithm::from_name(alg.name()).unwrap();
            assert!(key.verify(verifier_alg, b"msg", &pair.sign(b"msg")), "{alg:?}");
            assert!(!key.verify(verifier_alg, b"other", &pair.sign(b"msg")), "{alg:?}");
            assert_eq!(pair.thumbprint(), key.thumbprint());
        }
    }

    #[test]
    fn a_key_of_another_type_is_refused() {
        let ec = SigningKeyPair::generate(SigningAlgorithm::Es256).unwrap();
        let der = ec.private_key_pkcs8_der().unwrap();
        assert!(SigningKeyPair::from_der(SigningAlgorithm::Rs256, &der).is_err());
        assert!(SigningKeyPair::from_der(SigningAlgorithm::Es256, &der).is_ok());
    }
}
