//! What every connection of every listener shares: the config store, the
//! live clusters, and the connection managers' stat handles.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use strait_snapshot::Store;
use strait_upstream::ClusterRegistry;

use crate::stats::HttpStats;

/// The process-wide state the HTTP path reads. Cheap to share (`Arc`);
/// nothing in it is locked on the request path.
pub struct Shared {
    /// The one config snapshot requests read.
    pub store: Arc<Store>,
    /// Live clusters (hosts, pools, health), outliving snapshots.
    pub registry: Arc<ClusterRegistry>,
    /// The proxy's stats recorder: connection-manager handles register
    /// with it, never with a process-wide one.
    recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    http_stats: ArcSwap<HashMap<String, Arc<HttpStats>>>,
    /// Where every access log of the proxy writes (HTTP, TCP proxy and
    /// listener logs), and its writer thread.
    pub access_logs: Arc<strait_access_log::LogFiles>,
    /// The span exporters of every connection manager's tracer.
    pub tracers: Arc<strait_trace::Exporters>,
}

impl Shared {
    pub fn new(
        store: Arc<Store>,
        registry: Arc<ClusterRegistry>,
        recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    ) -> Self {
        Shared {
            store,
            tracers: Arc::new(strait_trace::Exporters::new(
                Arc::clone(&registry),
                Arc::clone(&recorder),
            )),
            registry,
            access_logs: Arc::new(strait_access_log::LogFiles::new(&*recorder)),
            recorder,
            http_stats: ArcSwap::default(),
        }
    }

    /// Stat handles for a connection manager's `stat_prefix`, registered on
    /// first use. One lock-free lookup per connection.
    pub fn http_stats(&self, prefix: &str) -> Arc<HttpStats> {
        if let Some(s) = self.http_stats.load().get(prefix) {
            return Arc::clone(s);
        }
        let made = Arc::new(metrics::with_local_recorder(&*self.recorder, || {
            HttpStats::new(prefix)
        }));
        self.http_stats.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(prefix.to_owned())
                .or_insert_with(|| Arc::clone(&made));
            m
        });
        self.http_stats.load().get(prefix).cloned().unwrap_or(made)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}
