//! The control-plane stats Istio's `pilot-agent` and dashboards read, under
//! Envoy's Prometheus names.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use metrics::{Counter, Gauge, Recorder, counter, gauge};

use crate::{Cache, Kind, Outcome};

/// Update outcomes as Envoy counts them per subscription: LDS and CDS once
/// per response (`listener_manager.lds.update_attempt`, `update_success`,
/// `update_rejected`; `cluster_manager.cds.*`), RDS per route config
/// (`http.<prefix>.rds.<name>.update_*`) and EDS per cluster
/// (`cluster.<name>.update_*`), and whether the ADS stream is up
/// (`control_plane.connected_state`). A response with a rejected resource
/// counts as rejected (it is NACKed) even though the others went live.
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

/// One subscription's three update counters.
struct Updates {
    attempt: Counter,
    success: Counter,
    rejected: Counter,
}

impl Updates {
    fn count(&self, ok: bool) {
        self.attempt.increment(1);
        if ok {
            self.success.increment(1);
        } else {
            self.rejected.increment(1);
        }
    }
}

struct Handles {
    lds: Updates,
    cds: Updates,
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
                lds: Updates {
                    attempt: counter!("envoy_listener_manager_lds_update_attempt"),
                    success: counter!("envoy_listener_manager_lds_update_success"),
                    rejected: counter!("envoy_listener_manager_lds_update_rejected"),
                },
                cds: Updates {
                    attempt: counter!("envoy_cluster_manager_cds_update_attempt"),
                    success: counter!("envoy_cluster_manager_cds_update_success"),
                    rejected: counter!("envoy_cluster_manager_cds_update_rejected"),
                },
                connected: gauge!("envoy_control_plane_connected_state"),
            })
        })
    }

    /// Counts one response of `kind`: `result` is what the cache made of
    /// it (`Err`: refused whole), `cache` the cache after it (for the stat
    /// prefixes of route configs and the clusters of assignments).
    pub(crate) fn update(&self, kind: Kind, result: &Result<Outcome, Vec<String>>, cache: &Cache) {
        let ok = result.as_ref().is_ok_and(|o| o.rejected.is_empty());
        match kind {
            Kind::Listener => self.handles().lds.count(ok),
            Kind::Cluster => self.handles().cds.count(ok),
            Kind::Route | Kind::Endpoint => {
                let Ok(outcome) = result else { return };
                let rejected = outcome.rejected.iter().filter(|r| r.kind == kind);
                let each = outcome
                    .accepted
                    .iter()
                    .map(|n| (n.as_str(), true))
                    .chain(rejected.map(|r| (r.name.as_str(), false)));
                metrics::with_local_recorder(&*self.recorder, || {
                    for (name, ok) in each {
                        if kind == Kind::Route {
                            if let Some(prefix) = cache.rds_stat_prefix(name) {
                                rds(prefix, name).count(ok);
                            }
                        } else {
                            for cluster in cache.eds_clusters(name) {
                                eds(cluster).count(ok);
                            }
                        }
                    }
                });
            }
            Kind::Secret => {}
        }
    }

    /// LDS and CDS subscriptions started: Envoy counts an attempt when a
    /// subscription starts as well as for every response.
    pub(crate) fn started(&self) {
        let h = self.handles();
        h.lds.attempt.increment(1);
        h.cds.attempt.increment(1);
    }

    pub(crate) fn connected(&self, up: bool) {
        self.handles().connected.set(if up { 1.0 } else { 0.0 });
    }
}

/// `http.<prefix>.rds.<name>.update_*`, as Envoy's tag extraction labels
/// them. Looked up per update (the control path), never per request.
fn rds(prefix: &str, name: &str) -> Updates {
    let labels = [
        ("envoy_http_conn_manager_prefix", prefix.to_owned()),
        ("envoy_rds_route_config", name.to_owned()),
    ];
    Updates {
        attempt: counter!("envoy_http_rds_update_attempt", &labels),
        success: counter!("envoy_http_rds_update_success", &labels),
        rejected: counter!("envoy_http_rds_update_rejected", &labels),
    }
}

/// `cluster.<name>.update_*`: an EDS cluster's subscription.
fn eds(cluster: &str) -> Updates {
    let labels = [("envoy_cluster_name", cluster.to_owned())];
    Updates {
        attempt: counter!("envoy_cluster_update_attempt", &labels),
        success: counter!("envoy_cluster_update_success", &labels),
        rejected: counter!("envoy_cluster_update_rejected", &labels),
    }
}
