//! Strait under a control plane: started from a bootstrap whose
//! `dynamic_resources` point at the test ADS server, which serves a listener
//! (HCM with RDS), its route config, an EDS cluster and its endpoints.
//! Requests through the proxy must reach the echo upstreams the resources
//! name; every push is ACKed, a bad one NACKed with its reason while the
//! previous config keeps serving, and a control plane restart resumes the
//! stream without disturbing traffic.

use std::{net::SocketAddr, time::Duration};

use strait_test_support::{
    admin,
    client::Client,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
    xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsServer, resource},
};

/// How long a push may take to be applied and answered.
const APPLY: Duration = Duration::from_secs(10);

fn bootstrap(xds: SocketAddr, api: &str) -> String {
    strait_test_support::xds_server::ads_bootstrap(xds, api, "test")
}

/// Listener `web` on 127.0.0.1:0 whose HCM takes route config
/// `web-routes` from RDS.
const LISTENER_YAML: &str = r#"
name: web
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: web
      rds: {route_config_name: web-routes, config_source: {ads: {}, resource_api_version: V3}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#;

fn listener() -> (String, envoy_types::pb::google::protobuf::Any) {
    resource("envoy.config.listener.v3.Listener", LISTENER_YAML)
}

/// Routes `/` to `cluster`; `extra_route` is one more route first.
fn routes(cluster: &str, extra_route: &str) -> (String, envoy_types::pb::google::protobuf::Any) {
    resource(
        "envoy.config.route.v3.RouteConfiguration",
        &format!(
            r#"
name: web-routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
{extra_route}
  - match: {{prefix: "/"}}
    route: {{cluster: {cluster}}}
"#
        ),
    )
}

fn eds_cluster(name: &str) -> (String, envoy_types::pb::google::protobuf::Any) {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!(
            r#"
name: {name}
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}
"#
        ),
    )
}

fn endpoints(name: &str, up: &Upstream) -> (String, envoy_types::pb::google::protobuf::Any) {
    resource(
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &format!(
            r#"
cluster_name: {name}
endpoints:
- locality: {{region: r1, zone: z1}}
  lb_endpoints:
  - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
    health_status: HEALTHY
"#,
            port = up.addr.port()
        ),
    )
}

/// The upstream that answers `path` through the proxy, or `None` when the
/// request fails or is not answered by an upstream.
async fn upstream_of(addr: SocketAddr, path: &str) -> Option<String> {
    let mut c = Client::http1(addr).await.ok()?;
    let r = c.get(path).await.ok()?;
    (r.status == 200).then(|| r.header("x-upstream").map(str::to_owned))?
}

struct Setup {
    xds: XdsServer,
    proxy: TestProxy,
    a: Upstream,
    b: Upstream,
    addr: SocketAddr,
}

/// The control plane serving everything routed to upstream `a`, and Strait
/// started against it, serving.
async fn setup(api: &str) -> Setup {
    let xds = XdsServer::start();
    let a = http_echo("a");
    let b = http_echo("b");
    xds.set(LISTENER, vec![listener()]);
    xds.set(ROUTE, vec![routes("svc-a", "")]);
    xds.set(CLUSTER, vec![eds_cluster("svc-a"), eds_cluster("svc-b")]);
    xds.set(
        ENDPOINT,
        vec![endpoints("svc-a", &a), endpoints("svc-b", &b)],
    );
    let proxy = TestProxy::start(&bootstrap(xds.addr(), api), 1);
    let addr = eventually("listener web from LDS", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;
    eventually("requests reach upstream a", APPLY, || async {
        (upstream_of(addr, "/x").await.as_deref() == Some("a")).then_some(())
    })
    .await;
    Setup {
        xds,
        proxy,
        a,
        b,
        addr,
    }
}

async fn all_acked(xds: &XdsServer) {
    eventually("every type ACKed at its current version", APPLY, || async {
        [LISTENER, ROUTE, CLUSTER, ENDPOINT]
            .iter()
            .all(|t| xds.acked_current(t))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_serves_lds_rds_cds_eds_and_acks_every_push() {
    serves_lds_rds_cds_eds_and_acks_every_push("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_serves_lds_rds_cds_eds_and_acks_every_push() {
    serves_lds_rds_cds_eds_and_acks_every_push("DELTA_GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_bad_route_is_nacked_and_the_previous_config_keeps_serving() {
    a_bad_route_is_nacked_and_the_previous_config_keeps_serving("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_bad_route_is_nacked_and_the_previous_config_keeps_serving() {
    a_bad_route_is_nacked_and_the_previous_config_keeps_serving("DELTA_GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_control_plane_restart_keeps_config_and_resumes_the_stream() {
    control_plane_restart_keeps_config_and_resumes_the_stream("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_control_plane_restart_keeps_config_and_resumes_the_stream() {
    control_plane_restart_keeps_config_and_resumes_the_stream("DELTA_GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_updates_move_traffic_and_a_listener_waits_for_its_routes() {
    let s = setup("GRPC").await;
    // New endpoints for svc-a: the live cluster's hosts follow.
    s.xds.set(
        ENDPOINT,
        vec![endpoints("svc-a", &s.b), endpoints("svc-b", &s.b)],
    );
    eventually("svc-a's endpoint moved to upstream b", APPLY, || async {
        (upstream_of(s.addr, "/x").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    all_acked(&s.xds).await;

    // A second listener naming a route config the server does not have is
    // held back (warming), ACKed, and goes live when its routes arrive.
    let web2 = LISTENER_YAML
        .replace("name: web\n", "name: web2\n")
        .replace("web-routes", "later");
    s.xds.set(
        LISTENER,
        vec![
            listener(),
            resource("envoy.config.listener.v3.Listener", &web2),
        ],
    );
    eventually("the listener push is ACKed", APPLY, || async {
        s.xds.acked_current(LISTENER).then_some(())
    })
    .await;
    assert!(
        s.proxy.try_listener("web2").is_none(),
        "web2 waits for RDS 'later'"
    );
    let later = resource(
        "envoy.config.route.v3.RouteConfiguration",
        r#"{name: later, virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: svc-b}}]}]}"#,
    );
    s.xds.set(ROUTE, vec![routes("svc-a", ""), later]);
    let addr2 = eventually("web2 goes live", APPLY, || async {
        s.proxy.try_listener("web2")
    })
    .await;
    eventually("web2 routes by its own config", APPLY, || async {
        (upstream_of(addr2, "/y").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    assert!(s.xds.nacks(LISTENER).is_empty() && s.xds.nacks(ROUTE).is_empty());
}

async fn serves_lds_rds_cds_eds_and_acks_every_push(api: &str) {
    let s = setup(api).await;
    all_acked(&s.xds).await;
    let reqs = s.xds.requests();
    assert!(reqs[0].has_node, "the first request carries the node");
    assert!(
        reqs[1..].iter().all(|r| !r.has_node),
        "set_node_on_first_message_only"
    );
    assert!(s.xds.nacks(LISTENER).is_empty() && s.xds.nacks(CLUSTER).is_empty());
    let eds: std::collections::BTreeSet<String> = reqs
        .iter()
        .filter(|r| r.type_url == ENDPOINT)
        .flat_map(|r| r.resource_names.clone())
        .collect();
    assert_eq!(
        eds.into_iter().collect::<Vec<_>>(),
        ["svc-a", "svc-b"],
        "EDS subscribed by cluster name"
    );
    assert!(s.a.requests() >= 1);

    // An update changes routing.
    s.xds.set(ROUTE, vec![routes("svc-b", "")]);
    eventually("requests reach upstream b", APPLY, || async {
        (upstream_of(s.addr, "/x").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    all_acked(&s.xds).await;
    assert!(s.b.requests() >= 1);

    // The stats pilot-agent reads.
    for series in [
        "envoy_cluster_manager_cds_update_success",
        "envoy_listener_manager_lds_update_success",
    ] {
        let v = admin::stat(s.proxy.admin(), series)
            .await
            .unwrap_or_else(|e| panic!("{series}: {e}"));
        assert!(v.is_some_and(|v| v >= 1.0), "{series}: {v:?}");
    }

    // /config_dump keeps working.
    let dump = admin::get(s.proxy.admin(), "/config_dump")
        .await
        .unwrap_or_else(|e| panic!("config_dump: {e}"));
    assert_eq!(dump.status, 200);
    assert!(dump.text().contains("xds-grpc"), "{}", dump.text());
}

async fn a_bad_route_is_nacked_and_the_previous_config_keeps_serving(api: &str) {
    let s = setup(api).await;
    all_acked(&s.xds).await;
    let bad = r#"
  - match: {safe_regex: {regex: "(unclosed"}}
    route: {cluster: svc-b}"#;
    s.xds.set(ROUTE, vec![routes("svc-b", bad)]);
    let nack = eventually("the bad route config is NACKed", APPLY, || async {
        s.xds.nacks(ROUTE).pop()
    })
    .await;
    let detail = nack.error_detail.unwrap_or_default();
    assert!(
        detail.contains("web-routes"),
        "names the resource: {detail}"
    );
    assert!(detail.contains("regex"), "names the field: {detail}");
    assert_ne!(
        nack.version_info,
        s.xds.version(ROUTE),
        "NACK keeps the old version"
    );
    assert_eq!(upstream_of(s.addr, "/x").await.as_deref(), Some("a"));

    // A good push after the bad one is accepted.
    s.xds.set(ROUTE, vec![routes("svc-b", "")]);
    eventually("requests reach upstream b", APPLY, || async {
        (upstream_of(s.addr, "/x").await.as_deref() == Some("b")).then_some(())
    })
    .await;
}

async fn control_plane_restart_keeps_config_and_resumes_the_stream(api: &str) {
    let s = setup(api).await;
    all_acked(&s.xds).await;
    let streams = s.xds.streams();
    s.xds.stop();
    // Disconnected: the last good config keeps serving.
    for _ in 0..5 {
        assert_eq!(upstream_of(s.addr, "/x").await.as_deref(), Some("a"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.xds.restart();
    eventually("the client reconnects", APPLY, || async {
        (s.xds.streams() > streams).then_some(())
    })
    .await;
    // The resumed stream is live: a new push takes effect.
    s.xds.set(ROUTE, vec![routes("svc-b", "")]);
    eventually("requests reach upstream b", APPLY, || async {
        (upstream_of(s.addr, "/x").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    let resumed: Vec<_> = s
        .xds
        .requests()
        .into_iter()
        .filter(|r| r.stream >= streams && r.type_url == CLUSTER && !r.is_reply())
        .collect();
    assert!(
        resumed
            .iter()
            .any(|r| !r.version_info.is_empty() || r.initial_versions > 0),
        "the resumed stream tells the last accepted version: {resumed:?}"
    );
}
