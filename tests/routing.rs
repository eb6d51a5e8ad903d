//! Routing behaviour that needs many requests or a reload to show: weighted
//! splits, and bad route configurations refused while the last good one
//! keeps serving.

use std::time::Duration;

use strait_test_support::{
    client::Client,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

fn config(a: &Upstream, b: &Upstream, routes: &str) -> String {
    let routes: String = routes
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
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
          stat_prefix: routing
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: a
    type: STATIC
    load_assignment:
      cluster_name: a
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {pa}}}}}}}}}]}}]
  - name: b
    type: STATIC
    load_assignment:
      cluster_name: b
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {pb}}}}}}}}}]}}]
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        pa = a.addr.port(),
        pb = b.addr.port(),
    )
}

/// Sends `n` requests over 8 keep-alive connections; how many `a` served.
async fn share_of_a(proxy: &TestProxy, n: usize) -> anyhow::Result<f64> {
    let addr = proxy.listener("listener");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::http1(addr).await?;
            let mut a = 0usize;
            for _ in 0..n / 8 {
                let r = c.get("/").await?;
                anyhow::ensure!(r.status == 200, "status {}", r.status);
                a += usize::from(r.header("x-upstream") == Some("a"));
            }
            anyhow::Ok(a)
        }));
    }
    let mut a = 0;
    for t in tasks {
        a += t.await??;
    }
    Ok(a as f64 / (n / 8 * 8) as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_clusters_split_within_three_points() -> anyhow::Result<()> {
    let (a, b) = (http_echo("a"), http_echo("b"));
    for (wa, wb) in [(50, 50), (80, 20), (1, 3)] {
        let routes = format!(
            "- match: {{prefix: \"/\"}}\n  route:\n    weighted_clusters:\n      clusters: [{{name: a, weight: {wa}}}, {{name: b, weight: {wb}}}]\n"
        );
        let proxy = TestProxy::start(&config(&a, &b, &routes), 2);
        let share = share_of_a(&proxy, 10_000).await?;
        let want = f64::from(wa) / f64::from(wa + wb);
        assert!(
            (share - want).abs() <= 0.03,
            "{wa}/{wb}: a served {:.1}% (want {:.1}% ± 3)",
            share * 100.0,
            want * 100.0
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_route_configs_are_refused_with_the_field_and_old_config_serves() -> anyhow::Result<()>
{
    let (a, b) = (http_echo("a"), http_echo("b"));
    let good = "- match: {prefix: \"/\"}\n  route: {cluster: a}\n";
    let proxy = TestProxy::start(&config(&a, &b, good), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let bad: [(&str, &str, &str); 4] = [
        (
            "invalid regex",
            "- match: {safe_regex: {regex: \"/(unclosed\"}}\n  route: {cluster: a}\n",
            "match.safe_regex",
        ),
        (
            "unknown cluster (validate_clusters defaults to true inline)",
            "- match: {prefix: \"/\"}\n  route: {cluster: nowhere}\n",
            "route.cluster",
        ),
        (
            "weights summing to zero",
            "- match: {prefix: \"/\"}\n  route:\n    weighted_clusters:\n      clusters: [{name: a, weight: 0}, {name: b, weight: 0}]\n",
            "weighted_clusters",
        ),
        (
            "a redirect and a cluster on one route",
            "- match: {prefix: \"/\"}\n  route: {cluster: a}\n  redirect: {path_redirect: /x}\n",
            "routes[0]",
        ),
    ];
    for (what, routes, field) in bad {
        let before = proxy.reload_failures();
        proxy.rewrite(&config(&a, &b, routes));
        eventually(what, Duration::from_secs(10), || async {
            (proxy.reload_failures() > before).then_some(())
        })
        .await;
        let err = proxy.last_reload_error().unwrap_or_default();
        assert!(
            err.contains(field),
            "{what}: error does not name {field}: {err}"
        );
        assert_eq!(proxy.version(), 1, "{what} was applied");
        let r = c.get("/still").await?;
        assert_eq!(
            (r.status.as_u16(), r.header("x-upstream")),
            (200, Some("a")),
            "{what}"
        );
    }
    Ok(())
}

/// A route's `max_stream_duration` bounds the whole stream: Envoy answers 408
/// "downstream duration timeout" when it elapses before the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stream_duration_answers_408() -> anyhow::Result<()> {
    let (a, b) = (http_echo("a"), http_echo("b"));
    let routes = "- match: {prefix: \"/\"}\n  route: {cluster: a, max_stream_duration: {max_stream_duration: 0.2s}}\n";
    let proxy = TestProxy::start(&config(&a, &b, routes), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let started = std::time::Instant::now();
    let r = c.get("/delay/2000").await?;
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.text(), "downstream duration timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // A fast request on a fresh connection is unaffected.
    let r = Client::http1(proxy.listener("listener"))
        .await?
        .get("/fast")
        .await?;
    assert_eq!(r.status, 200);
    Ok(())
}

/// The stream idle timeout (route `idle_timeout`, overriding the connection
/// manager's `stream_idle_timeout`): a stream quiet for that long gets 408
/// "stream timeout" before the response head, a reset after it; activity
/// keeps it alive, and `0s` disables it for the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_bounds_quiet_streams() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = (http_echo("a"), http_echo("b"));
    let routes = "\
- match: {prefix: \"/off/\"}
  route: {cluster: a, prefix_rewrite: \"/\", idle_timeout: 0s}
- match: {prefix: \"/\"}
  route: {cluster: a, idle_timeout: 0.3s}
";
    let proxy = TestProxy::start(&config(&a, &b, routes), 1);
    let addr = proxy.listener("listener");
    for h2 in [false, true] {
        let client = || async {
            if h2 {
                Client::http2(addr).await
            } else {
                Client::http1(addr).await
            }
        };
        // Waiting for the response head.
        let started = std::time::Instant::now();
        let r = client().await?.get("/delay/2000").await?;
        assert_eq!(r.status, 408, "h2={h2}");
        assert_eq!(r.text(), "stream timeout", "h2={h2}");
        assert!(started.elapsed() < Duration::from_millis(1500), "h2={h2}");
        // Mid-response: the stream is reset, the body never completes.
        let started = std::time::Instant::now();
        let cut = client().await?.get("/drip/1500").await;
        assert!(cut.is_err(), "h2={h2}: a quiet response body was not reset");
        assert!(started.elapsed() < Duration::from_millis(1200), "h2={h2}");
        // A body that keeps moving within the limit completes.
        let r = client().await?.get("/drip/100").await?;
        assert_eq!(r.status, 200, "h2={h2}");
        assert_eq!(r.text(), "ab", "h2={h2}");
        // `0s` turns it off for the route.
        let r = client().await?.get("/off/delay/600").await?;
        assert_eq!(r.status, 200, "h2={h2}");
    }
    // A request body that stalls half-way.
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"POST /count HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab")
        .await?;
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await??;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    Ok(())
}
