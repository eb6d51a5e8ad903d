//! Terminal network filters registered by type URL: an embedding
//! program's protocol, or a protocol proxy (the RPC proxies to come). A
//! registered filter gets the connection after the listener filters and
//! the transport socket.

use std::{fmt, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use strait_model::extension::{ByTypeUrl, Extension, TypedValue};
use strait_net::DrainWatch;
use strait_snapshot::{CompiledFilters, Store};
use strait_upstream::ClusterRegistry;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    read::{CompiledReadFilter, ReadFilterFactory, ReadScope},
    stream::UpstreamFilter,
};

/// A downstream byte stream: plaintext or TLS-terminated, with any bytes
/// the listener filters peeked replayed first.
pub trait DownstreamIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> DownstreamIo for T {}

/// One connection handed to a network filter.
pub struct NetworkConnection {
    pub io: Box<dyn DownstreamIo>,
    /// The listener that accepted it (after any `use_original_dst` hand-off).
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    /// Its destination: the local address, or the original destination.
    pub local: SocketAddr,
    /// TLS-terminated by the filter chain's transport socket.
    pub tls: bool,
    /// The live config (read once per request or frame, as the HTTP path
    /// does) and the live clusters (hosts, pools, balancers).
    pub store: Arc<Store>,
    pub clusters: Arc<ClusterRegistry>,
    /// Fires when the listener drains: finish what is in flight, then close.
    pub drain: DrainWatch,
}

impl fmt::Debug for NetworkConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkConnection")
            .field("listener", &self.listener)
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A terminal network filter: serves a connection until it ends. Built once
/// per config version, shared by every connection of its filter chains.
pub trait NetworkFilter: Send + Sync + 'static {
    /// Serves `conn` to its end. One boxed future per connection.
    fn serve(&self, conn: NetworkConnection) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Makes network filters of one config type.
pub trait NetworkFilterFactory: Send + Sync + 'static {
    /// The type URL of the filter's config.
    fn type_url(&self) -> &str;

    /// Validates a config the front end has no schema of: an `Any`'s bytes
    /// or a `TypedStruct`'s value.
    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String>;

    /// Builds the filter from its validated config, when the snapshot
    /// compiles; never per connection.
    fn create(&self, config: &Extension) -> Result<Arc<dyn NetworkFilter>, String>;
}

/// The network filter factories a proxy knows, by type URL: terminal
/// filters and read filters (non-terminal, before the terminal one).
#[derive(Clone, Default, Debug)]
pub struct NetworkFilterRegistry {
    by_type: ByTypeUrl<dyn NetworkFilterFactory>,
    read_by_type: ByTypeUrl<dyn ReadFilterFactory>,
    /// Cluster filters, run by the TCP proxy on upstream connections.
    upstream_by_type: ByTypeUrl<dyn UpstreamFilter>,
    /// Handed to read filter factories (see [`ReadScope`]).
    clusters: Option<Arc<ClusterRegistry>>,
}

impl NetworkFilterRegistry {
    /// Adds `factory` for its type URL, replacing one registered before.
    pub fn register(&mut self, factory: impl NetworkFilterFactory) -> &mut Self {
        let url = factory.type_url().to_owned();
        self.by_type.insert(&url, Arc::new(factory));
        self
    }

    /// Adds a read filter `factory` for its type URL, replacing one
    /// registered before.
    pub fn register_read(&mut self, factory: impl ReadFilterFactory) -> &mut Self {
        let url = factory.type_url().to_owned();
        self.read_by_type.insert(&url, Arc::new(factory));
        self
    }

    /// Adds a cluster filter for its type URL, replacing one registered
    /// before.
    pub fn register_upstream(&mut self, filter: impl UpstreamFilter) -> &mut Self {
        let url = filter.type_url().to_owned();
        self.upstream_by_type.insert(&url, Arc::new(filter));
        self
    }

    /// Whether a cluster filter is registered for `type_url`.
    pub fn has_upstream(&self, type_url: &str) -> bool {
        self.upstream_by_type.get(type_url).is_some()
    }

    /// The cluster filters, for the TCP proxy ([`crate::Context::with_upstream_filters`]).
    pub fn upstream_filters(&self) -> ByTypeUrl<dyn UpstreamFilter> {
        self.upstream_by_type.clone()
    }

    /// The live clusters read filters that call a service use.
    pub fn set_clusters(&mut self, clusters: Arc<ClusterRegistry>) -> &mut Self {
        self.clusters = Some(clusters);
        self
    }

    /// Whether a read filter is registered for `type_url`.
    pub fn has_read(&self, type_url: &str) -> bool {
        self.read_by_type.get(type_url).is_some()
    }

    /// The registered factory's verdict on a config of `type_url` (a
    /// terminal filter's factory first, then a read filter's); `None` when
    /// nothing is registered for it.
    pub fn parse(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        match self.by_type.get(type_url) {
            Some(f) => Some(f.parse(value)),
            None => self.read_by_type.get(type_url).map(|f| f.parse(value)),
        }
    }

    /// Builds the read filter `config` configures, as the snapshot keeps it.
    pub fn compile_read(&self, config: &Extension) -> Result<CompiledFilters, String> {
        let factory = self
            .read_by_type
            .require(config.type_url(), "network read filter")?;
        let scope = ReadScope {
            clusters: self.clusters.as_ref(),
        };
        let filter: CompiledReadFilter = factory.create_in(config, &scope)?;
        Ok(Arc::new(filter))
    }

    /// Builds the filter `config` configures, as the snapshot keeps it.
    pub fn compile(&self, config: &Extension) -> Result<CompiledFilters, String> {
        let factory = self.by_type.require(config.type_url(), "network filter")?;
        let filter: CompiledNetworkFilter = factory.create(config)?;
        Ok(Arc::new(filter))
    }
}

/// A compiled network filter as the snapshot keeps it.
pub(crate) type CompiledNetworkFilter = Arc<dyn NetworkFilter>;
