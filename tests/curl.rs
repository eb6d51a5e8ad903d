//! The system `curl` through the proxy: a real, independent HTTP/1.1 and
//! HTTP/2 client with its own ideas about `Expect: 100-continue`, chunked
//! uploads and HEAD.

use std::{net::SocketAddr, process::Command};

use strait_test_support::{
    TempDir,
    proxy::{TestProxy, UPSTREAM_H2, http_config},
    upstream::{Upstream, http_echo},
};

const CURL: &str = "/usr/bin/curl";

/// What one curl run reported.
struct Curl {
    status: u16,
    /// `%{http_version}`: "1.1" or "2".
    version: String,
    body: String,
    /// curl's `-v` trace: `> ` lines sent, `< ` lines received.
    trace: String,
}

impl Curl {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Runs curl with `args` against `http://ADDR{path}`; the status and HTTP
/// version come from `--write-out` on the last line.
fn curl(addr: SocketAddr, path: &str, args: &[&str]) -> Curl {
    let out = Command::new(CURL)
        .args(["-sS", "-v", "--max-time", "20"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {CURL} ({e}); install it with `apt-get install curl`")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let trace = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl {args:?} failed: {trace}");
    let (body, last) = stdout.rsplit_once('\n').expect("curl --write-out line");
    let (status, version) = last.split_once(' ').expect("status and version");
    Curl {
        status: status.parse().expect("numeric status"),
        version: version.to_owned(),
        body: body.to_owned(),
        trace,
    }
}

/// An echo upstream and a proxy in front of it; `cluster_extra` is
/// [`UPSTREAM_H2`] to speak HTTP/2 upstream.
fn setup_with(cluster_extra: &str) -> (Upstream, TestProxy) {
    assert!(
        std::path::Path::new(CURL).exists(),
        "{CURL} not found: these tests need the real curl; install it with `apt-get install curl`"
    );
    let up = http_echo("curl");
    let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 1);
    (up, proxy)
}

fn setup() -> (Upstream, TestProxy) {
    setup_with("")
}

/// Both upstream protocols, for the upload tests: the body crosses from
/// curl's framing (length, chunked, after 100-continue) to either codec.
const UPSTREAMS: [&str; 2] = ["", UPSTREAM_H2];

/// A file of `len` bytes for `--data-binary @FILE`.
fn body_file(dir: &TempDir, len: usize) -> String {
    let path = dir.path().join(format!("body-{len}"));
    std::fs::write(&path, vec![b'b'; len]).expect("writing body file");
    format!("@{}", path.display())
}

/// The upstream saw `path` (origin form over HTTP/1.1, absolute over HTTP/2).
fn assert_path(echo: &serde_json::Value, path: &str) {
    let seen = echo["path"].as_str().unwrap_or("");
    let origin_form = seen
        .strip_prefix("http://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(seen);
    assert_eq!(origin_form, path, "upstream saw {seen}");
}

fn saw(echo: &serde_json::Value, name: &str) -> bool {
    echo["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .any(|h| h[0] == name)
}

#[test]
fn curl_http1_get() {
    let (_up, proxy) = setup();
    let r = curl(proxy.listener("listener"), "/curl/get?q=1", &["--http1.1"]);
    assert_eq!(r.status, 200, "{}", r.trace);
    assert_eq!(r.version, "1.1");
    assert!(r.trace.contains("< server: envoy"), "{}", r.trace);
    let echo = r.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/curl/get?q=1");
    assert_eq!(echo["body_len"], 0);
}

#[test]
fn curl_http1_post_with_body() {
    for cluster_extra in UPSTREAMS {
        let (_up, proxy) = setup_with(cluster_extra);
        let r = curl(
            proxy.listener("listener"),
            "/curl/post",
            &["--http1.1", "--data-binary", "hello, proxy"],
        );
        assert_eq!(r.status, 200, "{}", r.trace);
        let echo = r.json();
        assert_eq!(echo["method"], "POST");
        assert_path(&echo, "/curl/post");
        assert_eq!(echo["body_len"], 12);
    }
}

#[test]
fn curl_http2_prior_knowledge_get_and_post() {
    let (_up, proxy) = setup();
    let addr = proxy.listener("listener");
    let r = curl(addr, "/curl/h2", &["--http2-prior-knowledge"]);
    assert_eq!(r.status, 200, "{}", r.trace);
    assert_eq!(r.version, "2", "curl spoke HTTP/2 to the proxy");
    let echo = r.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/curl/h2");
    let r = curl(
        addr,
        "/curl/h2post",
        &["--http2-prior-knowledge", "--data-binary", "0123456789"],
    );
    assert_eq!(r.status, 200, "{}", r.trace);
    assert_eq!(r.version, "2");
    assert_eq!(r.json()["body_len"], 10);
}

#[test]
fn curl_head_gets_headers_and_no_body() {
    let (up, proxy) = setup();
    let addr = proxy.listener("listener");
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let before = up.requests();
        let r = curl(addr, "/curl/head", &[version, "-I"]);
        assert_eq!(r.status, 200, "{}", r.trace);
        // -I prints the response head as the body.
        let head = r.body.to_ascii_lowercase();
        assert!(head.contains("x-upstream: curl"), "{version}: {head}");
        assert!(head.contains("server: envoy"), "{version}: {head}");
        assert!(
            !head.contains("\"method\""),
            "{version}: HEAD answered with a body: {head}"
        );
        assert_eq!(up.requests(), before + 1, "{version}: one request upstream");
    }
}

#[test]
fn curl_expect_100_continue_upload() {
    for cluster_extra in UPSTREAMS {
        expect_100_continue(cluster_extra, false);
    }
}

/// `proxy_100_continue: true` (Istio sets it on every connection manager):
/// the upstream is asked too, and curl still gets its 100 and sends.
#[test]
fn curl_expect_100_continue_proxied() {
    for cluster_extra in UPSTREAMS {
        expect_100_continue(cluster_extra, true);
    }
}

fn expect_100_continue(cluster_extra: &str, proxied: bool) {
    let up = http_echo("curl");
    let hcm = if proxied {
        "          proxy_100_continue: true"
    } else {
        ""
    };
    let proxy = TestProxy::start(&http_config(up.addr, hcm, cluster_extra), 1);
    let addr = proxy.listener("listener");
    let dir = TempDir::new("curl");
    // Above 1 MiB curl asks `Expect: 100-continue` by itself; on a small body
    // it is forced with -H. The long expect timeout means a missing 100
    // would show up as a slow test, and the trace proves it arrived.
    for (len, extra) in [(2 << 20, None), (1000, Some("Expect: 100-continue"))] {
        let file = body_file(&dir, len);
        let mut args = vec![
            "--http1.1",
            "--expect100-timeout",
            "15",
            "--data-binary",
            &file,
        ];
        if let Some(h) = extra {
            args.extend(["-H", h]);
        }
        let r = curl(addr, "/curl/expect", &args);
        assert_eq!(r.status, 200, "{}", r.trace);
        assert!(
            r.trace.contains("> Expect: 100-continue"),
            "curl asked to continue: {}",
            r.trace
        );
        assert!(
            r.trace.contains("< HTTP/1.1 100 Continue"),
            "the proxy answered 100 Continue: {}",
            r.trace
        );
        let echo = r.json();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["body_len"], len);
        assert_eq!(
            saw(&echo, "expect"),
            proxied,
            "Expect reaches the upstream only with proxy_100_continue: {echo}"
        );
    }
}

#[test]
fn curl_chunked_upload() {
    for cluster_extra in UPSTREAMS {
        chunked_upload(cluster_extra);
    }
}

fn chunked_upload(cluster_extra: &str) {
    let (_up, proxy) = setup_with(cluster_extra);
    let dir = TempDir::new("curl");
    let len = 300_000;
    let file = body_file(&dir, len);
    let r = curl(
        proxy.listener("listener"),
        "/curl/chunked",
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &file,
        ],
    );
    assert_eq!(r.status, 200, "{}", r.trace);
    assert!(
        r.trace.contains("> Transfer-Encoding: chunked"),
        "curl sent a chunked body: {}",
        r.trace
    );
    let echo = r.json();
    assert_eq!(echo["method"], "POST");
    assert_path(&echo, "/curl/chunked");
    assert_eq!(echo["body_len"], len);
}
