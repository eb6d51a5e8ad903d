//! HTTP/1.1 and HTTP/2 proxying end to end, with a real hyper client and real
//! upstream servers.

use strait_test_support::{
    client::Client,
    proxy::{TestProxy, http_config},
    upstream::http_echo,
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
