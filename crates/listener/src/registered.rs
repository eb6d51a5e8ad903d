//! Listener filters registered by type URL. Like the built-in TLS and HTTP
//! inspectors, a registered listener filter reads the start of a
//! connection, without consuming it, to tell the filter-chain match what it
//! learned (the server name, application protocols); the bytes are replayed
//! to the chosen chain.

use std::sync::Arc;

use strait_model::extension::{ByTypeUrl, Extension, TypedValue};
use strait_snapshot::CompiledFilters;

/// What the listener filters learned of a connection so far, for the
/// filter-chain match (`server_names`, `application_protocols`).
#[derive(Debug, Default)]
pub struct Inspection {
    pub server_name: Option<String>,
    pub protocols: Vec<String>,
}

/// A registered listener filter's verdict on the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Read more of the connection and ask again (bounded by the
    /// inspectors' limit and `listener_filters_timeout`).
    More,
    /// Done with this connection.
    Done,
}

/// A listener filter: built once per config version, shared by every
/// connection of its listener. Must not block: it sees bytes already read.
pub trait ListenerFilter: Send + Sync + 'static {
    /// Looks at the connection's first bytes (all read so far, from the
    /// start) and records what it learns in `found`.
    fn inspect(&self, peeked: &[u8], found: &mut Inspection) -> Sniffed;
}

/// Makes listener filters of one config type.
pub trait ListenerFilterFactory: Send + Sync + 'static {
    fn type_url(&self) -> &str;

    /// Validates a config the front end has no schema of: an `Any`'s bytes
    /// or a `TypedStruct`'s value.
    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String>;

    /// Builds the filter, when the snapshot compiles.
    fn create(&self, config: &Extension) -> Result<Arc<dyn ListenerFilter>, String>;
}

/// A compiled listener filter as the snapshot keeps it.
pub(crate) type CompiledListenerFilter = Arc<dyn ListenerFilter>;

/// The listener filter factories a proxy knows, by type URL.
#[derive(Clone, Default, Debug)]
pub struct ListenerFilterRegistry {
    by_type: ByTypeUrl<dyn ListenerFilterFactory>,
}

impl ListenerFilterRegistry {
    /// Adds `factory` for its type URL, replacing one registered before.
    pub fn register(&mut self, factory: impl ListenerFilterFactory) -> &mut Self {
        let url = factory.type_url().to_owned();
        self.by_type.insert(&url, Arc::new(factory));
        self
    }

    /// The registered factory's verdict on a config of `type_url`; `None`
    /// when nothing is registered for it.
    pub fn parse(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        self.by_type.get(type_url).map(|f| f.parse(value))
    }

    /// Builds the filter `config` configures, as the snapshot keeps it.
    pub fn compile(&self, config: &Extension) -> Result<CompiledFilters, String> {
        let factory = self.by_type.require(config.type_url(), "listener filter")?;
        let filter: CompiledListenerFilter = factory.create(config)?;
        Ok(Arc::new(filter))
    }
}
