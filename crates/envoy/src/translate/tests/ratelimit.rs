//! Rate limit translation: the three filters and the routes' and virtual
//! hosts' `rate_limits` into the model, Envoy's validation, and the fields
//! Strait cannot honour refused by name.

use std::time::Duration;

use serde_json::{Value, json};

use super::{HCM, edited, load_ok, render};
use crate::{
    load,
    model::{
        Config, NetworkFilter, RouteAction,
        ratelimit::{
            LocalRateLimit, NetworkLocalRateLimit, RateLimit, RateLimitAction, RequestType,
            TokenBucket, XRateLimitHeaders,
        },
    },
};

const LOCAL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const GLOBAL: &str = "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
const ROUTE0: &str = "/route_config/virtual_hosts/0/routes/0";

fn typed(url: &str, config: Value) -> Value {
    let mut v = json!({ "@type": url });
    if let (Some(m), Value::Object(c)) = (v.as_object_mut(), config) {
        m.extend(c);
    }
    v
}

/// BASE with one HTTP filter (`url`, `config`) before the router, and
/// more `edits`.
fn with_filter(name: &str, url: &str, config: Value, edits: &[(String, Value)]) -> String {
    let mut all = vec![
        (
            format!("{HCM}/http_filters/0"),
            json!({"name": name, "typed_config": typed(url, config)}),
        ),
        (
            format!("{HCM}/http_filters/1"),
            json!({"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
        ),
    ];
    all.extend(edits.iter().cloned());
    let refs: Vec<(&str, Value)> = all.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
    edited(&refs)
}

fn local(config: Value) -> String {
    with_filter("envoy.filters.http.local_ratelimit", LOCAL, config, &[])
}

fn first_filter<T: 'static>(c: &Config) -> &T {
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("http listener");
    };
    hcm.http_filters[0].config.get::<T>().expect("config type")
}

fn refused(text: &str, path_part: &str) {
    let errors = load(text).expect_err("must be refused");
    let all = render(&errors);
    assert!(all.contains(path_part), "{path_part} not in:\n{all}");
}

fn bucket(max: u32, secs: u64) -> Value {
    json!({"max_tokens": max, "tokens_per_fill": 1, "fill_interval": format!("{secs}s")})
}

#[test]
fn local_rate_limit_translates() {
    let c = load_ok(&local(json!({
        "stat_prefix": "rl",
        "status": {"code": 200},
        "token_bucket": bucket(3, 60),
        "filter_enabled": {"runtime_key": "k", "default_value": {"numerator": 50}},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "vh_rate_limits": "INCLUDE",
        "descriptors": [{"entries": [{"key": "user", "value": "a"}], "token_bucket": bucket(1, 1)}],
        "response_headers_to_add": [{"header": {"key": "x-rl", "value": "1"}}],
    })));
    let l: &LocalRateLimit = first_filter(&c);
    // Below 400: Envoy answers 429.
    assert_eq!(l.status, 429);
    assert_eq!(
        l.token_bucket,
        Some(TokenBucket {
            max_tokens: 3,
            tokens_per_fill: 1,
            fill_interval: Duration::from_secs(60)
        })
    );
    assert_eq!(l.filter_enabled.map(|f| f.per_million), Some(500_000));
    assert!(l.filter_enforced.is_none());
    assert_eq!(l.x_ratelimit_headers, XRateLimitHeaders::Draft03);
    assert_eq!(l.descriptors.len(), 1);
    assert_eq!(l.response_headers_to_add[0].name, "x-rl");
    assert!(l.always_consume_default_token_bucket);
}

#[test]
fn local_rate_limit_refusals() {
    for (config, path) in [
        (json!({"token_bucket": bucket(1, 1)}), "stat_prefix"),
        (
            json!({"stat_prefix": "s", "token_bucket": {"max_tokens": 1, "fill_interval": "0.01s"}}),
            "fill_interval",
        ),
        (
            json!({"stat_prefix": "s", "descriptors": [{"entries": [{"key": "k", "value": ""}], "token_bucket": bucket(1, 1)}]}),
            "descriptors[0].entries",
        ),
        (
            json!({"stat_prefix": "s", "descriptors": [
                {"entries": [{"key": "k", "value": "v"}], "token_bucket": bucket(1, 1)},
                {"entries": [{"key": "k", "value": "v"}], "token_bucket": bucket(2, 1)}]}),
            "descriptors[1]",
        ),
        (
            json!({"stat_prefix": "s", "local_cluster_rate_limit": {}}),
            "local_cluster_rate_limit",
        ),
        (
            json!({"stat_prefix": "s", "rate_limited_as_resource_exhausted": true}),
            "rate_limited_as_resource_exhausted",
        ),
        (
            json!({"stat_prefix": "s", "rate_limits": [{"actions": [{"remote_address": {}}]}]}),
            "rate_limits",
        ),
    ] {
        refused(&local(config), path);
    }
}

#[test]
fn per_route_local_rate_limit_needs_a_bucket() {
    let per_route = |config: Value| {
        with_filter(
            "envoy.filters.http.local_ratelimit",
            LOCAL,
            json!({"stat_prefix": "f"}),
            &[(
                format!("{HCM}{ROUTE0}/typed_per_filter_config"),
                json!({"envoy.filters.http.local_ratelimit": typed(LOCAL, config)}),
            )],
        )
    };
    load_ok(&per_route(
        json!({"stat_prefix": "r", "token_bucket": bucket(1, 1)}),
    ));
    refused(&per_route(json!({"stat_prefix": "r"})), "token_bucket");
}

#[test]
fn route_and_virtual_host_rate_limits_translate() {
    let text = with_filter(
        "envoy.filters.http.local_ratelimit",
        LOCAL,
        json!({"stat_prefix": "f"}),
        &[
            (
                format!("{HCM}/route_config/virtual_hosts/0/rate_limits"),
                json!([{"actions": [{"generic_key": {"descriptor_value": "vh"}}]}]),
            ),
            (
                format!("{HCM}{ROUTE0}/route/rate_limits"),
                json!([{"stage": 2, "disable_key": "d", "actions": [
                    {"request_headers": {"header_name": "X-User", "descriptor_key": "user"}},
                    {"header_value_match": {"descriptor_value": "m", "expect_match": false,
                        "headers": [{"name": "x-a", "present_match": true}]}},
                    {"destination_cluster": {}},
                    {"source_cluster": {}},
                    {"remote_address": {}},
                ]}]),
            ),
            ("/node".to_owned(), json!({"id": "n", "cluster": "front"})),
        ],
    );
    let c = load_ok(&text);
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("http listener");
    };
    let crate::model::RouteSource::Inline(rc) = &hcm.route_config else {
        panic!("inline routes");
    };
    let route = &rc.virtual_hosts[0].routes[0];
    assert!(matches!(route.action, RouteAction::Forward(_)));
    let limits = &route.rate_limits;
    assert_eq!(limits.virtual_host.len(), 1);
    let p = &limits.route[0];
    assert_eq!((p.stage, p.disable_key.as_str()), (2, "d"));
    assert!(matches!(
        &p.actions[0],
        RateLimitAction::RequestHeaders { header_name, .. } if header_name == "x-user"
    ));
    assert!(matches!(
        &p.actions[1],
        RateLimitAction::HeaderValueMatch { descriptor_key, expect_match: false, .. }
            if descriptor_key == "header_match"
    ));
    assert_eq!(
        p.actions[3],
        RateLimitAction::SourceCluster("front".to_owned())
    );
}

#[test]
fn unsupported_route_rate_limit_parts_are_refused() {
    for (policy, path) in [
        (
            json!({"actions": [{"query_parameters": {"query_parameter_name": "q", "descriptor_key": "q"}}]}),
            "query_parameters",
        ),
        (
            json!({"actions": [{"remote_address": {}}], "limit": {"dynamic_metadata": {"metadata_key": {"key": "k", "path": [{"key": "p"}]}}}}),
            "limit",
        ),
        (json!({"actions": []}), "actions"),
    ] {
        let text = with_filter(
            "envoy.filters.http.local_ratelimit",
            LOCAL,
            json!({"stat_prefix": "f"}),
            &[(format!("{HCM}{ROUTE0}/route/rate_limits"), json!([policy]))],
        );
        refused(&text, path);
    }
}

fn global(config: Value) -> String {
    with_filter("envoy.filters.http.ratelimit", GLOBAL, config, &[])
}

fn service(cluster: &str) -> Value {
    json!({"transport_api_version": "V3", "grpc_service": {"envoy_grpc": {"cluster_name": cluster}}})
}

#[test]
fn global_rate_limit_translates() {
    let c = load_ok(&global(json!({
        "domain": "d",
        "request_type": "external",
        "failure_mode_deny": true,
        "rate_limit_service": service("backend"),
    })));
    let g: &RateLimit = first_filter(&c);
    assert_eq!(g.cluster, "backend");
    assert_eq!(g.request_type, RequestType::External);
    // Envoy's default: 20 ms.
    assert_eq!(g.timeout, Some(Duration::from_millis(20)));
    assert_eq!((g.rate_limited_status, g.status_on_error), (429, 500));
    let c = load_ok(&global(json!({
        "domain": "d", "timeout": "0s", "rate_limit_service": service("backend"),
    })));
    assert_eq!(first_filter::<RateLimit>(&c).timeout, None);
}

#[test]
fn global_rate_limit_refusals() {
    for (config, path) in [
        (json!({"rate_limit_service": service("backend")}), "domain"),
        (
            json!({"domain": "d", "rate_limit_service": service("nowhere")}),
            "cluster_name",
        ),
        (
            json!({"domain": "d", "rate_limit_service": {"grpc_service": {"envoy_grpc": {"cluster_name": "backend"}}}}),
            "transport_api_version",
        ),
        (json!({"domain": "d"}), "rate_limit_service"),
        (
            json!({"domain": "d", "request_type": "sometimes", "rate_limit_service": service("backend")}),
            "request_type",
        ),
        (
            json!({"domain": "d", "stat_prefix": "p", "rate_limit_service": service("backend")}),
            "stat_prefix",
        ),
    ] {
        refused(&global(config), path);
    }
}

#[test]
fn network_local_rate_limit_translates() {
    let filter = |config: Value| {
        edited(&[
            (
                "/static_resources/listeners/1/filter_chains/0/filters/0",
                json!({"name": "envoy.filters.network.local_ratelimit", "typed_config": typed(
                    "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
                    config)}),
            ),
            (
                "/static_resources/listeners/1/filter_chains/0/filters/1",
                json!({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "tcp", "cluster": "backend"}}),
            ),
        ])
    };
    let c = load_ok(&filter(
        json!({"stat_prefix": "n", "token_bucket": bucket(2, 60)}),
    ));
    let n = c.listeners[1].filter_chains[0].read_filters[0]
        .config
        .get::<NetworkLocalRateLimit>()
        .expect("network local rate limit");
    assert_eq!((n.stat_prefix.as_str(), n.enabled), ("n", true));
    refused(&filter(json!({"stat_prefix": "n"})), "token_bucket");
    refused(
        &filter(json!({"stat_prefix": "n", "token_bucket": bucket(2, 60), "share_key": "k"})),
        "share_key",
    );
}
