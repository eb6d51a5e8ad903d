//! `transport_socket_matches` under a control plane, as Istio drives them:
//! CDS sends the outbound cluster with an mTLS match for endpoints labelled
//! `tlsMode: istio` and a plaintext one for the rest; EDS labels the
//! endpoints. A label change moves the host to the other transport at once
//! (its pooled connections speak the old one and are dropped); a match with
//! an unsupported transport socket is NACKed with its path.

use std::{net::SocketAddr, time::Duration};

use envoy_types::pb::google::protobuf::Any;
use strait_test_support::{
    certs::{Issued, TestCa, downstream_tls},
    client::Client,
    eventually,
    proxy::TestProxy,
    upstream::http_echo,
    xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsServer, ads_bootstrap, resource},
};

const APPLY: Duration = Duration::from_secs(10);
const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn listener() -> (String, Any) {
    resource(
        "envoy.config.listener.v3.Listener",
        r#"
name: outbound
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: outbound
      rds: {route_config_name: "9080", config_source: {ads: {}, resource_api_version: V3}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
    )
}

fn routes() -> (String, Any) {
    resource(
        "envoy.config.route.v3.RouteConfiguration",
        r#"
name: "9080"
virtual_hosts:
- name: reviews
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: "outbound|9080||reviews"}
"#,
    )
}

/// Istio's outbound cluster; `raw_type` is the type URL of the plaintext
/// match's transport socket (a wrong one must be NACKed).
fn cluster(client: &Issued, ca: &TestCa, raw_type: &str) -> (String, Any) {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!(
            r#"
name: "outbound|9080||reviews"
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}
transport_socket_matches:
- name: tlsMode-istio
  match: {{tlsMode: istio}}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      sni: outbound_.9080_._.reviews.default.svc.cluster.local
      common_tls_context:
        alpn_protocols: [istio-peer-exchange, istio]
        tls_certificates:
        - certificate_chain: {{filename: {cert}}}
          private_key: {{filename: {key}}}
        validation_context:
          trusted_ca: {{filename: {root}}}
          match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: "{REVIEWS}"}}}}]
- name: tlsMode-disabled
  match: {{}}
  transport_socket: {{name: envoy.transport_sockets.raw_buffer, typed_config: {{"@type": "{raw_type}"}}}}
"#,
            cert = client.cert.display(),
            key = client.key.display(),
            root = ca.root().display(),
        ),
    )
}

const RAW_BUFFER: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/// The assignment: `addr`, labelled `tlsMode: istio` when `istio`.
fn endpoints(addr: SocketAddr, istio: bool) -> (String, Any) {
    let labels = if istio {
        "\n    metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio}}}"
    } else {
        ""
    };
    resource(
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &format!(
            r#"
cluster_name: "outbound|9080||reviews"
endpoints:
- lb_endpoints:
  - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}{labels}
"#,
            ip = addr.ip(),
            port = addr.port(),
        ),
    )
}

/// The status and `x-upstream` of `GET /` through the proxy.
async fn get(addr: SocketAddr) -> Option<(u16, String)> {
    let mut c = Client::http1(addr).await.ok()?;
    let r = c.get("/").await.ok()?;
    Some((
        r.status.as_u16(),
        r.header("x-upstream").unwrap_or("").to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_labels_switch_hosts_between_mtls_and_plaintext() {
    let ca = TestCa::new("mesh-ca");
    // The server sidecar: TLS only, client identity required.
    let meshed = http_echo("meshed");
    let chain = format!(
        "    - {tls}\n      filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: inbound\n          cluster: app",
        tls = downstream_tls(
            6,
            &ca.issue(REVIEWS, &[]),
            Some(ca.root()),
            PRODUCTPAGE,
            &["h2", "http/1.1"]
        )
        .trim_start(),
    );
    let sidecar = TestProxy::start(
        &format!(
            r#"
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
{chain}
  clusters:
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
            port = meshed.addr.port()
        ),
        1,
    );
    let inbound = sidecar.listener("inbound");
    let plain = http_echo("plain");

    let client_cert = ca.issue(PRODUCTPAGE, &[]);
    let xds = XdsServer::start();
    xds.set(LISTENER, vec![listener()]);
    xds.set(ROUTE, vec![routes()]);
    xds.set(CLUSTER, vec![cluster(&client_cert, &ca, RAW_BUFFER)]);
    xds.set(ENDPOINT, vec![endpoints(inbound, true)]);
    let proxy = TestProxy::start(&ads_bootstrap(xds.addr(), "GRPC", "productpage"), 1);
    let addr = eventually("listener from LDS", APPLY, || async {
        proxy.try_listener("outbound")
    })
    .await;
    let answer = |want: (u16, &'static str)| async move {
        eventually(&format!("GET / answered {want:?}"), APPLY, || async {
            get(addr)
                .await
                .filter(|(s, u)| (*s, u.as_str()) == want)
                .map(|_| ())
        })
        .await;
    };
    // Labelled: mTLS to the sidecar.
    answer((200, "meshed")).await;

    // The same address unlabelled: plaintext to a TLS-only listener fails,
    // so the host's warm TLS connection must not be reused.
    xds.set(ENDPOINT, vec![endpoints(inbound, false)]);
    answer((503, "")).await;
    // Labelled again: mTLS again.
    xds.set(ENDPOINT, vec![endpoints(inbound, true)]);
    answer((200, "meshed")).await;
    // An unlabelled endpoint without a sidecar: plaintext.
    xds.set(ENDPOINT, vec![endpoints(plain.addr, false)]);
    answer((200, "plain")).await;

    // A match with a transport socket Strait does not have is NACKed by
    // path, and the previous cluster keeps serving.
    xds.set(
        CLUSTER,
        vec![cluster(
            &client_cert,
            &ca,
            "type.googleapis.com/envoy.extensions.transport_sockets.alts.v3.Alts",
        )],
    );
    let nack = eventually("the cluster NACKed", APPLY, || async {
        xds.nacks(CLUSTER).pop()
    })
    .await;
    let detail = nack.error_detail.unwrap_or_default();
    assert!(
        detail.contains("transport_socket_matches[1].transport_socket"),
        "{detail}"
    );
    assert_eq!(get(addr).await, Some((200, "plain".to_owned())));
}
