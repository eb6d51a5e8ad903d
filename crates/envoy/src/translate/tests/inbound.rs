//! What Istio's inbound listener (`virtualInbound`) needs: the connection
//! manager's client-certificate forwarding and listener filters disabled
//! per destination port.

use serde_json::{Value, json};

use super::{HCM, HCM_PATH, edited, load_ok, render};
use crate::{
    load,
    model::{
        Config, NetworkFilter,
        client_cert::{ClientCertDetails, ForwardClientCert},
        predicate::ListenerFilterPredicate as P,
    },
};

const LISTENER0: &str = "/static_resources/listeners/0";
const LISTENER0_PATH: &str = "static_resources.listeners[0]";

fn hcm_of(c: &Config) -> &crate::model::HttpConnectionManager {
    match &c.listeners[0].filter_chains[0].terminal {
        NetworkFilter::Http(h) => h,
        NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => panic!("listener 0 is HTTP"),
    }
}

fn with_xfcc(mode: &str, details: Value) -> Config {
    load_ok(&edited(&[
        (&format!("{HCM}/forward_client_cert_details"), json!(mode)),
        (&format!("{HCM}/set_current_client_cert_details"), details),
    ]))
}

#[test]
fn forward_client_cert_modes_and_details() {
    let all = json!({"subject": true, "cert": true, "chain": true, "dns": true, "uri": true});
    let every = ClientCertDetails {
        subject: true,
        cert: true,
        chain: true,
        dns: true,
        uri: true,
    };
    let cases = [
        ("SANITIZE", ForwardClientCert::Sanitize, false),
        ("FORWARD_ONLY", ForwardClientCert::ForwardOnly, false),
        ("APPEND_FORWARD", ForwardClientCert::AppendForward, true),
        ("SANITIZE_SET", ForwardClientCert::SanitizeSet, true),
        (
            "ALWAYS_FORWARD_ONLY",
            ForwardClientCert::AlwaysForwardOnly,
            false,
        ),
    ];
    for (name, mode, reads_details) in cases {
        let c = with_xfcc(name, all.clone());
        let h = hcm_of(&c);
        assert_eq!(h.forward_client_cert, mode, "{name}");
        // Envoy reads the details only for the modes that set an element.
        let want = if reads_details {
            every
        } else {
            ClientCertDetails::default()
        };
        assert_eq!(h.client_cert_details, want, "{name}");
    }
    // Istio's inbound shape: `subject` is a BoolValue.
    let c = with_xfcc(
        "APPEND_FORWARD",
        json!({"subject": true, "dns": true, "uri": true}),
    );
    assert_eq!(
        hcm_of(&c).client_cert_details,
        ClientCertDetails {
            subject: true,
            dns: true,
            uri: true,
            ..ClientCertDetails::default()
        }
    );
    // The default is SANITIZE.
    let c = load_ok(&edited(&[]));
    assert_eq!(hcm_of(&c).forward_client_cert, ForwardClientCert::Sanitize);
}

#[test]
fn unimplemented_client_cert_fields_are_refused_by_path() {
    let cases = [
        (
            vec![
                (
                    format!("{HCM}/forward_client_cert_details"),
                    json!("SANITIZE_SET"),
                ),
                (
                    format!("{HCM}/set_current_client_cert_details"),
                    json!({"issuer": true}),
                ),
            ],
            format!("{HCM_PATH}.set_current_client_cert_details.issuer"),
        ),
        (
            vec![(
                format!("{HCM}/forward_client_cert_matcher"),
                json!({"matcher_list": {"matchers": []}}),
            )],
            format!("{HCM_PATH}.forward_client_cert_matcher"),
        ),
    ];
    for (edits, path) in cases {
        let edits: Vec<_> = edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
        let errors = load(&edited(&edits)).expect_err(&path);
        assert!(
            errors.iter().any(|e| e.to_string().contains(&path)),
            "expected an error at {path}, got:\n{}",
            render(&errors)
        );
    }
}

fn inspector(kind: &str, disabled: Value) -> Value {
    json!({"name": format!("envoy.filters.listener.{kind}"),
           "filter_disabled": disabled,
           "typed_config": {"@type": format!(
               "type.googleapis.com/envoy.extensions.filters.listener.{kind}.v3.{}",
               match kind { "tls_inspector" => "TlsInspector", "http_inspector" => "HttpInspector", _ => "OriginalDst" })}})
}

fn with_filters(filters: Value) -> Result<Config, String> {
    load(&edited(&[(
        &format!("{LISTENER0}/listener_filters"),
        filters,
    )]))
    .map_err(|e| render(&e))
}

#[test]
fn filter_disabled_predicates_translate() {
    // Istio's virtualInbound: the TLS inspector off except on the ports it
    // names; the HTTP inspector off on one port.
    let tls = json!({"not_match": {"or_match": {"rules": [
        {"destination_port_range": {"start": 15006, "end": 15007}},
        {"destination_port_range": {"start": 9080, "end": 9081}}]}}});
    let http = json!({"and_match": {"rules": [
        {"any_match": true},
        {"destination_port_range": {"start": 3306, "end": 3307}}]}});
    let c = with_filters(json!([
        inspector("tls_inspector", tls),
        inspector("http_inspector", http)
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let f = &c.listeners[0].listener_filters;
    assert!(f.tls_inspector && f.http_inspector);
    assert_eq!(
        f.tls_inspector_disabled,
        Some(P::Not(Box::new(P::Or(vec![
            P::DestinationPorts(15006..15007),
            P::DestinationPorts(9080..9081),
        ]))))
    );
    assert_eq!(
        f.http_inspector_disabled,
        Some(P::And(vec![P::Any, P::DestinationPorts(3306..3307)]))
    );
}

#[test]
fn bad_filter_disabled_names_the_field() {
    let f0 = format!("{LISTENER0_PATH}.listener_filters[0].filter_disabled");
    let cases = [
        (
            inspector(
                "tls_inspector",
                json!({"or_match": {"rules": [{"any_match": true}]}}),
            ),
            format!("{f0}.or_match"),
            "two rules",
        ),
        (
            inspector("tls_inspector", json!({"any_match": false})),
            format!("{f0}.any_match"),
            "true",
        ),
        (
            inspector(
                "tls_inspector",
                json!({"not_match": {"destination_port_range": {"start": 90, "end": 80}}}),
            ),
            format!("{f0}.not_match.destination_port_range"),
            "range",
        ),
        (
            inspector(
                "http_inspector",
                json!({"and_match": {"rules": [{"any_match": true}, {}]}}),
            ),
            format!("{f0}.and_match.rules[1]"),
            "required",
        ),
        (
            inspector("original_dst", json!({"any_match": true})),
            f0.clone(),
            "filter_disabled",
        ),
    ];
    for (filter, path, word) in cases {
        let err = with_filters(json!([filter])).expect_err(&path);
        assert!(
            err.lines().any(|l| l.contains(&path) && l.contains(word)),
            "expected '{word}' at {path}, got:\n{err}"
        );
    }
}
