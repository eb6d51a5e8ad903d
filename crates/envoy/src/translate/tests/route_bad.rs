//! Bad route configurations: each refused with its field path.

use serde_json::{Value, json};

use super::{HCM, ROUTE0, ROUTE0_PATH, edited, render};
use crate::load;

fn at(field: &str) -> String {
    format!("{ROUTE0}/{field}")
}

/// (what, edits, path of an expected error relative to route 0 (or absolute
/// when it starts with `static_resources`), a word its message must contain).
type BadCase = (
    &'static str,
    Vec<(String, Value)>,
    &'static str,
    &'static str,
);

#[test]
fn bad_routes_name_the_field() {
    let redirect = |spec: Value| vec![(at("route"), Value::Null), (at("redirect"), spec)];
    let route = |spec: Value| vec![(at("route"), spec)];
    let matcher = |spec: Value| vec![(at("match"), spec)];
    let weighted = |clusters: Value, extra: Value| {
        let mut w = json!({"clusters": clusters});
        w.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        route(json!({"weighted_clusters": w}))
    };
    let add = |field: &str, header: Value| vec![(at(field), json!([header]))];
    let cases: Vec<BadCase> = vec![
        (
            "invalid path regex",
            matcher(json!({"safe_regex": {"regex": "/a("}})),
            "match.safe_regex.regex",
            "invalid regex",
        ),
        (
            "invalid header regex",
            matcher(
                json!({"prefix": "/", "headers": [{"name": "x", "string_match": {"safe_regex": {"regex": "["}}}]}),
            ),
            "match.headers[0].string_match.safe_regex.regex",
            "invalid regex",
        ),
        (
            "invalid query regex",
            matcher(
                json!({"prefix": "/", "query_parameters": [{"name": "q", "string_match": {"safe_regex": {"regex": "a)"}}}]}),
            ),
            "match.query_parameters[0].string_match.safe_regex.regex",
            "invalid regex",
        ),
        (
            "re2 program size",
            matcher(json!({"safe_regex": {"google_re2": {"max_program_size": 100}, "regex": "a"}})),
            "match.safe_regex.google_re2.max_program_size",
            "max_program_size",
        ),
        (
            "separated prefix ending in /",
            matcher(json!({"path_separated_prefix": "/sep/"})),
            "match.path_separated_prefix",
            "'/'",
        ),
        (
            "separated prefix with ?",
            matcher(json!({"path_separated_prefix": "/a?b"})),
            "match.path_separated_prefix",
            "'?'",
        ),
        (
            "connect matcher",
            matcher(json!({"connect_matcher": {}})),
            "match.connect_matcher",
            "connect_matcher",
        ),
        (
            "path match policy",
            matcher(
                json!({"path_match_policy": {"name": "p", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig", "path_template": "/{x}"}}}),
            ),
            "match.path_match_policy",
            "path_match_policy",
        ),
        (
            "dynamic metadata",
            matcher(
                json!({"prefix": "/", "dynamic_metadata": [{"filter": "f", "path": [{"key": "k"}], "value": {"present_match": true}}]}),
            ),
            "match.dynamic_metadata",
            "dynamic_metadata",
        ),
        (
            "cookies",
            matcher(
                json!({"prefix": "/", "cookies": [{"name": "c", "string_match": {"exact": "v"}}]}),
            ),
            "match.cookies",
            "cookies",
        ),
        (
            "empty header prefix",
            matcher(json!({"prefix": "/", "headers": [{"name": "x", "prefix_match": ""}]})),
            "match.headers[0].prefix_match",
            "present_match",
        ),
        (
            "empty string_match suffix",
            matcher(
                json!({"prefix": "/", "headers": [{"name": "x", "string_match": {"suffix": ""}}]}),
            ),
            "match.headers[0].string_match.suffix",
            "empty",
        ),
        (
            "bad header name",
            matcher(json!({"prefix": "/", "headers": [{"name": "a b"}]})),
            "match.headers[0].name",
            "header name",
        ),
        (
            "empty range",
            matcher(
                json!({"prefix": "/", "headers": [{"name": "x", "range_match": {"start": 5, "end": 5}}]}),
            ),
            "match.headers[0].range_match",
            "less than",
        ),
        (
            "absent query parameter",
            matcher(
                json!({"prefix": "/", "query_parameters": [{"name": "q", "present_match": false}]}),
            ),
            "match.query_parameters[0].present_match",
            "present_match",
        ),
        (
            "custom string matcher",
            matcher(
                json!({"prefix": "/", "headers": [{"name": "x", "string_match": {"custom": {"name": "c", "typed_config": {"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}}}}}]}),
            ),
            "match.headers[0].string_match.custom",
            "custom",
        ),
        (
            "weights sum to zero",
            weighted(json!([{"name": "backend", "weight": 0}]), json!({})),
            "route.weighted_clusters.clusters",
            "more than 0",
        ),
        (
            "no weighted clusters",
            weighted(json!([]), json!({})),
            "route.weighted_clusters.clusters",
            "at least one",
        ),
        (
            "total_weight mismatch",
            weighted(
                json!([{"name": "backend", "weight": 30}, {"name": "backend", "weight": 30}]),
                json!({"total_weight": 100}),
            ),
            "route.weighted_clusters.total_weight",
            "sum to 60",
        ),
        (
            "weighted unknown cluster",
            weighted(
                json!([{"name": "backend", "weight": 1}, {"name": "nope", "weight": 1}]),
                json!({}),
            ),
            "route.weighted_clusters.clusters[1].name",
            "unknown cluster",
        ),
        (
            "weighted name and header",
            weighted(
                json!([{"name": "backend", "cluster_header": "x", "weight": 1}]),
                json!({}),
            ),
            "route.weighted_clusters.clusters[0]",
            "only one",
        ),
        (
            "weighted use_hash_policy",
            weighted(
                json!([{"name": "backend", "weight": 1}]),
                json!({"use_hash_policy": true}),
            ),
            "route.weighted_clusters.use_hash_policy",
            "use_hash_policy",
        ),
        (
            "weighted per-filter config",
            weighted(
                json!([{"name": "backend", "weight": 1, "typed_per_filter_config": {"f": {"@type": "type.googleapis.com/google.protobuf.Empty", "value": {}}}}]),
                json!({}),
            ),
            "route.weighted_clusters.clusters[0].typed_per_filter_config",
            "typed_per_filter_config",
        ),
        (
            "bad cluster header",
            route(json!({"cluster_header": "a b"})),
            "route.cluster_header",
            "header name",
        ),
        (
            "cluster specifier plugin",
            route(json!({"cluster_specifier_plugin": "p"})),
            "route.cluster_specifier_plugin",
            "cluster_specifier_plugin",
        ),
        (
            "bad regex rewrite group",
            route(
                json!({"cluster": "backend", "regex_rewrite": {"pattern": {"regex": "^/(a)$"}, "substitution": "\\2"}}),
            ),
            "route.regex_rewrite.substitution",
            "1 capture groups",
        ),
        (
            "prefix and regex rewrite",
            route(
                json!({"cluster": "backend", "prefix_rewrite": "/", "regex_rewrite": {"pattern": {"regex": "a"}, "substitution": "b"}}),
            ),
            "route.regex_rewrite",
            "only one",
        ),
        (
            "host_rewrite format",
            route(json!({"cluster": "backend", "host_rewrite": "%REQ(x)%"})),
            "route.host_rewrite",
            "host_rewrite",
        ),
        (
            "path_rewrite format",
            route(json!({"cluster": "backend", "path_rewrite": "/%REQ(x)%"})),
            "route.path_rewrite",
            "path_rewrite",
        ),
        (
            "redirect path_rewrite",
            redirect(json!({"path_rewrite": "/x"})),
            "redirect.path_rewrite",
            "path_rewrite",
        ),
        (
            "redirect bad port",
            redirect(json!({"port_redirect": 70000})),
            "redirect.port_redirect",
            "not a port",
        ),
        (
            "redirect bad scheme",
            redirect(json!({"scheme_redirect": "1http"})),
            "redirect.scheme_redirect",
            "scheme",
        ),
        (
            "redirect bad regex",
            redirect(json!({"regex_rewrite": {"pattern": {"regex": "("}, "substitution": ""}})),
            "redirect.regex_rewrite.pattern.regex",
            "invalid regex",
        ),
        (
            "header format specifier",
            add(
                "request_headers_to_add",
                json!({"header": {"key": "x", "value": "%DOWNSTREAM_REMOTE_ADDRESS%"}}),
            ),
            "request_headers_to_add[0].header.value",
            "%DOWNSTREAM_REMOTE_ADDRESS%",
        ),
        (
            "header REQ specifier",
            add(
                "response_headers_to_add",
                json!({"header": {"key": "x", "value": "a-%REQ(x-id)%"}}),
            ),
            "response_headers_to_add[0].header.value",
            "%REQ(x-id)%",
        ),
        (
            "lone percent",
            add(
                "request_headers_to_add",
                json!({"header": {"key": "x", "value": "50%"}}),
            ),
            "request_headers_to_add[0].header.value",
            "unterminated",
        ),
        (
            "append with append_action",
            add(
                "request_headers_to_add",
                json!({"header": {"key": "x", "value": "v"}, "append": true, "append_action": "ADD_IF_ABSENT"}),
            ),
            "request_headers_to_add[0].append",
            "both",
        ),
        (
            "add a pseudo-header",
            add(
                "request_headers_to_add",
                json!({"header": {"key": ":path", "value": "/"}}),
            ),
            "request_headers_to_add[0].header.key",
            "pseudo-headers",
        ),
        (
            "add host",
            add(
                "request_headers_to_add",
                json!({"header": {"key": "Host", "value": "h"}}),
            ),
            "request_headers_to_add[0].header.key",
            "host",
        ),
        (
            "remove a pseudo-header",
            vec![(at("request_headers_to_remove"), json!([":authority"]))],
            "request_headers_to_remove[0]",
            "pseudo-headers",
        ),
        (
            "value and raw_value",
            add(
                "request_headers_to_add",
                json!({"header": {"key": "x", "value": "v", "raw_value": "dg=="}}),
            ),
            "request_headers_to_add[0].header",
            "only one",
        ),
        (
            "strip both port modes",
            vec![
                (format!("{HCM}/strip_matching_host_port"), json!(true)),
                (format!("{HCM}/strip_any_host_port"), json!(true)),
            ],
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.strip_any_host_port",
            "only one",
        ),
    ];
    let mut failures = Vec::new();
    for (what, edits, path, word) in cases {
        let edits: Vec<(&str, Value)> =
            edits.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
        let want_path = if path.starts_with("static_resources") {
            path.to_owned()
        } else {
            format!("{ROUTE0_PATH}.{path}")
        };
        match load(&edited(&edits)) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(errors) => {
                let hit = errors
                    .iter()
                    .any(|e| e.path() == want_path && e.to_string().contains(word));
                if !hit {
                    failures.push(format!(
                        "{what}: want {want_path} ~ {word:?}, got\n{}",
                        render(&errors)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_route_with_both_a_cluster_and_a_redirect_is_refused() {
    // `route` and `redirect` are one proto oneof: the parser refuses the
    // second, naming the route.
    let text = edited(&[(&at("redirect"), json!({"path_redirect": "/x"}))]);
    let errors = load(&text).expect_err("refused");
    let text = render(&errors);
    assert!(
        text.contains("redirect") || text.contains("route"),
        "{text}"
    );
    assert!(
        text.contains("routes[0]") || text.contains("routes/0"),
        "{text}"
    );
}
