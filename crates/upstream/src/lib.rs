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

mod breaker;
mod cluster;
mod health;
mod host;
pub mod lb;
mod outlier;
mod pool;
mod registry;

pub use breaker::{BreakerGuard, RetryGuard, RoutingPriority};
pub use cluster::Cluster;
pub use host::Host;
pub use lb::LbContext;
pub use pool::{Lease, PooledBody, UpstreamError, UpstreamStream};
pub use registry::ClusterRegistry;
pub use strait_model::{EndpointHealth, Locality};
