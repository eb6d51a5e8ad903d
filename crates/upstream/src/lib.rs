//! Upstream state that outlives config snapshots.
//!
//! Owns the [`ClusterRegistry`]: one live [`Cluster`] per configured cluster
//! name, holding its hosts, load-balancer state and per-host connection pools.
//! A new snapshot that keeps a cluster keeps this state (warm connections,
//! round-robin position); the registry is reconciled by name by the single
//! config writer, and read lock-free by requests.
//!
//! Depends on `strait-model` (specs), `codec` (client connections), `tls`
//! and `net`; never on routing, snapshots or listeners.

// The modules form layers, lowest first: `breaker`, `stats`; `pool`;
// `host`; `lb`; `cluster`; `outlier`, `health`; `connect`; `lease`;
// `upkeep`; `registry`. Each names only modules of lower layers, so the
// cluster never calls the detectors and tasks that act on it
// (`cargo xtask layers` keeps it so).
mod breaker;
mod cluster;
mod connect;
mod health;
mod host;
pub mod lb;
mod lease;
mod outlier;
mod pool;
mod registry;
mod stats;
mod upkeep;

pub use breaker::{BreakerGuard, RetryGuard, RoutingPriority};
pub use cluster::Cluster;
pub use connect::UpstreamStream;
pub use host::Host;
pub use lb::LbContext;
pub use lease::{Lease, PooledBody, UpstreamError};
pub use registry::ClusterRegistry;
pub use strait_model::{EndpointHealth, Locality};
