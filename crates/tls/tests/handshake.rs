//! Server and client contexts against each other over an in-memory pipe,
//! with certificates from a test CA issuing SPIFFE identities.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, date_time_ymd,
};
use strait_model::{
    policy::{ValueMatch, ValueMatcher},
    tls::{
        CertificateValidation, CommonTls, DataSource, DownstreamTls, SanMatcher, TlsCertificate,
        TlsSecrets, UpstreamTls,
    },
};
use strait_tls::{ApplicationProtocols, ClientTls, DefaultAlpn, ServerTls, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("ca");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `spiffe` (a URI SAN) and `dns` names; `expired` makes it
    /// valid only in 2020.
    fn leaf(&self, spiffe: &str, dns: &[&str], expired: bool) -> TlsCertificate {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().expect("dns")))
            .chain([SanType::URI(spiffe.try_into().expect("uri"))])
            .collect();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 6, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        TlsCertificate {
            certificate_chain: DataSource::Inline(cert.pem().into_bytes()),
            private_key: DataSource::Inline(key.serialize_pem().into_bytes()),
        }
    }

    fn validation(&self, san_exact: Option<&str>) -> CertificateValidation {
        CertificateValidation {
            trusted_ca: Some(DataSource::Inline(self.pem.clone().into_bytes())),
            san_matchers: san_exact
                .map(|s| SanMatcher {
                    san_type: strait_model::tls::SanType::Uri,
                    matcher: ValueMatcher {
                        kind: ValueMatch::Exact(s.to_owned()),
                        ignore_case: false,
                    },
                })
                .into_iter()
                .collect(),
        }
    }
}

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";

fn server(ca: &Ca, cert: TlsCertificate, client_san: Option<&str>) -> ServerTls {
    ServerTls::compile(&DownstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates: vec![cert],
                validation: Some(ca.validation(client_san)),
            },
            alpn: vec!["h2".into(), "http/1.1".into()],
            ..CommonTls::default()
        },
        require_client_certificate: true,
        prefer_client_ciphers: false,
    })
    .expect("server compiles")
}

fn client(ca: &Ca, cert: TlsCertificate, server_san: &str) -> ClientTls {
    client_offering(ca, cert, server_san, &["h2"])
}

fn client_offering(ca: &Ca, cert: TlsCertificate, server_san: &str, alpn: &[&str]) -> ClientTls {
    ClientTls::compile(&UpstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates: vec![cert],
                validation: Some(ca.validation(Some(server_san))),
            },
            alpn: alpn.iter().map(|p| (*p).to_owned()).collect(),
            ..CommonTls::default()
        },
        sni: "reviews.default.svc.cluster.local".into(),
    })
    .expect("client compiles")
}

/// Runs both handshakes; `Ok(h2 negotiated)` when both succeed and a byte
/// crosses, else which side failed and why.
async fn handshake(server: ServerTls, client: ClientTls) -> Result<bool, String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let srv = tokio::spawn(async move {
        let mut s = server.accept(a).await.map_err(|e| format!("server: {e}"))?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        s.write_all(&byte)
            .await
            .map_err(|e| format!("server write: {e}"))?;
        s.flush().await.map_err(|e| format!("server flush: {e}"))?;
        Ok::<_, String>(())
    });
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let result = async {
        let mut c = client
            .connect(b, peer, DefaultAlpn::None)
            .await
            .map_err(|e| format!("client: {e}"))?;
        c.write_all(b"x")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut byte = [0u8; 1];
        c.read_exact(&mut byte)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        Ok::<_, String>(ClientTls::negotiated_h2(&c))
    }
    .await;
    let srv = srv.await.expect("server task");
    match (result, srv) {
        (Ok(h2), Ok(())) => Ok(h2),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[tokio::test]
async fn mutual_tls_with_spiffe_identities_and_alpn() {
    let ca = Ca::new();
    let s = server(&ca, ca.leaf(REVIEWS, &[], false), Some(PRODUCTPAGE));
    let c = client(&ca, ca.leaf(PRODUCTPAGE, &[], false), REVIEWS);
    assert_eq!(handshake(s, c).await, Ok(true));
}

/// Istio's TCP/HTTP/1.1 clients offer only `istio-peer-exchange, istio`;
/// a server offering `h2, http/1.1` goes on without ALPN, as Envoy does,
/// rather than refusing the handshake as rustls would by default.
#[tokio::test]
async fn disjoint_alpn_goes_on_without_a_protocol() {
    let ca = Ca::new();
    let s = server(&ca, ca.leaf(REVIEWS, &[], false), Some(PRODUCTPAGE));
    let c = client_offering(
        &ca,
        ca.leaf(PRODUCTPAGE, &[], false),
        REVIEWS,
        &["istio-peer-exchange", "istio"],
    );
    assert_eq!(handshake(s, c).await, Ok(false));
}

#[tokio::test]
async fn client_with_wrong_identity_is_rejected() {
    let ca = Ca::new();
    let s = server(&ca, ca.leaf(REVIEWS, &[], false), Some(PRODUCTPAGE));
    let c = client(
        &ca,
        ca.leaf("spiffe://cluster.local/ns/evil/sa/x", &[], false),
        REVIEWS,
    );
    assert!(handshake(s, c).await.is_err());
}

#[tokio::test]
async fn server_with_wrong_identity_is_rejected() {
    let ca = Ca::new();
    let s = server(&ca, ca.leaf(PRODUCTPAGE, &[], false), None);
    let c = client(&ca, ca.leaf(PRODUCTPAGE, &[], false), REVIEWS);
    let err = handshake(s, c).await.expect_err("wrong server identity");
    assert!(err.starts_with("client"), "{err}");
}

#[tokio::test]
async fn expired_certificates_are_rejected_both_ways() {
    let ca = Ca::new();
    let s = server(&ca, ca.leaf(REVIEWS, &[], true), None);
    let c = client(&ca, ca.leaf(PRODUCTPAGE, &[], false), REVIEWS);
    let err = handshake(s, c).await.expect_err("expired server");
    assert!(err.contains("xpired"), "{err}");

    let s = server(&ca, ca.leaf(REVIEWS, &[], false), None);
    let c = client(&ca, ca.leaf(PRODUCTPAGE, &[], true), REVIEWS);
    assert!(handshake(s, c).await.is_err());
}

#[tokio::test]
async fn certificate_from_another_ca_is_rejected() {
    let ca = Ca::new();
    let other = Ca::new();
    let s = server(&ca, other.leaf(REVIEWS, &[], false), None);
    let c = client(&ca, ca.leaf(PRODUCTPAGE, &[], false), REVIEWS);
    // Both test CAs have the same (empty) name, so webpki finds the wrong
    // issuer and the signature check fails: rejected either way.
    let err = handshake(s, c).await.expect_err("foreign issuer");
    assert!(err.starts_with("client"), "{err}");
}

#[test]
fn a_file_that_is_not_a_certificate_is_named() {
    let dir = std::env::temp_dir().join(format!("strait-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("cert.pem");
    std::fs::write(&path, "hello, I am not a certificate\n").expect("write");
    let ca = Ca::new();
    let mut cert = ca.leaf(REVIEWS, &[], false);
    cert.certificate_chain = DataSource::File(path.clone());
    let err = ServerTls::compile(&DownstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates: vec![cert],
                validation: None,
            },
            ..CommonTls::default()
        },
        require_client_certificate: false,
        prefer_client_ciphers: false,
    })
    .expect_err("not a certificate");
    assert!(matches!(err, TlsError::NotCertificate { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} is not a PEM certificate", path.display())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_cipher_suites_are_refused_by_name() {
    let ca = Ca::new();
    let err = ServerTls::compile(&DownstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates: vec![ca.leaf(REVIEWS, &[], false)],
                validation: None,
            },
            cipher_suites: vec![
                "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]".into(),
                "AES128-SHA".into(),
            ],
            ..CommonTls::default()
        },
        require_client_certificate: false,
        prefer_client_ciphers: false,
    })
    .expect_err("AES128-SHA");
    assert!(
        err.to_string().contains("AES128-SHA is not supported"),
        "{err}"
    );
}

/// Istio's default list ends with two suites without forward secrecy that
/// rustls lacks: they are left out, the ECDHE ones serve. A list of only
/// such suites is refused.
#[test]
fn istios_cipher_suites_compile_without_the_rsa_key_exchange_ones() {
    let ca = Ca::new();
    let compile = |names: &[&str]| {
        ServerTls::compile(&DownstreamTls {
            common: CommonTls {
                secrets: TlsSecrets {
                    certificates: vec![ca.leaf(REVIEWS, &[], false)],
                    validation: None,
                },
                cipher_suites: names.iter().map(|n| (*n).to_owned()).collect(),
                ..CommonTls::default()
            },
            require_client_certificate: false,
            prefer_client_ciphers: false,
        })
    };
    compile(&[
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
    ])
    .expect("Istio's list");
    let err = compile(&["AES256-GCM-SHA384", "AES128-GCM-SHA256"]).expect_err("only RSA kx");
    assert!(err.to_string().contains("is not supported"), "{err}");
}

/// A cluster offering `istio-peer-exchange` (it runs Istio's TCP metadata
/// exchange as a cluster filter) offers it on the TCP proxy's connections
/// only: its HTTP connections, which would not run the exchange, leave it
/// out, so a server that accepts it never picks it for them.
#[tokio::test]
async fn http_connections_never_offer_istio_peer_exchange() {
    let ca = Ca::new();
    let server_tls = ServerTls::compile(&DownstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates: vec![ca.leaf(REVIEWS, &[], false)],
                validation: Some(ca.validation(Some(PRODUCTPAGE))),
            },
            alpn: vec!["istio-peer-exchange".into(), "h2".into(), "http/1.1".into()],
            ..CommonTls::default()
        },
        require_client_certificate: true,
        prefer_client_ciphers: false,
    })
    .expect("server compiles");
    let client_tls = client_offering(
        &ca,
        ca.leaf(PRODUCTPAGE, &[], false),
        REVIEWS,
        &["istio-peer-exchange", "istio"],
    );
    for (alpn, want) in [
        (DefaultAlpn::None, Some(&b"istio-peer-exchange"[..])),
        (DefaultAlpn::Http1, None),
        (DefaultAlpn::Http2, None),
    ] {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = server_tls.clone();
        let srv = tokio::spawn(async move {
            let mut s = server.accept(a).await.expect("server handshake");
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.expect("server read");
        });
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut c = client_tls.connect(b, peer, alpn).await.expect("client");
        c.write_all(b"x").await.expect("write");
        c.flush().await.expect("flush");
        srv.await.expect("server task");
        assert_eq!(c.get_ref().1.alpn_protocol(), want, "{alpn:?}");
    }
}

/// The ALPN list a client's ClientHello offers, read off the wire by the
/// TLS inspector's parser (no server answers).
async fn offered(
    client: &ClientTls,
    alpn: DefaultAlpn,
    over: Option<&ApplicationProtocols>,
) -> Vec<String> {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let client = client.clone();
    let over = over.cloned();
    let handshake = tokio::spawn(async move {
        let _ = client.connect_offering(a, peer, alpn, over.as_ref()).await;
    });
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = b.read(&mut chunk).await.expect("read hello");
        assert!(n > 0, "client closed before its ClientHello");
        buf.extend_from_slice(&chunk[..n]);
        match strait_tls::hello::peek(&buf) {
            strait_tls::hello::Peek::ClientHello(info) => {
                handshake.abort();
                return info.alpn;
            }
            strait_tls::hello::Peek::Incomplete => {}
            other => panic!("not a ClientHello: {other:?}"),
        }
    }
}

/// Envoy's precedence for an upstream connection's ALPN: a request's
/// override (Istio's `istio.alpn`), else the context's list, else the
/// protocol's default; `istio-peer-exchange` never on HTTP connections,
/// and the TCP proxy never takes an override.
#[tokio::test]
async fn an_alpn_override_replaces_the_contexts_list_on_http_connections() {
    let ca = Ca::new();
    let istio = client_offering(
        &ca,
        ca.leaf(PRODUCTPAGE, &[], false),
        REVIEWS,
        &["istio-peer-exchange", "istio"],
    );
    let h2 = ApplicationProtocols::new(["istio-h2", "istio", "h2"]);
    let only_mx = ApplicationProtocols::new(["istio-peer-exchange"]);
    let s = |l: &[&str]| l.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        offered(&istio, DefaultAlpn::Http2, Some(&h2)).await,
        s(&["istio-h2", "istio", "h2"])
    );
    assert_eq!(
        offered(&istio, DefaultAlpn::Http1, Some(&h2)).await,
        s(&["istio-h2", "istio", "h2"])
    );
    assert_eq!(
        offered(&istio, DefaultAlpn::Http2, None).await,
        s(&["istio"])
    );
    assert_eq!(
        offered(&istio, DefaultAlpn::Http1, Some(&only_mx)).await,
        s(&["istio"]),
        "an override of nothing but the exchange is no override"
    );
    assert_eq!(
        offered(&istio, DefaultAlpn::None, Some(&h2)).await,
        s(&["istio-peer-exchange", "istio"]),
        "the TCP proxy keeps the context's list"
    );
    let bare = client_offering(&ca, ca.leaf(PRODUCTPAGE, &[], false), REVIEWS, &[]);
    assert_eq!(offered(&bare, DefaultAlpn::Http2, None).await, s(&["h2"]));
    let h11 = ApplicationProtocols::new(["istio-http/1.1", "istio", "http/1.1"]);
    assert_eq!(
        offered(&bare, DefaultAlpn::Http1, Some(&h11)).await,
        s(&["istio-http/1.1", "istio", "http/1.1"])
    );
}

#[test]
fn application_protocols_compare_by_value() {
    let a = ApplicationProtocols::new(["istio-h2", "h2"]);
    assert_eq!(a, a.clone());
    assert_eq!(a, ApplicationProtocols::new(["istio-h2", "h2"]));
    assert_ne!(a, ApplicationProtocols::new(["h2", "istio-h2"]));
}
