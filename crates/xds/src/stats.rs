//! The control-plane stats Istio's `pilot-agent` and dashboards read, under
//! Envoy's Prometheus names.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use metrics::{Counter, Gauge, Recorder, counter, gauge};

use crate::type_url;

/// Update outcomes for LDS and CDS (`listener_manager.lds.*`,
/// `cluster_manager.cds.*`), and whether the ADS stream is up
/// (`control_plane.connected_state`). RDS and EDS count per resource in
/// Envoy; those are not kept yet.
pub(crate) struct Stats {
    /// The proxy's recorder, never the process-wide one.
    recorder: Arc<dyn Recorder + Send + Sync>,
    /// Registered on first use, so a client that never connects or applies
    /// an update shows none of them.
    handles: OnceLock<Handles>,
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

struct Handles {
    lds_success: Counter,
    lds_rejected: Counter,
    cds_success: Counter,
    cds_rejected: Counter,
    connected: Gauge,
}

impl Stats {
    /// Stats of one client, registered with `recorder` (the proxy's), so
    /// several clients in one process (tests) count apart.
    pub(crate) fn new(recorder: Arc<dyn Recorder + Send + Sync>) -> Stats {
        Stats {
            recorder,
            handles: OnceLock::new(),
        }
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| {
            metrics::with_local_recorder(&*self.recorder, || Handles {
                lds_success: counter!("envoy_listener_manager_lds_update_success"),
                lds_rejected: counter!("envoy_listener_manager_lds_update_rejected"),
                cds_success: counter!("envoy_cluster_manager_cds_update_success"),
                cds_rejected: counter!("envoy_cluster_manager_cds_update_rejected"),
                connected: gauge!("envoy_control_plane_connected_state"),
            })
        })
    }

    /// Counts an accepted (`ok`) or rejected update of `type_url`.
    pub(crate) fn update(&self, type_url: &str, ok: bool) {
        let h = self.handles();
        let c = match (type_url, ok) {
            (type_url::LISTENER, true) => &h.lds_success,
            (type_url::LISTENER, false) => &h.lds_rejected,
            (type_url::CLUSTER, true) => &h.cds_success,
            (type_url::CLUSTER, false) => &h.cds_rejected,
            _ => return,
        };
        c.increment(1);
    }

    pub(crate) fn connected(&self, up: bool) {
        self.handles().connected.set(if up { 1.0 } else { 0.0 });
    }
}
