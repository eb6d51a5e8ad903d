//! xDS under load: 1,000 route pushes through the test control plane (state
//! of the world and delta) while keep-alive connections send requests back
//! to back through the proxy. Push `n` routes everything to upstream `a`
//! when `n` is even and `b` when odd, rewriting the path to `/v{n}/`, so
//! every echoed response names the version that routed it and the cluster
//! it reached; they must agree. Mid-load a bad push is NACKed while the
//! previous snapshot keeps serving, and the control plane is killed and
//! restarted: no request is lost, the stream resumes (delta with
//! `initial_resource_versions`) and the next push applies.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use envoy_types::pb::google::protobuf::Any;
use strait_test_support::{
    client::{Client, Reply},
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
    xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsServer, resource},
};

const PUSHES: u64 = 1000;
const CONNECTIONS: usize = 24;
/// The push that is replaced by a bad one first, and the one after which
/// the control plane is restarted.
const BAD_AT: u64 = 300;
const RESTART_AT: u64 = 600;
const APPLY: Duration = Duration::from_secs(10);

/// Both tests measure throughput: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bootstrap(xds: SocketAddr, api: &str) -> String {
    strait_test_support::xds_server::ads_bootstrap(xds, api, "load")
}

fn listener() -> (String, Any) {
    resource(
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
      rds: {route_config_name: web-routes, config_source: {ads: {}, resource_api_version: V3}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
    )
}

/// Route config version `n`; `regex` adds a route with that regex first
/// (a bad one makes the push invalid). Built as a proto directly: parsing
/// text goes through the 50 MB descriptor pool, which would dominate 1,000
/// pushes.
fn routes(n: u64, regex: Option<&str>) -> (String, Any) {
    use envoy_types::pb::envoy::{
        config::route::v3::{
            Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
            route_match,
        },
        r#type::matcher::v3::RegexMatcher,
    };
    use prost::{Message, Name};
    let cluster = if n.is_multiple_of(2) { "a" } else { "b" };
    let route_to = |specifier, cluster: &str, rewrite: String| Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(specifier),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_owned())),
            prefix_rewrite: rewrite,
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut all = Vec::new();
    if let Some(r) = regex {
        all.push(route_to(
            route_match::PathSpecifier::SafeRegex(RegexMatcher {
                regex: r.to_owned(),
                ..Default::default()
            }),
            "a",
            String::new(),
        ));
    }
    all.push(route_to(
        route_match::PathSpecifier::Prefix("/".into()),
        cluster,
        format!("/v{n}/"),
    ));
    let rc = RouteConfiguration {
        name: "web-routes".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: all,
            ..Default::default()
        }],
        ..Default::default()
    };
    let any = Any {
        type_url: RouteConfiguration::type_url(),
        value: rc.encode_to_vec(),
    };
    ("web-routes".into(), any)
}

fn eds_cluster(name: &str) -> (String, Any) {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!(
            "{{name: {name}, type: EDS, connect_timeout: 1s, eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}}}"
        ),
    )
}

fn endpoints(name: &str, up: &Upstream) -> (String, Any) {
    resource(
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &format!(
            "{{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}",
            up.addr.port()
        ),
    )
}

/// The version and cluster a response reveals, if they agree.
fn consistent(r: &Reply) -> Result<u64, String> {
    let upstream = r.header("x-upstream").unwrap_or("");
    let body = r.text();
    let version = body
        .split_once("\"path\":\"/v")
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .ok_or_else(|| format!("no version in {body}"))?;
    let expected = if version.is_multiple_of(2) { "a" } else { "b" };
    if upstream == expected {
        Ok(version)
    } else {
        Err(format!(
            "version {version} routed to upstream {upstream:?}, not {expected}"
        ))
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failures: Vec<String>,
    inconsistent: Vec<String>,
    versions: BTreeSet<u64>,
    regressions: u64,
}

/// One keep-alive connection sending requests back to back until `stop`,
/// publishing the newest version seen and counting answers.
async fn load(
    addr: SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    newest: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    let path = format!("/load/{id}");
    let mut client = Client::http1(addr).await.expect("load connection");
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        match client.get(&path).await {
            Ok(r) if r.status == 200 => match consistent(&r) {
                Ok(v) => {
                    tally.ok += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                    if v < last {
                        tally.regressions += 1;
                    }
                    last = v;
                    tally.versions.insert(v);
                    newest.fetch_max(v, Ordering::SeqCst);
                }
                Err(e) => tally.inconsistent.push(e),
            },
            Ok(r) => tally.failures.push(format!("{}: {}", r.status, r.text())),
            Err(e) => {
                tally.failures.push(format!("{e:#}"));
                client = Client::http1(addr).await.expect("load reconnection");
            }
        }
    }
    tally
}

/// Polls `cond` every millisecond (pushes apply in about that time; the
/// 20 ms of `eventually` would dominate 1,000 of them) until it holds, or
/// panics after `APPLY`.
async fn until(what: impl Fn() -> String, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < APPLY, "timed out waiting for {}", what());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn pushes_under_load(api: &str) {
    let _serial = SERIAL.lock().await;
    let xds = XdsServer::start();
    let (a, b) = (http_echo("a"), http_echo("b"));
    xds.set(LISTENER, vec![listener()]);
    xds.set(ROUTE, vec![routes(1, None)]);
    xds.set(CLUSTER, vec![eds_cluster("a"), eds_cluster("b")]);
    xds.set(ENDPOINT, vec![endpoints("a", &a), endpoints("b", &b)]);
    let proxy = TestProxy::start(&bootstrap(xds.addr(), api), 2);
    let addr = eventually("listener web from LDS", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;
    eventually("version 1 serves", APPLY, || async {
        let mut c = Client::http1(addr).await.ok()?;
        let r = c.get("/probe").await.ok()?;
        (consistent(&r) == Ok(1)).then_some(())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let newest = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|id| {
            tokio::spawn(load(
                addr,
                id,
                Arc::clone(&stop),
                Arc::clone(&newest),
                Arc::clone(&answered),
            ))
        })
        .collect();
    let seen = |n: u64| {
        let newest = Arc::clone(&newest);
        move || newest.load(Ordering::SeqCst) >= n
    };
    until(|| "version 1 under load".into(), seen(1)).await;

    let mut streams_before_restart = 0;
    for n in 2..=PUSHES {
        if n == BAD_AT {
            // A bad push: NACKed, and version n-1 keeps serving under load.
            let nacks = xds.nacks(ROUTE).len();
            let snapshot = proxy.version();
            xds.set(ROUTE, vec![routes(n, Some("(unclosed"))]);
            eventually("the bad push is NACKed", APPLY, || async {
                (xds.nacks(ROUTE).len() > nacks).then_some(())
            })
            .await;
            let detail = xds.nacks(ROUTE).pop().and_then(|r| r.error_detail);
            assert!(
                detail
                    .as_deref()
                    .is_some_and(|d| d.contains("web-routes") && d.contains("regex")),
                "{detail:?}"
            );
            let count = answered.load(Ordering::Relaxed);
            until(
                || "more answers after the NACK".into(),
                || answered.load(Ordering::Relaxed) > count + 100,
            )
            .await;
            assert_eq!(proxy.version(), snapshot, "a NACKed push made a snapshot");
            assert_eq!(
                newest.load(Ordering::SeqCst),
                n - 1,
                "the previous version serves"
            );
        }
        if n == RESTART_AT + 1 {
            streams_before_restart = xds.streams();
            xds.stop();
            // Disconnected: traffic keeps flowing on the last good config.
            let count = answered.load(Ordering::Relaxed);
            until(
                || "answers while the control plane is down".into(),
                || answered.load(Ordering::Relaxed) > count + 200,
            )
            .await;
            xds.restart();
            until(
                || "the client reconnects".into(),
                || xds.streams() > streams_before_restart,
            )
            .await;
        }
        xds.set(ROUTE, vec![routes(n, None)]);
        until(|| format!("version {n} serves"), seen(n)).await;
    }
    let pushes_done = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.expect("load task");
        total.ok += t.ok;
        total.failures.extend(t.failures);
        total.inconsistent.extend(t.inconsistent);
        total.versions.extend(t.versions);
        total.regressions += t.regressions;
    }
    let rate = total.ok as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{api}: {} requests in {elapsed:.2?} ({rate:.0}/s) over {CONNECTIONS} connections; \
         {PUSHES} pushes took {pushes_done:.2?} ({:.2?} each)",
        total.ok,
        pushes_done / u32::try_from(PUSHES).unwrap_or(1)
    );
    assert!(
        total.failures.is_empty(),
        "{} failed requests, first: {:?}",
        total.failures.len(),
        total.failures.first()
    );
    assert!(
        total.inconsistent.is_empty(),
        "{} inconsistent responses, first: {:?}",
        total.inconsistent.len(),
        total.inconsistent.first()
    );
    assert_eq!(
        total.regressions, 0,
        "a connection saw a version go backwards"
    );
    let all: BTreeSet<u64> = (1..=PUSHES).collect();
    assert_eq!(total.versions, all, "every version served requests");
    assert!(rate >= 2000.0, "load rate {rate:.0}/s is under 2000/s");

    // The resumed stream told the server what it had.
    let resumed: Vec<_> = xds
        .requests()
        .into_iter()
        .filter(|r| r.stream >= streams_before_restart && r.type_url == ROUTE && !r.is_reply())
        .collect();
    assert!(
        resumed.iter().any(|r| if r.delta {
            r.initial_versions > 0
        } else {
            !r.version_info.is_empty()
        }),
        "the resumed stream carries the accepted versions: {resumed:?}"
    );
    assert!(xds.nacks(LISTENER).is_empty() && xds.nacks(CLUSTER).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_thousand_pushes_under_load() {
    pushes_under_load("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_thousand_pushes_under_load() {
    pushes_under_load("DELTA_GRPC").await;
}
