//! Downstream TLS: a filter chain's `DownstreamTlsContext` compiled into a
//! rustls server config, and the handshake.

use std::sync::Arc;

use rustls::{
    DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::{
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use strait_model::tls::DownstreamTls;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    TlsError, load,
    san::SanRules,
    versions::{Side, provider_and_versions},
};

/// A TLS-terminated downstream connection.
pub type ServerTlsStream<IO> = tokio_rustls::server::TlsStream<IO>;

/// A compiled `DownstreamTlsContext`. Cheap to clone; shared by every
/// connection of its filter chain.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// The same config without ALPN, for clients whose offer shares no
    /// protocol with ours: Envoy (BoringSSL) then goes on without ALPN
    /// where rustls would refuse the handshake, and Istio relies on that
    /// (a client offering `istio-peer-exchange, istio` to an inbound chain
    /// offering `h2, http/1.1`).
    no_alpn: Arc<rustls::ServerConfig>,
    /// The certificates, to tell which one a handshake presents.
    certs: Arc<BySni>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificates and CA bundle and builds the server config.
    /// Blocks on file I/O: call when compiling a snapshot, not per
    /// connection.
    pub fn compile(ctx: &DownstreamTls) -> Result<ServerTls, TlsError> {
        let common = &ctx.common;
        if common.secrets.certificates.is_empty() {
            return Err(TlsError::Unsupported(
                "common_tls_context.tls_certificates: a server needs at least one certificate"
                    .to_owned(),
            ));
        }
        let (provider, versions) = provider_and_versions(common, Side::Server)?;
        let provider = Arc::new(provider);
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)?;

        let validation = common.secrets.validation.as_ref();
        let builder = match validation.and_then(|v| v.trusted_ca.as_ref()) {
            Some(ca) => {
                let roots = Arc::new(load::roots(ca)?);
                let mut vb = WebPkiClientVerifier::builder_with_provider(roots, provider);
                if !ctx.require_client_certificate {
                    vb = vb.allow_unauthenticated();
                }
                let inner = vb.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
                let sans = SanRules::new(validation.map_or(&[][..], |v| &v.san_matchers[..]));
                builder.with_client_cert_verifier(Arc::new(SanCheckedClient { inner, sans }))
            }
            None => {
                if ctx.require_client_certificate {
                    return Err(TlsError::Unsupported(
                        "require_client_certificate needs validation_context.trusted_ca".to_owned(),
                    ));
                }
                if validation.is_some_and(|v| !v.san_matchers.is_empty()) {
                    return Err(TlsError::Unsupported(
                        "validation_context: SAN matchers need trusted_ca".to_owned(),
                    ));
                }
                builder.with_no_client_auth()
            }
        };

        let mut certs = Vec::with_capacity(common.secrets.certificates.len());
        for c in &common.secrets.certificates {
            let ck = load::certified_key(c)?;
            let names = dns_names(&ck);
            let uris = uri_names(&ck);
            certs.push(LocalCert {
                key: Arc::new(ck),
                dns: names,
                uris,
            });
        }
        let by_sni = Arc::new(BySni { certs });
        let mut config =
            builder.with_cert_resolver(Arc::clone(&by_sni) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = common.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.ignore_client_order = !ctx.prefer_client_ciphers;
        let mut no_alpn = config.clone();
        no_alpn.alpn_protocols.clear();
        Ok(ServerTls {
            config: Arc::new(config),
            no_alpn: Arc::new(no_alpn),
            certs: by_sni,
        })
    }

    /// Runs the server handshake on `io`. Not bounded in time here: the
    /// caller bounds it (Envoy's `transport_socket_connect_timeout`).
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<ServerTlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_identified(io).await.map(|(s, _)| s)
    }

    /// [`ServerTls::accept`], also giving the URI SANs of the certificate
    /// the handshake presented (Envoy's `uriSanLocalCertificate`, the
    /// `By=` of `x-forwarded-client-cert`). Shared, not copied.
    pub async fn accept_identified<IO>(
        &self,
        io: IO,
    ) -> std::io::Result<(ServerTlsStream<IO>, Arc<[String]>)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        // The resolver makes the same choice from the same ClientHello
        // during the handshake; rustls does not report it afterwards.
        let uris = {
            let hello = start.client_hello();
            self.certs
                .pick(hello.server_name(), hello.signature_schemes())
                .map_or_else(|| Arc::from([]), |c| Arc::clone(&c.uris))
        };
        let ours = &self.config.alpn_protocols;
        let disjoint = !ours.is_empty()
            && start
                .client_hello()
                .alpn()
                .is_some_and(|mut offered| !offered.any(|p| ours.iter().any(|o| o == p)));
        let config = if disjoint {
            Arc::clone(&self.no_alpn)
        } else {
            Arc::clone(&self.config)
        };
        let stream = start.into_stream(config).await?;
        Ok((stream, uris))
    }
}

/// The DNS SANs of the leaf, lower-cased, for SNI selection.
fn dns_names(ck: &CertifiedKey) -> Vec<String> {
    let Some(leaf) = ck.cert.first() else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(ee) => ee
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The URI SANs of the leaf, for `By=`.
fn uri_names(ck: &CertifiedKey) -> Arc<[String]> {
    let Some(leaf) = ck.cert.first() else {
        return Arc::from([]);
    };
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(ee) => ee.valid_uri_names().map(str::to_owned).collect(),
        Err(_) => Arc::from([]),
    }
}

/// One server certificate with the names selection and XFCC read.
#[derive(Debug)]
struct LocalCert {
    key: Arc<CertifiedKey>,
    /// DNS SANs, lower-cased.
    dns: Vec<String>,
    uris: Arc<[String]>,
}

/// Envoy's certificate selection: a certificate whose DNS SANs match the
/// SNI (exactly, then by wildcard) and whose key the client can use; else
/// the first certificate the client can use; else the first.
#[derive(Debug)]
struct BySni {
    certs: Vec<LocalCert>,
}

impl BySni {
    fn pick(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Option<&LocalCert> {
        let usable = |c: &LocalCert| c.key.key.choose_scheme(schemes).is_some();
        if let Some(sni) = sni {
            let sni = sni.to_ascii_lowercase();
            let wildcard = sni.split_once('.').map(|(_, rest)| format!("*.{rest}"));
            let exact = self
                .certs
                .iter()
                .find(|c| c.dns.contains(&sni) && usable(c));
            let wild = || {
                self.certs
                    .iter()
                    .find(|c| wildcard.as_ref().is_some_and(|w| c.dns.contains(w)) && usable(c))
            };
            if let Some(c) = exact.or_else(wild) {
                return Some(c);
            }
        }
        self.certs
            .iter()
            .find(|c| usable(c))
            .or_else(|| self.certs.first())
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name(), hello.signature_schemes())
            .map(|c| Arc::clone(&c.key))
    }
}

/// rustls' chain verification followed by Envoy's SAN matchers.
#[derive(Debug)]
struct SanCheckedClient {
    inner: Arc<dyn ClientCertVerifier>,
    sans: SanRules,
}

impl ClientCertVerifier for SanCheckedClient {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.sans.accepts(end_entity) {
            Ok(ok)
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
