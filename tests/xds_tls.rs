//! ADS to a control plane over TLS, as Envoy reaches istiod across the
//! network (`xds-grpc` with an `UpstreamTlsContext`): the control plane's
//! certificate is verified against the cluster's `trusted_ca` and SAN
//! matcher, and a control plane the proxy cannot verify delivers nothing.
//! The TLS side of the control plane is a Strait listener terminating TLS
//! (ALPN `h2`) in front of the test xDS server.

use std::time::Duration;

use strait_test_support::{
    certs::{TestCa, downstream_tls},
    client::Client,
    eventually,
    proxy::TestProxy,
    xds_server::{LISTENER, XdsServer, ads_bootstrap, resource},
};

const APPLY: Duration = Duration::from_secs(10);
const ISTIOD: &str = "spiffe://cluster.local/ns/istio-system/sa/istiod";

/// A listener answering every request with 200 `from-xds`.
fn direct_listener() -> (String, envoy_types::pb::google::protobuf::Any) {
    resource(
        "envoy.config.listener.v3.Listener",
        r#"
name: direct
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: direct
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{match: {prefix: /}, direct_response: {status: 200, body: {inline_string: from-xds}}}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
    )
}

/// The test control plane behind a TLS listener presenting `istiod`'s
/// certificate from `ca`.
fn tls_control_plane(ca: &TestCa, xds: &XdsServer) -> TestProxy {
    let istiod = ca.issue(ISTIOD, &["istiod.istio-system.svc"]);
    TestProxy::start(
        &format!(
            r#"
static_resources:
  listeners:
  - name: cp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - {tls}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: cp
          cluster: xds
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
            tls = downstream_tls(6, &istiod, None, "", &["h2"]).trim_start(),
            port = xds.addr().port(),
        ),
        1,
    )
}

/// Istio's ADS bootstrap to `cp`, its `xds-grpc` cluster verifying the
/// control plane against `trusted` and the istiod identity.
fn bootstrap_over_tls(cp: std::net::SocketAddr, trusted: &TestCa) -> String {
    let tls = format!(
        r#"  - name: xds-grpc
    type: STATIC
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: istiod.istio-system.svc
        common_tls_context:
          alpn_protocols: [h2]
          validation_context:
            trusted_ca: {{filename: {root}}}
            match_typed_subject_alt_names: [{{san_type: URI, matcher: {{exact: "{ISTIOD}"}}}}]
"#,
        root = trusted.root().display(),
    );
    let plain = ads_bootstrap(cp, "GRPC", "test");
    let with_tls = plain.replacen("  - name: xds-grpc\n    type: STATIC\n", &tls, 1);
    assert_ne!(plain, with_tls, "the ADS bootstrap's cluster changed shape");
    with_tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_over_tls_to_a_verified_control_plane() {
    let ca = TestCa::new("mesh-ca");
    let xds = XdsServer::start();
    xds.set(LISTENER, vec![direct_listener()]);
    let cp = tls_control_plane(&ca, &xds);
    let cp_addr = cp.listener("cp");

    let proxy = TestProxy::start(&bootstrap_over_tls(cp_addr, &ca), 1);
    let addr = eventually("listener from LDS over TLS", APPLY, || async {
        proxy.try_listener("direct")
    })
    .await;
    let mut c = Client::http1(addr).await.expect("connect");
    let r = c.get("/").await.expect("answer");
    assert_eq!((r.status.as_u16(), r.text()), (200, "from-xds".to_owned()));
    eventually("the listener ACKed", APPLY, || async {
        xds.acked_current(LISTENER).then_some(())
    })
    .await;

    // A proxy that trusts another CA never gets a config from it.
    let other = TestCa::new("other-ca");
    let doubting = TestProxy::start(&bootstrap_over_tls(cp_addr, &other), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(doubting.try_listener("direct").is_none());
    drop(proxy);
}
