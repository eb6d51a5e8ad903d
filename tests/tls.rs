//! TLS end to end: curl against TLS listeners (server and mutual TLS),
//! SNI routing and passthrough, bad input on TLS listeners, bad
//! certificates refused at load, and mTLS between two Strait instances.
//! Certificates come from a test CA issuing SPIFFE identities.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use strait_test_support::{
    certs::{Issued, TestCa, downstream_tls},
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

const CURL: &str = "/usr/bin/curl";
const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// What one curl run reported; `status` 0 when curl itself failed (e.g. the
/// handshake was refused), with its error in `trace`.
struct Curl {
    status: u16,
    version: String,
    body: String,
    trace: String,
}

/// curl `https://{host}:{port}{path}` with `host` resolved to `addr`.
fn curl_https(addr: SocketAddr, host: &str, path: &str, args: &[&str]) -> Curl {
    assert!(
        Path::new(CURL).exists(),
        "{CURL} is required; install it with `apt-get install curl`"
    );
    let out = Command::new(CURL)
        .args(["-sS", "-v", "--max-time", "20"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args([
            "--resolve",
            &format!("{host}:{}:{}", addr.port(), addr.ip()),
        ])
        .args(args)
        .arg(format!("https://{host}:{}{path}", addr.port()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {CURL}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let trace = String::from_utf8_lossy(&out.stderr).into_owned();
    let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    let (status, version) = last.split_once(' ').unwrap_or(("0", ""));
    Curl {
        status: if out.status.success() {
            status.parse().unwrap_or(0)
        } else {
            0
        },
        version: version.to_owned(),
        body: body.to_owned(),
        trace,
    }
}

impl Curl {
    fn upstream(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.body, self.trace));
        v["upstream"].as_str().unwrap_or("").to_owned()
    }
}

/// An HTTP connection manager filter (YAML list item at 4 spaces) routing
/// everything to `cluster`.
fn hcm(cluster: &str) -> String {
    format!(
        r#"    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {cluster}
        route_config:
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
            - match: {{prefix: "/"}}
              route: {{cluster: {cluster}}}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#
    )
}

fn tcp_proxy(cluster: &str) -> String {
    format!(
        r#"    filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: {cluster}
        cluster: {cluster}"#
    )
}

/// A STATIC cluster (YAML list item at 2 spaces); `extra` is spliced in at
/// 4 spaces.
fn cluster(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 2s
{extra}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}"#,
        ip = addr.ip(),
        port = addr.port(),
    )
}

/// `filters` (from [`hcm`] or [`tcp_proxy`]) nested inside a filter
/// chain list item.
fn in_chain(filters: &str) -> String {
    filters
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A bootstrap with one listener named `listener` (its filter chains and
/// listener filters given as YAML at 2 spaces) and `clusters`.
fn bootstrap(listener_body: &str, clusters: &[String]) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
{listener_body}
  clusters:
{clusters}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        clusters = clusters.join("\n"),
    )
}

/// One TLS-terminating HTTP chain serving `cert` in front of `upstream`.
fn tls_http_proxy(
    cert: &Issued,
    client_ca: Option<&Path>,
    client_san: &str,
) -> (Upstream, TestProxy) {
    let upstream = http_echo("backend");
    let body = format!(
        "    filter_chains:\n    - {tls}\n{hcm}",
        tls = downstream_tls(6, cert, client_ca, client_san, &["h2", "http/1.1"]).trim_start(),
        hcm = in_chain(&hcm("backend")),
    );
    let yaml = bootstrap(&body, &[cluster("backend", upstream.addr, "")]);
    (upstream, TestProxy::start(&yaml, 2))
}

#[test]
fn curl_over_tls_with_http1_and_http2() {
    let ca = TestCa::new("mesh-ca");
    let cert = ca.issue(REVIEWS, &["reviews.default.svc"]);
    let (_up, proxy) = tls_http_proxy(&cert, None, "");
    let addr = proxy.listener("listener");
    let ca_arg = ca.root().display().to_string();
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let r = curl_https(
            addr,
            "reviews.default.svc",
            "/hello",
            &["--cacert", &ca_arg, flag],
        );
        assert_eq!(r.status, 200, "{}", r.trace);
        assert_eq!(r.version, version, "{}", r.trace);
        assert_eq!(r.upstream(), "backend");
        assert!(
            r.body.contains(r#"["x-forwarded-proto","https"]"#),
            "{}",
            r.body
        );
    }
    // A client that does not trust the CA refuses the server.
    let r = curl_https(addr, "reviews.default.svc", "/", &[]);
    assert_eq!(r.status, 0, "untrusted server accepted: {}", r.trace);
}

#[test]
fn curl_mutual_tls_checks_the_client_identity() {
    let ca = TestCa::new("mesh-ca");
    let server = ca.issue(REVIEWS, &["reviews.default.svc"]);
    let (_up, proxy) = tls_http_proxy(&server, Some(ca.root()), PRODUCTPAGE);
    let addr = proxy.listener("listener");
    let ca_arg = ca.root().display().to_string();
    let with = |cert: &Issued| {
        curl_https(
            addr,
            "reviews.default.svc",
            "/",
            &[
                "--cacert",
                &ca_arg,
                "--cert",
                &cert.cert.display().to_string(),
                "--key",
                &cert.key.display().to_string(),
            ],
        )
    };
    let good = with(&ca.issue(PRODUCTPAGE, &[]));
    assert_eq!(good.status, 200, "{}", good.trace);

    let wrong = with(&ca.issue("spiffe://cluster.local/ns/evil/sa/attacker", &[]));
    assert_eq!(wrong.status, 0, "wrong identity accepted: {}", wrong.trace);

    let expired = with(&ca.issue_expired(PRODUCTPAGE, &[]));
    assert_eq!(
        expired.status, 0,
        "expired certificate accepted: {}",
        expired.trace
    );

    let other_ca = TestCa::new("other-ca");
    let foreign = with(&other_ca.issue(PRODUCTPAGE, &[]));
    assert_eq!(foreign.status, 0, "foreign CA accepted: {}", foreign.trace);

    let none = curl_https(addr, "reviews.default.svc", "/", &["--cacert", &ca_arg]);
    assert_eq!(
        none.status, 0,
        "no client certificate accepted: {}",
        none.trace
    );
    // The listener still serves after all those refusals.
    assert_eq!(with(&ca.issue(PRODUCTPAGE, &[])).status, 200);
}

/// Two TLS chains chosen by SNI (exact and wildcard), each routing to its
/// own cluster, and a passthrough chain that forwards the TLS bytes of
/// `pass.test` untouched to another TLS server.
#[test]
fn sni_routing_and_tls_passthrough() {
    let ca = TestCa::new("edge-ca");
    let a = http_echo("a");
    let b = http_echo("b");
    // The passthrough target: another Strait terminating TLS for pass.test.
    let pass_cert = ca.issue("", &["pass.test"]);
    let (_inner_up, inner) = tls_http_proxy(&pass_cert, None, "");

    let cert_a = ca.issue("", &["a.test"]);
    let cert_b = ca.issue("", &["*.b.test"]);
    let chain = |names: &str, cert: &Issued, filters: String| {
        format!(
            "    - filter_chain_match: {{server_names: [{names}]}}\n{tls}\n{filters}",
            tls = downstream_tls(6, cert, None, "", &["http/1.1"]),
            filters = in_chain(&filters),
        )
    };
    let body = format!(
        r#"    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
{a}
{b}
    - filter_chain_match: {{server_names: [pass.test]}}
{pass}"#,
        a = chain("a.test", &cert_a, hcm("a")),
        b = chain("\"*.b.test\"", &cert_b, hcm("b")),
        pass = in_chain(&tcp_proxy("inner")),
    );
    let yaml = bootstrap(
        &body,
        &[
            cluster("a", a.addr, ""),
            cluster("b", b.addr, ""),
            cluster("inner", inner.listener("listener"), ""),
        ],
    );
    let proxy = TestProxy::start(&yaml, 2);
    let addr = proxy.listener("listener");
    let ca_arg = ca.root().display().to_string();
    let get = |host: &str| curl_https(addr, host, "/", &["--cacert", &ca_arg]);

    let r = get("a.test");
    assert_eq!(
        (r.status, r.upstream()),
        (200, "a".to_owned()),
        "{}",
        r.trace
    );
    let r = get("x.b.test");
    assert_eq!(
        (r.status, r.upstream()),
        (200, "b".to_owned()),
        "{}",
        r.trace
    );
    // Passthrough: the certificate curl verifies is the inner server's.
    let r = get("pass.test");
    assert_eq!(r.status, 200, "{}", r.trace);
    assert_eq!(r.upstream(), "backend");
    assert!(r.trace.contains("pass.test"), "{}", r.trace);
    // No chain for other names and no default chain: the connection closes.
    let r = get("c.test");
    assert_eq!(r.status, 0, "unmatched SNI served: {}", r.trace);
}

/// Reads until EOF or error; true if the peer closed within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn garbage_and_slow_handshakes_are_closed_without_disturbing_others() {
    let ca = TestCa::new("edge-ca");
    let cert = ca.issue("", &["ok.test"]);
    let upstream = http_echo("backend");
    let body = format!(
        r#"    listener_filters_timeout: 1s
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{transport_protocol: tls}}
      transport_socket_connect_timeout: 1s
{tls}
{hcm}"#,
        tls = downstream_tls(6, &cert, None, "", &["http/1.1"]),
        hcm = in_chain(&hcm("backend")),
    );
    let proxy = TestProxy::start(
        &bootstrap(&body, &[cluster("backend", upstream.addr, "")]),
        2,
    );
    let addr = proxy.listener("listener");
    let ca_arg = ca.root().display().to_string();

    // Garbage instead of a ClientHello: not TLS, so no chain: closed at once.
    let mut garbage = TcpStream::connect(addr).expect("connect");
    garbage
        .write_all(b"\x00\x01\x02 this is not TLS\r\n\r\n")
        .expect("write");
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage kept open"
    );

    // A plausible record header that never completes: closed by the
    // listener filter timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write");
    // A silent client: same bound.
    let mut silent = TcpStream::connect(addr).expect("connect");
    // Meanwhile a real client is served.
    let r = curl_https(addr, "ok.test", "/", &["--cacert", &ca_arg]);
    assert_eq!(r.status, 200, "{}", r.trace);
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "slow hello kept open"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)),
        "silent client kept open"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    // And still served afterwards.
    let r = curl_https(addr, "ok.test", "/", &["--cacert", &ca_arg]);
    assert_eq!(r.status, 200, "{}", r.trace);
}

#[test]
fn a_certificate_file_that_is_not_a_certificate_refuses_the_config() {
    let ca = TestCa::new("edge-ca");
    let good = ca.issue("", &["ok.test"]);
    let bad = Issued {
        cert: good.key.clone(),
        key: good.key.clone(),
    };
    let upstream = http_echo("backend");
    let config = |cert: &Issued| {
        let body = format!(
            "    filter_chains:\n    - {tls}\n{hcm}",
            tls = downstream_tls(6, cert, None, "", &[]).trim_start(),
            hcm = in_chain(&hcm("backend")),
        );
        bootstrap(&body, &[cluster("backend", upstream.addr, "")])
    };
    let err = match TestProxy::try_start(&config(&bad), 1) {
        Ok(_) => panic!("a key as certificate was accepted"),
        Err(e) => e,
    };
    let name = bad.cert.display().to_string();
    assert!(
        err.contains(&format!("{name} is not a PEM certificate")) || err.contains(&name),
        "{err}"
    );
    assert!(err.contains("transport_socket"), "{err}");

    // On reload the last good config keeps serving.
    let proxy = TestProxy::start(&config(&good), 1);
    let version = proxy.version();
    std::fs::write(&bad.cert, "not a certificate").expect("write");
    proxy.rewrite(&config(&bad));
    strait_test_support::eventually_blocking("reload refused", Duration::from_secs(10), || {
        (proxy.reload_failures() > 0).then_some(())
    });
    assert_eq!(proxy.version(), version);
    let reason = proxy.last_reload_error().unwrap_or_default();
    assert!(reason.contains("is not a PEM certificate"), "{reason}");
    let addr = proxy.listener("listener");
    let r = curl_https(
        addr,
        "ok.test",
        "/",
        &["--cacert", &ca.root().display().to_string()],
    );
    assert_eq!(r.status, 200, "{}", r.trace);
}
