//! The rate-limit filters' counters, named as Envoy 1.40 names them (its
//! `/stats` name, then the Prometheus name and label its tag extractors
//! make of it):
//! - HTTP local: `<stat_prefix>.http_local_rate_limit.{enabled,enforced,
//!   rate_limited,ok,shadow_mode}`, `envoy_http_local_rate_limit_<x>
//!   {envoy_local_http_ratelimit_prefix="<stat_prefix>"}`;
//! - network local: `local_rate_limit.<stat_prefix>.rate_limited`,
//!   `envoy_local_rate_limit_rate_limited{envoy_local_network_ratelimit_prefix=…}`;
//! - global: `cluster.<route's cluster>.ratelimit.{ok,over_limit,error,
//!   failure_mode_allowed}`, `envoy_cluster_ratelimit_<x>{envoy_cluster_name=…}`
//!   (the cluster the request was routed to, not the service's).
//!
//! Handles are made when a filter is built (or a per-route config, or a
//! cluster, is first used), so a request only increments atomics.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use metrics::Counter;
use strait_upstream::ClusterRegistry;

/// One HTTP local rate limit config's counters.
#[derive(Debug, Clone)]
pub struct LocalStats {
    pub enabled: Counter,
    pub enforced: Counter,
    pub rate_limited: Counter,
    pub ok: Counter,
}

impl LocalStats {
    pub fn new(stat_prefix: &str) -> Self {
        let labels = [("envoy_local_http_ratelimit_prefix", stat_prefix.to_owned())];
        // Envoy also has `shadow_mode`, counted only by shadow descriptors
        // (refused here): registered so the set of names is Envoy's.
        let _ = metrics::counter!("envoy_http_local_rate_limit_shadow_mode", &labels);
        LocalStats {
            enabled: metrics::counter!("envoy_http_local_rate_limit_enabled", &labels),
            enforced: metrics::counter!("envoy_http_local_rate_limit_enforced", &labels),
            rate_limited: metrics::counter!("envoy_http_local_rate_limit_rate_limited", &labels),
            ok: metrics::counter!("envoy_http_local_rate_limit_ok", &labels),
        }
    }
}

/// The network local rate limit's counter.
pub fn network_rate_limited(stat_prefix: &str) -> Counter {
    metrics::counter!(
        "envoy_local_rate_limit_rate_limited",
        &[(
            "envoy_local_network_ratelimit_prefix",
            stat_prefix.to_owned()
        )]
    )
}

/// The global filter's counters in one cluster's scope.
#[derive(Debug, Clone)]
pub struct ClusterStats {
    pub ok: Counter,
    pub over_limit: Counter,
    pub error: Counter,
    pub failure_mode_allowed: Counter,
}

impl ClusterStats {
    fn new(cluster: &str) -> Self {
        let labels = [("envoy_cluster_name", cluster.to_owned())];
        ClusterStats {
            ok: metrics::counter!("envoy_cluster_ratelimit_ok", &labels),
            over_limit: metrics::counter!("envoy_cluster_ratelimit_over_limit", &labels),
            error: metrics::counter!("envoy_cluster_ratelimit_error", &labels),
            failure_mode_allowed: metrics::counter!(
                "envoy_cluster_ratelimit_failure_mode_allowed",
                &labels
            ),
        }
    }
}

/// The global filter's counters by cluster, made on a cluster's first
/// use: one lock-free lookup per request after that.
#[derive(Debug, Default)]
pub struct ByCluster(ArcSwap<HashMap<String, Arc<ClusterStats>>>);

impl ByCluster {
    pub fn get(&self, cluster: &str, registry: &ClusterRegistry) -> Arc<ClusterStats> {
        if let Some(s) = self.0.load().get(cluster) {
            return Arc::clone(s);
        }
        let made = Arc::new(registry.register(|| ClusterStats::new(cluster)));
        self.0.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(cluster.to_owned())
                .or_insert_with(|| Arc::clone(&made));
            m
        });
        self.0.load().get(cluster).cloned().unwrap_or(made)
    }
}
