//! Errors answered the way Envoy answers them: the status, the body text
//! clients and dashboards match on, and a downstream connection that stays
//! usable afterwards.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use strait_test_support::{
    client::{Client, Protocol},
    proxy::{TestProxy, UPSTREAM_H2},
    upstream::http_echo,
};

const RESET_BEFORE_HEADERS: &str = "upstream connect error or disconnect/reset before headers";

/// A port nothing listens on: bound by the OS, then released.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// One listener whose routes exercise every error: `/only` and `/reset` and
/// `/delay/` (0.2 s timeout) go to `backend` at `upstream`; `/closed` to a
/// cluster whose only host refuses connections (both clusters get
/// `cluster_extra`); `/nocluster` to a cluster
/// that does not exist (`validate_clusters: false`, as RDS has it);
/// `/direct` is answered by the route itself. Nothing else matches.
fn errors_config(upstream: SocketAddr, cluster_extra: &str) -> String {
    let closed = closed_port();
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
          stat_prefix: errors
          route_config:
            validate_clusters: false
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/only"}}
                route: {{cluster: backend}}
              - match: {{prefix: "/reset"}}
                route: {{cluster: backend}}
              - match: {{prefix: "/delay/"}}
                route: {{cluster: backend, timeout: 0.2s}}
              - match: {{prefix: "/closed"}}
                route: {{cluster: closed}}
              - match: {{prefix: "/nocluster"}}
                route: {{cluster: nope}}
              - match: {{prefix: "/direct"}}
                direct_response: {{status: 418, body: {{inline_string: "short and stout"}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
{cluster_extra}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {up}}}}}}}
  - name: closed
    type: STATIC
    connect_timeout: 1s
{cluster_extra}
    load_assignment:
      cluster_name: closed
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {closed}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        up = upstream.port(),
        closed = closed.port(),
    )
}

/// Every error case on one client connection per protocol pair, each
/// followed by a good request on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_match_envoy() -> anyhow::Result<()> {
    let up = http_echo("e");
    for backend_extra in ["", UPSTREAM_H2] {
        let proxy = TestProxy::start(&errors_config(up.addr, backend_extra), 1);
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let what = |case: &str| {
                format!(
                    "{case} ({protocol:?} down, {} up)",
                    if backend_extra.is_empty() { "h1" } else { "h2" }
                )
            };
            let mut c = Client::connect(proxy.listener("listener"), protocol).await?;
            let ok = async |c: &mut Client, case: &str| -> anyhow::Result<()> {
                let r = c.get("/only/fine").await?;
                assert_eq!(r.status, 200, "{case}: connection unusable afterwards");
                Ok(())
            };

            let r = c.get("/other").await?;
            assert_eq!(r.status, 404, "{}", what("no route"));
            assert_eq!(r.text(), "", "{}", what("no route"));
            assert_eq!(r.header("server"), Some("envoy"), "{}", what("no route"));
            ok(&mut c, &what("no route")).await?;

            let r = c.get("/closed").await?;
            assert_eq!(r.status, 503, "{}", what("connect failure"));
            assert!(
                r.text().starts_with(RESET_BEFORE_HEADERS),
                "{}: {}",
                what("connect failure"),
                r.text()
            );
            ok(&mut c, &what("connect failure")).await?;

            let started = Instant::now();
            let r = c.get("/delay/2000").await?;
            assert_eq!(r.status, 504, "{}", what("route timeout"));
            assert_eq!(r.text(), "upstream request timeout", "{}", what("timeout"));
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "{}: answered after {:?}, not at the 0.2 s timeout",
                what("route timeout"),
                started.elapsed()
            );
            ok(&mut c, &what("route timeout")).await?;

            let r = c.get("/reset").await?;
            assert_eq!(r.status, 503, "{}", what("upstream reset"));
            assert!(
                r.text().starts_with(RESET_BEFORE_HEADERS),
                "{}: {}",
                what("upstream reset"),
                r.text()
            );
            ok(&mut c, &what("upstream reset")).await?;

            let r = c.get("/direct").await?;
            assert_eq!(r.status, 418, "{}", what("direct response"));
            assert_eq!(r.text(), "short and stout", "{}", what("direct response"));
            assert_eq!(r.header("content-type"), Some("text/plain"));
            ok(&mut c, &what("direct response")).await?;

            let r = c.get("/nocluster").await?;
            assert_eq!(r.status, 503, "{}", what("unknown cluster"));
            ok(&mut c, &what("unknown cluster")).await?;
        }
    }
    Ok(())
}

/// A burst of requests to an HTTP/2 cluster whose host refuses connections:
/// every one gets `UF`'s 503 (none hangs behind the shared connection
/// attempt), and a later request fails the same way (no stale pool state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_http2_upstream_fails_a_burst_with_503() -> anyhow::Result<()> {
    let up = http_echo("e");
    let proxy = TestProxy::start(&errors_config(up.addr, UPSTREAM_H2), 1);
    let c = Client::http2(proxy.listener("listener")).await?;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut c = c.share().expect("h2 client");
        tasks.push(tokio::spawn(async move { c.get("/closed").await }));
    }
    for t in tasks {
        let r = t.await??;
        assert_eq!(r.status, 503);
        assert!(r.text().starts_with(RESET_BEFORE_HEADERS), "{}", r.text());
    }
    let r = c.share().expect("h2 client").get("/closed").await?;
    assert_eq!(r.status, 503);
    Ok(())
}
