//! The cache every source writes through: the ADS stream, each gRPC SDS
//! stream and each SDS file. One lock serialises them, so every update is
//! judged (and published) against the config the previous one left; the
//! hot path never sees it (it reads snapshots).

use std::collections::{BTreeMap, BTreeSet};

use strait_model::{self as model, secret::SecretSource};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::{Cache, Kind, Outcome, Publish, stats::Stats};

/// What SDS sources must deliver: names by source.
pub(crate) type SourceNames = BTreeMap<SecretSource, BTreeSet<String>>;

pub(crate) struct Shared<P> {
    /// The bootstrap's config (immutable: where the ADS and SDS clusters
    /// are, the node).
    pub(crate) base: model::Config,
    cache: Mutex<Cache>,
    pub(crate) publisher: P,
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

    /// Applies `change` to a copy of the cache (resource by resource),
    /// prunes what is no longer named, and publishes the config it makes
    /// when that differs from the live one. When the writer refuses it
    /// naming a listener or cluster, the resource of this update to blame
    /// is put back as the live cache has it (rejected, with the writer's
    /// reason) and the rest is published again: one publish per round, and
    /// every round rejects at least one resource, so it ends. The copy
    /// replaces the cache once published; a refusal blamed on nothing this
    /// update changed (or an `Err` from `change`) leaves no trace. Returns
    /// the outcome (accepted and rejected resources; the rejected ones'
    /// problems make a NACK) and the cache, still locked, for the caller's
    /// subscription bookkeeping.
    pub(crate) async fn update(
        &self,
        change: impl FnOnce(&mut Cache) -> Result<Outcome, Vec<String>>,
    ) -> (Result<Outcome, Vec<String>>, MutexGuard<'_, Cache>) {
        let mut cache = self.cache.lock().await;
        let mut candidate = cache.clone();
        let mut outcome = match change(&mut candidate) {
            Ok(o) => o,
            Err(problems) => return (Err(problems), cache),
        };
        let live = cache.build();
        loop {
            candidate.prune();
            let after = candidate.build();
            // A push that changes nothing live (a cluster still warming, the
            // same resources again after a reconnect, every one rejected)
            // makes no new snapshot.
            if after == live {
                break;
            }
            let refusals = match self.publisher.publish(after).await {
                Ok(_) => break,
                Err(refusals) => refusals,
            };
            let mut blamed: BTreeMap<(Kind, String), Vec<String>> = BTreeMap::new();
            let mut whole = Vec::new();
            for r in refusals {
                let culprits = r
                    .subject
                    .as_ref()
                    .map(|s| candidate.culprits(&cache, s))
                    .unwrap_or_default();
                if culprits.is_empty() {
                    whole.push(r.message);
                    continue;
                }
                for (kind, name) in culprits {
                    let problem = format!("{} '{name}': {}", kind.label(), r.message);
                    blamed.entry((kind, name)).or_default().push(problem);
                }
            }
            if blamed.is_empty() {
                return (Err(whole), cache);
            }
            for ((kind, name), problems) in blamed {
                candidate.reject(&cache, kind, &name, problems, &mut outcome);
            }
        }
        candidate.settle_version(&cache, &outcome);
        *cache = candidate;
        self.publisher.record(std::sync::Arc::new(cache.dump()));
        let names = cache.secret_sources();
        self.sources.send_if_modified(|s| {
            let changed = *s != names;
            *s = names;
            changed
        });
        (Ok(outcome), cache)
    }
}
