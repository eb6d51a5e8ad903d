//! Composes a running proxy from config.
//!
//! Owns: worker runtimes (`workers`), the listener set and accept loops
//! (`listeners`), the extension registries (`extensions`), config loading
//! and hot reload (`reload`: the single writer), the proxy's stats recorder
//! (`stats`), and start-up/shutdown ([`Proxy`]). What happens to an
//! accepted connection is `strait-listener`'s, the HTTP path
//! `strait-http`'s.
//! Everything a request reads of config comes from one snapshot in the
//! [`Store`]; live upstream state lives in the [`ClusterRegistry`].

mod extensions;
mod listeners;
mod proxy;
mod reload;
mod shared;
mod stats;
mod workers;

pub use extensions::http_filters;
pub use proxy::{Options, Proxy};
pub use reload::ConfigSource;
pub use reload::{check, check_with, check_with_filters};
pub use stats::StatsRecorder;
pub use strait_envoy::BootstrapOverrides;
pub use strait_listener::{
    DownstreamIo, Inspection, ListenerFilter, ListenerFilterFactory, ListenerFilterRegistry,
    NetworkConnection, NetworkFilter, NetworkFilterFactory, NetworkFilterRegistry, Sniffed,
};
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
