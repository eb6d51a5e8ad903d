//! The state the proxy's parts share.

use std::sync::Arc;

use strait_net::BoundListeners;

use crate::{ClusterRegistry, Store, extensions::Extensions, stats::StatsRecorder};

/// State shared by the config writer, the listeners and the admin server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) registry: Arc<ClusterRegistry>,
    /// What every accepted connection shares (the same store and registry).
    pub(crate) conn: Arc<strait_listener::Context>,
    pub(crate) bound: Arc<BoundListeners>,
    /// The HTTP and network filters the proxy can build, by type URL.
    pub(crate) filters: Arc<Extensions>,
}

impl Shared {
    pub(crate) fn new(stats: StatsRecorder, filters: Extensions) -> Self {
        let store = Arc::new(Store::new());
        let registry = Arc::new(ClusterRegistry::new(Arc::clone(&stats.recorder)));
        Shared {
            conn: Arc::new(strait_listener::Context::new(
                Arc::clone(&store),
                Arc::clone(&registry),
                Arc::clone(&stats.recorder),
            )),
            store,
            registry,
            bound: BoundListeners::new(),
            filters: Arc::new(filters),
        }
    }

    /// Runs `make` with the proxy's recorder as the one the `metrics` macros
    /// register with, on this thread only.
    pub(crate) fn register<T>(&self, make: impl FnOnce() -> T) -> T {
        self.conn.register(make)
    }
}
