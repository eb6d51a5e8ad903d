//! The state the proxy's parts share.

use std::sync::Arc;

use strait_net::BoundListeners;

use crate::{ClusterRegistry, Store, extensions::Extensions, stats::StatsRecorder};

/// State shared by the config writer, the listeners and the admin server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// What every accepted connection shares: among it the config store and
    /// the live clusters, which the writer and the admin server use too.
    pub(crate) conn: Arc<strait_listener::Context>,
    pub(crate) bound: Arc<BoundListeners>,
    /// The HTTP and network filters the proxy can build, by type URL.
    pub(crate) filters: Arc<Extensions>,
}

impl Shared {
    pub(crate) fn new(stats: StatsRecorder, mut filters: Extensions) -> Self {
        let clusters = Arc::new(ClusterRegistry::new(Arc::clone(&stats.recorder)));
        // Filters that call out (JWKS fetches) do it through the live
        // clusters, as the router does.
        filters.http.set_clusters(Arc::clone(&clusters));
        filters.network.set_clusters(Arc::clone(&clusters));
        Shared {
            conn: Arc::new(
                strait_listener::Context::new(
                    Arc::new(Store::new()),
                    clusters,
                    Arc::clone(&stats.recorder),
                )
                .with_upstream_filters(filters.network.upstream_filters()),
            ),
            bound: BoundListeners::new(),
            filters: Arc::new(filters),
        }
    }

    /// The one config store.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.conn.http.store
    }

    /// The live clusters.
    pub(crate) fn registry(&self) -> &Arc<ClusterRegistry> {
        &self.conn.http.registry
    }

    /// Runs `make` with the proxy's recorder as the one the `metrics` macros
    /// register with, on this thread only.
    pub(crate) fn register<T>(&self, make: impl FnOnce() -> T) -> T {
        self.conn.register(make)
    }
}
