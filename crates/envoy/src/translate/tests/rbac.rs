//! RBAC translation: every permission and principal into the model, and
//! the fields Strait cannot honour refused by name.

use serde_json::{Value, json};

use super::{HCM, TCP, edited, load_ok, render};
use crate::{
    load,
    model::{
        Config, NetworkFilter,
        rbac::{Action, HttpRbac, MetadataValue, NetworkRbac, Permission, Principal},
    },
};

fn with_http_rbac(config: Value) -> String {
    let mut rbac =
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"});
    if let (Some(m), Value::Object(c)) = (rbac.as_object_mut(), config) {
        m.extend(c);
    }
    edited(&[
        (
            &format!("{HCM}/http_filters/0"),
            json!({"name": "envoy.filters.http.rbac", "typed_config": rbac}),
        ),
        (
            &format!("{HCM}/http_filters/1"),
            json!({"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
        ),
    ])
}

fn http_rbac(c: &Config) -> &HttpRbac {
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("http listener");
    };
    hcm.http_filters[0]
        .config
        .get::<HttpRbac>()
        .expect("rbac config")
}

fn refused(text: &str, path_part: &str) {
    let errors = load(text).expect_err("must be refused");
    let all = render(&errors);
    assert!(all.contains(path_part), "{path_part} not in:\n{all}");
}

#[test]
fn every_permission_and_principal_translates() {
    let policy = json!({
        "permissions": [
            {"and_rules": {"rules": [
                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                {"or_rules": {"rules": [
                    {"url_path": {"path": {"prefix": "/api"}}},
                    {"destination_port": 8080},
                    {"destination_port_range": {"start": 8000, "end": 9000}},
                    {"destination_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}},
                    {"requested_server_name": {"suffix": ".local"}},
                ]}},
                {"not_rule": {"any": true}},
                {"metadata": {"filter": "f", "path": [{"key": "a"}, {"key": "b"}],
                              "value": {"list_match": {"one_of": {"string_match": {"exact": "x"}}}}}},
            ]}},
        ],
        "principals": [
            {"and_ids": {"ids": [
                {"or_ids": {"ids": [
                    {"authenticated": {"principal_name": {"exact": "spiffe://td/ns/a/sa/b"}}},
                    {"authenticated": {}},
                    {"source_ip": {"address_prefix": "10.0.0.1", "prefix_len": 32}},
                    {"direct_remote_ip": {"address_prefix": "10.0.0.2", "prefix_len": 32}},
                    {"remote_ip": {"address_prefix": "10.0.0.3", "prefix_len": 32}},
                ]}},
                {"not_id": {"header": {"name": "x-a", "present_match": true}}},
                {"url_path": {"path": {"exact": "/p"}}},
                {"filter_state": {"key": "io.istio.peer_principal", "string_match": {"exact": "s"}}},
                {"metadata": {"filter": "istio_authn", "path": [{"key": "request.auth.principal"}],
                              "value": {"or_match": {"value_matchers": [{"bool_match": true}, {"double_match": {"exact": 1.0}}]}},
                              "invert": true}},
                {"any": true},
            ]}},
        ],
    });
    let text = with_http_rbac(json!({
        "rules": {"action": "DENY", "policies": {"z": policy.clone(), "a": policy}},
        "shadow_rules": {"action": "LOG"},
        "rules_stat_prefix": "r_",
        "shadow_rules_stat_prefix": "s_",
    }));
    let c = load_ok(&text);
    let r = http_rbac(&c);
    let rules = r.rules.as_ref().expect("rules");
    assert_eq!(rules.action, Action::Deny);
    let names: Vec<_> = rules.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "z"], "sorted by name, as Envoy tries them");
    let Permission::And(all) = &rules.policies[0].permissions[0] else {
        panic!("and_rules");
    };
    assert_eq!(all.len(), 4);
    assert!(matches!(&all[2], Permission::Not(_)));
    let Permission::Metadata(md) = &all[3] else {
        panic!("metadata");
    };
    assert_eq!(md.path, ["a", "b"]);
    assert!(matches!(md.value, MetadataValue::ListOneOf(_)));
    let Principal::And(ids) = &rules.policies[0].principals[0] else {
        panic!("and_ids");
    };
    assert!(matches!(ids[3], Principal::IstioPeerPrincipal(_)));
    assert!(matches!(&ids[4], Principal::Metadata(m) if m.invert));
    assert_eq!(r.shadow_rules.as_ref().map(|s| s.action), Some(Action::Log));
    assert_eq!(
        (
            r.rules_stat_prefix.as_str(),
            r.shadow_rules_stat_prefix.as_str()
        ),
        ("r_", "s_")
    );
}

#[test]
fn unsupported_rbac_fields_are_refused_by_name() {
    let any = json!({"permissions": [{"any": true}], "principals": [{"any": true}]});
    let cases = [
        (
            json!({"rules": {"policies": {"p": {"permissions": [{"any": true}], "principals": [{"any": true}],
            "condition": {"const_expr": {"bool_value": true}}}}}}),
            "policies[p].condition",
        ),
        (
            json!({"matcher": {"on_no_match": {"action": {"name": "a", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.rbac.v3.Action", "name": "x"}}}}}),
            "matcher",
        ),
        (
            json!({"shadow_matcher": {"on_no_match": {"action": {"name": "a", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.rbac.v3.Action", "name": "x"}}}}}),
            "shadow_matcher",
        ),
        (
            json!({"track_per_rule_stats": true}),
            "track_per_rule_stats",
        ),
        (
            json!({"rules": {"policies": {"p": {"permissions": [{"any": true}], "principals": [
            {"filter_state": {"key": "other", "string_match": {"exact": "x"}}}]}}}}),
            "filter_state.key",
        ),
        (
            json!({"rules": {"policies": {"p": {"permissions": [{"any": true}], "principals": [
            {"sourced_metadata": {"metadata_matcher": {"filter": "f", "path": [{"key": "k"}],
                "value": {"present_match": true}}, "metadata_source": "ROUTE"}}]}}}}),
            "metadata_source",
        ),
        (
            json!({"rules": {"audit_logging_options": {"audit_condition": "ON_DENY"}, "policies": {"p": any}}}),
            "rules.audit_logging_options",
        ),
        (
            json!({"rules": {"policies": {"p": {"permissions": [], "principals": [{"any": true}]}}}}),
            "policies[p].permissions",
        ),
        (
            json!({"rules": {"policies": {"p": {"permissions": [{"destination_port_range": {"start": 9, "end": 9}}],
            "principals": [{"any": true}]}}}}),
            "destination_port_range",
        ),
    ];
    for (config, part) in cases {
        refused(&with_http_rbac(config), part);
    }
}

#[test]
fn per_route_rbac_and_network_rbac_translate() {
    let per_route = edited(&[(
        &format!("{HCM}/route_config/virtual_hosts/0/routes/0/typed_per_filter_config"),
        json!({"envoy.filters.http.rbac": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"}}),
    )]);
    load_ok(&per_route);
    let network = |extra: Value| {
        let mut rbac = json!({"@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "stat_prefix": "tcp.", "rules": {"action": "DENY"}});
        if let (Some(m), Value::Object(e)) = (rbac.as_object_mut(), extra) {
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
                json!({"name": "envoy.filters.network.rbac", "typed_config": rbac}),
            ),
            (&TCP.replace("/0/typed_config", "/1"), tcp_filter),
        ])
    };
    let c = load_ok(&network(json!({"delay_deny": "2s"})));
    let chain = &c.listeners[1].filter_chains[0];
    assert!(matches!(chain.terminal, NetworkFilter::Tcp(_)));
    let rbac = chain.read_filters[0]
        .config
        .get::<NetworkRbac>()
        .expect("network rbac");
    assert_eq!(rbac.delay_deny, Some(std::time::Duration::from_secs(2)));
    assert_eq!(rbac.stat_prefix, "tcp.");
    refused(
        &network(json!({"enforcement_type": "CONTINUOUS"})),
        "enforcement_type",
    );
    refused(&network(json!({"stat_prefix": ""})), "stat_prefix");
}
