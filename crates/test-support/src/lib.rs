//! Test helpers shared by Strait's unit and end-to-end tests. Dev-only: no
//! library crate may depend on this one outside `[dev-dependencies]`.
//!
//! - [`upstream`]: real upstream servers on 127.0.0.1 port 0 (HTTP/1.1 and
//!   HTTP/2 echo with behaviour chosen by path, TCP echo).
//! - [`proxy`]: Strait in-process from a YAML bootstrap written to a temp
//!   file, with helpers to rewrite it (hot reload) and read its admin.
//! - [`admin`]: reading the admin server and single Prometheus series.
//! - [`certs`]: a test CA issuing SPIFFE certificates, and TLS config blocks.
//! - [`client`]: a hyper client, and streaming request/response helpers.
//! - [`xds_server`]: a real ADS control plane (SotW and delta) that records
//!   every ACK and NACK.
//! - [`config_dump`]: Envoy `/config_dump` files as the dynamic resources to
//!   serve from [`xds_server`].
//! - [`metrics_service`]: Envoy's metrics service (gRPC `StreamMetrics`),
//!   recording every message, for the stats sink tests.
//! - [`process`]: the binaries as real processes (killed on drop), with
//!   plain-socket HTTP/1.1 requests and their admin's `/listeners`.
//! - [`eventually`]: wait for a condition with a deadline, never a bare sleep.

pub mod admin;
pub mod authz;
pub mod bootstrap;
pub mod certs;
pub mod client;
pub mod config_dump;
pub mod differential;
pub mod envoy;
pub mod grpc_recorder;
pub mod metrics_service;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod rls;
pub mod upstream;
pub mod xds_server;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strait-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking variant of [`eventually`] for synchronous tests.
pub fn eventually_blocking<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
