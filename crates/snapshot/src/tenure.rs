//! How long a filter chain lives, and which chain a connection is on.
//!
//! Envoy keeps a connection on the filter chain it was accepted with. When a
//! listener update keeps that chain (same spec), the connection goes on,
//! reading routes from the newest config; when the update removes or changes
//! the chain, the connection is drained and finishes on the chain it had.
//! Strait does the same: every compiled chain carries a [`Tenure`], shared by
//! the chains of later snapshots with the same spec and ended (signalled)
//! when a snapshot without it is published. One difference, on purpose: a
//! chain whose only change is its inline route table is the same chain, as
//! a chain whose RDS routes changed is in both (requests read routes from
//! the live snapshot, so nothing read at accept time differs). A connection holds a
//! [`ChainRef`]: the listener entry it was accepted on and its chain's index
//! there, and follows its chain into newer entries by the tenure's identity.

use std::sync::Arc;

use strait_model::{FilterChain, NetworkFilter, RouteSource};
use tokio::sync::watch;

use crate::{ChainEntry, ListenerEntry};

/// The life of one filter chain across snapshots: shared by every compiled
/// copy of the chain with the same spec, ended when a published snapshot no
/// longer has it. Compared by identity.
#[derive(Debug, Clone)]
pub struct Tenure(Arc<watch::Sender<bool>>);

impl Tenure {
    pub(crate) fn new() -> Self {
        Tenure(Arc::new(watch::Sender::new(false)))
    }

    /// Ends the chain's life: connections on it drain.
    pub(crate) fn end(&self) {
        self.0.send_replace(true);
    }

    pub fn is_ended(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the chain has left the live config. Holding the
    /// future does not keep the chain alive.
    pub fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|ended| *ended).await;
        }
    }

    pub fn same(&self, other: &Tenure) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A connection's filter chain: the listener entry it was accepted on and
/// the chain's index there.
#[derive(Debug, Clone)]
pub struct ChainRef {
    entry: Arc<ListenerEntry>,
    index: usize,
}

impl ChainRef {
    /// Chain `index` of `entry`; `None` when it has no such chain.
    pub fn new(entry: Arc<ListenerEntry>, index: usize) -> Option<ChainRef> {
        (index < entry.chains.len()).then_some(ChainRef { entry, index })
    }

    pub fn entry(&self) -> &Arc<ListenerEntry> {
        &self.entry
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The chain's spec and compiled entry.
    pub fn get(&self) -> (&FilterChain, &ChainEntry) {
        self.entry
            .chain(self.index)
            .expect("ChainRef::new checked the index")
    }

    pub fn tenure(&self) -> &Tenure {
        &self.entry.chains[self.index].tenure
    }

    /// The index of this chain in `current` (a newer entry of the same
    /// listener), or `None` when `current` no longer has it. A pointer
    /// comparison per chain: no spec is compared per request.
    pub fn follow(&self, current: &ListenerEntry) -> Option<usize> {
        let tenure = self.tenure();
        current.chains.iter().position(|c| c.tenure.same(tenure))
    }
}

/// The tenures of `old`'s chains, each given at most once to a chain of the
/// new listener with the same spec (the same index first, as most updates
/// keep the order).
pub(crate) struct Carried<'a> {
    old: Option<&'a ListenerEntry>,
    specs: Vec<&'a FilterChain>,
    taken: Vec<bool>,
}

impl<'a> Carried<'a> {
    pub(crate) fn from(old: Option<&'a ListenerEntry>) -> Self {
        let specs: Vec<_> = old.map(|o| o.spec.chains().collect()).unwrap_or_default();
        let taken = vec![false; specs.len()];
        Carried { old, specs, taken }
    }

    /// The tenure for new chain `i` with spec `spec`: the old chain's with
    /// the same spec, else a new one.
    pub(crate) fn tenure(&mut self, i: usize, spec: &FilterChain) -> Tenure {
        let Some(old) = self.old else {
            return Tenure::new();
        };
        let free = |j: usize| !self.taken[j] && same_chain(self.specs[j], spec);
        let found = (i < self.specs.len() && free(i))
            .then_some(i)
            .or_else(|| (0..self.specs.len()).find(|&j| free(j)));
        match found {
            Some(j) => {
                self.taken[j] = true;
                old.chains[j].tenure.clone()
            }
            None => Tenure::new(),
        }
    }
}

/// Whether connections accepted on `old` may go on under `new`: equal specs,
/// except that inline route tables may differ. Whatever a connection reads
/// once (match, TLS, network filters, codec settings, HTTP filters) must be
/// equal.
fn same_chain(old: &FilterChain, new: &FilterChain) -> bool {
    match (&old.terminal, &new.terminal) {
        (NetworkFilter::Http(a), NetworkFilter::Http(b))
            if matches!(
                (&a.route_config, &b.route_config),
                (RouteSource::Inline(_), RouteSource::Inline(_))
            ) && a.route_config != b.route_config =>
        {
            let FilterChain {
                name,
                matcher,
                tls,
                handshake_timeout,
                read_filters,
                terminal: _,
            } = old;
            let mut routes_as_new = a.clone();
            routes_as_new.route_config = b.route_config.clone();
            *name == new.name
                && *matcher == new.matcher
                && *tls == new.tls
                && *handshake_timeout == new.handshake_timeout
                && *read_filters == new.read_filters
                && routes_as_new == *b
        }
        _ => old == new,
    }
}

/// The tenures of `old`'s chains that `new` does not carry.
pub(crate) fn ending(old: &ListenerEntry, new: Option<&ListenerEntry>) -> Vec<Tenure> {
    old.chains
        .iter()
        .filter(|c| !new.is_some_and(|n| n.chains.iter().any(|k| k.tenure.same(&c.tenure))))
        .map(|c| c.tenure.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{ChainRef, Snapshot, Store};

    /// Listener `l` with one TCP chain per (server name, cluster) pair.
    fn config(chains: &[(&str, &str)]) -> strait_model::Config {
        let chains: String = chains
            .iter()
            .map(|(sni, cluster)| {
                format!(
                    r#"
    - filter_chain_match: {{server_names: ["{sni}"]}}
      filters: [{{name: t, typed_config: {{
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy,
        stat_prefix: t, cluster: {cluster}}}}}]"#
                )
            })
            .collect();
        let yaml = format!(
            r#"
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:{chains}
  clusters:
  - {{name: a, type: STATIC, connect_timeout: 1s}}
  - {{name: b, type: STATIC, connect_timeout: 1s}}
"#
        );
        strait_envoy::load(&yaml).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn publish(store: &Store, version: u64, chains: &[(&str, &str)]) -> Arc<Snapshot> {
        let next = Snapshot::compile(
            version,
            config(chains),
            serde_json::Value::Null,
            &store.load(),
        )
        .expect("compiles");
        store.publish(next);
        store.load()
    }

    #[test]
    fn a_kept_chain_is_followed_and_a_dropped_one_ends_at_publish() {
        let store = Store::new();
        let s1 = publish(&store, 1, &[("x", "a"), ("y", "a"), ("z", "a")]);
        let entry = Arc::clone(s1.listener("l").expect("l"));
        let on = |i| ChainRef::new(Arc::clone(&entry), i).expect("chain");
        let (x, y, z) = (on(0), on(1), on(2));
        assert!(ChainRef::new(Arc::clone(&entry), 3).is_none());

        // `y` changes its cluster, `x` moves to the end, `z` stays.
        let s2 = publish(&store, 2, &[("z", "a"), ("y", "b"), ("x", "a")]);
        let live = s2.listener("l").expect("l");
        assert!(!Arc::ptr_eq(live, &entry));
        assert_eq!(x.follow(live), Some(2), "x is followed to its new index");
        assert_eq!(z.follow(live), Some(0));
        assert_eq!(y.follow(live), None, "a changed chain is a new chain");
        assert!(y.tenure().is_ended(), "its connections drain");
        assert!(!x.tenure().is_ended() && !z.tenure().is_ended());

        // An unchanged config shares the entry: nothing ends.
        let s3 = publish(&store, 3, &[("z", "a"), ("y", "b"), ("x", "a")]);
        assert!(Arc::ptr_eq(s3.listener("l").expect("l"), live));
        let new_y = ChainRef::new(Arc::clone(live), 1).expect("y");
        assert!(!new_y.tenure().is_ended());

        // A compiled but unpublished snapshot ends nothing.
        let _unpublished =
            Snapshot::compile(4, config(&[("q", "b")]), serde_json::Value::Null, &s3)
                .expect("compiles");
        assert!(!new_y.tenure().is_ended());
        assert!(!x.tenure().is_ended());
    }

    #[tokio::test]
    async fn the_end_wakes_a_waiting_connection() {
        let store = Store::new();
        let s1 = publish(&store, 1, &[("x", "a")]);
        let chain = ChainRef::new(Arc::clone(s1.listener("l").expect("l")), 0).expect("x");
        let ended = tokio::spawn(chain.tenure().ended());
        drop(s1);
        publish(&store, 2, &[("x", "b")]);
        tokio::time::timeout(std::time::Duration::from_secs(5), ended)
            .await
            .expect("woken")
            .expect("task");
    }
}
