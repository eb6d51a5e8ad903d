//! The admin endpoints Istio's tooling reads, in Envoy's formats, checked
//! against a real Envoy given the same config (and the same control plane):
//! `/config_dump` (structure, `@type`s, keys, redaction, the query
//! parameters), `/stats` (Envoy's names, `usedonly`, `filter`, JSON), and
//! `/drain_listeners`, `/server_info`.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use serde_json::Value;
use strait_test_support::{
    admin,
    certs::TestCa,
    client::Client,
    envoy::Envoy,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
    xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, XdsServer, ads_bootstrap, resource},
};

const APPLY: Duration = Duration::from_secs(15);

/// `server.state` is one process-wide gauge that each admin server sets
/// before rendering; tests reading it run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn get_json(admin: SocketAddr, path: &str) -> Value {
    let r = admin::get(admin, path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()))
}

async fn get_text(admin: SocketAddr, path: &str) -> String {
    let r = admin::get(admin, path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

/// The dump must be a valid `envoy.admin.v3.ConfigDump` (unknown fields
/// refused), as Envoy's own tooling decodes it.
fn assert_decodes(dump: &Value) {
    if let Err(e) = strait_envoy::parse::parse_value(dump.clone(), "envoy.admin.v3.ConfigDump") {
        panic!("not an envoy.admin.v3.ConfigDump: {e}\n{dump:#}");
    }
}

fn types(dump: &Value) -> Vec<String> {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["@type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn config<'a>(dump: &'a Value, kind: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["@type"] == format!("type.googleapis.com/envoy.admin.v3.{kind}"))
        .unwrap_or_else(|| panic!("no {kind} in {dump:#}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every config type of ours is in Envoy's dump in the same order, with
/// the same keys, and each resource list's first entry has the same keys
/// (recursively one level: `active_state` and the like).
fn assert_same_shape(ours: &Value, envoy: &Value) {
    let (ot, et) = (types(ours), types(envoy));
    let common: Vec<&String> = et.iter().filter(|t| ot.contains(t)).collect();
    assert_eq!(
        ot.iter().collect::<Vec<_>>(),
        common,
        "config types (Envoy's: {et:?})"
    );
    for t in &ot {
        let kind = t.rsplit('.').next().unwrap_or_default();
        if kind == "BootstrapConfigDump" {
            continue;
        }
        let (o, e) = (config(ours, kind), config(envoy, kind));
        assert_eq!(keys(o), keys(e), "{kind} keys\nours: {o:#}\nenvoy: {e:#}");
        for (field, list) in o.as_object().into_iter().flatten() {
            let (Some(ol), Some(el)) = (list.as_array(), e[field].as_array()) else {
                continue;
            };
            let (Some(oi), Some(ei)) = (ol.first(), el.first()) else {
                continue;
            };
            assert_eq!(keys(oi), keys(ei), "{kind}.{field}[0] keys");
            for (k, v) in oi.as_object().into_iter().flatten() {
                if k.ends_with("_state") {
                    assert_eq!(keys(v), keys(&ei[k]), "{kind}.{field}[0].{k} keys");
                }
                if v.get("@type").is_some() {
                    assert_eq!(v["@type"], ei[k]["@type"], "{kind}.{field}[0].{k} type");
                }
            }
        }
    }
}

fn names_in(dump: &Value, kind: &str, field: &str, inner: &str, name: &str) -> BTreeSet<String> {
    config(dump, kind)[field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i[inner][name].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------
// Static config: the same bootstrap for Strait and Envoy.

/// A plain HTTP listener (inline routes to `backend`), a TLS listener with
/// an inline private key, an INBOUND listener, and `backend`. The stats
/// recorder is process-wide, so each test names its own connection
/// manager and cluster stats with `tag` (`http.{tag}.…`,
/// `cluster.{tag}.…`).
fn static_bootstrap(up: &Upstream, cert_pem: &str, key_pem: &str, tag: &str) -> String {
    let hcm = |prefix: &str| {
        format!(
            r#"
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {prefix}
          route_config:
            name: {prefix}-routes
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: {tag}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#
        )
    };
    let cert = serde_json::to_string(cert_pem).unwrap_or_default();
    let key = serde_json::to_string(key_pem).unwrap_or_default();
    format!(
        r#"
node: {{id: test-node, cluster: test}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:{ingress}
  - name: tls
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{inline_string: {cert}}}
              private_key: {{inline_string: {key}}}
      filters:{tls}
  - name: inbound
    traffic_direction: INBOUND
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:{inbound}
  clusters:
  - name: {tag}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {tag}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        ingress = hcm(tag),
        tls = hcm("tls"),
        inbound = hcm("inbound"),
        port = up.addr.port(),
    )
}

fn tls_material() -> (String, String) {
    let ca = TestCa::new("admin-dump");
    let leaf = ca.issue("", &["localhost"]);
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    (read(&leaf.cert), read(&leaf.key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_config_dump_has_envoys_shape_and_redacts_keys() {
    let _serial = SERIAL.lock().await;
    let up = http_echo("backend");
    let (cert, key) = tls_material();
    let yaml = static_bootstrap(&up, &cert, &key, "dump");
    let proxy = TestProxy::start(&yaml, 1);
    let envoy = tokio::task::spawn_blocking({
        let yaml = yaml.clone();
        move || Envoy::start(&yaml)
    })
    .await
    .unwrap_or_else(|e| panic!("envoy: {e}"));

    let ours = get_json(proxy.admin(), "/config_dump?include_eds").await;
    let theirs = get_json(envoy.admin(), "/config_dump?include_eds").await;
    assert_decodes(&ours);
    assert_same_shape(&ours, &theirs);
    assert_eq!(
        names_in(
            &ours,
            "ListenersConfigDump",
            "static_listeners",
            "listener",
            "name"
        ),
        set(&["ingress", "tls", "inbound"])
    );
    assert_eq!(
        names_in(
            &ours,
            "RoutesConfigDump",
            "static_route_configs",
            "route_config",
            "name"
        ),
        names_in(
            &theirs,
            "RoutesConfigDump",
            "static_route_configs",
            "route_config",
            "name"
        ),
        "inline route configs are static route configs"
    );
    assert_eq!(
        names_in(
            &ours,
            "EndpointsConfigDump",
            "static_endpoint_configs",
            "endpoint_config",
            "cluster_name"
        ),
        set(&["dump"])
    );

    // The private key is redacted everywhere, as Envoy does.
    let key_line = key
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("a key body line"))
        .to_owned();
    for (who, dump) in [("strait", &ours), ("envoy", &theirs)] {
        let text = dump.to_string();
        assert!(!text.contains(&key_line), "{who} leaks the private key");
        assert!(text.contains("[redacted]"), "{who} shows no redaction");
        assert!(
            text.contains("BEGIN CERTIFICATE"),
            "{who} keeps the certificate"
        );
    }
    let ours_key = &config(&ours, "ListenersConfigDump")["static_listeners"];
    assert!(
        ours_key
            .to_string()
            .contains(r#""private_key":{"inline_string":"[redacted]"}"#),
        "{ours_key}"
    );

    // No endpoints without include_eds, as Envoy.
    let plain = get_json(proxy.admin(), "/config_dump").await;
    assert!(
        !types(&plain)
            .iter()
            .any(|t| t.ends_with("EndpointsConfigDump"))
    );
    let envoy_plain = get_json(envoy.admin(), "/config_dump").await;
    assert_eq!(
        types(&plain),
        types(&envoy_plain)
            .into_iter()
            .filter(|t| types(&plain).contains(t))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_read_as_pilot_agent_reads_them_match_envoy() {
    let _serial = SERIAL.lock().await;
    let up = http_echo("backend");
    let (cert, key) = tls_material();
    let yaml = static_bootstrap(&up, &cert, &key, "pilot");
    let proxy = TestProxy::start(&yaml, 1);
    let envoy = tokio::task::spawn_blocking({
        let yaml = yaml.clone();
        move || Envoy::start(&yaml)
    })
    .await
    .unwrap_or_else(|e| panic!("envoy: {e}"));
    let strait_addr = proxy.listener("ingress");
    let envoy_addr = envoy.listener("ingress");
    // Three requests through each; the connection stays open.
    let mut sc = Client::http1(strait_addr).await.expect("strait connection");
    let mut ec = Client::http1(envoy_addr).await.expect("envoy connection");
    for _ in 0..3 {
        assert_eq!(sc.get("/x").await.expect("strait").status, 200);
        assert_eq!(ec.get("/x").await.expect("envoy").status, 200);
    }

    // pilot-agent's readiness query, percent-encoded as it sends it.
    let ready =
        "/stats?usedonly&filter=%5E%28server%5C.state%7Clistener_manager%5C.workers_started%29";
    let ours = get_text(proxy.admin(), ready).await;
    assert_eq!(
        ours,
        "listener_manager.workers_started: 1\nserver.state: 0\n"
    );
    assert_eq!(ours, get_text(envoy.admin(), ready).await);

    for (filter, expected) in [
        (
            r"^http\.pilot\.downstream_rq_total$",
            "http.pilot.downstream_rq_total: 3\n",
        ),
        (
            r"^cluster\.pilot\.upstream_rq_2xx$",
            "cluster.pilot.upstream_rq_2xx: 3\n",
        ),
        (
            r"^cluster\.pilot\.upstream_rq_total$",
            "cluster.pilot.upstream_rq_total: 3\n",
        ),
        (
            r"^http\.pilot\.downstream_cx_active$",
            "http.pilot.downstream_cx_active: 1\n",
        ),
        (
            r"^cluster_manager\.active_clusters$",
            "cluster_manager.active_clusters: 1\n",
        ),
    ] {
        let path = format!("/stats?usedonly&filter={filter}");
        let ours = get_text(proxy.admin(), &path).await;
        assert_eq!(ours, expected, "{path}");
        assert_eq!(ours, get_text(envoy.admin(), &path).await, "envoy: {path}");
    }

    // Per-listener stats are named by the configured address, as Envoy's
    // (`_0` for port 0). The gauge is shared by every port-0 listener of
    // the process, so only the name is compared.
    let listener_stat = |text: String| {
        text.lines()
            .filter_map(|l| l.split_once(": ").map(|(n, _)| n.to_owned()))
            .filter(|n| n.starts_with("listener.127"))
            .collect::<BTreeSet<_>>()
    };
    let filter = "/stats?filter=downstream_cx_active$";
    let ours = listener_stat(get_text(proxy.admin(), filter).await);
    assert!(
        ours.contains("listener.127.0.0.1_0.downstream_cx_active"),
        "{ours:?}"
    );
    let theirs = listener_stat(get_text(envoy.admin(), filter).await);
    assert!(ours.is_subset(&theirs), "ours {ours:?}, Envoy's {theirs:?}");

    // JSON form.
    let json = get_json(
        proxy.admin(),
        r"/stats?format=json&filter=^http\.pilot\.downstream_rq_total$",
    )
    .await;
    assert_eq!(
        json,
        serde_json::json!({"stats": [{"name": "http.pilot.downstream_rq_total", "value": 3}]})
    );
    // A bad regex is a 400 naming the parameter.
    let bad = admin::get(proxy.admin(), "/stats?filter=(")
        .await
        .expect("answer");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("filter"), "{}", bad.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_listeners_stops_inbound_then_all_and_reports_draining() {
    let _serial = SERIAL.lock().await;
    let up = http_echo("backend");
    let (cert, key) = tls_material();
    let proxy = TestProxy::start(&static_bootstrap(&up, &cert, &key, "drain"), 1);
    let (ingress, inbound) = (proxy.listener("ingress"), proxy.listener("inbound"));
    let serves = |addr: SocketAddr| async move {
        match Client::http1(addr).await {
            Ok(mut c) => c.get("/x").await.is_ok_and(|r| r.status == 200),
            Err(_) => false,
        }
    };
    assert!(serves(ingress).await && serves(inbound).await);
    let info = get_json(proxy.admin(), "/server_info").await;
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["node"]["id"], "test-node");

    let get = admin::get(proxy.admin(), "/drain_listeners")
        .await
        .expect("answer");
    assert_eq!(get.status, 405, "drain needs POST");
    let mut c = Client::http1(proxy.admin()).await.expect("admin");
    let req = http::Request::post("/drain_listeners?inboundonly&graceful")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(c.send(req).await.expect("drain").status, 200);
    eventually("the inbound listener stops accepting", APPLY, || async {
        (!serves(inbound).await).then_some(())
    })
    .await;
    assert!(serves(ingress).await, "outbound listeners keep serving");
    let info = get_json(proxy.admin(), "/server_info").await;
    assert_eq!(info["state"], "DRAINING");
    assert_eq!(
        get_text(proxy.admin(), r"/stats?filter=^server\.state$").await,
        "server.state: 1\n"
    );

    let req = http::Request::post("/drain_listeners")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let mut c = Client::http1(proxy.admin()).await.expect("admin");
    assert_eq!(c.send(req).await.expect("drain").status, 200);
    eventually("every listener stops accepting", APPLY, || async {
        (!serves(ingress).await).then_some(())
    })
    .await;
    let listeners = get_text(proxy.admin(), "/listeners").await;
    assert!(listeners.is_empty(), "{listeners}");
}

// ---------------------------------------------------------------------
// Dynamic config: Strait and Envoy against the same control plane.

/// A listener named `name`; with `secret`, TLS with that SDS certificate.
fn web_listener(
    name: &str,
    secret: Option<&str>,
) -> (String, envoy_types::pb::google::protobuf::Any) {
    let tls = secret.map_or(String::new(), |s| {
        format!(
            r#"
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs:
        - name: {s}
          sds_config: {{ads: {{}}, resource_api_version: V3}}"#
        )
    });
    resource(
        "envoy.config.listener.v3.Listener",
        &format!(
            r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {name}
      rds: {{route_config_name: web-routes, config_source: {{ads: {{}}, resource_api_version: V3}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}{tls}
"#
        ),
    )
}

/// The resources both proxies get: listeners (one TLS with an SDS
/// certificate), routes, EDS clusters and their endpoints, and the secret.
/// `with_warming` adds a cluster without endpoints and a listener whose
/// secret never comes.
fn serve_resources(xds: &XdsServer, a: &Upstream, with_warming: bool) {
    let mut listeners = vec![
        web_listener("web", None),
        web_listener("web-tls", Some("default")),
    ];
    if with_warming {
        listeners.push(web_listener("web-wait", Some("missing")));
    }
    xds.set(LISTENER, listeners);
    let (cert, key) = tls_material();
    xds.set(
        SECRET,
        vec![resource(
            "envoy.extensions.transport_sockets.tls.v3.Secret",
            &format!(
                "{{name: default, tls_certificate: {{certificate_chain: {{inline_string: {}}}, private_key: {{inline_string: {}}}}}}}",
                serde_json::Value::from(cert),
                serde_json::Value::from(key),
            ),
        )],
    );
    xds.set(
        ROUTE,
        vec![resource(
            "envoy.config.route.v3.RouteConfiguration",
            r#"{name: web-routes, virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: svc-a}}]}]}"#,
        )],
    );
    let eds = |name: &str| {
        resource(
            "envoy.config.cluster.v3.Cluster",
            &format!(
                "{{name: {name}, type: EDS, connect_timeout: 1s, eds_cluster_config: {{eds_config: {{ads: {{}}, initial_fetch_timeout: 0s, resource_api_version: V3}}}}}}"
            ),
        )
    };
    let mut clusters = vec![eds("svc-a"), eds("svc-b")];
    // svc-c never gets endpoints: it stays warming (no fetch timeout). Envoy
    // would not go LIVE with it among the first clusters, so it comes once
    // both proxies run.
    if with_warming {
        clusters.push(eds("svc-c"));
    }
    xds.set(CLUSTER, clusters);
    let cla = |name: &str| {
        resource(
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
            &format!(
                "{{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}",
                a.addr.port()
            ),
        )
    };
    xds.set(ENDPOINT, vec![cla("svc-a"), cla("svc-b")]);
}

/// Waits until `admin`'s dump shows every pushed resource.
async fn settled(admin: SocketAddr) -> Value {
    eventually("the dump shows every resource", APPLY, || async {
        let d = get_json(admin, "/config_dump?include_eds").await;
        let active = names_in(
            &d,
            "ClustersConfigDump",
            "dynamic_active_clusters",
            "cluster",
            "name",
        );
        let routes = names_in(
            &d,
            "RoutesConfigDump",
            "dynamic_route_configs",
            "route_config",
            "name",
        );
        (active == set(&["svc-a", "svc-b"]) && routes == set(&["web-routes"])).then_some(d)
    })
    .await
}

/// Waits until `admin`'s dump shows svc-c warming.
async fn warming(admin: SocketAddr) -> Value {
    eventually("svc-c warming in the dump", APPLY, || async {
        let d = get_json(admin, "/config_dump?include_eds").await;
        let warming = names_in(
            &d,
            "ClustersConfigDump",
            "dynamic_warming_clusters",
            "cluster",
            "name",
        );
        (warming == set(&["svc-c"])).then_some(d)
    })
    .await
}

async fn dynamic_dump(api: &str) {
    let _serial = SERIAL.lock().await;
    let xds = XdsServer::start();
    let a = http_echo("a");
    serve_resources(&xds, &a, false);
    let yaml = ads_bootstrap(xds.addr(), api, "test");
    let proxy = TestProxy::start(&yaml, 1);
    let envoy = tokio::task::spawn_blocking({
        let yaml = yaml.clone();
        move || Envoy::start(&yaml)
    })
    .await
    .unwrap_or_else(|e| panic!("envoy: {e}"));
    settled(proxy.admin()).await;
    settled(envoy.admin()).await;
    serve_resources(&xds, &a, true);
    let ours = warming(proxy.admin()).await;
    let theirs = warming(envoy.admin()).await;
    assert_decodes(&ours);
    assert_same_shape(&ours, &theirs);

    let clusters = config(&ours, "ClustersConfigDump");
    if api == "GRPC" {
        assert_eq!(clusters["version_info"], xds.version(CLUSTER));
        assert_eq!(
            clusters["version_info"],
            config(&theirs, "ClustersConfigDump")["version_info"]
        );
    }
    assert_eq!(
        names_in(
            &ours,
            "ClustersConfigDump",
            "dynamic_warming_clusters",
            "cluster",
            "name"
        ),
        set(&["svc-c"])
    );
    assert_eq!(
        names_in(
            &ours,
            "ClustersConfigDump",
            "static_clusters",
            "cluster",
            "name"
        ),
        set(&["xds-grpc"])
    );
    // SDS secrets: the delivered one with its key redacted, the awaited one
    // warming, as in Envoy's dump.
    for dump in [&ours, &theirs] {
        let secrets = config(dump, "SecretsConfigDump");
        let active = &secrets["dynamic_active_secrets"][0];
        assert_eq!(active["name"], "default", "{secrets:#}");
        assert_eq!(
            active["secret"]["tls_certificate"]["private_key"]["inline_string"], "[redacted]",
            "{secrets:#}"
        );
        assert!(
            active["secret"]["tls_certificate"]["certificate_chain"]["inline_string"]
                .as_str()
                .is_some_and(|c| c.contains("BEGIN CERTIFICATE")),
            "{secrets:#}"
        );
        assert_eq!(secrets["dynamic_warming_secrets"][0]["name"], "missing");
    }
    let secret_version =
        &config(&ours, "SecretsConfigDump")["dynamic_active_secrets"][0]["version_info"];
    if api == "GRPC" {
        assert_eq!(*secret_version, xds.version(SECRET));
    }
    let listener = &config(&ours, "ListenersConfigDump")["dynamic_listeners"][0];
    assert_eq!(listener["name"], "web");
    assert_eq!(
        listener["active_state"]["listener"]["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    assert!(
        listener["active_state"]["last_updated"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "{listener}"
    );
    assert_eq!(
        names_in(
            &ours,
            "EndpointsConfigDump",
            "dynamic_endpoint_configs",
            "endpoint_config",
            "cluster_name"
        ),
        set(&["svc-a", "svc-b"])
    );

    // ?resource= lists the entries of one field, typed.
    let only = get_json(
        proxy.admin(),
        "/config_dump?resource=dynamic_active_clusters",
    )
    .await;
    assert_decodes(&only);
    let items = only["configs"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{only:#}");
    for i in &items {
        assert_eq!(
            i["@type"],
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster"
        );
    }
    let envoy_only = get_json(
        envoy.admin(),
        "/config_dump?resource=dynamic_active_clusters",
    )
    .await;
    assert_eq!(
        keys(&items[0]),
        keys(&envoy_only["configs"][0]),
        "resource= entries as Envoy's"
    );
    // ?name_regex= and ?mask=.
    let b = get_json(
        proxy.admin(),
        "/config_dump?resource=dynamic_active_clusters&name_regex=svc-b&mask=cluster.name",
    )
    .await;
    assert_eq!(
        b,
        serde_json::json!({"configs": [{
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
            "cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "svc-b"},
        }]})
    );
    let envoy_b = get_json(
        envoy.admin(),
        "/config_dump?resource=dynamic_active_clusters&name_regex=svc-b&mask=cluster.name",
    )
    .await;
    assert_eq!(b, envoy_b, "the same selection as Envoy");
    let listeners = get_json(proxy.admin(), "/config_dump?mask=dynamic_listeners").await;
    for c in listeners["configs"].as_array().into_iter().flatten() {
        let k = keys(c);
        assert!(
            k == set(&["@type"]) || k == set(&["@type", "dynamic_listeners"]),
            "{c}"
        );
    }
    let missing = admin::get(proxy.admin(), "/config_dump?resource=nope")
        .await
        .expect("answer");
    assert_eq!(missing.status, 404);

    // A push shows up with its new version; unchanged resources keep theirs.
    let before = config(&ours, "ClustersConfigDump")["dynamic_active_clusters"].clone();
    xds.set(
        ROUTE,
        vec![resource(
            "envoy.config.route.v3.RouteConfiguration",
            r#"{name: web-routes, virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: svc-b}}]}]}"#,
        )],
    );
    let after = eventually("the new route config in the dump", APPLY, || async {
        let d = get_json(proxy.admin(), "/config_dump").await;
        let rc = &config(&d, "RoutesConfigDump")["dynamic_route_configs"][0];
        (rc["route_config"].to_string().contains("svc-b")).then_some(d)
    })
    .await;
    assert_eq!(
        config(&after, "ClustersConfigDump")["dynamic_active_clusters"],
        before,
        "clusters untouched by a route push"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_config_dump_matches_envoy_against_the_same_control_plane() {
    dynamic_dump("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_config_dump_matches_envoy_against_the_same_control_plane() {
    dynamic_dump("DELTA_GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_update_stats_under_envoys_names() {
    let _serial = SERIAL.lock().await;
    let xds = XdsServer::start();
    let a = http_echo("a");
    serve_resources(&xds, &a, false);
    let proxy = TestProxy::start(&ads_bootstrap(xds.addr(), "GRPC", "test"), 1);
    settled(proxy.admin()).await;
    let text = get_text(
        proxy.admin(),
        r"/stats?usedonly&filter=^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$",
    )
    .await;
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    assert!(
        names.contains(&"cluster_manager.cds.update_success"),
        "{text}"
    );
    assert!(
        names.contains(&"listener_manager.lds.update_success"),
        "{text}"
    );
    let connected = get_text(
        proxy.admin(),
        r"/stats?filter=^control_plane\.connected_state$",
    )
    .await;
    assert_eq!(connected, "control_plane.connected_state: 1\n");
}
