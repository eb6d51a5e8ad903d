//! Large bodies stream through the proxy with back-pressure: a gigabyte goes
//! up and a gigabyte comes down while the process's resident memory stays
//! flat. The proxy, the upstream and the client all run in this process, so
//! `/proc/self/status` bounds all three at once.
//!
//! The two tests take turns (a shared lock) so one's traffic does not show up
//! in the other's memory measurement.

use std::time::{Duration, Instant};

use http::Request;
use strait_test_support::{
    client::{Generated, Protocol, discard, send_streaming},
    proxy::{TestProxy, UPSTREAM_H2, http_config},
    upstream::http_echo,
};
use tokio::sync::Mutex;

const GIB: u64 = 1 << 30;
/// Resident memory a gigabyte transfer may add: buffers and allocator slack,
/// far below the body size.
const MAX_GROWTH: u64 = 64 << 20;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

async fn upload(protocol: Protocol, cluster_extra: &str) -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let up = http_echo("big");
    let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 1);
    let addr = proxy.listener("listener");
    // Warm up the connection pools and allocator before the baseline.
    let req = Request::post("/count").body(Generated::new(1 << 20))?;
    discard(send_streaming(addr, protocol, req).await?.into_body()).await?;
    let before = rss_bytes();
    let started = Instant::now();
    let req = Request::post("/count").body(Generated::new(GIB))?;
    let resp = send_streaming(addr, protocol, req).await?;
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    let elapsed = started.elapsed();
    let after = rss_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("{{\"received\":{GIB}}}"),
        "the upstream counted every byte"
    );
    assert!(
        after.saturating_sub(before) < MAX_GROWTH,
        "{protocol:?} upload of 1 GiB grew RSS from {before} to {after} bytes"
    );
    eprintln!("{protocol:?} upload of 1 GiB took {elapsed:?}, RSS {before} -> {after}");
    assert!(elapsed < Duration::from_secs(60), "upload took {elapsed:?}");
    Ok(())
}

async fn download(protocol: Protocol, cluster_extra: &str) -> anyhow::Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let up = http_echo("big");
    let proxy = TestProxy::start(&http_config(up.addr, "", cluster_extra), 1);
    let addr = proxy.listener("listener");
    let req = Request::get("/bytes/1048576").body(Generated::new(0))?;
    discard(send_streaming(addr, protocol, req).await?.into_body()).await?;
    let before = rss_bytes();
    let started = Instant::now();
    let req = Request::get(format!("/bytes/{GIB}")).body(Generated::new(0))?;
    let resp = send_streaming(addr, protocol, req).await?;
    assert_eq!(resp.status(), 200);
    let (received, _) = discard(resp.into_body()).await?;
    let elapsed = started.elapsed();
    let after = rss_bytes();
    assert_eq!(received, GIB, "every byte arrived");
    assert!(
        after.saturating_sub(before) < MAX_GROWTH,
        "{protocol:?} download of 1 GiB grew RSS from {before} to {after} bytes"
    );
    eprintln!("{protocol:?} download of 1 GiB took {elapsed:?}, RSS {before} -> {after}");
    assert!(
        elapsed < Duration::from_secs(60),
        "download took {elapsed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_upload_http1_streams_in_bounded_memory() -> anyhow::Result<()> {
    upload(Protocol::Http1, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_download_http1_streams_in_bounded_memory() -> anyhow::Result<()> {
    download(Protocol::Http1, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_upload_http2_streams_in_bounded_memory() -> anyhow::Result<()> {
    upload(Protocol::Http2, UPSTREAM_H2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_download_http2_streams_in_bounded_memory() -> anyhow::Result<()> {
    download(Protocol::Http2, UPSTREAM_H2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_upload_http1_to_http2_upstream_streams_in_bounded_memory() -> anyhow::Result<()> {
    upload(Protocol::Http1, UPSTREAM_H2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_download_http2_from_http1_upstream_streams_in_bounded_memory()
-> anyhow::Result<()> {
    download(Protocol::Http2, "").await
}
