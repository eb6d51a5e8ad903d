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
use strait_net::Counters;
use strait_tls::PeerIdentity;
use strait_upstream::ClusterRegistry;

use crate::stream::BoxIo;

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
    /// The protocol ALPN negotiated on a TLS-terminated connection.
    pub alpn: Option<&'a [u8]>,
    /// The first URI SAN of the certificate this side presented, on a
    /// TLS-terminated connection.
    pub local_uri_san: Option<&'a str>,
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

    /// Whether the filter follows connections past its decision
    /// ([`ReadFilter::session`]); a chain without such a filter pays
    /// nothing for sessions.
    fn wants_session(&self) -> bool {
        false
    }

    /// A per-connection session, made once every read filter let the
    /// connection through: for filters that report on the whole connection
    /// (Istio's TCP metrics) or touch its bytes (Istio's TCP metadata
    /// exchange). `state` is the connection's filter state: what a session
    /// made earlier in the chain left for later ones (and for the terminal
    /// filter's upstream side).
    fn session(
        &self,
        conn: &ConnectionView<'_>,
        state: &mut http::Extensions,
    ) -> Option<Box<dyn ConnectionSession>> {
        let _ = (conn, state);
        None
    }

    /// Whether the filter puts itself on the downstream bytes
    /// ([`ReadFilter::wrap`]); only the TCP proxy runs such filters.
    fn wraps(&self) -> bool {
        false
    }

    /// Puts the filter on the downstream stream, after the sessions
    /// started and before the TCP proxy reads a byte; `alpn` is the
    /// protocol the handshake negotiated. `io` is handed back as it is when
    /// the filter does not apply to this connection.
    fn wrap(&self, alpn: Option<&[u8]>, io: BoxIo, state: &mut http::Extensions) -> BoxIo {
        let _ = (alpn, state);
        io
    }
}

/// What a session sees of a connection after its first decision: the
/// terminal filter's upstream (TCP proxy) and the live byte counts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionProgress<'a> {
    /// The cluster the TCP proxy chose, if it got that far.
    pub cluster: Option<&'a str>,
    /// The upstream host it connected (or tried to connect) to.
    pub upstream_host: Option<SocketAddr>,
    /// The upstream server certificate's identities, on a TLS upstream.
    pub upstream_cert: Option<&'a PeerIdentity>,
    /// Envoy's response flags so far (`UF,URX`, `UH`, `NC`), `""` for none.
    pub flags: &'a str,
    /// Bytes moved so far: `sent` is downstream to upstream (what the
    /// proxy received), `received` upstream to downstream.
    pub counters: &'a Arc<Counters>,
    /// The connection's filter state, as the sessions left it.
    pub state: &'a http::Extensions,
}

/// A read filter's per-connection session ([`ReadFilter::session`]).
/// Called off the data path: once when the upstream is known, once at the
/// end; a session that reports periodically runs its own timer.
pub trait ConnectionSession: Send + 'static {
    /// The TCP proxy connected upstream, or gave up (`flags` say why);
    /// not called for other terminal filters.
    fn on_upstream(&mut self, progress: &ConnectionProgress<'_>) {
        let _ = progress;
    }

    /// The connection ended; called once, on every way out.
    fn on_close(&mut self, progress: &ConnectionProgress<'_>);
}

/// The sessions of one connection, in chain order, with the state they
/// share.
#[derive(Default)]
pub(crate) struct Sessions {
    pub(crate) list: Vec<Box<dyn ConnectionSession>>,
    pub(crate) state: http::Extensions,
    pub(crate) counters: Arc<Counters>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("list", &self.list.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Starts the sessions of the chain's filters that want one; `None`
    /// (no allocation) when none does.
    pub(crate) fn start(
        filters: &[strait_snapshot::CompiledFilters],
        view: &ConnectionView<'_>,
    ) -> Option<Sessions> {
        let mut out: Option<Sessions> = None;
        for f in filters {
            let Some(filter) = f.downcast_ref::<CompiledReadFilter>() else {
                continue;
            };
            if !filter.wants_session() {
                continue;
            }
            let s = out.get_or_insert_with(Sessions::default);
            if let Some(session) = filter.session(view, &mut s.state) {
                s.list.push(session);
            }
        }
        out
    }

    fn progress<'a>(&'a self, up: &UpstreamFacts<'a>) -> ConnectionProgress<'a> {
        ConnectionProgress {
            cluster: up.cluster,
            upstream_host: up.host,
            upstream_cert: up.cert,
            flags: up.flags,
            counters: &self.counters,
            state: &self.state,
        }
    }

    pub(crate) fn upstream(&mut self, up: &UpstreamFacts<'_>) {
        let mut list = std::mem::take(&mut self.list);
        let p = self.progress(up);
        for s in &mut list {
            s.on_upstream(&p);
        }
        self.list = list;
    }

    pub(crate) fn close(&mut self, up: &UpstreamFacts<'_>) {
        let mut list = std::mem::take(&mut self.list);
        let p = self.progress(up);
        for s in &mut list {
            s.on_close(&p);
        }
    }
}

/// What the TCP proxy learnt of its upstream, for sessions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UpstreamFacts<'a> {
    pub(crate) cluster: Option<&'a str>,
    pub(crate) host: Option<SocketAddr>,
    pub(crate) cert: Option<&'a PeerIdentity>,
    pub(crate) flags: &'a str,
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
