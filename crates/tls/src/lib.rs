//! TLS for Strait, and the only crate that depends on rustls.
//!
//! Owns:
//! - [`ServerTls`]: a rustls server config compiled from a filter chain's
//!   `DownstreamTlsContext` (certificates chosen by SNI, client
//!   certificates verified against a CA and SAN matchers, ALPN, versions,
//!   cipher suites), and the handshake that terminates TLS.
//! - [`ClientTls`]: a rustls client config compiled from a cluster's
//!   `UpstreamTlsContext` (SNI, ALPN, client certificate, server chain and
//!   SAN verification such as SPIFFE URIs), and the handshake that
//!   originates TLS, offering a request's [`ApplicationProtocols`]
//!   override when one is set.
//! - [`ClusterTransports`]: a cluster's `transport_socket` and its
//!   `transport_socket_matches`, compiled, for the per-host choice.
//! - [`PeerChain`]: the client certificate of a terminated connection, read
//!   for `x-forwarded-client-cert` (SHA-256, RFC 2253 subject, SANs, PEM).
//! - [`hello`]: a ClientHello peek (SNI and ALPN) for the TLS inspector, and
//!   [`Rewind`] to replay peeked bytes.
//!
//! Compilation reads certificate files, so it runs when a snapshot is
//! compiled, never per connection. One crypto provider (`ring`) is used
//! everywhere; `deny.toml` keeps others out.
//!
//! Depends on the model (`strait-model`) only; never on I/O crates above it.

mod client;
mod dn;
pub mod hello;
mod load;
mod peer;
mod rewind;
mod san;
mod server;
mod stream;
mod transports;
mod versions;

pub use client::{ApplicationProtocols, ClientTls, ClientTlsStream, DefaultAlpn};
pub use peer::{PeerChain, PeerIdentity};
pub use rewind::Rewind;
pub use server::{ServerTls, ServerTlsStream};
pub use stream::MaybeTls;
pub use transports::{ClusterTransports, TransportSource};

/// Why a TLS context could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {source_name}: {error}")]
    Read {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{source_name} is not a PEM certificate")]
    NotCertificate { source_name: String },
    #[error("{source_name} is not a PEM private key")]
    NotPrivateKey { source_name: String },
    #[error("{source_name}: {reason}")]
    BadCertificate { source_name: String, reason: String },
    #[error("private key in {source_name} does not match its certificate chain: {reason}")]
    KeyMismatch { source_name: String, reason: String },
    #[error("tls_params.cipher_suites: {0} is not supported (rustls offers {1})")]
    UnknownCipher(String, String),
    #[error("tls_params: minimum version is above the maximum")]
    VersionRange,
    #[error("{0}")]
    Unsupported(String),
    #[error("rustls refused the configuration: {0}")]
    Rustls(String),
    /// An SDS secret the context names is missing or of the wrong kind.
    #[error("{0}")]
    Secret(#[from] strait_model::ModelError),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e.to_string())
    }
}

/// The process's one crypto provider.
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
