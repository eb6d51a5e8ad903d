//! HTTP/1.1 and HTTP/2 proxying end to end, with a real hyper client and real
//! upstream servers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use strait_test_support::{
    client::{Client, Frames, Protocol, send_streaming},
    proxy::{TestProxy, UPSTREAM_H2, http_config},
    upstream::{Upstream, http_echo},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_reaches_upstream_with_envoy_headers() -> anyhow::Result<()> {
    let up = http_echo("a");
    let proxy = TestProxy::start(
        &http_config(up.addr, "          use_remote_address: true", ""),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let r = c.get("/hello?x=1").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("server"), Some("envoy"));
    assert!(r.header("x-envoy-upstream-service-time").is_some());
    let echo = r.json();
    assert_eq!(echo["path"], "/hello?x=1");
    let headers = echo["headers"].as_array().expect("headers").clone();
    let get = |n: &str| {
        headers
            .iter()
            .find(|h| h[0] == n)
            .map(|h| h[1].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(get("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        get("x-envoy-expected-rq-timeout-ms").as_deref(),
        Some("15000")
    );
    assert_eq!(get("x-request-id").map(|v| v.len()), Some(36));
    // keep-alive: a second request on the same client connection
    let r = c.get("/again").await?;
    assert_eq!(r.status, 200);
    assert_eq!(up.connections(), 1, "upstream connection reused");
    Ok(())
}

/// The value of header `name` as the echo upstream saw it, if present.
fn seen(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .find(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap_or("").to_owned())
}

/// How many times header `name` reached the echo upstream.
fn seen_count(echo: &serde_json::Value, name: &str) -> usize {
    echo["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .filter(|h| h[0] == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_downstream_and_upstream_protocol_pair_proxies() -> anyhow::Result<()> {
    let up = http_echo("m");
    for (upstream, cluster_extra, seen_version) in [
        (Protocol::Http1, "", "HTTP/1.1"),
        (Protocol::Http2, UPSTREAM_H2, "HTTP/2.0"),
    ] {
        let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 1);
        for downstream in [Protocol::Http1, Protocol::Http2] {
            let what = format!("{downstream:?} -> {upstream:?}");
            let mut c = Client::connect(proxy.listener("listener"), downstream).await?;
            let r = c.get("/matrix?q=1").await?;
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            assert_eq!(r.header("x-upstream"), Some("m"), "{what}");
            let echo = r.json();
            assert_eq!(echo["method"], "GET", "{what}");
            assert_eq!(echo["version"], seen_version, "{what}");
            assert!(
                echo["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/matrix?q=1")),
                "{what}: {echo}"
            );
            // The Host header (HTTP/1.1) or :authority (HTTP/2) crosses over.
            let host = seen(&echo, "host")
                .or_else(|| echo["path"].as_str().map(str::to_owned))
                .unwrap_or_default();
            assert!(host.contains("localhost"), "{what}: {echo}");

            let body = Bytes::from(vec![7u8; 100_000]);
            let req = Request::post("/upload").body(Full::new(body))?;
            let r = c.send(req).await?;
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            let echo = r.json();
            assert_eq!(echo["method"], "POST", "{what}");
            assert_eq!(echo["body_len"], 100_000, "{what}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_share_one_http2_connection() -> anyhow::Result<()> {
    for (cluster_extra, max_upstream_conns) in [(UPSTREAM_H2, 1), ("", 100)] {
        let up = http_echo("c");
        let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 2);
        let c = Client::http2(proxy.listener("listener")).await?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let mut c = c.share().expect("an HTTP/2 client shares its connection");
            // Each request waits 300 ms upstream: 100 of them finish in about
            // that time only if they really run at once.
            tasks.push(tokio::spawn(async move {
                c.get(&format!("/delay/300?i={i}")).await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await??;
            assert_eq!(r.status, 200, "{}", r.text());
            let path = r.json()["path"].as_str().unwrap_or("").to_owned();
            assert!(path.ends_with(&format!("?i={i}")), "stream {i} got {path}");
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(5),
            "100 concurrent 300 ms requests took {elapsed:?}: streams were serialised"
        );
        assert_eq!(up.requests(), 100);
        assert!(
            up.connections() <= max_upstream_conns,
            "{} upstream connections (at most {max_upstream_conns} expected)",
            up.connections()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() -> anyhow::Result<()> {
    for (cluster_extra, downstream) in [("", Protocol::Http1), (UPSTREAM_H2, Protocol::Http2)] {
        let up = http_echo("k");
        let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 1);
        // Five client connections one after another, four requests each.
        for conn in 0..5 {
            let mut c = Client::connect(proxy.listener("listener"), downstream).await?;
            for i in 0..4 {
                let r = c.get(&format!("/ka/{conn}/{i}")).await?;
                assert_eq!(r.status, 200);
            }
        }
        assert_eq!(up.requests(), 20);
        // One connection in practice; a second is allowed because an
        // HTTP/1.1 connection rejoins the pool a moment after its response
        // ends, and a loaded machine may let the next request in first.
        assert!(
            up.connections() <= 2,
            "{downstream:?}: 20 sequential requests used {} upstream connections",
            up.connections()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_request_and_response_trailers_cross_end_to_end() -> anyhow::Result<()> {
    let up = http_echo("t");
    let proxy = TestProxy::start(&http_config(up.addr, "", UPSTREAM_H2), 1);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-request-trailer", "from-client".parse()?);
    let req = Request::post("/trailers")
        .header("te", "trailers")
        .body(Frames::with_trailers("payload", trailers))?;
    let resp = send_streaming(proxy.listener("listener"), Protocol::Http2, req).await?;
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await?;
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(collected.to_bytes(), "ok");
    assert_eq!(
        trailers.get("x-trailer").map(|v| v.as_bytes()),
        Some(&b"yes"[..]),
        "the upstream's trailer arrived: {trailers:?}"
    );
    assert_eq!(
        trailers.get("x-request-trailer").map(|v| v.as_bytes()),
        Some(&b"from-client"[..]),
        "the client's trailer reached the upstream: {trailers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_stripped_both_ways() -> anyhow::Result<()> {
    let up = http_echo("h");
    // An HTTP/2 upstream would also refuse connection-specific headers
    // outright, so a leak there shows up as a failed request.
    for cluster_extra in ["", UPSTREAM_H2] {
        hop_by_hop(&up, cluster_extra).await?;
    }
    Ok(())
}

async fn hop_by_hop(up: &Upstream, cluster_extra: &str) -> anyhow::Result<()> {
    let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 1);
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let req = Request::get("/hop")
        .header("te", "gzip")
        .header("connection", "x-foo, keep-alive")
        .header("x-foo", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("x-end-to-end", "kept")
        // The upstream answers with hop-by-hop headers of its own.
        .header("x-respond-header", "connection=x-bar")
        .header("x-respond-header", "x-bar=1")
        .header("x-respond-header", "keep-alive=timeout=9")
        .header("x-respond-header", "x-resp-kept=yes")
        .body(Full::new(Bytes::new()))?;
    let r = c.send(req).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    for gone in [
        "connection",
        "x-foo",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert_eq!(
            seen(&echo, gone),
            None,
            "{gone} reached the upstream: {echo}"
        );
    }
    assert_eq!(seen(&echo, "x-end-to-end").as_deref(), Some("kept"));
    assert_eq!(
        r.header("x-bar"),
        None,
        "connection-named response header leaked"
    );
    assert_eq!(
        r.header("keep-alive"),
        None,
        "keep-alive response header leaked"
    );
    assert_eq!(r.header("x-resp-kept"), Some("yes"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_is_kept_and_missing_one_generated() -> anyhow::Result<()> {
    let up = http_echo("r");
    let proxy = TestProxy::start(&http_config(up.addr, "", ""), 1);
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut c = Client::connect(proxy.listener("listener"), protocol).await?;
        let req = Request::get("/rid")
            .header("x-request-id", "client-chosen-id-42")
            .body(Full::new(Bytes::new()))?;
        let echo = c.send(req).await?.json();
        assert_eq!(
            seen(&echo, "x-request-id").as_deref(),
            Some("client-chosen-id-42")
        );
        assert_eq!(seen_count(&echo, "x-request-id"), 1);
        let a = seen(&c.get("/rid").await?.json(), "x-request-id").expect("generated id");
        let b = seen(&c.get("/rid").await?.json(), "x-request-id").expect("generated id");
        assert_eq!(a.len(), 36, "a UUID: {a}");
        assert_ne!(a, b, "each request gets its own id");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_header_follows_server_header_transformation() -> anyhow::Result<()> {
    let up = http_echo("s");
    let cases = [
        ("", Some("upstream-srv"), "envoy", "envoy"),
        (
            "          server_name: strait-edge",
            Some("upstream-srv"),
            "strait-edge",
            "strait-edge",
        ),
        (
            "          server_header_transformation: PASS_THROUGH",
            Some("upstream-srv"),
            "upstream-srv",
            "",
        ),
        (
            "          server_header_transformation: APPEND_IF_ABSENT",
            Some("upstream-srv"),
            "upstream-srv",
            "envoy",
        ),
    ];
    for (hcm, upstream_server, expect_with, expect_without) in cases {
        let proxy = TestProxy::start(&http_config(up.addr, hcm, ""), 1);
        let mut c = Client::http1(proxy.listener("listener")).await?;
        let mut req = Request::get("/server");
        if let Some(s) = upstream_server {
            req = req.header("x-respond-header", format!("server={s}"));
        }
        let r = c.send(req.body(Full::new(Bytes::new()))?).await?;
        assert_eq!(r.header("server").unwrap_or(""), expect_with, "{hcm:?}");
        let r = c.get("/server").await?;
        assert_eq!(
            r.header("server").unwrap_or(""),
            expect_without,
            "{hcm:?} without an upstream server header"
        );
    }
    Ok(())
}

/// Envoy's connection `idle_timeout`: a connection with no open stream for
/// that long is closed (HTTP/2 with GOAWAY), but a slow stream is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_idle_timeout() -> anyhow::Result<()> {
    let up = http_echo("a");
    let hcm = "          common_http_protocol_options: {idle_timeout: 0.3s}";
    let proxy = TestProxy::start(&http_config(up.addr, hcm, ""), 1);
    for h2 in [false, true] {
        let addr = proxy.listener("listener");
        let mut c = if h2 {
            Client::http2(addr).await?
        } else {
            Client::http1(addr).await?
        };
        // A stream longer than the idle timeout keeps the connection.
        assert_eq!(c.get("/delay/600").await?.status, 200, "h2={h2}");
        assert!(!c.is_closed(), "h2={h2}: closed while a stream was open");
        let start = std::time::Instant::now();
        strait_test_support::eventually(
            "the idle connection to close",
            std::time::Duration::from_secs(5),
            || async { c.is_closed().then_some(()) },
        )
        .await;
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(250),
            "h2={h2}: closed too early"
        );
    }
    Ok(())
}
