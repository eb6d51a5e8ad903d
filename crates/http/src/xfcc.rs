//! Envoy's `x-forwarded-client-cert` (XFCC): what a connection manager does
//! with the header (`forward_client_cert_details`), and this hop's element
//! (`By=…;Hash=…;Subject="…";URI=…`).
//!
//! The element depends only on the connection (its certificates) and the
//! chain's `set_current_client_cert_details`, so it is built once per
//! mutual-TLS connection; a request then clones it (SANITIZE_SET) or
//! allocates only the appended header value (APPEND_FORWARD).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use strait_model::client_cert::{ClientCertDetails, ForwardClientCert};
use strait_tls::PeerChain;

pub(crate) static X_FORWARDED_CLIENT_CERT: HeaderName =
    HeaderName::from_static("x-forwarded-client-cert");

/// What the element reads from the client certificate; [`PeerChain`] in
/// production, a fixed value in tests.
pub trait PeerCert {
    fn sha256_hex(&self, out: &mut String);
    fn subject(&self, out: &mut String);
    fn uri_sans(&self) -> impl Iterator<Item = &str>;
    fn dns_sans(&self) -> impl Iterator<Item = &str>;
    fn leaf_pem(&self, out: &mut String);
    fn chain_pem(&self, out: &mut String);
}

impl PeerCert for PeerChain<'_> {
    fn sha256_hex(&self, out: &mut String) {
        PeerChain::sha256_hex(self, out);
    }
    fn subject(&self, out: &mut String) {
        PeerChain::subject(self, out);
    }
    fn uri_sans(&self) -> impl Iterator<Item = &str> {
        PeerChain::uri_sans(self)
    }
    fn dns_sans(&self) -> impl Iterator<Item = &str> {
        PeerChain::dns_sans(self)
    }
    fn leaf_pem(&self, out: &mut String) {
        PeerChain::leaf_pem(self, out);
    }
    fn chain_pem(&self, out: &mut String) {
        PeerChain::chain_pem(self, out);
    }
}

/// This hop's element for a mutual-TLS connection, in Envoy's order: `By`
/// for each URI SAN of the local certificate, `Hash`, then the details
/// asked for as `Cert`, `Chain`, `Subject`, `URI`, `DNS`. `Cert`, `Chain`
/// and `Subject` are quoted; `Subject` and `URI` are present even when
/// empty. Allocates the element once.
pub fn element(
    details: ClientCertDetails,
    local_uris: &[String],
    peer: &impl PeerCert,
) -> HeaderValue {
    let mut out = String::with_capacity(256);
    for uri in local_uris {
        field(&mut out, "By=");
        out.push_str(uri);
    }
    field(&mut out, "Hash=");
    peer.sha256_hex(&mut out);
    if details.cert {
        field(&mut out, "Cert=\"");
        peer.leaf_pem(&mut out);
        out.push('"');
    }
    if details.chain {
        field(&mut out, "Chain=\"");
        peer.chain_pem(&mut out);
        out.push('"');
    }
    if details.subject {
        field(&mut out, "Subject=\"");
        peer.subject(&mut out);
        out.push('"');
    }
    if details.uri {
        // Envoy writes every URI SAN, or `URI=` when there is none.
        let mut any = false;
        for uri in peer.uri_sans() {
            field(&mut out, "URI=");
            out.push_str(uri);
            any = true;
        }
        if !any {
            field(&mut out, "URI=");
        }
    }
    if details.dns {
        for dns in peer.dns_sans() {
            field(&mut out, "DNS=");
            out.push_str(dns);
        }
    }
    // Certificate text is visible ASCII (the subject is escaped, PEM is
    // percent-encoded); a SAN with control bytes leaves the element empty
    // rather than failing the request.
    HeaderValue::from_maybe_shared(Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn field(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push(';');
    }
    out.push_str(key);
}

/// Envoy's `mutateXfccRequestHeader`. `current` is this hop's element,
/// `None` when the connection is not mutual TLS: then every mode but
/// ALWAYS_FORWARD_ONLY removes the header.
pub(crate) fn apply(
    headers: &mut HeaderMap,
    mode: ForwardClientCert,
    current: Option<&HeaderValue>,
) {
    let current = match (mode, current) {
        (ForwardClientCert::AlwaysForwardOnly, _) => return,
        (ForwardClientCert::Sanitize, _) | (_, None) => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
            return;
        }
        (ForwardClientCert::ForwardOnly, Some(_)) => return,
        (_, Some(c)) => c,
    };
    if mode == ForwardClientCert::SanitizeSet {
        headers.insert(X_FORWARDED_CLIENT_CERT.clone(), current.clone());
        return;
    }
    // APPEND_FORWARD: Envoy keeps one header, earlier lines joined by `,`,
    // and adds no separator after an empty value.
    let mut joined: Vec<u8> = Vec::new();
    for v in headers.get_all(&X_FORWARDED_CLIENT_CERT) {
        if !v.is_empty() {
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(v.as_bytes());
        }
    }
    if joined.is_empty() {
        headers.insert(X_FORWARDED_CLIENT_CERT.clone(), current.clone());
        return;
    }
    joined.push(b',');
    joined.extend_from_slice(current.as_bytes());
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(X_FORWARDED_CLIENT_CERT.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        subject: &'static str,
        uris: Vec<&'static str>,
        dns: Vec<&'static str>,
    }

    impl PeerCert for Fake {
        fn sha256_hex(&self, out: &mut String) {
            out.push_str("abc123");
        }
        fn subject(&self, out: &mut String) {
            out.push_str(self.subject);
        }
        fn uri_sans(&self) -> impl Iterator<Item = &str> {
            self.uris.iter().copied()
        }
        fn dns_sans(&self) -> impl Iterator<Item = &str> {
            self.dns.iter().copied()
        }
        fn leaf_pem(&self, out: &mut String) {
            out.push_str("LEAF%0A");
        }
        fn chain_pem(&self, out: &mut String) {
            out.push_str("LEAF%0AROOT%0A");
        }
    }

    fn client() -> Fake {
        Fake {
            subject: "CN=client,O=Acme\\, Inc",
            uris: vec!["spiffe://cluster.local/ns/default/sa/client"],
            dns: vec!["a.example", "b.example"],
        }
    }

    const SERVER: &str = "spiffe://cluster.local/ns/default/sa/server";

    fn all() -> ClientCertDetails {
        ClientCertDetails {
            subject: true,
            cert: true,
            chain: true,
            dns: true,
            uri: true,
        }
    }

    #[test]
    fn element_in_envoys_order_and_quoting() {
        let cases = [
            (
                ClientCertDetails::default(),
                "By=spiffe://cluster.local/ns/default/sa/server;Hash=abc123",
            ),
            (
                ClientCertDetails {
                    subject: true,
                    uri: true,
                    dns: true,
                    ..ClientCertDetails::default()
                },
                "By=spiffe://cluster.local/ns/default/sa/server;Hash=abc123;\
                 Subject=\"CN=client,O=Acme\\, Inc\";\
                 URI=spiffe://cluster.local/ns/default/sa/client;DNS=a.example;DNS=b.example",
            ),
            (
                all(),
                "By=spiffe://cluster.local/ns/default/sa/server;Hash=abc123;\
                 Cert=\"LEAF%0A\";Chain=\"LEAF%0AROOT%0A\";\
                 Subject=\"CN=client,O=Acme\\, Inc\";\
                 URI=spiffe://cluster.local/ns/default/sa/client;DNS=a.example;DNS=b.example",
            ),
        ];
        for (details, want) in cases {
            assert_eq!(element(details, &[SERVER.to_owned()], &client()), want);
        }
    }

    #[test]
    fn empty_subject_and_uri_stay_without_by() {
        // Istio's workload certificates have no subject; a local
        // certificate without a URI SAN gives no `By`.
        let peer = Fake {
            subject: "",
            uris: vec![],
            dns: vec![],
        };
        assert_eq!(
            element(all(), &[], &peer),
            "Hash=abc123;Cert=\"LEAF%0A\";Chain=\"LEAF%0AROOT%0A\";Subject=\"\";URI="
        );
    }

    fn headers(xfcc: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xfcc {
            h.append(X_FORWARDED_CLIENT_CERT.clone(), HeaderValue::from_static(v));
        }
        h
    }

    fn after(mode: ForwardClientCert, mtls: bool, sent: &[&'static str]) -> Vec<String> {
        let mut h = headers(sent);
        let current = HeaderValue::from_static("By=me;Hash=h");
        apply(&mut h, mode, mtls.then_some(&current));
        h.get_all(&X_FORWARDED_CLIENT_CERT)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    #[test]
    fn each_mode_on_mtls_and_plaintext() {
        use ForwardClientCert::*;
        let sent = &["By=a;Hash=x"][..];
        // (mode, mutual TLS, header sent, header forwarded)
        let cases: &[(ForwardClientCert, bool, &[&'static str], &[&str])] = &[
            (Sanitize, true, sent, &[]),
            (Sanitize, false, sent, &[]),
            (ForwardOnly, true, sent, &["By=a;Hash=x"]),
            (ForwardOnly, false, sent, &[]),
            (AppendForward, true, sent, &["By=a;Hash=x,By=me;Hash=h"]),
            (AppendForward, true, &[], &["By=me;Hash=h"]),
            (AppendForward, true, &[""], &["By=me;Hash=h"]),
            // Several lines become one, as Envoy's header map keeps it.
            (
                AppendForward,
                true,
                &["By=a;Hash=x", "By=b;Hash=y"],
                &["By=a;Hash=x,By=b;Hash=y,By=me;Hash=h"],
            ),
            // Without a client certificate nothing is added, and the
            // header is not trusted either.
            (AppendForward, false, sent, &[]),
            (SanitizeSet, true, sent, &["By=me;Hash=h"]),
            (SanitizeSet, true, &[], &["By=me;Hash=h"]),
            (SanitizeSet, false, sent, &[]),
            (AlwaysForwardOnly, true, sent, &["By=a;Hash=x"]),
            (AlwaysForwardOnly, false, sent, &["By=a;Hash=x"]),
            (AlwaysForwardOnly, false, &[], &[]),
        ];
        for (mode, mtls, sent, want) in cases {
            assert_eq!(
                after(*mode, *mtls, sent),
                *want,
                "{mode:?}, mTLS {mtls}, sent {sent:?}"
            );
        }
    }
}
