//! What happens to an accepted connection.
//!
//! Owns the per-connection path of a listener: the global downstream
//! connection limit, the `use_original_dst` hand-off, the listener filters
//! (`inspect`: TLS and HTTP inspectors, original destination, and those
//! registered by type URL: [`ListenerFilter`]), the
//! filter-chain match, the transport socket (TLS termination), and the
//! chain's read filters (non-terminal network filters such as network
//! RBAC: [`ReadFilter`], which may close the connection), and its terminal
//! network filter: the HTTP connection manager
//! (`strait-http`), the TCP proxy (`tcp`), or a network filter registered
//! by type URL ([`NetworkFilter`], [`NetworkFilterFactory`],
//! [`NetworkFilterRegistry`]). Binding sockets and running accept loops is
//! the composition's (`strait-app`); it hands each accepted stream to
//! [`serve`].
//!
//! Depends on the model and the data tier (snapshot, upstream, http, tls,
//! net); never on the Envoy front end or the control plane clients.

mod connection;
mod context;
mod inspect;
mod network;
mod read;
mod registered;
mod stats;
mod stream;
mod tcp;

pub use connection::serve;
pub use context::Context;
pub use network::{
    DownstreamIo, NetworkConnection, NetworkFilter, NetworkFilterFactory, NetworkFilterRegistry,
};
pub use read::{
    ConnectionProgress, ConnectionSession, ConnectionView, ReadDecision, ReadFilter,
    ReadFilterFactory, ReadScope,
};
pub use registered::{
    Inspection, ListenerFilter, ListenerFilterFactory, ListenerFilterRegistry, Sniffed,
};
pub use stats::{ListenerStats, TcpStats};
pub use stream::{BoxIo, StreamIo, UpstreamFilter};
