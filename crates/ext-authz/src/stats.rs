//! The HTTP filter's counters under Envoy 1.40's names (checked against
//! Envoy in `tests/ext_authz.rs`): `http.<hcm>.ext_authz.[<stat_prefix>.]*`
//! (Prometheus: the connection manager's prefix and the filter's
//! `stat_prefix` as the labels `envoy_http_conn_manager_prefix` and
//! `envoy_ext_authz_prefix`), every one made when the filter is built; and
//! `cluster.<routed cluster>.ext_authz.{ok,denied,error,failure_mode_allowed}`, which Envoy
//! charges to the cluster the request was routed to and creates only when
//! first incremented.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use arc_swap::ArcSwap;
use metrics::Counter;
use strait_upstream::ClusterRegistry;

/// The filter's own counters.
pub(crate) struct FilterStats {
    pub(crate) ok: Counter,
    pub(crate) denied: Counter,
    pub(crate) error: Counter,
    pub(crate) failure_mode_allowed: Counter,
    pub(crate) disabled: Counter,
    /// Counters Envoy shows for features Strait refuses (shadow mode,
    /// header limits, dynamic metadata ingestion): always zero here,
    /// registered so dashboards find them.
    _zero: Vec<Counter>,
    by_cluster: ByCluster,
}

/// Which per-cluster counter.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Ok,
    Denied,
    Error,
    FailureModeAllowed,
}

impl FilterStats {
    pub(crate) fn new(hcm: &str, stat_prefix: &str) -> Self {
        let mut labels = Vec::with_capacity(2);
        if !stat_prefix.is_empty() {
            labels.push(("envoy_ext_authz_prefix", stat_prefix.to_owned()));
        }
        labels.push(("envoy_http_conn_manager_prefix", hcm.to_owned()));
        let c = |name: &str| metrics::counter!(format!("envoy_http_ext_authz_{name}"), &labels);
        FilterStats {
            ok: c("ok"),
            denied: c("denied"),
            error: c("error"),
            failure_mode_allowed: c("failure_mode_allowed"),
            disabled: c("disabled"),
            _zero: [
                "filter_state_name_collision",
                "ignored_dynamic_metadata",
                "invalid",
                "omitted_response_headers",
                "request_header_limits_reached",
                "response_header_limits_reached",
                "shadow_denied",
                "shadow_error",
            ]
            .into_iter()
            .map(c)
            .collect(),
            by_cluster: ByCluster {
                prefix: (!stat_prefix.is_empty()).then(|| stat_prefix.to_owned()),
                map: ArcSwap::default(),
            },
        }
    }

    /// Counts `outcome` for the routed `cluster`, if the request has one.
    pub(crate) fn cluster(
        &self,
        cluster: Option<&str>,
        registry: &ClusterRegistry,
        outcome: Outcome,
    ) {
        if let Some(cluster) = cluster {
            self.by_cluster.count(cluster, registry, outcome);
        }
    }
}

/// One cluster's counters, each made on its first use.
#[derive(Default)]
struct ClusterCounters([OnceLock<Counter>; 4]);

struct ByCluster {
    prefix: Option<String>,
    /// Read lock-free per request; written once per new cluster.
    map: ArcSwap<HashMap<String, Arc<ClusterCounters>>>,
}

impl ByCluster {
    fn count(&self, cluster: &str, registry: &ClusterRegistry, outcome: Outcome) {
        let counters = match self.map.load().get(cluster) {
            Some(c) => Arc::clone(c),
            None => {
                self.map.rcu(|m| {
                    let mut m = HashMap::clone(m);
                    m.entry(cluster.to_owned()).or_default();
                    m
                });
                match self.map.load().get(cluster) {
                    Some(c) => Arc::clone(c),
                    None => return,
                }
            }
        };
        let (slot, name) = match outcome {
            Outcome::Ok => (&counters.0[0], "ok"),
            Outcome::Denied => (&counters.0[1], "denied"),
            Outcome::Error => (&counters.0[2], "error"),
            Outcome::FailureModeAllowed => (&counters.0[3], "failure_mode_allowed"),
        };
        slot.get_or_init(|| {
            let mut labels = vec![("envoy_cluster_name", cluster.to_owned())];
            if let Some(p) = &self.prefix {
                labels.push(("envoy_ext_authz_prefix", p.clone()));
            }
            registry
                .register(|| metrics::counter!(format!("envoy_cluster_ext_authz_{name}"), &labels))
        })
        .increment(1);
    }
}
