//! TLS settings of filter chains (downstream) and clusters (upstream):
//! Envoy's `DownstreamTlsContext` and `UpstreamTlsContext`, validated but not
//! yet loaded. Certificates stay as data sources here; the `tls` crate reads
//! and compiles them when a snapshot is compiled, so a bad file refuses the
//! whole config rather than failing handshakes later.

use std::{net::IpAddr, path::PathBuf};

use super::policy::ValueMatcher;

/// Where a referenced secret comes from: `SdsSecretConfig.sds_config`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretSource {
    /// No `sds_config`: one of `static_resources.secrets`.
    Static,
    /// `sds_config: {ads: {}}`: the ADS stream.
    Ads,
    /// `api_config_source` (GRPC, `envoy_grpc`): a SotW
    /// `SecretDiscoveryService` stream to this cluster (Istio's `sds-grpc`).
    Grpc { cluster: String },
    /// `path_config_source` (or the legacy `path`): a file holding a
    /// `DiscoveryResponse` of `Secret`s, re-read when it changes.
    File { path: PathBuf },
}

/// `SdsSecretConfig`: a secret by name, from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsRef {
    pub name: String,
    pub source: SecretSource,
}

/// Envoy `core.v3.DataSource`: where certificate or key bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum DataSource {
    /// `filename`: read at compile time (and, later, re-read on change).
    File(PathBuf),
    /// `inline_bytes` or `inline_string`.
    Inline(Vec<u8>),
}

// Inline private keys must never reach logs or `/config_dump` via `Debug`.
impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::File(p) => f.debug_tuple("File").field(p).finish(),
            DataSource::Inline(b) => write!(f, "Inline([{} bytes])", b.len()),
        }
    }
}

impl DataSource {
    /// A name for error messages: the file name, or "inline data".
    pub fn describe(&self) -> String {
        match self {
            DataSource::File(p) => p.display().to_string(),
            DataSource::Inline(_) => "inline data".to_owned(),
        }
    }
}

/// Envoy `TlsCertificate`: one certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    pub certificate_chain: DataSource,
    pub private_key: DataSource,
}

/// Envoy `CertificateValidationContext`: how the peer's certificate is judged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CertificateValidation {
    /// `trusted_ca`: PEM roots. `None` means the peer's chain is not verified
    /// (Envoy's behaviour without `trusted_ca`).
    pub trusted_ca: Option<DataSource>,
    /// `match_typed_subject_alt_names` and the deprecated
    /// `match_subject_alt_names`: the peer is accepted when any matcher
    /// matches any of its SANs; empty accepts any verified peer.
    pub san_matchers: Vec<SanMatcher>,
}

/// Which SAN type a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanType {
    /// The deprecated `match_subject_alt_names`: DNS and URI SANs alike.
    Any,
    Dns,
    Uri,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SanMatcher {
    pub san_type: SanType,
    pub matcher: ValueMatcher,
}

/// The certificates and validation a context carries inline (or by file).
/// SDS references are kept apart ([`CommonTls::certificate_sds`],
/// [`CommonTls::validation_sds`]) and merged in by [`CommonTls::resolve`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSecrets {
    /// `tls_certificates`, in order; the first is the default for a
    /// server when SNI selects none.
    pub certificates: Vec<TlsCertificate>,
    pub validation: Option<CertificateValidation>,
}

/// Envoy `TlsParameters.TlsProtocol`, limited to what rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Envoy `CommonTlsContext`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommonTls {
    /// `tls_certificates` and `validation_context` (or the
    /// `default_validation_context` of a `combined_validation_context`).
    pub secrets: TlsSecrets,
    /// `tls_certificate_sds_secret_configs`, after the inline certificates.
    pub certificate_sds: Vec<SdsRef>,
    /// `validation_context_sds_secret_config`, or the one of a
    /// `combined_validation_context` (merged over `secrets.validation`).
    pub validation_sds: Option<SdsRef>,
    /// `alpn_protocols`, in preference order.
    pub alpn: Vec<String>,
    /// `tls_params.tls_minimum_protocol_version`; `None` is Envoy's
    /// `TLS_AUTO` (TLS 1.2).
    pub min_version: Option<TlsVersion>,
    /// `tls_params.tls_maximum_protocol_version`; `None` is `TLS_AUTO`
    /// (TLS 1.3 downstream, TLS 1.2 upstream, as Envoy).
    pub max_version: Option<TlsVersion>,
    /// `tls_params.cipher_suites` (OpenSSL names, TLS 1.2 only); empty
    /// means the provider's defaults. Names are checked against rustls when
    /// the snapshot is compiled.
    pub cipher_suites: Vec<String>,
}

/// Envoy `DownstreamTlsContext`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DownstreamTls {
    pub common: CommonTls,
    /// `require_client_certificate` (default false).
    pub require_client_certificate: bool,
    /// `prefer_client_ciphers` (default false: the server's order wins).
    pub prefer_client_ciphers: bool,
}

/// Envoy `UpstreamTlsContext`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpstreamTls {
    pub common: CommonTls,
    /// `sni`; empty sends no SNI (Envoy's default without `auto_sni`).
    pub sni: String,
}

/// A CIDR range of `filter_chain_match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrRange {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl CidrRange {
    /// True when `ip` lies in the range (an IPv4 range never holds IPv6).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}
