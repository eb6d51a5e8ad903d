//! Upstream behaviour against real upstream servers that are stopped,
//! restarted and made to fail: outlier ejection and return, active health
//! check transitions, panic mode, circuit breaker overflow, connection pool
//! reuse and limits, and a config swap that keeps pools and ejections.

use std::{net::SocketAddr, time::Duration};

use strait_test_support::{
    admin,
    client::Client,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo, http_echo_at},
};

const WAIT: Duration = Duration::from_secs(10);

/// One listener routing everything to cluster `backend`, whose endpoints
/// are `hosts`; `cluster_extra` is spliced into the cluster (4 spaces).
fn config(hosts: &[SocketAddr], cluster_extra: &str, route_prefix: &str) -> String {
    let endpoints: String = hosts
        .iter()
        .map(|a| {
            format!(
                "        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}\n",
                a.ip(),
                a.port()
            )
        })
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
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "{route_prefix}"}}
                route: {{cluster: backend}}
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
{endpoints}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#
    )
}

async fn clusters_text(p: &TestProxy) -> String {
    admin::get(p.admin(), "/clusters")
        .await
        .expect("/clusters")
        .text()
}

/// The `health_flags` line of `host` in `/clusters`.
async fn flags(p: &TestProxy, host: SocketAddr) -> String {
    let text = clusters_text(p).await;
    let key = format!("backend::{host}::health_flags::");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or("")
        .to_owned()
}

/// Sends `n` GETs to `/`, returning how many came from each of `ups`.
async fn spread(client: &mut Client, n: usize, ups: &[&Upstream]) -> Vec<u64> {
    let before: Vec<u64> = ups.iter().map(|u| u.requests()).collect();
    for _ in 0..n {
        let _ = client.get("/").await.expect("request");
    }
    ups.iter()
        .zip(before)
        .map(|(u, b)| u.requests() - b)
        .collect()
}

const OUTLIER: &str = "    outlier_detection:
      consecutive_5xx: 3
      interval: 0.1s
      base_ejection_time: 1s
      max_ejection_percent: 50";

#[tokio::test]
async fn five_xx_ejects_a_host_until_its_ejection_ends() {
    let a = http_echo("a");
    let b = http_echo("b");
    let p = TestProxy::start(&config(&[a.addr, b.addr], OUTLIER, "/"), 1);
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    a.fail_with(503);
    let listener = p.listener("listener");
    eventually("a ejected", WAIT, || async {
        if let Ok(mut c) = Client::http1(listener).await {
            let _ = c.get("/").await;
        }
        flags(&p, a.addr)
            .await
            .contains("/failed_outlier_check")
            .then_some(())
    })
    .await;
    // No request reaches the ejected host while the healthy one remains.
    let got = spread(&mut c, 20, &[&a, &b]).await;
    assert_eq!(got, vec![0, 20], "requests per host while a is ejected");
    let ejected = admin::stat(
        p.admin(),
        r#"envoy_cluster_outlier_detection_ejections_enforced_total{envoy_cluster_name="backend"}"#,
    )
    .await
    .expect("stats");
    assert!(ejected >= Some(1.0), "ejections counted: {ejected:?}");
    // It comes back after base_ejection_time and takes traffic again.
    a.fail_with(0);
    eventually("a back", WAIT, || async {
        (flags(&p, a.addr).await == "healthy").then_some(())
    })
    .await;
    let got = spread(&mut c, 20, &[&a, &b]).await;
    assert!(got[0] >= 5, "a takes traffic again: {got:?}");
}

const HEALTH_CHECK: &str = "    health_checks:
    - timeout: 1s
      interval: 0.1s
      unhealthy_threshold: 2
      healthy_threshold: 2
      http_health_check: {path: /healthz}";

#[tokio::test]
async fn health_checks_take_a_host_out_and_back() {
    let a = http_echo("a");
    let b = http_echo("b");
    let p = TestProxy::start(&config(&[a.addr, b.addr], HEALTH_CHECK, "/"), 1);
    assert_eq!(flags(&p, a.addr).await, "healthy", "first round passed");
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    a.fail_with(500);
    eventually("a fails its checks", WAIT, || async {
        (flags(&p, a.addr).await == "/failed_active_hc").then_some(())
    })
    .await;
    let before = a.paths().iter().filter(|p| *p == "/").count();
    let got = spread(&mut c, 20, &[&a, &b]).await;
    assert_eq!(got[1], 20, "all requests to b: {got:?}");
    assert_eq!(a.paths().iter().filter(|p| *p == "/").count(), before);
    let json = admin::get(p.admin(), "/clusters?format=json")
        .await
        .expect("json")
        .json();
    let hosts = &json["cluster_statuses"][0]["host_statuses"];
    let failed = hosts
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["address"]["socket_address"]["port_value"] == a.addr.port())
        .expect("host a");
    assert_eq!(failed["health_status"]["failed_active_health_check"], true);
    a.fail_with(0);
    eventually("a passes again", WAIT, || async {
        (flags(&p, a.addr).await == "healthy").then_some(())
    })
    .await;
}

#[tokio::test]
async fn panic_mode_sends_to_unhealthy_hosts_when_too_few_are_healthy() {
    let a = http_echo("a");
    let b = http_echo("b");
    let p = TestProxy::start(&config(&[a.addr, b.addr], HEALTH_CHECK, "/"), 1);
    a.fail_with(500);
    b.fail_with(500);
    eventually("both unhealthy", WAIT, || async {
        (flags(&p, a.addr).await == "/failed_active_hc"
            && flags(&p, b.addr).await == "/failed_active_hc")
            .then_some(())
    })
    .await;
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    // 0% healthy is under the 50% panic threshold: Envoy routes to every
    // host rather than answering "no healthy upstream".
    let r = c.get("/").await.expect("request");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text(), "failing");
}

#[tokio::test]
async fn breaker_overflow_answers_503_uo() {
    let a = http_echo("a");
    let extra = "    circuit_breakers:
      thresholds:
      - max_requests: 1";
    let p = TestProxy::start(&config(&[a.addr], extra, "/"), 1);
    let addr = p.listener("listener");
    let slow = tokio::spawn(async move {
        let mut c = Client::http1(addr).await.expect("client");
        c.get("/delay/1000").await.expect("slow request")
    });
    eventually("slow request in flight", WAIT, || async {
        (a.requests() == 1).then_some(())
    })
    .await;
    let mut c = Client::http1(addr).await.expect("client");
    let r = c.get("/").await.expect("request");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.text(),
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
    assert_eq!(slow.await.expect("join").status, 200);
    let overflow = admin::stat(
        p.admin(),
        r#"envoy_cluster_upstream_rq_pending_overflow{envoy_cluster_name="backend"}"#,
    )
    .await
    .expect("stats");
    assert_eq!(overflow, Some(1.0));
    // The slot is free again once the slow response ended.
    assert_eq!(c.get("/").await.expect("request").status, 200);
}

#[tokio::test]
async fn pooled_connections_are_reused_and_survive_a_config_swap() {
    let a = http_echo("a");
    let p = TestProxy::start(&config(&[a.addr], OUTLIER, "/"), 1);
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    for _ in 0..20 {
        assert_eq!(c.get("/").await.expect("request").status, 200);
    }
    assert_eq!(a.connections(), 1, "one pooled upstream connection");
    // A new config that changes a route but keeps the cluster.
    let v = p.version();
    p.rewrite(&config(&[a.addr], OUTLIER, "/x"));
    eventually("reload", WAIT, || async { (p.version() > v).then_some(()) }).await;
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.expect("request").status, 200);
    }
    assert_eq!(a.connections(), 1, "the pool outlived the swap");
}

#[tokio::test]
async fn a_config_swap_keeps_ejections() {
    let a = http_echo("a");
    let b = http_echo("b");
    let slow_return = OUTLIER.replace("base_ejection_time: 1s", "base_ejection_time: 30s");
    let p = TestProxy::start(&config(&[a.addr, b.addr], &slow_return, "/"), 1);
    a.fail_with(503);
    let listener = p.listener("listener");
    eventually("a ejected", WAIT, || async {
        if let Ok(mut c) = Client::http1(listener).await {
            let _ = c.get("/").await;
        }
        flags(&p, a.addr)
            .await
            .contains("/failed_outlier_check")
            .then_some(())
    })
    .await;
    a.fail_with(0);
    let v = p.version();
    p.rewrite(&config(&[a.addr, b.addr], &slow_return, "/x"));
    eventually("reload", WAIT, || async { (p.version() > v).then_some(()) }).await;
    assert!(flags(&p, a.addr).await.contains("/failed_outlier_check"));
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    let got = spread_path(&mut c, "/x", 10, &[&a, &b]).await;
    assert_eq!(got, vec![0, 10]);
}

async fn spread_path(client: &mut Client, path: &str, n: usize, ups: &[&Upstream]) -> Vec<u64> {
    let before: Vec<u64> = ups.iter().map(|u| u.requests()).collect();
    for _ in 0..n {
        let _ = client.get(path).await.expect("request");
    }
    ups.iter()
        .zip(before)
        .map(|(u, b)| u.requests() - b)
        .collect()
}

#[tokio::test]
async fn max_requests_per_connection_opens_new_connections() {
    let a = http_echo("a");
    let extra = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {max_requests_per_connection: 2}
        explicit_http_config: {http_protocol_options: {}}";
    let p = TestProxy::start(&config(&[a.addr], extra, "/"), 1);
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    for _ in 0..6 {
        assert_eq!(c.get("/").await.expect("request").status, 200);
    }
    assert_eq!(a.connections(), 3);
}

#[tokio::test]
async fn a_restarted_upstream_is_used_again() {
    let a = http_echo("a");
    let addr = a.addr;
    let p = TestProxy::start(&config(&[addr], "", "/"), 1);
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    assert_eq!(c.get("/").await.expect("request").status, 200);
    drop(a);
    let r = c.get("/").await.expect("request");
    assert_eq!(r.status, 503, "{}", r.text());
    let a = http_echo_at("a", addr);
    let listener = p.listener("listener");
    eventually("restarted upstream answers", WAIT, || async {
        let mut c = Client::http1(listener).await.ok()?;
        (c.get("/").await.ok()?.status == 200).then_some(())
    })
    .await;
    assert!(a.requests() >= 1);
}

/// `LOGICAL_DNS`: one endpoint name, resolved by the system resolver; only
/// its first address (of the chosen family) becomes the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_dns_uses_the_first_address_of_the_name() {
    let up = http_echo("dns");
    let yaml = config(&[up.addr], "", "/")
        .replace(
            "type: STATIC",
            "type: LOGICAL_DNS\n    dns_lookup_family: V4_ONLY\n    dns_refresh_rate: 0.2s",
        )
        .replace(
            &format!("address: 127.0.0.1, port_value: {}", up.addr.port()),
            &format!("address: localhost, port_value: {}", up.addr.port()),
        );
    let p = TestProxy::start(&yaml, 1);
    let mut c = Client::http1(p.listener("listener")).await.expect("client");
    let r = c.get("/").await.expect("request");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("dns"));
    let text = clusters_text(&p).await;
    let hosts: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("backend::") && l.contains("::cx_total::"))
        .filter_map(|l| l.split("::").nth(1))
        .collect();
    assert_eq!(hosts.len(), 1, "{text}");
    assert!(
        hosts.contains(format!("127.0.0.1:{}", up.addr.port()).as_str()),
        "{text}"
    );
    // Re-resolution keeps the same host (and its pooled connection).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c.get("/").await.expect("request after refresh");
    assert_eq!(r.status, 200);
    assert_eq!(up.connections(), 1);
}

/// HTTP/2 upstream pooling: streams share one connection until
/// `max_concurrent_streams` are open on it; then another connection opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_opens_another_connection_when_streams_are_exhausted() {
    let up = http_echo("h2");
    let extra = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 2}}"#;
    let p = TestProxy::start(&config(&[up.addr], extra, "/"), 1);
    let addr = p.listener("listener");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::http1(addr).await?;
            c.get("/delay/400").await
        }));
    }
    for t in tasks {
        let r = t.await.expect("task").expect("request");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream"), Some("h2"));
    }
    assert_eq!(
        up.connections(),
        3,
        "6 concurrent streams, 2 per connection"
    );
    // Later requests multiplex onto the open connections.
    let mut c = Client::http1(addr).await.expect("client");
    for _ in 0..5 {
        assert_eq!(c.get("/").await.expect("request").status, 200);
    }
    assert_eq!(up.connections(), 3);
}

/// TCP health checks (`send`, then every `receive` block in the reply) and
/// gRPC ones (`grpc.health.v1.Health/Check` over HTTP/2), reflected in
/// `/clusters`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_grpc_health_checks() {
    // TCP: an echo server passes `ping`/`ping`; a closed port fails.
    let echo = strait_test_support::upstream::tcp_echo();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let tcp = r#"    health_checks:
    - timeout: 1s
      interval: 0.1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      tcp_health_check: {send: {text: "70696e67"}, receive: [{text: "70696e67"}]}"#;
    let p = TestProxy::start(&config(&[echo.addr, dead], tcp, "/"), 1);
    eventually("TCP checks settle", WAIT, || async {
        (flags(&p, echo.addr).await == "healthy" && flags(&p, dead).await == "/failed_active_hc")
            .then_some(())
    })
    .await;
    drop(p);

    // gRPC: SERVING passes; an HTTP error fails; recovery returns.
    let a = http_echo("a");
    let grpc = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    health_checks:
    - timeout: 1s
      interval: 0.1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      grpc_health_check: {}"#;
    let p = TestProxy::start(&config(&[a.addr], grpc, "/"), 1);
    assert_eq!(flags(&p, a.addr).await, "healthy");
    a.fail_with(503);
    eventually("a fails gRPC checks", WAIT, || async {
        (flags(&p, a.addr).await == "/failed_active_hc").then_some(())
    })
    .await;
    a.fail_with(0);
    eventually("a passes again", WAIT, || async {
        (flags(&p, a.addr).await == "healthy").then_some(())
    })
    .await;
}

/// `RING_HASH` and `MAGLEV` consume the route's `hash_policy`: one header
/// value always reaches the same host, and different values spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_policy_pins_keys_to_hosts() {
    let ups: Vec<Upstream> = (0..3).map(|i| http_echo(&format!("u{i}"))).collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    for lb in ["RING_HASH", "MAGLEV"] {
        let yaml = config(&addrs, &format!("    lb_policy: {lb}"), "/").replace(
            "route: {cluster: backend}",
            "route: {cluster: backend, hash_policy: [{header: {header_name: x-user}}]}",
        );
        let p = TestProxy::start(&yaml, 1);
        let mut c = Client::http1(p.listener("listener")).await.expect("client");
        let mut seen = std::collections::BTreeSet::new();
        for user in 0..30 {
            let mut first = None;
            for _ in 0..5 {
                let r = c
                    .send(
                        http::Request::get("/")
                            .header("x-user", format!("user-{user}"))
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .expect("request"),
                    )
                    .await
                    .expect("send");
                let host = r.header("x-upstream").unwrap_or("").to_owned();
                assert_eq!(
                    *first.get_or_insert_with(|| host.clone()),
                    host,
                    "{lb} user-{user}"
                );
            }
            seen.insert(first.unwrap_or_default());
        }
        assert_eq!(seen.len(), 3, "{lb}: 30 keys over 3 hosts reached {seen:?}");
    }
}
