//! Table-driven translation tests: good configs against the expected model,
//! bad ones against the path and a key word of the error they must produce.

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};

use crate::{ConfigError, load, model::*, parse::parse_message};

const HCM: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
const HCM_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
const ROUTE0: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes/0";
const ROUTE0_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0]";
const TCP: &str = "/static_resources/listeners/1/filter_chains/0/filters/0/typed_config";
const CLUSTER0: &str = "/static_resources/clusters/0";
const ENDPOINT0: &str =
    "/static_resources/clusters/0/load_assignment/endpoints/0/lb_endpoints/0/endpoint";
const ENDPOINT0_PATH: &str =
    "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint";

/// The config every bad case starts from; it translates cleanly.
const BASE: &str = r#"
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: r
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 10001}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
"#;

/// (what, edits as JSON pointer and value, path of an expected error, a word
/// its message must contain).
type BadCase = (&'static str, Vec<(String, Value)>, String, &'static str);

fn load_ok(text: &str) -> Config {
    match load(text) {
        Ok(c) => c,
        Err(errors) => panic!("{}", render(&errors)),
    }
}

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `BASE` as JSON with `edits` applied: each sets the value at a JSON
/// pointer (appending when the index is one past an array's end), and a null
/// value removes the key.
fn edited(edits: &[(&str, Value)]) -> String {
    let mut root: Value = serde_yaml::from_str(BASE).expect("base parses");
    for (ptr, value) in edits {
        let (parent, last) = ptr.rsplit_once('/').expect("pointer has a parent");
        match root.pointer_mut(parent) {
            Some(Value::Object(m)) if value.is_null() => {
                m.remove(last);
            }
            Some(Value::Object(m)) => {
                m.insert(last.to_owned(), value.clone());
            }
            Some(Value::Array(a)) => {
                let i: usize = last.parse().expect("array index");
                if i == a.len() {
                    a.push(value.clone());
                } else {
                    a[i] = value.clone();
                }
            }
            _ => panic!("{ptr}: no container at {parent}"),
        }
    }
    serde_json::to_string(&root).expect("serialises")
}

fn router() -> Value {
    json!({"name": "envoy.filters.http.router",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

fn cors(optional: bool) -> Value {
    json!({"name": "envoy.filters.http.cors", "is_optional": optional,
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}})
}

#[test]
fn base_translates() {
    let c = load_ok(BASE);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.clusters.len(), 1);
}

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
          - name: envoy.filters.http.cors
            is_optional: true
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
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
                filter_chain: FilterChain {
                    terminal: NetworkFilter::Http(HttpConnectionManager {
                        stat_prefix: "web".into(),
                        codec: CodecType::Http1,
                        route_config: RouteConfig {
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
                                                path: PathMatch::Exact("/health".into()),
                                                case_sensitive: false,
                                            },
                                            action: RouteAction::DirectResponse {
                                                status: 200,
                                                body: Some("ok".into()),
                                            },
                                        },
                                        Route {
                                            name: String::new(),
                                            matcher: RouteMatch {
                                                path: PathMatch::Prefix("/v1/".into()),
                                                case_sensitive: true,
                                            },
                                            action: RouteAction::Forward(ForwardAction {
                                                cluster: "api_v1".into(),
                                                timeout: None,
                                                prefix_rewrite: Some("/".into()),
                                            }),
                                        },
                                    ],
                                },
                                VirtualHost {
                                    name: "fallback".into(),
                                    domains: vec!["*".into()],
                                    routes: vec![
                                        Route {
                                            name: String::new(),
                                            matcher: RouteMatch {
                                                path: PathMatch::Prefix("/".into()),
                                                case_sensitive: true,
                                            },
                                            action: RouteAction::Forward(ForwardAction {
                                                cluster: "dns_backend".into(),
                                                timeout: Some(Duration::from_millis(2500)),
                                                prefix_rewrite: None,
                                            }),
                                        },
                                        Route {
                                            name: String::new(),
                                            matcher: RouteMatch {
                                                path: PathMatch::Prefix("/gone".into()),
                                                case_sensitive: true,
                                            },
                                            action: RouteAction::DirectResponse {
                                                status: 410,
                                                body: None,
                                            },
                                        },
                                    ],
                                },
                            ],
                        },
                        server_name: "strait".into(),
                        server_header: ServerHeaderTransformation::PassThrough,
                        upgrades: vec!["websocket".into()],
                        stream_idle_timeout: None,
                        request_timeout: Some(Duration::from_secs(10)),
                        idle_timeout: Some(Duration::from_secs(60)),
                        max_request_headers_kb: 96,
                        use_remote_address: true,
                        generate_request_id: false,
                        http_filters: vec![],
                    }),
                },
            },
            Listener {
                name: "127.0.0.1_9000".into(),
                address: addr("127.0.0.1:9000"),
                buffer_limit: 1 << 20,
                filter_chain: FilterChain {
                    terminal: NetworkFilter::Tcp(TcpProxy {
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
                    }),
                },
            },
        ],
        clusters: vec![
            Cluster {
                name: "api_v1".into(),
                discovery: Discovery::Static,
                connect_timeout: Duration::from_millis(250),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![
                    Endpoint {
                        host: "10.0.0.1".into(),
                        port: 80,
                        weight: 2,
                    },
                    Endpoint {
                        host: "fd00::2".into(),
                        port: 81,
                        weight: 1,
                    },
                ],
                protocol: UpstreamProtocol::Http2,
                buffer_limit: 65536,
            },
            Cluster {
                name: "dns_backend".into(),
                discovery: Discovery::StrictDns {
                    refresh_rate: Duration::from_secs(10),
                    lookup_family: DnsLookupFamily::V4Only,
                },
                connect_timeout: Duration::from_secs(5),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![Endpoint {
                    host: "backend.local".into(),
                    port: 8080,
                    weight: 1,
                }],
                protocol: UpstreamProtocol::Http1,
                buffer_limit: 1 << 20,
            },
            Cluster {
                name: "legacy_h2".into(),
                discovery: Discovery::Static,
                connect_timeout: Duration::from_secs(5),
                lb_policy: LbPolicy::RoundRobin,
                endpoints: vec![],
                protocol: UpstreamProtocol::Http2,
                buffer_limit: 1 << 20,
            },
        ],
    };
    assert_eq!(load_ok(yaml), expected);
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
    let NetworkFilter::Http(hcm) = &l.filter_chain.terminal else {
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
    let route = &hcm.route_config.virtual_hosts[0].routes[0];
    assert_eq!(
        route.action,
        RouteAction::Forward(ForwardAction {
            cluster: "service_backend".into(),
            timeout: Some(Duration::from_secs(15)),
            prefix_rewrite: None,
        })
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
fn bad_configs_name_the_field() {
    let hcm = |f: &str| format!("{HCM}/{f}");
    let hcm_path = |f: &str| format!("{HCM_PATH}.{f}");
    let route0 = |f: &str| format!("{ROUTE0}/{f}");
    let route0_path = |f: &str| format!("{ROUTE0_PATH}.{f}");
    let upstream_key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let cases: Vec<BadCase> = vec![
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
            "two filter chains",
            vec![(
                "/static_resources/listeners/1/filter_chains/1".into(),
                json!({"filters": []}),
            )],
            "static_resources.listeners[1].filter_chains".into(),
            "filter_chain_match",
        ),
        (
            "filter chain match",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/filter_chain_match".into(),
                json!({"destination_port": 80}),
            )],
            "static_resources.listeners[1].filter_chains[0].filter_chain_match".into(),
            "filter_chain_match",
        ),
        (
            "transport socket",
            vec![(
                "/static_resources/listeners/1/filter_chains/0/transport_socket".into(),
                json!({"name": "envoy.transport_sockets.raw_buffer"}),
            )],
            "static_resources.listeners[1].filter_chains[0].transport_socket".into(),
            "transport_socket",
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
            hcm_path("rds"),
            "xDS",
        ),
        (
            "no router",
            vec![(hcm("http_filters"), json!([]))],
            hcm_path("http_filters"),
            "envoy.filters.http.router",
        ),
        (
            "unknown http filter",
            vec![(hcm("http_filters"), json!([cors(false), router()]))],
            hcm_path("http_filters[0].typed_config.@type"),
            "cors",
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
                json!([{"name": "envoy.access_loggers.stdout", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}}]),
            )],
            hcm_path("access_log"),
            "access_log",
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
            "safe_regex",
            vec![(route0("match"), json!({"safe_regex": {"regex": ".*"}}))],
            route0_path("match.safe_regex"),
            "safe_regex",
        ),
        (
            "header matcher",
            vec![(
                route0("match/headers"),
                json!([{"name": "x-a", "string_match": {"exact": "b"}}]),
            )],
            route0_path("match.headers"),
            "headers",
        ),
        (
            "redirect",
            vec![
                (route0("route"), Value::Null),
                (route0("redirect"), json!({"path_redirect": "/x"})),
            ],
            route0_path("redirect"),
            "redirect",
        ),
        (
            "weighted route clusters",
            vec![(
                route0("route"),
                json!({"weighted_clusters": {"clusters": [{"name": "backend", "weight": 1}]}}),
            )],
            route0_path("route.weighted_clusters"),
            "weighted_clusters",
        ),
        (
            "retry policy",
            vec![(route0("route/retry_policy"), json!({"retry_on": "5xx"}))],
            route0_path("route.retry_policy"),
            "retry_policy",
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
            "route header mutation",
            vec![(
                route0("request_headers_to_add"),
                json!([{"header": {"key": "x-a", "value": "b"}}]),
            )],
            route0_path("request_headers_to_add"),
            "request_headers_to_add",
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
            "listener filters",
            vec![(
                "/static_resources/listeners/0/listener_filters".into(),
                json!([{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}]),
            )],
            "static_resources.listeners[0].listener_filters".into(),
            "listener_filters",
        ),
        (
            "use_original_dst",
            vec![("/static_resources/listeners/0/use_original_dst".into(), json!(true))],
            "static_resources.listeners[0].use_original_dst".into(),
            "use_original_dst",
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
            "unsupported cluster type",
            vec![(format!("{CLUSTER0}/type"), json!("EDS"))],
            "static_resources.clusters[0].type".into(),
            "EDS",
        ),
        (
            "unsupported lb policy",
            vec![(format!("{CLUSTER0}/lb_policy"), json!("LEAST_REQUEST"))],
            "static_resources.clusters[0].lb_policy".into(),
            "LEAST_REQUEST",
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
            "circuit breakers",
            vec![(
                format!("{CLUSTER0}/circuit_breakers"),
                json!({"thresholds": [{"max_connections": 1}]}),
            )],
            "static_resources.clusters[0].circuit_breakers".into(),
            "circuit_breakers",
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
            vec![(format!("{CLUSTER0}/load_assignment/endpoints/0/priority"), json!(1))],
            "static_resources.clusters[0].load_assignment.endpoints[0].priority".into(),
            "priority",
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
            "stats config",
            vec![("/stats_config".into(), json!({"use_all_default_tags": false}))],
            "stats_config".into(),
            "stats_config",
        ),
        (
            "dynamic resources",
            vec![("/dynamic_resources".into(), json!({"lds_config": {"ads": {}}}))],
            "dynamic_resources".into(),
            "xDS",
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
            "secrets",
            vec![("/static_resources/secrets".into(), json!([{"name": "s"}]))],
            "static_resources.secrets".into(),
            "secrets",
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
        (&format!("{CLUSTER0}/type"), json!("EDS")),
        ("/static_resources/listeners/1/name", json!("http")),
        (
            &format!("{ROUTE0}/match"),
            json!({"safe_regex": {"regex": ".*"}}),
        ),
    ]);
    let errors = load(&text).expect_err("refused");
    let paths: Vec<&str> = errors.iter().map(ConfigError::path).collect();
    for want in [
        format!("{HCM_PATH}.codec_type"),
        "static_resources.clusters[0].type".to_owned(),
        "static_resources.listeners[1].name".to_owned(),
        format!("{ROUTE0_PATH}.match.safe_regex"),
    ] {
        assert!(
            paths.contains(&want.as_str()),
            "missing {want}: {}",
            render(&errors)
        );
    }
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
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chain.terminal else {
        panic!("expected an HCM");
    };
    let action = &hcm.route_config.virtual_hosts[0].routes[0].action;
    assert!(
        matches!(action, RouteAction::Forward(f) if f.cluster == "nope"),
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
fn an_empty_bootstrap_is_an_empty_config() {
    assert_eq!(load_ok("{}"), Config::default());
}
