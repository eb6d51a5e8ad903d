//! Non-terminal network filters (Envoy's read filters before the terminal
//! one): each judges a connection once, after the transport socket and
//! before the terminal filter (HTTP connection manager, TCP proxy or a
//! registered one) sees a byte, and lets it through or closes it. Network
//! RBAC is one; an authorization call (network ext_authz) may pause.
//!
//! Envoy runs its read filters on the first bytes the client sends; every
//! input a connection-level decision reads (addresses, server name, peer
//! certificate) is known once the handshake is done, so Strait decides
//! there, before the terminal filter opens an upstream connection.

use std::{fmt, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use strait_http::DynamicMetadata;
use strait_model::extension::{Extension, TypedValue};
use strait_tls::PeerIdentity;
use strait_upstream::ClusterRegistry;

/// What a read filter sees of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionView<'a> {
    /// The listener that accepted it (after any `use_original_dst` hand-off).
    pub listener: &'a str,
    /// The downstream peer (Envoy's remote and direct remote address).
    pub peer: SocketAddr,
    /// Its destination: the local address, or the original destination.
    pub local: SocketAddr,
    /// TLS-terminated by the filter chain's transport socket.
    pub tls: bool,
    /// The TLS server name the client asked for.
    pub server_name: Option<&'a str>,
    /// The client certificate's identities, on a mutual-TLS connection.
    pub peer_cert: Option<&'a PeerIdentity>,
}

/// A read filter's verdict on a connection.
pub enum ReadDecision<'a> {
    /// Hand the connection on (to the next read filter, then the terminal).
    Continue,
    /// Close the connection, after holding it for `delay` (reading nothing)
    /// when set.
    Close { delay: Option<Duration> },
    /// Wait for I/O, then decide. Boxed only when a filter pauses.
    Pause(Pin<Box<dyn Future<Output = ReadDecision<'a>> + Send + 'a>>),
}

impl fmt::Debug for ReadDecision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadDecision::Continue => f.write_str("Continue"),
            ReadDecision::Close { delay } => f.debug_struct("Close").field("delay", delay).finish(),
            ReadDecision::Pause(_) => f.write_str("Pause"),
        }
    }
}

/// A non-terminal network filter: built once per config version, shared by
/// every connection of its filter chains.
pub trait ReadFilter: Send + Sync + 'static {
    /// Judges a new connection. `metadata` is the connection's dynamic
    /// metadata: what earlier read filters wrote (network RBAC's shadow
    /// verdict) for later ones to read (network ext_authz's
    /// `filter_enabled_metadata`).
    fn on_connection<'a>(
        &'a self,
        conn: &'a ConnectionView<'a>,
        metadata: &'a mut DynamicMetadata,
    ) -> ReadDecision<'a>;
}

/// What a read filter factory may use besides its config.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadScope<'a> {
    /// The proxy's live clusters, for filters that call a service; `None`
    /// where the composition gave the registry none.
    pub clusters: Option<&'a Arc<ClusterRegistry>>,
}

/// Makes read filters of one config type.
pub trait ReadFilterFactory: Send + Sync + 'static {
    /// The type URL of the filter's config.
    fn type_url(&self) -> &str;

    /// Validates a config the front end has no schema of: an `Any`'s bytes
    /// or a `TypedStruct`'s value. Filters whose configs the front end
    /// translates itself (network RBAC) keep the default refusal.
    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        let _ = value;
        Err(format!("no parser for {}", self.type_url()))
    }

    /// Builds the filter from its validated config, when the snapshot
    /// compiles; never per connection.
    fn create(&self, config: &Extension) -> Result<Arc<dyn ReadFilter>, String>;

    /// [`ReadFilterFactory::create`] with the registry's [`ReadScope`]; a
    /// factory that calls out through a cluster overrides this one.
    fn create_in(
        &self,
        config: &Extension,
        scope: &ReadScope<'_>,
    ) -> Result<Arc<dyn ReadFilter>, String> {
        let _ = scope;
        self.create(config)
    }
}

/// A compiled read filter as the snapshot keeps it.
pub(crate) type CompiledReadFilter = Arc<dyn ReadFilter>;

/// Runs the chain's read filters in order: `Some(delay)` when one closes
/// the connection (held for `delay` first, if any).
pub(crate) async fn judge(
    filters: &[strait_snapshot::CompiledFilters],
    view: &ConnectionView<'_>,
) -> Option<Option<Duration>> {
    // Allocates only when a filter writes.
    let mut metadata = DynamicMetadata::default();
    for f in filters {
        // Built by the registry that made it: any other type is a bug in
        // the composition; closing fails safe.
        let Some(filter) = f.downcast_ref::<CompiledReadFilter>() else {
            return Some(None);
        };
        let mut decision = filter.on_connection(view, &mut metadata);
        loop {
            match decision {
                ReadDecision::Continue => break,
                ReadDecision::Close { delay } => return Some(delay),
                ReadDecision::Pause(wait) => decision = wait.await,
            }
        }
    }
    None
}
