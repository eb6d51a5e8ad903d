//! Envoy's documented action semantics, table-driven: weighted clusters
//! and `cluster_header`, rewrites, timeouts, header mutations,
//! `ignore_port_in_host_matching` and compile errors.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strait_model::*;

use super::*;

/// Request headers as `(name, value)` pairs.
type Pairs = &'static [(&'static str, &'static str)];
/// (route timeout, max_grpc_timeout config, request headers, want).
type TimeoutCase = (
    Option<Duration>,
    Option<GrpcTimeout>,
    HeaderMap,
    Option<Duration>,
);

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    m
}

fn one_route(matcher: RouteMatch, action: RouteAction) -> RouteTable {
    config_table(RouteConfig {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![Route::new("r", matcher, action)],
            headers: HeaderMutations::default(),
        }],
        ..RouteConfig::default()
    })
}

fn config_table(config: RouteConfig) -> RouteTable {
    RouteTable::compile(&config).expect("compiles")
}

fn to_backend() -> RouteAction {
    RouteAction::Forward(ForwardAction::to_cluster("backend"))
}

fn weighted(clusters: &[(&str, u32)], random_value_header: Option<&str>) -> RouteAction {
    RouteAction::Forward(ForwardAction {
        cluster: ClusterSpecifier::Weighted(WeightedClusters {
            clusters: clusters
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    target: if let Some(h) = name.strip_prefix("header:") {
                        ClusterTarget::Header(h.into())
                    } else {
                        ClusterTarget::Name((*name).into())
                    },
                    weight: *weight,
                    headers: HeaderMutations::default(),
                    host_rewrite_literal: None,
                })
                .collect(),
            random_value_header: random_value_header.map(Into::into),
        }),
        ..ForwardAction::to_cluster("unused")
    })
}

#[test]
fn weighted_clusters() {
    let table = one_route(
        RouteMatch::default(),
        weighted(
            &[("v1", 50), ("zero", 0), ("v3", 30), ("header:x-c", 20)],
            Some("x-rand"),
        ),
    );
    // The random value header decides, modulo the total weight (Envoy).
    let cases: &[(&str, Pairs, &str)] = &[
        ("0", &[], "v1"),
        ("49", &[], "v1"),
        ("50", &[], "v3"),
        ("79", &[], "v3"),
        ("80", &[("x-c", "picked")], "picked"),
        ("99", &[], ""),
        ("100", &[], "v1"),
        ("18446744073709551615", &[], "v1"),
    ];
    for (random, hs, want) in cases {
        let mut hs = headers(hs);
        hs.insert("x-rand", http::HeaderValue::from_static(random));
        // The request's own random value does not count.
        let view = RequestView::new("h", "/", &Method::GET, &hs).with_random(60);
        let matched = table.route(&view).matched().expect("matches");
        let chosen = matched.cluster(&view).expect("forwards");
        assert_eq!(chosen.name(), *want, "random {random}");
        assert!(chosen.weighted().is_some());
    }

    // Without a number in the header the route's rotation decides: every
    // 100 requests split exactly 50/30/20.
    let mut counts = std::collections::BTreeMap::new();
    let hs = headers(&[("x-rand", "not-a-number"), ("x-c", "h")]);
    for _ in 0..300 {
        let view = RequestView::new("h", "/", &Method::GET, &hs);
        let m = table.route(&view).matched().expect("matches");
        *counts
            .entry(m.cluster(&view).expect("forwards").name().to_owned())
            .or_insert(0) += 1;
    }
    let want: std::collections::BTreeMap<String, i32> =
        [("v1".into(), 150), ("v3".into(), 90), ("h".into(), 60)].into();
    assert_eq!(counts, want);

    // A 1:3 split, interleaved: every window of 4 requests holds one `a`
    // (so no run of `b` is longer than 6).
    let table = one_route(RouteMatch::default(), weighted(&[("a", 1), ("b", 3)], None));
    let hs = HeaderMap::new();
    let picks: Vec<bool> = (0..10_000)
        .map(|_| {
            let view = RequestView::new("h", "/", &Method::GET, &hs);
            let m = table.route(&view).matched().expect("matches");
            m.cluster(&view).expect("forwards").name() == "a"
        })
        .collect();
    assert_eq!(picks.iter().filter(|a| **a).count(), 2500);
    for window in picks.chunks(4) {
        assert_eq!(window.iter().filter(|a| **a).count(), 1, "{picks:?}");
    }

    let zero = RouteTable::compile(&RouteConfig {
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![Route::new(
                "r",
                RouteMatch::default(),
                weighted(&[("a", 0)], None),
            )],
            headers: HeaderMutations::default(),
        }],
        ..RouteConfig::default()
    })
    .expect_err("zero weights");
    assert!(matches!(zero, RouteError::ZeroWeights { .. }), "{zero:?}");
}

#[test]
fn cluster_header() {
    let table = one_route(
        RouteMatch::default(),
        RouteAction::Forward(ForwardAction {
            cluster: ClusterSpecifier::Header("x-cluster".into()),
            ..ForwardAction::to_cluster("unused")
        }),
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("x-cluster", "blue")], "blue"),
        (&[("x-cluster", "blue"), ("x-cluster", "green")], "blue"),
        (&[], ""),
    ];
    for (hs, want) in cases {
        let hs = headers(hs);
        let view = RequestView::new("h", "/", &Method::GET, &hs);
        let m = table.route(&view).matched().expect("matches");
        assert_eq!(m.cluster(&view).expect("forwards").name(), *want);
    }
}

#[test]
fn rewrites_and_host_rewrites() {
    let forward = |f: ForwardAction| RouteAction::Forward(f);
    let rx = |pattern: &str, substitution: &str| RegexRewrite {
        pattern: pattern.into(),
        substitution: substitution.into(),
    };
    let table = one_route(
        RouteMatch::default(),
        forward(ForwardAction {
            regex_rewrite: Some(rx("^/service/([^/]+)(/.*)$", r"\2/instance/\1")),
            ..ForwardAction::to_cluster("c")
        }),
    );
    let hs = HeaderMap::new();
    let path = "/service/foo/v1/api?x=/service/a/b";
    let m = table.find("h", path).expect("matches");
    assert_eq!(
        m.rewritten_path(path).as_deref(),
        Some("/v1/api/instance/foo?x=/service/a/b")
    );
    assert_eq!(m.rewritten_path("/nothing"), None);

    let host_cases: Vec<(Option<HostRewrite>, Pairs, HostRewriteOutcome<'static>)> = vec![
        (None, &[], HostRewriteOutcome::Keep),
        (
            Some(HostRewrite::Literal("lit".into())),
            &[],
            HostRewriteOutcome::Set("lit".into()),
        ),
        (Some(HostRewrite::Auto), &[], HostRewriteOutcome::Auto),
        (
            Some(HostRewrite::Header("x-host".into())),
            &[("x-host", "from.header")],
            HostRewriteOutcome::Set("from.header".into()),
        ),
        (
            Some(HostRewrite::Header("x-host".into())),
            &[("x-host", "")],
            HostRewriteOutcome::Keep,
        ),
        (
            Some(HostRewrite::Header("x-host".into())),
            &[],
            HostRewriteOutcome::Keep,
        ),
        (
            // Envoy's example writes `^/(.+)/.+$`, whose greedy group would
            // take `envoyproxy.io/some`; a segment class says what it means.
            Some(HostRewrite::PathRegex(rx("^/([^/]+)/.+$", r"\1"))),
            &[],
            HostRewriteOutcome::Set("envoyproxy.io".into()),
        ),
    ];
    for (rewrite, hs, want) in host_cases {
        let table = one_route(
            RouteMatch::default(),
            forward(ForwardAction {
                host_rewrite: rewrite.clone(),
                ..ForwardAction::to_cluster("c")
            }),
        );
        let hs = headers(hs);
        let view = RequestView::new("h", "/envoyproxy.io/some/path?q", &Method::GET, &hs);
        let m = table.route(&view).matched().expect("matches");
        let cluster = m.cluster(&view);
        assert_eq!(m.host_rewrite(&view, cluster.as_ref()), want, "{rewrite:?}");
    }
    // A weighted cluster's host_rewrite_literal beats the route's.
    let mut action = weighted(&[("a", 1)], None);
    if let RouteAction::Forward(f) = &mut action {
        f.host_rewrite = Some(HostRewrite::Literal("route".into()));
        if let ClusterSpecifier::Weighted(w) = &mut f.cluster {
            w.clusters[0].host_rewrite_literal = Some("cluster".into());
        }
    }
    let table = one_route(RouteMatch::default(), action);
    let view = RequestView::new("h", "/", &Method::GET, &hs);
    let m = table.route(&view).matched().expect("matches");
    let chosen = m.cluster(&view);
    assert_eq!(
        m.host_rewrite(&view, chosen.as_ref()),
        HostRewriteOutcome::Set("cluster".into())
    );
}

#[test]
fn timeouts() {
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    let grpc = |max: Option<Duration>, offset: Option<Duration>| GrpcTimeout { max, offset };
    let grpc_request = |timeout: Option<&str>| {
        let mut h = headers(&[("content-type", "application/grpc")]);
        if let Some(t) = timeout {
            h.insert("grpc-timeout", HeaderValue::from_str(t).expect("value"));
        }
        h
    };
    // (route timeout, max_grpc_timeout config, request headers, want)
    let cases: Vec<TimeoutCase> = vec![
        (
            Some(secs(15)),
            None,
            grpc_request(Some("1S")),
            Some(secs(15)),
        ),
        (
            Some(secs(15)),
            Some(grpc(Some(secs(5)), None)),
            grpc_request(Some("1S")),
            Some(secs(1)),
        ),
        (
            Some(secs(15)),
            Some(grpc(Some(secs(5)), None)),
            grpc_request(Some("10S")),
            Some(secs(5)),
        ),
        // No header: "infinity", capped by the max (0 = uncapped).
        (
            Some(secs(15)),
            Some(grpc(Some(secs(5)), None)),
            grpc_request(None),
            Some(secs(5)),
        ),
        (
            Some(secs(15)),
            Some(grpc(None, None)),
            grpc_request(None),
            None,
        ),
        (
            Some(secs(15)),
            Some(grpc(None, None)),
            grpc_request(Some("30S")),
            Some(secs(30)),
        ),
        // The offset applies only when it leaves something.
        (
            Some(secs(15)),
            Some(grpc(None, Some(ms(100)))),
            grpc_request(Some("1S")),
            Some(ms(900)),
        ),
        (
            Some(secs(15)),
            Some(grpc(None, Some(secs(2)))),
            grpc_request(Some("1S")),
            Some(secs(1)),
        ),
        // Not gRPC: the route timeout.
        (
            Some(secs(15)),
            Some(grpc(Some(secs(5)), None)),
            headers(&[("grpc-timeout", "1S")]),
            Some(secs(15)),
        ),
        (None, None, HeaderMap::new(), None),
    ];
    for (timeout, grpc_timeout, hs, want) in cases {
        let table = one_route(
            RouteMatch::default(),
            RouteAction::Forward(ForwardAction {
                timeout,
                grpc_timeout,
                ..ForwardAction::to_cluster("c")
            }),
        );
        let view = RequestView::new("h", "/", &Method::POST, &hs);
        let m = table.route(&view).matched().expect("matches");
        assert_eq!(
            m.upstream_timeout(&view),
            want,
            "{timeout:?} {grpc_timeout:?} {hs:?}"
        );
    }

    let msd = |max_stream_duration, header_max, offset| MaxStreamDuration {
        max_stream_duration,
        grpc_timeout_header_max: header_max,
        grpc_timeout_header_offset: offset,
    };
    let with_timeout = |t: &str| headers(&[("grpc-timeout", t)]);
    let cases: Vec<(Option<MaxStreamDuration>, HeaderMap, StreamDuration)> = vec![
        (None, with_timeout("1S"), StreamDuration::Inherit),
        (
            Some(msd(None, None, None)),
            HeaderMap::new(),
            StreamDuration::Inherit,
        ),
        (
            Some(msd(Some(Duration::ZERO), None, None)),
            HeaderMap::new(),
            StreamDuration::Disabled,
        ),
        (
            Some(msd(Some(secs(60)), None, None)),
            with_timeout("1S"),
            StreamDuration::Limit(secs(60)),
        ),
        (
            Some(msd(Some(secs(60)), Some(secs(10)), None)),
            with_timeout("1S"),
            StreamDuration::Limit(secs(1)),
        ),
        (
            Some(msd(Some(secs(60)), Some(secs(10)), None)),
            with_timeout("1M"),
            StreamDuration::Limit(secs(10)),
        ),
        (
            Some(msd(None, Some(Duration::ZERO), None)),
            with_timeout("1M"),
            StreamDuration::Limit(secs(60)),
        ),
        (
            Some(msd(Some(secs(60)), Some(secs(10)), None)),
            HeaderMap::new(),
            StreamDuration::Limit(secs(60)),
        ),
        (
            Some(msd(None, Some(secs(10)), Some(ms(50)))),
            with_timeout("1S"),
            StreamDuration::Limit(ms(950)),
        ),
        (
            Some(msd(None, Some(secs(10)), Some(secs(2)))),
            with_timeout("1S"),
            StreamDuration::Limit(Duration::ZERO),
        ),
    ];
    for (max_stream_duration, hs, want) in cases {
        let table = one_route(
            RouteMatch::default(),
            RouteAction::Forward(ForwardAction {
                max_stream_duration,
                ..ForwardAction::to_cluster("c")
            }),
        );
        let view = RequestView::new("h", "/", &Method::POST, &hs);
        let m = table.route(&view).matched().expect("matches");
        assert_eq!(
            m.stream_duration(&view),
            want,
            "{max_stream_duration:?} {hs:?}"
        );
    }
}

#[test]
fn header_mutations_in_envoys_order() {
    let set = |name: &str, value: &str| HeaderToAdd {
        name: name.into(),
        value: value.into(),
        action: AppendAction::OverwriteIfExistsOrAdd,
        keep_empty_value: false,
    };
    let append = |name: &str, value: &str| HeaderToAdd {
        action: AppendAction::AppendIfExistsOrAdd,
        ..set(name, value)
    };
    let level = |v: &str| HeaderMutations {
        request_add: vec![set("x-who", v), append("x-all", v)],
        request_remove: vec![format!("x-drop-{v}")],
        response_add: vec![set("x-who", v)],
        response_remove: vec![],
    };
    let mut action = weighted(&[("a", 1)], None);
    if let RouteAction::Forward(f) = &mut action
        && let ClusterSpecifier::Weighted(w) = &mut f.cluster
    {
        w.clusters[0].headers = level("cluster");
    }
    let config = |most_specific_header_mutations_wins| RouteConfig {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                headers: level("route"),
                ..Route::new("r", RouteMatch::default(), action.clone())
            }],
            headers: level("vhost"),
        }],
        headers: level("config"),
        most_specific_header_mutations_wins,
        ..RouteConfig::default()
    };
    let values = |m: &HeaderMap, n: &str| -> Vec<String> {
        m.get_all(n)
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .collect()
    };
    for (wins, who, all) in [
        (false, "config", ["cluster", "route", "vhost", "config"]),
        (true, "cluster", ["config", "vhost", "route", "cluster"]),
    ] {
        let table = config_table(config(wins));
        let hs = HeaderMap::new();
        let view = RequestView::new("h", "/", &Method::GET, &hs);
        let m = table.route(&view).matched().expect("matches");
        let chosen = m.cluster(&view);
        let mut request = headers(&[("x-drop-vhost", "1"), ("x-keep", "1")]);
        m.apply_request_headers(&mut request, chosen.as_ref());
        assert_eq!(
            values(&request, "x-who"),
            [who],
            "most_specific_wins {wins}"
        );
        assert_eq!(values(&request, "x-all"), all, "most_specific_wins {wins}");
        assert!(!request.contains_key("x-drop-vhost"));
        assert!(request.contains_key("x-keep"));
        let mut response = HeaderMap::new();
        m.apply_response_headers(&mut response, chosen.as_ref());
        assert_eq!(values(&response, "x-who"), [who]);
        // Without the weighted cluster (a redirect, say) the rest apply.
        let mut response = HeaderMap::new();
        m.apply_response_headers(&mut response, None);
        assert_eq!(
            values(&response, "x-who"),
            [if wins { "route" } else { "config" }]
        );
    }
}

#[test]
fn ignore_port_in_host_matching() {
    let config = |ignore| RouteConfig {
        name: "rc".into(),
        virtual_hosts: vec![
            VirtualHost {
                name: "exact".into(),
                domains: vec!["a.com".into(), "b.com:8080".into()],
                routes: vec![Route::new("r", RouteMatch::default(), to_backend())],
                headers: HeaderMutations::default(),
            },
            VirtualHost {
                name: "default".into(),
                domains: vec!["*".into()],
                routes: vec![],
                headers: HeaderMutations::default(),
            },
        ],
        ignore_port_in_host_matching: ignore,
        ..RouteConfig::default()
    };
    let name =
        |t: &RouteTable, authority: &str| t.virtual_host(authority).map(|v| v.name().to_owned());
    let strict = config_table(config(false));
    let ignoring = config_table(config(true));
    let cases = [
        ("a.com", "exact", "exact"),
        ("a.com:8080", "default", "exact"),
        ("[::1]:80", "default", "default"),
        // Ports in domains are not stripped: b.com:8080 is unreachable once
        // request ports are ignored, as in Envoy.
        ("b.com:8080", "exact", "default"),
    ];
    for (authority, want_strict, want_ignoring) in cases {
        assert_eq!(
            name(&strict, authority).as_deref(),
            Some(want_strict),
            "{authority}"
        );
        assert_eq!(
            name(&ignoring, authority).as_deref(),
            Some(want_ignoring),
            "{authority}"
        );
    }
}

#[test]
fn compile_errors_name_the_route() {
    let bad_regex = RouteConfig {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![Route::new(
                "broken",
                RouteMatch::path(PathMatch::Regex("(".into())),
                to_backend(),
            )],
            headers: HeaderMutations::default(),
        }],
        ..RouteConfig::default()
    };
    let err = RouteTable::compile(&bad_regex).expect_err("bad regex");
    let text = err.to_string();
    assert!(
        matches!(err, RouteError::InvalidRegex { .. })
            && text.contains("\"vh\"")
            && text.contains("broken"),
        "{text}"
    );
}
