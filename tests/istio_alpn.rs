//! `istio.alpn` end to end, against the real Envoy 1.40 as the inbound
//! sidecar. A Strait outbound sidecar, configured as istiod renders one
//! (a TLS cluster offering `istio-peer-exchange, istio`, the downstream's
//! protocol upstream, and the `istio.alpn` filter with the override list
//! taken from `sidecar_app1_istio-1.22.3.json`), sends requests over mTLS
//! to an Envoy whose listener has Istio's two inbound filter chains: one
//! matching `application_protocols: [istio-http/1.0, istio-http/1.1,
//! istio-h2]` (an HTTP connection manager whose route adds
//! `x-inbound-chain: http` and the protocol it served), and a TCP proxy
//! for everything else. With the filter, HTTP/1.1 and HTTP/2 requests land
//! on Envoy's HTTP chain; without it (the same config, filter removed),
//! on the TCP chain.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
};

use serde_json::{Value, json};
use strait_test_support::{
    certs::{TestCa, downstream_tls, upstream_tls},
    client::Client,
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

const DUMP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/istio/configdumps/sidecar_app1_istio-1.22.3.json"
);

const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const CLUSTER: &str = "outbound|9080||reviews.default.svc.cluster.local";

/// The `istio.alpn` filter's config as istiod rendered it in the dump (the
/// first one found: every outbound connection manager has the same).
fn dump_alpn_config() -> Value {
    let text = std::fs::read_to_string(DUMP).expect("dump");
    let d: Value = serde_json::from_str(&text).expect("json");
    let mut stack = vec![&d];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if o.get("name").and_then(Value::as_str) == Some("istio.alpn")
                    && let Some(tc) = o.get("typed_config")
                {
                    let mut config = tc.clone();
                    config.as_object_mut().expect("object").remove("@type");
                    return config;
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    panic!("no istio.alpn filter in the dump");
}

/// The inbound sidecar: Envoy with Istio's two inbound filter chains, both
/// terminating mTLS (client certificates from the mesh CA, the client's
/// SPIFFE identity required) and serving the echo `app` behind them.
fn envoy_inbound(ca: &TestCa, app: SocketAddr) -> Envoy {
    let server = ca.issue(SERVER_ID, &[]);
    let tls = downstream_tls(6, &server, Some(ca.root()), CLIENT_ID, &["h2", "http/1.1"]);
    Envoy::start(&format!(
        r#"
static_resources:
  listeners:
  - name: virtualInbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - name: inbound_http
      filter_chain_match:
        transport_protocol: tls
        application_protocols: [istio-http/1.0, istio-http/1.1, istio-h2]
{tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound_http
          route_config:
            virtual_hosts:
            - name: inbound
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: app}}
                response_headers_to_add:
                - header: {{key: x-inbound-chain, value: http}}
                - header: {{key: x-inbound-protocol, value: "%PROTOCOL%"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
    - name: inbound_tcp
      filter_chain_match: {{transport_protocol: tls}}
{tls}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound_tcp
          cluster: app
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        ip = app.ip(),
        port = app.port(),
    ))
}

/// The outbound sidecar: Strait, with `istio.alpn` (as a `TypedStruct`, the
/// form a YAML bootstrap can carry Istio's message in) when `with_alpn`.
fn strait_outbound(ca: &TestCa, inbound: SocketAddr, with_alpn: bool) -> TestProxy {
    let client = ca.issue(CLIENT_ID, &[]);
    let tls = upstream_tls(
        4,
        &client,
        ca.root(),
        SERVER_ID,
        "outbound_.9080_._.reviews.default.svc.cluster.local",
        &["istio-peer-exchange", "istio"],
    );
    let alpn = if with_alpn {
        let filter = json!({
            "name": "istio.alpn",
            "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                "type_url":
                    "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
                "value": dump_alpn_config(),
            }
        });
        format!("          - {filter}\n")
    } else {
        String::new()
    };
    TestProxy::start(
        &format!(
            r#"
static_resources:
  listeners:
  - name: outbound
    traffic_direction: OUTBOUND
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound_0.0.0.0_9080
          route_config:
            virtual_hosts:
            - name: reviews
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: "{CLUSTER}"}}
          http_filters:
{alpn}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: "{CLUSTER}"
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        use_downstream_protocol_config: {{http_protocol_options: {{}}, http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: "{CLUSTER}"
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
{tls}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
            ip = inbound.ip(),
            port = inbound.port(),
        ),
        1,
    )
}

/// One counter of Envoy's `/stats` (0 when absent).
fn envoy_counter(admin: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(admin).expect("admin");
    s.write_all(
        format!("GET /stats?filter=^{name}$ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

struct Mesh {
    _app: Upstream,
    envoy: Envoy,
    strait: TestProxy,
}

fn mesh(with_alpn: bool) -> Mesh {
    let ca = TestCa::new("mesh");
    let app = http_echo("reviews");
    let envoy = envoy_inbound(&ca, app.addr);
    let strait = strait_outbound(&ca, envoy.listener("virtualInbound"), with_alpn);
    Mesh {
        _app: app,
        envoy,
        strait,
    }
}

/// Two requests on one downstream connection of `http2` or HTTP/1.1: the
/// `x-inbound-chain` and `x-inbound-protocol` each answer carried.
async fn requests(m: &Mesh, http2: bool) -> anyhow::Result<Vec<(Option<String>, Option<String>)>> {
    let addr = m.strait.listener("outbound");
    let mut c = if http2 {
        Client::http2(addr).await?
    } else {
        Client::http1(addr).await?
    };
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = c.get("/reviews/1").await?;
        anyhow::ensure!(r.status == 200, "status {} body {}", r.status, r.text());
        anyhow::ensure!(
            r.header("x-upstream") == Some("reviews"),
            "not the echo app's answer: {:?}",
            r.headers
        );
        seen.push((
            r.header("x-inbound-chain").map(str::to_owned),
            r.header("x-inbound-protocol").map(str::to_owned),
        ));
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_istio_alpn_http1_and_http2_land_on_the_peers_http_chain() -> anyhow::Result<()> {
    let m = mesh(true);
    let http = |p: &str| (Some("http".to_owned()), Some(p.to_owned()));
    assert_eq!(
        requests(&m, false).await?,
        [http("HTTP/1.1"), http("HTTP/1.1")]
    );
    assert_eq!(requests(&m, true).await?, [http("HTTP/2"), http("HTTP/2")]);
    let admin = m.envoy.admin();
    assert_eq!(
        envoy_counter(admin, "http.inbound_http.downstream_rq_total"),
        4
    );
    // One connection per upstream protocol (each with its own ALPN list),
    // reused by the second request.
    assert_eq!(
        envoy_counter(admin, "http.inbound_http.downstream_cx_total"),
        2
    );
    assert_eq!(
        envoy_counter(admin, "tcp.inbound_tcp.downstream_cx_total"),
        0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_istio_alpn_the_peer_serves_the_tcp_chain() -> anyhow::Result<()> {
    let m = mesh(false);
    let none = (None, None);
    assert_eq!(requests(&m, false).await?, [none.clone(), none.clone()]);
    assert_eq!(requests(&m, true).await?, [none.clone(), none]);
    let admin = m.envoy.admin();
    assert_eq!(
        envoy_counter(admin, "http.inbound_http.downstream_rq_total"),
        0
    );
    assert_eq!(
        envoy_counter(admin, "tcp.inbound_tcp.downstream_cx_total"),
        2
    );
    Ok(())
}
