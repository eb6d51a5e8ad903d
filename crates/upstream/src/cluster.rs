//! One live cluster: its hosts, round-robin position, and stats.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram};
use strait_codec::Protocol;
use strait_config::model::{self, Discovery, UpstreamProtocol};
use tokio::sync::Notify;

use crate::pool::Pool;

/// A live cluster. Its spec may be replaced by [`Cluster::update`]; hosts that
/// survive an update keep their pooled connections.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    spec: ArcSwap<model::Cluster>,
    hosts: ArcSwap<HostSet>,
    next: AtomicUsize,
    /// Wakes the DNS resolver early when the spec changes.
    refresh: Notify,
    stopped: AtomicBool,
    pub(crate) stats: ClusterStats,
}

/// One upstream address and its connection pool.
#[derive(Debug)]
pub struct Host {
    addr: SocketAddr,
    weight: u32,
    pub(crate) pool: Pool,
}

#[derive(Debug, Default)]
struct HostSet {
    hosts: Vec<Arc<Host>>,
    /// Host indices repeated by weight: a pick is one index into this, so
    /// weighted round robin costs one atomic increment.
    schedule: Vec<u32>,
}

/// Envoy's per-cluster counters, with Envoy's names as Prometheus renders them.
#[derive(Debug)]
pub(crate) struct ClusterStats {
    pub(crate) cx_total: Counter,
    pub(crate) cx_connect_fail: Counter,
    pub(crate) cx_connect_timeout: Counter,
    pub(crate) rq_total: Counter,
    pub(crate) rq_timeout: Counter,
    pub(crate) rq_class: [Counter; 5],
    pub(crate) rq_time: Histogram,
    pub(crate) no_healthy: Counter,
    /// Shared with every connection's byte counter; an `Arc` of its own so a
    /// live connection never keeps the whole cluster alive.
    pub(crate) bytes: Arc<ByteStats>,
}

/// `upstream_cx_rx_bytes_total` / `upstream_cx_tx_bytes_total`.
#[derive(Debug)]
pub(crate) struct ByteStats {
    rx: Counter,
    tx: Counter,
}

impl strait_codec::ByteCounter for ByteStats {
    fn received(&self, bytes: u64) {
        self.rx.increment(bytes);
    }
    fn sent(&self, bytes: u64) {
        self.tx.increment(bytes);
    }
}

impl ClusterStats {
    fn new(name: &str) -> Self {
        let label = ("envoy_cluster_name", name.to_owned());
        let c = |n: &'static str| metrics::counter!(n, std::slice::from_ref(&label));
        let class = |k: &'static str| {
            metrics::counter!(
                "envoy_cluster_upstream_rq_xx",
                &[label.clone(), ("envoy_response_code_class", k.to_owned())]
            )
        };
        ClusterStats {
            cx_total: c("envoy_cluster_upstream_cx_total"),
            cx_connect_fail: c("envoy_cluster_upstream_cx_connect_fail"),
            cx_connect_timeout: c("envoy_cluster_upstream_cx_connect_timeout"),
            rq_total: c("envoy_cluster_upstream_rq_total"),
            rq_timeout: c("envoy_cluster_upstream_rq_timeout"),
            rq_class: [class("1"), class("2"), class("3"), class("4"), class("5")],
            rq_time: metrics::histogram!(
                "envoy_cluster_upstream_rq_time",
                std::slice::from_ref(&label)
            ),
            no_healthy: c("envoy_cluster_upstream_cx_none_healthy"),
            bytes: Arc::new(ByteStats {
                rx: c("envoy_cluster_upstream_cx_rx_bytes_total"),
                tx: c("envoy_cluster_upstream_cx_tx_bytes_total"),
            }),
        }
    }
}

impl Host {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Idle pooled HTTP/1.1 connections (for `/clusters` and tests).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_len()
    }
}

impl Cluster {
    /// Starts a live cluster. STATIC hosts are ready at once; STRICT_DNS
    /// clusters resolve once before returning (Envoy warms a cluster before
    /// using it) and then refresh in the background.
    pub(crate) async fn start(spec: &model::Cluster) -> Arc<Cluster> {
        let cluster = Arc::new(Cluster {
            name: spec.name.clone(),
            spec: ArcSwap::from_pointee(spec.clone()),
            hosts: ArcSwap::from_pointee(HostSet::default()),
            next: AtomicUsize::new(0),
            refresh: Notify::new(),
            stopped: AtomicBool::new(false),
            stats: ClusterStats::new(&spec.name),
        });
        cluster.resolve().await;
        if matches!(spec.discovery, Discovery::StrictDns { .. }) {
            tokio::spawn(refresh_loop(Arc::downgrade(&cluster)));
        }
        cluster
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds bytes moved on a connection this cluster does not drive itself
    /// (the TCP proxy's splice).
    pub fn count_bytes(&self, received: u64, sent: u64) {
        use strait_codec::ByteCounter;
        self.stats.bytes.received(received);
        self.stats.bytes.sent(sent);
    }

    /// The spec currently in force.
    pub fn spec(&self) -> Arc<model::Cluster> {
        self.spec.load_full()
    }

    pub(crate) fn protocol(&self) -> Protocol {
        match self.spec.load().protocol {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2 => Protocol::Http2,
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.spec.load().connect_timeout
    }

    /// The hosts as of now.
    pub fn hosts(&self) -> Vec<Arc<Host>> {
        self.hosts.load().hosts.clone()
    }

    /// Picks the next host by weighted round robin; `None` when the cluster
    /// has no hosts (Envoy's "no healthy upstream").
    pub fn pick(&self) -> Option<Arc<Host>> {
        let set = self.hosts.load();
        if set.schedule.is_empty() {
            self.stats.no_healthy.increment(1);
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % set.schedule.len();
        set.hosts.get(set.schedule[i] as usize).cloned()
    }

    /// Applies a changed spec, keeping hosts (and pools) that remain.
    pub(crate) async fn update(&self, spec: &model::Cluster) {
        let old = self.spec.load_full();
        if *old == *spec {
            return;
        }
        let protocol_changed = old.protocol != spec.protocol;
        self.spec.store(Arc::new(spec.clone()));
        if protocol_changed {
            for h in &self.hosts.load().hosts {
                h.pool.clear();
            }
        }
        self.resolve().await;
        self.refresh.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.refresh.notify_one();
    }

    /// Resolves the spec's endpoints into hosts and swaps them in.
    async fn resolve(&self) {
        let spec = self.spec.load_full();
        let mut addrs: Vec<(SocketAddr, u32)> = Vec::new();
        for ep in &spec.endpoints {
            if let Ok(ip) = ep.host.parse::<IpAddr>() {
                addrs.push((SocketAddr::new(ip, ep.port), ep.weight));
                continue;
            }
            match tokio::net::lookup_host((ep.host.as_str(), ep.port)).await {
                Ok(found) => addrs.extend(
                    by_family(found.collect(), &spec.discovery)
                        .into_iter()
                        .map(|a| (a, ep.weight)),
                ),
                Err(e) => {
                    tracing::warn!(cluster = %self.name, host = %ep.host, error = %e, "DNS resolution failed");
                    // Keep the last good hosts for this name rather than
                    // dropping traffic on a transient resolver failure.
                    let current = self.hosts.load();
                    addrs.extend(
                        current
                            .hosts
                            .iter()
                            .filter(|h| h.addr.port() == ep.port)
                            .map(|h| (h.addr, h.weight)),
                    );
                }
            }
        }
        addrs.dedup();
        let current = self.hosts.load();
        let hosts: Vec<Arc<Host>> = addrs
            .iter()
            .map(|&(addr, weight)| {
                current
                    .hosts
                    .iter()
                    .find(|h| h.addr == addr && h.weight == weight)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Host {
                            addr,
                            weight,
                            pool: Pool::new(),
                        })
                    })
            })
            .collect();
        let unchanged = hosts.len() == current.hosts.len()
            && hosts
                .iter()
                .zip(&current.hosts)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return;
        }
        let schedule = schedule(&hosts);
        self.hosts.store(Arc::new(HostSet { hosts, schedule }));
    }
}

/// Envoy's `dns_lookup_family`: which resolved addresses become hosts.
fn by_family(found: Vec<SocketAddr>, discovery: &Discovery) -> Vec<SocketAddr> {
    use strait_config::model::DnsLookupFamily as F;
    let Discovery::StrictDns { lookup_family, .. } = discovery else {
        return found;
    };
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.into_iter().partition(SocketAddr::is_ipv4);
    match lookup_family {
        F::V4Only => v4,
        F::V6Only => v6,
        F::Auto if !v6.is_empty() => v6,
        F::Auto => v4,
        F::V4Preferred if !v4.is_empty() => v4,
        F::V4Preferred => v6,
        F::All => v6.into_iter().chain(v4).collect(),
    }
}

/// Interleaves host indices by weight (smooth weighted round robin), so that
/// a heavy host is not picked many times in a row.
fn schedule(hosts: &[Arc<Host>]) -> Vec<u32> {
    let weights: Vec<u64> = hosts.iter().map(|h| u64::from(h.weight.max(1))).collect();
    let all_equal = weights.windows(2).all(|w| w[0] == w[1]);
    if all_equal {
        return (0..hosts.len() as u32).collect();
    }
    let total: u64 = weights.iter().sum();
    // Bound the table: weights are scaled down if their sum is huge.
    let scale = (total / 10_000).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| (w / scale).max(1) as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

async fn refresh_loop(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if c.stopped.load(Ordering::Relaxed) {
            return;
        }
        let every = match c.spec.load().discovery {
            Discovery::StrictDns { refresh_rate, .. } => refresh_rate,
            Discovery::Static => return,
        };
        // A removed cluster is stopped and notified, so this wakes and ends.
        let _ = tokio::time::timeout(every, c.refresh.notified()).await;
        if c.stopped.load(Ordering::Relaxed) {
            return;
        }
        c.resolve().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(w: u32) -> Arc<Host> {
        Arc::new(Host {
            addr: "127.0.0.1:1".parse().expect("addr"),
            weight: w,
            pool: Pool::new(),
        })
    }

    #[test]
    fn schedule_honours_weights_and_interleaves() {
        let s = schedule(&[host(3), host(1)]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        let s = schedule(&[host(1), host(1), host(1)]);
        assert_eq!(s, vec![0, 1, 2]);
        let s = schedule(&[host(5), host(5), host(1)]);
        assert_ne!(s[0], s[1], "smooth schedule alternates heavy hosts: {s:?}");
    }
}
