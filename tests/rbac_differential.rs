//! RBAC, differential: the same HTTP and network RBAC configs served by
//! Strait and by the real Envoy 1.40, the same requests and connections
//! sent to both, the same answers expected (status, body, which upstream
//! answered; for TCP whether the connection is served or closed), and the
//! same RBAC counters in `/stats/prometheus`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use strait_test_support::{
    bootstrap::{HttpBootstrap, static_cluster},
    certs::{TestCa, downstream_tls},
    client::Client,
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo, tcp_echo},
};

/// One request of a case.
struct Req {
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const fn get(path: &'static str) -> Req {
    Req {
        method: "GET",
        path,
        headers: &[],
    }
}

/// What a client saw: status, the upstream that answered (none for a
/// local reply) and a local reply's body.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    upstream: Option<String>,
    body: Option<String>,
}

async fn send(addr: SocketAddr, req: &Req) -> anyhow::Result<Seen> {
    let mut c = Client::http1(addr).await?;
    let mut b = Request::builder()
        .method(req.method)
        .uri(req.path)
        .header("host", "svc.local");
    for (k, v) in req.headers {
        b = b.header(*k, *v);
    }
    let r = c.send(b.body(Full::new(Bytes::new()))?).await?;
    let upstream = r.header("x-upstream").map(str::to_owned);
    Ok(Seen {
        status: r.status.as_u16(),
        body: upstream.is_none().then(|| r.text()),
        upstream,
    })
}

/// An HTTP listener (`filters` before the router, YAML list items at 10
/// spaces; `routes` at 14 spaces) in front of cluster `a`; `tls` is a
/// transport socket block at 6 spaces, or empty.
fn http_bootstrap(filters: &str, routes: &str, tls: &str, a: &Upstream) -> String {
    HttpBootstrap {
        stat_prefix: "diff",
        filters: filters.trim_end_matches('\n'),
        routes,
        chain_extra: tls,
        clusters: &static_cluster("a", a.addr.port(), false),
    }
    .render()
}

/// The default route: everything to `a`.
const ALL_TO_A: &str =
    "              - match: {prefix: \"/\"}\n                route: {cluster: a}";

/// An RBAC HTTP filter entry with `config` (the RBAC message's fields, at
/// 14 spaces).
fn rbac_filter(config: &str) -> String {
    format!(
        "          - name: envoy.filters.http.rbac\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC\n{config}"
    )
}

/// The RBAC counters a proxy's Prometheus page shows.
fn rbac_stats(admin: SocketAddr) -> Vec<String> {
    let mut s = TcpStream::connect(admin).expect("admin");
    s.write_all(b"GET /stats/prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("rbac"))
        .map(|l| l.replace(' ', " = "))
        .collect();
    out.sort();
    out
}

/// Runs `requests` through Strait and Envoy on the same config; every
/// difference is reported. With `stats`, the RBAC counters must agree too.
async fn differential(case: &str, yaml: &str, requests: &[Req], stats: bool) -> anyhow::Result<()> {
    let strait = TestProxy::start(yaml, 1);
    let envoy = Envoy::start(yaml);
    let mut diffs = Vec::new();
    for req in requests {
        let ours = send(strait.listener("listener"), req).await?;
        let theirs = send(envoy.listener("listener"), req).await?;
        if std::env::var_os("DIFF_VERBOSE").is_some() {
            eprintln!("{case}: {} {}: {ours:?}", req.method, req.path);
        }
        if ours != theirs {
            diffs.push(format!(
                "{case}: {} {} {:?}:\n  strait: {ours:?}\n  envoy:  {theirs:?}",
                req.method, req.path, req.headers
            ));
        }
    }
    if stats {
        let (ours, theirs) = (rbac_stats(strait.admin()), rbac_stats(envoy.admin()));
        assert!(!theirs.is_empty(), "{case}: Envoy shows no RBAC stats");
        if ours != theirs {
            diffs.push(format!(
                "{case}: stats\n  strait: {ours:?}\n  envoy:  {theirs:?}"
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    Ok(())
}

async fn http_case(
    case: &str,
    rbac: &str,
    routes: &str,
    requests: &[Req],
    stats: bool,
) -> anyhow::Result<()> {
    let a = http_echo("a");
    let yaml = http_bootstrap(&rbac_filter(rbac), routes, "", &a);
    differential(case, &yaml, requests, stats).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_by_path_and_method_matches_envoy() -> anyhow::Result<()> {
    let rbac = r#"              rules:
                action: ALLOW
                policies:
                  reads:
                    permissions:
                    - and_rules:
                        rules:
                        - header: {name: ":method", string_match: {exact: GET}}
                        - or_rules:
                            rules:
                            - url_path: {path: {prefix: /public/}}
                            - url_path: {path: {exact: /status}}
                    principals: [{any: true}]
"#;
    let requests = [
        get("/public/x"),
        get("/public/x?q=/private"),
        get("/status"),
        get("/status?x=1"),
        get("/private"),
        Req {
            method: "POST",
            path: "/public/x",
            headers: &[],
        },
    ];
    http_case("path and method", rbac, ALL_TO_A, &requests, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_by_header_matches_envoy() -> anyhow::Result<()> {
    let rbac = r#"              rules:
                action: DENY
                policies:
                  blocked-client:
                    permissions: [{any: true}]
                    principals:
                    - header: {name: x-client, string_match: {exact: evil}}
                    - header: {name: x-tier, string_match: {safe_regex: {regex: "gold|silver"}}, invert_match: true}
                  no-token:
                    permissions:
                    - not_rule: {header: {name: authorization, present_match: true}}
                    principals: [{any: true}]
"#;
    let requests = [
        Req {
            method: "GET",
            path: "/",
            headers: &[("authorization", "t"), ("x-tier", "gold")],
        },
        Req {
            method: "GET",
            path: "/",
            headers: &[
                ("authorization", "t"),
                ("x-client", "evil"),
                ("x-tier", "gold"),
            ],
        },
        Req {
            method: "GET",
            path: "/",
            headers: &[("authorization", "t"), ("x-tier", "bronze")],
        },
        Req {
            method: "GET",
            path: "/",
            headers: &[("x-tier", "gold")],
        },
        Req {
            method: "GET",
            path: "/",
            headers: &[("authorization", "t")],
        },
    ];
    http_case("deny by header", rbac, ALL_TO_A, &requests, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_ports_match_envoy() -> anyhow::Result<()> {
    // The peer is 127.0.0.1; the destination port is whatever was bound.
    let rbac = r#"              rules:
                action: ALLOW
                policies:
                  local-peers:
                    permissions:
                    - and_rules:
                        rules:
                        - destination_port_range: {start: 1, end: 65536}
                        - destination_ip: {address_prefix: 127.0.0.0, prefix_len: 8}
                        - url_path: {path: {prefix: /local}}
                    principals:
                    - and_ids:
                        ids:
                        - direct_remote_ip: {address_prefix: 127.0.0.1, prefix_len: 32}
                        - source_ip: {address_prefix: 127.0.0.0, prefix_len: 16}
                        - not_id: {remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}
                  port-one:
                    permissions: [{destination_port: 1}]
                    principals: [{any: true}]
                  elsewhere:
                    permissions: [{url_path: {path: {prefix: /remote}}}]
                    principals: [{remote_ip: {address_prefix: 192.168.0.0, prefix_len: 16}}]
"#;
    let requests = [get("/local/a"), get("/remote/a"), get("/other")];
    http_case("addresses and ports", rbac, ALL_TO_A, &requests, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ip_after_xff_matches_envoy() -> anyhow::Result<()> {
    // Without use_remote_address, Envoy's remote address is the last
    // x-forwarded-for entry; direct_remote_ip stays the peer.
    let rbac = r#"              rules:
                action: ALLOW
                policies:
                  office:
                    permissions: [{any: true}]
                    principals: [{remote_ip: {address_prefix: 192.168.1.0, prefix_len: 24}}]
"#;
    let requests = [
        Req {
            method: "GET",
            path: "/",
            headers: &[("x-forwarded-for", "192.168.1.7")],
        },
        Req {
            method: "GET",
            path: "/",
            headers: &[("x-forwarded-for", "10.1.1.1")],
        },
        get("/"),
    ];
    http_case("remote ip", rbac, ALL_TO_A, &requests, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_allow_denies_everything_and_log_allows_everything() -> anyhow::Result<()> {
    let deny_all = "              rules: {action: ALLOW}\n";
    http_case(
        "empty allow",
        deny_all,
        ALL_TO_A,
        &[get("/"), get("/x")],
        true,
    )
    .await?;
    let log = r#"              rules:
                action: LOG
                policies:
                  audit:
                    permissions: [{url_path: {path: {prefix: /audit}}}]
                    principals: [{any: true}]
"#;
    http_case("log", log, ALL_TO_A, &[get("/audit"), get("/x")], true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_rules_never_deny_and_count_like_envoy() -> anyhow::Result<()> {
    let rbac = r#"              rules_stat_prefix: "enforce_"
              shadow_rules_stat_prefix: "dry_"
              rules:
                action: DENY
                policies:
                  admin:
                    permissions: [{url_path: {path: {prefix: /admin}}}]
                    principals: [{any: true}]
              shadow_rules:
                action: ALLOW
                policies:
                  only-api:
                    permissions: [{url_path: {path: {prefix: /api}}}]
                    principals: [{any: true}]
"#;
    let requests = [get("/api/1"), get("/web"), get("/web/2"), get("/admin")];
    http_case("shadow", rbac, ALL_TO_A, &requests, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_rules_do_not_see_the_shadow_verdict_of_the_same_request() -> anyhow::Result<()> {
    // Envoy 1.40 evaluates both rule sets before publishing either
    // verdict: a metadata principal on the shadow result sees nothing.
    let rbac = r#"              shadow_rules:
                action: ALLOW
                policies:
                  trusted:
                    permissions: [{url_path: {path: {prefix: /trusted}}}]
                    principals: [{any: true}]
              rules:
                action: ALLOW
                policies:
                  shadow-said-yes:
                    permissions: [{any: true}]
                    principals:
                    - metadata:
                        filter: envoy.filters.http.rbac
                        path: [{key: shadow_engine_result}]
                        value: {string_match: {exact: allowed}}
                  named-policy:
                    permissions: [{url_path: {path: {exact: /named}}}]
                    principals:
                    - metadata:
                        filter: envoy.filters.http.rbac
                        path: [{key: shadow_effective_policy_id}]
                        value: {present_match: true}
                        invert: true
"#;
    let requests = [get("/trusted/x"), get("/other"), get("/named")];
    http_case("metadata", rbac, ALL_TO_A, &requests, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_disable_and_override_match_envoy() -> anyhow::Result<()> {
    let rbac = r#"              rules:
                action: ALLOW
                policies:
                  nothing:
                    permissions: [{url_path: {path: {exact: /never}}}]
                    principals: [{any: true}]
"#;
    let per_route = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
    let routes = format!(
        r#"              - match: {{prefix: "/open"}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.rbac:
                    "@type": {per_route}
              - match: {{prefix: "/override"}}
                route: {{cluster: a}}
                typed_per_filter_config:
                  envoy.filters.http.rbac:
                    "@type": {per_route}
                    rbac:
                      rules:
                        action: ALLOW
                        policies:
                          good:
                            permissions: [{{header: {{name: x-ok, present_match: true}}}}]
                            principals: [{{any: true}}]
              - match: {{prefix: "/"}}
                route: {{cluster: a}}"#
    );
    let requests = [
        get("/open/1"),
        get("/override/1"),
        Req {
            method: "GET",
            path: "/override/2",
            headers: &[("x-ok", "1")],
        },
        get("/closed"),
    ];
    http_case("per route", rbac, &routes, &requests, true).await
}

/// The filters run before the router whatever the route says: RBAC judges
/// a direct response, a redirect and a request no route matches (404) as
/// Envoy does, and a per-route override on a direct-response route counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_responses_redirects_and_404s_are_judged_like_envoy() -> anyhow::Result<()> {
    let rbac = r#"              rules:
                action: ALLOW
                policies:
                  keyed:
                    permissions: [{header: {name: x-key, present_match: true}}]
                    principals: [{any: true}]
"#;
    let per_route = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
    let routes = format!(
        r#"              - match: {{prefix: "/direct"}}
                direct_response: {{status: 200, body: {{inline_string: "direct body"}}}}
              - match: {{prefix: "/moved"}}
                redirect: {{path_redirect: "/elsewhere"}}
              - match: {{prefix: "/free"}}
                direct_response: {{status: 202, body: {{inline_string: "free"}}}}
                typed_per_filter_config:
                  envoy.filters.http.rbac:
                    "@type": {per_route}
              - match: {{prefix: "/a"}}
                route: {{cluster: a}}"#
    );
    let keyed = |path| Req {
        method: "GET",
        path,
        headers: &[("x-key", "1")],
    };
    let requests = [
        get("/direct"),
        keyed("/direct"),
        get("/moved"),
        keyed("/moved"),
        get("/free"),
        get("/nowhere"),
        keyed("/nowhere"),
        get("/a"),
        keyed("/a"),
    ];
    http_case("local actions", rbac, &routes, &requests, true).await
}

/// `curl` over mutual TLS with `cert`, SNI `sni`: the status.
fn curl_mtls(
    addr: SocketAddr,
    sni: &str,
    cert: &strait_test_support::certs::Issued,
    path: &str,
) -> u16 {
    let out = Command::new("/usr/bin/curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--resolve")
        .arg(format!("{sni}:{}:127.0.0.1", addr.port()))
        .arg("--cert")
        .arg(&cert.cert)
        .arg("--key")
        .arg(&cert.key)
        .arg(format!("https://{sni}:{}{path}", addr.port()))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn spiffe_principals_and_server_names_over_mtls_match_envoy() {
    const GOOD: &str = "spiffe://cluster.local/ns/default/sa/productpage";
    const OTHER: &str = "spiffe://cluster.local/ns/evil/sa/impostor";
    let ca = TestCa::new("rbac");
    let server = ca.issue("spiffe://cluster.local/ns/default/sa/reviews", &["reviews"]);
    let good = ca.issue(GOOD, &[]);
    let other = ca.issue(OTHER, &[]);
    let dns_only = ca.issue("spiffe://cluster.local/ns/x/sa/dns", &["trusted.dns.local"]);
    let a = http_echo("a");
    let rbac = rbac_filter(&format!(
        r#"              rules:
                action: ALLOW
                policies:
                  productpage:
                    permissions: [{{any: true}}]
                    principals:
                    - authenticated: {{principal_name: {{exact: "{GOOD}"}}}}
                  by-namespace:
                    permissions: [{{requested_server_name: {{exact: ns.sni.local}}}}]
                    principals:
                    - authenticated: {{principal_name: {{safe_regex: {{regex: "spiffe://cluster.local/ns/evil/.*"}}}}}}
                  dns-san:
                    permissions: [{{any: true}}]
                    principals:
                    - authenticated: {{principal_name: {{exact: trusted.dns.local}}}}
"#
    ));
    let tls = downstream_tls(6, &server, Some(ca.root()), "", &["http/1.1"]);
    // The requested server name is the TLS inspector's (Envoy's too).
    let yaml = http_bootstrap(&rbac, ALL_TO_A, &tls, &a).replace(
        "    filter_chains:\n",
        "    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}\n    filter_chains:\n",
    );
    let strait = TestProxy::start(&yaml, 1);
    let envoy = Envoy::start(&yaml);
    let cases = [
        (&good, "any.local", 200),
        (&other, "any.local", 403),
        (&other, "ns.sni.local", 200),
        (&dns_only, "any.local", 200),
    ];
    for (cert, sni, want) in cases {
        let ours = curl_mtls(strait.listener("listener"), sni, cert, "/x");
        let theirs = curl_mtls(envoy.listener("listener"), sni, cert, "/x");
        assert_eq!(theirs, want, "envoy, {sni}");
        assert_eq!(ours, theirs, "strait vs envoy, {sni}");
    }
}

/// A TCP proxy listener with network RBAC (`rules`, at 10 spaces) in
/// front of the echo upstream.
fn tcp_bootstrap(rules: &str, up: &Upstream) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: tcp.
{rules}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        port = up.addr.port()
    )
}

/// Sends a line and reads what comes back: `Some(echo)` when served,
/// `None` when the proxy closed the connection.
fn tcp_round_trip(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"ping\n");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
    }
}

#[test]
fn network_rbac_on_a_tcp_proxy_matches_envoy() {
    let up = tcp_echo();
    let allow = r#"          shadow_rules:
            action: DENY
            policies:
              loopback:
                permissions: [{any: true}]
                principals: [{direct_remote_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}]
          rules:
            action: ALLOW
            policies:
              loopback:
                permissions: [{destination_port_range: {start: 1, end: 65536}}]
                principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]
"#;
    let deny = r#"          rules:
            action: DENY
            policies:
              plaintext:
                permissions: [{not_rule: {requested_server_name: {exact: x}}}]
                principals: [{not_id: {authenticated: {}}}]
"#;
    for (case, rules, served) in [("allow", allow, true), ("deny", deny, false)] {
        let yaml = tcp_bootstrap(rules, &up);
        let strait = TestProxy::start(&yaml, 1);
        let envoy = Envoy::start(&yaml);
        let theirs = tcp_round_trip(envoy.listener("listener"));
        let ours = tcp_round_trip(strait.listener("listener"));
        assert_eq!(theirs.is_some(), served, "{case}: envoy {theirs:?}");
        assert_eq!(ours, theirs, "{case}: strait vs envoy");
        let (ours, theirs) = (rbac_stats(strait.admin()), rbac_stats(envoy.admin()));
        assert!(!theirs.is_empty(), "{case}: Envoy shows no RBAC stats");
        assert_eq!(ours, theirs, "{case}: stats");
    }
}
