//! The global downstream connection limit Istio renders in every bootstrap
//! (`overload_manager` `envoy.resource_monitors.global_downstream_max_connections`):
//! connections over it are closed at once, listeners with
//! `ignore_global_conn_limit` are neither limited nor counted, and a slot
//! frees when a connection ends.

use std::time::Duration;

use strait_test_support::{
    admin, eventually,
    proxy::TestProxy,
    upstream::{Upstream, tcp_echo},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

const WAIT: Duration = Duration::from_secs(10);

fn config(echo: &Upstream, limit: u32) -> String {
    let listener = |name: &str, exempt: bool| {
        format!(
            r#"
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    ignore_global_conn_limit: {exempt}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: echo"#
        )
    };
    format!(
        r#"
overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: {limit}
static_resources:
  listeners:{limited}{exempt}
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        limited = listener("limited", false),
        exempt = listener("exempt", true),
        port = echo.addr.port()
    )
}

/// A connection through the proxy that has been served: `ping` echoed.
async fn served(addr: std::net::SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    timeout(WAIT, s.read_exact(&mut buf)).await??;
    anyhow::ensure!(&buf == b"ping", "echoed {buf:?}");
    Ok(s)
}

/// Whether the proxy closed a fresh connection without serving it.
async fn refused(addr: std::net::SocketAddr) -> anyhow::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    // The write may already fail if the close raced ahead.
    let _ = s.write_all(b"ping").await;
    let mut buf = [0u8; 4];
    Ok(match timeout(WAIT, s.read(&mut buf)).await? {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_global_limit_are_closed() -> anyhow::Result<()> {
    let echo = tcp_echo();
    let proxy = TestProxy::start(&config(&echo, 2), 2);
    let limited = proxy.listener("limited");
    let exempt = proxy.listener("exempt");

    let first = served(limited).await?;
    let second = served(limited).await?;
    assert!(
        refused(limited).await?,
        "a third connection is over the limit"
    );
    // The exempt listener neither counts nor is limited.
    let _free = served(exempt).await?;
    let _free2 = served(exempt).await?;

    let admin = proxy.admin();
    let overflow = admin::get(admin, "/stats/prometheus").await?;
    let text = String::from_utf8_lossy(&overflow.body).into_owned();
    let count: f64 = text
        .lines()
        .filter(|l| l.starts_with("envoy_listener_downstream_global_cx_overflow{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(count >= 1.0, "{text}");

    // Closing one frees its slot.
    drop(first);
    eventually("a freed slot", WAIT, || async move {
        served(limited).await.ok()
    })
    .await;
    drop(second);
    Ok(())
}
