//! External authorization (`envoy.filters.http.ext_authz`, and
//! `envoy.filters.network.ext_authz` on a TCP proxy) against the real
//! Envoy 1.40: the same config, authorization servers and requests through
//! both, the same answers expected. The servers (gRPC and HTTP) run inside
//! the test (`strait_test_support::authz`).

use strait_test_support::{
    authz::{grpc_authz, http_authz},
    bootstrap::{HttpBootstrap, closed_port, static_cluster},
    differential::{Observe, Req},
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

const OBSERVE: Observe = Observe {
    response_headers: &[
        "x-auth-resp",
        "x-deny-reason",
        "www-authenticate",
        "content-type",
        "x-upstream",
    ],
    upstream_headers: Some(&[
        "x-authz",
        "x-auth-user",
        "x-auth-append",
        "x-auth-ctx",
        "x-auth-body",
        "x-auth-path",
        "x-drop",
        "x-envoy-auth-failure-mode-allowed",
        "content-length",
    ]),
    volatile: &[],
};

/// The HTTP listener: ext_authz with `config` (its fields), routes `/skip`
/// (filter disabled), `/ctx` (a context extension) and `/` to cluster `a`.
fn bootstrap(config: &str, a: &Upstream, grpc: &Upstream, http: &Upstream) -> String {
    let config: String = config
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    let per_route = "\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
    let filters = format!(
        "          - name: envoy.filters.http.ext_authz\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz\n{}",
        config.trim_end_matches('\n')
    );
    let routes = format!(
        r#"              - match: {{prefix: "/skip"}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz: {{{per_route}, disabled: true}}
              - match: {{prefix: "/ctx"}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz: {{{per_route}, check_settings: {{context_extensions: {{k: route-value}}}}}}
              - match: {{prefix: "/"}}
                route: {{cluster: a}}"#
    );
    let clusters = [
        static_cluster("a", a.addr.port(), false),
        static_cluster("authz-grpc", grpc.addr.port(), true),
        static_cluster("authz-http", http.addr.port(), false),
        static_cluster("dead", closed_port(), true),
    ]
    .concat();
    HttpBootstrap {
        stat_prefix: "authz",
        filters: &filters,
        routes: &routes,
        chain_extra: "",
        clusters: &clusters,
    }
    .render()
}

async fn differential(case: &str, config: &str, requests: &[Req]) -> anyhow::Result<()> {
    let (a, grpc, http) = (http_echo("a"), grpc_authz(), http_authz());
    let yaml = bootstrap(config, &a, &grpc, &http);
    let strait = TestProxy::start(&yaml, 1);
    let envoy = Envoy::start(&yaml);
    OBSERVE
        .compare(
            case,
            strait.listener("listener"),
            envoy.listener("listener"),
            requests,
        )
        .await?;
    let (ours, theirs) = (
        authz_stats(strait.admin()).await,
        authz_stats(envoy.admin()).await,
    );
    assert!(!theirs.is_empty(), "{case}: Envoy shows no ext_authz stats");
    assert_eq!(ours, theirs, "{case}: ext_authz stats");
    Ok(())
}

fn allow(path: &str) -> Req {
    Req::get("h", path).header("x-authz", "allow")
}

/// The gRPC service: allow (request and response headers changed, a
/// header removed), deny (the service's status, body and headers), a
/// failing service (403), a route with the filter off, a context
/// extension, and request bodies: whole, refused by content, and cut at
/// `max_request_bytes` with `allow_partial_message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_service_matches_envoy() -> anyhow::Result<()> {
    let config = r#"stat_prefix: waf
grpc_service: {envoy_grpc: {cluster_name: authz-grpc}, timeout: 2s}
transport_api_version: V3
with_request_body: {max_request_bytes: 64, allow_partial_message: true}
"#;
    let long = "a".repeat(100);
    let reqs = [
        Req::get("h", "/"),
        allow("/")
            .header("x-auth-append", "orig")
            .header("x-remove", "x-drop")
            .header("x-drop", "1"),
        Req::get("h", "/").header("x-authz", "boom"),
        Req::get("h", "/skip"),
        allow("/ctx"),
        Req::post("h", "/count", "hello").header("x-authz", "allow"),
        Req::post("h", "/count", "forbidden stuff").header("x-authz", "allow"),
        Req::post("h", "/count", &long).header("x-authz", "allow"),
    ];
    differential("grpc", config, &reqs).await
}

/// The HTTP service: the path prefix, the headers each way as the
/// matchers allow, a denial's own answer, a 5xx as an error, and the body
/// limit without `allow_partial_message` (413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_service_matches_envoy() -> anyhow::Result<()> {
    let config = r#"http_service:
  server_uri: {uri: "http://authz-http", cluster: authz-http, timeout: 2s}
  path_prefix: /check
  authorization_request:
    allowed_headers: {patterns: [{exact: x-authz}, {exact: x-remove}]}
  authorization_response:
    allowed_upstream_headers: {patterns: [{exact: x-auth-user}, {exact: x-auth-path}, {exact: x-auth-body}]}
    allowed_upstream_headers_to_append: {patterns: [{exact: x-auth-append}]}
    allowed_client_headers: {patterns: [{exact: x-deny-reason}]}
    allowed_client_headers_on_success: {patterns: [{exact: x-auth-resp}]}
with_request_body: {max_request_bytes: 32}
"#;
    let long = "b".repeat(100);
    let reqs = [
        Req::get("h", "/some/path?q=1"),
        allow("/some/path?q=1").header("x-auth-append", "orig"),
        allow("/")
            .header("x-remove", "x-drop")
            .header("x-drop", "1"),
        Req::get("h", "/").header("x-authz", "boom"),
        Req::get("h", "/skip"),
        Req::post("h", "/count", "hello").header("x-authz", "allow"),
        Req::post("h", "/count", "forbidden").header("x-authz", "allow"),
        Req::post("h", "/count", &long).header("x-authz", "allow"),
    ];
    differential("http", config, &reqs).await
}

/// A service nobody answers: denied with `status_on_error`, or let
/// through (and marked) under `failure_mode_allow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_service_fails_closed_unless_allowed() -> anyhow::Result<()> {
    let closed = r#"grpc_service: {envoy_grpc: {cluster_name: dead}, timeout: 1s}
status_on_error: {code: 503}
"#;
    let reqs = [allow("/"), Req::get("h", "/skip")];
    differential("status_on_error", closed, &reqs).await?;
    let open = r#"grpc_service: {envoy_grpc: {cluster_name: dead}, timeout: 1s}
failure_mode_allow: true
failure_mode_allow_header_add: true
"#;
    differential("failure_mode_allow", open, &[allow("/")]).await
}

/// A TCP proxy listener in front of `echo` with network ext_authz
/// (`extra` fields at 10 spaces), after network RBAC shadow rules naming
/// `shadow_policy` (Istio's CUSTOM shape) when given.
fn tcp_bootstrap(
    extra: &str,
    shadow_policy: Option<&str>,
    echo: &Upstream,
    grpc: &Upstream,
) -> String {
    let rbac = shadow_policy.map_or_else(String::new, |p| {
        format!(
            r#"      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: tcp.
          shadow_rules_stat_prefix: istio_ext_authz_
          shadow_rules:
            action: DENY
            policies:
              {p}:
                permissions: [{{destination_port_range: {{start: 1, end: 65536}}}}]
                principals: [{{any: true}}]
"#
        )
    });
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 0.0.0.0, port_value: 0}}}}
    filter_chains:
    - filters:
{rbac}      - name: envoy.filters.network.ext_authz
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz
          stat_prefix: tcp.
{extra}      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
{e}{g}{d}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        e = static_cluster("echo", echo.addr.port(), false),
        g = static_cluster("authz-grpc", grpc.addr.port(), true),
        d = static_cluster("dead", closed_port(), true),
    )
}

/// Connects from `source` (a loopback address), sends a line and reads
/// what comes back: `Some(echo)` when served, `None` when closed.
async fn round_trip(source: [u8; 4], to: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(std::net::SocketAddr::from((source, 0))).ok()?;
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], to.port()));
    let mut s = socket.connect(to).await.ok()?;
    let _ = s.write_all(b"ping\n").await;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// The ext_authz lines of a proxy's Prometheus page, sorted, without
/// Envoy's empty label sets and without `disabled`, which Envoy counts on
/// every read of a connection (Strait: once per connection, asserted
/// apart).
async fn authz_stats(admin: std::net::SocketAddr) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else {
        return Vec::new();
    };
    let _ = s
        .write_all(b"GET /stats/prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text).await;
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("ext_authz") && !l.contains("_disabled"))
        .map(|l| l.replace("{}", ""))
        .collect();
    out.sort();
    out
}

/// Network ext_authz (`envoy.filters.network.ext_authz`) on a TCP proxy:
/// allowed and denied clients, the service down with and without
/// `failure_mode_allow`, and Istio's CUSTOM shape, where the check runs
/// only when network RBAC's shadow verdict names an `istio-ext-authz`
/// policy. Outcomes and the filter's stats must match Envoy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_ext_authz_matches_envoy() -> anyhow::Result<()> {
    let echo = strait_test_support::upstream::tcp_echo();
    let grpc = grpc_authz();
    let up = "          grpc_service: {envoy_grpc: {cluster_name: authz-grpc}, timeout: 2s}\n";
    let down = "          grpc_service: {envoy_grpc: {cluster_name: dead}, timeout: 1s}\n";
    let open = format!("{down}          failure_mode_allow: true\n");
    let gated = format!(
        "{up}          filter_enabled_metadata:\n            filter: envoy.filters.network.rbac\n            path: [{{key: istio_ext_authz_shadow_effective_policy_id}}]\n            value: {{string_match: {{prefix: istio-ext-authz}}}}\n"
    );
    let cases: [(&str, String, Option<&str>, bool, bool); 5] = [
        ("service up", up.to_owned(), None, true, false),
        ("service down", down.to_owned(), None, false, false),
        ("failure_mode_allow", open, None, true, true),
        (
            "istio gate on",
            gated.clone(),
            Some("istio-ext-authz-ns-custom"),
            true,
            false,
        ),
        ("istio gate off", gated, Some("unrelated"), true, true),
    ];
    let mut diffs = Vec::new();
    for (case, extra, shadow, from_1, from_2) in cases {
        let yaml = tcp_bootstrap(&extra, shadow, &echo, &grpc);
        let strait = TestProxy::start(&yaml, 1);
        let envoy = Envoy::start(&yaml);
        for (source, want) in [([127, 0, 0, 1], from_1), ([127, 0, 0, 2], from_2)] {
            let ours = round_trip(source, strait.listener("listener")).await;
            let theirs = round_trip(source, envoy.listener("listener")).await;
            assert_eq!(
                theirs.is_some(),
                want,
                "{case}: envoy from {source:?}: {theirs:?}"
            );
            if ours != theirs {
                diffs.push(format!(
                    "{case} from {source:?}: strait {ours:?}, envoy {theirs:?}"
                ));
            }
        }
        if case == "istio gate off" {
            let disabled =
                strait_test_support::admin::stat(strait.admin(), "envoy_ext_authz_tcp__disabled")
                    .await?;
            assert_eq!(disabled, Some(2.0), "{case}: each connection once");
        }
        let (ours, theirs) = (
            authz_stats(strait.admin()).await,
            authz_stats(envoy.admin()).await,
        );
        assert!(!theirs.is_empty(), "{case}: Envoy shows no ext_authz stats");
        if ours != theirs {
            diffs.push(format!(
                "{case}: stats\n  strait: {ours:?}\n  envoy:  {theirs:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    Ok(())
}
