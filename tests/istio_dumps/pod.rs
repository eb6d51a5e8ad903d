//! The pod around the sidecar, for `istio_dumps.rs`: a network namespace
//! set up as Istio's init container leaves a pod's, the bootstrap
//! pilot-agent would write (`xds-grpc`, and `sds-grpc` on a unix socket),
//! the agent's SDS server with the workload's identity, and clients on
//! both sides: the app calling out (redirected to 15001) and a peer
//! sidecar calling in over Istio mTLS (redirected to 15006).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;
use strait_model::tls::{
    CertificateValidation, CommonTls, DataSource, TlsCertificate, TlsSecrets, UpstreamTls,
};
use strait_test_support::{
    TempDir,
    certs::{Issued, TestCa},
    proxy::UPSTREAM_H2,
    xds_server::{SECRET, XdsServer, resource},
};
use strait_tls::{ClientTls, DefaultAlpn};

use super::APPLY;

/// The address the test client connects from; only its connections are
/// redirected to 15001, so Strait's own upstream connections are not.
pub(crate) const CLIENT: &str = "10.255.0.1";

/// The address a peer workload's sidecar connects from; its connections
/// are redirected to 15006, as Istio's `ISTIO_INBOUND` chain does.
const PEER: &str = "10.255.0.2";

/// This pod's IP, as the bootstrap's node id says.
pub(crate) const POD_IP: &str = "10.0.0.9";

/// Runs `test` in its own network namespace where 10.0.0.0/8 is local and
/// the client's and the peer's connections are intercepted; true inside it.
pub(crate) fn in_netns(test: &str) -> bool {
    strait_test_support::netns::in_netns(
        test,
        &[
            "ip route add local 10.0.0.0/8 dev lo".to_owned(),
            // ISTIO_OUTPUT for the app's own connections, ISTIO_INBOUND for
            // the peer's: both in OUTPUT here, told apart by source.
            format!("iptables -t nat -A OUTPUT -p tcp -s {CLIENT} -j REDIRECT --to-ports 15001"),
            format!("iptables -t nat -A OUTPUT -p tcp -s {PEER} -j REDIRECT --to-ports 15006"),
        ],
    )
}

/// A TCP echo server on `addr` (a thread per connection; the test's
/// namespace goes away with the process).
pub(crate) fn tcp_echo_at(addr: &str) {
    let listener =
        std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// The bootstrap: ADS (`api`) to the control plane at `xds`; with `sds`,
/// Istio's `sds-grpc` cluster, a pipe to that unix socket.
pub(crate) fn bootstrap(xds: SocketAddr, api: &str, sds: Option<&Path>) -> String {
    let sds_grpc = sds.map_or(String::new(), |path| {
        format!(
            r#"
  - name: sds-grpc
    type: STATIC
    connect_timeout: 1s
{UPSTREAM_H2}
    load_assignment:
      cluster_name: sds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{pipe: {{path: "{path}"}}}}}}"#,
            path = path.display(),
        )
    });
    strait_test_support::xds_server::ads_bootstrap_with(
        xds,
        api,
        "sidecar~10.0.0.9~app.default~default.svc.cluster.local",
        "app.default",
        &sds_grpc,
    )
}

/// One HTTP/1.1 request from [`CLIENT`] to `dst` (redirected to 15001 by
/// iptables); the answering upstream's name (`x-upstream`), or the status
/// line when no upstream answered.
pub(crate) fn http_via_sidecar(dst: &str, host: &str, path: &str) -> String {
    let dst: SocketAddr = dst.parse().unwrap_or_else(|e| panic!("{dst}: {e}"));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap_or_else(|e| panic!("socket: {e}"));
    let from: SocketAddr = format!("{CLIENT}:0")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    socket
        .bind(&from.into())
        .unwrap_or_else(|e| panic!("bind {CLIENT}: {e}"));
    if let Err(e) = socket.connect_timeout(&dst.into(), Duration::from_secs(5)) {
        return format!("connect failed: {e}");
    }
    let mut stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return "write failed".into();
    }
    let mut resp = String::new();
    let _ = stream.read_to_string(&mut resp);
    let status = format!(
        "{} ({})",
        resp.lines().next().unwrap_or("closed without a response"),
        resp.split("\r\n\r\n").nth(1).unwrap_or_default().trim()
    );
    resp.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-upstream")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or(status)
}

/// Raw TCP from [`CLIENT`] to `dst`: sends `msg`, returns what came back
/// before the peer closed or 2 s passed.
pub(crate) fn tcp_via_sidecar(dst: &str, msg: &[u8]) -> Vec<u8> {
    let dst: SocketAddr = dst.parse().unwrap_or_else(|e| panic!("{dst}: {e}"));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap_or_else(|e| panic!("socket: {e}"));
    let from: SocketAddr = format!("{CLIENT}:0")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    socket
        .bind(&from.into())
        .unwrap_or_else(|e| panic!("bind {CLIENT}: {e}"));
    if socket
        .connect_timeout(&dst.into(), Duration::from_secs(5))
        .is_err()
    {
        return Vec::new();
    }
    let mut stream: TcpStream = socket.into();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(msg).is_err() {
        return Vec::new();
    }
    let mut buf = vec![0u8; msg.len()];
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    buf
}

/// Async wrapper: the blocking client off the runtime's workers.
pub(crate) async fn http(dst: &'static str, host: &'static str, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || http_via_sidecar(dst, host, path))
        .await
        .unwrap_or_else(|e| panic!("client task: {e}"))
}

/// Polls until a request for `host` to `dst` is answered by upstream
/// `want`; on timeout, fails with the last answer.
pub(crate) async fn expect_upstream(dst: &'static str, host: &'static str, want: &str) {
    let start = std::time::Instant::now();
    loop {
        let got = http(dst, host, "/productpage").await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < APPLY,
            "{host} via {dst}: expected upstream {want}, last answer: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like [`http_via_sidecar`], with one extra header line.
pub(crate) fn http_with_header(dst: &str, header: &str) -> String {
    http_via_sidecar(dst, &format!("x\r\n{header}"), "/")
}

/// The workload identity Istio's agent serves the sidecar over SDS: a
/// server on a unix socket (the bootstrap's `sds-grpc`) with the secrets
/// the dumps' TLS contexts name, `default` (the workload certificate, URI
/// SAN `spiffe`) and `ROOTCA` (the mesh root).
pub(crate) struct Identity {
    pub(crate) ca: TestCa,
    pub(crate) sds: XdsServer,
    socket: PathBuf,
    _dir: TempDir,
}

impl Identity {
    pub(crate) fn start(spiffe: &str) -> Identity {
        let ca = TestCa::new("mesh-ca");
        let dir = TempDir::new("agent");
        let socket = dir.path().join("socket");
        let sds = XdsServer::start_unix(&socket);
        let workload = ca.issue_workload(spiffe);
        let read = |p: &Path| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let secret = |value: serde_json::Value| {
            resource(
                "envoy.extensions.transport_sockets.tls.v3.Secret",
                &value.to_string(),
            )
        };
        sds.set(
            SECRET,
            vec![
                secret(json!({"name": "default", "tls_certificate": {
                    "certificate_chain": {"inline_string": read(&workload.cert)},
                    "private_key": {"inline_string": read(&workload.key)}}})),
                secret(json!({"name": "ROOTCA", "validation_context": {
                    "trusted_ca": {"inline_string": read(ca.root())}}})),
            ],
        );
        Identity {
            ca,
            sds,
            socket,
            _dir: dir,
        }
    }

    /// The SDS server's unix socket, for [`bootstrap`].
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Istio's ALPN for HTTP/1.1 between sidecars (the client sidecar's
/// `istio.alpn` filter): `istio-http/1.1` selects the inbound HTTP chain,
/// `http/1.1` is what the TLS handshake negotiates.
const ISTIO_HTTP11: [&str; 3] = ["istio-http/1.1", "istio", "http/1.1"];

/// What a peer got for one request over mTLS to this pod.
pub(crate) struct Inbound {
    /// The certificate the inbound listener presented (DER).
    pub(crate) server_cert: Vec<u8>,
    /// The echo app's JSON.
    pub(crate) body: serde_json::Value,
}

impl Inbound {
    pub(crate) fn upstream(&self) -> &str {
        self.body["upstream"].as_str().unwrap_or_default()
    }

    /// The values of `name` the app received.
    pub(crate) fn header(&self, name: &str) -> Vec<&str> {
        self.body["headers"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .filter(|h| h[0] == name)
                    .filter_map(|h| h[1].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the server's certificate carries URI SAN `id` (DER stores
    /// it as its ASCII bytes).
    pub(crate) fn server_is(&self, id: &str) -> bool {
        self.server_cert
            .windows(id.len())
            .any(|w| w == id.as_bytes())
    }
}

/// One HTTP/1.1 `GET /` from a peer sidecar ([`PEER`]) to `service` on
/// this pod's `port` (the connection is to [`POD_IP`], redirected to
/// 15006): TLS with Istio's ALPN and SNI, presenting `cert` (if any),
/// trusting `root`. An error for anything short of a 200 from the app.
pub(crate) async fn mtls_from_peer(
    service: &str,
    port: u16,
    root: &Path,
    cert: Option<&Issued>,
) -> anyhow::Result<Inbound> {
    let ctx = UpstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates: cert
                    .map(|c| TlsCertificate {
                        certificate_chain: DataSource::File(c.cert.clone()),
                        private_key: DataSource::File(c.key.clone()),
                    })
                    .into_iter()
                    .collect(),
                validation: Some(CertificateValidation {
                    trusted_ca: Some(DataSource::File(root.to_path_buf())),
                    san_matchers: Vec::new(),
                }),
            },
            alpn: ISTIO_HTTP11.iter().map(|p| (*p).to_owned()).collect(),
            ..CommonTls::default()
        },
        sni: format!("outbound_.{port}_._.{service}"),
    };
    let dst: SocketAddr = format!("{POD_IP}:{port}").parse()?;
    let tls = ClientTls::compile(&ctx)?;
    let limit = Duration::from_secs(5);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{PEER}:0").parse()?)?;
    let tcp = tokio::time::timeout(limit, socket.connect(dst)).await??;
    let stream =
        tokio::time::timeout(limit, tls.connect(tcp, dst.ip(), DefaultAlpn::Http1)).await??;
    let server_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", format!("{service}:{port}"))
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(limit, send.send_request(req)).await??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == 200,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(Inbound {
        server_cert,
        body: serde_json::from_slice(&body)?,
    })
}
