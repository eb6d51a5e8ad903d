//! Composes a running proxy from config.
//!
//! Owns: worker runtimes ([`workers`]), the listener set and accept loops
//! ([`listeners`]), listener filters ([`inspect`]), the per-request HTTP path and the one place errors become
//! responses ([`http`], [`local_reply`]), `x-forwarded-client-cert`
//! ([`xfcc`]), the TCP proxy path ([`tcp`]), config
//! loading and hot reload ([`reload`]), and start-up/shutdown ([`Proxy`]).
//! Everything a request reads of config comes from one snapshot in the
//! [`Store`]; live upstream state lives in the [`ClusterRegistry`].

mod edge;
mod filters;
mod hash;
mod http;
mod inspect;
mod listeners;
mod local_reply;
mod mirror;
mod proxy;
mod reload;
mod retry;
mod router;
mod stats;
mod tcp;
mod timeouts;
mod workers;
mod xfcc;

pub use proxy::{ConfigSource, Options, Proxy};
pub use reload::{check, check_with};
pub use strait_envoy::BootstrapOverrides;
pub use workers::RuntimeModel;

/// Errors that stop the proxy from starting or a config from applying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config:\n{}", .0.join("\n"))]
    Config(Vec<String>),
    #[error("{0}")]
    Net(#[from] strait_net::NetError),
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

use strait_snapshot::Store;
use strait_upstream::ClusterRegistry;
