//! Route configuration translation: matches, actions and header mutations
//! into the model (good), and refusals with their field paths (bad).

use std::time::Duration;

use serde_json::{Value, json};

use super::{HCM, ROUTE0, edited, load_ok};
use crate::model::*;

/// The first route of the first listener's route table after `edits`.
fn route0(edits: &[(String, Value)]) -> Route {
    let edits: Vec<(&str, Value)> = edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
    rc(&edits).virtual_hosts[0].routes[0].clone()
}

fn hcm(edits: &[(&str, Value)]) -> HttpConnectionManager {
    let c = load_ok(&edited(edits));
    match &c.listeners[0].filter_chains[0].terminal {
        NetworkFilter::Http(hcm) => hcm.clone(),
        NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => panic!("expected an HCM"),
    }
}

fn rc(edits: &[(&str, Value)]) -> RouteConfig {
    match hcm(edits).route_config {
        RouteSource::Inline(rc) => rc,
        RouteSource::Rds(name) => panic!("expected an inline route config, got rds {name}"),
    }
}

fn at(field: &str) -> String {
    format!("{ROUTE0}/{field}")
}

fn forward(route: &Route) -> &ForwardAction {
    match &route.action {
        RouteAction::Forward(f) => f,
        other => panic!("expected a forward action, got {other:?}"),
    }
}

fn exact(s: &str) -> StringMatch {
    StringMatch {
        pattern: StringPattern::Exact(s.into()),
        ignore_case: false,
    }
}

#[test]
fn matches_translate() {
    let r = route0(&[(
        at("match"),
        json!({
            "safe_regex": {"google_re2": {}, "regex": "/v[0-9]+/.*"},
            "headers": [
                {"name": ":method", "string_match": {"exact": "POST"}},
                {"name": "X-Prefix", "prefix_match": "ab"},
                {"name": "x-suffix", "suffix_match": "yz", "invert_match": true},
                {"name": "x-contains", "string_match": {"contains": "Mid", "ignore_case": true}},
                {"name": "x-re", "safe_regex_match": {"regex": "\\d{3}"}},
                {"name": "x-range", "range_match": {"start": -10, "end": 0}},
                {"name": "x-present", "present_match": false},
                {"name": "x-any"},
                {"name": "x-empty", "exact_match": "", "treat_missing_header_as_empty": true}
            ],
            "query_parameters": [
                {"name": "debug"},
                {"name": "v", "string_match": {"safe_regex": {"regex": "[12]"}}},
                {"name": "p", "present_match": true}
            ],
            "grpc": {},
            "runtime_fraction": {"default_value": {"numerator": 25, "denominator": "TEN_THOUSAND"}, "runtime_key": "k"}
        }),
    )]);
    let header = |name: &str, rule, invert, missing_empty| HeaderMatcher {
        name: name.into(),
        rule,
        invert,
        treat_missing_as_empty: missing_empty,
    };
    let plain = |pattern| {
        HeaderRule::String(StringMatch {
            pattern,
            ignore_case: false,
        })
    };
    assert_eq!(
        r.matcher,
        RouteMatch {
            path: PathMatch::Regex("/v[0-9]+/.*".into()),
            case_sensitive: true,
            headers: vec![
                header(":method", HeaderRule::String(exact("POST")), false, false),
                header(
                    "x-prefix",
                    plain(StringPattern::Prefix("ab".into())),
                    false,
                    false
                ),
                header(
                    "x-suffix",
                    plain(StringPattern::Suffix("yz".into())),
                    true,
                    false
                ),
                header(
                    "x-contains",
                    HeaderRule::String(StringMatch {
                        pattern: StringPattern::Contains("Mid".into()),
                        ignore_case: true
                    }),
                    false,
                    false
                ),
                header(
                    "x-re",
                    plain(StringPattern::Regex(r"\d{3}".into())),
                    false,
                    false
                ),
                header(
                    "x-range",
                    HeaderRule::Range { start: -10, end: 0 },
                    false,
                    false
                ),
                header("x-present", HeaderRule::Present(false), false, false),
                header("x-any", HeaderRule::Present(true), false, false),
                header("x-empty", HeaderRule::String(exact("")), false, true),
            ],
            query_parameters: vec![
                QueryParameterMatcher {
                    name: "debug".into(),
                    value: None
                },
                QueryParameterMatcher {
                    name: "v".into(),
                    value: Some(StringMatch {
                        pattern: StringPattern::Regex("[12]".into()),
                        ignore_case: false
                    })
                },
                QueryParameterMatcher {
                    name: "p".into(),
                    value: None
                },
            ],
            grpc: true,
            runtime_fraction: Some(FractionalPercent {
                numerator: 25,
                denominator: 10_000
            }),
        }
    );
    let r = route0(&[(
        at("match"),
        json!({"path_separated_prefix": "/sep", "case_sensitive": false}),
    )]);
    assert_eq!(r.matcher.path, PathMatch::SeparatedPrefix("/sep".into()));
    assert!(!r.matcher.case_sensitive);
}

#[test]
fn forward_actions_translate() {
    let r = route0(&[(
        at("route"),
        json!({
            "weighted_clusters": {
                "clusters": [
                    {"name": "backend", "weight": 30,
                     "request_headers_to_add": [{"header": {"key": "x-w", "value": "1"}}],
                     "response_headers_to_remove": ["x-internal"],
                     "host_rewrite_literal": "b.internal"},
                    {"cluster_header": "X-Pick", "weight": 70}
                ],
                "total_weight": 100,
                "runtime_key_prefix": "routing.traffic_shift",
                "header_name": "x-random"
            },
            "cluster_not_found_response_code": "NOT_FOUND",
            "regex_rewrite": {"pattern": {"regex": "^/service/([^/]+)(/.*)$"}, "substitution": "\\2/instance/\\1"},
            "host_rewrite_header": "X-Host",
            "timeout": "3s",
            "idle_timeout": "0s",
            "max_grpc_timeout": "0s",
            "grpc_timeout_offset": "0.1s",
            "max_stream_duration": {"max_stream_duration": "60s", "grpc_timeout_header_max": "10s", "grpc_timeout_header_offset": "0.05s"}
        }),
    )]);
    let f = forward(&r);
    assert_eq!(
        f.cluster,
        ClusterSpecifier::Weighted(WeightedClusters {
            clusters: vec![
                ClusterWeight {
                    target: ClusterTarget::Name("backend".into()),
                    weight: 30,
                    headers: HeaderMutations {
                        request_add: vec![HeaderToAdd {
                            name: "x-w".into(),
                            value: "1".into(),
                            action: AppendAction::AppendIfExistsOrAdd,
                            keep_empty_value: false,
                        }],
                        response_remove: vec!["x-internal".into()],
                        ..HeaderMutations::default()
                    },
                    host_rewrite_literal: Some("b.internal".into()),
                },
                ClusterWeight {
                    target: ClusterTarget::Header("x-pick".into()),
                    weight: 70,
                    headers: HeaderMutations::default(),
                    host_rewrite_literal: None,
                },
            ],
            random_value_header: Some("x-random".into()),
        })
    );
    assert_eq!(f.cluster_not_found_status, 404);
    assert_eq!(
        f.regex_rewrite,
        Some(RegexRewrite {
            pattern: "^/service/([^/]+)(/.*)$".into(),
            substitution: r"\2/instance/\1".into(),
        })
    );
    assert_eq!(f.host_rewrite, Some(HostRewrite::Header("x-host".into())));
    assert_eq!(f.timeout, Some(Duration::from_secs(3)));
    assert_eq!(f.idle_timeout, Some(Duration::ZERO));
    assert_eq!(
        f.grpc_timeout,
        Some(GrpcTimeout {
            max: None,
            offset: Some(Duration::from_millis(100))
        })
    );
    assert_eq!(
        f.max_stream_duration,
        Some(MaxStreamDuration {
            max_stream_duration: Some(Duration::from_secs(60)),
            grpc_timeout_header_max: Some(Duration::from_secs(10)),
            grpc_timeout_header_offset: Some(Duration::from_millis(50)),
        })
    );

    let host = |spec: Value| {
        let mut route = json!({"cluster": "backend"});
        route
            .as_object_mut()
            .expect("object")
            .extend(spec.as_object().expect("object").clone());
        forward(&route0(&[(at("route"), route)]))
            .host_rewrite
            .clone()
    };
    let cases = [
        (
            json!({"host_rewrite_literal": "a.example"}),
            Some(HostRewrite::Literal("a.example".into())),
        ),
        (json!({"host_rewrite_literal": ""}), None),
        (json!({"auto_host_rewrite": true}), Some(HostRewrite::Auto)),
        (json!({"auto_host_rewrite": false}), None),
        (
            json!({"host_rewrite_path_regex": {"pattern": {"regex": "^/(.+)/.+$"}, "substitution": "\\1"}}),
            Some(HostRewrite::PathRegex(RegexRewrite {
                pattern: "^/(.+)/.+$".into(),
                substitution: r"\1".into(),
            })),
        ),
        (json!({}), None),
    ];
    for (spec, want) in cases {
        assert_eq!(host(spec.clone()), want, "{spec}");
    }
    let f = forward(&route0(&[(
        at("route"),
        json!({"cluster_header": "X-Cluster"}),
    )]))
    .clone();
    assert_eq!(f.cluster, ClusterSpecifier::Header("x-cluster".into()));
    assert_eq!(f.cluster_not_found_status, 503);
}

#[test]
fn redirects_translate() {
    let redirect = |spec: Value| {
        let r = route0(&[(at("route"), Value::Null), (at("redirect"), spec)]);
        match r.action {
            RouteAction::Redirect(r) => r,
            other => panic!("expected a redirect, got {other:?}"),
        }
    };
    let base = RedirectAction {
        scheme: None,
        host: None,
        port: None,
        path: PathRedirect::Keep,
        strip_query: false,
        status: 301,
    };
    let cases = [
        (
            json!({"https_redirect": true}),
            RedirectAction {
                scheme: Some("https".into()),
                ..base.clone()
            },
        ),
        (
            json!({"scheme_redirect": "HTTP"}),
            RedirectAction {
                scheme: Some("http".into()),
                ..base.clone()
            },
        ),
        (
            json!({"host_redirect": "b.com", "port_redirect": 8443, "response_code": "PERMANENT_REDIRECT"}),
            RedirectAction {
                host: Some("b.com".into()),
                port: Some(8443),
                status: 308,
                ..base.clone()
            },
        ),
        (
            json!({"path_redirect": "/new?x=1", "strip_query": true, "response_code": "FOUND"}),
            RedirectAction {
                path: PathRedirect::Path("/new?x=1".into()),
                strip_query: true,
                status: 302,
                ..base.clone()
            },
        ),
        (
            json!({"prefix_rewrite": "/v2/", "response_code": "SEE_OTHER"}),
            RedirectAction {
                path: PathRedirect::Prefix("/v2/".into()),
                status: 303,
                ..base.clone()
            },
        ),
        (
            json!({"regex_rewrite": {"pattern": {"regex": "one"}, "substitution": "two"}, "response_code": "TEMPORARY_REDIRECT"}),
            RedirectAction {
                path: PathRedirect::Regex(RegexRewrite {
                    pattern: "one".into(),
                    substitution: "two".into(),
                }),
                status: 307,
                ..base.clone()
            },
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(redirect(spec.clone()), want, "{spec}");
    }
}

#[test]
fn header_mutations_translate_at_every_level() {
    let rc_path = format!("{HCM}/route_config");
    let vh_path = format!("{HCM}/route_config/virtual_hosts/0");
    let add = |key: &str, extra: Value| {
        let mut o = json!({"header": {"key": key, "value": "v%%"}});
        o.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        o
    };
    let config = rc(&[
        (
            &format!("{rc_path}/request_headers_to_add"),
            json!([add("X-A", json!({})), add("x-b", json!({"append": false}))]),
        ),
        (
            &format!("{rc_path}/request_headers_to_remove"),
            json!(["X-Gone"]),
        ),
        (
            &format!("{rc_path}/most_specific_header_mutations_wins"),
            json!(true),
        ),
        (
            &format!("{rc_path}/ignore_port_in_host_matching"),
            json!(true),
        ),
        (
            &format!("{vh_path}/response_headers_to_add"),
            json!([
                add("x-c", json!({"append_action": "ADD_IF_ABSENT"})),
                add(
                    "x-d",
                    json!({"append_action": "OVERWRITE_IF_EXISTS", "keep_empty_value": true})
                ),
                add("x-e", json!({"append": true}))
            ]),
        ),
        (
            &format!("{ROUTE0}/response_headers_to_remove"),
            json!(["x-r"]),
        ),
        (
            &format!("{ROUTE0}/request_headers_to_add"),
            json!([add(
                "x-f",
                json!({"append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
            )]),
        ),
    ]);
    let to_add = |name: &str, action, keep_empty_value| HeaderToAdd {
        name: name.into(),
        value: "v%".into(),
        action,
        keep_empty_value,
    };
    assert!(config.ignore_port_in_host_matching);
    assert!(config.most_specific_header_mutations_wins);
    assert_eq!(
        config.headers,
        HeaderMutations {
            request_add: vec![
                to_add("x-a", AppendAction::AppendIfExistsOrAdd, false),
                to_add("x-b", AppendAction::OverwriteIfExistsOrAdd, false),
            ],
            request_remove: vec!["x-gone".into()],
            ..HeaderMutations::default()
        }
    );
    assert_eq!(
        config.virtual_hosts[0].headers.response_add,
        [
            to_add("x-c", AppendAction::AddIfAbsent, false),
            to_add("x-d", AppendAction::OverwriteIfExists, true),
            to_add("x-e", AppendAction::AppendIfExistsOrAdd, false),
        ]
    );
    let route = &config.virtual_hosts[0].routes[0];
    assert_eq!(route.headers.response_remove, ["x-r"]);
    assert_eq!(
        route.headers.request_add,
        [to_add("x-f", AppendAction::OverwriteIfExistsOrAdd, false)]
    );
}

#[test]
fn strip_port_modes_translate() {
    let cases = [
        (json!({}), StripHostPort::None),
        (
            json!({"strip_matching_host_port": true}),
            StripHostPort::Matching,
        ),
        (json!({"strip_any_host_port": true}), StripHostPort::Any),
        (json!({"strip_any_host_port": false}), StripHostPort::None),
    ];
    for (fields, want) in cases {
        let edits: Vec<(String, Value)> = fields
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (format!("{HCM}/{k}"), v.clone()))
            .collect();
        let edits: Vec<(&str, Value)> =
            edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
        assert_eq!(hcm(&edits).strip_host_port, want, "{fields}");
    }
}
