//! Upstream TLS: a cluster's `UpstreamTlsContext` compiled into a rustls
//! client config, and the handshake.

use std::{net::IpAddr, sync::Arc};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime},
};
use strait_model::tls::UpstreamTls;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    TlsError, load,
    san::SanRules,
    versions::{Side, provider_and_versions},
};

/// The ALPN protocol of Istio's TCP metadata exchange.
const ISTIO_PEER_EXCHANGE: &str = "istio-peer-exchange";

/// A TLS-originated upstream connection.
pub type ClientTlsStream<IO> = tokio_rustls::client::TlsStream<IO>;

/// A compiled `UpstreamTlsContext`. Cheap to clone; shared by every
/// connection to the cluster.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    /// The compiled config, from which a connection offering an ALPN
    /// override ([`ApplicationProtocols`]) gets its own copy.
    config: Arc<rustls::ClientConfig>,
    /// When the context names no ALPN protocols: the same config offering
    /// `h2`, and offering `http/1.1` (Envoy offers the cluster's protocol).
    by_protocol: Option<(tokio_rustls::TlsConnector, tokio_rustls::TlsConnector)>,
    /// When the context names `istio-peer-exchange`: the same config
    /// without it, for HTTP connections. That protocol starts Istio's TCP
    /// metadata exchange, which only the TCP proxy runs (as a cluster
    /// filter); an HTTP connection offering it would get the peer's
    /// preamble where it expects HTTP.
    for_http: Option<tokio_rustls::TlsConnector>,
    /// `sni`, when set; otherwise the peer's IP names the server (rustls
    /// sends no SNI for an IP, matching Envoy without `sni`).
    sni: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the certificates and CA bundle and builds the client config.
    /// Blocks on file I/O: call when compiling a snapshot.
    pub fn compile(ctx: &UpstreamTls) -> Result<ClientTls, TlsError> {
        let common = &ctx.common;
        let (provider, versions) = provider_and_versions(common, Side::Client)?;
        let algorithms = provider.signature_verification_algorithms;
        let provider = Arc::new(provider);

        let validation = common.secrets.validation.as_ref();
        let roots = match validation.and_then(|v| v.trusted_ca.as_ref()) {
            Some(ca) => {
                let mut anchors = Vec::new();
                for c in load::certificates(ca)? {
                    let anchor = webpki::anchor_from_trusted_cert(&c).map_err(|e| {
                        TlsError::BadCertificate {
                            source_name: ca.describe(),
                            reason: format!("not usable as a trust anchor ({e})"),
                        }
                    })?;
                    anchors.push(anchor.to_owned());
                }
                Some(anchors)
            }
            None => {
                if validation.is_some_and(|v| !v.san_matchers.is_empty()) {
                    return Err(TlsError::Unsupported(
                        "validation_context: SAN matchers need trusted_ca".to_owned(),
                    ));
                }
                None
            }
        };
        let sans = SanRules::new(validation.map_or(&[][..], |v| &v.san_matchers[..]));
        let verifier = Arc::new(ServerVerifier {
            roots,
            sans,
            algorithms,
        });

        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match common.secrets.certificates.first() {
            Some(c) => {
                let ck = load::certified_key(c)?;
                builder.with_client_auth_cert(ck.cert, load::private_key(&c.private_key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = common.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let by_protocol = common.alpn.is_empty().then(|| {
            let mut h2 = config.clone();
            h2.alpn_protocols = vec![b"h2".to_vec()];
            let mut h1 = config.clone();
            h1.alpn_protocols = vec![b"http/1.1".to_vec()];
            (
                tokio_rustls::TlsConnector::from(Arc::new(h2)),
                tokio_rustls::TlsConnector::from(Arc::new(h1)),
            )
        });
        let for_http = common
            .alpn
            .iter()
            .any(|p| p == ISTIO_PEER_EXCHANGE)
            .then(|| {
                let mut http = config.clone();
                http.alpn_protocols
                    .retain(|p| p.as_slice() != ISTIO_PEER_EXCHANGE.as_bytes());
                tokio_rustls::TlsConnector::from(Arc::new(http))
            });
        let sni = if ctx.sni.is_empty() {
            None
        } else {
            Some(ServerName::try_from(ctx.sni.clone()).map_err(|_| {
                TlsError::Unsupported(format!("sni {:?} is not a valid server name", ctx.sni))
            })?)
        };
        let config = Arc::new(config);
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&config)),
            config,
            by_protocol,
            for_http,
            sni,
        })
    }

    /// Runs the client handshake on `io`, connected to `peer`. The caller
    /// bounds it in time (the cluster's `connect_timeout`).
    pub async fn connect<IO>(
        &self,
        io: IO,
        peer: IpAddr,
        alpn: DefaultAlpn,
    ) -> std::io::Result<ClientTlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.connect_offering(io, peer, alpn, None).await
    }

    /// Like [`ClientTls::connect`], offering `alpn_override` instead of the
    /// context's ALPN on an HTTP connection (Envoy's precedence: a
    /// request's override, then the context's list, then the protocol's
    /// default). `istio-peer-exchange` is left out of an override too (see
    /// `for_http`); an override with nothing else is no override. The TCP
    /// proxy's connections ([`DefaultAlpn::None`]) never take one.
    ///
    /// Allocates the override's client config (a copy of the compiled
    /// one): once per new connection, never per request.
    pub async fn connect_offering<IO>(
        &self,
        io: IO,
        peer: IpAddr,
        alpn: DefaultAlpn,
        alpn_override: Option<&ApplicationProtocols>,
    ) -> std::io::Result<ClientTlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self
            .sni
            .clone()
            .unwrap_or(ServerName::IpAddress(peer.into()));
        if alpn != DefaultAlpn::None
            && let Some(over) = alpn_override
        {
            let offered: Vec<Vec<u8>> = over
                .iter()
                .filter(|p| *p != ISTIO_PEER_EXCHANGE)
                .map(|p| p.as_bytes().to_vec())
                .collect();
            if !offered.is_empty() {
                let mut config = (*self.config).clone();
                config.alpn_protocols = offered;
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                return connector.connect(name, io).await;
            }
        }
        let connector = match (&self.by_protocol, &self.for_http, alpn) {
            (Some((h2, _)), _, DefaultAlpn::Http2) => h2,
            (Some((_, h1)), _, DefaultAlpn::Http1) => h1,
            (_, Some(http), DefaultAlpn::Http1 | DefaultAlpn::Http2) => http,
            _ => &self.connector,
        };
        connector.connect(name, io).await
    }

    /// True when the negotiated ALPN of `stream` is `h2`.
    pub fn negotiated_h2<IO>(stream: &ClientTlsStream<IO>) -> bool {
        stream.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

/// What to offer by ALPN when the context itself names no protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAlpn {
    /// Nothing (the TCP proxy).
    None,
    Http1,
    Http2,
}

/// The ALPN protocols a request's upstream connection offers instead of
/// its cluster's: Envoy's filter-state object
/// `envoy.network.application_protocols`, which Istio's `istio.alpn`
/// filter sets per request (`istio-http/1.1`, `istio-h2`, ...) so the peer
/// sidecar picks its HTTP filter chain. An HTTP filter stores it in the
/// request's filter state; the router hands it to the pool, where it is
/// part of the pool's key (connections offering different lists are never
/// shared). Cheap to clone (one `Arc`); compared by value.
#[derive(Clone, Eq)]
pub struct ApplicationProtocols(Arc<[Box<str>]>);

impl ApplicationProtocols {
    /// The list, in preference order.
    pub fn new<S: Into<Box<str>>>(protocols: impl IntoIterator<Item = S>) -> Self {
        ApplicationProtocols(protocols.into_iter().map(Into::into).collect())
    }

    /// The protocols, in preference order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|p| &**p)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for ApplicationProtocols {
    fn eq(&self, other: &Self) -> bool {
        // The common case is the one list a filter config shares with
        // every request it sets it on: a pointer compare.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for ApplicationProtocols {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for ApplicationProtocols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Envoy's upstream verification: the chain against `trusted_ca` (when
/// set), then the SAN matchers. Like Envoy, the SNI is not checked against
/// the certificate unless a matcher says so.
#[derive(Debug)]
struct ServerVerifier {
    roots: Option<Vec<TrustAnchor<'static>>>,
    sans: SanRules,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let ee = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        ee.verify_for_usage(
            self.algorithms.all,
            roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(webpki_error)?;
        if self.sans.accepts(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn webpki_error(e: webpki::Error) -> rustls::Error {
    use rustls::CertificateError as C;
    let c = match e {
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::CertRevoked => C::Revoked,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        other => C::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(c)
}
