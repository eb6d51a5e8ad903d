//! A token's signature against a key set, with `ring`: the key is chosen as
//! Envoy chooses it (a `kid` in both must agree, a key's `alg` must be the
//! token's; a token without `kid` tries every key).

use ring::{hmac, signature};

use crate::{
    jwks::{Curve, Jwks, KeyMaterial},
    status::Status,
    token::{Alg, Jwt},
};

/// Verifies `jwt`'s signature with the first key of `jwks` that checks it.
/// Pure: no clock, no I/O.
pub fn verify_signature(jwt: &Jwt<'_>, jwks: &Jwks) -> Result<(), Status> {
    let msg = jwt.signed.as_bytes();
    let sig = jwt.signature.as_slice();
    let mut matched = false;
    for key in &jwks.keys {
        if !jwt.kid.is_empty() && !key.kid.is_empty() && key.kid != jwt.kid {
            continue;
        }
        if !key.alg.is_empty() && key.alg != jwt.alg_name {
            continue;
        }
        matched = true;
        let ok = match (&key.key, jwt.alg) {
            (KeyMaterial::Rsa { n, e }, alg) => rsa(alg).is_some_and(|params| {
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }),
            (KeyMaterial::Ec { curve, point }, alg) => ecdsa(*curve, alg).is_some_and(|params| {
                signature::UnparsedPublicKey::new(params, point)
                    .verify(msg, sig)
                    .is_ok()
            }),
            (KeyMaterial::Ed25519(x), Alg::EdDsa) => {
                if sig.len() != 64 {
                    return Err(Status::JwtEd25519SignatureWrongLength);
                }
                signature::UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(msg, sig)
                    .is_ok()
            }
            (KeyMaterial::Ed25519(_), _) => false,
            (KeyMaterial::Hmac(k), alg) => {
                hmac_alg(alg).is_some_and(|a| hmac::verify(&hmac::Key::new(a, k), msg, sig).is_ok())
            }
        };
        if ok {
            return Ok(());
        }
    }
    Err(if matched {
        Status::JwtVerificationFail
    } else {
        Status::JwksKidAlgMismatch
    })
}

fn rsa(alg: Alg) -> Option<&'static signature::RsaParameters> {
    Some(match alg {
        Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// The curve is the key's, the digest the token's; `ring` verifies the
/// matching pairs in JOSE's fixed `r || s` form.
fn ecdsa(curve: Curve, alg: Alg) -> Option<&'static signature::EcdsaVerificationAlgorithm> {
    Some(match (curve, alg) {
        (Curve::P256, Alg::Es256) => &signature::ECDSA_P256_SHA256_FIXED,
        (Curve::P384, Alg::Es384) => &signature::ECDSA_P384_SHA384_FIXED,
        _ => return None,
    })
}

fn hmac_alg(alg: Alg) -> Option<hmac::Algorithm> {
    Some(match alg {
        Alg::Hs256 => hmac::HMAC_SHA256,
        Alg::Hs384 => hmac::HMAC_SHA384,
        Alg::Hs512 => hmac::HMAC_SHA512,
        _ => return None,
    })
}
