//! The cache every source writes through: the ADS stream, each gRPC SDS
//! stream and each SDS file. One lock serialises them, so every update is
//! judged (and published) against the config the previous one left; the
//! hot path never sees it (it reads snapshots).

use std::collections::{BTreeMap, BTreeSet};

use strait_model::{self as model, secret::SecretSource};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::{Cache, Publish, stats::Stats};

/// What SDS sources must deliver: names by source.
pub(crate) type SourceNames = BTreeMap<SecretSource, BTreeSet<String>>;

pub(crate) struct Shared<P> {
    /// The bootstrap's config (immutable: where the ADS and SDS clusters
    /// are, the node).
    pub(crate) base: model::Config,
    cache: Mutex<Cache>,
    publisher: P,
    /// The secret names each dynamic source must deliver, following the
    /// accepted listeners and clusters.
    pub(crate) sources: watch::Sender<SourceNames>,
    pub(crate) stats: Stats,
}

impl<P: Publish> Shared<P> {
    pub(crate) fn new(base: model::Config, publisher: P, stats: Stats) -> Shared<P> {
        let cache = Cache::with_parsers(base.clone(), publisher.parsers());
        let sources = watch::Sender::new(cache.secret_sources());
        Shared {
            base,
            cache: Mutex::new(cache),
            publisher,
            sources,
            stats,
        }
    }

    /// The files the cached SDS secrets name, by secret.
    pub(crate) async fn secret_files(&self) -> BTreeMap<String, Vec<std::path::PathBuf>> {
        self.cache.lock().await.secret_files()
    }

    /// Applies `change` to a copy of the cache, prunes what is no longer
    /// named, and publishes the config it makes when that differs from the
    /// live one. The copy replaces the cache only when all of that
    /// succeeded, so a refused update leaves no trace. Returns the outcome
    /// (every problem, for a NACK) and the cache, still locked, for the
    /// caller's subscription bookkeeping.
    pub(crate) async fn update(
        &self,
        change: impl FnOnce(&mut Cache) -> Result<(), Vec<String>>,
    ) -> (Result<(), Vec<String>>, MutexGuard<'_, Cache>) {
        let mut cache = self.cache.lock().await;
        let mut candidate = cache.clone();
        let mut result = change(&mut candidate);
        if result.is_ok() {
            candidate.prune();
            let after = candidate.build();
            // A push that changes nothing live (a cluster still warming, the
            // same resources again after a reconnect) makes no new snapshot.
            if after != cache.build() {
                result = self
                    .publisher
                    .publish(after)
                    .await
                    .map(|_| ())
                    .map_err(|e| vec![e]);
            }
        }
        if result.is_ok() {
            *cache = candidate;
            self.publisher.record(std::sync::Arc::new(cache.dump()));
            let names = cache.secret_sources();
            self.sources.send_if_modified(|s| {
                let changed = *s != names;
                *s = names;
                changed
            });
        }
        (result, cache)
    }
}
