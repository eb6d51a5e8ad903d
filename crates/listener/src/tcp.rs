//! The TCP proxy path: one downstream connection spliced to one upstream.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use strait_model::{Discovery, TcpCluster, TcpProxy};
use strait_net::{Counters, splice, splice_io};
use strait_tls::MaybeTls;
use tokio::io::AsyncWriteExt;

use crate::{context::Context, inspect::Downstream, stats::TcpStats};

/// Proxies `stream` per `proxy` until both directions close. `dst` is the
/// connection's (original) destination, where an ORIGINAL_DST cluster
/// connects.
pub(crate) async fn serve(
    stream: Downstream,
    proxy: &TcpProxy,
    shared: &Context,
    stats: &TcpStats,
    dst: SocketAddr,
) {
    stats.cx_total.increment(1);
    let name = match &proxy.cluster {
        TcpCluster::Single(name) => name.as_str(),
        TcpCluster::Weighted(list) => {
            let total: u64 = list.iter().map(|w| u64::from(w.weight)).sum();
            let mut pick = if total == 0 { 0 } else { next_random() % total };
            let mut chosen = list.first().map_or("", |w| w.name.as_str());
            for w in list {
                if pick < u64::from(w.weight) {
                    chosen = &w.name;
                    break;
                }
                pick -= u64::from(w.weight);
            }
            chosen
        }
    };
    let Some(cluster) = shared.http.registry.get(name) else {
        stats.no_route.increment(1);
        return;
    };
    let host = if matches!(cluster.spec().discovery, Discovery::OriginalDst { .. }) {
        cluster.original_dst_host(dst)
    } else {
        let Some(host) = cluster.pick() else { return };
        host
    };
    let upstream = match cluster.connect_tcp(&host).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(cluster = name, error = %e, "tcp proxy upstream connect failed");
            return;
        }
    };
    let counters = Arc::new(Counters::default());
    let result = match (stream, upstream) {
        (MaybeTls::Plain(rewind), MaybeTls::Plain(mut upstream)) => {
            // Send what the listener filters read (e.g. a ClientHello for
            // TLS passthrough), then splice the sockets directly.
            let (prefix, stream) = rewind.into_parts();
            match upstream.write_all(&prefix).await {
                Ok(()) => {
                    counters
                        .sent
                        .fetch_add(prefix.len() as u64, Ordering::Relaxed);
                    splice(stream, upstream, proxy.idle_timeout, Arc::clone(&counters)).await
                }
                Err(e) => Err(e),
            }
        }
        // TLS on either side: the generic splice (the downstream replays
        // what the listener filters read by itself).
        (down, up) => splice_io(down, up, proxy.idle_timeout, Arc::clone(&counters)).await,
    };
    let up = counters.sent.load(Ordering::Relaxed);
    let down = counters.received.load(Ordering::Relaxed);
    stats.rx_bytes.increment(up);
    stats.tx_bytes.increment(down);
    cluster.count_bytes(down, up);
    if let Err(e) = result {
        tracing::debug!(cluster = name, error = %e, "tcp proxy connection ended");
    }
}

/// A cheap pseudo-random number for weighted picks (splitmix64 over a
/// process-wide counter): uniform enough for traffic splitting, no lock.
fn next_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
