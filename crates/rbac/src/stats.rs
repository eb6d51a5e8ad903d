//! The RBAC filters' counters, named as Envoy 1.40 names them:
//! `http.<hcm prefix>.rbac.[<rules_stat_prefix>.]allowed|denied`,
//! `http.<hcm prefix>.rbac.[<shadow_rules_stat_prefix>.]shadow_allowed|
//! shadow_denied`, and for the network filter
//! `<stat_prefix>rbac.allowed|denied` and
//! `<stat_prefix>rbac.[<shadow_rules_stat_prefix>.]shadow_*`. The
//! Prometheus names and labels are what Envoy's tag extractors make of
//! them. Handles are made when a filter is built, so a request or
//! connection only increments atomics.

use metrics::Counter;

/// One filter's four counters.
#[derive(Debug, Clone)]
pub struct RbacStats {
    pub allowed: Counter,
    pub denied: Counter,
    pub shadow_allowed: Counter,
    pub shadow_denied: Counter,
}

/// A label value as Envoy's extractors capture a prefix (without its dot).
fn tag(prefix: &str) -> String {
    prefix.strip_suffix('.').unwrap_or(prefix).to_owned()
}

impl RbacStats {
    /// The HTTP filter's counters in connection manager `hcm`.
    pub fn http(hcm: &str, rules_prefix: &str, shadow_prefix: &str) -> Self {
        let base = ("envoy_http_conn_manager_prefix", hcm.to_owned());
        // In Envoy's order: the rules' prefix tag, then the manager's.
        let labels = |prefix: &str| {
            let mut l = Vec::with_capacity(2);
            if !prefix.is_empty() {
                l.push(("envoy_rbac_http_prefix", tag(prefix)));
            }
            l.push(base.clone());
            l
        };
        let (rules, shadow) = (labels(rules_prefix), labels(shadow_prefix));
        RbacStats {
            allowed: metrics::counter!("envoy_http_rbac_allowed", &rules),
            denied: metrics::counter!("envoy_http_rbac_denied", &rules),
            shadow_allowed: metrics::counter!("envoy_http_rbac_shadow_allowed", &shadow),
            shadow_denied: metrics::counter!("envoy_http_rbac_shadow_denied", &shadow),
        }
    }

    /// The network filter's counters under `stat_prefix`.
    pub fn network(stat_prefix: &str, shadow_prefix: &str) -> Self {
        let shadow = if shadow_prefix.is_empty() {
            String::new()
        } else {
            format!("{}_", tag(shadow_prefix))
        };
        // Envoy's `tcp.` extractor also matches `tcp.rbac.*` (Istio's
        // prefix): it takes `rbac` as the TCP proxy's prefix.
        let (stem, labels) = if stat_prefix == "tcp." {
            (
                "envoy_",
                vec![
                    ("envoy_rbac_prefix", "tcp".to_owned()),
                    ("envoy_tcp_prefix", "rbac".to_owned()),
                ],
            )
        } else {
            ("envoy_rbac_", vec![("envoy_rbac_prefix", tag(stat_prefix))])
        };
        let name = |counter: &str, shadowed: bool| {
            format!(
                "{stem}{}{counter}",
                if shadowed { shadow.as_str() } else { "" }
            )
        };
        RbacStats {
            allowed: metrics::counter!(name("allowed", false), &labels),
            denied: metrics::counter!(name("denied", false), &labels),
            shadow_allowed: metrics::counter!(name("shadow_allowed", true), &labels),
            shadow_denied: metrics::counter!(name("shadow_denied", true), &labels),
        }
    }
}
