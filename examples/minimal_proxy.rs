//! A whole proxy from a config string: an Envoy v3 bootstrap in YAML,
//! started in-process with `strait_app::Proxy`, serving until shut down.
//!
//! Run: `cargo run -p strait-examples --example minimal_proxy`

use std::time::Duration;

use strait_app::{ConfigSource, Options, Proxy};
use strait_examples::{check, echo_upstream, get};

fn main() -> anyhow::Result<()> {
    let upstream = echo_upstream()?;
    let config = format!(
        r#"
static_resources:
  listeners:
  - name: web
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /hello}}
                direct_response: {{status: 200, body: {{inline_string: "hello from strait\n"}}}}
              - match: {{prefix: /}}
                route: {{cluster: backend}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
        port = upstream.port()
    );

    // The few lines this example is about.
    let mut opts = Options::new(ConfigSource::Inline(config));
    opts.concurrency = 1;
    let proxy = Proxy::start(opts)?;
    let addr = proxy
        .listener_addr("web")
        .ok_or_else(|| anyhow::anyhow!("listener web is not bound"))?;

    let hello = get(addr, "/hello", &[])?;
    check(hello.status == 200, "direct response status")?;
    check(hello.body == "hello from strait\n", "direct response body")?;
    let proxied = get(addr, "/api/items", &[])?;
    check(proxied.status == 200, "proxied status")?;
    check(
        proxied.body.starts_with("GET /api/items HTTP/1.1"),
        "the upstream saw the request",
    )?;
    check(
        proxied.header("x-envoy-upstream-service-time").is_some(),
        "Envoy's router header on the response",
    )?;
    println!("minimal_proxy: {addr} answered /hello locally and proxied /api/items");
    proxy.shutdown(Duration::ZERO);
    Ok(())
}
