//! Secret rotation at compile time: only the TLS contexts naming a changed
//! secret are rebuilt; route tables, other listeners and cluster specs are
//! shared with the previous snapshot.

use std::sync::Arc;

use strait_model::{
    Config,
    secret::{Secret, SecretEntry},
    tls::{DataSource, TlsCertificate},
};

use crate::Snapshot;

fn cert(name: &str) -> TlsCertificate {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    let c = params.self_signed(&key).expect("cert");
    TlsCertificate {
        certificate_chain: DataSource::Inline(c.pem().into_bytes()),
        private_key: DataSource::Inline(key.serialize_pem().into_bytes()),
    }
}

fn json(bytes: &DataSource) -> String {
    match bytes {
        DataSource::Inline(b) => serde_json::to_string(&String::from_utf8_lossy(b)).expect("json"),
        DataSource::File(_) => unreachable!("inline only"),
    }
}

/// Listener `tls` (HTTP, TLS from static secret `default`), listener
/// `plain` (TCP), cluster `up` whose client certificate is `default` too.
fn config() -> Config {
    let c = cert("one.test");
    let tls = |ty: &str| {
        format!(
            r#"{{name: tls, typed_config: {{"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.{ty},
              common_tls_context: {{tls_certificate_sds_secret_configs: [{{name: default}}]}}}}}}"#
        )
    };
    let text = format!(
        r#"
static_resources:
  secrets:
  - name: default
    tls_certificate: {{certificate_chain: {{inline_string: {chain}}}, private_key: {{inline_string: {key}}}}}
  listeners:
  - name: tls
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - transport_socket: {down}
      filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: {{virtual_hosts: [{{name: v, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: up}}}}]}}]}}
          http_filters: [{{name: r, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
  - name: plain
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: up}}
  clusters:
  - name: up
    type: STATIC
    transport_socket: {up}
    load_assignment: {{cluster_name: up, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}}}]}}]}}
"#,
        chain = json(&c.certificate_chain),
        key = json(&c.private_key),
        down = tls("DownstreamTlsContext"),
        up = tls("UpstreamTlsContext"),
    );
    strait_envoy::load(&text).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn a_rotated_secret_rebuilds_only_the_contexts_that_name_it() {
    let first = config();
    let s1 = Snapshot::compile(
        1,
        first.clone(),
        serde_json::Value::Null,
        &Snapshot::empty(),
    )
    .expect("compiles");
    let mut rotated = first.clone();
    rotated.secrets.insert(
        "default".into(),
        SecretEntry::new(Secret::TlsCertificate(cert("two.test")), "2"),
    );
    let s2 = Snapshot::compile(2, rotated.clone(), serde_json::Value::Null, &s1).expect("compiles");

    let (a1, a2) = (
        s1.listener("tls").expect("tls"),
        s2.listener("tls").expect("tls"),
    );
    assert!(
        !Arc::ptr_eq(a1, a2),
        "the TLS listener's context is rebuilt"
    );
    let (r1, r2) = (
        a1.chains[0].routes.as_ref().expect("routes"),
        a2.chains[0].routes.as_ref().expect("routes"),
    );
    assert!(Arc::ptr_eq(r1, r2), "its route table is shared");
    assert!(Arc::ptr_eq(
        s1.listener("plain").expect("plain"),
        s2.listener("plain").expect("plain")
    ));
    assert!(Arc::ptr_eq(
        s1.cluster("up").expect("up"),
        s2.cluster("up").expect("up")
    ));
    assert!(s2.cluster_tls("up").is_some());

    // Nothing changed: everything is shared.
    let s3 = Snapshot::compile(3, rotated.clone(), serde_json::Value::Null, &s2).expect("compiles");
    assert!(Arc::ptr_eq(
        s2.listener("tls").expect("tls"),
        s3.listener("tls").expect("tls")
    ));

    // A secret that is missing refuses the config, naming it.
    let mut missing = rotated;
    missing.secrets.clear();
    let err = Snapshot::compile(4, missing, serde_json::Value::Null, &s3).expect_err("refused");
    assert!(
        err.to_string()
            .contains("listener tls: filter chain #0: transport_socket: secret 'default': has not been received"),
        "{err}"
    );
}
