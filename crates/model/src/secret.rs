//! Secrets (Envoy `extensions.transport_sockets.tls.v3.Secret`): named
//! certificates and validation contexts that TLS contexts reference instead
//! of carrying them inline, delivered by `static_resources.secrets` or SDS
//! (over ADS, over its own gRPC stream, or from a file).
//!
//! A TLS context keeps the *names* it references ([`SdsRef`]); the secrets
//! themselves live in [`super::Config::secrets`] and are resolved
//! ([`CommonTls::resolve`]) when the snapshot is compiled. So a rotated
//! secret changes no listener or cluster spec: only the compiled TLS
//! contexts that name it are rebuilt, and the cluster registry's pools are
//! untouched.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::tls::{CertificateValidation, CommonTls, TlsCertificate, TlsSecrets};
use crate::ModelError;

// Defined beside the TLS contexts that hold them (so `tls` needs nothing
// of this module); this is where they are usually named.
pub use super::tls::{SdsRef, SecretSource};

/// What a secret holds. `generic_secret` and `session_ticket_keys` are
/// refused at translation (nothing in Strait consumes them).
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    TlsCertificate(TlsCertificate),
    ValidationContext(CertificateValidation),
}

impl Secret {
    /// The files its certificates, key and CA are read from.
    pub fn files(&self) -> Vec<&std::path::Path> {
        use super::tls::DataSource;
        let sources: Vec<&DataSource> = match self {
            Secret::TlsCertificate(c) => vec![&c.certificate_chain, &c.private_key],
            Secret::ValidationContext(v) => v.trusted_ca.iter().collect(),
        };
        sources
            .into_iter()
            .filter_map(|d| match d {
                DataSource::File(p) => Some(p.as_path()),
                DataSource::Inline(_) => None,
            })
            .collect()
    }

    /// The `Secret` field this kind is, for messages and `/config_dump`.
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::TlsCertificate(_) => "tls_certificate",
            Secret::ValidationContext(_) => "validation_context",
        }
    }
}

/// One named secret as the config holds it, with what `/config_dump`
/// reports about it. Private keys are [`super::tls::DataSource`]s whose
/// `Debug` never prints inline bytes; a dump must print
/// [`TlsCertificate::private_key`] as `[redacted]` as Envoy does.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretEntry {
    pub secret: Secret,
    /// The xDS `version_info` it arrived with (empty for static ones).
    pub version: String,
    /// When this content was first accepted; kept when a push resends it.
    pub last_updated: SystemTime,
    /// Delivered by SDS (`dynamic_active_secrets` in a dump) rather than
    /// `static_resources.secrets` (`static_secrets`).
    pub dynamic: bool,
    /// Bumped when a file the secret names changed on disk: the content
    /// to compile differs though the secret does not (Envoy watches the
    /// files of SDS secrets too).
    pub files_revision: u64,
}

impl SecretEntry {
    /// A static secret (from the bootstrap), accepted now.
    pub fn new(secret: Secret, version: impl Into<String>) -> SecretEntry {
        SecretEntry {
            secret,
            version: version.into(),
            last_updated: SystemTime::now(),
            dynamic: false,
            files_revision: 0,
        }
    }

    /// A secret delivered by SDS at `version`, accepted now.
    pub fn dynamic(secret: Secret, version: impl Into<String>) -> SecretEntry {
        SecretEntry {
            dynamic: true,
            ..SecretEntry::new(secret, version)
        }
    }

    /// `last_updated` as seconds since the epoch.
    pub fn last_updated_secs(&self) -> u64 {
        self.last_updated
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }
}

/// Secrets by name. Names are global across sources: Istio's `default` and
/// `ROOTCA` come from one source, and two sources serving one name would be
/// a misconfiguration Envoy also cannot express meaningfully in a dump.
pub type Secrets = BTreeMap<String, SecretEntry>;

impl CommonTls {
    /// Every secret name the context references, certificates first.
    pub fn secret_refs(&self) -> impl Iterator<Item = &SdsRef> {
        self.certificate_sds
            .iter()
            .chain(self.validation_sds.iter())
    }

    /// True when every referenced secret has the same content in `a` and
    /// `b`: a context compiled against `a` is still right for `b`.
    pub fn same_secrets(&self, a: &Secrets, b: &Secrets) -> bool {
        self.secret_refs().all(|r| {
            let (x, y) = (a.get(&r.name), b.get(&r.name));
            x.map(|e| (&e.secret, e.files_revision)) == y.map(|e| (&e.secret, e.files_revision))
        })
    }

    /// The certificates and validation the context uses, with its SDS
    /// references looked up in `secrets`. A combined validation context
    /// merges as Envoy's does (the default, then the dynamic one over it):
    /// the dynamic `trusted_ca` wins when set, SAN matchers add up.
    pub fn resolve(&self, secrets: &Secrets) -> Result<TlsSecrets, ModelError> {
        let mut out = self.secrets.clone();
        for r in &self.certificate_sds {
            match lookup(secrets, &r.name)? {
                Secret::TlsCertificate(c) => out.certificates.push(c.clone()),
                other => return Err(wrong_kind(&r.name, other, "tls_certificate")),
            }
        }
        if let Some(r) = &self.validation_sds {
            let dynamic = match lookup(secrets, &r.name)? {
                Secret::ValidationContext(v) => v,
                other => return Err(wrong_kind(&r.name, other, "validation_context")),
            };
            out.validation = Some(match out.validation.take() {
                None => dynamic.clone(),
                Some(mut default) => {
                    if dynamic.trusted_ca.is_some() {
                        default.trusted_ca.clone_from(&dynamic.trusted_ca);
                    }
                    default
                        .san_matchers
                        .extend(dynamic.san_matchers.iter().cloned());
                    default
                }
            });
        }
        Ok(out)
    }
}

fn lookup<'a>(secrets: &'a Secrets, name: &str) -> Result<&'a Secret, ModelError> {
    secrets
        .get(name)
        .map(|e| &e.secret)
        .ok_or_else(|| ModelError::Invalid {
            path: format!("secret '{name}'"),
            message: "has not been received".to_owned(),
        })
}

fn wrong_kind(name: &str, found: &Secret, wanted: &str) -> ModelError {
    ModelError::Invalid {
        path: format!("secret '{name}'"),
        message: format!("is a {}, not a {wanted}", found.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        policy::{ValueMatch, ValueMatcher},
        tls::{DataSource, SanMatcher, SanType},
    };

    fn entry(secret: Secret) -> SecretEntry {
        SecretEntry::new(secret, "1")
    }

    fn cert(tag: &str) -> TlsCertificate {
        TlsCertificate {
            certificate_chain: DataSource::Inline(tag.as_bytes().to_vec()),
            private_key: DataSource::Inline(b"key".to_vec()),
        }
    }

    fn sds(name: &str) -> SdsRef {
        SdsRef {
            name: name.into(),
            source: SecretSource::Ads,
        }
    }

    #[test]
    fn combined_validation_merges_default_and_dynamic() {
        let san = SanMatcher {
            san_type: SanType::Uri,
            matcher: ValueMatcher {
                kind: ValueMatch::Exact("spiffe://a".into()),
                ignore_case: false,
            },
        };
        let ctx = CommonTls {
            secrets: TlsSecrets {
                certificates: Vec::new(),
                validation: Some(CertificateValidation {
                    trusted_ca: None,
                    san_matchers: vec![san.clone()],
                }),
            },
            certificate_sds: vec![sds("default")],
            validation_sds: Some(sds("ROOTCA")),
            ..CommonTls::default()
        };
        let mut secrets = Secrets::new();
        secrets.insert("default".into(), entry(Secret::TlsCertificate(cert("c1"))));
        assert_eq!(
            ctx.resolve(&secrets).expect_err("missing").to_string(),
            "secret 'ROOTCA': has not been received"
        );
        secrets.insert(
            "ROOTCA".into(),
            entry(Secret::ValidationContext(CertificateValidation {
                trusted_ca: Some(DataSource::Inline(b"ca".to_vec())),
                san_matchers: Vec::new(),
            })),
        );
        let got = ctx.resolve(&secrets).expect("resolves");
        assert_eq!(got.certificates, vec![cert("c1")]);
        let v = got.validation.expect("validation");
        assert_eq!(v.trusted_ca, Some(DataSource::Inline(b"ca".to_vec())));
        assert_eq!(v.san_matchers, vec![san]);
    }

    #[test]
    fn a_secret_of_the_wrong_kind_is_named() {
        let ctx = CommonTls {
            validation_sds: Some(sds("default")),
            ..CommonTls::default()
        };
        let mut secrets = Secrets::new();
        secrets.insert("default".into(), entry(Secret::TlsCertificate(cert("c"))));
        let err = ctx.resolve(&secrets).expect_err("wrong kind");
        assert_eq!(
            err.to_string(),
            "secret 'default': is a tls_certificate, not a validation_context"
        );
    }

    #[test]
    fn same_secrets_looks_only_at_referenced_content() {
        let ctx = CommonTls {
            certificate_sds: vec![sds("default")],
            ..CommonTls::default()
        };
        let mut a = Secrets::new();
        a.insert("default".into(), entry(Secret::TlsCertificate(cert("c1"))));
        let mut b = a.clone();
        // A resend under a new version with the same content is the same.
        b.insert(
            "default".into(),
            SecretEntry::new(Secret::TlsCertificate(cert("c1")), "2"),
        );
        b.insert("other".into(), entry(Secret::TlsCertificate(cert("x"))));
        assert!(ctx.same_secrets(&a, &b));
        b.insert("default".into(), entry(Secret::TlsCertificate(cert("c2"))));
        assert!(!ctx.same_secrets(&a, &b));
    }
}
