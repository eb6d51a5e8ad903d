//! What a TLS connection tells about its peer's certificate, for Envoy's
//! `x-forwarded-client-cert`: the leaf's SHA-256, subject and SANs, and the
//! leaf or chain as URL-encoded PEM. Read once per connection.

use std::fmt::Write;

use base64::{Engine, engine::general_purpose::STANDARD};
use rustls::pki_types::CertificateDer;

use crate::{ClientTlsStream, ServerTlsStream, dn};

/// The certificate chain a client presented (leaf first), verified by the
/// handshake.
pub struct PeerChain<'a> {
    certs: &'a [CertificateDer<'static>],
    leaf: webpki::EndEntityCert<'a>,
}

impl std::fmt::Debug for PeerChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChain")
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

impl<'a> PeerChain<'a> {
    /// The client's chain on a terminated connection; `None` when the
    /// client sent no certificate (not mutual TLS).
    pub fn of<IO>(stream: &'a ServerTlsStream<IO>) -> Option<PeerChain<'a>> {
        let certs = stream.get_ref().1.peer_certificates()?;
        PeerChain::new(certs)
    }

    /// The server's chain on an upstream TLS connection (verified by the
    /// handshake when the context validates the server).
    pub fn of_upstream<IO>(stream: &'a ClientTlsStream<IO>) -> Option<PeerChain<'a>> {
        let certs = stream.get_ref().1.peer_certificates()?;
        PeerChain::new(certs)
    }

    fn new(certs: &'a [CertificateDer<'static>]) -> Option<PeerChain<'a>> {
        let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
        Some(PeerChain { certs, leaf })
    }

    /// Appends the lower-case hex SHA-256 of the leaf's DER (`Hash=`).
    pub fn sha256_hex(&self, out: &mut String) {
        let Some(leaf) = self.certs.first() else {
            return;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
        for b in digest.as_ref() {
            let _ = write!(out, "{b:02x}");
        }
    }

    /// Appends the leaf's subject in RFC 2253 form, as Envoy prints it
    /// (`Subject=`); nothing for an empty subject.
    pub fn subject(&self, out: &mut String) {
        dn::rfc2253(self.leaf.subject(), out);
    }

    /// The leaf's URI SANs, in certificate order.
    pub fn uri_sans(&self) -> impl Iterator<Item = &'a str> {
        self.leaf.valid_uri_names()
    }

    /// The leaf's DNS SANs, in certificate order.
    pub fn dns_sans(&self) -> impl Iterator<Item = &'a str> {
        self.leaf.valid_dns_names()
    }

    /// The identities RBAC matches a principal name against, owned, made
    /// once per connection.
    pub fn identity(&self) -> PeerIdentity {
        let mut subject = String::new();
        self.subject(&mut subject);
        PeerIdentity {
            uri_sans: self.uri_sans().map(Box::from).collect(),
            dns_sans: self.dns_sans().map(Box::from).collect(),
            subject: subject.into_boxed_str(),
        }
    }

    /// Appends the leaf as URL-encoded PEM (`Cert=`).
    pub fn leaf_pem(&self, out: &mut String) {
        if let Some(leaf) = self.certs.first() {
            url_encoded_pem(leaf, out);
        }
    }

    /// Appends the whole chain, leaf first, as URL-encoded PEM (`Chain=`).
    pub fn chain_pem(&self, out: &mut String) {
        for cert in self.certs {
            url_encoded_pem(cert, out);
        }
    }
}

/// A peer certificate's identities, as Envoy's RBAC `authenticated`
/// principal reads them: URI SANs, then DNS SANs, then the RFC 2253
/// subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub uri_sans: Box<[Box<str>]>,
    pub dns_sans: Box<[Box<str>]>,
    pub subject: Box<str>,
}

/// PEM as OpenSSL writes it (64-column base64), with the characters Envoy
/// encodes (`\n`, space, `+`, `/`, `=`) percent-encoded.
fn url_encoded_pem(der: &CertificateDer<'_>, out: &mut String) {
    let b64 = STANDARD.encode(der.as_ref());
    out.push_str("-----BEGIN%20CERTIFICATE-----%0A");
    for line in b64.as_bytes().chunks(64) {
        for &c in line {
            match c {
                b'+' => out.push_str("%2B"),
                b'/' => out.push_str("%2F"),
                b'=' => out.push_str("%3D"),
                _ => out.push(char::from(c)),
            }
        }
        out.push_str("%0A");
    }
    out.push_str("-----END%20CERTIFICATE-----%0A");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Vec<CertificateDer<'static>> {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".to_owned()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://td/ns/x/sa/y".try_into().expect("uri"),
        ));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        vec![cert.der().clone(), cert.der().clone()]
    }

    #[test]
    fn reads_what_xfcc_needs_from_the_leaf() {
        let certs = chain();
        let peer = PeerChain::new(&certs).expect("a chain");
        let mut hash = String::new();
        peer.sha256_hex(&mut hash);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let want: String = ring::digest::digest(&ring::digest::SHA256, certs[0].as_ref())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash, want);
        let mut subject = String::new();
        peer.subject(&mut subject);
        assert_eq!(subject, "CN=client,O=Acme\\, Inc");
        assert_eq!(
            peer.uri_sans().collect::<Vec<_>>(),
            ["spiffe://td/ns/x/sa/y"]
        );
        assert_eq!(peer.dns_sans().collect::<Vec<_>>(), ["a.example"]);
    }

    #[test]
    fn pem_is_url_encoded_as_envoy_does() {
        let certs = chain();
        let peer = PeerChain::new(&certs).expect("a chain");
        let mut leaf = String::new();
        peer.leaf_pem(&mut leaf);
        assert!(
            leaf.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
            "{leaf}"
        );
        assert!(leaf.ends_with("-----END%20CERTIFICATE-----%0A"), "{leaf}");
        assert!(!leaf.contains(['\n', ' ', '+', '/', '=']), "{leaf}");
        // Decoding gives back the PEM a PEM writer produces.
        let decoded = leaf
            .replace("%0A", "\n")
            .replace("%20", " ")
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
            STANDARD
                .encode(certs[0].as_ref())
                .as_bytes()
                .chunks(64)
                .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
                .collect::<String>()
        );
        assert_eq!(decoded, pem);
        let mut chain = String::new();
        peer.chain_pem(&mut chain);
        assert_eq!(chain, format!("{leaf}{leaf}"));
    }

    #[test]
    fn no_certificate_is_no_chain() {
        assert!(PeerChain::new(&[]).is_none());
    }
}
