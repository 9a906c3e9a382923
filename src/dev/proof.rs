//! A DPoP client for tests and the demo (RFC 9449 §4): a key pair and the proofs it signs,
//! including hostile ones (any header or claim can be changed before signing).

use serde_json::{Map, Value, json};

use super::error::DevError;
use super::keys::{KeyAlg, SigningKey, b64url, random_token};
use super::mint::mint;

/// A DPoP key pair.
#[derive(Clone, Debug)]
pub struct DpopProver {
    key: SigningKey,
}

impl DpopProver {
    /// A prover with a fresh key (`RS256` or `ES256`).
    ///
    /// # Errors
    /// When the key cannot be generated.
    pub fn generate(alg: KeyAlg) -> Result<DpopProver, DevError> {
        Ok(DpopProver {
            key: SigningKey::generate("dpop", alg)?,
        })
    }

    /// The public key as the proof's `jwk` header carries it (no `kid`).
    pub fn jwk(&self) -> Value {
        let mut jwk = self.key.public_jwk();
        if let Some(obj) = jwk.as_object_mut() {
            obj.remove("kid");
        }
        jwk
    }

    /// RFC 7638 thumbprint of the key: the `cnf.jkt` of tokens bound to it.
    pub fn thumbprint(&self) -> String {
        crate::token::jwk::parse_jwk(&self.jwk()).map_or_else(|_| String::new(), |key| key.thumbprint().to_owned())
    }

    /// The header and claims of a proof for `method` and `uri`, with `ath` for `token` and the
    /// server's `nonce` when given.
    pub fn parts(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> (Value, Map<String, Value>) {
        let header = json!({ "typ": "dpop+jwt", "alg": self.key.alg_name(), "jwk": self.jwk() });
        let mut claims = Map::new();
        claims.insert("jti".into(), random_token(12).into());
        claims.insert("htm".into(), method.into());
        claims.insert("htu".into(), uri.into());
        claims.insert("iat".into(), super::state::now_unix().into());
        if let Some(token) = token {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            claims.insert("ath".into(), b64url(hash.as_ref()).into());
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.into());
        }
        (header, claims)
    }

    /// Signs `header` and `claims` with this key (whatever they say).
    pub fn sign(&self, header: &Value, claims: &Map<String, Value>) -> String {
        mint(header, &Value::Object(claims.clone()), &self.key)
    }

    /// A valid proof.
    pub fn proof(&self, method: &str, uri: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        let (header, claims) = self.parts(method, uri, token, nonce);
        self.sign(&header, &claims)
    }

    /// The private key (for tests that put private members in a proof's `jwk`).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}
