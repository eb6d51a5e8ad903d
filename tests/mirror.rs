//! `request_mirror_policies`: a shadow copy reaches the mirror cluster with
//! `-shadow` appended to its host, and the main response is unaffected.

#[path = "flaky.rs"]
mod flaky;

use std::time::Duration;

use bytes::Bytes;
use flaky::{Mode, config, start};
use http::Request;
use http_body_util::Full;
use strait_test_support::{client::Client, eventually, proxy::TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_gets_a_shadow_copy() -> anyhow::Result<()> {
    let main = start("main", 0, Mode::Status(200)).await;
    // The mirror is slow: the main response must not wait for it.
    let shadow = start("shadow", u64::MAX, Mode::Delay(Duration::from_secs(2))).await;
    let vhost = "              routes:\n              - match: {prefix: \"/\"}\n                route:\n                  cluster: backend\n                  request_mirror_policies: [{cluster: shadow}]\n";
    let proxy = TestProxy::start(
        &config(
            1 << 20,
            "",
            vhost,
            &[
                ("backend", vec![(main.addr, 1)]),
                ("shadow", vec![(shadow.addr, 1)]),
            ],
        ),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let req = Request::post("/orders")
        .header("host", "shop.local:8080")
        .body(Full::new(Bytes::from_static(b"hello")))?;
    let t = std::time::Instant::now();
    let r = c.send(req).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "main");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let seen = eventually("the shadow request", Duration::from_secs(5), || async {
        shadow.seen().first().cloned()
    })
    .await;
    assert_eq!(seen.host, "shop.local-shadow:8080");
    assert_eq!(seen.path, "/orders");
    assert_eq!(seen.body_len, 5);
    assert_eq!(main.seen()[0].host, "shop.local:8080");
    Ok(())
}
