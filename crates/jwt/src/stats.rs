//! `http.<hcm>.jwt_authn.*`, the counters Envoy 1.40 shows for the filter
//! (compared with Envoy in `tests/jwt.rs`): requests allowed and denied,
//! CORS preflights let through, remote key-set fetches, and token cache
//! lookups (a lookup is counted for each token checked against a named
//! provider; a hit needs the provider's `jwt_cache_config`, as in Envoy).

use metrics::Counter;

pub(crate) struct JwtStats {
    pub(crate) allowed: Counter,
    pub(crate) denied: Counter,
    pub(crate) cors_preflight_bypassed: Counter,
    pub(crate) jwks_fetch_success: Counter,
    pub(crate) jwks_fetch_failed: Counter,
    pub(crate) jwt_cache_hit: Counter,
    pub(crate) jwt_cache_miss: Counter,
}

impl JwtStats {
    pub(crate) fn new(hcm: &str) -> Self {
        let labels = [("envoy_http_conn_manager_prefix", hcm.to_owned())];
        let c = |name: &str| metrics::counter!(format!("envoy_http_jwt_authn_{name}"), &labels);
        JwtStats {
            allowed: c("allowed"),
            denied: c("denied"),
            cors_preflight_bypassed: c("cors_preflight_bypassed"),
            jwks_fetch_success: c("jwks_fetch_success"),
            jwks_fetch_failed: c("jwks_fetch_failed"),
            jwt_cache_hit: c("jwt_cache_hit"),
            jwt_cache_miss: c("jwt_cache_miss"),
        }
    }
}
