//! Upstream state that outlives config snapshots.
//!
//! Owns the [`ClusterRegistry`]: one live [`Cluster`] per configured cluster
//! name, holding its hosts, load-balancer state and per-host connection pools.
//! A new snapshot that keeps a cluster keeps this state (warm connections,
//! round-robin position); the registry is reconciled by name by the single
//! config writer, and read lock-free by requests.
//!
//! Depends on `config` (specs) and `codec` (client connections); never on
//! routing, snapshots or listeners.

mod cluster;
mod pool;
mod registry;

pub use cluster::{Cluster, Host};
pub use pool::{Lease, PooledBody, UpstreamError};
pub use registry::ClusterRegistry;
