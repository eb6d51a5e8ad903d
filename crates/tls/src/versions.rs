//! `tls_params`: protocol versions and TLS 1.2 cipher suites, mapped from
//! Envoy's (OpenSSL) names onto what rustls implements.

use rustls::{CipherSuite, SupportedProtocolVersion, crypto::CryptoProvider};
use strait_model::tls::{CommonTls, TlsVersion};

use crate::TlsError;

/// The OpenSSL names Envoy accepts that rustls implements. TLS 1.3 suites
/// are not configurable in Envoy either, so they are always enabled.
const TLS12_NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// BoringSSL names Envoy accepts for TLS 1.2 suites without forward
/// secrecy (RSA key exchange), which rustls does not implement. Istio lists
/// both last in its default `cipher_suites`, after the ECDHE ones; they are
/// left out of what is offered rather than refusing the whole context: a
/// peer that speaks only these (never another sidecar) cannot connect.
const WITHOUT_FORWARD_SECRECY: &[&str] = &["AES128-GCM-SHA256", "AES256-GCM-SHA384"];

/// Which side a context is for: Envoy's `TLS_AUTO` maximum differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The provider restricted to `common.cipher_suites` (TLS 1.2; TLS 1.3
/// suites stay), and the protocol versions `tls_params` allow.
pub(crate) fn provider_and_versions(
    common: &CommonTls,
    side: Side,
) -> Result<(CryptoProvider, Vec<&'static SupportedProtocolVersion>), TlsError> {
    let mut provider = crate::provider();
    if !common.cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for entry in &common.cipher_suites {
            // Envoy (BoringSSL) allows equal-preference groups: "[A|B]".
            let group = entry.trim_start_matches('[').trim_end_matches(']');
            for name in group.split('|') {
                if WITHOUT_FORWARD_SECRECY.contains(&name) {
                    continue;
                }
                let Some((_, suite)) = TLS12_NAMES.iter().find(|(n, _)| *n == name) else {
                    let known: Vec<&str> = TLS12_NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(TlsError::UnknownCipher(name.to_owned(), known.join(", ")));
                };
                wanted.push(*suite);
            }
        }
        if wanted.is_empty() {
            // Only suites rustls lacks: Envoy would negotiate TLS 1.2 with
            // them, Strait could not at all.
            let known: Vec<&str> = TLS12_NAMES.iter().map(|(n, _)| *n).collect();
            return Err(TlsError::UnknownCipher(
                common.cipher_suites.join(":"),
                known.join(", "),
            ));
        }
        provider
            .cipher_suites
            .retain(|s| s.tls13().is_some() || wanted.contains(&s.suite()));
    }
    let min = common.min_version.unwrap_or(TlsVersion::Tls12);
    let max = common.max_version.unwrap_or(match side {
        Side::Server => TlsVersion::Tls13,
        Side::Client => TlsVersion::Tls12,
    });
    if min > max {
        return Err(TlsError::VersionRange);
    }
    let mut versions = Vec::with_capacity(2);
    if min <= TlsVersion::Tls13 && max >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    Ok((provider, versions))
}
