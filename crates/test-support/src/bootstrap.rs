//! Envoy bootstraps for tests that run the same config through Strait and
//! Envoy: one HTTP listener named `listener` on 127.0.0.1:0 in front of
//! static loopback clusters, with the parts a test varies spliced in as
//! YAML text.

/// A static cluster `name` at 127.0.0.1:`port`, a YAML list item under
/// `clusters:`; `h2` makes it speak HTTP/2 (gRPC services).
pub fn static_cluster(name: &str, port: u16, h2: bool) -> String {
    let h2 = if h2 {
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{h2}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
    )
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(1, |a| a.port())
}

/// One HTTP listener and its clusters.
#[derive(Debug, Clone, Copy)]
pub struct HttpBootstrap<'a> {
    /// The connection manager's `stat_prefix`.
    pub stat_prefix: &'a str,
    /// HTTP filters before the router: YAML list items at 10 spaces.
    pub filters: &'a str,
    /// The routes of the one virtual host (domains `*`): list items at 14
    /// spaces.
    pub routes: &'a str,
    /// Added to the filter chain after its filters (a `transport_socket`
    /// block at 6 spaces), or empty.
    pub chain_extra: &'a str,
    /// The clusters: list items at 2 spaces (see [`static_cluster`]).
    pub clusters: &'a str,
}

impl HttpBootstrap<'_> {
    pub fn render(&self) -> String {
        let HttpBootstrap {
            stat_prefix,
            filters,
            routes,
            chain_extra,
            clusters,
        } = self;
        format!(
            r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat_prefix}
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}
          http_filters:
{filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
{chain_extra}
  clusters:
{clusters}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#
        )
    }
}
