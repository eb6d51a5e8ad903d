//! Router retries against real upstreams: Envoy's `retry_policy`, its
//! request headers, the previous-hosts predicate, the body buffer limit and
//! the retry stats.

#[path = "flaky.rs"]
mod flaky;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flaky::{Mode, closed_port, config, start};
use http::Request;
use http_body_util::Full;
use strait_test_support::{admin, client::Client, proxy::TestProxy};

/// A virtual host whose one route has `retry` as its `retry_policy`.
/// Cluster names are unique per test: stats are process-wide.
fn route_with(cluster: &str, retry: &str) -> String {
    format!(
        "              routes:\n              - match: {{prefix: \"/\"}}\n                route:\n                  cluster: {cluster}\n                  retry_policy: {retry}\n"
    )
}

const NO_FILTERS: &str = "";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_5xx_succeeds_on_another_host() -> anyhow::Result<()> {
    let bad = start("bad", u64::MAX, Mode::Status(503)).await;
    let good = start("good", 0, Mode::Status(200)).await;
    // 9:1 weights make a second pick of the bad host likely; the
    // previous-hosts predicate must avoid it.
    let yaml = config(
        1 << 20,
        NO_FILTERS,
        &route_with(
            "spread",
            "{retry_on: 5xx, num_retries: 1, host_selection_retry_max_attempts: 5, \
             retry_host_predicate: [{name: envoy.retry_host_predicates.previous_hosts, \
             typed_config: {\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}]}",
        ),
        &[("spread", vec![(bad.addr, 9), (good.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for i in 0..20 {
        let r = c.get("/x").await?;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "good");
    }
    assert!(bad.requests() >= 10, "bad host tried {}", bad.requests());
    let retries = admin::stat(
        proxy.admin(),
        "envoy_cluster_upstream_rq_retry{envoy_cluster_name=\"spread\"}",
    )
    .await?;
    assert_eq!(retries, Some(bad.requests() as f64));
    let success = admin::stat(
        proxy.admin(),
        "envoy_cluster_upstream_rq_retry_success{envoy_cluster_name=\"spread\"}",
    )
    .await?;
    assert_eq!(success, Some(bad.requests() as f64));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_count_and_header_overrides() -> anyhow::Result<()> {
    // Fails three times, then answers.
    let up = start("up", 3, Mode::Status(500)).await;
    let yaml = config(
        1 << 20,
        NO_FILTERS,
        &format!(
            "              include_request_attempt_count: true\n{}",
            route_with(
                "counted",
                "{retry_on: 5xx, num_retries: 1, retry_back_off: {base_interval: 0.001s}}"
            )
        ),
        &[("counted", vec![(up.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    // The route allows one retry: two attempts, both fail.
    let r = c.get("/a").await?;
    assert_eq!(r.status, 500);
    assert_eq!(up.requests(), 2);
    let limit = admin::stat(
        proxy.admin(),
        "envoy_cluster_upstream_rq_retry_limit_exceeded{envoy_cluster_name=\"counted\"}",
    )
    .await?;
    assert_eq!(limit, Some(1.0));
    // `x-envoy-max-retries` raises it: the third attempt fails, the fourth
    // would be needed only if it did too.
    let req = Request::get("/b")
        .header("x-envoy-max-retries", "3")
        // Router headers count only from internal clients: without
        // use_remote_address, one internal x-forwarded-for entry.
        .header("x-forwarded-for", "10.0.0.1")
        .body(Full::new(Bytes::new()))?;
    let r = c.send(req).await?;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests(), 4);
    let attempts: Vec<_> = up.seen().iter().map(|s| s.attempt.clone()).collect();
    assert_eq!(
        attempts,
        [Some("1"), Some("2"), Some("1"), Some("2")].map(|a| a.map(str::to_owned))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_retries_and_retriable_status_codes() -> anyhow::Result<()> {
    let up = start("up", 1, Mode::Status(418)).await;
    let yaml = config(
        1 << 20,
        NO_FILTERS,
        &route_with(
            "codes",
            "{retry_on: retriable-status-codes, retriable_status_codes: [418]}",
        ),
        &[("codes", vec![(up.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    assert_eq!(c.get("/").await?.status, 200);
    assert_eq!(up.requests(), 2);

    // No policy: `x-envoy-retry-on` alone asks for one retry.
    let up = start("up", 1, Mode::Status(503)).await;
    let plain = "              routes:\n              - match: {prefix: \"/\"}\n                route: {cluster: codes}\n";
    let proxy = TestProxy::start(
        &config(1 << 20, NO_FILTERS, plain, &[("codes", vec![(up.addr, 1)])]),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let req = Request::get("/")
        .header("x-envoy-retry-on", "5xx")
        // Router headers count only from internal clients: without
        // use_remote_address, one internal x-forwarded-for entry.
        .header("x-forwarded-for", "10.0.0.1")
        .body(Full::new(Bytes::new()))?;
    assert_eq!(c.send(req).await?.status, 200);
    assert_eq!(up.requests(), 2);
    // Without it, no retry (Envoy's default).
    let up2 = start("up", 1, Mode::Status(503)).await;
    let proxy = TestProxy::start(
        &config(
            1 << 20,
            NO_FILTERS,
            plain,
            &[("codes", vec![(up2.addr, 1)])],
        ),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    assert_eq!(c.get("/").await?.status, 503);
    assert_eq!(up2.requests(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_retries_a_slow_attempt() -> anyhow::Result<()> {
    let up = start("up", 1, Mode::Delay(Duration::from_secs(3))).await;
    let yaml = config(
        1 << 20,
        NO_FILTERS,
        &route_with(
            "pertry",
            "{retry_on: 5xx, num_retries: 2, per_try_timeout: 0.2s}",
        ),
        &[("pertry", vec![(up.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let t = Instant::now();
    let r = c.get("/").await?;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(up.requests(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_and_reset_are_retried() -> anyhow::Result<()> {
    let good = start("good", 0, Mode::Status(200)).await;
    let yaml = config(
        1 << 20,
        NO_FILTERS,
        &route_with("connect", "{retry_on: connect-failure, num_retries: 2}"),
        &[("connect", vec![(closed_port(), 1), (good.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    for _ in 0..6 {
        let r = c.get("/").await?;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let resets = start("resets", 1, Mode::Reset).await;
    let yaml = config(
        1 << 20,
        NO_FILTERS,
        &route_with("connect", "{retry_on: reset}"),
        &[("connect", vec![(resets.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    assert_eq!(c.get("/").await?.status, 200);
    assert_eq!(resets.requests(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_replayed_only_within_the_buffer_limit() -> anyhow::Result<()> {
    let up = start("up", 1, Mode::Status(503)).await;
    let yaml = config(
        4096,
        NO_FILTERS,
        &route_with("bodies", "{retry_on: 5xx}"),
        &[("bodies", vec![(up.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let post = |n: usize| {
        Request::post("/upload")
            .body(Full::new(Bytes::from(vec![b'x'; n])))
            .map_err(anyhow::Error::from)
    };
    // Small: kept, and the retry carries the same body.
    let r = c.send(post(1000)?).await?;
    assert_eq!(r.status, 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body_len == 1000), "{seen:?}");

    // Over the limit: not retried.
    let up = start("up", 1, Mode::Status(503)).await;
    let yaml = config(
        4096,
        NO_FILTERS,
        &route_with("bodies", "{retry_on: 5xx}"),
        &[("bodies", vec![(up.addr, 1)])],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let r = c.send(post(100_000)?).await?;
    assert_eq!(r.status, 503);
    assert_eq!(up.requests(), 1);
    Ok(())
}
