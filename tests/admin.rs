//! The admin endpoints Istio's tooling reads, checked against real traffic.
//!
//! Each proxy counts into a recorder of its own, so tests running side by
//! side in this binary do not see each other's traffic.

use strait_test_support::{
    admin::{self, prometheus_value},
    client::Client,
    proxy::{TestProxy, http_config},
    upstream::http_echo,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_live() -> anyhow::Result<()> {
    let up = http_echo("a");
    let proxy = TestProxy::start(&http_config(up.addr, "", ""), 1);
    let r = admin::get(proxy.admin(), "/ready").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "LIVE");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_holds_the_bootstrap() -> anyhow::Result<()> {
    let up = http_echo("a");
    let proxy = TestProxy::start(&http_config(up.addr, "", ""), 1);
    let r = admin::get(proxy.admin(), "/config_dump").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let dump = r.json();
    let resources = &dump["configs"][0]["bootstrap"]["static_resources"];
    assert!(resources.is_object(), "{dump}");
    assert_eq!(resources["listeners"][0]["name"], "listener", "{dump}");
    assert_eq!(resources["clusters"][0]["name"], "backend", "{dump}");
    // Envoy's `ConfigDump` has `configs` only (the format is checked
    // against Envoy in admin_envoy.rs).
    assert_eq!(dump.as_object().map(|o| o.len()), Some(1), "{dump}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_clusters_show_bound_addresses() -> anyhow::Result<()> {
    let up = http_echo("a");
    let proxy = TestProxy::start(&http_config(up.addr, "", ""), 1);
    let bound = proxy.listener("listener");
    let r = admin::get(proxy.admin(), "/listeners").await?;
    assert_eq!(r.status, 200);
    assert!(
        r.text().lines().any(|l| l == format!("listener::{bound}")),
        "{}",
        r.text()
    );
    let json = admin::get(proxy.admin(), "/listeners?format=json")
        .await?
        .json();
    let status = &json["listener_statuses"][0];
    assert_eq!(status["name"], "listener");
    assert_eq!(
        status["local_address"]["socket_address"]["port_value"],
        bound.port()
    );
    let r = admin::get(proxy.admin(), "/clusters").await?;
    assert!(
        r.text()
            .contains(&format!("backend::{}::weight::1", up.addr)),
        "{}",
        r.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_requests_per_listener_and_cluster() -> anyhow::Result<()> {
    let up = http_echo("a");
    let yaml = http_config(up.addr, "", "").replace("stat_prefix: ingress", "stat_prefix: counted");
    let proxy = TestProxy::start(&yaml, 1);
    let series = [
        r#"envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="counted"}"#,
        r#"envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="counted",envoy_response_code_class="2"}"#,
        r#"envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="counted",envoy_response_code_class="5"}"#,
        r#"envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}"#,
        r#"envoy_cluster_upstream_rq_xx{envoy_cluster_name="backend",envoy_response_code_class="2"}"#,
        r#"envoy_cluster_upstream_rq_xx{envoy_cluster_name="backend",envoy_response_code_class="5"}"#,
    ];
    let read_all = async || -> anyhow::Result<Vec<f64>> {
        let text = admin::get(proxy.admin(), "/stats/prometheus").await?.text();
        Ok(series
            .iter()
            .map(|s| prometheus_value(&text, s).unwrap_or(0.0))
            .collect())
    };
    let before = read_all().await?;
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for i in 0..5 {
        assert_eq!(c.get(&format!("/ok/{i}")).await?.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(c.get("/status/503").await?.status, 503);
    }
    let text = admin::get(proxy.admin(), "/stats/prometheus").await?.text();
    assert!(text.contains("# TYPE envoy_http_downstream_rq_total counter"));
    let after = read_all().await?;
    let delta: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        delta,
        [7.0, 5.0, 2.0, 7.0, 5.0, 2.0],
        "deltas of {series:#?}\nin:\n{text}"
    );
    // Byte counters move with the traffic, both sides of the proxy.
    for name in [
        r#"envoy_http_downstream_cx_rx_bytes_total{envoy_http_conn_manager_prefix="counted"}"#,
        r#"envoy_http_downstream_cx_tx_bytes_total{envoy_http_conn_manager_prefix="counted"}"#,
        r#"envoy_cluster_upstream_cx_rx_bytes_total{envoy_cluster_name="backend"}"#,
        r#"envoy_cluster_upstream_cx_tx_bytes_total{envoy_cluster_name="backend"}"#,
    ] {
        let bytes = prometheus_value(&text, name).unwrap_or(0.0);
        // Seven request heads (or responses) of well over 30 bytes each.
        assert!(bytes > 7.0 * 30.0, "{name} = {bytes}\nin:\n{text}");
    }
    // Latency histograms per listener and per cluster, in Envoy's buckets.
    assert!(
        text.contains(
            r#"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="backend",le="0.5"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix="counted"}"#
        ),
        "{text}"
    );
    Ok(())
}

/// Proxies in one process count apart: traffic through one is not in the
/// other's stats, and each count is exact (no other test's traffic in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_proxy_counts_only_its_own_traffic() -> anyhow::Result<()> {
    let up = http_echo("a");
    let yaml = http_config(up.addr, "", "");
    let busy = TestProxy::start(&yaml, 1);
    let idle = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(busy.listener("listener")).await?;
    for i in 0..3 {
        assert_eq!(c.get(&format!("/ok/{i}")).await?.status, 200);
    }
    let cluster = r#"envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"}"#;
    let http = r#"envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress"}"#;
    assert_eq!(admin::stat(busy.admin(), cluster).await?, Some(3.0));
    assert_eq!(admin::stat(busy.admin(), http).await?, Some(3.0));
    // The idle proxy's cluster is registered but unused; its connection
    // manager never saw a connection, so it has no stats yet.
    assert_eq!(admin::stat(idle.admin(), cluster).await?, Some(0.0));
    assert_eq!(admin::stat(idle.admin(), http).await?, None);
    // `/stats`, in Envoy's names, renders the same recorder.
    let path = r"/stats?format=json&filter=^cluster\.backend\.upstream_rq_total$";
    for (proxy, want) in [(&busy, 3), (&idle, 0)] {
        assert_eq!(
            admin::get(proxy.admin(), path).await?.json(),
            serde_json::json!({"stats": [{"name": "cluster.backend.upstream_rq_total", "value": want}]})
        );
    }
    Ok(())
}
