//! The cache's semantics: warming, pruning, the dump, and judging each
//! resource on its own.

use strait_test_support::xds_server::{resource, typed_struct};

use super::*;

/// The problems of an update the cache took with rejections.
fn rejected(result: Result<Outcome, Vec<String>>) -> Vec<String> {
    let outcome = result.expect("decoded");
    let problems = outcome.problems();
    assert!(!problems.is_empty(), "nothing rejected: {outcome:?}");
    problems
}

fn listener(rds: &str) -> Any {
    resource(
        "envoy.config.listener.v3.Listener",
        &format!(
            r#"{{name: l, address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}},
            filter_chains: [{{filters: [{{name: hcm, typed_config: {{
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
              stat_prefix: s,
              rds: {{route_config_name: {rds}, config_source: {{ads: {{}}}}}},
              http_filters: [{{name: r, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]}}}}]}}]}}"#
        ),
    )
    .1
}

fn route(name: &str, regex: &str) -> Any {
    resource(
        "envoy.config.route.v3.RouteConfiguration",
        &format!(
            r#"{{name: {name}, virtual_hosts: [{{name: v, domains: ["*"],
            routes: [{{match: {{safe_regex: {{regex: "{regex}"}}}}, route: {{cluster: c}}}}]}}]}}"#
        ),
    )
    .1
}

fn eds_cluster(name: &str) -> Any {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!("{{name: {name}, type: EDS, eds_cluster_config: {{eds_config: {{ads: {{}}}}}}}}"),
    )
    .1
}

fn cla(name: &str) -> Any {
    resource(
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &format!(
            "{{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 10.0.0.1, port_value: 80}}}}}}}}]}}]}}"
        ),
    )
    .1
}

#[test]
fn a_listener_waits_for_its_route_config() {
    let mut c = Cache::new(model::Config::default());
    c.apply(type_url::LISTENER, "1", &[listener("r1")])
        .expect("accepted");
    assert_eq!(c.route_names().into_iter().collect::<Vec<_>>(), ["r1"]);
    assert!(c.build().listeners.is_empty(), "warming");
    c.apply(type_url::ROUTE, "1", &[route("r1", "/a.*")])
        .expect("accepted");
    let built = c.build();
    assert_eq!(built.listeners.len(), 1);
    assert_eq!(built.route_configs.len(), 1);
}

/// As in Envoy: a route configuration rejected before any version of it
/// was taken does not hold its listener back; the listener serves an empty
/// one (404 for every request) until a good version arrives.
#[test]
fn a_rejected_route_config_lets_its_listener_go_live_empty() {
    let mut c = Cache::new(model::Config::default());
    c.apply(type_url::LISTENER, "1", &[listener("r1")])
        .expect("accepted");
    let problems = rejected(c.apply(type_url::ROUTE, "1", &[route("r1", "(")]));
    assert!(problems[0].contains("r1"), "{problems:?}");
    let built = c.build();
    assert_eq!(built.listeners.len(), 1, "live on an empty route config");
    assert_eq!(built.route_configs.len(), 1);
    assert!(built.route_configs[0].virtual_hosts.is_empty());
    c.apply(type_url::ROUTE, "2", &[route("r1", "/a.*")])
        .expect("accepted");
    let built = c.build();
    assert_eq!(
        built.route_configs[0].virtual_hosts.len(),
        1,
        "the good one"
    );
}

#[test]
fn an_eds_cluster_waits_for_its_endpoints_and_follows_them() {
    let mut c = Cache::new(model::Config::default());
    c.apply(
        type_url::CLUSTER,
        "1",
        &[eds_cluster("a"), eds_cluster("b")],
    )
    .expect("accepted");
    assert_eq!(
        c.endpoint_names().into_iter().collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(c.build().clusters.is_empty(), "warming");
    c.apply(type_url::ENDPOINT, "1", &[cla("a")])
        .expect("accepted");
    let built = c.build();
    assert_eq!(built.clusters.len(), 1);
    assert_eq!(built.clusters[0].endpoints[0].host, "10.0.0.1");
    // Cluster b goes: its endpoints are no longer wanted.
    c.apply(type_url::CLUSTER, "1", &[eds_cluster("a")])
        .expect("accepted");
    c.apply(type_url::ENDPOINT, "1", &[cla("b")])
        .expect("accepted");
    c.prune();
    assert_eq!(c.endpoint_names().into_iter().collect::<Vec<_>>(), ["a"]);
    assert!(!c.endpoints.contains_key("b"));
}

#[test]
fn a_bad_resource_is_named_with_its_field() {
    let mut c = Cache::new(model::Config::default());
    let errs = rejected(c.apply(type_url::ROUTE, "1", &[route("r1", "(")]));
    assert!(
        errs[0].starts_with("route config 'r1': r1.virtual_hosts[0]"),
        "{errs:?}"
    );
    assert!(errs[0].contains("regex"), "{errs:?}");
}

#[test]
fn delta_removes_by_name() {
    let mut c = Cache::new(model::Config::default());
    let (a, b) = (eds_cluster("a"), eds_cluster("b"));
    c.apply_delta(type_url::CLUSTER, "s1", &[("1", &a), ("2", &b)], &[])
        .expect("accepted");
    c.apply_delta(type_url::CLUSTER, "s2", &[], &["a".into()])
        .expect("accepted");
    assert_eq!(c.endpoint_names().into_iter().collect::<Vec<_>>(), ["b"]);
    let dump = c.dump();
    assert_eq!(dump.clusters.version_info, "s2");
    let names: Vec<_> = dump.clusters.resources.keys().collect();
    assert_eq!(names, ["b"]);
    assert_eq!(dump.clusters.resources["b"].version_info, "2");
    assert_eq!(dump.warming_clusters, ["b"], "no endpoints yet");
}

#[test]
fn the_dump_keeps_resources_as_received_and_unchanged_ones_keep_their_version() {
    let mut c = Cache::new(model::Config::default());
    let (a, b) = (eds_cluster("a"), eds_cluster("b"));
    c.apply(type_url::CLUSTER, "v1", std::slice::from_ref(&a))
        .expect("accepted");
    c.apply(type_url::CLUSTER, "v2", &[a.clone(), b.clone()])
        .expect("accepted");
    c.apply(type_url::ENDPOINT, "e1", &[cla("a")])
        .expect("accepted");
    let dump = c.dump();
    assert_eq!(dump.clusters.version_info, "v2");
    assert_eq!(dump.clusters.resources["a"].version_info, "v1");
    assert_eq!(dump.clusters.resources["a"].resource, a);
    assert_eq!(dump.clusters.resources["b"].version_info, "v2");
    assert_eq!(dump.warming_clusters, ["b"]);
    assert_eq!(dump.endpoints.resources["a"].version_info, "e1");
    // A rejected resource is not among the accepted ones; its failure is
    // kept for the dump.
    rejected(c.apply(type_url::ROUTE, "r1", &[route("r", "(")]));
    assert!(c.dump().routes.resources.is_empty());
    let failed = &c.dump().routes.failed["r"];
    assert_eq!(failed.version_info, "r1");
    assert!(failed.details.contains("regex"), "{}", failed.details);
}

fn sds_cluster(name: &str, source: &str) -> Any {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!(
            r#"{{name: {name}, type: STATIC, load_assignment: {{cluster_name: {name}}},
            transport_socket: {{name: tls, typed_config: {{
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext,
              common_tls_context: {{
                tls_certificate_sds_secret_configs: [{{name: default, sds_config: {source}}}],
                validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {source}}}}}}}}}}}"#
        ),
    )
    .1
}

fn secret(name: &str, body: &str) -> Any {
    resource(
        "envoy.extensions.transport_sockets.tls.v3.Secret",
        &format!("{{name: {name}, {body}}}"),
    )
    .1
}

const CA: &str = "validation_context: {trusted_ca: {inline_string: CA}}";
const CERT: &str =
    "tls_certificate: {certificate_chain: {inline_string: C}, private_key: {inline_string: K}}";

#[test]
fn a_cluster_waits_for_its_secrets_by_source() {
    let mut c = Cache::new(model::Config::default());
    let grpc = "{api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}}";
    c.apply(
        type_url::CLUSTER,
        "1",
        &[sds_cluster("a", "{ads: {}}"), sds_cluster("b", grpc)],
    )
    .expect("accepted");
    assert_eq!(
        c.ads_secret_names().into_iter().collect::<Vec<_>>(),
        ["ROOTCA", "default"]
    );
    let sources = c.secret_sources();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(sources.contains_key(&SecretSource::Grpc {
        cluster: "sds-grpc".into()
    }));
    assert!(c.build().clusters.is_empty(), "warming");
    c.apply(type_url::SECRET, "s1", &[secret("default", CERT)])
        .expect("accepted");
    assert!(c.build().clusters.is_empty(), "ROOTCA still missing");
    // The dump shows the delivered secret as received and the awaited
    // one warming.
    c.prune();
    let dump = c.dump();
    assert_eq!(dump.secrets.resources["default"].version_info, "s1");
    let warming: Vec<&str> = dump
        .warming_secrets
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(warming, ["ROOTCA"]);
    c.apply(type_url::SECRET, "s2", &[secret("ROOTCA", CA)])
        .expect("accepted");
    let built = c.build();
    // Both clusters name the same secret names: one name, one secret.
    assert_eq!(built.clusters.len(), 2);
    assert_eq!(built.secrets["ROOTCA"].version, "s2");
    assert!(built.secrets["ROOTCA"].dynamic);
    assert_eq!(built.secrets["default"].version, "s1");
    // The same content again keeps the entry (no new config).
    c.apply(type_url::SECRET, "s3", &[secret("default", CERT)])
        .expect("accepted");
    assert_eq!(c.build(), built);
    // Clusters gone: their secrets are forgotten.
    c.apply(type_url::CLUSTER, "2", &[]).expect("accepted");
    c.prune();
    assert!(c.build().secrets.is_empty());
    assert!(c.dump().secrets.resources.is_empty());
}

/// A route config whose virtual host carries a fault override written
/// as a `TypedStruct` with `abort`.
fn route_with_typed_struct(abort: serde_json::Value) -> Any {
    let any = route("r", "/.*");
    let mut rc = RouteConfiguration::decode(any.value.as_slice()).expect("decodes");
    rc.virtual_hosts[0].typed_per_filter_config.insert(
        "envoy.filters.http.fault".into(),
        typed_struct(
            "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            serde_json::json!({ "abort": abort }),
        ),
    );
    Any {
        type_url: any.type_url,
        value: rc.encode_to_vec(),
    }
}

#[test]
fn typed_structs_in_binary_resources_are_read_as_their_type() {
    let mut c = Cache::new(model::Config::default());
    let ok = route_with_typed_struct(
        serde_json::json!({"http_status": 418, "percentage": {"numerator": 100}}),
    );
    c.apply(type_url::ROUTE, "1", &[ok]).expect("accepted");
    let overrides = format!("{:?}", c.routes["r"]);
    assert!(overrides.contains("418"), "{overrides}");

    // A bad field inside the struct is named, as in a typed `Any`.
    let bad = route_with_typed_struct(serde_json::json!({"http_stauts": 418}));
    let errs = rejected(c.apply(type_url::ROUTE, "2", &[bad]));
    assert!(errs[0].contains("http_stauts"), "{errs:?}");
}

#[test]
fn a_bad_secret_is_named() {
    let mut c = Cache::new(model::Config::default());
    let errs = rejected(c.apply(
        type_url::SECRET,
        "1",
        &[secret("s", "generic_secret: {secret: {inline_string: x}}")],
    ));
    assert_eq!(
        errs,
        [
            "secret 's': s.generic_secret: not supported: generic_secret (no Strait extension consumes one)"
        ]
    );
}

/// Listener `name` with an inline route config and, before the router,
/// the HTTP filter whose config has type `filter` (a `TypedStruct`-free
/// `Any` with no fields).
fn named_listener(name: &str, filter: &str) -> Any {
    resource(
        "envoy.config.listener.v3.Listener",
        &format!(
            r#"{{name: {name}, address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}},
            filter_chains: [{{filters: [{{name: hcm, typed_config: {{
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
              stat_prefix: {name},
              route_config: {{name: {name}, virtual_hosts: [{{name: v, domains: ["*"], routes: [{{match: {{prefix: /}}, route: {{cluster: c}}}}]}}]}},
              http_filters: [{{name: f, typed_config: {{"@type": "type.googleapis.com/{filter}"}}}},
                {{name: r, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]}}}}]}}]}}"#
        ),
    )
    .1
}

/// A filter every Strait translates (CORS with no policy).
const GOOD: &str = "envoy.extensions.filters.http.cors.v3.Cors";
/// A filter Strait does not build (refused by name).
const UNSUPPORTED: &str = "envoy.extensions.filters.http.geoip.v3.Geoip";

fn listener_names(c: &Cache) -> Vec<String> {
    c.build().listeners.into_iter().map(|l| l.name).collect()
}

#[test]
fn sotw_takes_the_good_listeners_and_rejects_the_bad_one_by_name_and_field() {
    let mut c = Cache::new(model::Config::default());
    let outcome = c
        .apply(
            type_url::LISTENER,
            "v1",
            &[
                named_listener("a", GOOD),
                named_listener("bad", UNSUPPORTED),
                named_listener("b", GOOD),
            ],
        )
        .expect("decoded");
    assert_eq!(outcome.accepted, ["a", "b"]);
    assert_eq!(outcome.rejected.len(), 1, "{outcome:?}");
    let r = &outcome.rejected[0];
    assert_eq!((r.kind, r.name.as_str()), (Kind::Listener, "bad"));
    assert!(
        r.problems[0].starts_with("listener 'bad': bad.filter_chains[0]"),
        "names the resource and the field: {:?}",
        r.problems
    );
    assert!(r.problems[0].contains("geoip"), "{:?}", r.problems);
    assert_eq!(
        listener_names(&c),
        ["a", "b"],
        "the bad one never had a version"
    );
    let dump = c.dump();
    assert_eq!(dump.listeners.version_info, "v1", "the others were applied");
    let failed = &dump.listeners.failed["bad"];
    assert_eq!(failed.version_info, "v1");
    assert_eq!(
        failed.failed_configuration,
        named_listener("bad", UNSUPPORTED)
    );
    assert!(!dump.listeners.resources.contains_key("bad"));

    // Fixed in the next push: taken, and its error state is gone.
    let outcome = c
        .apply(
            type_url::LISTENER,
            "v2",
            &[
                named_listener("a", GOOD),
                named_listener("bad", GOOD),
                named_listener("b", GOOD),
            ],
        )
        .expect("decoded");
    assert!(outcome.rejected.is_empty(), "{outcome:?}");
    assert_eq!(listener_names(&c), ["a", "b", "bad"]);
    assert!(c.dump().listeners.failed.is_empty());
}

#[test]
fn a_listener_that_turns_bad_keeps_its_last_good_version_until_it_is_removed() {
    let mut c = Cache::new(model::Config::default());
    let good = named_listener("l", GOOD);
    c.apply(type_url::LISTENER, "v1", std::slice::from_ref(&good))
        .expect("decoded");
    let before = c.build();
    let outcome = c
        .apply(
            type_url::LISTENER,
            "v2",
            &[named_listener("l", UNSUPPORTED), named_listener("m", GOOD)],
        )
        .expect("decoded");
    assert_eq!(outcome.accepted, ["m"]);
    assert!(outcome.removed.is_empty(), "present and invalid is kept");
    let after = c.build();
    let l = |cfg: &model::Config| cfg.listeners.iter().find(|l| l.name == "l").cloned();
    assert_eq!(l(&after), l(&before), "the old version keeps serving");
    let dump = c.dump();
    assert_eq!(dump.listeners.resources["l"].version_info, "v1");
    assert_eq!(dump.listeners.resources["l"].resource, good);
    assert_eq!(dump.listeners.failed["l"].version_info, "v2");

    // Absent from the next state of the world: removed, error state too.
    let outcome = c
        .apply(type_url::LISTENER, "v3", &[named_listener("m", GOOD)])
        .expect("decoded");
    assert_eq!(outcome.removed, ["l"]);
    assert_eq!(listener_names(&c), ["m"]);
    assert!(c.dump().listeners.failed.is_empty());
}

#[test]
fn delta_rejects_one_resource_and_removes_by_name() {
    let mut c = Cache::new(model::Config::default());
    let (a, bad) = (
        named_listener("a", GOOD),
        named_listener("bad", UNSUPPORTED),
    );
    let outcome = c
        .apply_delta(type_url::LISTENER, "s1", &[("1", &a), ("7", &bad)], &[])
        .expect("decoded");
    assert_eq!(outcome.accepted, ["a"]);
    assert_eq!(outcome.rejected[0].name, "bad");
    assert_eq!(listener_names(&c), ["a"]);
    assert_eq!(c.dump().listeners.failed["bad"].version_info, "7");
    // Turning bad keeps the last good version.
    let a_bad = named_listener("a", UNSUPPORTED);
    let outcome = c
        .apply_delta(type_url::LISTENER, "s2", &[("2", &a_bad)], &[])
        .expect("decoded");
    assert!(outcome.accepted.is_empty());
    assert_eq!(c.dump().listeners.version_info, "s1", "nothing was applied");
    assert_eq!(c.dump().listeners.resources["a"].version_info, "1");
    assert_eq!(listener_names(&c), ["a"]);
    // Removing a rejected resource forgets its error state.
    let outcome = c
        .apply_delta(type_url::LISTENER, "s3", &[], &["bad".into(), "a".into()])
        .expect("decoded");
    assert_eq!(outcome.removed, ["bad", "a"]);
    assert!(listener_names(&c).is_empty());
    assert!(c.dump().listeners.failed.is_empty());
}

#[test]
fn a_bad_cluster_is_rejected_alone() {
    let mut c = Cache::new(model::Config::default());
    let bad = resource(
        "envoy.config.cluster.v3.Cluster",
        "{name: bad, type: EDS, eds_cluster_config: {eds_config: {ads: {}}}, lb_policy: LOAD_BALANCING_POLICY_CONFIG}",
    )
    .1;
    let outcome = c
        .apply(
            type_url::CLUSTER,
            "1",
            &[eds_cluster("a"), bad, eds_cluster("b")],
        )
        .expect("decoded");
    assert_eq!(outcome.accepted, ["a", "b"]);
    assert!(
        outcome.rejected[0].problems[0].starts_with("cluster 'bad': bad.lb_policy"),
        "{outcome:?}"
    );
    assert_eq!(
        c.endpoint_names().into_iter().collect::<Vec<_>>(),
        ["a", "b"],
        "no subscription for the rejected cluster"
    );
}

#[test]
fn duplicates_and_undecodable_responses() {
    let mut c = Cache::new(model::Config::default());
    // Envoy applies the first of two same-named resources.
    let outcome = c
        .apply(
            type_url::CLUSTER,
            "1",
            &[eds_cluster("a"), eds_cluster("a")],
        )
        .expect("decoded");
    assert_eq!(outcome.accepted, ["a"]);
    assert_eq!(
        outcome.problems(),
        ["cluster 'a': duplicate cluster a found"]
    );
    // A resource that does not decode refuses the whole response: nothing
    // names what it holds.
    let garbage = Any {
        type_url: type_url::CLUSTER.into(),
        value: vec![0xff, 0xff, 0xff],
    };
    let errs = c
        .apply(type_url::CLUSTER, "2", &[eds_cluster("b"), garbage])
        .expect_err("refused whole");
    assert!(errs[0].starts_with("cannot decode"), "{errs:?}");
}

#[test]
fn an_assignment_for_an_unknown_cluster_is_taken_and_forgotten() {
    let mut c = Cache::new(model::Config::default());
    c.apply(type_url::CLUSTER, "1", &[eds_cluster("a")])
        .expect("decoded");
    let outcome = c
        .apply(type_url::ENDPOINT, "1", &[cla("a"), cla("nobody")])
        .expect("decoded");
    assert!(outcome.rejected.is_empty(), "{outcome:?}");
    c.prune();
    assert_eq!(c.build().clusters.len(), 1);
    assert!(!c.dump().endpoints.resources.contains_key("nobody"));
}

#[test]
fn a_bad_secret_is_rejected_alone_and_the_good_one_is_live() {
    let mut c = Cache::new(model::Config::default());
    c.apply(type_url::CLUSTER, "1", &[sds_cluster("a", "{ads: {}}")])
        .expect("decoded");
    let outcome = c
        .apply(
            type_url::SECRET,
            "s1",
            &[
                secret("default", CERT),
                secret("ROOTCA", "generic_secret: {secret: {inline_string: x}}"),
            ],
        )
        .expect("decoded");
    assert_eq!(outcome.accepted, ["default"]);
    assert_eq!(outcome.rejected[0].name, "ROOTCA");
    c.prune();
    let built = c.build();
    assert!(built.secrets.contains_key("default"));
    assert!(built.clusters.is_empty(), "still waiting for ROOTCA");
    let dump = c.dump();
    assert!(dump.secrets.failed.contains_key("ROOTCA"));
    c.apply(
        type_url::SECRET,
        "s2",
        &[secret("default", CERT), secret("ROOTCA", CA)],
    )
    .expect("decoded");
    c.prune();
    assert_eq!(c.build().clusters.len(), 1);
    assert!(c.dump().secrets.failed.is_empty());
}

/// A writer that refuses every listener on port 9, naming it, as the
/// proxy's writer names a listener it cannot compile or bind; it keeps the
/// listener names of every config it publishes.
#[derive(Default)]
struct Picky {
    published: std::sync::Mutex<Vec<Vec<String>>>,
}

impl crate::Publish for Picky {
    async fn publish(&self, config: model::Config) -> Result<u64, Vec<crate::Refusal>> {
        let refused: Vec<crate::Refusal> = config
            .listeners
            .iter()
            .filter(|l| l.address.port() == 9)
            .map(|l| crate::Refusal {
                subject: Some(crate::Subject::Listener(l.name.clone())),
                message: format!("listener {}: address: in use", l.name),
            })
            .collect();
        if !refused.is_empty() {
            return Err(refused);
        }
        let mut p = self.published.lock().expect("lock");
        p.push(config.listeners.iter().map(|l| l.name.clone()).collect());
        Ok(p.len() as u64)
    }
}

/// [`named_listener`] on `port`.
fn listener_on(name: &str, port: u32) -> Any {
    let any = named_listener(name, GOOD);
    let mut l = Listener::decode(any.value.as_slice()).expect("decodes");
    let address = l.address.as_mut().expect("address");
    let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(sa)) =
        address.address.as_mut()
    else {
        panic!("a socket address");
    };
    sa.port_specifier = Some(
        envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port),
    );
    Any {
        type_url: any.type_url,
        value: l.encode_to_vec(),
    }
}

#[test]
fn what_the_writer_refuses_is_put_back_and_the_rest_goes_live() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let shared = crate::shared::Shared::new(
            model::Config::default(),
            Picky::default(),
            crate::stats::Stats::new(Arc::new(metrics::NoopRecorder)),
        );
        let (result, cache) = shared
            .update(|c| {
                c.apply(
                    type_url::LISTENER,
                    "v1",
                    &[listener_on("a", 0), listener_on("nobind", 9)],
                )
            })
            .await;
        let outcome = result.expect("taken");
        assert_eq!(outcome.accepted, ["a"]);
        assert_eq!(
            outcome.problems(),
            ["listener 'nobind': listener nobind: address: in use"]
        );
        assert_eq!(listener_names(&cache), ["a"]);
        let dump = cache.dump();
        assert!(dump.listeners.failed.contains_key("nobind"));
        assert!(!dump.listeners.resources.contains_key("nobind"));
        drop(cache);
        assert_eq!(
            *shared.publisher.published.lock().expect("lock"),
            [vec!["a".to_owned()]],
            "one snapshot, without the refused listener"
        );

        // A good listener that the writer refuses in a later push keeps
        // its version; the rest of the push (b's removal) goes live.
        let (result, cache) = shared
            .update(|c| {
                c.apply(
                    type_url::LISTENER,
                    "v2",
                    &[listener_on("a", 0), listener_on("b", 0)],
                )
            })
            .await;
        assert!(result.expect("taken").rejected.is_empty());
        drop(cache);
        let (result, cache) = shared
            .update(|c| c.apply(type_url::LISTENER, "v3", &[listener_on("a", 9)]))
            .await;
        let outcome = result.expect("taken");
        assert_eq!(outcome.rejected[0].name, "a");
        assert_eq!(outcome.removed, ["b"]);
        assert_eq!(listener_names(&cache), ["a"]);
        assert_eq!(cache.build().listeners[0].address.port(), 0, "the old a");
        let dump = cache.dump();
        assert_eq!(dump.listeners.version_info, "v3", "b's removal applied");
        assert_eq!(dump.listeners.resources["a"].version_info, "v1");
        assert_eq!(dump.listeners.failed["a"].version_info, "v3");
        drop(cache);
        assert_eq!(
            shared.publisher.published.lock().expect("lock").last(),
            Some(&vec!["a".to_owned()])
        );
    });
}
