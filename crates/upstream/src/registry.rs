//! The registry of live clusters, reconciled by name on every config change.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use metrics::Recorder;
use strait_model as model;
use strait_tls::ClusterTransports;

use crate::{cluster::Cluster, stats::StatsRecorder, upkeep};

/// Live clusters by name. Readers take a lock-free view per request; the one
/// config writer calls [`ClusterRegistry::reconcile`].
#[derive(Debug)]
pub struct ClusterRegistry {
    clusters: ArcSwap<HashMap<String, Arc<Cluster>>>,
    recorder: StatsRecorder,
}

impl ClusterRegistry {
    /// An empty registry whose clusters register their stats with
    /// `recorder` (the proxy's own, so proxies in one process keep apart).
    pub fn new(recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        ClusterRegistry {
            clusters: ArcSwap::default(),
            recorder: StatsRecorder(recorder),
        }
    }

    /// Runs `make` with the proxy's stats recorder as the one the
    /// `metrics` macros register with (on this thread only), for a data
    /// filter that makes stat handles after start-up, such as on a
    /// per-route config's first request.
    pub fn register<T>(&self, make: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder.0, make)
    }

    /// The live cluster named `name`. No lock; one atomic load and a hash.
    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.load().get(name).cloned()
    }

    /// All live clusters, for `/clusters` and stats.
    pub fn all(&self) -> Vec<Arc<Cluster>> {
        let mut v: Vec<_> = self.clusters.load().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Adds new clusters and updates changed ones in place, keeping the live
    /// state of every cluster that is still configured. Clusters no longer
    /// configured stay until [`ClusterRegistry::retain`] is called after the
    /// new snapshot is live, so a request on the old snapshot still finds them.
    /// `tls` gives each cluster's compiled transport sockets (from the
    /// snapshot being published). Must be called within a tokio runtime
    /// (DNS clusters spawn resolvers).
    pub async fn reconcile(
        &self,
        specs: &[model::Cluster],
        tls: &(dyn Fn(&str) -> ClusterTransports + Sync),
    ) {
        let current = self.clusters.load_full();
        let mut next: HashMap<String, Arc<Cluster>> = (*current).clone();
        for spec in specs {
            match current.get(&spec.name) {
                Some(live) => live.update(spec, tls(&spec.name)).await,
                None => {
                    next.insert(
                        spec.name.clone(),
                        upkeep::start(spec, tls(&spec.name), &self.recorder).await,
                    );
                }
            }
        }
        self.clusters.store(Arc::new(next));
    }

    /// Drops clusters not named in `specs`; their pools close as the last
    /// in-flight request releases them.
    pub fn retain(&self, specs: &[model::Cluster]) {
        let current = self.clusters.load_full();
        if current.keys().all(|k| specs.iter().any(|s| &s.name == k)) {
            return;
        }
        let next = current
            .iter()
            .filter(|(k, _)| specs.iter().any(|s| &s.name == *k))
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (name, cluster) in current.iter() {
            if !specs.iter().any(|s| &s.name == name) {
                cluster.stop();
            }
        }
        self.clusters.store(Arc::new(next));
    }
}
