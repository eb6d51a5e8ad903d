//! Strait started the way Istio's pilot-agent starts Envoy: from a bootstrap
//! pilot-agent rendered (`default_golden.json`, rewritten only where a test
//! must: the xDS unix socket path and the ports), with pilot-agent's command
//! line, talking delta ADS over that unix socket to a control plane that
//! serves a listener and a cluster. The data path routes, the node the
//! control plane sees is the bootstrap's, the Prometheus listener (15090)
//! reaches the admin server's `/stats/prometheus` through the
//! `prometheus_stats` cluster, and the readiness listener (15021) forwards
//! `/healthz/ready` to the `agent` cluster.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use strait_test_support::{
    TempDir, eventually_blocking,
    upstream::{Upstream, http_echo},
    xds_server::{CLUSTER, LISTENER, XdsServer, resource},
};

const BIN: &str = env!("CARGO_BIN_EXE_strait");
const WAIT: Duration = Duration::from_secs(30);

/// Kills the child on drop so a failing test leaves no proxy behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One HTTP/1.1 GET on a fresh connection: (status line, whole response).
fn get(port: u16, path: &str) -> Option<String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The static cluster named `name` in the bootstrap.
fn cluster<'a>(b: &'a mut Value, name: &str) -> &'a mut Value {
    b["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
        .iter_mut()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("cluster {name}"))
}

fn first_endpoint(c: &mut Value) -> &mut Value {
    &mut c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
}

/// Rewrites the golden bootstrap for a test: the xDS socket, the admin port
/// (and the `prometheus_stats` cluster that points at it), the 15090 and
/// 15021 listeners' ports (loopback only), and the `agent` cluster's port.
fn rewrite(golden: &str, xds: &Path, admin: u16, prom: u16, ready: u16, agent: u16) -> String {
    let mut b: Value = serde_json::from_str(golden).expect("golden JSON");
    *first_endpoint(cluster(&mut b, "xds-grpc")) = json!({"pipe": {"path": xds}});
    b["admin"]["address"]["socket_address"]["port_value"] = json!(admin);
    first_endpoint(cluster(&mut b, "prometheus_stats"))["socket_address"]["port_value"] =
        json!(admin);
    first_endpoint(cluster(&mut b, "agent"))["socket_address"]["port_value"] = json!(agent);
    for l in b["static_resources"]["listeners"]
        .as_array_mut()
        .expect("listeners")
    {
        let port = match l["name"].as_str() {
            Some("0.0.0.0_15090") => prom,
            Some("0.0.0.0_15021") => ready,
            other => panic!("unexpected listener {other:?}"),
        };
        l["address"]["socket_address"]["address"] = json!("127.0.0.1");
        l["address"]["socket_address"]["port_value"] = json!(port);
    }
    serde_json::to_string_pretty(&b).expect("JSON")
}

/// A control plane on a unix socket serving listener `web` (on `web`) and
/// cluster `app`, and the rewritten golden bootstrap pointing at it.
struct Setup {
    _dir: TempDir,
    xds: XdsServer,
    app: Upstream,
    agent: Upstream,
    config: std::path::PathBuf,
    admin: u16,
    prom: u16,
    ready: u16,
}

fn setup(tag: &str) -> Setup {
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/istio/bootstrap/default_golden.json"),
    )
    .expect("golden");
    let dir = TempDir::new(tag);
    let socket = dir.path().join("XDS");
    let xds = XdsServer::start_unix(&socket);
    let app = http_echo("app");
    let agent = http_echo("agent");
    let (admin, prom, ready) = (free_port(), free_port(), free_port());
    let config = dir.path().join("envoy-rev.json");
    std::fs::write(
        &config,
        rewrite(&golden, &socket, admin, prom, ready, agent.addr.port()),
    )
    .expect("write bootstrap");
    xds.set(
        CLUSTER,
        vec![resource(
            "envoy.config.cluster.v3.Cluster",
            &format!(
                "name: app\ntype: STATIC\nconnect_timeout: 1s\nload_assignment:\n  cluster_name: app\n  endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]\n",
                app.addr.port()
            ),
        )],
    );
    xds.set(
        LISTENER,
        vec![resource(
            "envoy.config.listener.v3.Listener",
            r#"
name: web
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: web
      route_config:
        virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: app}}]}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
        )],
    );
    Setup {
        _dir: dir,
        xds,
        app,
        agent,
        config,
        admin,
        prom,
        ready,
    }
}

/// Starts the binary with pkg/envoy/proxy.go's arguments, in its order,
/// then `extra`.
fn start(config: &Path, extra: &[&str]) -> Running {
    Running(
        Command::new(BIN)
            .arg("-c")
            .arg(config)
            .args([
                "--drain-time-s",
                "1",
                "--drain-strategy",
                "immediate",
                "--local-address-ip-version",
                "v4",
                "--file-flush-interval-msec",
                "1000",
                "--disable-hot-restart",
                "--allow-unknown-static-fields",
                "--component-log-level",
                "misc:error",
                "--concurrency",
                "1",
                "-l",
                "warning",
                "--log-format",
                "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("strait starts"),
    )
}

/// Waits for the xDS listener to route `/hello` to the `app` upstream. The
/// listener binds port 0 (a port picked ahead could be taken meanwhile by
/// another process); its port comes from the admin `/listeners`.
fn routes(s: &Setup) {
    let reply = eventually_blocking("the xDS listener to route", WAIT, || {
        let listeners = get(s.admin, "/listeners")?;
        let web: u16 = listeners
            .lines()
            .find_map(|l| l.strip_prefix("web::"))?
            .rsplit(':')
            .next()?
            .trim()
            .parse()
            .ok()?;
        get(web, "/hello").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(reply.contains("/hello"), "{reply}");
    assert!(
        s.app
            .counters
            .paths
            .lock()
            .expect("paths")
            .contains(&"/hello".to_owned())
    );
}

#[test]
fn started_like_pilot_agent_starts_envoy() {
    let s = setup("pilot-agent");
    let _proxy = start(&s.config, &[]);
    // The listener and cluster came over ADS on the unix socket.
    routes(&s);

    // The node: the bootstrap's, announced as Strait, on the first request
    // of the stream only (`set_node_on_first_message_only: true`, delta).
    let requests = s.xds.requests();
    assert!(
        requests.iter().all(|r| r.delta),
        "DELTA_GRPC from the bootstrap"
    );
    let first = requests.first().expect("a request");
    let node = first.node.as_ref().expect("node on the first request");
    assert_eq!(node.id, "sidecar~1.2.3.4~foo~bar");
    assert_eq!(node.cluster, "istio-proxy");
    assert_eq!(node.user_agent_name, "strait");
    assert!(node.user_agent_version_type.is_some());
    let meta = format!("{:?}", node.metadata);
    assert!(
        meta.contains("ISTIO_VERSION") && meta.contains("binary-1.0"),
        "{meta}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.stream == first.stream)
            .skip(1)
            .all(|r| r.node.is_none()),
        "node only on the first request"
    );
    eventually_blocking("the ACKs", WAIT, || {
        (s.xds.acked_current(LISTENER) && s.xds.acked_current(CLUSTER)).then_some(())
    });

    // 15090: /stats/prometheus through the listener to the admin server.
    let stats = eventually_blocking("stats through 15090", WAIT, || {
        get(s.prom, "/stats/prometheus").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(stats.contains("envoy_"), "{stats}");
    // The compressor filters are accepted and leave the body as it is.
    assert!(
        !stats.to_ascii_lowercase().contains("content-encoding"),
        "{stats}"
    );
    // Only /stats/prometheus is routed there.
    let other = get(s.prom, "/quitquitquit").expect("answers");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");

    // 15021: /healthz/ready forwarded to the agent.
    let health = get(s.ready, "/healthz/ready").expect("answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        s.agent
            .counters
            .paths
            .lock()
            .expect("paths")
            .contains(&"/healthz/ready".to_owned())
    );
}

#[test]
fn config_yaml_and_service_flags_change_what_the_control_plane_sees() {
    let s = setup("pilot-agent-overrides");
    // The node on every request. Written into the file: a `false` in
    // `--config-yaml` cannot unset the file's `true`, because a protobuf
    // merge skips default values (Envoy's `MergeFrom` too).
    let mut b: Value =
        serde_json::from_str(&std::fs::read_to_string(&s.config).expect("read")).expect("JSON");
    b["dynamic_resources"]["ads_config"]["set_node_on_first_message_only"] = json!(false);
    std::fs::write(&s.config, b.to_string()).expect("write");
    // State of the world instead of delta, merged over the file; then the
    // node's cluster from the flag.
    let _proxy = start(
        &s.config,
        &[
            "--config-yaml",
            r#"{"dynamic_resources": {"ads_config": {"api_type": "GRPC"}}}"#,
            "--service-cluster",
            "from-the-flag",
        ],
    );
    routes(&s);
    eventually_blocking("the ACKs", WAIT, || {
        (s.xds.acked_current(LISTENER) && s.xds.acked_current(CLUSTER)).then_some(())
    });
    let requests = s.xds.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    assert!(requests.iter().all(|r| !r.delta), "GRPC from --config-yaml");
    for r in &requests {
        let node = r.node.as_ref().expect("node on every request");
        assert_eq!(node.id, "sidecar~1.2.3.4~foo~bar");
        assert_eq!(node.cluster, "from-the-flag");
    }
}
