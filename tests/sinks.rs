//! Stats sinks against real collectors on 127.0.0.1: a UDP socket as the
//! statsd server, and the test metrics service (gRPC `StreamMetrics`).
//!
//! Stats are process-wide (one Prometheus recorder), so each test sends its
//! traffic through a cluster of its own name.

use std::{net::SocketAddr, time::Duration};

use envoy_types::pb::io::prometheus::client::{MetricFamily, MetricType};
use strait_test_support::{
    client::Client,
    eventually,
    metrics_service::{MetricsServer, Received},
    proxy::{TestProxy, UPSTREAM_H2, http_config},
    upstream::http_echo,
};
use tokio::net::UdpSocket;

const DEADLINE: Duration = Duration::from_secs(10);

/// The test-support HTTP config with its cluster renamed to `cluster`,
/// flushing every 100 ms to `sinks` (YAML list items).
fn config(upstream: SocketAddr, cluster: &str, sinks: &str, extra_clusters: &str) -> String {
    let base = http_config(upstream, "", "").replace("backend", cluster);
    let base = base.replacen(
        "  clusters:\n",
        &format!("  clusters:\n{extra_clusters}"),
        1,
    );
    format!(
        "{base}\nnode: {{id: sink-test-node, cluster: sink-test-cluster}}\nstats_flush_interval: 0.1s\nstats_sinks:\n{sinks}"
    )
}

/// The deltas of `name` in the statsd lines of `datagram`.
fn counter_deltas(datagram: &str, name: &str) -> Vec<u64> {
    let prefix = format!("{name}:");
    datagram
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.strip_suffix("|c")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_gets_counter_deltas_and_gauges() -> anyhow::Result<()> {
    let statsd = UdpSocket::bind("127.0.0.1:0").await?;
    let up = http_echo("a");
    let sink = format!(
        r#"- name: envoy.stat_sinks.statsd
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}
"#,
        statsd.local_addr()?.port()
    );
    let proxy = TestProxy::start(&config(up.addr, "statsd_backend", &sink, ""), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for i in 0..3 {
        assert_eq!(c.get(&format!("/{i}")).await?.status, 200);
    }

    let rq_total = "envoy.cluster.statsd_backend.upstream_rq_total";
    let mut total = 0;
    let mut saw_gauge = false;
    let mut buf = vec![0u8; 65536];
    // Requests may straddle a flush: the deltas add up to the count.
    let mut receive_until = async |want: u64, total: &mut u64, saw_gauge: &mut bool| {
        while *total < want || !*saw_gauge {
            let n = tokio::time::timeout(DEADLINE, statsd.recv(&mut buf))
                .await
                .map_err(|_| anyhow::anyhow!("no statsd datagram; {rq_total} at {total}"))??;
            assert!(n <= 1432, "datagram of {n} bytes");
            let text = std::str::from_utf8(&buf[..n])?;
            for l in text.lines() {
                assert!(
                    l.starts_with("envoy.") && (l.ends_with("|c") || l.ends_with("|g")),
                    "not a statsd line: {l}"
                );
            }
            let deltas = counter_deltas(text, rq_total);
            assert!(
                deltas.iter().all(|d| *d > 0),
                "unchanged counters are not sent"
            );
            *total += deltas.iter().sum::<u64>();
            *saw_gauge |= text
                .lines()
                .any(|l| l == "envoy.listener_manager.workers_started:1|g");
        }
        anyhow::Ok(())
    };
    receive_until(3, &mut total, &mut saw_gauge).await?;
    assert_eq!(total, 3);

    for i in 0..2 {
        assert_eq!(c.get(&format!("/more/{i}")).await?.status, 200);
    }
    receive_until(5, &mut total, &mut saw_gauge).await?;
    assert_eq!(total, 5, "later flushes send only the change");
    Ok(())
}

/// The value of the one metric of `family`, with its type.
fn value(family: &MetricFamily) -> Option<(MetricType, f64)> {
    let m = family.metric.first()?;
    assert!(m.timestamp_ms.is_some_and(|t| t > 0), "{family:?}");
    match MetricType::try_from(family.r#type?).ok()? {
        MetricType::Counter => Some((MetricType::Counter, m.counter.as_ref()?.value?)),
        MetricType::Gauge => Some((MetricType::Gauge, m.gauge.as_ref()?.value?)),
        _ => None,
    }
}

fn find(received: &[Received], name: &str) -> Vec<(MetricType, f64)> {
    received
        .iter()
        .flat_map(|r| &r.message.envoy_metrics)
        .filter(|f| f.name.as_deref() == Some(name))
        .filter_map(value)
        .collect()
}

fn metrics_sink(server: &MetricsServer, extra: &str) -> (String, String) {
    let cluster = format!(
        r#"  - name: metrics_sink
    type: STATIC
    connect_timeout: 1s
{UPSTREAM_H2}
    load_assignment:
      cluster_name: metrics_sink
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}
"#,
        server.addr().port()
    );
    let sink = format!(
        r#"- name: envoy.stat_sinks.metrics_service
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig
    transport_api_version: V3
    grpc_service: {{envoy_grpc: {{cluster_name: metrics_sink}}}}
{extra}"#
    );
    (sink, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_service_gets_the_node_then_counters_and_gauges() -> anyhow::Result<()> {
    let server = MetricsServer::start();
    let up = http_echo("a");
    let (sink, cluster) = metrics_sink(&server, "");
    let proxy = TestProxy::start(&config(up.addr, "ms_backend", &sink, &cluster), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for i in 0..4 {
        assert_eq!(c.get(&format!("/{i}")).await?.status, 200);
    }
    let rq_total = "cluster.ms_backend.upstream_rq_total";
    let received = eventually("4 requests reported", DEADLINE, || async {
        let r = server.received();
        find(&r, rq_total)
            .contains(&(MetricType::Counter, 4.0))
            .then_some(r)
    })
    .await;
    // Running totals by default: never more than the requests sent.
    assert!(
        find(&received, rq_total).iter().all(|(_, v)| *v <= 4.0),
        "{:?}",
        find(&received, rq_total)
    );
    let first = &received[0];
    let node = first
        .message
        .identifier
        .as_ref()
        .and_then(|i| i.node.as_ref())
        .expect("the first message identifies the node");
    assert_eq!(node.id, "sink-test-node");
    assert_eq!(node.cluster, "sink-test-cluster");
    assert!(
        received
            .iter()
            .skip(1)
            .filter(|r| r.stream == first.stream)
            .all(|r| r.message.identifier.is_none()),
        "only the first message of a stream carries the identifier"
    );
    assert_eq!(
        find(&received, "listener_manager.workers_started").last(),
        Some(&(MetricType::Gauge, 1.0))
    );
    // The stream went through the data path's cluster, which counted it.
    assert!(
        !find(&received, "cluster.metrics_sink.upstream_cx_total").is_empty(),
        "the sink's cluster counts its connection"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_service_reconnects_and_reports_deltas() -> anyhow::Result<()> {
    // Each stream is ended after one message: every later flush needs a
    // new stream, which must identify the node again.
    let server = MetricsServer::closing_streams_after(1);
    let up = http_echo("a");
    let (sink, cluster) = metrics_sink(&server, "    report_counters_as_deltas: true\n");
    let proxy = TestProxy::start(&config(up.addr, "delta_backend", &sink, &cluster), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for i in 0..2 {
        assert_eq!(c.get(&format!("/{i}")).await?.status, 200);
    }
    let rq_total = "cluster.delta_backend.upstream_rq_total";
    let received = eventually("two streams and both requests", DEADLINE, || async {
        let r = server.received();
        let total: f64 = find(&r, rq_total).iter().map(|(_, v)| v).sum();
        let streams = r.iter().map(|m| m.stream).max().unwrap_or(0);
        (total >= 2.0 && streams >= 2).then_some(r)
    })
    .await;
    // Deltas of flushes that were sent add up to the requests (a flush
    // dropped while reconnecting would make them fall short, not exceed).
    let total: f64 = find(&received, rq_total).iter().map(|(_, v)| v).sum();
    assert_eq!(total, 2.0, "{:?}", find(&received, rq_total));
    for r in &received {
        assert!(
            r.message.identifier.is_some(),
            "stream {} did not start with the identifier",
            r.stream
        );
    }
    Ok(())
}
