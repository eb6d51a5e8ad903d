//! Strait's HTTP path embedded in a plain hyper server: the program binds
//! and accepts connections itself and hands each request to
//! `strait_http::HttpService`, a `tower::Service`. Routing, filters,
//! retries, load balancing and the upstream pools are Strait's; the config
//! is an Envoy route configuration.
//!
//! Run: `cargo run -p strait-examples --example hyper_router`

use std::sync::Arc;

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use strait_examples::{check, echo_upstream, get};
use strait_http::{Connection, HttpFilterRegistry, HttpService, Shared};
use strait_snapshot::Store;
use strait_upstream::ClusterRegistry;
use tokio::net::TcpListener;
use tower::Service as _;

/// The routes. The listener only names the connection manager: this
/// program binds its own socket.
fn config(upstream_port: u16) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: embedded
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: embedded
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /api/}}
                route: {{cluster: backend, prefix_rewrite: /v2/}}
              - match: {{prefix: /}}
                direct_response: {{status: 404, body: {{inline_string: "not here\n"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream_port}}}}}}}
"#
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let upstream = echo_upstream()?;
    let model = strait_envoy::load(&config(upstream.port()))
        .map_err(|e| anyhow::anyhow!("config: {e:?}"))?;

    // The HTTP path's state: the config store, the live clusters, and a
    // stats recorder of the program's choosing (none here).
    let recorder: Arc<dyn metrics::Recorder + Send + Sync> = Arc::new(metrics::NoopRecorder);
    let shared = Arc::new(Shared::new(
        Arc::new(Store::new()),
        Arc::new(ClusterRegistry::new(Arc::clone(&recorder))),
        recorder,
    ));
    shared.apply(model, &HttpFilterRegistry::default()).await?;

    // A plain hyper server: accept, then serve each connection with the
    // HTTP path as its service.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept = Arc::clone(&shared);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            // Chain 0 of listener `embedded`, as the live config has it.
            let Some(svc) = Connection::live(&accept, "embedded", 0, addr, peer)
                .and_then(|conn| HttpService::new(Arc::clone(&accept), conn))
            else {
                continue;
            };
            tokio::spawn(async move {
                let hyper_svc = service_fn(move |req| svc.clone().call(req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper_svc)
                    .await;
            });
        }
    });

    // The blocking client runs off the runtime's thread.
    let answers = tokio::task::spawn_blocking(move || {
        Ok::<_, anyhow::Error>((get(addr, "/api/items", &[])?, get(addr, "/other", &[])?))
    })
    .await??;
    let (api, other) = answers;
    check(api.status == 200, "routed to the backend")?;
    check(
        api.body.starts_with("GET /v2/items HTTP/1.1"),
        "prefix rewritten by the route",
    )?;
    check(
        api.body.contains("x-envoy-original-path: /api/items"),
        "Envoy's original-path header",
    )?;
    check(other.status == 404, "direct response")?;
    check(other.body == "not here\n", "direct response body")?;
    println!("hyper_router: a hyper server on {addr} routed /api/ through Strait");
    Ok(())
}
