//! Strait's HTTP connection manager and router.
//!
//! Owns what happens to an HTTP request between the downstream codec and an
//! upstream connection: the connection manager's edge handling
//! (`x-forwarded-*`, internal/external requests, `x-forwarded-client-cert`,
//! path normalisation, request refusals), routing through the snapshot's
//! route table, the HTTP filters around the router, the router itself
//! (host choice, retries, timeouts, mirrors, upgrades) and the one place an
//! error becomes a response (`local_reply`). A request loads the snapshot
//! once and reads every piece of config from it.
//!
//! Entry points: [`serve_connection`] serves one downstream connection (the
//! connection manager as a network filter); [`HttpService`] is the same
//! path as a `tower::Service` for programs that accept connections
//! themselves; [`Shared`] is what every connection shares (the store, the
//! cluster registry, the stat handles; [`Shared::apply`] makes a config
//! live). HTTP filters are values behind [`HttpFilter`], made by
//! [`HttpFilterFactory`]s registered by type URL in an
//! [`HttpFilterRegistry`]; the built-in ones go through the same registry.
//!
//! Depends on the model and the data tier (route, snapshot, upstream, codec,
//! tls, net, filter); never on the Envoy front end, the control plane
//! clients or the composition crate.

mod access_log;
mod body;
mod buffer;
mod builtin;
mod chain;
mod conn;
mod connection;
mod edge;
mod forward;
mod hash;
mod local_reply;
mod local_reply_config;
pub mod metadata;
mod mirror;
mod registry;
mod request;
mod retry;
mod routed;
mod router;
mod service;
mod shared;
mod stats;
mod timeouts;
mod trace;
mod xfcc;

pub use body::{BodyError, ProxyBody, Tracked};
pub use buffer::BodyBuffering;
pub use chain::{
    Completion, Decision, FilterChain, FilterScope, FilterState, HttpFilter, HttpFilterFactory,
    RequestHead, RequestInfo, ResponseHead,
};
pub use conn::{Connection, ConnectionState};
pub use connection::serve_connection;
pub use local_reply::{Reply, ReplyInfo};
pub use metadata::DynamicMetadata;
pub use registry::HttpFilterRegistry;
pub use service::{HttpService, ProxyResponse};
pub use shared::Shared;
pub use stats::HttpStats;
pub use strait_tls::PeerIdentity;
pub use xfcc::element as xfcc_element;
