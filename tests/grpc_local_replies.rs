//! Local replies to gRPC requests, against the real Envoy 1.40: a request
//! with `content-type: application/grpc` that the proxy answers itself (a
//! policy's denial, no route, no healthy upstream, a direct response) gets
//! a trailers-only gRPC answer (HTTP 200, `grpc-status` mapped from the
//! HTTP status, the body as `grpc-message`), as gRPC clients expect.

use strait_test_support::{
    differential::{Observe, Req},
    envoy::Envoy,
    proxy::TestProxy,
    upstream::http_echo,
};

const OBSERVE: Observe = Observe {
    response_headers: &["grpc-status", "grpc-message", "content-type", "x-upstream"],
    upstream_headers: None,
    volatile: &["x-request-id"],
};

fn bootstrap(a_port: u16, dead_port: u16) -> String {
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
          stat_prefix: grpc
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/direct"}}
                direct_response: {{status: 200, body: {{inline_string: "direct body"}}}}
              - match: {{prefix: "/teapot"}}
                direct_response: {{status: 418, body: {{inline_string: "short and stout"}}}}
              - match: {{prefix: "/dead"}}
                route: {{cluster: dead}}
              - match: {{prefix: "/pkg."}}
                route: {{cluster: a}}
          http_filters:
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: DENY
                policies:
                  forbidden:
                    permissions: [{{url_path: {{path: {{prefix: /pkg.Forbidden/}}}}}}]
                    principals: [{{any: true}}]
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: a
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: a
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {a_port}}}}}}}
  - name: dead
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {dead_port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_local_replies_match_envoy() -> anyhow::Result<()> {
    let a = http_echo("a");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let yaml = bootstrap(a.addr.port(), dead);
    let strait = TestProxy::start(&yaml, 1);
    let envoy = Envoy::start(&yaml);
    let grpc = |path: &str| Req::post("h", path, "").header("content-type", "application/grpc");
    let requests = [
        grpc("/pkg.Forbidden/Call"),
        grpc("/nowhere/Call"),
        grpc("/dead/Call"),
        grpc("/direct"),
        grpc("/teapot"),
        grpc("/pkg.Open/Call"),
        Req::post("h", "/pkg.Forbidden/Call", "").header("content-type", "application/grpc+proto"),
        Req::post("h", "/pkg.Forbidden/Call", "").header("content-type", "application/grpc-web"),
        Req::post("h", "/pkg.Forbidden/Call", ""),
        Req::get("h", "/dead/plain"),
    ];
    OBSERVE
        .compare(
            "grpc local replies",
            strait.listener("listener"),
            envoy.listener("listener"),
            &requests,
        )
        .await
}
