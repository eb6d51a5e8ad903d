//! A cluster's life on the control runtime: its start (first resolution and
//! health check round, so a cluster is warm before it is used, as Envoy
//! warms one), DNS refreshes, and the maintenance loop that rebuilds the
//! balancer, sweeps outliers and idle connections, and runs health checks.
//!
//! Sits above [`Cluster`] and the detectors that act on it
//! ([`crate::outlier`], [`crate::health`]), so the cluster itself never
//! calls upward.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use strait_model::{self as model, Discovery};
use strait_tls::ClusterTransports;

use crate::{cluster::Cluster, health, outlier, stats::StatsRecorder};

/// Starts a live cluster. STATIC hosts are ready at once; STRICT_DNS
/// clusters resolve once before returning and then refresh in the
/// background; with health checks, the first round runs before returning.
/// Spawns the cluster's maintenance task on the current runtime.
pub(crate) async fn start(
    spec: &model::Cluster,
    tls: ClusterTransports,
    recorder: &StatsRecorder,
) -> Arc<Cluster> {
    let cluster = Cluster::new(spec, tls, recorder);
    cluster.resolve().await;
    if matches!(
        spec.discovery,
        Discovery::StrictDns { .. } | Discovery::LogicalDns { .. }
    ) {
        tokio::spawn(refresh_loop(Arc::downgrade(&cluster)));
    }
    if !spec.health_checks.is_empty() {
        health::check_all(&cluster).await;
    }
    tokio::spawn(maintain(Arc::downgrade(&cluster)));
    cluster
}

/// Re-resolves a DNS cluster every `dns_refresh_rate`, or at once when its
/// spec changes.
async fn refresh_loop(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if c.is_stopped() {
            return;
        }
        let every = match c.spec().discovery {
            Discovery::StrictDns { refresh_rate, .. }
            | Discovery::LogicalDns { refresh_rate, .. } => refresh_rate,
            _ => return,
        };
        // A removed cluster is stopped and notified, so this wakes and ends.
        let _ = tokio::time::timeout(every, c.refresh_requested()).await;
        if c.is_stopped() {
            return;
        }
        c.resolve().await;
    }
}

/// The cluster's upkeep on the control runtime: rebuilds the balancer when
/// health changes, runs the outlier sweep and health checks on their
/// intervals, and closes idle connections past `idle_timeout`.
async fn maintain(cluster: Weak<Cluster>) {
    let mut next_sweep = tokio::time::Instant::now();
    let mut next_check = tokio::time::Instant::now();
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if c.is_stopped() {
            return;
        }
        let spec = c.spec();
        let now = tokio::time::Instant::now();
        if now >= next_sweep {
            c.outlier_sweep();
            c.sweep_pools(spec.pool.idle_timeout);
            next_sweep = now
                + outlier::interval(spec.outlier_detection.as_ref())
                    .unwrap_or(Duration::from_secs(10))
                    .min(spec.pool.idle_timeout.unwrap_or(Duration::MAX) / 2)
                    .max(Duration::from_millis(10));
        }
        if let Some(every) = health::next_interval(&spec)
            && now >= next_check
        {
            // Each round runs beside this loop so a slow host does not stall
            // rebuilds.
            let round = Arc::clone(&c);
            tokio::spawn(async move { health::check_all(&round).await });
            next_check = now + every;
        }
        let mut wake = if spec.health_checks.is_empty() {
            next_sweep
        } else {
            next_sweep.min(next_check)
        };
        // While a host is in its slow start window, the balancer's weights
        // are refreshed in steps of a twentieth of the window.
        let warming = spec
            .lb_common
            .slow_start
            .filter(|s| c.lb.load().hosts.iter().any(|h| h.warming_for() < s.window));
        if let Some(s) = warming {
            let step = (s.window / 20).clamp(Duration::from_millis(50), Duration::from_secs(1));
            wake = wake.min(now + step);
        }
        // Holding the cluster while waiting is fine: `stop` wakes this.
        let rebuild = tokio::time::timeout_at(wake, c.hosts_changed_notice())
            .await
            .is_ok();
        if (rebuild || warming.is_some()) && !c.is_stopped() {
            c.rebuild();
        }
    }
}
