//! Bad configs: each must produce an error at a given field path.

use serde_json::{Value, json};

use super::{
    CLUSTER0, ENDPOINT0, ENDPOINT0_PATH, HCM, HCM_PATH, ROUTE0, ROUTE0_PATH, TCP, edited, render,
};
use crate::{ConfigError, load};

/// (what, edits as JSON pointer and value, path of an expected error, a word
/// its message must contain).
type BadCase = (&'static str, Vec<(String, Value)>, String, &'static str);

fn router() -> Value {
    json!({"name": "envoy.filters.http.router",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// A filter Envoy has and Strait does not run.
fn lua(optional: bool) -> Value {
    json!({"name": "envoy.filters.http.lua", "is_optional": optional,
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"}})
}

fn cors(optional: bool) -> Value {
    json!({"name": "envoy.filters.http.cors", "is_optional": optional,
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}})
}

#[test]
fn bad_configs_name_the_field() {
    let hcm = |f: &str| format!("{HCM}/{f}");
    let hcm_path = |f: &str| format!("{HCM_PATH}.{f}");
    let route0 = |f: &str| format!("{ROUTE0}/{f}");
    let route0_path = |f: &str| format!("{ROUTE0_PATH}.{f}");
    let upstream_key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let cases: Vec<BadCase> = vec![
        (
            "local reply mapper with a traceable filter, tracing configured",
            vec![
                (
                    hcm("local_reply_config"),
                    json!({"mappers": [{"filter": {"traceable_filter": {}}, "status_code": 500}]}),
                ),
                (hcm("tracing"), json!({})),
            ],
            hcm_path("local_reply_config.mappers[0].filter.traceable_filter"),
            "traceable_filter",
        ),
        (
            "local reply format command Strait cannot render",
            vec![(
                hcm("local_reply_config"),
                json!({"body_format": {"text_format": "%DOWNSTREAM_TLS_VERSION% %LOCAL_REPLY_BODY%"}}),
            )],
            hcm_path("local_reply_config.body_format.text_format"),
            "%DOWNSTREAM_TLS_VERSION%",
        ),
        (
            "access log format command Envoy does not know",
            vec![(
                hcm("access_log"),
                json!([{"name": "f", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": "/tmp/a.log",
                    "log_format": {"text_format": "%UPSTREAM_HOST_WITHOUT_PORT%"}}}]),
            )],
            hcm_path("access_log[0].typed_config.log_format.text_format"),
            "%UPSTREAM_HOST_WITHOUT_PORT%",
        ),
        (
            "access log formatters",
            vec![(
                hcm("access_log"),
                json!([{"name": "f", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                    "log_format": {"text_format": "x", "formatters": [{"name": "req_without_query",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"}}]}}}]),
            )],
            hcm_path("access_log[0].typed_config.log_format.formatters"),
            "formatters",
        ),
        (
            "access log format from a file",
            vec![(
                hcm("access_log"),
                json!([{"name": "f", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
                    "log_format": {"text_format_source": {"filename": "/etc/format"}}}}]),
            )],
            hcm_path("access_log[0].typed_config.log_format.text_format_source.filename"),
            "filename",
        ),
        (
            "access log filter on gRPC status",
            vec![(
                hcm("access_log"),
                json!([{"name": "f", "filter": {"grpc_status_filter": {}}, "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}}]),
            )],
            hcm_path("access_log[0].filter.grpc_status_filter"),
            "grpc_status_filter",
        ),
        (
            "periodic access logs",
            vec![(hcm("access_log_flush_interval"), json!("5s"))],
            hcm_path("access_log_flush_interval"),
            "access_log_flush_interval",
        ),
        (
            "local reply mapper status out of range",
            vec![(
                hcm("local_reply_config"),
                json!({"mappers": [{"filter": {"not_health_check_filter": {}}, "status_code": 100}]}),
            )],
            hcm_path("local_reply_config.mappers[0].status_code"),
            "not in [200, 600)",
        ),
        (
            "local reply response flag unknown",
            vec![(
                hcm("local_reply_config"),
                json!({"mappers": [{"filter": {"response_flag_filter": {"flags": ["XX"]}}}]}),
            )],
            hcm_path("local_reply_config.mappers[0].filter.response_flag_filter.flags[0]"),
            "unknown response flag",
        ),
        (
            "internal address range not an address",
            vec![(
                hcm("internal_address_config"),
                json!({"cidr_ranges": [{"address_prefix": "internal", "prefix_len": 8}]}),
            )],
            hcm_path("internal_address_config.cidr_ranges[0].address_prefix"),
            "not an IP address",
        ),
        (
            "explicit_internal_address_config not a boolean",
            vec![(
                "/layered_runtime".to_owned(),
                json!({"layers": [{"name": "s", "static_layer": {
                    "envoy.reloadable_features.explicit_internal_address_config": 1
                }}]}),
            )],
            "layered_runtime.layers[0].static_layer".to_owned(),
            "explicit_internal_address_config",
        ),
        (
            "http3 codec",
            vec![(hcm("codec_type"), json!("HTTP3"))],
            hcm_path("codec_type"),
            "HTTP3",
        ),
        (
            "unknown network filter",
            vec![(
                HCM.to_owned(),
                json!({"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}),
            )],
            format!("{HCM_PATH}.@type"),
            "echo.v3.Echo",
        ),
        (
            "terminal filter not last",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/filters/1".into(),
                json!({"name": "again", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "t", "cluster": "backend"}}),
            )],
            "static_resources.listeners[1].filter_chains[0].filters[0]".into(),
            "last",
        ),
        (
            "no filters",
            vec![("/static_resources/listeners/1/filter_chains/0/filters".into(), json!([]))],
            "static_resources.listeners[1].filter_chains[0].filters".into(),
            "terminal",
        ),
        (
            "two filter chains with the same match",
            vec![(
                "/static_resources/listeners/1/filter_chains/1".into(),
                json!({"filters": [{"name": "t", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "t", "cluster": "backend"}}]}),
            )],
            "static_resources.listeners[1].filter_chains[1]".into(),
            "same filter_chain_match",
        ),
        (
            "filter chain match on a suffix",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/filter_chain_match".into(),
                json!({"address_suffix": "::1"}),
            )],
            "static_resources.listeners[1].filter_chains[0].filter_chain_match.address_suffix".into(),
            "address_suffix",
        ),
        (
            "bad server name wildcard",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/filter_chain_match".into(),
                json!({"server_names": ["a.*.example.com"]}),
            )],
            "static_resources.listeners[1].filter_chains[0].filter_chain_match.server_names[0]".into(),
            "wildcard",
        ),
        (
            // A name-only `raw_buffer` is accepted, as Envoy resolves it by
            // name; TLS needs its context.
            "transport socket without config",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/transport_socket".into(),
                json!({"name": "envoy.transport_sockets.tls"}),
            )],
            "static_resources.listeners[1].filter_chains[0].transport_socket.typed_config".into(),
            "required",
        ),
        (
            "unknown static SDS certificate",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/transport_socket".into(),
                json!({"name": "tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default"}]}}}),
            )],
            "static_resources.listeners[1].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name".into(),
            "unknown static secret 'default'",
        ),
        (
            "two health checks",
            vec![(
                "/static_resources/clusters/0/health_checks".into(),
                json!([
                    {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
                     "healthy_threshold": 1, "tcp_health_check": {}},
                    {"timeout": "1s", "interval": "5s", "unhealthy_threshold": 3,
                     "healthy_threshold": 2, "http_health_check": {"path": "/healthz"}},
                ]),
            )],
            "static_resources.clusters[0].health_checks[1]".into(),
            "more than one health check",
        ),
        (
            "TLS 1.1 maximum",
            vec![(
                "/static_resources/clusters/0/transport_socket".into(),
                json!({"name": "tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {"tls_params": {"tls_maximum_protocol_version": "TLSv1_1"}}}}),
            )],
            "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_params.tls_maximum_protocol_version".into(),
            "TLSv1_1",
        ),
        (
            "email SAN matcher",
            vec![(
                "/static_resources/clusters/0/transport_socket".into(),
                json!({"name": "tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {"validation_context": {
                        "trusted_ca": {"filename": "/ca.pem"},
                        "match_typed_subject_alt_names": [{"san_type": "EMAIL", "matcher": {"exact": "a@b"}}]}}}}),
            )],
            "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[0].san_type".into(),
            "EMAIL",
        ),
        (
            "unknown listener filter",
            vec![(
                "/static_resources/listeners/1/listener_filters".into(),
                json!([{"name": "x", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"}}]),
            )],
            "static_resources.listeners[1].listener_filters[0].typed_config.@type".into(),
            "listener filter",
        ),
        (
            "missing route_config",
            vec![(hcm("route_config"), Value::Null)],
            hcm_path("route_config"),
            "required",
        ),
        (
            "rds",
            vec![
                (hcm("route_config"), Value::Null),
                (hcm("rds"), json!({"route_config_name": "r", "config_source": {"ads": {}}})),
            ],
            "static_resources.listeners[0]".into(),
            "needs dynamic_resources",
        ),
        (
            "no router",
            vec![(hcm("http_filters"), json!([]))],
            hcm_path("http_filters"),
            "envoy.filters.http.router",
        ),
        (
            "unknown http filter",
            vec![(hcm("http_filters"), json!([lua(false), router()]))],
            hcm_path("http_filters[0].typed_config.@type"),
            "lua",
        ),
        (
            "router not last",
            vec![(hcm("http_filters"), json!([router(), cors(true)]))],
            hcm_path("http_filters[0]"),
            "last",
        ),
        (
            "router option",
            vec![(hcm("http_filters/0/typed_config/suppress_envoy_headers"), json!(true))],
            hcm_path("http_filters[0].typed_config.suppress_envoy_headers"),
            "suppress_envoy_headers",
        ),
        (
            "hcm access log",
            vec![(
                hcm("access_log"),
                json!([{"name": "als", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.fluentd.v3.FluentdAccessLogConfig"}}]),
            )],
            hcm_path("access_log[0].typed_config.@type"),
            "access logger",
        ),
        (
            "upgrade with filters",
            vec![(
                hcm("upgrade_configs"),
                json!([{"upgrade_type": "websocket", "filters": [router()]}]),
            )],
            hcm_path("upgrade_configs[0].filters"),
            "filters",
        ),
        (
            "max_request_headers_kb 0",
            vec![(hcm("max_request_headers_kb"), json!(0))],
            hcm_path("max_request_headers_kb"),
            "1..=",
        ),
        (
            "hedge policy",
            vec![(route0("route/hedge_policy"), json!({"initial_requests": 2}))],
            route0_path("route.hedge_policy"),
            "hedge_policy",
        ),
        (
            "bad direct response status",
            vec![
                (route0("route"), Value::Null),
                (route0("direct_response"), json!({"status": 99})),
            ],
            route0_path("direct_response.status"),
            "200..=599",
        ),
        (
            "direct response from a file",
            vec![
                (route0("route"), Value::Null),
                (
                    route0("direct_response"),
                    json!({"status": 200, "body": {"filename": "/etc/motd"}}),
                ),
            ],
            route0_path("direct_response.body.filename"),
            "filename",
        ),
        (
            "vhost without domains",
            vec![(hcm("route_config/virtual_hosts/0/domains"), json!([]))],
            hcm_path("route_config.virtual_hosts[0].domains"),
            "at least one",
        ),
        (
            "duplicate domain across vhosts",
            vec![(
                hcm("route_config/virtual_hosts/1"),
                json!({"name": "vh2", "domains": ["example.com", "*"]}),
            )],
            hcm_path("route_config.virtual_hosts[1].domains[1]"),
            "duplicate",
        ),
        (
            "route to unknown cluster in a static table",
            vec![(route0("route/cluster"), json!("nope"))],
            route0_path("route.cluster"),
            "unknown cluster",
        ),
        (
            "tcp proxy to unknown cluster",
            vec![(format!("{TCP}/cluster"), json!("nope"))],
            "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.cluster".into(),
            "unknown cluster",
        ),
        (
            "tcp proxy weight 0",
            vec![
                (format!("{TCP}/cluster"), Value::Null),
                (
                    format!("{TCP}/weighted_clusters"),
                    json!({"clusters": [{"name": "backend", "weight": 0}]}),
                ),
            ],
            "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.weighted_clusters.clusters[0].weight"
                .into(),
            "at least 1",
        ),
        (
            "tcp proxy hash policy",
            vec![(format!("{TCP}/hash_policy"), json!([{"source_ip": {}}]))],
            "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.hash_policy".into(),
            "hash_policy",
        ),
        (
            "duplicate listener names",
            vec![("/static_resources/listeners/1/name".into(), json!("http"))],
            "static_resources.listeners[1].name".into(),
            "duplicate",
        ),
        (
            "two listeners on one address",
            vec![(
                "/static_resources/listeners/1/address/socket_address/port_value".into(),
                json!(10000),
            )],
            "static_resources.listeners[1].address".into(),
            "already used",
        ),
        (
            "TLS inspector fingerprinting",
            vec![(
                "/static_resources/listeners/0/listener_filters".into(),
                json!([{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                    "enable_ja3_fingerprinting": true}}]),
            )],
            "static_resources.listeners[0].listener_filters[0].typed_config.enable_ja3_fingerprinting".into(),
            "enable_ja3_fingerprinting",
        ),
        (
            "named port",
            vec![(
                "/static_resources/listeners/0/address/socket_address".into(),
                json!({"address": "127.0.0.1", "named_port": "http"}),
            )],
            "static_resources.listeners[0].address.socket_address.named_port".into(),
            "named_port",
        ),
        (
            "udp listener",
            vec![(
                "/static_resources/listeners/0/address/socket_address/protocol".into(),
                json!("UDP"),
            )],
            "static_resources.listeners[0].address.socket_address.protocol".into(),
            "UDP",
        ),
        (
            "pipe listener",
            vec![(
                "/static_resources/listeners/0/address".into(),
                json!({"pipe": {"path": "/tmp/s"}}),
            )],
            "static_resources.listeners[0].address.pipe".into(),
            "pipe",
        ),
        (
            "listener on a host name",
            vec![(
                "/static_resources/listeners/0/address/socket_address/address".into(),
                json!("localhost"),
            )],
            "static_resources.listeners[0].address.socket_address.address".into(),
            "IP address",
        ),
        (
            "port out of range",
            vec![(format!("{ENDPOINT0}/address/socket_address/port_value"), json!(70000))],
            format!("{ENDPOINT0_PATH}.address.socket_address.port_value"),
            "not a port",
        ),
        (
            "STATIC cluster with a host name",
            vec![(format!("{ENDPOINT0}/address/socket_address/address"), json!("localhost"))],
            format!("{ENDPOINT0_PATH}.address.socket_address.address"),
            "STATIC",
        ),
        (
            "LOGICAL_DNS with two endpoints",
            vec![
                (format!("{CLUSTER0}/type"), json!("LOGICAL_DNS")),
                (
                    format!("{CLUSTER0}/load_assignment/endpoints/0/lb_endpoints"),
                    json!([
                        {"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": 1}}}},
                        {"endpoint": {"address": {"socket_address": {"address": "localhost", "port_value": 2}}}}
                    ]),
                ),
            ],
            "static_resources.clusters[0].load_assignment".into(),
            "exactly one endpoint",
        ),
        (
            "slow start with zero aggression",
            vec![(
                format!("{CLUSTER0}/round_robin_lb_config"),
                json!({"slow_start_config": {"slow_start_window": "1s",
                    "aggression": {"default_value": 0, "runtime_key": "k"}}}),
            )],
            "static_resources.clusters[0].round_robin_lb_config.slow_start_config.aggression".into(),
            "greater than 0",
        ),
        (
            "ORIGINAL_DST without CLUSTER_PROVIDED",
            vec![
                (format!("{CLUSTER0}/type"), json!("ORIGINAL_DST")),
                (format!("{CLUSTER0}/load_assignment"), Value::Null),
            ],
            "static_resources.clusters[0].lb_policy".into(),
            "CLUSTER_PROVIDED",
        ),
        (
            "ORIGINAL_DST with endpoints",
            vec![
                (format!("{CLUSTER0}/type"), json!("ORIGINAL_DST")),
                (format!("{CLUSTER0}/lb_policy"), json!("CLUSTER_PROVIDED")),
            ],
            "static_resources.clusters[0].load_assignment".into(),
            "no configured endpoints",
        ),
        (
            "unknown cluster filter",
            vec![(
                format!("{CLUSTER0}/filters"),
                json!([{"name": "x", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC", "stat_prefix": "x"}}]),
            )],
            "static_resources.clusters[0].filters[0].typed_config.@type".into(),
            "envoy.extensions.filters.network.rbac.v3.RBAC",
        ),
        (
            "upstream bind port",
            vec![(
                format!("{CLUSTER0}/upstream_bind_config"),
                json!({"source_address": {"address": "127.0.0.6", "port_value": 5000}}),
            )],
            "static_resources.clusters[0].upstream_bind_config.source_address.port_value".into(),
            "source port",
        ),
        (
            "EDS without xDS",
            vec![
                (format!("{CLUSTER0}/type"), json!("EDS")),
                (format!("{CLUSTER0}/load_assignment"), Value::Null),
                (
                    format!("{CLUSTER0}/eds_cluster_config"),
                    json!({"eds_config": {"ads": {}}}),
                ),
            ],
            "static_resources.clusters[0].type".into(),
            "needs dynamic_resources",
        ),
        (
            "unsupported lb policy",
            vec![(format!("{CLUSTER0}/lb_policy"), json!("CLUSTER_PROVIDED"))],
            "static_resources.clusters[0].lb_policy".into(),
            "CLUSTER_PROVIDED",
        ),
        (
            "duplicate cluster names",
            vec![(
                "/static_resources/clusters/1".into(),
                json!({"name": "backend", "type": "STATIC"}),
            )],
            "static_resources.clusters[1].name".into(),
            "duplicate",
        ),
        (
            "zero connect timeout",
            vec![(format!("{CLUSTER0}/connect_timeout"), json!("0s"))],
            "static_resources.clusters[0].connect_timeout".into(),
            "greater than 0",
        ),
        (
            "per-host circuit breakers",
            vec![(
                format!("{CLUSTER0}/circuit_breakers"),
                json!({"per_host_thresholds": [{"max_connections": 1}]}),
            )],
            "static_resources.clusters[0].circuit_breakers.per_host_thresholds".into(),
            "per_host_thresholds",
        ),
        (
            "endpoint weight 0",
            vec![(
                format!("{CLUSTER0}/load_assignment/endpoints/0/lb_endpoints/0/load_balancing_weight"),
                json!(0),
            )],
            "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].load_balancing_weight".into(),
            "at least 1",
        ),
        (
            "endpoint priority",
            vec![(format!("{CLUSTER0}/load_assignment/endpoints/0/priority"), json!(200))],
            "static_resources.clusters[0].load_assignment.endpoints[0].priority".into(),
            "at most 127",
        ),
        (
            "auto upstream protocol",
            vec![(
                format!("{CLUSTER0}/typed_extension_protocol_options"),
                json!({upstream_key: {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "auto_config": {}}}),
            )],
            format!("static_resources.clusters[0].typed_extension_protocol_options[\"{upstream_key}\"].auto_config"),
            "auto_config",
        ),
        (
            "watchdog",
            vec![("/watchdog".into(), json!({"miss_timeout": "1s"}))],
            "watchdog".into(),
            "watchdog",
        ),
        (
            "dynamic resources",
            vec![(
                "/dynamic_resources".into(),
                json!({
                    "lds_config": {"ads": {}},
                    "cds_config": {"ads": {}},
                    "ads_config": {
                        "api_type": "REST",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": "backend"}}]
                    }
                }),
            )],
            "dynamic_resources.ads_config.api_type".into(),
            "REST",
        ),
        (
            "ads over a file",
            vec![(
                "/dynamic_resources".into(),
                json!({
                    "lds_config": {"path_config_source": {"path": "/x"}},
                    "cds_config": {"ads": {}},
                    "ads_config": {
                        "api_type": "GRPC",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": "backend"}}]
                    }
                }),
            )],
            "dynamic_resources.lds_config.path_config_source".into(),
            "file config sources",
        ),
        (
            "ads cluster with TLS by transport_socket_matches",
            vec![
                (
                    "/static_resources/clusters/0/transport_socket_matches".into(),
                    json!([{"name": "m", "match": {}, "transport_socket": {"name": "tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}}}]),
                ),
                (
                    "/dynamic_resources".into(),
                    json!({
                        "lds_config": {"ads": {}},
                        "cds_config": {"ads": {}},
                        "ads_config": {
                            "api_type": "GRPC",
                            "grpc_services": [{"envoy_grpc": {"cluster_name": "backend"}}]
                        }
                    }),
                ),
            ],
            "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name".into(),
            "TLS to xDS cluster 'backend'",
        ),
        (
            "ads cluster unknown",
            vec![(
                "/dynamic_resources".into(),
                json!({
                    "lds_config": {"ads": {}},
                    "cds_config": {"ads": {}},
                    "ads_config": {
                        "api_type": "GRPC",
                        "grpc_services": [{"envoy_grpc": {"cluster_name": "nope"}}]
                    }
                }),
            )],
            "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name".into(),
            "unknown cluster",
        ),
        (
            "runtime overrides",
            vec![(
                "/layered_runtime".into(),
                json!({"layers": [{"name": "s", "static_layer": {"foo.bar": 1}}]}),
            )],
            "layered_runtime.layers[0].static_layer".into(),
            "foo.bar",
        ),
        (
            "admin access log file",
            vec![("/admin/access_log_path".into(), json!("/tmp/admin.log"))],
            "admin.access_log_path".into(),
            "/dev/null",
        ),
        (
            "secret without content",
            vec![("/static_resources/secrets".into(), json!([{"name": "s"}]))],
            "static_resources.secrets[0]".into(),
            "tls_certificate or validation_context",
        ),
    ];
    let mut failures = Vec::new();
    for (what, edits, path, word) in &cases {
        let edits: Vec<(&str, Value)> =
            edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
        match load(&edited(&edits)) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(errors) => {
                let hit = errors
                    .iter()
                    .any(|e| e.path() == path && e.to_string().contains(word));
                if !hit {
                    failures.push(format!(
                        "{what}: want {path} with '{word}', got:\n  {}",
                        render(&errors).replace('\n', "\n  ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_typo_is_a_parse_error_naming_the_field() {
    let text = edited(&[(&format!("{CLUSTER0}/conect_timeout"), json!("1s"))]);
    let errors = load(&text).expect_err("typo refused");
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    assert!(
        matches!(errors[0], ConfigError::Parse(_)),
        "{}",
        render(&errors)
    );
    let msg = errors[0].to_string();
    assert!(
        msg.contains("clusters") && msg.contains("conect_timeout"),
        "{msg}"
    );
}

#[test]
fn load_reports_every_problem_at_once() {
    let text = edited(&[
        (&format!("{HCM}/codec_type"), json!("HTTP3")),
        (&format!("{CLUSTER0}/connect_timeout"), json!("0s")),
        ("/static_resources/listeners/1/name", json!("http")),
        (
            &format!("{ROUTE0}/match"),
            json!({"safe_regex": {"regex": "("}}),
        ),
    ]);
    let errors = load(&text).expect_err("refused");
    let paths: Vec<&str> = errors.iter().map(ConfigError::path).collect();
    for want in [
        format!("{HCM_PATH}.codec_type"),
        "static_resources.clusters[0].connect_timeout".to_owned(),
        "static_resources.listeners[1].name".to_owned(),
        format!("{ROUTE0_PATH}.match.safe_regex.regex"),
    ] {
        assert!(
            paths.contains(&want.as_str()),
            "missing {want}: {}",
            render(&errors)
        );
    }
}
