//! JSON Web Key Sets: RSA (`n`, `e`), EC (`x`, `y` on P-256 and P-384),
//! OKP (Ed25519 `x`) and `oct` (HMAC `k`) keys, as Envoy's
//! `jwt_verify_lib` reads them: a key that cannot be used is skipped, a set
//! with no usable key is refused.

use serde_json::{Map, Value};

use crate::{status::Status, token::b64};

/// One usable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`; empty when absent.
    pub kid: String,
    /// `alg`; empty when absent (then any algorithm of the key type).
    pub alg: String,
    pub key: KeyMaterial,
}

/// The public (or, for HMAC, shared) key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent, leading zeros removed.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`) on P-256 or P-384.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    /// A 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
    Hmac(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    /// Parsed (Envoy accepts it) but not verifiable with `ring`: every
    /// signature checked against it fails.
    P521,
}

impl Curve {
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A parsed key set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document. `Err` as Envoy's status for an unusable set.
    pub fn parse(text: &str) -> Result<Jwks, Status> {
        let doc: Value = serde_json::from_str(text).map_err(|_| Status::JwksParseError)?;
        let Some(obj) = doc.as_object() else {
            return Err(Status::JwksParseError);
        };
        let Some(keys) = obj.get("keys") else {
            return Err(Status::JwksNoKeys);
        };
        let Some(keys) = keys.as_array() else {
            return Err(Status::JwksBadKeys);
        };
        let keys: Vec<Jwk> = keys
            .iter()
            .filter_map(Value::as_object)
            .filter_map(|k| jwk(k).ok())
            .collect();
        if keys.is_empty() {
            return Err(Status::JwksNoValidKeys);
        }
        Ok(Jwks { keys })
    }
}

/// Why one key was skipped (kept for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    Kty,
    Alg,
    Field,
    Value,
}

fn string<'a>(k: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, KeyError> {
    match k.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyError::Field),
    }
}

fn required<'a>(k: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyError> {
    string(k, name)?.ok_or(KeyError::Field)
}

pub(crate) fn jwk(k: &Map<String, Value>) -> Result<Jwk, KeyError> {
    let kty = string(k, "kty")?.ok_or(KeyError::Kty)?;
    let kid = string(k, "kid").ok().flatten().unwrap_or("").to_owned();
    let alg = string(k, "alg").ok().flatten().unwrap_or("").to_owned();
    let key = match kty {
        "RSA" => {
            if !alg.is_empty() && !alg.starts_with("RS") && !alg.starts_with("PS") {
                return Err(KeyError::Alg);
            }
            let n = unsigned(&b64(required(k, "n")?).ok_or(KeyError::Value)?);
            let e = unsigned(&b64(required(k, "e")?).ok_or(KeyError::Value)?);
            // jwt_verify_lib refuses non-standard exponents early.
            if e != [3] && e != [1, 0, 1] || n.is_empty() {
                return Err(KeyError::Value);
            }
            KeyMaterial::Rsa { n, e }
        }
        "EC" => {
            if !alg.is_empty() && !alg.starts_with("ES") {
                return Err(KeyError::Alg);
            }
            let crv = string(k, "crv")?.unwrap_or("");
            let curve = match (alg.as_str(), crv) {
                ("ES256", "P-256" | "") | ("", "P-256" | "") => Curve::P256,
                ("ES384", "P-384" | "") | ("", "P-384") => Curve::P384,
                ("ES512", "P-521" | "") | ("", "P-521") => Curve::P521,
                _ => return Err(KeyError::Alg),
            };
            let x = b64(required(k, "x")?).ok_or(KeyError::Value)?;
            let y = b64(required(k, "y")?).ok_or(KeyError::Value)?;
            let len = curve.coordinate_len();
            let (x, y) = (unsigned(&x), unsigned(&y));
            if x.len() > len || y.len() > len {
                return Err(KeyError::Value);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            for c in [&x, &y] {
                point.extend(std::iter::repeat_n(0, len - c.len()));
                point.extend_from_slice(c);
            }
            KeyMaterial::Ec { curve, point }
        }
        "OKP" => {
            if !alg.is_empty() && alg != "EdDSA" {
                return Err(KeyError::Alg);
            }
            if required(k, "crv")? != "Ed25519" {
                return Err(KeyError::Value);
            }
            let x = b64(required(k, "x")?).ok_or(KeyError::Value)?;
            if x.len() != 32 {
                return Err(KeyError::Value);
            }
            KeyMaterial::Ed25519(x)
        }
        "oct" => {
            if !alg.is_empty() && !matches!(alg.as_str(), "HS256" | "HS384" | "HS512") {
                return Err(KeyError::Alg);
            }
            let key = b64(required(k, "k")?).ok_or(KeyError::Value)?;
            if key.is_empty() {
                return Err(KeyError::Value);
            }
            KeyMaterial::Hmac(key)
        }
        _ => return Err(KeyError::Kty),
    };
    Ok(Jwk { kid, alg, key })
}

/// A big-endian integer without its leading zero bytes.
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}
