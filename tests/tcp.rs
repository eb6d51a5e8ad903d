//! The TCP proxy end to end: bytes both ways, half-close, weighted clusters
//! and Envoy's byte counters.

use std::{net::SocketAddr, time::Duration};

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

fn cluster(name: &str, upstream: &Upstream) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}"#,
        port = upstream.addr.port()
    )
}

/// A TCP proxy listener `tcp` with stat prefix `prefix`, whose `target` is
/// either `cluster: NAME` or a `weighted_clusters:` block (indented for the
/// typed_config), over `clusters`.
fn tcp_config(prefix: &str, target: &str, clusters: &[String]) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {prefix}
          {target}
  clusters:{clusters}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        clusters = clusters.concat()
    )
}

/// Sends `payload`, half-closes, and reads everything until the proxy
/// closes: the echo, then the echo server's `\n<count>`.
async fn round_trip(addr: SocketAddr, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let s = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = s.into_split();
    let payload = payload.to_vec();
    let writer = tokio::spawn(async move {
        wr.write_all(&payload).await?;
        wr.shutdown().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut got = Vec::new();
    timeout(WAIT, rd.read_to_end(&mut got)).await??;
    writer.await??;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bytes_echo_through_the_proxy() -> anyhow::Result<()> {
    let up = tcp_echo();
    let proxy = TestProxy::start(
        &tcp_config("tcp_echo", "cluster: echo", &[cluster("echo", &up)]),
        1,
    );
    let mut s = TcpStream::connect(proxy.listener("tcp")).await?;
    // Interactive: each message comes back before the next is sent.
    for msg in [
        &b"hello"[..],
        b"\x00\x01\x02 binary \xff",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        s.write_all(msg).await?;
        let mut back = vec![0u8; msg.len()];
        timeout(WAIT, s.read_exact(&mut back)).await??;
        assert_eq!(back, msg);
    }
    drop(s);
    // Bulk: 4 MB up while the echo streams back.
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
    let got = round_trip(proxy.listener("tcp"), &big).await?;
    let (echo, count) = got.split_at(big.len());
    assert!(echo == big, "4 MB echoed intact");
    assert_eq!(count, format!("\n{}", big.len()).as_bytes());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_half_close_lets_the_upstream_finish() -> anyhow::Result<()> {
    let up = tcp_echo();
    let proxy = TestProxy::start(
        &tcp_config("tcp_half", "cluster: echo", &[cluster("echo", &up)]),
        1,
    );
    let mut s = TcpStream::connect(proxy.listener("tcp")).await?;
    s.write_all(b"abc").await?;
    let mut back = [0u8; 3];
    timeout(WAIT, s.read_exact(&mut back)).await??;
    assert_eq!(&back, b"abc");
    // Our write half closes; the upstream sees EOF and only then writes its
    // trailer, which must still reach us through the open read half.
    s.shutdown().await?;
    let mut rest = Vec::new();
    timeout(WAIT, s.read_to_end(&mut rest)).await??;
    assert_eq!(rest, b"\n3");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_weighted_clusters_split_connections_by_weight() -> anyhow::Result<()> {
    let light = tcp_echo();
    let heavy = tcp_echo();
    let target = "weighted_clusters:
            clusters:
            - {name: light, weight: 1}
            - {name: heavy, weight: 3}";
    let proxy = TestProxy::start(
        &tcp_config(
            "tcp_weighted",
            target,
            &[cluster("light", &light), cluster("heavy", &heavy)],
        ),
        2,
    );
    let addr = proxy.listener("tcp");
    const N: u64 = 400;
    for batch in 0..(N / 50) {
        let mut tasks = Vec::new();
        for i in 0..50 {
            tasks.push(tokio::spawn(async move {
                round_trip(addr, format!("{batch}-{i}").as_bytes()).await
            }));
        }
        for t in tasks {
            let got = t.await??;
            assert!(got.ends_with(b"\n3") || got.ends_with(b"\n4"), "{got:?}");
        }
    }
    let (l, h) = (light.connections(), heavy.connections());
    assert_eq!(l + h, N, "every connection reached one upstream");
    // Expected 100 : 300. A binomial(400, 1/4) is within ±50 of 100 with
    // probability far above 1 - 1e-9.
    assert!(
        (50..=150).contains(&l),
        "weights 1:3 over {N} connections gave light {l}, heavy {h}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_byte_counters_reach_prometheus() -> anyhow::Result<()> {
    let up = tcp_echo();
    let prefix = "tcp_counted";
    let proxy = TestProxy::start(
        &tcp_config(prefix, "cluster: echo", &[cluster("echo", &up)]),
        1,
    );
    let payload = vec![b'z'; 1000];
    for _ in 0..10 {
        let got = round_trip(proxy.listener("tcp"), &payload).await?;
        assert_eq!(got.len(), 1000 + "\n1000".len());
    }
    let rx = format!("envoy_tcp_downstream_cx_rx_bytes_total{{envoy_tcp_prefix=\"{prefix}\"}}");
    let tx = format!("envoy_tcp_downstream_cx_tx_bytes_total{{envoy_tcp_prefix=\"{prefix}\"}}");
    let cx = format!("envoy_tcp_downstream_cx_total{{envoy_tcp_prefix=\"{prefix}\"}}");
    let admin_addr = proxy.admin();
    // Counters are added when a connection's splice ends, just after the
    // client has seen the close.
    eventually("tcp byte counters", WAIT, || {
        let (rx, tx) = (rx.clone(), tx.clone());
        async move {
            let rx = admin::stat(admin_addr, &rx).await.ok()??;
            let tx = admin::stat(admin_addr, &tx).await.ok()??;
            (rx == 10_000.0 && tx == 10_050.0).then_some(())
        }
    })
    .await;
    assert_eq!(admin::stat(admin_addr, &cx).await?, Some(10.0));
    Ok(())
}
