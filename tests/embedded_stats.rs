//! Strait embedded in a program that installed its own global `metrics`
//! recorder first, and one that hands the proxies its own Strait recorder.
//! A test binary of its own: the global recorder is process-wide, and must
//! stay out of every other test.

use std::sync::{Mutex, Once, PoisonError};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use strait_app::StatsRecorder;
use strait_test_support::{
    admin::{self, prometheus_value},
    client::Client,
    proxy::{TestProxy, http_config},
    upstream::http_echo,
};

/// The names registered with the embedding program's recorder.
static EMBEDDER_SAW: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The embedding program's own recorder: it keeps the names registered
/// with it and counts nothing.
struct Embedder;

impl Embedder {
    fn saw(key: &Key) {
        EMBEDDER_SAW
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key.name().to_owned());
    }
}

impl Recorder for Embedder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Self::saw(key);
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Self::saw(key);
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Self::saw(key);
        Histogram::noop()
    }
}

/// Installs the embedding program's recorder, once for the binary, before
/// any proxy of the calling test starts; and records through it, as the
/// program would, so the tests can tell it is in force.
fn install_embedder_recorder() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::set_global_recorder(Embedder).expect("the first recorder in this process");
    });
    metrics::counter!("embedder_requests").increment(1);
}

/// Every name the embedding program's recorder saw registered.
fn embedder_saw() -> Vec<String> {
    EMBEDDER_SAW
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The embedding program's recorder is in force and holds none of Strait's
/// stats.
fn assert_embedder_saw_only_its_own() {
    let saw = embedder_saw();
    assert!(saw.iter().any(|n| n == "embedder_requests"), "{saw:?}");
    assert!(!saw.iter().any(|n| n.starts_with("envoy_")), "{saw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_served_under_a_foreign_global_recorder() -> anyhow::Result<()> {
    install_embedder_recorder();
    let up = http_echo("a");
    // Envoy's default internal ranges, so the router's `x-envoy-*` headers
    // are honoured from a client with one private x-forwarded-for entry.
    let internal = "          internal_address_config: {}";
    let proxy = TestProxy::start(&http_config(up.addr, internal, ""), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for i in 0..2 {
        assert_eq!(c.get(&format!("/ok/{i}")).await?.status, 200);
    }
    // One retry, asked for by header (from an internal client), so the
    // retry counters registered on the request path are covered too.
    let retried = Request::get("/status/503")
        .header("x-envoy-retry-on", "5xx")
        .header("x-forwarded-for", "10.0.0.1")
        .body(Full::new(Bytes::new()))?;
    assert_eq!(c.send(retried).await?.status, 503);

    let text = admin::get(proxy.admin(), "/stats/prometheus").await?.text();
    for (series, want) in [
        (
            r#"envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress"}"#,
            3.0,
        ),
        (
            r#"envoy_listener_downstream_cx_total{envoy_listener_address="127.0.0.1:0"}"#,
            1.0,
        ),
        (
            r#"envoy_cluster_upstream_rq_retry{envoy_cluster_name="backend"}"#,
            1.0,
        ),
        ("envoy_server_live", 1.0),
    ] {
        assert_eq!(
            prometheus_value(&text, series),
            Some(want),
            "{series} in:\n{text}"
        );
    }
    let live = admin::get(proxy.admin(), r"/stats?format=json&filter=^server\.live$").await?;
    assert_eq!(
        live.json(),
        serde_json::json!({"stats": [{"name": "server.live", "value": 1}]})
    );
    assert_embedder_saw_only_its_own();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_given_one_recorder_count_into_it() -> anyhow::Result<()> {
    install_embedder_recorder();
    let up = http_echo("a");
    let yaml = http_config(up.addr, "", "").replace("stat_prefix: ingress", "stat_prefix: given");
    let given = StatsRecorder::new();
    let start = || TestProxy::start_with(&yaml, 1, |o| o.stats = Some(given.clone()));
    let (a, b) = (start(), start());
    for (proxy, requests) in [(&a, 2), (&b, 3)] {
        let mut c = Client::http1(proxy.listener("listener")).await?;
        for i in 0..requests {
            assert_eq!(c.get(&format!("/ok/{i}")).await?.status, 200);
        }
    }
    let series = r#"envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="given"}"#;
    let text = given.prometheus.render();
    assert_eq!(prometheus_value(&text, series), Some(5.0), "{text}");
    for proxy in [&a, &b] {
        assert_eq!(admin::stat(proxy.admin(), series).await?, Some(5.0));
    }
    assert_embedder_saw_only_its_own();
    Ok(())
}
