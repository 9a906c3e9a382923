//! A hostile 1024-bit RSA key (`tests/fixtures/weak-rsa-1024.json`) and RS256 tokens signed
//! with it. scopegate must refuse RSA keys under 2048 bits; aws-lc will not sign with them
//! either, so the signatures come from the RustCrypto `rsa` crate (pure Rust, a
//! dev-dependency only). Tokens are still minted in the test, with the test's own claims.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::SigningKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::{BigUint, RsaPrivateKey};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../fixtures/weak-rsa-1024.json");

/// The fixture key under a key id chosen by the test.
pub struct WeakRsaKey {
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
    signer: SigningKey<Sha256>,
}

impl WeakRsaKey {
    pub fn load(kid: &str) -> Self {
        let jwk: Value = serde_json::from_str(FIXTURE).expect("the fixture is a JSON object");
        let member = |name: &str| {
            let text = jwk[name]
                .as_str()
                .expect("the fixture JWK has every RSA private member");
            URL_SAFE_NO_PAD
                .decode(text)
                .expect("the fixture JWK members are base64url")
        };
        let uint = |name: &str| BigUint::from_bytes_be(&member(name));
        let private = RsaPrivateKey::from_components(uint("n"), uint("e"), uint("d"), vec![uint("p"), uint("q")])
            .expect("the fixture is a consistent RSA key");
        WeakRsaKey {
            kid: kid.to_owned(),
            n: member("n"),
            e: member("e"),
            signer: SigningKey::new(private),
        }
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.n
            .first()
            .map_or(0, |b| self.n.len() * 8 - b.leading_zeros() as usize)
    }

    /// Public components `(n, e)`, big-endian.
    pub fn components(&self) -> (&[u8], &[u8]) {
        (&self.n, &self.e)
    }

    /// The public JWK an issuer would publish for it.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&self.n), "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }

    /// A compact JWS with exactly this header and these claims, RS256-signed by the key.
    pub fn mint(&self, header: &Value, claims: &Value) -> String {
        let segment = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let input = format!("{}.{}", segment(header), segment(claims));
        let signature = self.signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
