//! Good configs translate to the expected model, with Envoy's defaults.

use std::{net::SocketAddr, time::Duration};

use serde_json::json;

use super::{HCM, ROUTE0, edited, load_ok};
use crate::{model::*, parse::parse_message};

#[test]
fn full_config_translates_to_the_expected_model() {
    let yaml = r#"
admin:
  access_log_path: /dev/null
  address: {socket_address: {address: "::1", port_value: 9901}}
node: {id: n1, cluster: c1}
layered_runtime:
  layers:
  - {name: static, static_layer: {}}
  - {name: admin, admin_layer: {}}
static_resources:
  listeners:
  - name: web
    address: {socket_address: {address: 0.0.0.0, port_value: 8000}}
    per_connection_buffer_limit_bytes: 32768
    traffic_direction: INBOUND
    enable_reuse_port: false
    filter_chains:
    - filter_chain_match: {}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          codec_type: HTTP1
          server_name: strait
          server_header_transformation: PASS_THROUGH
          stream_idle_timeout: 0s
          request_timeout: 10s
          common_http_protocol_options: {idle_timeout: 60s}
          http_protocol_options: {}
          max_request_headers_kb: 96
          use_remote_address: true
          generate_request_id: false
          normalize_path: false
          drain_timeout: 5s
          upgrade_configs:
          - upgrade_type: WebSocket
          - upgrade_type: CONNECT
            enabled: false
          http_filters:
          - name: envoy.filters.http.lua
            is_optional: true
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              dynamic_stats: true
          route_config:
            name: main
            virtual_hosts:
            - name: api
              domains: ["API.example.com", "*.api.example.com"]
              routes:
              - name: health
                match: {path: /health, case_sensitive: false}
                decorator: {operation: health}
                direct_response: {status: 200, body: {inline_string: ok}}
              - match: {prefix: /v1/}
                route: {cluster: api_v1, timeout: 0s, prefix_rewrite: /}
            - name: fallback
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: dns_backend, timeout: 2.5s}
              - match: {prefix: /gone}
                direct_response: {status: 410, body: {inline_string: ""}}
  - address: {socket_address: {address: 127.0.0.1, port_value: 9000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          idle_timeout: 0s
          max_connect_attempts: 1
          weighted_clusters:
            clusters:
            - {name: api_v1, weight: 3}
            - {name: dns_backend, weight: 1}
  clusters:
  - name: api_v1
    connect_timeout: 0.25s
    per_connection_buffer_limit_bytes: 65536
    load_assignment:
      cluster_name: api_v1
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}
          load_balancing_weight: 2
        - endpoint: {address: {socket_address: {address: "fd00::2", port_value: 81}}}
          health_status: HEALTHY
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
  - name: dns_backend
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    dns_refresh_rate: 10s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: dns_backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: backend.local, port_value: 8080}}}
  - name: legacy_h2
    type: STATIC
    http2_protocol_options: {}
"#;
    let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
    let expected = Config {
        admin: Some(Admin {
            address: addr("[::1]:9901"),
        }),
        listeners: vec![
            Listener {
                name: "web".into(),
                address: addr("0.0.0.0:8000"),
                buffer_limit: 32768,
                filter_chains: vec![FilterChain::new(NetworkFilter::Http(
                    HttpConnectionManager {
                        stat_prefix: "web".into(),
                        codec: CodecType::Http1,
                        route_config: RouteSource::Inline(RouteConfig {
                            name: "main".into(),
                            virtual_hosts: vec![
                                VirtualHost {
                                    name: "api".into(),
                                    domains: vec![
                                        "api.example.com".into(),
                                        "*.api.example.com".into(),
                                    ],
                                    routes: vec![
                                        Route {
                                            name: "health".into(),
                                            matcher: RouteMatch {
                                                case_sensitive: false,
                                                ..RouteMatch::path(PathMatch::Exact(
                                                    "/health".into(),
                                                ))
                                            },
                                            action: RouteAction::DirectResponse {
                                                status: 200,
                                                body: Some("ok".into()),
                                            },
                                            headers: HeaderMutations::default(),
                                            per_filter_config: vec![],
                                            rate_limits: Default::default(),
                                        },
                                        Route {
                                            name: String::new(),
                                            matcher: RouteMatch {
                                                case_sensitive: true,
                                                ..RouteMatch::path(PathMatch::Prefix("/v1/".into()))
                                            },
                                            action: RouteAction::Forward(ForwardAction {
                                                timeout: None,
                                                prefix_rewrite: Some("/".into()),
                                                ..ForwardAction::to_cluster("api_v1")
                                            }),
                                            headers: HeaderMutations::default(),
                                            per_filter_config: vec![],
                                            rate_limits: Default::default(),
                                        },
                                    ],
                                    headers: HeaderMutations::default(),
                                },
                                VirtualHost {
                                    name: "fallback".into(),
                                    domains: vec!["*".into()],
                                    routes: vec![
                                        Route {
                                            name: String::new(),
                                            matcher: RouteMatch {
                                                case_sensitive: true,
                                                ..RouteMatch::path(PathMatch::Prefix("/".into()))
                                            },
                                            action: RouteAction::Forward(ForwardAction {
                                                timeout: Some(Duration::from_millis(2500)),
                                                prefix_rewrite: None,
                                                ..ForwardAction::to_cluster("dns_backend")
                                            }),
                                            headers: HeaderMutations::default(),
                                            per_filter_config: vec![],
                                            rate_limits: Default::default(),
                                        },
                                        Route {
                                            name: String::new(),
                                            matcher: RouteMatch {
                                                case_sensitive: true,
                                                ..RouteMatch::path(PathMatch::Prefix(
                                                    "/gone".into(),
                                                ))
                                            },
                                            action: RouteAction::DirectResponse {
                                                status: 410,
                                                body: None,
                                            },
                                            headers: HeaderMutations::default(),
                                            per_filter_config: vec![],
                                            rate_limits: Default::default(),
                                        },
                                    ],
                                    headers: HeaderMutations::default(),
                                },
                            ],
                            ..RouteConfig::default()
                        }),
                        server_name: "strait".into(),
                        server_header: ServerHeaderTransformation::PassThrough,
                        upgrades: vec!["websocket".into()],
                        stream_idle_timeout: None,
                        request_timeout: Some(Duration::from_secs(10)),
                        idle_timeout: Some(Duration::from_secs(60)),
                        max_request_headers_kb: 96,
                        use_remote_address: true,
                        client: ClientTrust::default(),
                        generate_request_id: false,
                        proxy_100_continue: false,
                        http_filters: vec![],
                        router: crate::model::filter::router(),
                        strip_host_port: StripHostPort::None,
                        normalize_path: false,
                        forward_client_cert: Default::default(),
                        client_cert_details: Default::default(),
                        local_reply: None,
                        access_logs: Default::default(),
                        tracing: None,
                    },
                ))],
                default_filter_chain: None,
                listener_filters: ListenerFilters {
                    timeout: Some(Duration::from_secs(15)),
                    ..ListenerFilters::default()
                },
                ignore_global_conn_limit: false,
                bind_to_port: true,
                use_original_dst: false,
                direction: TrafficDirection::Inbound,
                access_logs: Default::default(),
            },
            Listener {
                name: "127.0.0.1_9000".into(),
                address: addr("127.0.0.1:9000"),
                buffer_limit: 1 << 20,
                filter_chains: vec![FilterChain::new(NetworkFilter::Tcp(TcpProxy {
                    stat_prefix: "tcp".into(),
                    cluster: TcpCluster::Weighted(vec![
                        WeightedCluster {
                            name: "api_v1".into(),
                            weight: 3,
                        },
                        WeightedCluster {
                            name: "dns_backend".into(),
                            weight: 1,
                        },
                    ]),
                    idle_timeout: None,
                    access_logs: Default::default(),
                }))],
                default_filter_chain: None,
                listener_filters: ListenerFilters {
                    timeout: Some(Duration::from_secs(15)),
                    ..ListenerFilters::default()
                },
                ignore_global_conn_limit: false,
                bind_to_port: true,
                use_original_dst: false,
                direction: TrafficDirection::Unspecified,
                access_logs: Default::default(),
            },
        ],
        clusters: vec![
            Cluster {
                name: "api_v1".into(),
                discovery: Discovery::Static,
                connect_timeout: Duration::from_millis(250),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![
                    Endpoint::new("10.0.0.1", 80, 2),
                    Endpoint {
                        health: EndpointHealth::Healthy,
                        ..Endpoint::new("fd00::2", 81, 1)
                    },
                ],
                protocol: UpstreamProtocol::Http2,
                buffer_limit: 65536,
                lb_common: LbCommon::default(),
                circuit_breakers: CircuitBreakers::default(),
                outlier_detection: None,
                health_checks: vec![],
                pool: PoolOptions::default(),
                tls: None,
                pipe: None,
                transport_socket_matches: vec![],
                source_address: None,
                tcp_keepalive: None,
                filters: Vec::new(),
            },
            Cluster {
                name: "dns_backend".into(),
                discovery: Discovery::StrictDns {
                    refresh_rate: Duration::from_secs(10),
                    lookup_family: DnsLookupFamily::V4Only,
                },
                connect_timeout: Duration::from_secs(5),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![Endpoint::new("backend.local", 8080, 1)],
                protocol: UpstreamProtocol::Http1,
                buffer_limit: 1 << 20,
                lb_common: LbCommon::default(),
                circuit_breakers: CircuitBreakers::default(),
                outlier_detection: None,
                health_checks: vec![],
                pool: PoolOptions::default(),
                tls: None,
                pipe: None,
                transport_socket_matches: vec![],
                source_address: None,
                tcp_keepalive: None,
                filters: Vec::new(),
            },
            Cluster {
                name: "legacy_h2".into(),
                discovery: Discovery::Static,
                connect_timeout: Duration::from_secs(5),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![],
                protocol: UpstreamProtocol::Http2,
                buffer_limit: 1 << 20,
                lb_common: LbCommon::default(),
                circuit_breakers: CircuitBreakers::default(),
                outlier_detection: None,
                health_checks: vec![],
                pool: PoolOptions::default(),
                tls: None,
                pipe: None,
                transport_socket_matches: vec![],
                source_address: None,
                tcp_keepalive: None,
                filters: Vec::new(),
            },
        ],
        node: None,
        ..Config::default()
    };
    let mut got = load_ok(yaml);
    // The version is the crate's; `tests/istio.rs` checks it is there.
    let node = got.node.take().map(|n| {
        let mut proto = crate::node_proto(&n);
        proto.user_agent_version_type = None;
        proto
    });
    assert_eq!(
        node,
        Some(envoy_types::pb::envoy::config::core::v3::Node {
            id: "n1".into(),
            cluster: "c1".into(),
            user_agent_name: "strait".into(),
            ..Default::default()
        })
    );
    assert_eq!(got, expected);
}

#[test]
fn envoy_example_config_translates_with_envoy_defaults() {
    let yaml = r#"
static_resources:
  listeners:
  - name: listener_0
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            name: local_route
            virtual_hosts:
            - name: local_service
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: service_backend}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service_backend
    type: STRICT_DNS
    connect_timeout: 1s
    load_assignment:
      cluster_name: service_backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: localhost, port_value: 8080}}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
"#;
    let c = load_ok(yaml);
    let admin = c.admin.expect("admin");
    assert_eq!(
        admin.address,
        "127.0.0.1:9901".parse::<SocketAddr>().expect("addr")
    );
    let l = &c.listeners[0];
    assert_eq!((l.name.as_str(), l.buffer_limit), ("listener_0", 1 << 20));
    let NetworkFilter::Http(hcm) = &l.filter_chains[0].terminal else {
        panic!("expected an HCM: {l:?}");
    };
    assert_eq!(hcm.codec, CodecType::Auto);
    assert_eq!(hcm.server_name, "envoy");
    assert_eq!(hcm.server_header, ServerHeaderTransformation::Overwrite);
    assert_eq!(hcm.stream_idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(hcm.request_timeout, None);
    assert_eq!(hcm.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(hcm.max_request_headers_kb, 60);
    assert!(!hcm.use_remote_address && hcm.generate_request_id);
    assert!(hcm.upgrades.is_empty() && hcm.http_filters.is_empty());
    let route = &hcm.route_config.inline().expect("inline").virtual_hosts[0].routes[0];
    assert_eq!(
        route.action,
        RouteAction::Forward(ForwardAction::to_cluster("service_backend"))
    );
    let cl = &c.clusters[0];
    assert_eq!(
        cl.discovery,
        Discovery::StrictDns {
            refresh_rate: Duration::from_secs(5),
            lookup_family: DnsLookupFamily::Auto,
        }
    );
    assert_eq!(cl.connect_timeout, Duration::from_secs(1));
    assert_eq!(cl.protocol, UpstreamProtocol::Http1);
    assert_eq!(cl.endpoints[0].host, "localhost");
}

#[test]
fn unknown_route_cluster_is_allowed_without_validate_clusters() {
    let text = edited(&[
        (&format!("{ROUTE0}/route/cluster"), json!("nope")),
        (
            &format!("{HCM}/route_config/validate_clusters"),
            json!(false),
        ),
    ]);
    let c = load_ok(&text);
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("expected an HCM");
    };
    let action = &hcm.route_config.inline().expect("inline").virtual_hosts[0].routes[0].action;
    assert!(
        matches!(action, RouteAction::Forward(f) if f.cluster == ClusterSpecifier::Name("nope".into())),
        "{action:?}"
    );
}

#[test]
fn rds_route_config_defaults_to_unvalidated_clusters() {
    let rc = parse_message(
        r#"{name: r, virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: later}}]}]}"#,
        "envoy.config.route.v3.RouteConfiguration",
    )
    .expect("parses")
    .transcode_to::<envoy_types::pb::envoy::config::route::v3::RouteConfiguration>()
    .expect("transcodes");
    let out = crate::translate_route_config(&rc, "r").expect("translates");
    assert_eq!(out.virtual_hosts[0].routes.len(), 1);
}

#[test]
fn unnamed_port_zero_listeners_get_distinct_stable_names() {
    let listener = |port: u16| {
        json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
               "filter_chains": [{"filters": [{"name": "t", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                   "stat_prefix": "t", "cluster": "backend"}}]}]})
    };
    let text = edited(&[
        ("/static_resources/listeners/0", listener(0)),
        ("/static_resources/listeners/1", listener(0)),
    ]);
    let names: Vec<String> = load_ok(&text)
        .listeners
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["127.0.0.1_0", "127.0.0.1_0_1"]);
}

#[test]
fn cluster_resilience_and_balancing_translate() {
    let yaml = r#"
static_resources:
  clusters:
  - name: c
    lb_policy: RING_HASH
    ring_hash_lb_config: {minimum_ring_size: 2048}
    common_lb_config:
      healthy_panic_threshold: {value: 25}
      locality_weighted_lb_config: {}
    circuit_breakers:
      thresholds:
      - {max_connections: 10, max_requests: 20}
      - priority: HIGH
        retry_budget: {budget_percent: {value: 30}, min_retry_concurrency: 5}
    outlier_detection: {consecutive_5xx: 2, base_ejection_time: 2s}
    health_checks:
    - timeout: 1s
      interval: 2s
      unhealthy_threshold: 3
      healthy_threshold: 1
      tcp_health_check: {send: {text: "50494e47"}, receive: [{text: "504f4e47"}]}
    load_assignment:
      cluster_name: c
      policy: {overprovisioning_factor: 200}
      endpoints:
      - locality: {region: r, zone: z}
        load_balancing_weight: 7
        priority: 1
        lb_endpoints:
        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}
          health_status: DRAINING
"#;
    let cfg = load_ok(yaml);
    let c = &cfg.clusters[0];
    assert_eq!(
        c.lb_policy,
        LbPolicy::RingHash {
            minimum_ring_size: 2048,
            maximum_ring_size: 8 * 1024 * 1024
        }
    );
    assert_eq!(c.lb_common.healthy_panic_threshold, 25.0);
    assert!(c.lb_common.locality_weighted);
    assert_eq!(c.lb_common.overprovisioning_factor, 200);
    assert_eq!(c.circuit_breakers.default.max_connections, 10);
    assert_eq!(c.circuit_breakers.default.max_requests, 20);
    assert_eq!(c.circuit_breakers.default.max_pending_requests, 1024);
    assert_eq!(
        c.circuit_breakers.high.retry_budget,
        Some(RetryBudget {
            budget_percent: 30.0,
            min_retry_concurrency: 5
        })
    );
    let od = c.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(od.consecutive_5xx, 2);
    assert_eq!(od.base_ejection_time, Duration::from_secs(2));
    assert_eq!(od.max_ejection_percent, 10);
    assert_eq!(
        c.health_checks[0].kind,
        HealthCheckKind::Tcp {
            send: b"PING".to_vec(),
            receive: vec![b"PONG".to_vec()]
        }
    );
    let e = &c.endpoints[0];
    assert_eq!((e.priority, e.locality_weight), (1, 7));
    assert_eq!(e.locality.zone, "z");
    assert_eq!(e.health, EndpointHealth::Draining);
}

#[test]
fn dynamic_resources_over_ads_translate() {
    let text = edited(&[
        (
            "/dynamic_resources",
            json!({
                "lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                "ads_config": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "set_node_on_first_message_only": true,
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "backend"}}]
                }
            }),
        ),
        (&format!("{HCM}/route_config"), serde_json::Value::Null),
        (
            &format!("{HCM}/rds"),
            json!({"route_config_name": "80", "config_source": {"ads": {}, "resource_api_version": "V3"}}),
        ),
    ]);
    let c = load_ok(&text);
    assert_eq!(
        c.dynamic,
        Some(DynamicResources {
            ads_cluster: "backend".into(),
            api: AdsApi::StateOfTheWorld,
            node_on_first_message_only: true,
            initial_fetch_timeout: None,
        })
    );
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("expected an HCM");
    };
    assert_eq!(hcm.route_config, RouteSource::Rds("80".into()));
}

#[test]
fn eds_assignment_translates_localities_priorities_weights_and_health() {
    let cla = parse_message(
        r#"{cluster_name: svc, endpoints: [
            {locality: {region: r, zone: z}, load_balancing_weight: 7, priority: 1, lb_endpoints: [
                {endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}, load_balancing_weight: 3, health_status: DRAINING}]}]}"#,
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    )
    .expect("parses")
    .transcode_to()
    .expect("transcodes");
    let eps = crate::translate_cluster_load_assignment(&cla, "svc").expect("translates");
    assert_eq!(eps.len(), 1);
    let e = &eps[0];
    assert_eq!((e.host.as_str(), e.port, e.weight), ("10.0.0.1", 80, 3));
    assert_eq!((e.priority, e.locality_weight), (1, 7));
    assert_eq!(e.locality.zone, "z");
    assert_eq!(e.health, EndpointHealth::Draining);

    let bad = parse_message(
        r#"{cluster_name: svc, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: svc.local, port_value: 80}}}}]}]}"#,
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    )
    .expect("parses")
    .transcode_to()
    .expect("transcodes");
    let errs =
        crate::translate_cluster_load_assignment(&bad, "svc").expect_err("a name is refused");
    assert!(errs[0].path().starts_with("svc.endpoints[0]"), "{errs:?}");
}

/// Istio's sidecar traffic model: the virtual outbound listener hands
/// redirected connections off (`use_original_dst`), per-service listeners
/// do not bind, and the inbound one matches on the original destination.
#[test]
fn sidecar_listener_shape_translates() {
    let listener = |text: &str| {
        let msg = parse_message(text, "envoy.config.listener.v3.Listener").expect("parses");
        let l = msg.transcode_to().expect("transcodes");
        crate::translate_listener(&l, "l").expect("translates")
    };
    let tcp = r#"filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy,
        stat_prefix: s, cluster: c}}]}]"#;
    let outbound = listener(&format!(
        "{{name: virtualOutbound, address: {{socket_address: {{address: 0.0.0.0, port_value: 15001}}}}, \
         use_original_dst: true, traffic_direction: OUTBOUND, {tcp}}}"
    ));
    assert!(outbound.use_original_dst && outbound.bind_to_port);
    let service = listener(&format!(
        "{{name: 0.0.0.0_9080, address: {{socket_address: {{address: 0.0.0.0, port_value: 9080}}}}, \
         bind_to_port: false, {tcp}}}"
    ));
    assert!(!service.bind_to_port && !service.use_original_dst);
    let inbound = listener(&format!(
        "{{name: virtualInbound, address: {{socket_address: {{address: 0.0.0.0, port_value: 15006}}}}, \
         listener_filters: [{{name: envoy.filters.listener.original_dst, typed_config: \
         {{\"@type\": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}}}}], {tcp}}}"
    ));
    assert!(inbound.listener_filters.original_dst);
}

#[test]
fn client_trust_and_internal_addresses_translate() {
    let text = edited(&[
        (&format!("{HCM}/xff_num_trusted_hops"), json!(2)),
        (&format!("{HCM}/skip_xff_append"), json!(true)),
        (
            &format!("{HCM}/internal_address_config"),
            json!({"unix_sockets": true, "cidr_ranges": [
                {"address_prefix": "203.0.113.0", "prefix_len": 24},
                {"address_prefix": "fd00::", "prefix_len": 8},
            ]}),
        ),
        (
            "/layered_runtime",
            json!({"layers": [{"name": "s", "static_layer": {
                "envoy.reloadable_features.explicit_internal_address_config": "true"
            }}]}),
        ),
    ]);
    let c = load_ok(&text);
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("expected an HCM");
    };
    let ip = |s: &str| s.parse().expect("ip");
    assert_eq!(
        hcm.client,
        ClientTrust {
            xff_num_trusted_hops: 2,
            skip_xff_append: true,
            internal_addresses: Some(InternalAddresses {
                unix_sockets: true,
                cidr_ranges: vec![
                    tls::CidrRange {
                        address: ip("203.0.113.0"),
                        prefix_len: 24
                    },
                    tls::CidrRange {
                        address: ip("fd00::"),
                        prefix_len: 8
                    },
                ],
            }),
        }
    );
    // Unset: no internal_address_config, and the runtime default.
    let c = load_ok(&edited(&[]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("expected an HCM");
    };
    assert_eq!(hcm.client, ClientTrust::default());
}

/// The deprecated `protocol_selection: USE_DOWNSTREAM_PROTOCOL` Istio up to
/// about 1.10 sets on its passthrough clusters is the legacy spelling of
/// `use_downstream_protocol_config`; with typed protocol options Envoy
/// refuses the pair.
#[test]
fn legacy_protocol_selection_uses_the_downstream_protocol() {
    let config = load_ok(&edited(&[(
        "/static_resources/clusters/0/protocol_selection",
        serde_json::json!("USE_DOWNSTREAM_PROTOCOL"),
    )]));
    assert_eq!(config.clusters[0].protocol, UpstreamProtocol::Downstream);
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let both = edited(&[
        (
            "/static_resources/clusters/0/protocol_selection",
            serde_json::json!("USE_DOWNSTREAM_PROTOCOL"),
        ),
        (
            "/static_resources/clusters/0/typed_extension_protocol_options",
            serde_json::json!({key: {"@type": format!("type.googleapis.com/{key}"),
                "explicit_http_config": {"http2_protocol_options": {}}}}),
        ),
    ]);
    let errors = crate::load(&both).expect_err("refused");
    assert!(
        super::render(&errors).contains("clusters[0].protocol_selection"),
        "{}",
        super::render(&errors)
    );
}
