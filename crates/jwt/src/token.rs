//! A JWT taken apart as Envoy's `jwt_verify_lib` does: three base64url
//! sections, a JSON header with a supported `alg`, a JSON payload whose
//! registered claims have the right types.

use base64::{
    Engine,
    alphabet::URL_SAFE,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use serde_json::{Map, Value};

use crate::status::Status;

/// base64url with or without padding, as absl's web-safe decoder takes it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64url (padding optional).
pub(crate) fn b64(text: &str) -> Option<Vec<u8>> {
    B64.decode(text).ok()
}

/// The algorithms Envoy implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    Hs256,
    Hs384,
    Hs512,
    EdDsa,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// A parsed (not yet verified) token, borrowing the request's text.
#[derive(Debug, Clone)]
pub struct Jwt<'a> {
    pub alg: Alg,
    /// The header's `alg` as written (keys' `alg` is compared with it).
    pub alg_name: String,
    /// `kid`; empty when absent.
    pub kid: String,
    pub iss: String,
    pub sub: String,
    pub audiences: Vec<String>,
    /// 0 when absent.
    pub exp: u64,
    pub nbf: u64,
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    /// `header.payload`: what the signature covers.
    pub signed: &'a str,
    /// The payload section as received (base64url).
    pub payload_b64: &'a str,
    pub signature: Vec<u8>,
}

impl<'a> Jwt<'a> {
    pub fn parse(token: &'a str) -> Result<Jwt<'a>, Status> {
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(Status::JwtBadFormat);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Status::JwtBadFormat);
        };
        if h.is_empty() || p.is_empty() || s.is_empty() {
            return Err(Status::JwtBadFormat);
        }
        let header = b64(h).ok_or(Status::JwtHeaderParseErrorBadBase64)?;
        let header = json_object(&header).ok_or(Status::JwtHeaderParseErrorBadJson)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(Status::JwtHeaderBadAlg),
        };
        let alg = Alg::parse(&alg_name).ok_or(Status::JwtHeaderNotImplementedAlg)?;
        let kid = match header.get("kid") {
            None => String::new(),
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err(Status::JwtHeaderBadKid),
        };
        let payload = b64(p).ok_or(Status::JwtPayloadParseErrorBadBase64)?;
        let payload = json_object(&payload).ok_or(Status::JwtPayloadParseErrorBadJson)?;
        let text = |name: &str, bad: Status| match payload.get(name) {
            None => Ok(String::new()),
            Some(Value::String(v)) => Ok(v.clone()),
            Some(_) => Err(bad),
        };
        let iss = text("iss", Status::JwtPayloadParseErrorIssNotString)?;
        let sub = text("sub", Status::JwtPayloadParseErrorSubNotString)?;
        let number = |name: &str, bad: Status, range: Status| match payload.get(name) {
            None => Ok(0),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(v), _) => Ok(v),
                // A whole number outside 0..2^64, or a fraction.
                (None, Some(f)) if f.fract() == 0.0 => Err(range),
                _ => Err(bad),
            },
            Some(_) => Err(bad),
        };
        number(
            "iat",
            Status::JwtPayloadParseErrorIatNotInteger,
            Status::JwtPayloadParseErrorIatOutOfRange,
        )?;
        let nbf = number(
            "nbf",
            Status::JwtPayloadParseErrorNbfNotInteger,
            Status::JwtPayloadParseErrorNbfOutOfRange,
        )?;
        let exp = number(
            "exp",
            Status::JwtPayloadParseErrorExpNotInteger,
            Status::JwtPayloadParseErrorExpOutOfRange,
        )?;
        text("jti", Status::JwtPayloadParseErrorJtiNotString)?;
        let audiences = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Status::JwtPayloadParseErrorAudNotString)?,
            Some(_) => return Err(Status::JwtPayloadParseErrorAudNotString),
        };
        let signature = b64(s).ok_or(Status::JwtSignatureParseErrorBadBase64)?;
        Ok(Jwt {
            alg,
            alg_name,
            kid,
            iss,
            sub,
            audiences,
            exp,
            nbf,
            header,
            payload,
            signed: &token[..h.len() + 1 + p.len()],
            payload_b64: p,
            signature,
        })
    }

    /// `nbf` and `exp` against `now` (Unix seconds) with `skew` seconds of
    /// tolerance either way.
    pub fn check_time(&self, now: u64, skew: u64) -> Result<(), Status> {
        if now.saturating_add(skew) < self.nbf {
            return Err(Status::JwtNotYetValid);
        }
        if self.exp != 0 && now > self.exp.saturating_add(skew) {
            return Err(Status::JwtExpired);
        }
        Ok(())
    }
}

fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Whether `jwt_audiences` satisfies `allowed` (empty allows any), with
/// `http://`, `https://` and a trailing `/` ignored on both sides.
pub fn audiences_allowed(allowed: &[String], jwt_audiences: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    jwt_audiences
        .iter()
        .any(|a| allowed.iter().any(|c| sanitize(c) == sanitize(a)))
}

fn sanitize(aud: &str) -> &str {
    let a = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    a.strip_suffix('/').unwrap_or(a)
}
