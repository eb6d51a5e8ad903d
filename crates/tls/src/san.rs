//! Subject-alternative-name matching of a verified peer certificate
//! (Envoy's `match_typed_subject_alt_names`), e.g. SPIFFE identities.

use rustls::pki_types::CertificateDer;
use strait_model::tls::{SanMatcher, SanType};

/// SAN matchers: a peer passes when any matcher matches any SAN of the
/// matcher's type. Empty passes every peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SanRules(Vec<SanMatcher>);

impl SanRules {
    pub(crate) fn new(matchers: &[SanMatcher]) -> SanRules {
        SanRules(matchers.to_vec())
    }

    /// True when `cert` (an already verified end-entity certificate) has a
    /// SAN some matcher accepts. Runs once per handshake; does not allocate.
    pub(crate) fn accepts(&self, cert: &CertificateDer<'_>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        self.0.iter().any(|m| {
            let dns = matches!(m.san_type, SanType::Dns | SanType::Any);
            let uri = matches!(m.san_type, SanType::Uri | SanType::Any);
            (dns && ee.valid_dns_names().any(|n| m.matcher.matches(n)))
                || (uri && ee.valid_uri_names().any(|n| m.matcher.matches(n)))
        })
    }
}
