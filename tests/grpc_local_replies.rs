//! Local replies to gRPC requests, against the real Envoy 1.40: a request
//! with `content-type: application/grpc` that the proxy answers itself (a
//! policy's denial, no route, no healthy upstream, a direct response) gets
//! a trailers-only gRPC answer (HTTP 200, `grpc-status` mapped from the
//! HTTP status, the body as `grpc-message`), as gRPC clients expect.

use strait_test_support::{
    bootstrap::{HttpBootstrap, closed_port, static_cluster},
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
    let routes = r#"              - match: {prefix: "/direct"}
                direct_response: {status: 200, body: {inline_string: "direct body"}}
              - match: {prefix: "/teapot"}
                direct_response: {status: 418, body: {inline_string: "short and stout"}}
              - match: {prefix: "/dead"}
                route: {cluster: dead}
              - match: {prefix: "/pkg."}
                route: {cluster: a}"#;
    let filters = r#"          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: DENY
                policies:
                  forbidden:
                    permissions: [{url_path: {path: {prefix: /pkg.Forbidden/}}}]
                    principals: [{any: true}]"#;
    let clusters = static_cluster("a", a_port, false) + &static_cluster("dead", dead_port, false);
    HttpBootstrap {
        stat_prefix: "grpc",
        filters,
        routes,
        chain_extra: "",
        clusters: &clusters,
    }
    .render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_local_replies_match_envoy() -> anyhow::Result<()> {
    let a = http_echo("a");
    let yaml = bootstrap(a.addr.port(), closed_port());
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
