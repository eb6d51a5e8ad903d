//! Transport sockets: `envoy.transport_sockets.tls` with
//! `DownstreamTlsContext` (filter chains) and `UpstreamTlsContext`
//! (clusters), and `raw_buffer` (plaintext).
//!
//! Certificates are not read here: translation stays pure, and the `tls`
//! crate loads them when the snapshot is compiled.

use envoy_types::pb::envoy::{
    config::core::v3::{DataSource, TransportSocket, data_source, transport_socket},
    extensions::transport_sockets::{
        raw_buffer::v3::RawBuffer,
        tls::v3::{
            CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
            SubjectAltNameMatcher, TlsCertificate, TlsParameters, UpstreamTlsContext,
            common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
            subject_alt_name_matcher,
            tls_parameters::TlsProtocol,
        },
    },
};
use prost::Name;

use super::{Context, at, bool_value, decode_any, item, policy::string_matcher, secret, type_name};
use crate::model::tls::{
    CertificateValidation, CommonTls, DownstreamTls, SanMatcher, SanType, TlsVersion, UpstreamTls,
};

/// What a transport socket asks for, before it is known which side it is on.
enum Socket<'a> {
    Plain,
    Tls(&'a envoy_types::pb::google::protobuf::Any),
}

/// The ALPN protocol of Istio's TCP metadata exchange.
const ISTIO_PEER_EXCHANGE: &str = "istio-peer-exchange";

/// Removes `istio-peer-exchange` from `alpn`: Istio's TCP metadata
/// exchange starts when that protocol is negotiated, so a filter chain or
/// cluster that does not run the exchange must neither accept nor offer
/// it (the peer then stays on plain `istio`, and sends no preamble).
pub(super) fn without_peer_exchange(alpn: &mut Vec<String>) {
    alpn.retain(|p| p.as_str() != ISTIO_PEER_EXCHANGE);
}

fn socket<'a>(cx: &mut Context, ts: &'a TransportSocket, path: &str) -> Option<Socket<'a>> {
    // Envoy picks the implementation by type URL; the name is a label,
    // except for a socket written by name alone, as older Istio writes
    // `raw_buffer` (`tlsMode-disabled`): Envoy resolves that by name.
    let TransportSocket { name, config_type } = ts;
    let Some(transport_socket::ConfigType::TypedConfig(any)) = config_type else {
        if matches!(
            name.as_str(),
            "envoy.transport_sockets.raw_buffer" | "raw_buffer"
        ) {
            return Some(Socket::Plain);
        }
        cx.invalid(at(path, "typed_config"), "is required");
        return None;
    };
    let ty = type_name(&any.type_url);
    if ty == RawBuffer::full_name() {
        Some(Socket::Plain)
    } else if ty == DownstreamTlsContext::full_name() || ty == UpstreamTlsContext::full_name() {
        Some(Socket::Tls(any))
    } else {
        cx.unsupported(
            at(&at(path, "typed_config"), "@type"),
            format!("transport socket {}", any.type_url),
        );
        None
    }
}

/// A filter chain's `transport_socket`: `Ok(None)` for plaintext.
pub(super) fn downstream(
    cx: &mut Context,
    ts: &TransportSocket,
    path: &str,
) -> Option<Option<DownstreamTls>> {
    let any = match socket(cx, ts, path)? {
        Socket::Plain => return Some(None),
        Socket::Tls(any) => any,
    };
    let path = at(path, "typed_config");
    let ctx: DownstreamTlsContext = decode_any(cx, &path, any)?;
    let DownstreamTlsContext {
        common_tls_context,
        require_client_certificate,
        require_sni,
        disable_stateful_session_resumption,
        session_timeout,
        ocsp_staple_policy,
        full_scan_certs_on_sni_mismatch,
        prefer_client_ciphers,
        session_ticket_keys_type,
    } = &ctx;
    reject_set!(cx, &path;
        disable_stateful_session_resumption, session_timeout, ocsp_staple_policy,
        session_ticket_keys_type,
    );
    cx.reject_unless_bool(&path, "require_sni", require_sni, false);
    cx.reject_unless_bool(
        &path,
        "full_scan_certs_on_sni_mismatch",
        full_scan_certs_on_sni_mismatch,
        false,
    );
    let common = common_tls(
        cx,
        common_tls_context.as_ref(),
        &at(&path, "common_tls_context"),
    )?;
    Some(Some(DownstreamTls {
        common,
        require_client_certificate: bool_value(require_client_certificate, false),
        prefer_client_ciphers: *prefer_client_ciphers,
    }))
}

/// A cluster's `transport_socket`: `Ok(None)` for plaintext.
pub(super) fn upstream(
    cx: &mut Context,
    ts: &TransportSocket,
    path: &str,
) -> Option<Option<UpstreamTls>> {
    let any = match socket(cx, ts, path)? {
        Socket::Plain => return Some(None),
        Socket::Tls(any) => any,
    };
    let path = at(path, "typed_config");
    let ctx: UpstreamTlsContext = decode_any(cx, &path, any)?;
    let UpstreamTlsContext {
        common_tls_context,
        sni,
        auto_host_sni,
        auto_sni_san_validation,
        allow_renegotiation,
        // A client-side session cache size: a resumption tuning knob.
        max_session_keys: _,
        enforce_rsa_key_usage,
    } = &ctx;
    reject_set!(cx, &path; auto_host_sni, auto_sni_san_validation, allow_renegotiation);
    cx.reject_unless_bool(&path, "enforce_rsa_key_usage", enforce_rsa_key_usage, true);
    let common = common_tls(
        cx,
        common_tls_context.as_ref(),
        &at(&path, "common_tls_context"),
    )?;
    Some(Some(UpstreamTls {
        common,
        sni: sni.clone(),
    }))
}

fn common_tls(cx: &mut Context, c: Option<&CommonTlsContext>, path: &str) -> Option<CommonTls> {
    let Some(c) = c else {
        return Some(CommonTls::default());
    };
    let CommonTlsContext {
        tls_params,
        tls_certificates,
        tls_certificate_sds_secret_configs,
        tls_certificate_provider_instance,
        custom_tls_certificate_selector,
        tls_certificate_certificate_provider,
        tls_certificate_certificate_provider_instance,
        alpn_protocols,
        custom_handshaker,
        key_log,
        validation_context_type,
    } = c;
    reject_set!(cx, path;
        tls_certificate_provider_instance, custom_tls_certificate_selector,
        tls_certificate_certificate_provider, tls_certificate_certificate_provider_instance,
        custom_handshaker, key_log,
    );
    let mut out = CommonTls {
        // `istio-peer-exchange` is kept here; the filter chain and the
        // cluster remove it where no exchange is configured
        // ([`without_peer_exchange`]).
        alpn: alpn_protocols.clone(),
        ..CommonTls::default()
    };
    if let Some(p) = tls_params {
        params(cx, p, &at(path, "tls_params"), &mut out);
    }
    for (i, cert) in tls_certificates.iter().enumerate() {
        if let Some(c) = certificate(cx, cert, &item(path, "tls_certificates", i)) {
            out.secrets.certificates.push(c);
        }
    }
    for (i, sds) in tls_certificate_sds_secret_configs.iter().enumerate() {
        let spath = item(path, "tls_certificate_sds_secret_configs", i);
        if let Some(r) = secret::sds_secret_config(cx, sds, &spath) {
            out.certificate_sds.push(r);
        }
    }
    out.secrets.validation = match validation_context_type {
        None => None,
        Some(ValidationContextType::ValidationContext(v)) => {
            Some(validation(cx, v, &at(path, "validation_context"))?)
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(sds)) => {
            let spath = at(path, "validation_context_sds_secret_config");
            out.validation_sds = Some(secret::sds_secret_config(cx, sds, &spath)?);
            None
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            combined(cx, c, &at(path, "combined_validation_context"), &mut out)?
        }
        Some(_) => {
            cx.unsupported(
                path,
                "validation context from a certificate provider; use validation_context",
            );
            None
        }
    };
    Some(out)
}

/// `combined_validation_context` (Istio's `default` validation plus the
/// `ROOTCA` secret): the default stays inline, the SDS one is referenced
/// and merged over it when the snapshot resolves secrets.
#[allow(deprecated)]
fn combined(
    cx: &mut Context,
    c: &CombinedCertificateValidationContext,
    path: &str,
    out: &mut CommonTls,
) -> Option<Option<CertificateValidation>> {
    let CombinedCertificateValidationContext {
        default_validation_context,
        validation_context_sds_secret_config,
        validation_context_certificate_provider,
        validation_context_certificate_provider_instance,
    } = c;
    reject_set!(cx, path;
        validation_context_certificate_provider, validation_context_certificate_provider_instance,
    );
    let Some(sds) = validation_context_sds_secret_config else {
        cx.invalid(
            at(path, "validation_context_sds_secret_config"),
            "is required",
        );
        return None;
    };
    let spath = at(path, "validation_context_sds_secret_config");
    out.validation_sds = Some(secret::sds_secret_config(cx, sds, &spath)?);
    let default = match default_validation_context {
        Some(d) => validation(cx, d, &at(path, "default_validation_context"))?,
        None => CertificateValidation::default(),
    };
    Some(Some(default))
}

fn params(cx: &mut Context, p: &TlsParameters, path: &str, out: &mut CommonTls) {
    let TlsParameters {
        tls_minimum_protocol_version,
        tls_maximum_protocol_version,
        cipher_suites,
        ecdh_curves,
        signature_algorithms,
        compliance_policies,
    } = p;
    reject_set!(cx, path; ecdh_curves, signature_algorithms, compliance_policies);
    let version = |cx: &mut Context, v: i32, field: &str, is_min: bool| -> Option<TlsVersion> {
        match TlsProtocol::try_from(v) {
            Ok(TlsProtocol::TlsAuto) => None,
            // rustls speaks nothing older than TLS 1.2. A lower minimum only
            // widens what is accepted, so TLS 1.2 serves it; a lower maximum
            // would need a protocol Strait does not have.
            Ok(TlsProtocol::TlSv10 | TlsProtocol::TlSv11) if is_min => Some(TlsVersion::Tls12),
            Ok(TlsProtocol::TlSv12) => Some(TlsVersion::Tls12),
            Ok(TlsProtocol::TlSv13) => Some(TlsVersion::Tls13),
            Ok(other) => {
                cx.unsupported(
                    at(path, field),
                    format!("{} (rustls speaks TLS 1.2 and 1.3)", other.as_str_name()),
                );
                None
            }
            Err(_) => {
                cx.invalid(at(path, field), format!("unknown TLS version {v}"));
                None
            }
        }
    };
    out.min_version = version(
        cx,
        *tls_minimum_protocol_version,
        "tls_minimum_protocol_version",
        true,
    );
    out.max_version = version(
        cx,
        *tls_maximum_protocol_version,
        "tls_maximum_protocol_version",
        false,
    );
    if let (Some(min), Some(max)) = (out.min_version, out.max_version)
        && min > max
    {
        cx.invalid(path, "tls_minimum_protocol_version is above the maximum");
    }
    out.cipher_suites = cipher_suites.clone();
}

pub(super) fn certificate(
    cx: &mut Context,
    c: &TlsCertificate,
    path: &str,
) -> Option<crate::model::tls::TlsCertificate> {
    let TlsCertificate {
        certificate_chain,
        private_key,
        pkcs12,
        watched_directory,
        private_key_provider,
        password,
        ocsp_staple,
        signed_certificate_timestamp,
        tls_params,
    } = c;
    reject_set!(cx, path;
        pkcs12, watched_directory, private_key_provider, password, ocsp_staple,
        signed_certificate_timestamp, tls_params,
    );
    let chain = data_source(
        cx,
        certificate_chain.as_ref(),
        &at(path, "certificate_chain"),
    );
    let key = data_source(cx, private_key.as_ref(), &at(path, "private_key"));
    Some(crate::model::tls::TlsCertificate {
        certificate_chain: chain?,
        private_key: key?,
    })
}

fn data_source(
    cx: &mut Context,
    d: Option<&DataSource>,
    path: &str,
) -> Option<crate::model::tls::DataSource> {
    use crate::model::tls::DataSource as Model;
    let Some(DataSource {
        watched_directory,
        specifier,
    }) = d
    else {
        cx.invalid(path, "is required");
        return None;
    };
    reject_set!(cx, path; watched_directory);
    match specifier {
        Some(data_source::Specifier::Filename(f)) if !f.is_empty() => Some(Model::File(f.into())),
        Some(data_source::Specifier::InlineBytes(b)) => Some(Model::Inline(b.clone())),
        Some(data_source::Specifier::InlineString(s)) => {
            Some(Model::Inline(s.clone().into_bytes()))
        }
        Some(data_source::Specifier::EnvironmentVariable(_)) => {
            cx.unsupported(at(path, "environment_variable"), "environment_variable");
            None
        }
        _ => {
            cx.invalid(path, "needs filename, inline_bytes or inline_string");
            None
        }
    }
}

pub(super) fn validation(
    cx: &mut Context,
    v: &CertificateValidationContext,
    path: &str,
) -> Option<CertificateValidation> {
    let CertificateValidationContext {
        trusted_ca,
        ca_certificate_provider_instance,
        system_root_certs,
        watched_directory,
        verify_certificate_spki,
        verify_certificate_hash,
        match_typed_subject_alt_names,
        match_subject_alt_names,
        require_signed_certificate_timestamp,
        crl,
        allow_expired_certificate,
        trust_chain_verification,
        custom_validator_config,
        only_verify_leaf_cert_crl,
        max_verify_depth,
        suppress_client_ca_list,
    } = v;
    reject_set!(cx, path;
        ca_certificate_provider_instance, system_root_certs, watched_directory,
        verify_certificate_spki, verify_certificate_hash, crl, allow_expired_certificate,
        trust_chain_verification, custom_validator_config, only_verify_leaf_cert_crl,
        max_verify_depth, suppress_client_ca_list,
    );
    cx.reject_unless_bool(
        path,
        "require_signed_certificate_timestamp",
        require_signed_certificate_timestamp,
        false,
    );
    let trusted_ca = match trusted_ca {
        Some(d) => Some(data_source(cx, Some(d), &at(path, "trusted_ca"))?),
        None => None,
    };
    let mut san_matchers = Vec::new();
    for (i, m) in match_typed_subject_alt_names.iter().enumerate() {
        let mpath = item(path, "match_typed_subject_alt_names", i);
        if let Some(m) = san_matcher(cx, m, &mpath) {
            san_matchers.push(m);
        }
    }
    for (i, m) in match_subject_alt_names.iter().enumerate() {
        let mpath = item(path, "match_subject_alt_names", i);
        if let Some(matcher) = string_matcher(cx, m, &mpath) {
            san_matchers.push(SanMatcher {
                san_type: SanType::Any,
                matcher,
            });
        }
    }
    Some(CertificateValidation {
        trusted_ca,
        san_matchers,
    })
}

fn san_matcher(cx: &mut Context, m: &SubjectAltNameMatcher, path: &str) -> Option<SanMatcher> {
    let SubjectAltNameMatcher {
        san_type,
        matcher,
        oid,
    } = m;
    reject_set!(cx, path; oid);
    use subject_alt_name_matcher::SanType as Proto;
    let san_type = match Proto::try_from(*san_type) {
        Ok(Proto::Dns) => SanType::Dns,
        Ok(Proto::Uri) => SanType::Uri,
        Ok(Proto::Unspecified) => {
            cx.invalid(at(path, "san_type"), "is required");
            return None;
        }
        Ok(other) => {
            cx.unsupported(
                at(path, "san_type"),
                format!(
                    "SAN type {} (DNS and URI are supported)",
                    other.as_str_name()
                ),
            );
            return None;
        }
        Err(_) => {
            cx.invalid(at(path, "san_type"), format!("unknown SAN type {san_type}"));
            return None;
        }
    };
    let Some(matcher) = matcher else {
        cx.invalid(at(path, "matcher"), "is required");
        return None;
    };
    Some(SanMatcher {
        san_type,
        matcher: string_matcher(cx, matcher, &at(path, "matcher"))?,
    })
}
