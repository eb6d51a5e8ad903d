//! Istio's standard metrics and the HTTP peer metadata exchange, end to
//! end: a client's requests go through an outbound Strait (the client
//! sidecar) and an inbound Strait (the server sidecar) to an echo server.
//! Each proxy has the node metadata of a real Istio bootstrap
//! (`tests/fixtures/istio/bootstrap/running_golden.json`; the server's a
//! copy with its own workload) and the stats and exchange filters exactly
//! as istiod rendered them in `sidecar_app1_istio-1.22.3.json`. The real
//! Envoy cannot be the oracle (it lacks Istio's filters), so the labels
//! asserted are the values Istio documents.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::{Value, json};
use strait_test_support::{
    client::Client,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

const BOOTSTRAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/istio/bootstrap/running_golden.json"
);
const DUMP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/istio/configdumps/sidecar_app1_istio-1.22.3.json"
);

/// The client's node metadata, as pilot-agent wrote it.
fn client_metadata() -> Value {
    let text = std::fs::read_to_string(BOOTSTRAP).expect("bootstrap");
    let b: Value = serde_json::from_str(&text).expect("json");
    let mut m = b["node"]["metadata"].clone();
    // What pilot-agent adds on Kubernetes besides the golden file's.
    m["WORKLOAD_NAME"] = json!("svc-0-0-0");
    m["CLUSTER_ID"] = json!("Kubernetes");
    m["LABELS"]["service.istio.io/canonical-name"] = json!("svc-0-0-0");
    m["LABELS"]["service.istio.io/canonical-revision"] = json!("v1alpha1");
    m
}

/// The server's: the same bootstrap, another workload.
fn server_metadata() -> Value {
    let mut m = client_metadata();
    m["NAME"] = json!("reviews-v2-5b64f47d8b-x7kqz");
    m["NAMESPACE"] = json!("bookinfo");
    m["WORKLOAD_NAME"] = json!("reviews-v2");
    m["CLUSTER_ID"] = json!("cluster-east");
    m["LABELS"] = json!({"app": "reviews", "version": "v2",
        "service.istio.io/canonical-name": "reviews",
        "service.istio.io/canonical-revision": "v2"});
    m
}

/// The HTTP filters istiod rendered for `direction` ("outbound" or
/// "inbound") in the dump: the exchange and stats configs, as JSON.
fn dump_filters(inbound: bool) -> (Value, Value) {
    let text = std::fs::read_to_string(DUMP).expect("dump");
    let d: Value = serde_json::from_str(&text).expect("json");
    let mut found = (Value::Null, Value::Null);
    let listeners = d["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .flat_map(|c| {
            c["dynamic_listeners"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        });
    for l in listeners {
        let l = &l["active_state"]["listener"];
        let is_inbound = l["name"] == "virtualInbound";
        if is_inbound != inbound {
            continue;
        }
        for chain in l["filter_chains"].as_array().cloned().unwrap_or_default() {
            for f in chain["filters"].as_array().cloned().unwrap_or_default() {
                for h in f["typed_config"]["http_filters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let tc = &h["typed_config"];
                    if h["name"] == "istio.metadata_exchange" && found.0.is_null() {
                        found.0 = tc["value"].clone();
                    }
                    if h["name"] == "istio.stats" && found.1.is_null() {
                        // Direct `stats.PluginConfig`, served as the dump has it.
                        found.1 = tc.clone();
                    }
                }
            }
        }
        if !found.0.is_null() && !found.1.is_null() {
            return found;
        }
    }
    panic!("no istio filters for inbound={inbound} in the dump");
}

/// A `TypedStruct` for `type_url` with `value`, as YAML flow (JSON).
fn typed_struct(type_url: &str, value: &Value) -> String {
    json!({"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
           "type_url": format!("type.googleapis.com/{type_url}"), "value": value})
    .to_string()
}

/// One sidecar: a listener with `direction`, Istio's exchange and stats
/// filters, routing to cluster `cluster` at `upstream`.
fn sidecar(metadata: &Value, inbound: bool, cluster: &str, upstream: SocketAddr) -> String {
    let (mx, stats) = dump_filters(inbound);
    let direction = if inbound { "INBOUND" } else { "OUTBOUND" };
    format!(
        r#"
node:
  id: sidecar~10.0.0.1~{name}.{ns}~{ns}.svc.cluster.local
  cluster: test.test
  metadata: {metadata}
static_resources:
  listeners:
  - name: listener
    traffic_direction: {direction}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {direction}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: "{cluster}"}}
          http_filters:
          - name: istio.metadata_exchange
            typed_config: {mx}
          - name: istio.stats
            typed_config: {stats}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: "{cluster}"
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: "{cluster}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        name = metadata["NAME"].as_str().expect("name"),
        ns = metadata["NAMESPACE"].as_str().expect("namespace"),
        metadata = metadata,
        mx = typed_struct("io.istio.http.peer_metadata.Config", &mx),
        stats = stats,
        ip = upstream.ip(),
        port = upstream.port(),
    )
}

/// The `name{labels}` lines of a proxy's Prometheus page, with values.
fn prometheus(admin: SocketAddr, name: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let mut s = TcpStream::connect(admin).expect("admin");
    s.write_all(b"GET /stats/prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = labels
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.to_owned()))
        })
        .collect()
}

struct Mesh {
    _echo: Upstream,
    client: TestProxy,
    server: TestProxy,
}

fn mesh() -> Mesh {
    let echo = http_echo("reviews");
    let server = TestProxy::start(
        &sidecar(&server_metadata(), true, "inbound|9080||", echo.addr),
        1,
    );
    let client = TestProxy::start(
        &sidecar(
            &client_metadata(),
            false,
            "outbound|9080||reviews.bookinfo.svc.cluster.local",
            server.listener("listener"),
        ),
        1,
    );
    Mesh {
        _echo: echo,
        client,
        server,
    }
}

fn assert_labels(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(
            labels.get(*k).map(String::as_str),
            Some(*v),
            "label {k} in {labels:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_label_each_others_requests() -> anyhow::Result<()> {
    let m = mesh();
    let mut c = Client::http1(m.client.listener("listener")).await?;
    for _ in 0..3 {
        let r = c.get("/reviews/1").await?;
        assert_eq!(r.status, 200);
        // The exchange headers never reach the application, nor the client.
        let echoed = r.json();
        let seen: Vec<String> = echoed["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter_map(|h| h[0].as_str().map(str::to_owned))
            .collect();
        assert!(
            !seen.iter().any(|h| h.starts_with("x-envoy-peer-metadata")),
            "{seen:?}"
        );
        assert!(r.header("x-envoy-peer-metadata").is_none());
        assert!(r.header("x-envoy-peer-metadata-id").is_none());
    }
    let common = [
        ("source_workload", "svc-0-0-0"),
        ("source_workload_namespace", "test"),
        ("source_app", "test"),
        ("source_version", "v1alpha1"),
        ("source_canonical_service", "svc-0-0-0"),
        ("source_canonical_revision", "v1alpha1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v2"),
        ("destination_workload_namespace", "bookinfo"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v2"),
        ("destination_cluster", "cluster-east"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("response_flags", "-"),
        ("grpc_response_status", ""),
    ];
    // The client sidecar: `reporter="source"`, the destination from the
    // server's exchanged metadata and the cluster name.
    let client = eventually("client metrics", Duration::from_secs(5), || async {
        let lines = prometheus(m.client.admin(), "istio_requests_total");
        (lines.len() == 1 && lines[0].1 == "3").then_some(lines)
    })
    .await;
    assert_labels(&client[0].0, &common);
    assert_labels(
        &client[0].0,
        &[
            ("reporter", "source"),
            ("destination_service", "reviews.bookinfo.svc.cluster.local"),
            ("destination_service_name", "reviews"),
            ("destination_service_namespace", "bookinfo"),
            ("connection_security_policy", "unknown"),
        ],
    );
    // The server sidecar: `reporter="destination"`, the source from the
    // client's exchanged metadata; no host fallback (istiod's inbound
    // config), so the service is the canonical name.
    let server = eventually("server metrics", Duration::from_secs(5), || async {
        let lines = prometheus(m.server.admin(), "istio_requests_total");
        (lines.len() == 1 && lines[0].1 == "3").then_some(lines)
    })
    .await;
    assert_labels(&server[0].0, &common);
    assert_labels(
        &server[0].0,
        &[
            ("reporter", "destination"),
            ("destination_service", "reviews"),
            ("destination_service_name", "reviews"),
            ("destination_service_namespace", "bookinfo"),
            ("source_principal", "unknown"),
            ("connection_security_policy", "none"),
        ],
    );
    // The histograms, with Istio's (Envoy's default) buckets.
    for (proxy, reporter) in [(&m.client, "source"), (&m.server, "destination")] {
        for h in [
            "istio_request_duration_milliseconds_bucket",
            "istio_request_bytes_bucket",
            "istio_response_bytes_bucket",
        ] {
            let lines = prometheus(proxy.admin(), h);
            let les: Vec<&str> = lines
                .iter()
                .filter(|(l, _)| l.get("reporter").map(String::as_str) == Some(reporter))
                .filter_map(|(l, _)| l.get("le").map(String::as_str))
                .collect();
            for le in [
                "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "3600000", "+Inf",
            ] {
                assert!(les.contains(&le), "{h} bucket {le}: {les:?}");
            }
            let inf = lines
                .iter()
                .find(|(l, _)| l.get("le").map(String::as_str) == Some("+Inf"))
                .expect("+Inf");
            assert_eq!(inf.1, "3", "{h}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_are_counted_with_their_code_and_flags() -> anyhow::Result<()> {
    // The server sidecar's upstream is gone: the client sees 503 UF from
    // the server sidecar, whose response still carries its metadata.
    let echo = http_echo("gone");
    let dead = echo.addr;
    drop(echo);
    let server = TestProxy::start(
        &sidecar(&server_metadata(), true, "inbound|9080||", dead),
        1,
    );
    let client = TestProxy::start(
        &sidecar(
            &client_metadata(),
            false,
            "outbound|9080||reviews.bookinfo.svc.cluster.local",
            server.listener("listener"),
        ),
        1,
    );
    let mut c = Client::http1(client.listener("listener")).await?;
    let r = c.get("/").await?;
    assert_eq!(r.status, 503);
    let server_lines = eventually("server metrics", Duration::from_secs(5), || async {
        let lines = prometheus(server.admin(), "istio_requests_total");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_labels(
        &server_lines[0].0,
        &[
            ("reporter", "destination"),
            ("response_code", "503"),
            ("response_flags", "UF"),
            ("source_workload", "svc-0-0-0"),
        ],
    );
    let client_lines = eventually("client metrics", Duration::from_secs(5), || async {
        let lines = prometheus(client.admin(), "istio_requests_total");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_labels(
        &client_lines[0].0,
        &[
            ("reporter", "source"),
            ("response_code", "503"),
            // The upstream (the server sidecar) answered: no local flag.
            ("response_flags", "-"),
            ("destination_workload", "reviews-v2"),
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_peer_the_peer_side_is_unknown() -> anyhow::Result<()> {
    // A client straight to the server sidecar (no client sidecar): no
    // exchange headers, so the source is unknown, and none are answered.
    let echo = http_echo("reviews");
    let server = TestProxy::start(
        &sidecar(&server_metadata(), true, "inbound|9080||", echo.addr),
        1,
    );
    let mut c = Client::http1(server.listener("listener")).await?;
    let r = c.get("/").await?;
    assert_eq!(r.status, 200);
    assert!(r.header("x-envoy-peer-metadata").is_none());
    let lines = eventually("server metrics", Duration::from_secs(5), || async {
        let lines = prometheus(server.admin(), "istio_requests_total");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_labels(
        &lines[0].0,
        &[
            ("reporter", "destination"),
            ("source_workload", "unknown"),
            ("source_app", "unknown"),
            ("source_canonical_revision", "latest"),
            ("destination_workload", "reviews-v2"),
        ],
    );
    Ok(())
}

// --- TCP: `istio.stats` as a network filter --------------------------------

const CLIENT_SA: &str = "spiffe://cluster.local/ns/test/sa/svc-0-0-0";
const SERVER_SA: &str = "spiffe://cluster.local/ns/bookinfo/sa/reviews";

/// The network `istio.stats` config istiod rendered for a TCP chain of the
/// inbound (`virtualInbound`) or an outbound listener: its fields beside
/// `@type` (sent in a `TypedStruct`: the YAML loader has no descriptor of
/// Istio's message).
fn dump_network_stats(inbound: bool) -> Value {
    let text = std::fs::read_to_string(DUMP).expect("dump");
    let d: Value = serde_json::from_str(&text).expect("json");
    for c in d["configs"].as_array().expect("configs") {
        for l in c["dynamic_listeners"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let l = &l["active_state"]["listener"];
            if (l["traffic_direction"] == "INBOUND") != inbound {
                continue;
            }
            for chain in l["filter_chains"].as_array().cloned().unwrap_or_default() {
                for f in chain["filters"].as_array().cloned().unwrap_or_default() {
                    if f["name"] == "istio.stats" {
                        let mut v = f["typed_config"].clone();
                        v.as_object_mut().expect("object").remove("@type");
                        return v;
                    }
                }
            }
        }
    }
    panic!("no network istio.stats for inbound={inbound} in the dump");
}

/// A TCP sidecar: `transport` (a TLS block at 6 spaces, or empty) on the
/// listener, the dump's network `istio.stats`, a TCP proxy to `cluster` at
/// `upstream` with `upstream_tls` (a TLS block at 4 spaces, or empty).
fn tcp_sidecar(
    metadata: &Value,
    inbound: bool,
    transport: &str,
    cluster: &str,
    upstream: SocketAddr,
    upstream_tls: &str,
) -> String {
    tcp_sidecar_with(
        metadata,
        inbound,
        &dump_network_stats(inbound),
        false,
        transport,
        cluster,
        upstream,
        upstream_tls,
    )
}

/// The TCP metadata exchange config istiod rendered (the network filter of
/// the inbound TCP chains and the cluster filter of the outbound clusters
/// are the same), as the `typed_config` JSON.
fn dump_tcp_exchange() -> Value {
    let text = std::fs::read_to_string(DUMP).expect("dump");
    let d: Value = serde_json::from_str(&text).expect("json");
    for c in d["configs"].as_array().expect("configs") {
        for cl in c["dynamic_active_clusters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            for f in cl["cluster"]["filters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                if f["name"] == "istio.metadata_exchange" {
                    return f["typed_config"].clone();
                }
            }
        }
    }
    panic!("no cluster istio.metadata_exchange in the dump");
}

/// [`tcp_sidecar`] with the stats config `stats`, and with `mx` Istio's
/// TCP metadata exchange as istiod renders it: a network filter before
/// `istio.stats` inbound, a filter of the cluster outbound.
#[allow(clippy::too_many_arguments)]
fn tcp_sidecar_with(
    metadata: &Value,
    inbound: bool,
    stats: &Value,
    mx: bool,
    transport: &str,
    cluster: &str,
    upstream: SocketAddr,
    upstream_tls: &str,
) -> String {
    let direction = if inbound { "INBOUND" } else { "OUTBOUND" };
    let (network_mx, cluster_mx) = match (mx, inbound) {
        (false, _) => (String::new(), String::new()),
        (true, true) => (
            format!(
                "      - name: istio.metadata_exchange\n        typed_config: {}\n",
                dump_tcp_exchange()
            ),
            String::new(),
        ),
        (true, false) => (
            String::new(),
            format!(
                "    filters:\n    - name: istio.metadata_exchange\n      typed_config: {}\n",
                dump_tcp_exchange()
            ),
        ),
    };
    format!(
        r#"
node:
  id: sidecar~10.0.0.1~{name}.{ns}~{ns}.svc.cluster.local
  cluster: test.test
  metadata: {metadata}
static_resources:
  listeners:
  - name: listener
    traffic_direction: {direction}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
{network_mx}      - name: istio.stats
        typed_config: {stats}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: "{cluster}"
          cluster: "{cluster}"
{transport}
  clusters:
  - name: "{cluster}"
    type: STATIC
    connect_timeout: 1s
{upstream_tls}
{cluster_mx}    load_assignment:
      cluster_name: "{cluster}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        name = metadata["NAME"].as_str().expect("name"),
        ns = metadata["NAMESPACE"].as_str().expect("namespace"),
        stats = typed_struct("stats.PluginConfig", stats),
        ip = upstream.ip(),
        port = upstream.port(),
    )
}

/// Sends `payload` through `addr`, half-closes, reads to the end.
fn tcp_round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // A refused connection may be reset under the writer: what came back
    // is what is asserted.
    let _ = s.write_all(payload);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    back
}

/// The value of `name` with `reporter`, once there is one.
async fn tcp_metric(admin: SocketAddr, name: &str, want: &str) -> BTreeMap<String, String> {
    eventually(name, Duration::from_secs(5), || async {
        let lines = prometheus(admin, name);
        lines
            .into_iter()
            .find(|(_, v)| v == want)
            .map(|(labels, _)| labels)
    })
    .await
}

/// A client sidecar and a server sidecar over Istio's mTLS, in front of a
/// TCP echo, each with or without the TCP metadata exchange as istiod
/// renders it (both offer `istio-peer-exchange` in their ALPN lists, as
/// istiod writes them; a side without the exchange removes it).
fn tcp_mesh(client_mx: bool, server_mx: bool) -> (TestProxy, TestProxy, impl Sized) {
    use strait_test_support::{
        certs::{TestCa, downstream_tls, upstream_tls},
        upstream::tcp_echo,
    };
    let ca = TestCa::new("istio-tcp");
    let client_cert = ca.issue_workload(CLIENT_SA);
    let server_cert = ca.issue_workload(SERVER_SA);
    let echo = tcp_echo();
    // The server sidecar: Istio's inbound TCP chain ALPN, client
    // certificates required.
    let server = TestProxy::start(
        &tcp_sidecar_with(
            &server_metadata(),
            true,
            &dump_network_stats(true),
            server_mx,
            &downstream_tls(
                6,
                &server_cert,
                Some(ca.root()),
                CLIENT_SA,
                &["istio-peer-exchange", "h2", "http/1.1"],
            ),
            "inbound|9000||",
            echo.addr,
            "",
        ),
        1,
    );
    // The client sidecar: Istio's outbound TCP cluster.
    let client = TestProxy::start(
        &tcp_sidecar_with(
            &client_metadata(),
            false,
            &dump_network_stats(false),
            client_mx,
            "",
            "outbound|9000||tcp-echo.bookinfo.svc.cluster.local",
            server.listener("listener"),
            &upstream_tls(
                4,
                &client_cert,
                ca.root(),
                SERVER_SA,
                "outbound_.9000_._.tcp-echo.bookinfo.svc.cluster.local",
                &["istio-peer-exchange", "istio"],
            ),
        ),
        1,
    );
    (client, server, (echo, ca))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_through_two_sidecars_over_mtls_counts_connections_and_bytes() -> anyhow::Result<()> {
    // The exchange on both sides: each learns the other's workload.
    let (client, server, _keep) = tcp_mesh(true, true);
    let payload = vec![b'x'; 1000];
    let back = tcp_round_trip(client.listener("listener"), &payload);
    // The echo, then its count.
    assert_eq!(back.len(), 1000 + "\n1000".len());
    let sent = back.len().to_string();

    // The client sidecar, right after the close: one connection opened
    // and closed, the bytes both ways.
    let opened = tcp_metric(client.admin(), "istio_tcp_connections_opened_total", "1").await;
    assert_labels(
        &opened,
        &[
            ("reporter", "source"),
            ("source_workload", "svc-0-0-0"),
            ("source_workload_namespace", "test"),
            ("source_app", "test"),
            ("source_canonical_service", "svc-0-0-0"),
            ("source_cluster", "Kubernetes"),
            ("destination_principal", SERVER_SA),
            // From the server's exchanged metadata.
            ("destination_workload", "reviews-v2"),
            ("destination_app", "reviews"),
            ("destination_version", "v2"),
            ("destination_canonical_service", "reviews"),
            ("destination_canonical_revision", "v2"),
            ("destination_cluster", "cluster-east"),
            ("destination_workload_namespace", "bookinfo"),
            ("destination_service", "tcp-echo.bookinfo.svc.cluster.local"),
            ("destination_service_name", "tcp-echo"),
            ("destination_service_namespace", "bookinfo"),
            ("request_protocol", "tcp"),
            ("response_flags", "-"),
            ("connection_security_policy", "unknown"),
        ],
    );
    assert!(!opened.contains_key("response_code"), "{opened:?}");
    assert!(!opened.contains_key("grpc_response_status"), "{opened:?}");
    let closed = tcp_metric(client.admin(), "istio_tcp_connections_closed_total", "1").await;
    assert_eq!(closed, opened);
    let rx = tcp_metric(client.admin(), "istio_tcp_received_bytes_total", "1000").await;
    assert_eq!(rx, opened);
    let tx = tcp_metric(client.admin(), "istio_tcp_sent_bytes_total", &sent).await;
    assert_eq!(tx, opened);

    // The server sidecar: `reporter="destination"`, both principals from
    // the mutual-TLS connection.
    let opened = tcp_metric(server.admin(), "istio_tcp_connections_opened_total", "1").await;
    assert_labels(
        &opened,
        &[
            ("reporter", "destination"),
            ("source_principal", CLIENT_SA),
            // From the client's exchanged metadata.
            ("source_workload", "svc-0-0-0"),
            ("source_app", "test"),
            ("source_canonical_service", "svc-0-0-0"),
            ("source_canonical_revision", "v1alpha1"),
            ("source_cluster", "Kubernetes"),
            ("source_workload_namespace", "test"),
            ("destination_principal", SERVER_SA),
            ("destination_workload", "reviews-v2"),
            ("destination_workload_namespace", "bookinfo"),
            ("destination_app", "reviews"),
            ("destination_version", "v2"),
            ("destination_service", "reviews"),
            ("destination_service_name", "reviews"),
            ("destination_canonical_service", "reviews"),
            ("destination_cluster", "cluster-east"),
            ("request_protocol", "tcp"),
            ("response_flags", "-"),
            ("connection_security_policy", "mutual_tls"),
        ],
    );
    let closed = tcp_metric(server.admin(), "istio_tcp_connections_closed_total", "1").await;
    assert_eq!(closed, opened);
    let rx = tcp_metric(server.admin(), "istio_tcp_received_bytes_total", "1000").await;
    assert_eq!(rx, opened);
    let tx = tcp_metric(server.admin(), "istio_tcp_sent_bytes_total", &sent).await;
    assert_eq!(tx, opened);
    Ok(())
}

/// The exchange on one side only: the other side does not negotiate
/// `istio-peer-exchange`, so no preamble is sent either way; the bytes
/// pass intact and the peer's workload labels stay `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_tcp_exchange_still_works_unlabelled() -> anyhow::Result<()> {
    for (client_mx, server_mx) in [(true, false), (false, true)] {
        let (client, server, _keep) = tcp_mesh(client_mx, server_mx);
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let back = tcp_round_trip(client.listener("listener"), &payload);
        let mut want = payload.clone();
        want.extend_from_slice(b"\n5000");
        assert!(
            back == want,
            "client_mx={client_mx} server_mx={server_mx}: bytes changed"
        );
        let opened = tcp_metric(client.admin(), "istio_tcp_connections_opened_total", "1").await;
        assert_labels(
            &opened,
            &[
                ("source_workload", "svc-0-0-0"),
                ("destination_principal", SERVER_SA),
                ("destination_workload", "unknown"),
                ("destination_app", "unknown"),
                ("destination_cluster", "unknown"),
            ],
        );
        let opened = tcp_metric(server.admin(), "istio_tcp_connections_opened_total", "1").await;
        assert_labels(
            &opened,
            &[
                ("destination_workload", "reviews-v2"),
                ("source_principal", CLIENT_SA),
                ("source_workload", "unknown"),
                ("source_app", "unknown"),
                ("source_cluster", "unknown"),
            ],
        );
        tcp_metric(server.admin(), "istio_tcp_received_bytes_total", "5000").await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connect_failures_are_counted_with_their_flags() -> anyhow::Result<()> {
    use strait_test_support::upstream::tcp_echo;
    let echo = tcp_echo();
    let dead = echo.addr;
    drop(echo);
    let client = TestProxy::start(
        &tcp_sidecar(
            &client_metadata(),
            false,
            "",
            "outbound|9000||tcp-echo.bookinfo.svc.cluster.local",
            dead,
            "",
        ),
        1,
    );
    let back = tcp_round_trip(client.listener("listener"), b"hello");
    assert!(back.is_empty());
    let opened = tcp_metric(client.admin(), "istio_tcp_connections_opened_total", "1").await;
    assert_labels(
        &opened,
        &[
            ("reporter", "source"),
            ("response_flags", "UF,URX"),
            ("destination_workload", "unknown"),
            ("destination_principal", "unknown"),
        ],
    );
    let closed = tcp_metric(client.admin(), "istio_tcp_connections_closed_total", "1").await;
    assert_eq!(closed, opened);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tcp_connections_report_bytes_every_period() -> anyhow::Result<()> {
    use strait_test_support::upstream::tcp_echo;
    let echo = tcp_echo();
    let mut stats = dump_network_stats(false);
    stats["tcp_reporting_duration"] = json!("0.2s");
    let client = TestProxy::start(
        &tcp_sidecar_with(
            &client_metadata(),
            false,
            &stats,
            false,
            "",
            "outbound|9000||tcp-echo.bookinfo.svc.cluster.local",
            echo.addr,
            "",
        ),
        1,
    );
    let mut s = TcpStream::connect(client.listener("listener"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&[b'y'; 300])?;
    let mut back = [0u8; 300];
    s.read_exact(&mut back)?;
    // Still open: opened, and the bytes so far, by the periodic report.
    let opened = tcp_metric(client.admin(), "istio_tcp_connections_opened_total", "1").await;
    let rx = tcp_metric(client.admin(), "istio_tcp_received_bytes_total", "300").await;
    assert_eq!(rx, opened);
    tcp_metric(client.admin(), "istio_tcp_sent_bytes_total", "300").await;
    let closed = prometheus(client.admin(), "istio_tcp_connections_closed_total");
    assert!(closed.iter().all(|(_, v)| v == "0"), "{closed:?}");
    // More bytes while open, then the close.
    s.write_all(&[b'z'; 200])?;
    let mut more = [0u8; 200];
    s.read_exact(&mut more)?;
    tcp_metric(client.admin(), "istio_tcp_received_bytes_total", "500").await;
    drop(s);
    let closed = tcp_metric(client.admin(), "istio_tcp_connections_closed_total", "1").await;
    assert_eq!(closed, opened);
    // Each byte once: the timer and the close never both count it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rx = prometheus(client.admin(), "istio_tcp_received_bytes_total");
    assert_eq!(rx.len(), 1);
    assert_eq!(rx[0].1, "500");
    Ok(())
}
