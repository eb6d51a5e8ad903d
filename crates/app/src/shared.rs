//! The state every connection on every worker shares.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use strait_net::BoundListeners;

use crate::{
    ClusterRegistry, Store,
    extensions::Extensions,
    stats::{StatsRecorder, TcpStats},
};

/// State shared by every connection on every worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) registry: Arc<ClusterRegistry>,
    /// The HTTP path's view of the same store and registry.
    pub(crate) http: Arc<strait_http::Shared>,
    pub(crate) bound: Arc<BoundListeners>,
    pub(crate) stats: StatsRecorder,
    /// The HTTP and network filters the proxy can build, by type URL.
    pub(crate) filters: Arc<Extensions>,
    tcp_stats: ArcSwap<HashMap<String, Arc<TcpStats>>>,
    /// Open downstream connections on listeners that do not
    /// `ignore_global_conn_limit`, against `max_downstream_connections`.
    pub(crate) downstream_cx: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub(crate) fn new(stats: StatsRecorder, filters: Extensions) -> Self {
        let store = Arc::new(Store::new());
        let registry = Arc::new(ClusterRegistry::new(Arc::clone(&stats.recorder)));
        Shared {
            http: Arc::new(strait_http::Shared::new(
                Arc::clone(&store),
                Arc::clone(&registry),
                Arc::clone(&stats.recorder),
            )),
            store,
            registry,
            bound: BoundListeners::new(),
            stats,
            filters: Arc::new(filters),
            tcp_stats: ArcSwap::default(),
            downstream_cx: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs `make` with the proxy's recorder as the one the `metrics` macros
    /// register with, on this thread only: the handles it makes count into
    /// this proxy's stats wherever they are used later.
    pub(crate) fn register<T>(&self, make: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.stats.recorder, make)
    }

    /// Stat handles for a TCP proxy's `stat_prefix`, registered on first
    /// use. One lock-free lookup per connection.
    pub(crate) fn tcp_stats(&self, prefix: &str) -> Arc<TcpStats> {
        if let Some(s) = self.tcp_stats.load().get(prefix) {
            return Arc::clone(s);
        }
        let made = Arc::new(self.register(|| TcpStats::new(prefix)));
        self.tcp_stats.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(prefix.to_owned())
                .or_insert_with(|| Arc::clone(&made));
            m
        });
        self.tcp_stats.load().get(prefix).cloned().unwrap_or(made)
    }
}
