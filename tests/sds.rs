//! Secrets over SDS, end to end: a TLS listener (and a TLS-originating
//! cluster) whose certificate (`default`)
//! and validation root (`ROOTCA`, in a `combined_validation_context` as
//! Istio renders it) come from (i) ADS, (ii) a separate gRPC SDS stream to an
//! `sds-grpc` cluster, (iii) an SDS file. Clients are real TLS clients (ours,
//! on rustls, and curl). Rotation happens under a steady stream of new
//! connections with zero failures; new handshakes see the new certificate
//! (by its SPIFFE SAN) while a keep-alive connection made before keeps
//! working. A bad secret is NACKed with its reason and the previous one
//! keeps serving.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use strait_model::tls::{
    CertificateValidation, CommonTls, DataSource, TlsCertificate, TlsSecrets, UpstreamTls,
};
use strait_test_support::{
    TempDir,
    certs::{Issued, TestCa},
    client::Client,
    eventually,
    proxy::{TestProxy, UPSTREAM_H2},
    upstream::{Upstream, http_echo},
    xds_server::{CLUSTER, LISTENER, SECRET, XdsServer, resource},
};
use strait_tls::{ClientTls, DefaultAlpn};

const APPLY: Duration = Duration::from_secs(10);
const HOST: &str = "web.test";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
/// What the listener accepts from clients: any identity of the namespace.
const MESH_IDS: &str = "spiffe://cluster.local/ns/default/sa/";

fn server_id(version: u32) -> String {
    format!("spiffe://cluster.local/ns/default/sa/web-v{version}")
}

fn pem(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // A JSON string is a YAML string: PEM newlines survive.
    serde_json::to_string(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// Secret `name` holding `cert` inline, as Istio's agent sends it.
fn cert_secret_yaml(name: &str, cert: &Issued) -> String {
    format!(
        r#"{{"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret,
  name: {name}, tls_certificate: {{certificate_chain: {{inline_string: {chain}}},
  private_key: {{inline_string: {key}}}}}}}"#,
        chain = pem(&cert.cert),
        key = pem(&cert.key),
    )
}

fn ca_secret_yaml(name: &str, ca: &TestCa) -> String {
    format!(
        r#"{{"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret,
  name: {name}, validation_context: {{trusted_ca: {{inline_string: {root}}}}}}}"#,
        root = pem(ca.root()),
    )
}

/// The xDS resource of a secret written as an `Any` (as in an SDS file).
fn secret(yaml: &str) -> (String, envoy_types::pb::google::protobuf::Any) {
    let bare = yaml.replacen(
        r#""@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret,"#,
        "",
        1,
    );
    resource("envoy.extensions.transport_sockets.tls.v3.Secret", &bare)
}

/// A listener `web` terminating mutual TLS with `default` + `ROOTCA` from
/// `sds_config`, routing everything to cluster `echo`.
fn listener_yaml(sds_config: &str) -> String {
    format!(
        r#"
name: web
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context:
        alpn_protocols: [http/1.1]
        tls_certificate_sds_secret_configs:
        - {{name: default, sds_config: {sds_config}}}
        combined_validation_context:
          default_validation_context:
            match_typed_subject_alt_names: [{{san_type: URI, matcher: {{prefix: "{MESH_IDS}"}}}}]
          validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {sds_config}}}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: web
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{{match: {{prefix: "/"}}, route: {{cluster: echo}}}}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A static cluster `name` at `addr`; `extra` adds lines (e.g. HTTP/2).
fn cluster_yaml(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
{extra}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}"#,
        port = addr.port(),
    )
}

/// A bootstrap with the echo cluster, `more_clusters`, the static
/// `listeners` (YAML list items, may be empty) and, with `ads`, ADS to the
/// control plane at that address.
fn bootstrap(echo: &Upstream, ads: Option<SocketAddr>, more: &str, listeners: &str) -> String {
    let dynamic = match ads {
        None => String::new(),
        Some(_) => r#"
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
"#
        .to_owned(),
    };
    let xds_cluster = ads.map_or(String::new(), |a| cluster_yaml("xds-grpc", a, UPSTREAM_H2));
    let listeners = if listeners.is_empty() {
        String::new()
    } else {
        format!("  listeners:\n{listeners}\n")
    };
    format!(
        r#"
node: {{id: "sidecar~127.0.0.1~web.default~default.svc.cluster.local", cluster: web.default}}
{dynamic}
static_resources:
{listeners}  clusters:{echo}{xds_cluster}{more}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        echo = cluster_yaml("echo", echo.addr, ""),
    )
}

/// Our TLS client: trusts `ca`, presents `client` (if any), SNI `web.test`.
fn client_tls(ca: &TestCa, client: Option<&Issued>) -> ClientTls {
    let certificates = client
        .map(|c| TlsCertificate {
            certificate_chain: DataSource::File(c.cert.clone()),
            private_key: DataSource::File(c.key.clone()),
        })
        .into_iter()
        .collect();
    let ctx = UpstreamTls {
        common: CommonTls {
            secrets: TlsSecrets {
                certificates,
                validation: Some(CertificateValidation {
                    trusted_ca: Some(DataSource::File(ca.root().to_path_buf())),
                    san_matchers: Vec::new(),
                }),
            },
            alpn: vec!["http/1.1".into()],
            ..CommonTls::default()
        },
        sni: HOST.into(),
    };
    ClientTls::compile(&ctx).unwrap_or_else(|e| panic!("client TLS: {e}"))
}

/// One kept-alive HTTP/1.1 connection over TLS, with the certificate the
/// server presented.
struct TlsConn {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    server_cert: Vec<u8>,
}

impl TlsConn {
    async fn open(tls: &ClientTls, addr: SocketAddr) -> anyhow::Result<TlsConn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tls.connect(tcp, addr.ip(), DefaultAlpn::Http1),
        )
        .await??;
        let server_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(TlsConn { send, server_cert })
    }

    async fn get(&mut self) -> anyhow::Result<u16> {
        let req = http::Request::get(format!("https://{HOST}/"))
            .header("host", HOST)
            .body(Empty::new())?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }

    /// Whether the server's certificate carries URI SAN `id` (DER stores
    /// it as its ASCII bytes).
    fn serves(&self, id: &str) -> bool {
        self.server_cert
            .windows(id.len())
            .any(|w| w == id.as_bytes())
    }
}

/// One request on a new connection; the server's identity version (1 or 2).
async fn fresh_request(tls: &ClientTls, addr: SocketAddr) -> anyhow::Result<u32> {
    let mut c = TlsConn::open(tls, addr).await?;
    let status = c.get().await?;
    anyhow::ensure!(status == 200, "status {status}");
    (1..=3)
        .find(|v| c.serves(&server_id(*v)))
        .ok_or_else(|| anyhow::anyhow!("unknown server certificate"))
}

/// New TLS connections at a steady rate until stopped: counts successes,
/// failures (with the last error) and which identity each one saw.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    saw_v2: AtomicU64,
    stop: AtomicBool,
    last_error: std::sync::Mutex<String>,
}

impl Load {
    fn start(tls: ClientTls, addr: SocketAddr) -> (Arc<Load>, tokio::task::JoinHandle<()>) {
        let load = Arc::new(Load::default());
        let l = Arc::clone(&load);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !l.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                match fresh_request(&tls, addr).await {
                    Ok(v) => {
                        l.ok.fetch_add(1, Ordering::Relaxed);
                        if v == 2 {
                            l.saw_v2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        l.failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut last) = l.last_error.lock() {
                            *last = e.to_string();
                        }
                    }
                }
            }
        });
        (load, task)
    }
}

/// Rotates the server certificate with `rotate` while `Load` runs, then
/// checks: zero failures, new handshakes see v2, the keep-alive connection
/// opened before still serves (and still shows v1).
async fn rotate_under_load(proxy: &TestProxy, ca: &TestCa, client: &Issued, rotate: impl FnOnce()) {
    let addr = eventually("listener web warm", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;
    let tls = client_tls(ca, Some(client));
    let v = eventually("a TLS request before rotation", APPLY, || async {
        fresh_request(&tls, addr).await.ok()
    })
    .await;
    assert_eq!(v, 1);
    let mut kept = TlsConn::open(&tls, addr)
        .await
        .expect("keep-alive connection");
    assert_eq!(kept.get().await.expect("first request"), 200);
    let (load, task) = Load::start(tls.clone(), addr);
    eventually("some load before rotating", APPLY, || async {
        (load.ok.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    rotate();
    eventually(
        "new handshakes to see the v2 certificate",
        APPLY,
        || async { (load.saw_v2.load(Ordering::Relaxed) >= 20).then_some(()) },
    )
    .await;
    load.stop.store(true, Ordering::Relaxed);
    task.await.expect("load task");
    let failed = load.failed.load(Ordering::Relaxed);
    let last = load
        .last_error
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    assert_eq!(failed, 0, "failed requests during rotation; last: {last}");
    assert!(load.ok.load(Ordering::Relaxed) > 40);
    // The connection made before the rotation still works on its v1 session.
    assert_eq!(kept.get().await.expect("kept-alive request"), 200);
    assert!(kept.serves(&server_id(1)));
    assert_eq!(fresh_request(&tls, addr).await.expect("after"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_tls_from_ads_secrets_default_and_rootca() {
    ads_secrets("GRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_tls_from_delta_ads_secrets() {
    ads_secrets("DELTA_GRPC").await;
}

/// `api`: the ADS flavour (`GRPC` or `DELTA_GRPC`).
async fn ads_secrets(api: &str) {
    let echo = http_echo("echo");
    let ca = TestCa::new("mesh-ca");
    let server = ca.issue(&server_id(1), &[HOST]);
    let client = ca.issue(CLIENT_ID, &[]);
    let other_ca = TestCa::new("other-ca");
    let stranger = other_ca.issue(CLIENT_ID, &[]);
    let xds = XdsServer::start();
    xds.set(
        LISTENER,
        vec![resource(
            "envoy.config.listener.v3.Listener",
            &listener_yaml("{ads: {}}"),
        )],
    );
    let yaml = bootstrap(&echo, Some(xds.addr()), "", "").replacen(
        "api_type: GRPC",
        &format!("api_type: {api}"),
        1,
    );
    let proxy = TestProxy::start(&yaml, 1);
    // The listener warms until its secrets arrive.
    eventually("LDS ACK", APPLY, || async {
        xds.acked_current(LISTENER).then_some(())
    })
    .await;
    let asked = eventually("the SDS subscription over ADS", APPLY, || async {
        xds.requests()
            .into_iter()
            .find(|r| r.type_url == SECRET && !r.resource_names.is_empty())
    })
    .await;
    assert_eq!(asked.resource_names, ["ROOTCA", "default"]);
    assert!(
        proxy.try_listener("web").is_none(),
        "warming without secrets"
    );

    xds.set(
        SECRET,
        vec![
            secret(&cert_secret_yaml("default", &server)),
            secret(&ca_secret_yaml("ROOTCA", &ca)),
        ],
    );
    eventually("SDS ACK", APPLY, || async {
        xds.acked_current(SECRET).then_some(())
    })
    .await;
    let addr = eventually("listener web", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;

    let tls = client_tls(&ca, Some(&client));
    let v = eventually("a TLS request", APPLY, || async {
        fresh_request(&tls, addr).await.ok()
    })
    .await;
    assert_eq!(v, 1);
    // ROOTCA validates clients: no certificate, or one from another CA, is
    // refused.
    let anonymous = client_tls(&ca, None);
    assert!(fresh_request(&anonymous, addr).await.is_err());
    let other = client_tls(&ca, Some(&stranger));
    assert!(fresh_request(&other, addr).await.is_err());

    // curl agrees.
    let out = Command::new("/usr/bin/curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", addr.port())])
        .arg("--cacert")
        .arg(ca.root())
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .arg(format!("https://{HOST}:{}/", addr.port()))
        .output()
        .expect("curl (apt-get install curl)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_over_a_separate_sds_stream_under_load() {
    let echo = http_echo("echo");
    let ca = TestCa::new("mesh-ca");
    let v1 = ca.issue(&server_id(1), &[HOST]);
    let v2 = ca.issue(&server_id(2), &[HOST]);
    let client = ca.issue(CLIENT_ID, &[]);
    // The SDS server (the test control plane's SecretDiscoveryService) is
    // the only control plane: a static bootstrap, as with Istio's agent.
    let sds = XdsServer::start();
    sds.set(
        SECRET,
        vec![
            secret(&cert_secret_yaml("default", &v1)),
            secret(&ca_secret_yaml("ROOTCA", &ca)),
        ],
    );
    let grpc = r#"{api_config_source: {api_type: GRPC, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}}"#;
    let yaml = bootstrap(
        &echo,
        None,
        &cluster_yaml("sds-grpc", sds.addr(), UPSTREAM_H2),
        &indent(
            &format!(
                "- {}",
                listener_yaml(grpc).trim_start().replace('\n', "\n  ")
            ),
            2,
        ),
    );
    let proxy = TestProxy::start(&yaml, 2);
    eventually("SDS ACK", APPLY, || async {
        sds.acked_current(SECRET).then_some(())
    })
    .await;
    rotate_under_load(&proxy, &ca, &client, || {
        sds.set(
            SECRET,
            vec![
                secret(&cert_secret_yaml("default", &v2)),
                secret(&ca_secret_yaml("ROOTCA", &ca)),
            ],
        );
    })
    .await;
    assert!(sds.acked_current(SECRET), "{:?}", sds.replies(SECRET));
    assert!(sds.nacks(SECRET).is_empty());
    // One SDS stream (no ADS here), subscribed by name, node on every
    // request as Envoy sends it to an SDS server.
    let requests = sds.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.type_url == SECRET && r.has_node && !r.delta)
    );
    assert_eq!(requests[0].resource_names, ["ROOTCA", "default"]);
}

/// The bootstrap of the SDS-file tests: the TLS listener `web` taking its
/// secrets from `source` (an `sds_config`), no ADS.
fn file_sourced(echo: &Upstream, source: &str) -> String {
    bootstrap(
        echo,
        None,
        "",
        &indent(
            &format!(
                "- {}",
                listener_yaml(source).trim_start().replace('\n', "\n  ")
            ),
            2,
        ),
    )
}

/// An SDS file: a `DiscoveryResponse` with both secrets.
fn sds_file_text(version: &str, cert: &Issued, ca: &TestCa) -> String {
    format!(
        "version_info: \"{version}\"\nresources:\n- {}\n- {}\n",
        cert_secret_yaml("default", cert).replace('\n', " "),
        ca_secret_yaml("ROOTCA", ca).replace('\n', " "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_via_an_sds_file_under_load() {
    let echo = http_echo("echo");
    let ca = TestCa::new("mesh-ca");
    let v1 = ca.issue(&server_id(1), &[HOST]);
    let v2 = ca.issue(&server_id(2), &[HOST]);
    let client = ca.issue(CLIENT_ID, &[]);
    let dir = TempDir::new("sds");
    let file = dir.path().join("secrets.yaml");
    std::fs::write(&file, sds_file_text("1", &v1, &ca)).expect("write SDS file");
    let source = format!(
        "{{path_config_source: {{path: {}, watched_directory: {{path: {}}}}}}}",
        file.display(),
        dir.path().display()
    );
    let proxy = TestProxy::start(&file_sourced(&echo, &source), 2);
    rotate_under_load(&proxy, &ca, &client, || {
        // Written aside and renamed in, as a secret mount is updated.
        let tmp = dir.path().join("secrets.yaml.tmp");
        std::fs::write(&tmp, sds_file_text("2", &v2, &ca)).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
    })
    .await;
    // A file whose certificate is not one is refused; v2 keeps serving.
    let refused = proxy.reload_failures();
    let bad = sds_file_text("3", &v2, &ca).replace("BEGIN CERTIFICATE", "BEGIN NOTHING");
    std::fs::write(&file, bad).expect("write bad SDS file");
    eventually("the bad SDS file to be refused", APPLY, || async {
        (proxy.reload_failures() > refused).then_some(())
    })
    .await;
    let error = proxy.last_reload_error().unwrap_or_default();
    assert!(error.contains("not a PEM certificate"), "{error}");
    let addr = proxy.listener("web");
    let tls = client_tls(&ca, Some(&client));
    assert_eq!(fresh_request(&tls, addr).await.expect("still v2"), 2);
}

/// Secret `default` naming `dir/cert.pem` and `dir/key.pem`, with `ROOTCA`
/// inline, as an SDS file.
fn sds_file_naming_files(dir: &Path, ca: &TestCa) -> String {
    format!(
        "version_info: \"1\"\nresources:\n- {{\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret, name: default, tls_certificate: {{certificate_chain: {{filename: {cert}}}, private_key: {{filename: {key}}}}}}}\n- {root}\n",
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
        root = ca_secret_yaml("ROOTCA", ca).replace('\n', " "),
    )
}

/// Puts `cert`'s certificate and key in a new directory under `dir` and
/// points the `data` symlink at it in one rename, as Kubernetes updates a
/// secret volume.
fn mount(dir: &Path, version: u32, cert: &Issued) {
    let target = dir.join(format!("v{version}"));
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::copy(&cert.cert, target.join("cert.pem")).expect("cert");
    std::fs::copy(&cert.key, target.join("key.pem")).expect("key");
    let link = dir.join(format!("data.v{version}"));
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    std::fs::rename(&link, dir.join("data")).expect("swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_of_the_files_an_sds_secret_names_under_load() {
    let echo = http_echo("echo");
    let ca = TestCa::new("mesh-ca");
    let v1 = ca.issue(&server_id(1), &[HOST]);
    let v2 = ca.issue(&server_id(2), &[HOST]);
    let client = ca.issue(CLIENT_ID, &[]);
    let dir = TempDir::new("sds-files");
    mount(dir.path(), 1, &v1);
    let file = dir.path().join("secrets.yaml");
    std::fs::write(&file, sds_file_naming_files(&dir.path().join("data"), &ca))
        .expect("write SDS file");
    let source = format!("{{path_config_source: {{path: {}}}}}", file.display());
    let proxy = TestProxy::start(&file_sourced(&echo, &source), 2);
    // The SDS file itself never changes: only the files its secret names.
    rotate_under_load(&proxy, &ca, &client, || mount(dir.path(), 2, &v2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_secret_is_nacked_and_the_previous_keeps_serving() {
    let echo = http_echo("echo");
    let ca = TestCa::new("mesh-ca");
    let v1 = ca.issue(&server_id(1), &[HOST]);
    let client = ca.issue(CLIENT_ID, &[]);
    let xds = XdsServer::start();
    xds.set(
        LISTENER,
        vec![resource(
            "envoy.config.listener.v3.Listener",
            &listener_yaml("{ads: {}}"),
        )],
    );
    xds.set(
        SECRET,
        vec![
            secret(&cert_secret_yaml("default", &v1)),
            secret(&ca_secret_yaml("ROOTCA", &ca)),
        ],
    );
    let proxy = TestProxy::start(&bootstrap(&echo, Some(xds.addr()), "", ""), 1);
    eventually("SDS ACK", APPLY, || async {
        xds.acked_current(SECRET).then_some(())
    })
    .await;
    let addr = eventually("listener web", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;
    let tls = client_tls(&ca, Some(&client));
    assert_eq!(
        eventually("a TLS request", APPLY, || async {
            fresh_request(&tls, addr).await.ok()
        })
        .await,
        1
    );

    // A certificate that is not one: translated fine, refused when compiled.
    let bad = r#"{"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret,
      name: default, tls_certificate: {certificate_chain: {inline_string: "not a certificate"},
      private_key: {inline_string: "nor a key"}}}"#;
    xds.set(
        SECRET,
        vec![secret(bad), secret(&ca_secret_yaml("ROOTCA", &ca))],
    );
    let nack = eventually("a NACK", APPLY, || async { xds.nacks(SECRET).pop() }).await;
    let reason = nack.error_detail.unwrap_or_default();
    assert!(reason.contains("listener web"), "{reason}");
    assert!(reason.contains("not a PEM certificate"), "{reason}");
    assert_eq!(fresh_request(&tls, addr).await.expect("still v1"), 1);

    // A kind Strait does not consume: refused naming the field.
    let generic = r#"{"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret,
      name: default, generic_secret: {secret: {inline_string: "x"}}}"#;
    xds.set(
        SECRET,
        vec![secret(generic), secret(&ca_secret_yaml("ROOTCA", &ca))],
    );
    let nack = eventually("a second NACK", APPLY, || async {
        let n = xds.nacks(SECRET);
        (n.len() >= 2).then(|| n[n.len() - 1].clone())
    })
    .await;
    let reason = nack.error_detail.unwrap_or_default();
    assert!(
        reason.contains("secret 'default': default.generic_secret: not supported"),
        "{reason}"
    );
    assert_eq!(fresh_request(&tls, addr).await.expect("still v1"), 1);
}

/// Cluster `inbound`: mutual TLS to `addr` with the proxy's own `default`
/// certificate and `ROOTCA`, verifying the server's SPIFFE identity.
fn inbound_cluster(addr: SocketAddr) -> (String, envoy_types::pb::google::protobuf::Any) {
    resource(
        "envoy.config.cluster.v3.Cluster",
        &format!(
            r#"
name: inbound
type: STATIC
connect_timeout: 1s
load_assignment:
  cluster_name: inbound
  endpoints:
  - lb_endpoints:
    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: {HOST}
    common_tls_context:
      tls_certificate_sds_secret_configs: [{{name: default, sds_config: {{ads: {{}}}}}}]
      combined_validation_context:
        default_validation_context:
          match_typed_subject_alt_names: [{{san_type: URI, matcher: {{prefix: "{MESH_IDS}web-v"}}}}]
        validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {{ads: {{}}}}}}
"#,
            port = addr.port()
        ),
    )
}

/// Listener `front`: plain HTTP to cluster `inbound`.
fn front_listener() -> (String, envoy_types::pb::google::protobuf::Any) {
    resource(
        "envoy.config.listener.v3.Listener",
        r#"
name: front
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: front
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{match: {prefix: "/"}, route: {cluster: inbound}}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_from_sds_and_rotation_keeps_pools_working() {
    let echo = http_echo("echo");
    let ca = TestCa::new("mesh-ca");
    let v1 = ca.issue(&server_id(1), &[HOST]);
    let v2 = ca.issue(&server_id(2), &[HOST]);
    let xds = XdsServer::start();
    let secrets = |cert: &Issued| {
        vec![
            secret(&cert_secret_yaml("default", cert)),
            secret(&ca_secret_yaml("ROOTCA", &ca)),
        ]
    };
    xds.set(SECRET, secrets(&v1));
    xds.set(
        LISTENER,
        vec![
            resource(
                "envoy.config.listener.v3.Listener",
                &listener_yaml("{ads: {}}"),
            ),
            front_listener(),
        ],
    );
    let proxy = TestProxy::start(&bootstrap(&echo, Some(xds.addr()), "", ""), 2);
    let web = eventually("listener web", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;
    // The cluster originates mutual TLS to `web` with the same secrets: the
    // proxy talks to itself as one sidecar talks to another.
    xds.set(CLUSTER, vec![inbound_cluster(web)]);
    eventually("CDS ACK", APPLY, || async {
        xds.acked_current(CLUSTER).then_some(())
    })
    .await;
    let front = eventually("listener front", APPLY, || async {
        proxy.try_listener("front")
    })
    .await;
    let reply = eventually("a request through the TLS cluster", APPLY, || async {
        let mut c = Client::http1(front).await.ok()?;
        let r = c.get("/").await.ok()?;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(reply.json()["upstream"], "echo");

    // Rotate while requests flow on the kept-alive downstream connection
    // (so through the pooled upstream TLS connection, when kept).
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let task = {
        let (stop, failures, done) = (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&done));
        let mut c = Client::http1(front).await.expect("connect front");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get("/").await {
                    Ok(r) if r.status == 200 => drop(done.fetch_add(1, Ordering::Relaxed)),
                    _ => drop(failures.fetch_add(1, Ordering::Relaxed)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    eventually("load before rotating", APPLY, || async {
        (done.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    xds.set(SECRET, secrets(&v2));
    eventually("SDS ACK of the rotation", APPLY, || async {
        xds.acked_current(SECRET).then_some(())
    })
    .await;
    let tls = client_tls(&ca, Some(&v1));
    let seen = eventually("web to serve v2", APPLY, || async {
        fresh_request(&tls, web).await.ok().filter(|v| *v == 2)
    })
    .await;
    assert_eq!(seen, 2);
    let before = done.load(Ordering::Relaxed);
    eventually("more load after rotating", APPLY, || async {
        (done.load(Ordering::Relaxed) >= before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.expect("load task");
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    // A new upstream connection (new downstream, new request) works with
    // the rotated client certificate.
    let mut fresh = Client::http1(front).await.expect("connect front");
    assert_eq!(fresh.get("/").await.expect("after rotation").status, 200);
}
