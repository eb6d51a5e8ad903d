//! What every connection of every listener shares: the config store, the
//! live clusters, and the connection managers' stat handles.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use strait_snapshot::Store;
use strait_upstream::ClusterRegistry;

use crate::stats::HttpStats;

/// The process-wide state the HTTP path reads. Cheap to share (`Arc`);
/// nothing in it is locked on the request path.
#[derive(Debug)]
pub struct Shared {
    /// The one config snapshot requests read.
    pub store: Arc<Store>,
    /// Live clusters (hosts, pools, health), outliving snapshots.
    pub registry: Arc<ClusterRegistry>,
    http_stats: ArcSwap<HashMap<String, Arc<HttpStats>>>,
}

impl Shared {
    pub fn new(store: Arc<Store>, registry: Arc<ClusterRegistry>) -> Self {
        Shared {
            store,
            registry,
            http_stats: ArcSwap::default(),
        }
    }

    /// Stat handles for a connection manager's `stat_prefix`, registered on
    /// first use. One lock-free lookup per connection.
    pub fn http_stats(&self, prefix: &str) -> Arc<HttpStats> {
        if let Some(s) = self.http_stats.load().get(prefix) {
            return Arc::clone(s);
        }
        let made = Arc::new(HttpStats::new(prefix));
        self.http_stats.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(prefix.to_owned())
                .or_insert_with(|| Arc::clone(&made));
            m
        });
        self.http_stats.load().get(prefix).cloned().unwrap_or(made)
    }
}
