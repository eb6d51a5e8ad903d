//! The TCP proxy path: one downstream connection spliced to one upstream.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use strait_access_log::Record;
use strait_model::{Discovery, TcpCluster, TcpProxy};
use strait_net::{splice, splice_io};
use strait_tls::{MaybeTls, PeerChain, PeerIdentity};
use tokio::io::AsyncWriteExt;

use crate::{
    context::Context,
    inspect::Downstream,
    read::{Sessions, UpstreamFacts},
    stats::TcpStats,
    stream::BoxIo,
};

/// The downstream stream the TCP proxy splices: as accepted, or wrapped by
/// the chain's read filters ([`crate::ReadFilter::wrap`]).
pub(crate) enum Down {
    Direct(Downstream),
    Wrapped(BoxIo),
}

/// The upstream stream: as connected, or wrapped by the cluster's filters.
enum Up {
    Direct(strait_upstream::UpstreamStream),
    Wrapped(BoxIo),
}

/// What the TCP proxy's access log reads of the connection.
#[derive(Debug)]
pub(crate) struct ConnFacts<'a> {
    /// When the connection was accepted.
    pub(crate) started: Instant,
    /// The connection's (original) destination, where an ORIGINAL_DST
    /// cluster connects.
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) server_name: Option<&'a str>,
    pub(crate) peer_uri_san: Option<String>,
    pub(crate) local_uri_san: Option<Arc<str>>,
}

/// What one proxied connection did, for its access-log entry (written when
/// dropped, on every way out of [`serve`]).
struct Entry<'a> {
    proxy: &'a TcpProxy,
    shared: &'a Context,
    facts: &'a ConnFacts<'a>,
    cluster: Option<&'a str>,
    host: Option<SocketAddr>,
    upstream_local: Option<SocketAddr>,
    flags: &'static str,
    failure: Option<String>,
    received: u64,
    sent: u64,
    /// The read filters' sessions, told of the upstream and the end.
    sessions: Option<&'a mut Sessions>,
    /// The upstream server's certificate, on a TLS upstream.
    upstream_cert: Option<PeerIdentity>,
}

impl Entry<'_> {
    fn facts(&self) -> UpstreamFacts<'_> {
        UpstreamFacts {
            cluster: self.cluster,
            host: self.host,
            cert: self.upstream_cert.as_ref(),
            flags: self.flags,
        }
    }

    /// Tells the sessions the upstream is known (connected, or not).
    fn upstream_known(&mut self) {
        if let Some(sessions) = self.sessions.take() {
            sessions.upstream(&self.facts());
            self.sessions = Some(sessions);
        }
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Some(sessions) = self.sessions.take() {
            let facts = UpstreamFacts {
                cluster: self.cluster,
                host: self.host,
                cert: self.upstream_cert.as_ref(),
                flags: self.flags,
            };
            sessions.close(&facts);
        }
        if self.proxy.access_logs.is_empty() {
            return;
        }
        let f = self.facts;
        let elapsed = f.started.elapsed();
        let mut r = Record::new(SystemTime::now() - elapsed, f.local, f.peer);
        r.duration = Some(elapsed);
        r.flags = self.flags;
        r.transport_failure = self.failure.as_deref();
        r.bytes_received = self.received;
        r.bytes_sent = self.sent;
        r.upstream_cluster = self.cluster;
        r.upstream_host = self.host;
        r.upstream_local = self.upstream_local;
        r.server_name = f.server_name;
        r.peer_uri_san = f.peer_uri_san.as_deref();
        r.local_uri_san = f.local_uri_san.as_deref();
        strait_access_log::write_all(&self.shared.http.access_logs, &self.proxy.access_logs, &r);
    }
}

/// Proxies `stream` per `proxy` until both directions close, then writes
/// the proxy's access logs.
pub(crate) async fn serve(
    stream: Down,
    proxy: &TcpProxy,
    shared: &Context,
    stats: &TcpStats,
    facts: &ConnFacts<'_>,
    sessions: Option<&mut Sessions>,
) {
    let dst = facts.local;
    // The sessions' counters, when there are sessions: they read them
    // while the splice runs.
    let counters = sessions
        .as_ref()
        .map_or_else(Arc::default, |s| Arc::clone(&s.counters));
    let mut entry = Entry {
        proxy,
        shared,
        facts,
        cluster: None,
        host: None,
        upstream_local: None,
        flags: "",
        failure: None,
        received: 0,
        sent: 0,
        sessions,
        upstream_cert: None,
    };
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
    entry.cluster = Some(name);
    let Some(cluster) = shared.http.registry.get(name) else {
        stats.no_route.increment(1);
        entry.flags = "NC";
        entry.upstream_known();
        return;
    };
    let host = if matches!(cluster.spec().discovery, Discovery::OriginalDst { .. }) {
        cluster.original_dst_host(dst)
    } else {
        let Some(host) = cluster.pick() else {
            entry.flags = "UH";
            entry.upstream_known();
            return;
        };
        host
    };
    entry.host = Some(host.addr());
    let upstream = match cluster.connect_tcp(&host).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(cluster = name, error = %e, "tcp proxy upstream connect failed");
            // Envoy's TCP proxy makes one attempt (`max_connect_attempts`)
            // and reports its limit reached with the failure.
            entry.flags = "UF,URX";
            entry.failure = e.transport_failure_reason();
            entry.upstream_known();
            return;
        }
    };
    entry.upstream_local = match &upstream {
        MaybeTls::Plain(s) => s.local_addr().ok(),
        MaybeTls::Tls(s) => s.get_ref().0.local_addr().ok(),
    };
    if entry.sessions.is_some()
        && let MaybeTls::Tls(s) = &upstream
    {
        entry.upstream_cert = PeerChain::of_upstream(s).map(|p| p.identity());
    }
    // The cluster's filters (Istio's TCP metadata exchange) go on before
    // the sessions hear of the upstream: a session then knows whether a
    // peer is to come.
    let spec = cluster.spec();
    let upstream = if spec.filters.is_empty() {
        Up::Direct(upstream)
    } else {
        let alpn: Option<Vec<u8>> = match &upstream {
            MaybeTls::Tls(s) => s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
            MaybeTls::Plain(_) => None,
        };
        let mut scratch = http::Extensions::new();
        let state = match entry.sessions.as_deref_mut() {
            Some(s) => &mut s.state,
            None => &mut scratch,
        };
        let mut io: BoxIo = Box::new(upstream);
        for config in &spec.filters {
            let Some(filter) = shared.upstream_filters.get(config.type_url()) else {
                // The front end only accepts filters the composition
                // registers; a missing one is a composition bug, and the
                // connection is not served without it.
                tracing::warn!(
                    cluster = name,
                    filter = config.type_url(),
                    "no cluster filter registered; connection closed"
                );
                entry.flags = "UF";
                entry.upstream_known();
                return;
            };
            io = filter.wrap(config, alpn.as_deref(), io, state);
        }
        Up::Wrapped(io)
    };
    drop(spec);
    entry.upstream_known();
    let idle = proxy.idle_timeout;
    let result = match (stream, upstream) {
        (Down::Direct(MaybeTls::Plain(rewind)), Up::Direct(MaybeTls::Plain(mut upstream))) => {
            // Send what the listener filters read (e.g. a ClientHello for
            // TLS passthrough), then splice the sockets directly.
            let (prefix, stream) = rewind.into_parts();
            match upstream.write_all(&prefix).await {
                Ok(()) => {
                    counters
                        .sent
                        .fetch_add(prefix.len() as u64, Ordering::Relaxed);
                    splice(stream, upstream, idle, Arc::clone(&counters)).await
                }
                Err(e) => Err(e),
            }
        }
        // TLS on either side, or a filter on the bytes: the generic splice
        // (the downstream replays what the listener filters read by
        // itself).
        (Down::Direct(down), Up::Direct(up)) => {
            splice_io(down, up, idle, Arc::clone(&counters)).await
        }
        (Down::Direct(down), Up::Wrapped(up)) => {
            splice_io(down, up, idle, Arc::clone(&counters)).await
        }
        (Down::Wrapped(down), Up::Direct(up)) => {
            splice_io(down, up, idle, Arc::clone(&counters)).await
        }
        (Down::Wrapped(down), Up::Wrapped(up)) => {
            splice_io(down, up, idle, Arc::clone(&counters)).await
        }
    };
    let up = counters.sent.load(Ordering::Relaxed);
    let down = counters.received.load(Ordering::Relaxed);
    stats.rx_bytes.increment(up);
    stats.tx_bytes.increment(down);
    entry.received = up;
    entry.sent = down;
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
