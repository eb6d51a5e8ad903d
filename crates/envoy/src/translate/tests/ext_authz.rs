//! Network ext_authz translation: Istio's CUSTOM shape accepted, the
//! fields Strait cannot honour refused by name.

use serde_json::{Value, json};

use super::{TCP, edited, load_ok, render};
use crate::{load, model::ext_authz::NetworkExtAuthz};

/// The base config's TCP listener with network ext_authz (`extra` fields
/// added) before its TCP proxy.
fn network(extra: Value) -> String {
    let mut authz = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
        "stat_prefix": "tcp.",
        "grpc_service": {"envoy_grpc": {"cluster_name": "backend"}, "timeout": "2s"},
    });
    if let (Some(m), Value::Object(e)) = (authz.as_object_mut(), extra) {
        m.extend(e);
    }
    let tcp_filter: Value = {
        let base: Value = serde_yaml::from_str(super::BASE).expect("base");
        base.pointer(&TCP.replace("/typed_config", ""))
            .cloned()
            .expect("tcp filter")
    };
    edited(&[
        (
            &TCP.replace("/0/typed_config", "/0"),
            json!({"name": "envoy.filters.network.ext_authz", "typed_config": authz}),
        ),
        (&TCP.replace("/0/typed_config", "/1"), tcp_filter),
    ])
}

#[test]
fn network_ext_authz_translates_and_refuses_by_name() {
    let c = load_ok(&network(json!({
        "transport_api_version": "V3",
        "failure_mode_allow": true,
        "filter_enabled_metadata": {
            "filter": "envoy.filters.network.rbac",
            "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
            "value": {"string_match": {"prefix": "istio-ext-authz"}},
        },
    })));
    let authz = c.listeners[1].filter_chains[0].read_filters[0]
        .config
        .get::<NetworkExtAuthz>()
        .expect("network ext_authz");
    assert_eq!(authz.cluster, "backend");
    assert_eq!(authz.timeout, std::time::Duration::from_secs(2));
    assert!(authz.failure_mode_allow);
    assert!(authz.filter_enabled_metadata.is_some());
    for (field, value) in [
        ("send_tls_alert_on_denial", json!(true)),
        ("include_peer_certificate", json!(true)),
        ("include_tls_session", json!(true)),
        ("shadow_mode", json!(true)),
        ("bootstrap_metadata_labels_key", json!("labels")),
    ] {
        let errors = load(&network(json!({ field: value }))).expect_err(field);
        let all = render(&errors);
        assert!(all.contains(field), "{field} not in:\n{all}");
    }
    // A check needs a service, and the service's cluster must exist.
    let errors = load(&network(json!({
        "grpc_service": {"envoy_grpc": {"cluster_name": "nowhere"}}
    })))
    .expect_err("unknown cluster");
    assert!(render(&errors).contains("nowhere"), "{}", render(&errors));
}
