//! What Istio's rendered bootstraps need: `pipe` clusters for the gRPC
//! clients, process-level bootstrap fields accepted or refused by path,
//! the compressor filter, and the node Strait announces.

use serde_json::{Value, json};

use super::{load_ok, render};
use crate::load;

/// A bootstrap in Istio's shape: ADS to `xds-grpc` over a unix socket, a
/// 15090-style listener routing to `prometheus_stats`.
fn istio(edit: impl FnOnce(&mut Value)) -> String {
    let mut b = json!({
        "node": {"id": "sidecar~1.2.3.4~foo~bar", "cluster": "istio-proxy"},
        "dynamic_resources": {
            "lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "ads_config": {"api_type": "DELTA_GRPC", "set_node_on_first_message_only": true,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}
        },
        "static_resources": {
            "clusters": [
                {"name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": {"pipe": {"path": "./etc/istio/proxy/XDS"}}}}]}]},
                 "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
                 "max_requests_per_connection": 1,
                 "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_connections": 100000}]},
                 "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                     "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                     "explicit_http_config": {"http2_protocol_options": {}}}}},
                {"name": "prometheus_stats", "type": "STATIC", "connect_timeout": "0.250s",
                 "load_assignment": {"cluster_name": "prometheus_stats", "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}}}]}]}}
            ],
            "listeners": [{
                "name": "0.0.0.0_15090",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15090}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "stats",
                        "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/stats/prometheus"},
                                        "route": {"cluster": "prometheus_stats"}}]}]},
                        "http_filters": [
                            {"name": "envoy.filters.http.compressor.gzip", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor",
                                "compressor_library": {"name": "gz", "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip"}},
                                "response_direction_config": {"common_config": {"content_type": ["text/plain"]}}}},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]}}]}]
            }]
        },
        "admin": {
            "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": "/dev/null"}}],
            "profile_path": "/var/lib/istio/data/envoy.prof",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}
        },
        "layered_runtime": {"layers": [
            {"name": "global config", "static_layer": {
                "envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst": true,
                "envoy.reloadable_features.http_reject_path_with_fragment": false,
                "re2.max_program_size.error_level": "32768",
                "overload.global_downstream_max_connections": "2147483647"}},
            {"name": "admin", "admin_layer": {}}]},
        "bootstrap_extensions": [{"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            "value": {"buffer_size_kb": 64}}}],
        "stats_config": {"use_all_default_tags": false,
            "stats_tags": [{"tag_name": "cluster_name", "regex": "^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)"}],
            "stats_matcher": {"inclusion_list": {"patterns": [{"prefix": "cluster_manager"}]}}},
        "stats_flush_interval": "10s",
        "stats_eviction_interval": "20s",
        "deferred_stat_options": {"enable_deferred_creation_stats": true},
        "application_log_config": {"log_format": {"text_format": "%v"}},
        "cluster_manager": {"outlier_detection": {"event_log_path": "/dev/stdout"},
                            "enable_deferred_cluster_creation": true},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 2147483647}}]},
        "tracing": {"http": {"name": "envoy.tracers.zipkin", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
            "collector_cluster": "zipkin", "collector_endpoint": "/api/v2/spans",
            "collector_endpoint_version": "HTTP_JSON"}}}
    });
    edit(&mut b);
    b.to_string()
}

#[test]
fn istio_shaped_bootstrap_translates() {
    let c = load_ok(&istio(|_| {}));
    let xds = c
        .clusters
        .iter()
        .find(|c| c.name == "xds-grpc")
        .expect("xds-grpc");
    assert_eq!(xds.pipe.as_deref(), Some("./etc/istio/proxy/XDS"));
    assert!(xds.endpoints.is_empty(), "no data-path host");
    let dynamic = c.dynamic.expect("dynamic");
    assert_eq!(dynamic.ads_cluster, "xds-grpc");
    assert!(dynamic.node_on_first_message_only);
    let node = crate::node_proto(&c.node.expect("node"));
    assert_eq!(node.id, "sidecar~1.2.3.4~foo~bar");
    assert_eq!(node.user_agent_name, "strait");
    assert!(node.user_agent_version_type.is_some());
    // The compressor is checked but does not run.
    assert_eq!(c.listeners.len(), 1);
}

#[test]
fn global_connection_limit_from_the_monitor_or_the_runtime() {
    // Istio's "unlimited" everywhere.
    assert_eq!(load_ok(&istio(|_| {})).max_downstream_connections, None);
    let monitor = |b: &mut Value| {
        b["overload_manager"]["resource_monitors"][0]["typed_config"]["max_active_downstream_connections"] =
            json!(20000);
    };
    let runtime = |b: &mut Value| {
        b["layered_runtime"]["layers"][0]["static_layer"]["overload.global_downstream_max_connections"] =
            json!("5000");
    };
    assert_eq!(
        load_ok(&istio(monitor)).max_downstream_connections,
        Some(20000)
    );
    let c = load_ok(&istio(|b| {
        b.as_object_mut()
            .expect("object")
            .remove("overload_manager");
        runtime(b);
    }));
    assert_eq!(c.max_downstream_connections, Some(5000));
    // Both: the monitor wins, as in Envoy.
    let c = load_ok(&istio(|b| {
        monitor(b);
        runtime(b);
    }));
    assert_eq!(c.max_downstream_connections, Some(20000));
    let c = load_ok(&istio(|b| {
        b["static_resources"]["listeners"][0]["ignore_global_conn_limit"] = json!(true);
    }));
    assert!(c.listeners[0].ignore_global_conn_limit);
}

#[test]
fn a_bootstrap_without_node_still_announces_strait() {
    let c = load_ok("{}");
    assert_eq!(
        crate::node_proto(&c.node.expect("node")).user_agent_name,
        "strait"
    );
}

#[test]
fn istio_fields_that_would_change_behaviour_are_refused_by_path() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "data path to a pipe cluster",
            |b| {
                b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                    ["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] =
                    json!("xds-grpc");
            },
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster",
            "pipe",
        ),
        (
            "pipe among other endpoints",
            |b| {
                let eps = &mut b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"]
                    [0]["lb_endpoints"];
                let tcp = json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}});
                eps.as_array_mut().expect("array").push(tcp);
            },
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe",
            "only endpoint",
        ),
        (
            "pipe in a STRICT_DNS cluster",
            |b| b["static_resources"]["clusters"][0]["type"] = json!("STRICT_DNS"),
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe",
            "STATIC",
        ),
        (
            "abstract socket",
            |b| {
                b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
                    [0]["endpoint"]["address"]["pipe"]["path"] = json!("@xds");
            },
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path",
            "abstract",
        ),
        (
            // Keep-alive alone is honoured; other connection options are not.
            "interface name on upstream connections",
            |b| {
                b["static_resources"]["clusters"][1]["upstream_connection_options"] =
                    json!({"set_local_interface_name_on_upstream_connections": true});
            },
            "static_resources.clusters[1].upstream_connection_options",
            "upstream_connection_options",
        ),
        (
            "connection limit of 0",
            |b| {
                b["overload_manager"]["resource_monitors"][0]["typed_config"]["max_active_downstream_connections"] =
                    json!(0);
            },
            "overload_manager.resource_monitors[0].typed_config.max_active_downstream_connections",
            "greater than 0",
        ),
        (
            "unreadable runtime connection limit",
            |b| {
                b["layered_runtime"]["layers"][0]["static_layer"]["overload.global_downstream_max_connections"] =
                    json!("many");
            },
            "layered_runtime.layers[0].static_layer",
            "overload.global_downstream_max_connections",
        ),
        (
            "runtime key with an effect",
            |b| {
                b["layered_runtime"]["layers"][0]["static_layer"]["envoy.resource_limits.listener.x"] =
                    json!(1);
            },
            "layered_runtime.layers[0].static_layer",
            "envoy.resource_limits.listener.x",
        ),
        (
            "other bootstrap extension",
            |b| {
                b["bootstrap_extensions"][0] = json!({"name": "wasm", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService"}});
            },
            "bootstrap_extensions[0].typed_config",
            "WasmService",
        ),
        (
            "admin access log to a file",
            |b| b["admin"]["access_log"][0]["typed_config"]["path"] = json!("/tmp/admin.log"),
            "admin.access_log[0].typed_config.path",
            "/dev/null",
        ),
        (
            "load reporting",
            |b| b["cluster_manager"]["load_stats_config"] = json!({"api_type": "GRPC"}),
            "cluster_manager.load_stats_config",
            "load_stats_config",
        ),
        (
            "eviction not a multiple of the flush interval",
            |b| b["stats_eviction_interval"] = json!("15s"),
            "stats_eviction_interval",
            "multiple",
        ),
        (
            "a stats sink other than statsd and the metrics service",
            |b| {
                b["stats_sinks"] = json!([{"name": "envoy.stat_sinks.dog_statsd", "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.metrics.v3.DogStatsdSink",
                    "address": {"socket_address": {"address": "10.0.0.1", "port_value": 8125}}}}]);
            },
            "stats_sinks[0].typed_config",
            "DogStatsdSink",
        ),
        (
            "metrics service over the xDS pipe",
            |b| {
                b["stats_sinks"] = json!([{"name": "envoy.stat_sinks.metrics_service", "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": "xds-grpc"}}}}]);
            },
            "stats_sinks[0].typed_config.grpc_service.envoy_grpc.cluster_name",
            "pipe",
        ),
        (
            "compressor stripping accept-encoding",
            |b| {
                b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                    ["http_filters"][0]["typed_config"]["response_direction_config"]["remove_accept_encoding_header"] =
                    json!(true);
            },
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.response_direction_config.remove_accept_encoding_header",
            "remove_accept_encoding_header",
        ),
        (
            "compressor of requests",
            |b| {
                b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                    ["http_filters"][0]["typed_config"]["request_direction_config"] = json!({});
            },
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.request_direction_config",
            "request_direction_config",
        ),
    ];
    for (what, edit, path, word) in cases {
        let errors = match load(&istio(edit)) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.path() == path && e.to_string().contains(word)),
            "{what}: want {path} ({word}), got:\n{}",
            render(&errors)
        );
    }
}

/// `istio.stats` as a network filter is run (a read filter, reporter from
/// the listener's direction), no longer inert; so is the TCP exchange
/// before it.
#[test]
fn network_istio_stats_is_a_read_filter() {
    use crate::model::istio::{IstioStats, Reporter};
    let yaml = r#"
node: {id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", metadata: {WORKLOAD_NAME: reviews-v2, NAMESPACE: bookinfo}}
static_resources:
  listeners:
  - name: virtualInbound
    traffic_direction: INBOUND
    address: {socket_address: {address: 127.0.0.1, port_value: 15006}}
    filter_chains:
    - filters:
      - name: istio.metadata_exchange
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange
          value: {protocol: istio-peer-exchange}
      - name: istio.stats
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/stats.PluginConfig
          value: {disable_host_header_fallback: true, tcp_reporting_duration: 2s}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: inbound
  clusters:
  - name: inbound
    type: STATIC
    load_assignment:
      cluster_name: inbound
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9000}}}}]}]
"#;
    let c = load(yaml).unwrap_or_else(|e| panic!("{e:?}"));
    let chain = &c.listeners[0].filter_chains[0];
    assert_eq!(chain.read_filters.len(), 2, "{:?}", chain.read_filters);
    let stats = chain.read_filters[1]
        .config
        .get::<IstioStats>()
        .expect("istio.stats");
    assert_eq!(stats.reporter, Reporter::Destination);
    assert_eq!(stats.local.workload_name, "reviews-v2");
    assert_eq!(stats.tcp_reporting, std::time::Duration::from_secs(2));
}

/// Istio's TCP metadata exchange: a read filter on TCP chains (keeping
/// `istio-peer-exchange` in the chain's ALPN), dropped with that protocol
/// before the HTTP connection manager, a cluster filter on clusters
/// (keeping the protocol in their ALPN); unknown fields refused by name.
#[test]
fn tcp_metadata_exchange_on_chains_and_clusters() {
    use crate::model::{NetworkFilter, istio::TcpMetadataExchange};
    const MX: &str = r#"
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange
          value: {protocol: istio-peer-exchange, enable_discovery: true, additional_labels: [role]EXTRA}"#;
    let yaml = |extra: &str| {
        format!(
            r#"
node: {{id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", metadata: {{WORKLOAD_NAME: reviews-v2, NAMESPACE: bookinfo, LABELS: {{role: db}}}}}}
static_resources:
  listeners:
  - name: virtualInbound
    traffic_direction: INBOUND
    address: {{socket_address: {{address: 127.0.0.1, port_value: 15006}}}}
    filter_chains:
    - filter_chain_match: {{application_protocols: [istio-peer-exchange]}}
      transport_socket:
        name: tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{alpn_protocols: [istio-peer-exchange, h2, http/1.1]}}
      filters:
      - name: istio.metadata_exchange
        typed_config:{mx}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: inbound
    - filter_chain_match: {{application_protocols: [h2]}}
      transport_socket:
        name: tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context: {{alpn_protocols: [istio-peer-exchange, h2, http/1.1]}}
      filters:
      - name: istio.metadata_exchange
        typed_config:{mx}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          route_config: {{name: r}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: inbound
    type: STATIC
    filters:
    - name: istio.metadata_exchange
      typed_config:{mx}
    transport_socket:
      name: tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context: {{alpn_protocols: [istio-peer-exchange, istio]}}
    load_assignment:
      cluster_name: inbound
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9000}}}}}}}}]}}]
"#,
            mx = MX.replace("EXTRA", extra)
        )
    };
    let c = load(&yaml("")).unwrap_or_else(|e| panic!("{e:?}"));
    let tcp = &c.listeners[0].filter_chains[0];
    assert!(matches!(tcp.terminal, NetworkFilter::Tcp(_)));
    assert_eq!(tcp.read_filters.len(), 1);
    let mx = tcp.read_filters[0]
        .config
        .get::<TcpMetadataExchange>()
        .expect("exchange");
    assert_eq!(mx.protocol, "istio-peer-exchange");
    assert_eq!(mx.additional_labels, ["role"]);
    assert_eq!(mx.id, "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local");
    // The local workload, as the HTTP exchange encodes it (before base64).
    assert!(!mx.metadata.is_empty());
    let alpn =
        |t: &Option<crate::model::tls::DownstreamTls>| t.as_ref().map(|t| t.common.alpn.clone());
    assert_eq!(
        alpn(&tcp.tls),
        Some(vec![
            "istio-peer-exchange".into(),
            "h2".into(),
            "http/1.1".into()
        ])
    );
    // Before the HTTP connection manager: dropped, and its protocol too.
    let http = &c.listeners[0].filter_chains[1];
    assert!(http.read_filters.is_empty(), "{:?}", http.read_filters);
    assert_eq!(alpn(&http.tls), Some(vec!["h2".into(), "http/1.1".into()]));
    // On the cluster: its filter, and the protocol offered.
    let cluster = &c.clusters[0];
    assert_eq!(cluster.filters.len(), 1);
    assert_eq!(cluster.filters[0].get::<TcpMetadataExchange>(), Some(mx));
    assert_eq!(
        cluster.tls.as_ref().map(|t| t.common.alpn.clone()),
        Some(vec!["istio-peer-exchange".into(), "istio".into()])
    );
    // An unknown field is refused by name, everywhere it occurs.
    let err = load(&yaml(", max_peers: 3")).expect_err("unknown field");
    let text = format!("{err:?}");
    assert!(text.contains("max_peers"), "{text}");
}
