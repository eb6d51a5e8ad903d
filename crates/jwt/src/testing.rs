//! Test keys and token signing, for this crate's tests and benchmark and
//! the end-to-end tests (feature `testing`; never in a proxy build).
//! `ring` cannot generate RSA keys, so RSA keys come from a PKCS#8 file
//! (`tests/fixtures/jwt/rsa2048.pk8.der`); EC and Ed25519 keys are made
//! fresh.

use base64::Engine;
use ring::{
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, usize),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

/// A signing key with its JWK.
pub struct TestKey {
    /// `kid`; empty for none.
    pub kid: String,
    /// The `alg` tokens are signed with.
    pub alg: String,
    /// Whether the JWK names its `alg`.
    pub jwk_alg: bool,
    signer: Signer,
}

impl TestKey {
    /// An RSA key from PKCS#8 DER, signing with `alg` (RS*/PS*).
    pub fn rsa(pkcs8: &[u8], kid: &str, alg: &str) -> TestKey {
        let k = RsaKeyPair::from_pkcs8(pkcs8).expect("an RSA PKCS#8 key");
        TestKey::new(kid, alg, Signer::Rsa(k))
    }

    /// A fresh P-256 (`ES256`) or P-384 (`ES384`) key.
    pub fn ec(kid: &str, alg: &str) -> TestKey {
        let (a, len) = match alg {
            "ES384" => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, 48),
            _ => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, 32),
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(a, &rng).expect("EC key");
        let k = EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref(), &rng).expect("EC key");
        TestKey::new(kid, alg, Signer::Ec(k, len))
    }

    /// A fresh Ed25519 key (`EdDSA`).
    pub fn ed25519(kid: &str) -> TestKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key");
        let k = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
        TestKey::new(kid, "EdDSA", Signer::Ed(k))
    }

    /// An HMAC secret (`HS256`/`HS384`/`HS512`).
    pub fn hmac(kid: &str, alg: &str, secret: &[u8]) -> TestKey {
        TestKey::new(kid, alg, Signer::Hmac(secret.to_vec()))
    }

    fn new(kid: &str, alg: &str, signer: Signer) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg: alg.to_owned(),
            jwk_alg: true,
            signer,
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let mut j = match &self.signer {
            Signer::Rsa(k) => {
                let c: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty": "RSA", "n": B64.encode(&c.n), "e": B64.encode(&c.e)})
            }
            Signer::Ec(k, len) => {
                let p = k.public_key().as_ref();
                let (x, y) = p[1..].split_at(*len);
                let crv = if *len == 48 { "P-384" } else { "P-256" };
                json!({"kty": "EC", "crv": crv, "x": B64.encode(x), "y": B64.encode(y)})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.public_key().as_ref())})
            }
            Signer::Hmac(s) => json!({"kty": "oct", "k": B64.encode(s)}),
        };
        if !self.kid.is_empty() {
            j["kid"] = json!(self.kid);
        }
        if self.jwk_alg {
            j["alg"] = json!(self.alg);
        }
        j
    }

    /// A token with `payload`, signed by this key (its `kid` in the header).
    pub fn sign(&self, payload: &Value) -> String {
        let mut header = json!({"alg": self.alg, "typ": "JWT"});
        if !self.kid.is_empty() {
            header["kid"] = json!(self.kid);
        }
        self.sign_with_header(&header, payload)
    }

    /// A token with the given header and payload, signed by this key.
    pub fn sign_with_header(&self, header: &Value, payload: &Value) -> String {
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let rng = SystemRandom::new();
        let sig: Vec<u8> = match &self.signer {
            Signer::Rsa(k) => {
                let pad: &dyn signature::RsaEncoding = match self.alg.as_str() {
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(pad, &rng, signed.as_bytes(), &mut out)
                    .expect("RSA signs");
                out
            }
            Signer::Ec(k, _) => k
                .sign(&rng, signed.as_bytes())
                .expect("EC signs")
                .as_ref()
                .to_vec(),
            Signer::Ed(k) => k.sign(signed.as_bytes()).as_ref().to_vec(),
            Signer::Hmac(s) => {
                let a = match self.alg.as_str() {
                    "HS384" => ring::hmac::HMAC_SHA384,
                    "HS512" => ring::hmac::HMAC_SHA512,
                    _ => ring::hmac::HMAC_SHA256,
                };
                ring::hmac::sign(&ring::hmac::Key::new(a, s), signed.as_bytes())
                    .as_ref()
                    .to_vec()
            }
        };
        format!("{signed}.{}", B64.encode(sig))
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// The committed RSA test key (PKCS#8 DER).
pub const RSA_PKCS8: &[u8] = include_bytes!("../../../tests/fixtures/jwt/rsa2048.pk8.der");
