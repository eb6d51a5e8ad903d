//! The control-plane stats Istio's `pilot-agent` and dashboards read, under
//! Envoy's Prometheus names.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, counter, gauge};

use crate::type_url;

/// Update outcomes for LDS and CDS (`listener_manager.lds.*`,
/// `cluster_manager.cds.*`), and whether the ADS stream is up
/// (`control_plane.connected_state`). RDS and EDS count per resource in
/// Envoy; those are not kept yet.
#[derive(Debug)]
pub(crate) struct Stats {
    lds_success: Counter,
    lds_rejected: Counter,
    cds_success: Counter,
    cds_rejected: Counter,
    connected: Gauge,
}

/// The handles, registered on first use. The recorder is process-wide, so
/// several clients in one process (tests) share them, as they would share
/// Envoy's names.
pub(crate) fn stats() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(Stats::new)
}

impl Stats {
    fn new() -> Stats {
        Stats {
            lds_success: counter!("envoy_listener_manager_lds_update_success"),
            lds_rejected: counter!("envoy_listener_manager_lds_update_rejected"),
            cds_success: counter!("envoy_cluster_manager_cds_update_success"),
            cds_rejected: counter!("envoy_cluster_manager_cds_update_rejected"),
            connected: gauge!("envoy_control_plane_connected_state"),
        }
    }

    /// Counts an accepted (`ok`) or rejected update of `type_url`.
    pub(crate) fn update(&self, type_url: &str, ok: bool) {
        let c = match (type_url, ok) {
            (type_url::LISTENER, true) => &self.lds_success,
            (type_url::LISTENER, false) => &self.lds_rejected,
            (type_url::CLUSTER, true) => &self.cds_success,
            (type_url::CLUSTER, false) => &self.cds_rejected,
            _ => return,
        };
        c.increment(1);
    }

    pub(crate) fn connected(&self, up: bool) {
        self.connected.set(if up { 1.0 } else { 0.0 });
    }
}
