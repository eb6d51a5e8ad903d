//! Composes a running proxy from config.
//!
//! Owns: worker runtimes (`workers`), the listener set and accept loops
//! (`listeners`), listener filters (`inspect`), the TCP proxy path (`tcp`),
//! config loading and hot reload (`reload`), and start-up/shutdown
//! ([`Proxy`]). The HTTP connection manager and router are `strait-http`'s;
//! this crate hands each HTTP connection to it.
//! Everything a request reads of config comes from one snapshot in the
//! [`Store`]; live upstream state lives in the [`ClusterRegistry`].

mod extensions;
mod inspect;
mod listeners;
mod proxy;
mod reload;
mod shared;
mod stats;
mod tcp;
mod workers;

pub use extensions::{
    DownstreamIo, NetworkConnection, NetworkFilter, NetworkFilterFactory, NetworkFilterRegistry,
};
pub use proxy::{Options, Proxy};
pub use reload::ConfigSource;
pub use reload::{check, check_with, check_with_filters};
pub use stats::StatsRecorder;
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
