//! gRPC through the proxy with grpcio on both ends: a Python client calls a
//! Python server over h2c, and everything gRPC carries (payloads, initial and
//! trailing metadata, status codes and details, trailers-only errors and
//! errors after messages) arrives unchanged.
//!
//! The Python side is `tests/grpc/echo.py` (generic handlers, raw bytes: no
//! codegen). grpcio must be installed: `pip install grpcio`.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use strait_test_support::proxy::{TestProxy, UPSTREAM_H2, http_config};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grpc/echo.py")
}

/// `python3` with no HTTP proxy settings from the environment (gRPC honours
/// them, and they must not route test traffic elsewhere).
fn python() -> Command {
    let mut cmd = Command::new("python3");
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "grpc_proxy",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn require_grpcio() {
    let ok = python()
        .args(["-c", "import grpc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 cannot `import grpc`: the gRPC end-to-end tests need grpcio; \
         install it with `pip install grpcio` (.ci/run does)"
    );
}

/// The Python gRPC server; killed when dropped.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    fn start() -> GrpcServer {
        let mut child = python()
            .arg(script())
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the Python gRPC server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
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

/// Runs the Python client against `addr` and returns its JSON report.
fn call_all(addr: SocketAddr) -> serde_json::Value {
    let out = python()
        .arg(script())
        .arg("client")
        .arg(addr.to_string())
        .output()
        .expect("running the Python gRPC client");
    assert!(
        out.status.success(),
        "gRPC client against {addr} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The application's metadata: what the proxy adds itself (`x-envoy-*`,
/// e.g. `x-envoy-upstream-service-time`) is left out.
fn pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("metadata list")
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().unwrap_or("").to_owned(),
                kv[1].as_str().unwrap_or("").to_owned(),
            )
        })
        .filter(|(k, _)| !k.starts_with("x-envoy-"))
        .collect()
}

/// `report` without the proxy's own `x-envoy-*` metadata.
fn without_proxy_metadata(mut report: serde_json::Value) -> serde_json::Value {
    if let Some(calls) = report.as_object_mut() {
        for call in calls.values_mut() {
            for key in ["initial", "trailing"] {
                if let Some(list) = call.get_mut(key).and_then(|l| l.as_array_mut()) {
                    list.retain(|kv| !kv[0].as_str().is_some_and(|k| k.starts_with("x-envoy-")));
                }
            }
        }
    }
    report
}

fn md(k: &str, v: &str) -> Vec<(String, String)> {
    vec![(k.to_owned(), v.to_owned())]
}

#[test]
fn grpcio_unary_streaming_and_errors_cross_the_proxy_unchanged() {
    require_grpcio();
    let server = GrpcServer::start();
    let proxy = TestProxy::start(&http_config(server.addr, "", UPSTREAM_H2), 1);
    let via_proxy = call_all(proxy.listener("listener"));

    let unary = &via_proxy["unary"];
    assert_eq!(unary["code"], "OK", "{via_proxy}");
    assert!(
        unary["initial"]
            .to_string()
            .contains("x-envoy-upstream-service-time"),
        "the call went through the proxy: {unary}"
    );
    assert_eq!(unary["payload"], "echo:hello");
    assert_eq!(
        pairs(&unary["initial"]),
        md("x-seen-id", "c-1"),
        "request metadata reached the server, response metadata came back"
    );
    assert_eq!(
        pairs(&unary["trailing"]),
        md("x-echo-trailer", "unary-done")
    );

    assert_eq!(via_proxy["big"]["len"], 2 << 20, "{via_proxy}");
    assert_eq!(via_proxy["big"]["intact"], true, "1 MiB message intact");

    let stream = &via_proxy["stream"];
    assert_eq!(stream["code"], "OK", "{via_proxy}");
    assert_eq!(
        stream["items"],
        serde_json::json!(["item-0", "item-1", "item-2", "item-3", "item-4"])
    );
    assert_eq!(pairs(&stream["initial"]), md("x-seen-id", "c-2"));
    assert_eq!(
        pairs(&stream["trailing"]),
        md("x-echo-trailer", "stream-done")
    );

    // A trailers-only error: status in the response headers.
    let not_found = &via_proxy["not_found"];
    assert_eq!(not_found["code"], "NOT_FOUND", "{via_proxy}");
    assert_eq!(not_found["details"], "no such thing: widget");
    assert_eq!(
        pairs(&not_found["trailing"]),
        md("x-echo-trailer", "not-found")
    );

    // An error after messages: status in real HTTP/2 trailers.
    let late = &via_proxy["stream_then_fail"];
    assert_eq!(late["code"], "NOT_FOUND", "{via_proxy}");
    assert_eq!(late["details"], "gone after two");
    assert_eq!(late["items"], serde_json::json!(["first", "second"]));
    assert_eq!(
        pairs(&late["trailing"]),
        md("x-echo-trailer", "failed-late")
    );

    // And the proxy is transparent: the same calls made directly agree.
    let direct = call_all(server.addr);
    assert_eq!(
        without_proxy_metadata(via_proxy),
        direct,
        "proxied and direct gRPC calls differ"
    );
}
