//! Pool reuse against a real HTTP/1.1 server on loopback, counting the
//! connections it accepts.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use http::Request;
use http_body_util::BodyExt;
use strait_codec::Body;
use strait_model as model;
use strait_tls::ClusterTransports;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{ClusterRegistry, cluster::Cluster};

/// A keep-alive server answering every request with `ok`; returns its
/// address and the number of connections it accepted.
async fn server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    // Bodiless GETs: one answer per header block.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn cluster_to(addr: std::net::SocketAddr) -> Arc<Cluster> {
    let spec = model::Cluster {
        endpoints: vec![model::Endpoint::new("127.0.0.1", addr.port(), 1)],
        ..model::Cluster::new("c")
    };
    let registry = ClusterRegistry::new(Arc::new(metrics::NoopRecorder));
    let transports = ClusterTransports::compile(&spec).expect("compiles");
    registry
        .reconcile(std::slice::from_ref(&spec), &|_| transports.clone())
        .await;
    registry.get("c").expect("cluster")
}

fn get() -> Request<Body> {
    Request::get("http://c/")
        .body(Body::Empty)
        .expect("request")
}

/// A connection that is in use while the pool is cleared (its host moved
/// to another transport socket) is closed when its response ends, not
/// pooled: the next request opens a new connection.
#[tokio::test]
async fn a_connection_in_use_during_a_clear_is_not_pooled() {
    let (addr, accepted) = server().await;
    let cluster = cluster_to(addr).await;
    let host = cluster.pick().expect("host");

    // Plain reuse: two requests, one connection.
    for _ in 0..2 {
        let lease = cluster.lease(Arc::clone(&host)).await.expect("lease");
        let resp = lease.send(get()).await.expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Cleared while the response body is still unread.
    let lease = cluster.lease(Arc::clone(&host)).await.expect("lease");
    let resp = lease.send(get()).await.expect("response");
    host.pools.clear();
    resp.into_body().collect().await.expect("body");
    // Returning may finish off the request path; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(host.idle_connections(), 0);

    let lease = cluster.lease(Arc::clone(&host)).await.expect("lease");
    lease.send(get()).await.expect("response");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// The ALPN override a request's connection offered is part of the pool's
/// key (Envoy hashes it into the connection pool's): a connection opened
/// for one list never serves a request with another or with none, and
/// requests with an equal list (not the same allocation) share.
#[tokio::test]
async fn pools_with_different_alpn_overrides_are_not_shared() {
    use strait_tls::ApplicationProtocols;

    let (addr, accepted) = server().await;
    let cluster = cluster_to(addr).await;
    let host = cluster.pick().expect("host");
    let h11 = ApplicationProtocols::new(["istio-http/1.1", "istio", "http/1.1"]);
    let h2 = ApplicationProtocols::new(["istio-h2", "istio", "h2"]);
    let again = ApplicationProtocols::new(["istio-http/1.1", "istio", "http/1.1"]);
    let send = |alpn: Option<ApplicationProtocols>| {
        let cluster = Arc::clone(&cluster);
        let host = Arc::clone(&host);
        async move {
            let lease = cluster
                .lease_offering(host, crate::RoutingPriority::Default, false, alpn.as_ref())
                .await
                .expect("lease");
            let resp = lease.send(get()).await.expect("response");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"ok");
            // The connection goes back to its pool off the request path.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let steps: [(Option<&ApplicationProtocols>, usize); 6] = [
        (Some(&h11), 1),
        (Some(&h11), 1),
        (Some(&h2), 2),
        (None, 3),
        (Some(&again), 3),
        (None, 3),
    ];
    for (i, (alpn, connections)) in steps.into_iter().enumerate() {
        send(alpn.cloned()).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            connections,
            "step {i}: override {alpn:?}"
        );
    }
    assert_eq!(host.idle_connections(), 3, "one idle connection per list");
    host.pools.clear();
    assert_eq!(host.idle_connections(), 0, "a clear empties every pool");
}
