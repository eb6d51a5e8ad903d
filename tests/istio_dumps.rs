//! Every Istio config dump in `fixtures/istio/configdumps/` served to Strait
//! by the test control plane.
//!
//! For each dump:
//! 1. Offline, every listener, route config, cluster and assignment is
//!    translated as the xDS client would; every problem must match one of
//!    the dump's documented reasons below (and every documented reason must
//!    still occur, so the lists shrink as features land).
//! 2. The whole dump is served as it is (with the test's endpoints for EDS
//!    clusters when the dump has none), as a control plane serves it. Strait
//!    accepts each resource on its own, as Envoy does: exactly the
//!    listeners and clusters step 1 refuses are NACKed, by name, for
//!    documented reasons only (route configs and assignments: at most
//!    those step 1 refuses), each shows its `error_state` in
//!    `/config_dump`, and everything else is live.
//! 3. Requests for a few of its routes reach the local upstreams the test
//!    put behind its clusters; for the sidecar dumps, a peer's mTLS request
//!    also reaches the app through `virtualInbound`. The lists of reasons
//!    are data: as a refused feature lands, its reason goes, and the
//!    resources it refused are expected live.
//!
//! Sidecar traffic is real, both ways: each test runs in its own network
//! namespace (this binary re-runs itself under `unshare --net`), where
//! `10.0.0.0/8` is local and iptables REDIRECTs, as Istio's init container
//! does, the app's connections to port 15001 and a peer sidecar's to 15006,
//! so Strait recovers the original destination with `SO_ORIGINAL_DST`.
//! Outbound, the app's plain HTTP and TCP reach the test's upstreams behind
//! the dump's clusters. Inbound, the peer speaks Istio mTLS to the pod's
//! port: `virtualInbound` takes its certificate and root (`default`,
//! `ROOTCA`) from the agent's SDS server on the `sds-grpc` unix socket,
//! checks the peer's certificate, and its HTTP chain forwards to the app
//! (an echo at the pod's IP) from 127.0.0.6 with `x-forwarded-client-cert`.
//! The scaffolding is in `istio_dumps/pod.rs`. Needs root, `unshare`, `ip`,
//! `iptables` and `openssl` (installed by `.ci/run`).
//!
//! Partial dumps: `eds-only` is served with one EDS cluster per assignment;
//! `sds-only` holds secrets that no TLS context of its test names, so
//! Strait (which, like Envoy, subscribes to secrets by name) requests none;
//! `ecds-only` holds WasmPlugin filters, which are refused: a listener that
//! needs them is NACKed for that reason.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::SocketAddr,
    path::PathBuf,
    time::Duration,
};

use envoy_types::pb::google::protobuf::Any;
use strait_test_support::{
    certs::TestCa,
    config_dump::{ConfigDump, EXTENSION_CONFIG, SECRET},
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo, http_echo_at},
    xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsServer, resource},
};

#[path = "istio_dumps/pod.rs"]
mod pod;

use pod::{
    Identity, POD_IP, bootstrap, expect_upstream, http_with_header, in_netns, mtls_from_peer,
    runtime, tcp_echo_at, tcp_via_sidecar,
};

/// How long a push may take to be applied and answered.
const APPLY: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> ConfigDump {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "fixtures/istio/configdumps",
        name,
    ]
    .iter()
    .collect();
    ConfigDump::load(&path)
}

/// An assignment of `name` to the upstream `up`, shaped as istiod writes
/// it: a locality with a weight (Istio's clusters balance by locality
/// weight, under which a locality without one gets no traffic).
fn endpoints(name: &str, up: SocketAddr) -> (String, Any) {
    resource(
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &format!(
            r#"
cluster_name: "{name}"
endpoints:
- locality: {{region: test}}
  load_balancing_weight: 1
  lb_endpoints:
  - endpoint: {{address: {{socket_address: {{address: "{ip}", port_value: {port}}}}}}}
"#,
            ip = up.ip(),
            port = up.port()
        ),
    )
}

/// A documented reason: a substring of the problem, and why it is refused.
type Reason = (&'static str, &'static str);

/// Step 1: every problem of `dump` matches a reason, every reason occurs.
fn judge_offline(dump: &ConfigDump, reasons: &[Reason]) {
    let refusals = dump.refusals();
    let mut used = BTreeSet::new();
    let mut unexpected = Vec::new();
    for r in &refusals {
        match reasons.iter().position(|(s, _)| r.reason.contains(s)) {
            Some(i) => {
                used.insert(i);
            }
            None => unexpected.push(format!(
                "{} '{}': {}: {}",
                r.type_url, r.name, r.path, r.reason
            )),
        }
    }
    assert!(
        unexpected.is_empty(),
        "undocumented refusals:\n{}",
        unexpected.join("\n")
    );
    let stale: Vec<_> = reasons
        .iter()
        .enumerate()
        .filter(|(i, _)| !used.contains(i))
        .map(|(_, (s, _))| *s)
        .collect();
    assert!(
        stale.is_empty(),
        "documented reasons that no longer occur: {stale:?}"
    );
}

/// Step 2: with the whole dump served, each served type is answered at its
/// current version; the listeners and clusters NACKed are exactly those
/// with offline refusals (route configs and assignments at most those: a
/// route config only a refused listener names is never asked for), every
/// problem is for a documented reason, and each rejected listener shows
/// its `error_state` in `/config_dump` while every other one is active or
/// warming without one.
async fn judge_rejections(
    xds: &XdsServer,
    admin: SocketAddr,
    dump: &ConfigDump,
    reasons: &[Reason],
) {
    let refusals = dump.refusals();
    for t in [LISTENER, CLUSTER, ROUTE, ENDPOINT] {
        // Route configs and assignments are asked for by name, once a
        // listener or cluster taken names them (the request follows its
        // ACK or NACK, so the order of this loop sees it).
        let asked = xds
            .requests()
            .iter()
            .any(|r| r.type_url == t && !r.resource_names.is_empty());
        if xds.version(t) == "0" || ((t == ROUTE || t == ENDPOINT) && !asked) {
            continue;
        }
        let reply = eventually(&format!("{t} answered"), APPLY, || async {
            xds.answered_current(t)
        })
        .await;
        let pieces = reply
            .error_detail
            .as_deref()
            .map(problems_of)
            .unwrap_or_default();
        for piece in &pieces {
            assert!(
                reasons.iter().any(|(s, _)| piece.contains(s)),
                "NACK of {t} for an undocumented reason: {piece}"
            );
        }
        let rejected: BTreeSet<String> = pieces.iter().filter_map(|p| named(p)).collect();
        let expected: BTreeSet<String> = refusals
            .iter()
            .filter(|r| r.type_url == t)
            .map(|r| r.name.clone())
            .collect();
        if t == LISTENER || t == CLUSTER {
            assert_eq!(rejected, expected, "{t}: rejected resources");
        } else {
            assert!(
                rejected.is_subset(&expected),
                "{t}: {rejected:?} not in {expected:?}"
            );
        }
    }
    let expected: BTreeSet<String> = refusals
        .iter()
        .filter(|r| r.type_url == LISTENER)
        .map(|r| r.name.clone())
        .collect();
    let r = strait_test_support::admin::get(admin, "/config_dump?resource=dynamic_listeners")
        .await
        .expect("config_dump");
    let v: serde_json::Value = serde_json::from_str(&r.text()).expect("json");
    let items = v["configs"].as_array().cloned().unwrap_or_default();
    let mut with_errors = BTreeSet::new();
    for item in &items {
        let name = item["name"].as_str().expect("a name").to_owned();
        if item.get("error_state").is_some() {
            assert!(item["error_state"]["details"].is_string(), "{item}");
            with_errors.insert(name);
        } else {
            assert!(
                item.get("active_state").is_some() || item.get("warming_state").is_some(),
                "{item}"
            );
        }
    }
    assert_eq!(with_errors, expected, "listeners with an error_state");
}

/// The resource a problem is about: `<kind> '<name>': ...`.
fn named(problem: &str) -> Option<String> {
    let (_, rest) = problem.split_once(" '")?;
    Some(rest.split_once("': ")?.0.to_owned())
}

/// A NACK's detail split into its problems: the xDS client joins them
/// with `; `, each starting with the kind and name of its resource (a
/// message may itself contain `; `).
fn problems_of(detail: &str) -> Vec<String> {
    const KINDS: [&str; 4] = [
        "listener '",
        "cluster '",
        "route config '",
        "cluster load assignment '",
    ];
    let mut out: Vec<String> = Vec::new();
    for piece in detail.split("; ") {
        match out.last_mut() {
            Some(last) if !KINDS.iter().any(|k| piece.starts_with(k)) => {
                last.push_str("; ");
                last.push_str(piece);
            }
            _ => out.push(piece.to_owned()),
        }
    }
    out
}

/// Waits until every type the server serves and Strait subscribes to is
/// ACKed at its current version.
async fn all_acked(xds: &XdsServer, types: &[&str]) {
    let start = std::time::Instant::now();
    loop {
        let pending: Vec<_> = types.iter().filter(|t| !xds.acked_current(t)).collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < APPLY,
            "not ACKed at their current version: {pending:?}; last NACKs: {:?}",
            pending
                .iter()
                .filter_map(|t| xds.nacks(t).pop()?.error_detail)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Step 3, inbound: a peer workload `peer` (a certificate of the pod's
/// mesh CA) calls `service` on the pod's `port` over Istio mTLS. The pod's
/// inbound listener, with the identity `pod` served over SDS (URI SAN
/// `workload`), accepts it; its HTTP chain forwards to `app` (an echo at
/// the pod's IP, named `app_name`), which sees the peer in
/// `x-forwarded-client-cert` as Envoy writes it for Istio's
/// `APPEND_FORWARD` with subject, URI and DNS details (the peer's
/// certificate, like Istio's, has an empty subject and no DNS SAN). A peer without a
/// certificate, or with one from another CA, is refused before the app
/// sees anything.
async fn expect_inbound_mtls(
    pod: &Identity,
    workload: &str,
    peer: &str,
    (service, port): (&str, u16),
    (app, app_name): (&Upstream, &str),
) {
    let cert = pod.ca.issue_workload(peer);
    let start = std::time::Instant::now();
    let got = loop {
        match mtls_from_peer(service, port, pod.ca.root(), Some(&cert)).await {
            Ok(got) => break got,
            Err(e) => assert!(
                start.elapsed() < APPLY,
                "{service}:{port} from {peer} over mTLS: {e:#}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(pod.sds.acked_current(SECRET), "{:?}", pod.sds.requests());
    assert_eq!(got.upstream(), app_name);
    assert!(got.server_is(workload), "the listener is not {workload}");
    let (hash, subject) = cert.hash_and_subject();
    assert_eq!(subject, "", "an Istio workload certificate has no subject");
    assert_eq!(
        got.header("x-forwarded-client-cert"),
        [format!("By={workload};Hash={hash};Subject=\"\";URI={peer}")]
    );

    let seen = app.requests();
    let stranger = TestCa::new("other-ca").issue_workload(peer);
    for (who, cert) in [
        ("no certificate", None),
        ("another CA's certificate", Some(&stranger)),
    ] {
        let r = mtls_from_peer(service, port, pod.ca.root(), cert).await;
        assert!(r.is_err(), "a peer with {who} got through");
    }
    assert_eq!(app.requests(), seen, "the app saw a refused peer's request");
}

// ---------------------------------------------------------------------------
// sidecar_app1_istio-1.22.3.json: Istio 1.22.3, delta xDS, full dump.

const ECDS: Reason = (
    "config_discovery (ECDS)",
    "deliberate: a user WasmPlugin delivered by ECDS; Strait has no Wasm runtime, and a module \
     can do anything",
);

const S22_REASONS: &[Reason] = &[ECDS];

/// app1's identity: its service account is `default` (node metadata
/// `SERVICE_ACCOUNT`).
const APP1_ID: &str = "spiffe://cluster.local/ns/default/sa/default";

#[test]
fn sidecar_app1_istio_1_22() {
    let dump = fixture("sidecar_app1_istio-1.22.3.json");
    judge_offline(&dump, S22_REASONS);
    if !in_netns("sidecar_app1_istio_1_22") {
        return;
    }
    runtime().block_on(async {
        let app2 = http_echo("app2");
        let app3 = http_echo("app3");
        let other = http_echo("other");
        let passthrough = http_echo_at("passthrough", "10.200.0.1:80".parse().expect("addr"));
        tcp_echo_at("10.1.2.3:7777");
        // The pod's own app, behind `inbound|3333||` (ORIGINAL_DST).
        let app1 = http_echo_at("app1", format!("{POD_IP}:3333").parse().expect("addr"));
        let pod = Identity::start(APP1_ID);
        let eps: Vec<_> = dump
            .eds_names()
            .iter()
            .map(|n| {
                let up = if n.contains("app2.default") {
                    app2.addr
                } else if n.contains("app3.default") {
                    app3.addr
                } else {
                    other.addr
                };
                endpoints(n, up)
            })
            .collect();
        let xds = XdsServer::start();
        dump.serve(&xds);
        xds.set(ENDPOINT, eps.clone());
        let proxy = TestProxy::start(&bootstrap(xds.addr(), "DELTA_GRPC", Some(pod.socket())), 1);
        judge_rejections(&xds, proxy.admin(), &dump, S22_REASONS).await;
        // The listeners the WasmPlugin does not touch are live meanwhile:
        // `virtualOutbound`'s catch-all TCP chain to PassthroughCluster.
        let echoed = tokio::task::spawn_blocking(|| tcp_via_sidecar("10.1.2.3:7777", b"ping"))
            .await
            .expect("tcp client");
        assert_eq!(echoed, b"ping");

        // As after `kubectl delete wasmplugin`: istiod pushes the HCMs
        // without the ECDS filter, and the rejected listeners go live.
        let mut served = dump.clone();
        served.drop_ecds_http_filters();
        served.serve(&xds);
        xds.set(ENDPOINT, eps);
        all_acked(&xds, &[LISTENER, CLUSTER, ROUTE, ENDPOINT]).await;

        // Outbound: app1 calls app2 and app3 by their service IPs; the
        // virtual outbound listener hands each to `<ip>_3333`.
        expect_upstream(
            "10.96.60.213:3333",
            "app2.default.svc.cluster.local:3333",
            "app2",
        )
        .await;
        expect_upstream(
            "10.98.24.100:3333",
            "app3.default.svc.cluster.local:3333",
            "app3",
        )
        .await;
        // An unknown host on port 80: `0.0.0.0_80`, virtual host allow_any,
        // PassthroughCluster (ORIGINAL_DST) to where the client meant.
        expect_upstream("10.200.0.1:80", "unknown.example", "passthrough").await;
        // A port no listener has: the virtual listener's own catch-all TCP
        // chain, PassthroughCluster again.
        let echoed = tokio::task::spawn_blocking(|| tcp_via_sidecar("10.1.2.3:7777", b"ping"))
            .await
            .expect("tcp client");
        assert_eq!(echoed, b"ping");
        // Port 15001 itself: the hand-off finds the virtual listener, whose
        // `virtualOutbound-blackhole` chain (BlackHoleCluster, no hosts)
        // closes the connection.
        let echoed = tokio::task::spawn_blocking(|| tcp_via_sidecar("10.1.2.3:15001", b"ping"))
            .await
            .expect("tcp client");
        assert!(echoed.is_empty(), "the black hole answered {echoed:?}");

        // Inbound: app2 calls app1 on its pod port 3333, the `0.0.0.0_3333`
        // chain of `virtualInbound` (the HTTP one, by ALPN `istio-http/1.1`).
        expect_inbound_mtls(
            &pod,
            APP1_ID,
            "spiffe://cluster.local/ns/default/sa/app2",
            ("app1.default.svc.cluster.local", 3333),
            (&app1, "app1"),
        )
        .await;
        drop((app1, app2, app3, other, passthrough));
    });
}

// ---------------------------------------------------------------------------
// sidecar_bookinfo-details-v1_istio-1.10.0.json: Istio 1.10, camelCase,
// state of the world, null-VM Wasm telemetry.

const S10_REASONS: &[Reason] = &[];

/// details-v1's identity (node metadata `SERVICE_ACCOUNT`).
const DETAILS_ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-details";

#[test]
fn sidecar_bookinfo_details_istio_1_10() {
    let dump = fixture("sidecar_bookinfo-details-v1_istio-1.10.0.json");
    judge_offline(&dump, S10_REASONS);
    if !in_netns("sidecar_bookinfo_details_istio_1_10") {
        return;
    }
    runtime().block_on(async {
        let reviews = http_echo("reviews");
        let ratings = http_echo("ratings");
        let other = http_echo("other");
        let passthrough = http_echo_at("passthrough", "10.200.0.1:9080".parse().expect("addr"));
        let details = http_echo_at("details", format!("{POD_IP}:9080").parse().expect("addr"));
        let pod = Identity::start(DETAILS_ID);
        let eps: Vec<_> = dump
            .eds_names()
            .iter()
            .map(|n| {
                let up = if n.contains("reviews.default") {
                    reviews.addr
                } else if n.contains("ratings.default") {
                    ratings.addr
                } else {
                    other.addr
                };
                endpoints(n, up)
            })
            .collect();
        let xds = XdsServer::start();
        dump.serve(&xds);
        xds.set(ENDPOINT, eps);
        let proxy = TestProxy::start(&bootstrap(xds.addr(), "GRPC", Some(pod.socket())), 1);
        judge_rejections(&xds, proxy.admin(), &dump, S10_REASONS).await;

        // Bookinfo's services share port 9080: `0.0.0.0_9080` (not bound)
        // takes them all over, and the Host picks the virtual host.
        expect_upstream(
            "10.96.7.7:9080",
            "reviews.default.svc.cluster.local:9080",
            "reviews",
        )
        .await;
        expect_upstream(
            "10.96.8.8:9080",
            "ratings.default.svc.cluster.local",
            "ratings",
        )
        .await;
        expect_upstream("10.200.0.1:9080", "unknown.example:9080", "passthrough").await;

        // Inbound: productpage calls details on 9080, the `0.0.0.0_9080`
        // chain of `virtualInbound` (TLS, Istio's ALPN; HTTP).
        expect_inbound_mtls(
            &pod,
            DETAILS_ID,
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
            ("details.default.svc.cluster.local", 9080),
            (&details, "details"),
        )
        .await;
        drop((reviews, ratings, other, passthrough, details));
    });
}

// ---------------------------------------------------------------------------
// The LDS-only dumps carry no routes or clusters: for step 3 the test
// supplies one route config per RDS name the listeners need (every host to
// cluster `test-default`) and that cluster, so the listeners warm and the
// hand-off can be exercised; the routing inside is the test's.

/// Named resources, as [`XdsServer::set`] takes them.
type Resources = Vec<(String, Any)>;

fn test_routes_and_cluster(dump: &ConfigDump) -> (Resources, Resources) {
    let routes = dump
        .rds_names()
        .iter()
        .map(|name| {
            resource(
                "envoy.config.route.v3.RouteConfiguration",
                &format!(
                    r#"
name: "{name}"
virtual_hosts:
- name: all
  domains: ["*"]
  routes: [{{match: {{prefix: "/"}}, route: {{cluster: test-default}}}}]
"#
                ),
            )
        })
        .collect();
    let cluster = resource(
        "envoy.config.cluster.v3.Cluster",
        r#"
name: test-default
type: EDS
connect_timeout: 1s
eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3}}
"#,
    );
    (routes, vec![cluster])
}

async fn lds_only(dump: ConfigDump, reasons: &[Reason], via: &'static str, host: &'static str) {
    let up = http_echo("test-default");
    let xds = XdsServer::start();
    let (routes, clusters) = test_routes_and_cluster(&dump);
    dump.serve(&xds);
    xds.set(CLUSTER, clusters);
    xds.set(ENDPOINT, vec![endpoints("test-default", up.addr)]);
    xds.set(ROUTE, routes);
    let proxy = TestProxy::start(&bootstrap(xds.addr(), "GRPC", None), 1);
    judge_rejections(&xds, proxy.admin(), &dump, reasons).await;
    expect_upstream(via, host, "test-default").await;
    drop(up);
}

const HBONE: &str =
    "HBONE (ambient interop: internal listeners, CONNECT tunnels) is out of scope for the sidecar";

const L18_REASONS: &[Reason] = &[
    ("listener_specifier", HBONE),
    (
        "is required",
        "internal listeners have no socket address (HBONE)",
    ),
    ("istio.set_internal_dst_address", HBONE),
    ("io.istio.http.connect_baggage", HBONE),
    ("io.istio.http.connect_authority", HBONE),
    ("connect_matcher", HBONE),
    ("upgrade_configs", HBONE),
    ("tunneling_config", HBONE),
    ("http2_protocol_options", HBONE),
];

#[test]
fn lds_only_sidecar_httpbin_extauthz_istio_1_18() {
    let dump = fixture("lds-only_sidecar_httpbin-extauthz_istio-1.18.json");
    judge_offline(&dump, L18_REASONS);
    if !in_netns("lds_only_sidecar_httpbin_extauthz_istio_1_18") {
        return;
    }
    runtime().block_on(lds_only(
        dump,
        L18_REASONS,
        "10.96.9.9:5000",
        "whatever:5000",
    ));
}

const L13_REASONS: &[Reason] = &[];

#[test]
fn lds_only_sidecar_echo_istio_1_13() {
    let dump = fixture("lds-only_sidecar_echo_istio-1.13-dev.json");
    judge_offline(&dump, L13_REASONS);
    if !in_netns("lds_only_sidecar_echo_istio_1_13") {
        return;
    }
    runtime().block_on(lds_only(dump, L13_REASONS, "10.96.9.9:80", "whatever"));
}

// ---------------------------------------------------------------------------
// gateway_ingressgateway_istio-1.7-alpha.json: CDS only (no Gateway bound,
// so no listeners or routes). Step 3 routes through a test listener to two
// of its clusters.

/// Nothing is refused: its two tracing clusters' `respect_dns_ttl` is
/// accepted (the system resolver gives no TTL; `dns_refresh_rate` applies).
const G17_REASONS: &[Reason] = &[];

#[test]
fn gateway_ingressgateway_istio_1_7() {
    let dump = fixture("gateway_ingressgateway_istio-1.7-alpha.json");
    judge_offline(&dump, G17_REASONS);
    assert!(dump.listeners.is_empty() && dump.routes.is_empty());
    runtime().block_on(async {
        let a = http_echo("a");
        let other = http_echo("other");
        // Its mTLS clusters (`transport_socket_matches`, `tlsMode-istio`)
        // take their secrets from `sds-grpc`; the test's endpoints carry no
        // `tlsMode`, so requests go plaintext (`tlsMode-disabled`).
        let agent = Identity::start(
            "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        );
        let names = dump.eds_names();
        let target = names
            .iter()
            .find(|n| n.contains("productpage") || n.contains("istiod"))
            .cloned()
            .unwrap_or_else(|| names[0].clone());
        let eps: Vec<_> = names
            .iter()
            .map(|n| endpoints(n, if *n == target { a.addr } else { other.addr }))
            .collect();
        let xds = XdsServer::start();
        dump.serve(&xds);
        xds.set(ENDPOINT, eps);
        let proxy = TestProxy::start(&bootstrap(xds.addr(), "GRPC", Some(agent.socket())), 1);
        judge_rejections(&xds, proxy.admin(), &dump, G17_REASONS).await;
        let listener = resource(
            "envoy.config.listener.v3.Listener",
            &format!(
                r#"
name: gateway
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: gw
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{{match: {{prefix: "/"}}, route: {{cluster: "{target}"}}}}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
            ),
        );
        xds.set(LISTENER, vec![listener]);
        all_acked(&xds, &[LISTENER, CLUSTER, ENDPOINT]).await;
        let addr = eventually("gateway listener", APPLY, || async { proxy.try_listener("gateway") }).await;
        eventually("a request reaches the dump's cluster", APPLY, || async {
            let mut c = strait_test_support::client::Client::http1(addr).await.ok()?;
            let r = c.get("/").await.ok()?;
            (r.header("x-upstream") == Some("a")).then_some(())
        })
        .await;
        drop((a, other, agent));
    });
}

// ---------------------------------------------------------------------------
// eds-only.json: 37 assignments, served with one EDS cluster per name.

#[test]
fn eds_only() {
    let dump = fixture("eds-only.json");
    judge_offline(&dump, &[]);
    assert!(!dump.endpoints.is_empty());
    runtime().block_on(async {
        let clusters: Vec<_> = dump
            .endpoints
            .iter()
            .map(|(name, _)| {
                resource(
                    "envoy.config.cluster.v3.Cluster",
                    &format!(
                        r#"
name: "{name}"
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}
"#
                    ),
                )
            })
            .collect();
        let xds = XdsServer::start();
        xds.set(CLUSTER, clusters);
        dump.serve(&xds);
        let _proxy = TestProxy::start(&bootstrap(xds.addr(), "GRPC", None), 1);
        all_acked(&xds, &[CLUSTER, ENDPOINT]).await;
        assert!(xds.nacks(ENDPOINT).is_empty() && xds.nacks(CLUSTER).is_empty());
    });
}

// ---------------------------------------------------------------------------
// sds-only_istio-ca.json: Istio CA secrets `default` and `ROOTCA`.

#[test]
fn sds_only_istio_ca() {
    let dump = fixture("sds-only_istio-ca.json");
    let mut names: Vec<_> = ConfigDump::names(&dump.secrets);
    names.sort_unstable();
    // The warming `configmap://` secret is served too: a name Istio uses
    // for CA bundles from a ConfigMap.
    assert_eq!(names, ["ROOTCA", "configmap://some/thing", "default"]);
    runtime().block_on(async {
        let up = http_echo("up");
        let xds = XdsServer::start();
        dump.serve(&xds);
        xds.set(CLUSTER, vec![resource(
            "envoy.config.cluster.v3.Cluster",
            "{name: c, type: EDS, connect_timeout: 1s, eds_cluster_config: {eds_config: {ads: {}, resource_api_version: V3}}}",
        )]);
        xds.set(ENDPOINT, vec![endpoints("c", up.addr)]);
        let _proxy = TestProxy::start(&bootstrap(xds.addr(), "GRPC", None), 1);
        all_acked(&xds, &[CLUSTER, ENDPOINT]).await;
        // Strait, like Envoy, subscribes to secrets by name when a TLS
        // context names them over ADS; nothing here does, so none are
        // requested (the dumps' own contexts name `sds-grpc`: see the
        // sidecar tests).
        assert!(xds.replies(SECRET).is_empty());
        drop(up);
    });
}

// ---------------------------------------------------------------------------
// ecds-only_wasm.json: two user WasmPlugins delivered by ECDS.

#[test]
fn ecds_only_wasm() {
    let dump = fixture("ecds-only_wasm.json");
    let names = ConfigDump::names(&dump.extension_configs);
    assert!(!names.is_empty());
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
    runtime().block_on(async {
        let xds = XdsServer::start();
        dump.serve(&xds);
        // A listener whose HCM takes the two filters from ECDS, as Istio
        // writes it for WasmPlugins.
        // The HTTP ones (the dump also has Istio's TCP stats filters).
        let filters: String = names
            .iter()
            .filter(|n| !n.ends_with("/TCP"))
            .map(|n| {
                format!(
                    r#"
      - name: "{n}"
        config_discovery:
          config_source: {{ads: {{}}, resource_api_version: V3}}
          type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]"#
                )
            })
            .collect();
        let listener = resource(
            "envoy.config.listener.v3.Listener",
            &format!(
                r#"
name: wasm
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: wasm
      route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200}}}}]}}]}}
      http_filters:{filters}
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
            ),
        );
        xds.set(LISTENER, vec![listener]);
        let _proxy = TestProxy::start(&bootstrap(xds.addr(), "GRPC", None), 1);
        // Deliberate: user Wasm modules can do anything, and Strait has no
        // Wasm runtime, so filters from ECDS are refused by name.
        let nack = eventually("the ECDS listener NACKed", APPLY, || async {
            xds.nacks(LISTENER).into_iter().next()
        })
        .await;
        let detail = nack.error_detail.unwrap_or_default();
        assert!(detail.contains("config_discovery (ECDS)"), "{detail}");
        assert!(xds.replies(EXTENSION_CONFIG).is_empty());
    });
}

// ---------------------------------------------------------------------------
// Istio's inbound side in isolation: the original destination filter picks
// the chain by the port the client meant, ORIGINAL_DST clusters connect to
// that destination from 127.0.0.6 (`upstream_bind_config`), and with
// `use_http_header` to the address in `x-envoy-original-dst-host`.

#[test]
fn original_dst_filter_cluster_and_source_address() {
    if !in_netns("original_dst_filter_cluster_and_source_address") {
        return;
    }
    let app = std::net::TcpListener::bind("10.0.5.5:9080").expect("app listener");
    let header_target = http_echo_at("by-header", "10.0.6.6:8080".parse().expect("addr"));
    let yaml = r#"
static_resources:
  listeners:
  - name: virtualInbound
    address: {socket_address: {address: 0.0.0.0, port_value: 15001}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
    filter_chains:
    - filter_chain_match: {destination_port: 9080}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: "inbound|9080||"
    - filter_chain_match: {destination_port: 8000}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: by_header
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: by-header}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: "inbound|9080||"
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    upstream_bind_config: {source_address: {address: 127.0.0.6, port_value: 0}}
  - name: by-header
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
    original_dst_lb_config: {use_http_header: true}
"#;
    let _proxy = TestProxy::start(yaml, 1);
    // TCP to 10.0.5.5:9080, redirected to 15001: the 9080 chain, then a
    // connection from 127.0.0.6 to where the client meant.
    let client = std::thread::spawn(|| tcp_via_sidecar("10.0.5.5:9080", b"hello"));
    let (mut conn, peer) = app.accept().expect("the proxy connects to the app");
    assert_eq!(peer.ip().to_string(), "127.0.0.6");
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).expect("bytes from the client");
    assert_eq!(&buf, b"hello");
    conn.write_all(b"hello").expect("reply");
    assert_eq!(client.join().expect("client"), b"hello");
    // HTTP to port 8000 (nothing listens there): the header names the
    // upstream.
    let got = http_with_header("10.0.7.7:8000", "x-envoy-original-dst-host: 10.0.6.6:8080");
    assert_eq!(got, "by-header");
    drop(header_target);
}
