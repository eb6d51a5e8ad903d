//! The config a request reads, and how it is replaced.
//!
//! Owns [`Snapshot`], the compiled, immutable, versioned config (listeners with
//! their compiled route tables, cluster specs, the source document for
//! `/config_dump`), and [`Store`], an `ArcSwap<Snapshot>` with a version watch.
//! A request loads one snapshot and reads everything from it, so it sees one
//! version, never a mix. Compilation happens in [`Snapshot::compile`], off the
//! hot path; a compile error leaves the store untouched.
//!
//! Filter-chain selection lives here too ([`ListenerEntry::select`]): it is
//! pure matching over the compiled listener.
//!
//! What belongs to crates above it (the HTTP filter chain of a connection
//! manager, whose filters come from a registry by type URL) is compiled
//! through a [`ChainCompiler`] the caller supplies, and kept opaque here.
//!
//! Depends on the model, `route`, and `tls`, which compiles TLS contexts
//! (reading certificate files) at compile time so a bad certificate refuses
//! the config; never on the Envoy front end or on I/O crates above it.

mod chains;
#[cfg(test)]
mod secret_tests;
mod tenure;

pub use chains::ConnectionInfo;
pub use tenure::{ChainRef, Tenure};

use std::{
    any::Any,
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use strait_model::{
    Cluster, Config, FilterChain, HttpConnectionManager, Listener, NetworkFilter, RouteSource,
    extension::Extension, tls::UpstreamTls,
};
use strait_route::RouteTable;
use strait_tls::{ClientTls, ClusterTransports, ServerTls, TlsError, TransportSource};

/// Why a config could not become a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("listener {listener}: route_config: {source}")]
    Route {
        listener: String,
        #[source]
        source: strait_route::RouteError,
    },
    /// A connection manager's HTTP filters could not be built.
    #[error("listener {listener}: http_filters: {message}")]
    HttpFilters { listener: String, message: String },
    /// A registered listener filter could not be built.
    #[error("listener {listener}: listener_filters: {message}")]
    ListenerFilter { listener: String, message: String },
    /// A registered network filter could not be built.
    #[error("listener {listener}: network filter: {message}")]
    NetworkFilter { listener: String, message: String },
    #[error("listener {listener}: filter chain {chain}: transport_socket: {source}")]
    ListenerTls {
        listener: String,
        chain: String,
        #[source]
        source: TlsError,
    },
    #[error("cluster {cluster}: {socket}: {source}")]
    ClusterTls {
        cluster: String,
        socket: TransportSource,
        #[source]
        source: TlsError,
    },
    /// A listener names an RDS route config the config does not hold. The
    /// xDS client holds such listeners back until it arrives (warming), so
    /// this is a bug upstream of the snapshot, or a static listener's.
    #[error("listener {listener}: rds route config '{route_config}' has not been received")]
    MissingRouteConfig {
        listener: String,
        route_config: String,
    },
}

/// What a [`SnapshotError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Listener(&'a str),
    Cluster(&'a str),
}

impl SnapshotError {
    /// The listener or cluster that failed to compile.
    pub fn owner(&self) -> Owner<'_> {
        match self {
            SnapshotError::Route { listener, .. }
            | SnapshotError::HttpFilters { listener, .. }
            | SnapshotError::ListenerFilter { listener, .. }
            | SnapshotError::NetworkFilter { listener, .. }
            | SnapshotError::ListenerTls { listener, .. }
            | SnapshotError::MissingRouteConfig { listener, .. } => Owner::Listener(listener),
            SnapshotError::ClusterTls { cluster, .. } => Owner::Cluster(cluster),
        }
    }
}

/// One listener as a connection sees it: its spec and one compiled entry
/// per filter chain.
#[derive(Debug)]
pub struct ListenerEntry {
    pub spec: Listener,
    /// In [`Listener::chains`] order (`default_filter_chain` last).
    pub chains: Vec<ChainEntry>,
    /// The registered listener filters of `spec.listener_filters`, in
    /// order, as the [`ChainCompiler`] built them.
    pub listener_filters: Vec<CompiledFilters>,
}

/// One filter chain, compiled.
#[derive(Debug)]
pub struct ChainEntry {
    /// `Some` when the terminal filter is the HTTP connection manager.
    pub routes: Option<Arc<RouteTable>>,
    /// `Some` when the terminal filter is the HTTP connection manager: its
    /// HTTP filters as the [`ChainCompiler`] built them (the HTTP crate's
    /// type, which it downcasts).
    pub http_filters: Option<CompiledFilters>,
    /// `Some` when the terminal filter is a registered network filter: the
    /// filter as the [`ChainCompiler`] built it.
    pub network: Option<CompiledFilters>,
    /// The chain's non-terminal network filters (`FilterChain::read_filters`),
    /// in order, as the [`ChainCompiler`] built them.
    pub read_filters: Vec<CompiledFilters>,
    /// `Some` when the chain terminates TLS.
    pub tls: Option<ServerTls>,
    /// Shared with the same chain (same spec) in later snapshots; ended
    /// when a published snapshot drops the chain, which drains the
    /// connections on it.
    pub tenure: Tenure,
}

/// Filters compiled by a crate above the snapshot, kept opaque here.
pub type CompiledFilters = Arc<dyn Any + Send + Sync>;

/// Compiles the parts of a filter chain that belong to crates above the
/// snapshot. Called once per changed listener at [`Snapshot::compile_with`],
/// never per request.
pub trait ChainCompiler: Send + Sync {
    /// The HTTP filters of `hcm`, ready to run; `Err` names what is wrong.
    fn http_filters(&self, hcm: &HttpConnectionManager) -> Result<CompiledFilters, String>;

    /// A registered terminal network filter, ready to serve connections.
    /// Compilers that hold no network filters keep the default refusal.
    fn network_filter(&self, config: &Extension) -> Result<CompiledFilters, String> {
        Err(format!(
            "no network filter registered for {}",
            config.type_url()
        ))
    }

    /// A non-terminal network filter, ready to judge connections before
    /// the terminal one.
    fn read_filter(&self, config: &Extension) -> Result<CompiledFilters, String> {
        Err(format!(
            "no network read filter registered for {}",
            config.type_url()
        ))
    }

    /// A registered listener filter, ready to inspect connections.
    fn listener_filter(&self, config: &Extension) -> Result<CompiledFilters, String> {
        Err(format!(
            "no listener filter registered for {}",
            config.type_url()
        ))
    }
}

/// The compiler of a snapshot built without one: a connection manager
/// without HTTP filters compiles, one with any is refused (nothing could
/// run them).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFilters;

impl ChainCompiler for NoFilters {
    fn http_filters(&self, hcm: &HttpConnectionManager) -> Result<CompiledFilters, String> {
        match hcm.http_filters.first() {
            None => Ok(Arc::new(())),
            Some(f) => Err(format!("no filter registry to build '{}'", f.name)),
        }
    }
}

impl ListenerEntry {
    /// The chain for `conn` (Envoy's filter-chain match, then
    /// `default_filter_chain`); `None` means the connection is closed.
    pub fn select(&self, conn: &ConnectionInfo<'_>) -> Option<usize> {
        let matchers: Vec<_> = self.spec.filter_chains.iter().map(|c| &c.matcher).collect();
        chains::select(&matchers, conn).or_else(|| {
            self.spec
                .default_filter_chain
                .as_ref()
                .map(|_| self.spec.filter_chains.len())
        })
    }

    /// Chain `index` as chosen by [`ListenerEntry::select`].
    pub fn chain(&self, index: usize) -> Option<(&FilterChain, &ChainEntry)> {
        let spec = self.spec.chains().nth(index)?;
        Some((spec, self.chains.get(index)?))
    }
}

/// The whole compiled config at one version. Immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    /// Seconds since the epoch when this snapshot was compiled.
    last_updated: u64,
    config: Arc<Config>,
    /// The source document (Envoy bootstrap as proto3 JSON), for `/config_dump`.
    source: Arc<serde_json::Value>,
    listeners: HashMap<String, Arc<ListenerEntry>>,
    /// Listener names by configured address, for the hand-off of
    /// `use_original_dst` (bound or not; the first listener of an address
    /// wins, as addresses are unique among bound listeners).
    by_address: HashMap<SocketAddr, String>,
    clusters: HashMap<String, Arc<Cluster>>,
    /// Compiled transport sockets of the clusters that have any TLS.
    cluster_tls: HashMap<String, ClusterTransports>,
    /// The previous snapshot's chains this one drops, ended at
    /// [`Store::publish`].
    ending: Vec<Tenure>,
}

impl Snapshot {
    /// The snapshot before any config: no listeners, no clusters, version 0.
    pub fn empty() -> Self {
        Snapshot {
            version: 0,
            last_updated: now_secs(),
            config: Arc::new(Config::default()),
            source: Arc::new(serde_json::Value::Null),
            listeners: HashMap::new(),
            by_address: HashMap::new(),
            clusters: HashMap::new(),
            cluster_tls: HashMap::new(),
            ending: Vec::new(),
        }
    }

    /// Compiles `config` into version `version`. Listener entries whose spec
    /// is unchanged from `previous` are shared with it rather than recompiled,
    /// so a change to one listener does not rebuild every route table.
    pub fn compile(
        version: u64,
        config: Config,
        source: serde_json::Value,
        previous: &Snapshot,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::compile_with(version, config, source, previous, &NoFilters)
    }

    /// [`Snapshot::compile`] with `filters` building each connection
    /// manager's HTTP filters.
    pub fn compile_with(
        version: u64,
        config: Config,
        source: serde_json::Value,
        previous: &Snapshot,
        filters: &dyn ChainCompiler,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::compile_each(version, config, source, previous, filters)
            .map_err(|mut errs| errs.swap_remove(0))
    }

    /// [`Snapshot::compile_with`], going on past a listener or cluster that
    /// fails so that every failing one is reported (each error names its
    /// listener or cluster: [`SnapshotError::owner`]). The xDS client
    /// rejects exactly those and keeps the rest.
    pub fn compile_each(
        version: u64,
        config: Config,
        source: serde_json::Value,
        previous: &Snapshot,
        filters: &dyn ChainCompiler,
    ) -> Result<Snapshot, Vec<SnapshotError>> {
        let mut errors = Vec::new();
        let mut listeners = HashMap::with_capacity(config.listeners.len());
        let mut by_address = HashMap::with_capacity(config.listeners.len());
        for spec in &config.listeners {
            let old = previous
                .listeners
                .get(&spec.name)
                .filter(|old| old.spec == *spec && same_rds(spec, &config, &previous.config));
            let entry = match old {
                // Unchanged spec, routes and secrets: share everything.
                Some(old) if same_listener_secrets(spec, &config, &previous.config) => {
                    Ok(Arc::clone(old))
                }
                // Only secrets changed (a rotation): keep the route tables
                // and the contexts whose secrets did not change.
                Some(old) => recompile_tls(old, &config, &previous.config).map(Arc::new),
                None => {
                    let before = previous.listeners.get(&spec.name).map(|e| &**e);
                    compile_listener(spec, &config, filters, before).map(Arc::new)
                }
            };
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            listeners.insert(spec.name.clone(), entry);
            by_address
                .entry(spec.address)
                .or_insert_with(|| spec.name.clone());
        }
        let mut clusters = HashMap::with_capacity(config.clusters.len());
        let mut cluster_tls = HashMap::new();
        for c in &config.clusters {
            let shared = previous.clusters.get(&c.name).filter(|old| ***old == *c);
            let same_secrets = c
                .tls
                .iter()
                .chain(
                    c.transport_socket_matches
                        .iter()
                        .filter_map(|m| m.tls.as_ref()),
                )
                .all(|t| {
                    t.common
                        .same_secrets(&config.secrets, &previous.config.secrets)
                });
            let tls = match (shared, previous.cluster_tls.get(&c.name)) {
                // Unchanged spec and secrets: keep the compiled contexts (no
                // file reads).
                (Some(_), Some(old)) if same_secrets => Some(old.clone()),
                _ => match ClusterTransports::compile_with(c, |t| compile_client(t, &config)) {
                    Ok(t) => Some(t),
                    Err((socket, source)) => {
                        errors.push(SnapshotError::ClusterTls {
                            cluster: c.name.clone(),
                            socket,
                            source,
                        });
                        continue;
                    }
                },
            };
            if let Some(tls) = tls.filter(|t| !t.is_plaintext()) {
                cluster_tls.insert(c.name.clone(), tls);
            }
            // The spec does not hold secrets, so a rotation keeps the
            // cluster (and the registry its pools).
            clusters.insert(
                c.name.clone(),
                shared.cloned().unwrap_or_else(|| Arc::new(c.clone())),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let ending = previous
            .listeners
            .iter()
            .filter(|(name, old)| !listeners.get(*name).is_some_and(|n| Arc::ptr_eq(n, old)))
            .flat_map(|(name, old)| tenure::ending(old, listeners.get(name).map(|n| &**n)))
            .collect();
        Ok(Snapshot {
            version,
            last_updated: now_secs(),
            config: Arc::new(config),
            source: Arc::new(source),
            listeners,
            by_address,
            clusters,
            cluster_tls,
            ending,
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn last_updated(&self) -> u64 {
        self.last_updated
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn source(&self) -> &serde_json::Value {
        &self.source
    }

    /// The listener named `name`, as of this version.
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerEntry>> {
        self.listeners.get(name)
    }

    /// The listener a `use_original_dst` listener hands a connection for
    /// `dst` to: the one configured at exactly `dst`, else the one at the
    /// unspecified address of `dst`'s family and port (Envoy's lookup).
    /// Two hash lookups; no allocation.
    pub fn listener_for_destination(&self, dst: SocketAddr) -> Option<&Arc<ListenerEntry>> {
        let any = match dst {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.by_address
            .get(&dst)
            .or_else(|| self.by_address.get(&SocketAddr::new(any, dst.port())))
            .and_then(|name| self.listeners.get(name))
    }

    /// The cluster spec named `name`, as of this version.
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// The compiled `UpstreamTlsContext` of cluster `name`, if it has one.
    pub fn cluster_tls(&self, name: &str) -> Option<&ClientTls> {
        self.cluster_tls
            .get(name)
            .and_then(ClusterTransports::default_tls)
    }

    /// All compiled transport sockets of cluster `name` (its own and its
    /// `transport_socket_matches`); empty (plaintext) when it has no TLS.
    pub fn cluster_transports(&self, name: &str) -> ClusterTransports {
        self.cluster_tls.get(name).cloned().unwrap_or_default()
    }
}

/// Whether an RDS listener's route configs are the same in both configs (an
/// inline one travels with the spec, which the caller compares).
fn same_rds(spec: &Listener, new: &Config, old: &Config) -> bool {
    spec.chains().all(|chain| match &chain.terminal {
        NetworkFilter::Http(hcm) => match &hcm.route_config {
            RouteSource::Inline(_) => true,
            RouteSource::Rds(name) => new.route_config(name) == old.route_config(name),
        },
        NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => true,
    })
}

/// Compiles `spec`; chains with the same spec as one of `before`'s keep
/// its tenure (their connections go on).
fn compile_listener(
    spec: &Listener,
    config: &Config,
    filters: &dyn ChainCompiler,
    before: Option<&ListenerEntry>,
) -> Result<ListenerEntry, SnapshotError> {
    let mut chains = Vec::with_capacity(spec.filter_chains.len() + 1);
    let mut carried = tenure::Carried::from(before);
    for (i, chain) in spec.chains().enumerate() {
        let http_filters =
            match &chain.terminal {
                NetworkFilter::Http(hcm) => Some(filters.http_filters(hcm).map_err(|message| {
                    SnapshotError::HttpFilters {
                        listener: spec.name.clone(),
                        message,
                    }
                })?),
                NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => None,
            };
        let network =
            match &chain.terminal {
                NetworkFilter::Extension(e) => {
                    Some(filters.network_filter(e).map_err(|message| {
                        SnapshotError::NetworkFilter {
                            listener: spec.name.clone(),
                            message,
                        }
                    })?)
                }
                NetworkFilter::Http(_) | NetworkFilter::Tcp(_) => None,
            };
        let routes = match &chain.terminal {
            NetworkFilter::Http(hcm) => {
                let rc = match &hcm.route_config {
                    RouteSource::Inline(rc) => rc,
                    RouteSource::Rds(name) => config.route_config(name).ok_or_else(|| {
                        SnapshotError::MissingRouteConfig {
                            listener: spec.name.clone(),
                            route_config: name.clone(),
                        }
                    })?,
                };
                Some(Arc::new(RouteTable::compile(rc).map_err(|source| {
                    SnapshotError::Route {
                        listener: spec.name.clone(),
                        source,
                    }
                })?))
            }
            NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => None,
        };
        let mut read_filters = Vec::with_capacity(chain.read_filters.len());
        for f in &chain.read_filters {
            read_filters.push(filters.read_filter(&f.config).map_err(|message| {
                SnapshotError::NetworkFilter {
                    listener: spec.name.clone(),
                    message: format!("{}: {message}", f.name),
                }
            })?);
        }
        let tls = compile_server(spec, i, chain, config)?;
        chains.push(ChainEntry {
            routes,
            http_filters,
            network,
            read_filters,
            tls,
            tenure: carried.tenure(i, chain),
        });
    }
    let mut listener_filters = Vec::with_capacity(spec.listener_filters.registered.len());
    for f in &spec.listener_filters.registered {
        listener_filters.push(filters.listener_filter(&f.config).map_err(|message| {
            SnapshotError::ListenerFilter {
                listener: spec.name.clone(),
                message: format!("{}: {message}", f.name),
            }
        })?);
    }
    Ok(ListenerEntry {
        spec: spec.clone(),
        chains,
        listener_filters,
    })
}

/// Whether every secret the listener's TLS contexts name is the same in
/// both configs.
fn same_listener_secrets(spec: &Listener, new: &Config, old: &Config) -> bool {
    spec.chains()
        .filter_map(|c| c.tls.as_ref())
        .all(|t| t.common.same_secrets(&new.secrets, &old.secrets))
}

/// `old` with the TLS contexts whose secrets changed compiled again; route
/// tables and the other contexts are shared.
fn recompile_tls(
    old: &ListenerEntry,
    config: &Config,
    previous: &Config,
) -> Result<ListenerEntry, SnapshotError> {
    let mut chains = Vec::with_capacity(old.chains.len());
    for (i, (spec, entry)) in old.spec.chains().zip(&old.chains).enumerate() {
        let tls = match &spec.tls {
            Some(t) if !t.common.same_secrets(&config.secrets, &previous.secrets) => {
                compile_server(&old.spec, i, spec, config)?
            }
            _ => entry.tls.clone(),
        };
        chains.push(ChainEntry {
            routes: entry.routes.clone(),
            http_filters: entry.http_filters.clone(),
            network: entry.network.clone(),
            read_filters: entry.read_filters.clone(),
            tls,
            tenure: entry.tenure.clone(),
        });
    }
    Ok(ListenerEntry {
        spec: old.spec.clone(),
        chains,
        listener_filters: old.listener_filters.clone(),
    })
}

/// Chain `i`'s `DownstreamTlsContext` with its secrets resolved, compiled.
fn compile_server(
    spec: &Listener,
    i: usize,
    chain: &FilterChain,
    config: &Config,
) -> Result<Option<ServerTls>, SnapshotError> {
    let Some(tls) = &chain.tls else {
        return Ok(None);
    };
    let resolved = tls
        .common
        .resolve(&config.secrets)
        .map_err(TlsError::from)
        .and_then(|secrets| {
            let mut t = tls.clone();
            t.common.secrets = secrets;
            ServerTls::compile(&t)
        });
    resolved
        .map(Some)
        .map_err(|source| SnapshotError::ListenerTls {
            listener: spec.name.clone(),
            chain: if chain.name.is_empty() {
                format!("#{i}")
            } else {
                chain.name.clone()
            },
            source,
        })
}

/// A cluster's `UpstreamTlsContext` with its secrets resolved, compiled.
fn compile_client(tls: &UpstreamTls, config: &Config) -> Result<ClientTls, TlsError> {
    let secrets = tls.common.resolve(&config.secrets)?;
    let mut t = tls.clone();
    t.common.secrets = secrets;
    ClientTls::compile(&t)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The one place the live snapshot is kept. Readers call [`Store::load`]
/// (lock-free, no allocation beyond an `Arc` increment); the single writer
/// calls [`Store::publish`].
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// A store holding [`Snapshot::empty`]; not ready until the first publish.
    pub fn new() -> Self {
        Store {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            version: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The live snapshot. Never blocks; hold the `Arc` for as long as one
    /// request needs a consistent view.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` live and tells watchers its version, then drains
    /// the connections on the chains it dropped.
    pub fn publish(&self, mut snapshot: Snapshot) {
        let version = snapshot.version;
        let ending = std::mem::take(&mut snapshot.ending);
        self.current.store(Arc::new(snapshot));
        self.version.send_replace(version);
        for tenure in ending {
            tenure.end();
        }
    }

    /// True once a config has been published (version > 0).
    pub fn is_ready(&self) -> bool {
        *self.version.borrow() > 0
    }

    /// A receiver that changes whenever a new version is published.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP listener named `name` at `addr`, bound or not.
    fn listener(name: &str, addr: &str, bind: bool) -> String {
        format!(
            r#"
  - name: {name}
    address: {{socket_address: {{address: "{addr}", port_value: 9080}}}}
    bind_to_port: {bind}
    filter_chains: [{{filters: [{{name: t, typed_config: {{
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy,
      stat_prefix: t, cluster: c}}}}]}}]"#
        )
    }

    #[test]
    fn original_destination_finds_the_exact_address_then_the_wildcard() {
        let yaml = format!(
            r#"
static_resources:
  listeners:{}{}
  clusters:
  - {{name: c, type: STATIC, connect_timeout: 1s}}
"#,
            listener("exact", "10.0.0.7", false),
            listener("wild", "0.0.0.0", false),
        );
        let config = strait_envoy::load(&yaml).expect("config");
        let snap = Snapshot::compile(1, config, serde_json::Value::Null, &Snapshot::empty())
            .expect("compiles");
        let to = |a: &str| {
            snap.listener_for_destination(a.parse().expect("addr"))
                .map(|e| e.spec.name.clone())
        };
        assert_eq!(to("10.0.0.7:9080").as_deref(), Some("exact"));
        assert_eq!(to("10.0.0.8:9080").as_deref(), Some("wild"));
        assert_eq!(to("10.0.0.7:9081"), None);
        assert_eq!(to("[::1]:9080"), None);
    }
}
