//! Reading certificates, keys and CA bundles from data sources.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use strait_model::tls::{DataSource, TlsCertificate};

use crate::TlsError;

/// The bytes of `source`. Blocks on file I/O: call at compile time only.
pub(crate) fn read(source: &DataSource) -> Result<Vec<u8>, TlsError> {
    match source {
        DataSource::Inline(b) => Ok(b.clone()),
        DataSource::File(p) => std::fs::read(p).map_err(|error| TlsError::Read {
            source_name: source.describe(),
            error,
        }),
    }
}

/// Every certificate in the PEM `source`; at least one.
pub(crate) fn certificates(source: &DataSource) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(source)?;
    let not_cert = || TlsError::NotCertificate {
        source_name: source.describe(),
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| not_cert())?;
    if certs.is_empty() {
        return Err(not_cert());
    }
    // PEM framing says nothing about the contents: parse each one so a
    // corrupt file is refused now, not at the first handshake.
    for c in &certs {
        webpki::EndEntityCert::try_from(c).map_err(|e| TlsError::BadCertificate {
            source_name: source.describe(),
            reason: format!("not a valid X.509 certificate ({e})"),
        })?;
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM `source`.
pub(crate) fn private_key(source: &DataSource) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(source)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::NotPrivateKey {
        source_name: source.describe(),
    })
}

/// A certified key for `cert`, checked for key/certificate agreement.
pub(crate) fn certified_key(cert: &TlsCertificate) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let chain = certificates(&cert.certificate_chain)?;
    let key = private_key(&cert.private_key)?;
    let provider = crate::provider();
    let signing =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadCertificate {
                source_name: cert.private_key.describe(),
                reason: e.to_string(),
            })?;
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| TlsError::KeyMismatch {
        source_name: cert.private_key.describe(),
        reason: e.to_string(),
    })?;
    Ok(ck)
}

/// A root store from the PEM bundle `source`.
pub(crate) fn roots(source: &DataSource) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certificates(source)? {
        store.add(c).map_err(|e| TlsError::BadCertificate {
            source_name: source.describe(),
            reason: format!("not usable as a trust anchor ({e})"),
        })?;
    }
    Ok(store)
}
