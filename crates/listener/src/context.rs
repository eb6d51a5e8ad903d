//! What every connection of every listener shares.

use std::{collections::HashMap, sync::Arc, sync::atomic::AtomicU64};

use arc_swap::ArcSwap;
use strait_model::extension::ByTypeUrl;
use strait_snapshot::Store;
use strait_upstream::ClusterRegistry;

use crate::{stats::TcpStats, stream::UpstreamFilter};

/// The state the connections of every listener share: the config store,
/// the live clusters, the HTTP path's state, the TCP proxies' stat handles
/// and the global connection count. Nothing in it is locked per connection.
pub struct Context {
    /// The HTTP path's state, which holds the config store and the live
    /// clusters every connection reads.
    pub http: Arc<strait_http::Shared>,
    /// The proxy's stats recorder: handles made here register with it.
    recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    tcp_stats: ArcSwap<HashMap<String, Arc<TcpStats>>>,
    /// Open downstream connections on listeners that do not
    /// `ignore_global_conn_limit`, against `max_downstream_connections`.
    pub(crate) downstream_cx: AtomicU64,
    /// Cluster filters by type URL, run by the TCP proxy.
    pub(crate) upstream_filters: ByTypeUrl<dyn UpstreamFilter>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        store: Arc<Store>,
        registry: Arc<ClusterRegistry>,
        recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    ) -> Self {
        Context {
            http: Arc::new(strait_http::Shared::new(
                store,
                registry,
                Arc::clone(&recorder),
            )),
            recorder,
            tcp_stats: ArcSwap::default(),
            downstream_cx: AtomicU64::new(0),
            upstream_filters: ByTypeUrl::default(),
        }
    }

    /// The cluster filters the TCP proxy runs
    /// ([`crate::NetworkFilterRegistry::upstream_filters`]).
    pub fn with_upstream_filters(mut self, filters: ByTypeUrl<dyn UpstreamFilter>) -> Self {
        self.upstream_filters = filters;
        self
    }

    /// Runs `make` with the proxy's recorder as the one the `metrics`
    /// macros register with, on this thread only: the handles it makes
    /// count into this proxy's stats wherever they are used later.
    pub fn register<T>(&self, make: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, make)
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
