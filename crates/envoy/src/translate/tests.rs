//! Table-driven translation tests: good configs against the expected model
//! (`good`), bad ones against the path and a key word of the error they must
//! produce (`bad`). Shared here: the base config and the edit helpers.

use serde_json::Value;

use crate::{ConfigError, load, model::Config};

mod access_log;
mod bad;
mod ext_authz;
mod good;
mod inbound;
mod istio;
mod ratelimit;
mod rbac;
mod route;
mod route_bad;
mod secrets;
mod sinks;
mod tracing;

pub(super) const HCM: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
pub(super) const HCM_PATH: &str =
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
const ROUTE0: &str = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes/0";
const ROUTE0_PATH: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0]";
const TCP: &str = "/static_resources/listeners/1/filter_chains/0/filters/0/typed_config";
const CLUSTER0: &str = "/static_resources/clusters/0";
const ENDPOINT0: &str =
    "/static_resources/clusters/0/load_assignment/endpoints/0/lb_endpoints/0/endpoint";
const ENDPOINT0_PATH: &str =
    "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint";

/// The config every bad case starts from; it translates cleanly.
const BASE: &str = r#"
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: r
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: backend}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: 10001}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
"#;

pub(super) fn load_ok(text: &str) -> Config {
    match load(text) {
        Ok(c) => c,
        Err(errors) => panic!("{}", render(&errors)),
    }
}

pub(super) fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `BASE` as JSON with `edits` applied: each sets the value at a JSON
/// pointer (appending when the index is one past an array's end), and a null
/// value removes the key.
pub(super) fn edited(edits: &[(&str, Value)]) -> String {
    let mut root: Value = serde_yaml::from_str(BASE).expect("base parses");
    for (ptr, value) in edits {
        let (parent, last) = ptr.rsplit_once('/').expect("pointer has a parent");
        match root.pointer_mut(parent) {
            Some(Value::Object(m)) if value.is_null() => {
                m.remove(last);
            }
            Some(Value::Object(m)) => {
                m.insert(last.to_owned(), value.clone());
            }
            Some(Value::Array(a)) => {
                let i: usize = last.parse().expect("array index");
                if i == a.len() {
                    a.push(value.clone());
                } else {
                    a[i] = value.clone();
                }
            }
            _ => panic!("{ptr}: no container at {parent}"),
        }
    }
    serde_json::to_string(&root).expect("serialises")
}

#[test]
fn base_translates() {
    let c = load_ok(BASE);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.clusters.len(), 1);
}

#[test]
fn an_empty_bootstrap_is_an_empty_config() {
    let mut c = load_ok("{}");
    // Strait always announces itself to a control plane.
    assert_eq!(
        c.node
            .take()
            .map(|n| crate::node_proto(&n).user_agent_name)
            .as_deref(),
        Some("strait")
    );
    assert_eq!(c, Config::default());
}
