//! A test CA issuing SPIFFE identities, written as PEM files the way a
//! mesh mounts them (`cert-chain.pem`, `key.pem`, `root-cert.pem`).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

use crate::TempDir;

/// A certificate and key on disk.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA whose root is at [`TestCa::root`]. Each CA has its own name, so
/// certificates from different test CAs never chain to each other.
pub struct TestCa {
    dir: TempDir,
    root: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    n: AtomicU64,
}

impl TestCa {
    /// A new CA named `name`, its root written to `<dir>/root-cert.pem`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let mut params =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("CA cert: {e}"));
        let dir = TempDir::new("ca");
        let root = dir.path().join("root-cert.pem");
        std::fs::write(&root, cert.pem()).unwrap_or_else(|e| panic!("writing root: {e}"));
        TestCa {
            dir,
            root,
            issuer: Issuer::new(params, key),
            n: AtomicU64::new(0),
        }
    }

    /// The CA's root certificate (PEM).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A leaf with URI SAN `spiffe` (if not empty) and DNS SANs `dns`,
    /// valid now, usable by servers and clients.
    pub fn issue(&self, spiffe: &str, dns: &[&str]) -> Issued {
        self.issue_with(spiffe, dns, false)
    }

    /// A workload certificate as Istio's CA issues it: an empty subject
    /// (where [`TestCa::issue`] has rcgen's `CN=rcgen self signed cert`)
    /// and URI SAN `spiffe` only.
    pub fn issue_workload(&self, spiffe: &str) -> Issued {
        self.sign(spiffe, &[], false, true)
    }

    /// Like [`TestCa::issue`] but valid only in the first half of 2020.
    pub fn issue_expired(&self, spiffe: &str, dns: &[&str]) -> Issued {
        self.issue_with(spiffe, dns, true)
    }

    fn issue_with(&self, spiffe: &str, dns: &[&str], expired: bool) -> Issued {
        self.sign(spiffe, dns, expired, false)
    }

    fn sign(&self, spiffe: &str, dns: &[&str], expired: bool, no_subject: bool) -> Issued {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let mut params =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        if no_subject {
            params.distinguished_name = DistinguishedName::new();
        }
        let mut sans: Vec<SanType> = dns
            .iter()
            .map(|d| {
                SanType::DnsName(
                    (*d).try_into()
                        .unwrap_or_else(|e| panic!("DNS SAN {d}: {e}")),
                )
            })
            .collect();
        if !spiffe.is_empty() {
            sans.push(SanType::URI(
                spiffe
                    .try_into()
                    .unwrap_or_else(|e| panic!("URI SAN {spiffe}: {e}")),
            ));
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 6, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("signing: {e}"));
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let issued = Issued {
            cert: self.dir.path().join(format!("cert-chain-{n}.pem")),
            key: self.dir.path().join(format!("key-{n}.pem")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap_or_else(|e| panic!("writing cert: {e}"));
        std::fs::write(&issued.key, key.serialize_pem())
            .unwrap_or_else(|e| panic!("writing key: {e}"));
        issued
    }
}

impl Issued {
    /// The certificate as Envoy's `x-forwarded-client-cert` names it, by
    /// `openssl x509`: the SHA-256 of its DER (`Hash`, lower-case hex) and
    /// its RFC 2253 subject (`Subject`). Panics without `openssl`.
    pub fn hash_and_subject(&self) -> (String, String) {
        let out = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-fingerprint",
                "-sha256",
                "-subject",
                "-nameopt",
                "RFC2253",
                "-in",
            ])
            .arg(&self.cert)
            .output()
            .unwrap_or_else(|e| panic!("openssl is required (apt-get install openssl): {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut values = text
            .lines()
            .map(|l| l.split_once('=').map_or("", |(_, v)| v.trim()));
        let fingerprint = values.next().unwrap_or_default();
        let subject = values.next().unwrap_or_default();
        assert!(!fingerprint.is_empty(), "openssl x509: {text}");
        (
            fingerprint.replace(':', "").to_ascii_lowercase(),
            subject.to_owned(),
        )
    }
}

/// A `transport_socket` block (YAML, indented by `indent` spaces) with a
/// `DownstreamTlsContext` serving `cert`. With `client_ca`, client
/// certificates are required and verified against it; `client_san`, when
/// not empty, must equal the client's URI SAN.
pub fn downstream_tls(
    indent: usize,
    cert: &Issued,
    client_ca: Option<&Path>,
    client_san: &str,
    alpn: &[&str],
) -> String {
    let validation = match client_ca {
        None => String::new(),
        Some(ca) => {
            let san = if client_san.is_empty() {
                String::new()
            } else {
                format!(
                    "\n        match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: \"{client_san}\"}}}}]"
                )
            };
            format!(
                "\n      validation_context:\n        trusted_ca: {{filename: {}}}{san}",
                ca.display()
            )
        }
    };
    let text = format!(
        r#"transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
    require_client_certificate: {require}
    common_tls_context:
      alpn_protocols: [{alpn}]
      tls_certificates:
      - certificate_chain: {{filename: {cert}}}
        private_key: {{filename: {key}}}{validation}"#,
        require = client_ca.is_some(),
        alpn = alpn.join(", "),
        cert = cert.cert.display(),
        key = cert.key.display(),
    );
    indent_by(&text, indent)
}

/// A cluster `transport_socket` block (YAML, indented by `indent`) with an
/// `UpstreamTlsContext`: client certificate `cert`, server verified against
/// `ca` and, when `server_san` is not empty, its URI SAN.
pub fn upstream_tls(
    indent: usize,
    cert: &Issued,
    ca: &Path,
    server_san: &str,
    sni: &str,
    alpn: &[&str],
) -> String {
    let san = if server_san.is_empty() {
        String::new()
    } else {
        format!(
            "\n        match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: \"{server_san}\"}}}}]"
        )
    };
    let text = format!(
        r#"transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: "{sni}"
    common_tls_context:
      alpn_protocols: [{alpn}]
      tls_certificates:
      - certificate_chain: {{filename: {cert}}}
        private_key: {{filename: {key}}}
      validation_context:
        trusted_ca: {{filename: {ca}}}{san}"#,
        alpn = alpn.join(", "),
        cert = cert.cert.display(),
        key = cert.key.display(),
        ca = ca.display(),
    );
    indent_by(&text, indent)
}

fn indent_by(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
