//! Envoy's per-resource xDS acceptance, end to end over ADS (state of the
//! world and delta): in a push where one listener or cluster is bad, the
//! good ones go live, the NACK names the bad one and its field, the bad one
//! keeps its last good version (or stays absent), `/config_dump` shows its
//! `error_state`, and the update counters move as Envoy's do. Requests go
//! through the proxy to real upstreams.

use std::{net::SocketAddr, time::Duration};

use envoy_types::pb::google::protobuf::Any;
use serde_json::Value;
use strait_test_support::{
    admin,
    client::Client,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
    xds_server::{CLUSTER, ENDPOINT, LISTENER, RecordedRequest, XdsServer, resource},
};

/// How long a push may take to be applied and answered.
const APPLY: Duration = Duration::from_secs(10);

/// A filter Strait refuses by name (no Strait extension builds it).
const UNSUPPORTED: &str = "envoy.extensions.filters.http.geoip.v3.Geoip";
/// A filter Strait builds (CORS without a policy changes nothing).
const SUPPORTED: &str = "envoy.extensions.filters.http.cors.v3.Cors";

/// Listener `name` on 127.0.0.1:`port` whose HCM runs `filter` before the
/// router, routing `/bad` to `bad`, `/a` to `svc-a`, `/b` to `svc-b` and
/// everything else to `default`.
fn listener(name: &str, port: u16, filter: &str, default: &str) -> (String, Any) {
    resource(
        "envoy.config.listener.v3.Listener",
        &format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - {{match: {{prefix: /bad}}, route: {{cluster: bad}}}}
          - {{match: {{prefix: /a}}, route: {{cluster: svc-a}}}}
          - {{match: {{prefix: /b}}, route: {{cluster: svc-b}}}}
          - {{match: {{prefix: /}}, route: {{cluster: {default}}}}}
      http_filters:
      - name: first
        typed_config: {{"@type": "type.googleapis.com/{filter}"}}
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        ),
    )
}

/// An EDS cluster; `extra` is more YAML fields.
fn cluster(name: &str, extra: &str) -> (String, Any) {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!(
            r#"
name: {name}
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}
{extra}
"#
        ),
    )
}

/// A field Strait refuses by name on a cluster.
const BAD_CLUSTER: &str = "lb_policy: LOAD_BALANCING_POLICY_CONFIG";

fn endpoints(name: &str, up: &Upstream) -> (String, Any) {
    resource(
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &format!(
            "{{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}",
            up.addr.port()
        ),
    )
}

/// The upstream that answers `path` on the listener at `addr`; `None` when
/// nothing (or no upstream) answers.
async fn upstream_of(addr: SocketAddr, path: &str) -> Option<String> {
    let mut c = Client::http1(addr).await.ok()?;
    let r = c.get(path).await.ok()?;
    (r.status == 200).then(|| r.header("x-upstream").map(str::to_owned))?
}

async fn expect_upstream(proxy: &TestProxy, listener: &str, path: &str, want: &str) {
    let what = format!("{listener}{path} reaches {want}");
    eventually(&what, APPLY, || async {
        let addr = proxy.try_listener(listener)?;
        (upstream_of(addr, path).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

/// The client's reply to the server's current version of `type_url`.
async fn reply(xds: &XdsServer, type_url: &str) -> RecordedRequest {
    eventually(&format!("{type_url} answered"), APPLY, || async {
        xds.answered_current(type_url)
    })
    .await
}

/// The resources a NACK names, as `(kind, name)`: the xDS client writes
/// every problem as `<kind> '<name>': <field>: <why>`, joined by `; `.
fn named(detail: &str) -> Vec<String> {
    let mut out: Vec<String> = detail
        .split("; ")
        .filter_map(|p| {
            let (kind, rest) = p.split_once(" '")?;
            let (name, _) = rest.split_once("': ")?;
            Some(format!("{kind} {name}"))
        })
        .collect();
    out.dedup();
    out
}

/// `/config_dump?resource=<field>` as a list of items.
async fn dump_items(proxy: &TestProxy, field: &str) -> Vec<Value> {
    let r = admin::get(proxy.admin(), &format!("/config_dump?resource={field}"))
        .await
        .expect("config_dump");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_str(&r.text()).expect("json");
    v["configs"].as_array().cloned().unwrap_or_default()
}

async fn counter(proxy: &TestProxy, series: &str) -> f64 {
    admin::stat(proxy.admin(), series)
        .await
        .expect("stats")
        .unwrap_or(0.0)
}

struct Setup {
    xds: XdsServer,
    proxy: TestProxy,
    a: Upstream,
    b: Upstream,
}

/// Clusters `svc-a` and `svc-b` (upstreams a and b) served, no listeners
/// yet, and Strait started against the control plane over `api`.
async fn setup(api: &str) -> Setup {
    let xds = XdsServer::start();
    let a = http_echo("a");
    let b = http_echo("b");
    xds.set(CLUSTER, vec![cluster("svc-a", ""), cluster("svc-b", "")]);
    xds.set(
        ENDPOINT,
        vec![endpoints("svc-a", &a), endpoints("svc-b", &b)],
    );
    xds.set(LISTENER, Vec::new());
    let proxy = TestProxy::start(
        &strait_test_support::xds_server::ads_bootstrap(xds.addr(), api, "test"),
        1,
    );
    for t in [CLUSTER, ENDPOINT] {
        let r = reply(&xds, t).await;
        assert!(r.error_detail.is_none(), "{t}: {r:?}");
    }
    Setup { xds, proxy, a, b }
}

fn thirty(bad: Option<usize>) -> Vec<(String, Any)> {
    (0..30)
        .map(|i| {
            let filter = if Some(i) == bad {
                UNSUPPORTED
            } else {
                SUPPORTED
            };
            listener(&format!("l{i:02}"), 0, filter, "svc-a")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_one_bad_listener_among_thirty() {
    one_bad_listener_among_thirty("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_one_bad_listener_among_thirty() {
    one_bad_listener_among_thirty("DELTA_GRPC").await;
}

async fn one_bad_listener_among_thirty(api: &str) {
    let s = setup(api).await;
    let rejected_before = counter(&s.proxy, "envoy_listener_manager_lds_update_rejected").await;

    // 30 listeners, l13 with a filter Strait does not build.
    s.xds.set(LISTENER, thirty(Some(13)));
    let nack = reply(&s.xds, LISTENER).await;
    let detail = nack.error_detail.expect("a NACK");
    assert_eq!(named(&detail), ["listener l13"], "{detail}");
    assert!(
        detail.starts_with("listener 'l13': l13.filter_chains[0].filters[0]"),
        "names the field: {detail}"
    );
    assert!(detail.contains("geoip"), "{detail}");
    // The 29 serve traffic.
    for l in ["l00", "l01", "l12", "l14", "l29"] {
        expect_upstream(&s.proxy, l, "/x", "a").await;
    }
    expect_upstream(&s.proxy, "l20", "/b", "b").await;
    let live = (0..30)
        .filter(|i| s.proxy.try_listener(&format!("l{i:02}")).is_some())
        .count();
    assert_eq!(live, 29);
    assert!(s.proxy.try_listener("l13").is_none(), "never had a version");
    // `/config_dump`: l13's error state, the others active without one.
    let items = dump_items(&s.proxy, "dynamic_listeners").await;
    assert_eq!(items.len(), 30);
    for item in &items {
        let name = item["name"].as_str().expect("name");
        if name == "l13" {
            let e = &item["error_state"];
            assert!(
                e["details"].as_str().expect("details").contains("geoip"),
                "{item}"
            );
            assert_eq!(e["failed_configuration"]["name"], "l13", "{item}");
            assert!(e["last_update_attempt"].is_string(), "{item}");
            assert!(item.get("active_state").is_none(), "{item}");
        } else {
            assert!(item.get("error_state").is_none(), "{item}");
            assert!(item["active_state"]["listener"].is_object(), "{item}");
        }
    }
    let rejected = counter(&s.proxy, "envoy_listener_manager_lds_update_rejected").await;
    assert_eq!(rejected, rejected_before + 1.0);
    if api == "GRPC" {
        assert_eq!(
            nack.version_info, "1",
            "the NACK carries the previous accepted version"
        );
    }

    // Fixed: ACKed, all 30 serve, the error state is gone.
    let success = counter(&s.proxy, "envoy_listener_manager_lds_update_success").await;
    s.xds.set(LISTENER, thirty(None));
    let ack = reply(&s.xds, LISTENER).await;
    assert!(ack.error_detail.is_none(), "{ack:?}");
    expect_upstream(&s.proxy, "l13", "/x", "a").await;
    let live = (0..30)
        .filter(|i| s.proxy.try_listener(&format!("l{i:02}")).is_some())
        .count();
    assert_eq!(live, 30);
    let items = dump_items(&s.proxy, "dynamic_listeners").await;
    assert!(
        items.iter().all(|i| i.get("error_state").is_none()),
        "{items:?}"
    );
    assert_eq!(
        counter(&s.proxy, "envoy_listener_manager_lds_update_success").await,
        success + 1.0
    );

    // A good listener turns bad while another changes: the change goes
    // live, the bad one keeps serving its old version on its old socket.
    let l05 = s.proxy.try_listener("l05").expect("l05");
    let mut next = thirty(Some(5));
    next[6] = listener("l06", 0, SUPPORTED, "svc-b");
    s.xds.set(LISTENER, next);
    let nack = reply(&s.xds, LISTENER).await;
    let detail = nack.error_detail.expect("a NACK");
    assert_eq!(named(&detail), ["listener l05"], "{detail}");
    expect_upstream(&s.proxy, "l06", "/x", "b").await;
    assert_eq!(s.proxy.try_listener("l05"), Some(l05));
    assert_eq!(upstream_of(l05, "/x").await.as_deref(), Some("a"));
    let items = dump_items(&s.proxy, "dynamic_listeners").await;
    let l05_item = items.iter().find(|i| i["name"] == "l05").expect("l05");
    assert!(l05_item["active_state"].is_object(), "{l05_item}");
    assert!(l05_item["error_state"]["details"].is_string(), "{l05_item}");
    drop((s.a, s.b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_one_bad_cluster_among_good_ones() {
    one_bad_cluster_among_good_ones("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_one_bad_cluster_among_good_ones() {
    one_bad_cluster_among_good_ones("DELTA_GRPC").await;
}

async fn one_bad_cluster_among_good_ones(api: &str) {
    let s = setup(api).await;
    s.xds
        .set(LISTENER, vec![listener("web", 0, SUPPORTED, "svc-a")]);
    expect_upstream(&s.proxy, "web", "/a", "a").await;
    let rejected_before = counter(&s.proxy, "envoy_cluster_manager_cds_update_rejected").await;

    s.xds.set(
        CLUSTER,
        vec![
            cluster("svc-a", ""),
            cluster("bad", BAD_CLUSTER),
            cluster("svc-b", ""),
        ],
    );
    let nack = reply(&s.xds, CLUSTER).await;
    let detail = nack.error_detail.expect("a NACK");
    assert_eq!(named(&detail), ["cluster bad"], "{detail}");
    assert!(
        detail.contains("bad.lb_policy"),
        "names the field: {detail}"
    );
    expect_upstream(&s.proxy, "web", "/a", "a").await;
    expect_upstream(&s.proxy, "web", "/b", "b").await;
    let mut c = Client::http1(s.proxy.listener("web"))
        .await
        .expect("connect");
    let r = c.get("/bad").await.expect("response");
    assert_eq!(r.status, 503, "no cluster 'bad'");
    let items = dump_items(&s.proxy, "dynamic_active_clusters").await;
    let bad: Vec<_> = items
        .iter()
        .filter(|i| i.get("error_state").is_some())
        .collect();
    assert_eq!(bad.len(), 1, "{items:?}");
    assert_eq!(bad[0]["error_state"]["failed_configuration"]["name"], "bad");
    assert!(bad[0].get("cluster").is_none(), "never had a version");
    assert_eq!(
        counter(&s.proxy, "envoy_cluster_manager_cds_update_rejected").await,
        rejected_before + 1.0
    );

    // svc-b turns bad: it keeps its last good version; bad is fixed.
    s.xds.set(
        CLUSTER,
        vec![
            cluster("svc-a", ""),
            cluster("bad", ""),
            cluster("svc-b", BAD_CLUSTER),
        ],
    );
    s.xds.set(
        ENDPOINT,
        vec![
            endpoints("svc-a", &s.a),
            endpoints("svc-b", &s.b),
            endpoints("bad", &s.b),
        ],
    );
    let nack = eventually("svc-b's NACK", APPLY, || async {
        let r = s.xds.answered_current(CLUSTER)?;
        r.error_detail.filter(|d| d.contains("svc-b"))
    })
    .await;
    assert_eq!(named(&nack), ["cluster svc-b"], "{nack}");
    expect_upstream(&s.proxy, "web", "/bad", "b").await;
    expect_upstream(&s.proxy, "web", "/b", "b").await;
    let items = dump_items(&s.proxy, "dynamic_active_clusters").await;
    let svc_b = items
        .iter()
        .find(|i| i["cluster"]["name"] == "svc-b")
        .expect("svc-b keeps its version");
    assert!(svc_b["error_state"]["details"].is_string(), "{svc_b}");
}

/// A listener on `port` whose chain terminates TLS with a certificate file
/// that does not exist: it translates, but the writer cannot compile it.
fn tls_listener(name: &str) -> (String, Any) {
    resource(
        "envoy.config.listener.v3.Listener",
        &format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificates:
        - certificate_chain: {{filename: /nonexistent/strait/cert.pem}}
          private_key: {{filename: /nonexistent/strait/key.pem}}
  filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: {name}
      cluster: svc-a
"#
        ),
    )
}

/// Listeners that translate but that the writer cannot build (a TLS
/// certificate that does not load) or bind (a port in use) are rejected
/// alone, by name, and the rest of the push goes live in one snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_the_writer_cannot_build_or_bind_are_rejected_alone() {
    let s = setup("GRPC").await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    s.xds.set(
        LISTENER,
        vec![
            listener("good", 0, SUPPORTED, "svc-a"),
            tls_listener("no-cert"),
            listener("busy", busy_port, SUPPORTED, "svc-a"),
        ],
    );
    let nack = reply(&s.xds, LISTENER).await;
    let detail = nack.error_detail.expect("a NACK");
    let mut names = named(&detail);
    names.sort();
    assert_eq!(names, ["listener busy", "listener no-cert"], "{detail}");
    assert!(detail.contains("address"), "{detail}");
    assert!(detail.contains("transport_socket"), "{detail}");
    expect_upstream(&s.proxy, "good", "/b", "b").await;
    assert!(s.proxy.try_listener("busy").is_none());
    assert!(s.proxy.try_listener("no-cert").is_none());
    let items = dump_items(&s.proxy, "dynamic_listeners").await;
    let errors: Vec<&str> = items
        .iter()
        .filter(|i| i.get("error_state").is_some())
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(errors, ["busy", "no-cert"]);
    drop(busy);
}
