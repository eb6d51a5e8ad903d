//! Secrets: `static_resources.secrets`, SDS references from TLS contexts
//! (static, ADS, gRPC, file), and bad secrets naming their field.

use serde_json::{Value, json};

use super::{edited, load_ok, render};
use crate::{
    load,
    model::{
        secret::{SdsRef, Secret, SecretSource},
        tls::DataSource,
    },
    translate_secret,
};

const CHAIN: &str = "/static_resources/listeners/1/filter_chains/0/transport_socket";
const CHAIN_PATH: &str = "static_resources.listeners[1].filter_chains[0].transport_socket.typed_config.common_tls_context";

fn downstream(common: Value) -> Value {
    json!({"name": "tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": common}})
}

fn cert_secret(name: &str) -> Value {
    json!({"name": name, "tls_certificate": {
        "certificate_chain": {"inline_string": "CHAIN"},
        "private_key": {"inline_string": "KEY"}}})
}

fn errors(edits: &[(&str, Value)]) -> String {
    match load(&edited(edits)) {
        Ok(_) => panic!("accepted: {edits:?}"),
        Err(e) => render(&e),
    }
}

#[test]
fn static_secrets_are_referenced_by_name() {
    let c = load_ok(&edited(&[
        (
            "/static_resources/secrets",
            json!([cert_secret("server"), {"name": "ca", "validation_context": {
                "trusted_ca": {"inline_string": "CA"}}}]),
        ),
        (
            CHAIN,
            downstream(json!({
                "tls_certificate_sds_secret_configs": [{"name": "server"}],
                "validation_context_sds_secret_config": {"name": "ca"}})),
        ),
    ]));
    assert_eq!(c.secrets.len(), 2);
    match &c.secrets["server"].secret {
        Secret::TlsCertificate(t) => {
            assert_eq!(t.certificate_chain, DataSource::Inline(b"CHAIN".to_vec()));
        }
        other => panic!("{other:?}"),
    }
    let tls = c.listeners[1].filter_chains[0].tls.as_ref().expect("tls");
    assert_eq!(
        tls.common.certificate_sds,
        [SdsRef {
            name: "server".into(),
            source: SecretSource::Static
        }]
    );
    let resolved = tls.common.resolve(&c.secrets).expect("resolves");
    assert_eq!(resolved.certificates.len(), 1);
    assert!(resolved.validation.is_some());
    assert!(!c.needs_xds(), "static secrets need no xDS");
}

#[test]
fn istio_sources_are_kept_per_reference() {
    let c = load_ok(&edited(&[
        (
            "/static_resources/clusters/1",
            json!({"name": "sds-grpc", "type": "STATIC", "http2_protocol_options": {},
                   "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [
                       {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}]}}),
        ),
        (
            CHAIN,
            downstream(json!({
                "tls_certificate_sds_secret_configs": [
                    {"name": "default", "sds_config": {"api_config_source": {
                        "api_type": "GRPC", "transport_api_version": "V3",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]}}},
                    {"name": "file", "sds_config": {"path_config_source": {"path": "/etc/sds.yaml",
                        "watched_directory": {"path": "/etc"}}}},
                    {"name": "legacy", "sds_config": {"path": "/etc/old.yaml"}}],
                "combined_validation_context": {
                    "default_validation_context": {"match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": "spiffe://td/ns/a/sa/b"}}]},
                    "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {"api_config_source": {
                        "api_type": "GRPC",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]}}}}})),
        ),
    ]));
    let tls = c.listeners[1].filter_chains[0].tls.as_ref().expect("tls");
    let sources: Vec<_> = tls
        .common
        .secret_refs()
        .map(|r| (r.name.as_str(), r.source.clone()))
        .collect();
    assert_eq!(
        sources,
        [
            (
                "default",
                SecretSource::Grpc {
                    cluster: "sds-grpc".into()
                }
            ),
            (
                "file",
                SecretSource::File {
                    path: "/etc/sds.yaml".into()
                }
            ),
            (
                "legacy",
                SecretSource::File {
                    path: "/etc/old.yaml".into()
                }
            ),
            (
                "ROOTCA",
                SecretSource::Grpc {
                    cluster: "sds-grpc".into()
                }
            ),
        ]
    );
    let default = tls.common.secrets.validation.as_ref().expect("default");
    assert_eq!(default.san_matchers.len(), 1);
    assert!(c.needs_xds());
}

#[test]
fn an_unknown_static_secret_is_refused_naming_it() {
    let e = errors(&[(
        CHAIN,
        downstream(json!({"validation_context_sds_secret_config": {"name": "nope"}})),
    )]);
    assert!(
        e.contains(&format!(
            "{CHAIN_PATH}.validation_context_sds_secret_config.name: unknown static secret 'nope'"
        )),
        "{e}"
    );
}

#[test]
fn an_sds_cluster_must_exist() {
    let e = errors(&[(
        CHAIN,
        downstream(json!({"tls_certificate_sds_secret_configs": [
            {"name": "default", "sds_config": {"api_config_source": {
                "api_type": "GRPC", "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]}}}]})),
    )]);
    assert!(
        e.contains(&format!("{CHAIN_PATH}.tls_certificate_sds_secret_configs[0].sds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: unknown cluster 'sds-grpc'")),
        "{e}"
    );
}

#[test]
fn bad_static_secrets_name_their_field() {
    let cases = [
        (
            json!({"name": "g", "generic_secret": {"secret": {"inline_string": "x"}}}),
            "static_resources.secrets[0].generic_secret: not supported",
        ),
        (
            json!({"name": "c", "tls_certificate": {"certificate_chain": {"inline_string": "x"}}}),
            "static_resources.secrets[0].tls_certificate.private_key: is required",
        ),
        (
            json!({"name": "e"}),
            "static_resources.secrets[0]: needs tls_certificate or validation_context",
        ),
        (
            json!({"tls_certificate": {"certificate_chain": {"inline_string": "x"}, "private_key": {"inline_string": "y"}}}),
            "static_resources.secrets[0].name: must not be empty",
        ),
    ];
    for (secret, want) in cases {
        let e = errors(&[("/static_resources/secrets", json!([secret]))]);
        assert!(e.contains(want), "want {want}, got {e}");
    }
    let e = errors(&[(
        "/static_resources/secrets",
        json!([cert_secret("a"), cert_secret("a")]),
    )]);
    assert!(
        e.contains("static_resources.secrets[1].name: duplicate secret name 'a'"),
        "{e}"
    );
}

#[test]
fn an_sds_resource_translates_alone() {
    let msg = crate::parse::parse_message(
        "{name: ROOTCA, validation_context: {trusted_ca: {inline_bytes: Q0E=}}}",
        "envoy.extensions.transport_sockets.tls.v3.Secret",
    )
    .expect("parses");
    let secret = msg.transcode_to().expect("transcodes");
    let (name, model) = translate_secret(&secret, "ROOTCA").expect("translates");
    assert_eq!(name, "ROOTCA");
    match model {
        Secret::ValidationContext(v) => {
            assert_eq!(v.trusted_ca, Some(DataSource::Inline(b"CA".to_vec())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_ads_secret_needs_dynamic_resources() {
    let e = errors(&[(
        CHAIN,
        downstream(json!({"tls_certificate_sds_secret_configs": [
            {"name": "default", "sds_config": {"ads": {}}}]})),
    )]);
    assert!(
        e.contains("static_resources.listeners[1]: secret 'default' from sds_config ads needs dynamic_resources"),
        "{e}"
    );
}
