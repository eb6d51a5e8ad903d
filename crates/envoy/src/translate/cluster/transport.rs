//! `transport_socket_matches` and the endpoint metadata they read.

use envoy_types::pb::envoy::config::{
    cluster::v3::cluster::TransportSocketMatch, core::v3::Metadata,
};

use super::super::{Context, at, item};
use crate::model::{self, TRANSPORT_SOCKET_MATCH_KEY};

/// `Cluster.transport_socket_matches`, in order.
pub(super) fn matches(
    cx: &mut Context,
    path: &str,
    list: &[TransportSocketMatch],
) -> Vec<model::TransportSocketMatch> {
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mpath = item(path, "transport_socket_matches", i);
        let TransportSocketMatch {
            name,
            r#match,
            transport_socket,
        } = m;
        if name.is_empty() {
            cx.invalid(at(&mpath, "name"), "must not be empty");
        }
        let criteria = r#match
            .as_ref()
            .map(crate::pbjson::struct_to_json)
            .unwrap_or_default();
        // Envoy builds a missing transport socket as raw_buffer.
        let tls = match transport_socket {
            Some(ts) => {
                match super::super::tls::upstream(cx, ts, &at(&mpath, "transport_socket")) {
                    Some(tls) => tls,
                    None => continue,
                }
            }
            None => None,
        };
        out.push(model::TransportSocketMatch {
            name: name.clone(),
            criteria,
            tls,
        });
    }
    out
}

/// The `envoy.transport_socket_match` part of an endpoint's metadata; the
/// other namespaces are read only by filters and subset balancing, which
/// Strait does not run.
pub(super) fn endpoint_metadata(
    cx: &mut Context,
    path: &str,
    metadata: &Option<Metadata>,
) -> model::Metadata {
    let Some(Metadata {
        filter_metadata,
        typed_filter_metadata,
    }) = metadata
    else {
        return model::Metadata::new();
    };
    if typed_filter_metadata.contains_key(TRANSPORT_SOCKET_MATCH_KEY) {
        // Envoy would prefer the typed entry over `filter_metadata`.
        cx.unsupported(
            at(
                path,
                &format!("typed_filter_metadata[\"{TRANSPORT_SOCKET_MATCH_KEY}\"]"),
            ),
            "typed metadata for transport socket matches",
        );
    }
    filter_metadata
        .get(TRANSPORT_SOCKET_MATCH_KEY)
        .map(crate::pbjson::struct_to_json)
        .unwrap_or_default()
}

/// A locality's metadata: refused when it carries transport socket match
/// labels, which Strait reads from endpoints only.
pub(super) fn check_locality_metadata(cx: &mut Context, path: &str, metadata: &Option<Metadata>) {
    if let Some(m) = metadata
        && (m.filter_metadata.contains_key(TRANSPORT_SOCKET_MATCH_KEY)
            || m.typed_filter_metadata
                .contains_key(TRANSPORT_SOCKET_MATCH_KEY))
    {
        cx.unsupported(
            at(path, "metadata"),
            "transport socket match labels on a locality (put them on the endpoints)",
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::model::{Metadata, TransportSocketMatch};

    /// Istio's outbound cluster: mTLS for endpoints labelled `tlsMode:
    /// istio`, plaintext for the rest.
    const ISTIO_CLUSTER: &str = r#"
static_resources:
  clusters:
  - name: outbound|9080||reviews.default.svc.cluster.local
    type: STATIC
    transport_socket_matches:
    - name: tlsMode-istio
      match: {tlsMode: istio}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: outbound_.9080_._.reviews.default.svc.cluster.local
          common_tls_context:
            alpn_protocols: [istio-peer-exchange, istio]
    - name: tlsMode-disabled
      match: {}
      transport_socket: {name: envoy.transport_sockets.raw_buffer, typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}
    load_assignment:
      cluster_name: reviews
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 9080}}}
          metadata:
            filter_metadata:
              istio: {workload: reviews-v1}
              envoy.transport_socket_match: {tlsMode: istio}
        - endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 9080}}}
"#;

    fn md(v: serde_json::Value) -> Metadata {
        match v {
            serde_json::Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn istio_matches_and_endpoint_labels_translate() {
        let c = crate::load(ISTIO_CLUSTER).unwrap_or_else(|e| panic!("{e:?}"));
        let cluster = &c.clusters[0];
        assert_eq!(cluster.tls, None);
        let m = &cluster.transport_socket_matches;
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "tlsMode-istio");
        assert_eq!(m[0].criteria, md(json!({"tlsMode": "istio"})));
        let tls = m[0].tls.as_ref().expect("the istio match is TLS");
        // `istio-peer-exchange` is dropped: Strait never runs the TCP
        // metadata exchange it would start (see translate/inert.rs).
        assert_eq!(tls.common.alpn, ["istio"]);
        assert_eq!((m[1].criteria.len(), m[1].tls.is_none()), (0, true));
        // Only the transport socket namespace of the metadata is kept.
        let eps = &cluster.endpoints;
        assert_eq!(eps[0].transport_metadata, md(json!({"tlsMode": "istio"})));
        assert!(eps[1].transport_metadata.is_empty());
        assert_eq!(cluster.transport_match(&eps[0].transport_metadata), Some(0));
        assert_eq!(cluster.transport_match(&eps[1].transport_metadata), Some(1));
    }

    #[test]
    fn matching_is_a_subset_test_with_protobuf_value_equality() {
        let m = |criteria| TransportSocketMatch {
            name: "m".into(),
            criteria: md(criteria),
            tls: None,
        };
        let ep = md(json!({"tlsMode": "istio", "v": 2.0, "on": true, "l": ["a"]}));
        let cases = [
            (json!({}), true),
            (json!({"tlsMode": "istio"}), true),
            (json!({"tlsMode": "istio", "on": true}), true),
            (json!({"v": 2.0, "l": ["a"]}), true),
            (json!({"tlsMode": "disabled"}), false),
            (json!({"tlsMode": "istio", "missing": "x"}), false),
            (json!({"on": "true"}), false),
        ];
        for (criteria, want) in cases {
            assert_eq!(m(criteria.clone()).matches(&ep), want, "{criteria}");
        }
        assert!(m(json!({})).matches(&Metadata::new()));
        assert!(!m(json!({"tlsMode": "istio"})).matches(&Metadata::new()));
    }

    #[test]
    fn eds_endpoints_carry_their_labels() {
        let cla = crate::parse::parse_message(
            r#"{cluster_name: svc, endpoints: [{lb_endpoints: [
                {endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}},
                 metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio, n: 1}}}}]}]}"#,
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
        )
        .expect("parses")
        .transcode_to()
        .expect("transcodes");
        let eps = crate::translate_cluster_load_assignment(&cla, "svc").expect("translates");
        assert_eq!(
            eps[0].transport_metadata,
            md(json!({"tlsMode": "istio", "n": 1.0}))
        );
    }

    #[test]
    fn bad_matches_name_their_path() {
        let bad = ISTIO_CLUSTER.replace(
            "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            "type.googleapis.com/envoy.extensions.transport_sockets.alts.v3.Alts",
        );
        let errs = crate::load(&bad).expect_err("ALTS is refused");
        let text = format!("{errs:?}");
        assert!(
            text.contains("transport_socket_matches[1].transport_socket.typed_config.@type"),
            "{text}"
        );
        let unnamed = ISTIO_CLUSTER.replace("name: tlsMode-disabled", "name: \"\"");
        let errs = crate::load(&unnamed).expect_err("a match needs a name");
        assert!(
            format!("{errs:?}").contains("transport_socket_matches[1].name"),
            "{errs:?}"
        );
        let on_locality = ISTIO_CLUSTER.replace(
            "      - lb_endpoints:",
            "      - metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio}}}\n        lb_endpoints:",
        );
        let errs = crate::load(&on_locality).expect_err("locality labels are refused");
        assert!(
            format!("{errs:?}").contains("endpoints[0].metadata"),
            "{errs:?}"
        );
    }
}
