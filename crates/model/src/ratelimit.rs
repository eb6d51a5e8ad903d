//! Rate limits: the route's `rate_limits` (what descriptors a request
//! produces) and the three filters that act on them, as Envoy 1.40 runs
//! them: the HTTP local rate limit (`envoy.filters.http.local_ratelimit`,
//! token buckets in the proxy), the network local rate limit
//! (`envoy.filters.network.local_ratelimit`, a bucket of connections) and
//! the global rate limit (`envoy.filters.http.ratelimit`, a gRPC rate-limit
//! service asked through a cluster).
//!
//! Pure data. The one exception is [`LimiterSlot`]: Envoy's per-route
//! local rate limit config object owns its token bucket, so the model value
//! that stands for that object carries an empty slot the data plane fills
//! once (see decision 0015); it is invisible to equality.

use std::{
    any::Any,
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use crate::{
    HeaderToAdd,
    policy::{Fraction, HeaderCondition},
};

/// The type URLs of the rate-limit filters' configs.
pub mod type_url {
    /// `envoy.filters.http.local_ratelimit`: [`super::LocalRateLimit`],
    /// also its per-route config (the same message).
    pub const HTTP_LOCAL: &str =
        "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
    /// `envoy.filters.network.local_ratelimit`: [`super::NetworkLocalRateLimit`].
    pub const NETWORK_LOCAL: &str =
        "type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit";
    /// `envoy.filters.http.ratelimit`: [`super::RateLimit`].
    pub const HTTP_GLOBAL: &str =
        "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
}

/// A route's rate-limit policies, as the filters read them at request
/// time: the route's own `rate_limits`, its virtual host's, and
/// `include_vh_rate_limits`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteRateLimits {
    /// `RouteAction.rate_limits`.
    pub route: Vec<RateLimitPolicy>,
    /// `VirtualHost.rate_limits`.
    pub virtual_host: Vec<RateLimitPolicy>,
    /// `RouteAction.include_vh_rate_limits` (deprecated in Envoy, still
    /// honoured): the virtual host's policies are added even when the
    /// route has its own.
    pub include_vh_rate_limits: bool,
}

impl RouteRateLimits {
    pub fn is_empty(&self) -> bool {
        self.route.is_empty() && self.virtual_host.is_empty()
    }
}

/// `config.route.v3.RateLimit`: one descriptor's recipe.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RateLimitPolicy {
    /// `stage` (default 0): only filters of the same stage use it.
    pub stage: u32,
    /// `disable_key`: the local filter skips such a policy; the global
    /// filter keeps it unless the runtime key
    /// `ratelimit.<disable_key>.http_filter_enabled` turns it off, which
    /// without a runtime layer it never does.
    pub disable_key: String,
    /// The actions, in order: each adds one entry; if any produces nothing
    /// the whole descriptor is dropped.
    pub actions: Vec<RateLimitAction>,
}

/// `config.route.v3.RateLimit.Action`: where one descriptor entry comes
/// from.
#[derive(Debug, Clone, PartialEq)]
pub enum RateLimitAction {
    /// `source_cluster`: (`source_cluster`, the node's cluster, as the
    /// bootstrap's `node.cluster` or `--service-cluster` named it when the
    /// route was translated).
    SourceCluster(String),
    /// `destination_cluster`: (`destination_cluster`, the route's cluster).
    DestinationCluster,
    /// `request_headers`: (`descriptor_key`, the header's value).
    RequestHeaders {
        /// Lower-cased.
        header_name: String,
        descriptor_key: String,
        /// An absent header skips this action instead of dropping the
        /// descriptor.
        skip_if_absent: bool,
    },
    /// `remote_address`: (`remote_address`, the trusted client address).
    RemoteAddress,
    /// `generic_key`: (`descriptor_key` or `generic_key`, `descriptor_value`).
    GenericKey {
        descriptor_key: String,
        descriptor_value: String,
    },
    /// `header_value_match`: (`descriptor_key` or `header_match`,
    /// `descriptor_value`) when the headers match as `expect_match` says;
    /// otherwise `default_value` if set, else nothing.
    HeaderValueMatch {
        descriptor_key: String,
        descriptor_value: String,
        default_value: String,
        expect_match: bool,
        headers: Vec<HeaderCondition>,
    },
}

/// `type.v3.TokenBucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    pub max_tokens: u32,
    /// `tokens_per_fill` (default 1).
    pub tokens_per_fill: u32,
    /// At least 50 ms.
    pub fill_interval: Duration,
}

/// One `LocalRateLimitDescriptor`: a descriptor's own bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDescriptor {
    /// (key, value) pairs in order, matched exactly (wildcards, Envoy's
    /// dynamic descriptors, are refused by the front end).
    pub entries: Vec<(String, String)>,
    pub token_bucket: TokenBucket,
}

/// `x-ratelimit-*` headers (`enable_x_ratelimit_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XRateLimitHeaders {
    #[default]
    Off,
    /// `DRAFT_VERSION_03`: `x-ratelimit-limit`, `-remaining`, `-reset`.
    Draft03,
}

/// `vh_rate_limits` of the local filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VhRateLimits {
    /// `OVERRIDE` (default): the virtual host's policies only when the
    /// route has none.
    #[default]
    Override,
    /// `INCLUDE`: the route's and the virtual host's.
    Include,
    /// `IGNORE`: the route's only.
    Ignore,
}

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`, the
/// filter's config and (the same message) its per-route config.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRateLimit {
    /// Stats are `<stat_prefix>.http_local_rate_limit.*`.
    pub stat_prefix: String,
    /// The answer's status (default, and anything below 400: 429).
    pub status: u16,
    /// The default bucket; `None` (no `token_bucket`, or a zero
    /// `fill_interval`): no default bucket, requests no descriptor matched
    /// are allowed.
    pub token_bucket: Option<TokenBucket>,
    /// `filter_enabled`: unset means the filter does nothing.
    pub filter_enabled: Option<Fraction>,
    /// `filter_enforced`: unset means limited requests still go on.
    pub filter_enforced: Option<Fraction>,
    pub request_headers_to_add_when_not_enforced: Vec<HeaderToAdd>,
    pub response_headers_to_add: Vec<HeaderToAdd>,
    pub descriptors: Vec<LocalDescriptor>,
    pub stage: u32,
    /// `local_rate_limit_per_downstream_connection`: buckets per
    /// connection instead of per filter.
    pub per_connection: bool,
    pub x_ratelimit_headers: XRateLimitHeaders,
    pub vh_rate_limits: VhRateLimits,
    /// `always_consume_default_token_bucket` (default true).
    pub always_consume_default_token_bucket: bool,
    /// Where the data plane keeps this config object's limiter.
    pub limiter: LimiterSlot,
}

/// `envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkLocalRateLimit {
    /// Stats are `<stat_prefix>.local_rate_limit.*`.
    pub stat_prefix: String,
    pub token_bucket: TokenBucket,
    /// `runtime_enabled`'s default (true when unset).
    pub enabled: bool,
}

/// `envoy.extensions.filters.http.ratelimit.v3.RateLimit`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub domain: String,
    pub stage: u32,
    pub request_type: RequestType,
    /// `timeout` (default 20 ms); `None`: no timeout (0 in the config).
    pub timeout: Option<Duration>,
    pub failure_mode_deny: bool,
    /// The rate-limit service's cluster (`envoy_grpc.cluster_name`).
    pub cluster: String,
    /// `envoy_grpc.authority` (the cluster name when empty).
    pub authority: String,
    pub x_ratelimit_headers: XRateLimitHeaders,
    pub disable_x_envoy_ratelimited_header: bool,
    /// `rate_limited_status` (default, and anything below 400: 429).
    pub rate_limited_status: u16,
    /// `status_on_error` (default 500) under `failure_mode_deny`.
    pub status_on_error: u16,
    /// `filter_enabled` (default: all).
    pub filter_enabled: Fraction,
    /// `filter_enforced` (default: all).
    pub filter_enforced: Fraction,
}

/// `request_type`: which requests the global filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestType {
    #[default]
    Both,
    /// `x-envoy-internal: true` requests only.
    Internal,
    External,
}

/// An empty cell the data plane fills with the limiter of the config
/// object it belongs to. Clones share the cell (the model clones a
/// virtual host's per-route config into each of its routes, and Envoy's
/// virtual-host config is one object, so one bucket). Equality ignores it:
/// two configs are the same whatever their limiters hold.
#[derive(Clone, Default)]
pub struct LimiterSlot(Arc<OnceLock<Arc<dyn Any + Send + Sync>>>);

impl LimiterSlot {
    /// The value in the cell, made by `make` on first use. Lock-free once
    /// filled; `make` may run on two threads at once, one result is kept.
    pub fn get_or_init<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<&T> {
        self.0
            .get_or_init(|| Arc::new(make()) as Arc<dyn Any + Send + Sync>)
            .downcast_ref::<T>()
    }
}

impl LimiterSlot {
    /// Whether both are the same cell (clones of one config object).
    pub fn same(&self, other: &LimiterSlot) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for LimiterSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for LimiterSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "LimiterSlot(filled)"
        } else {
            "LimiterSlot(empty)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_clones_share_and_equality_ignores_it() {
        let a = LimiterSlot::default();
        let b = a.clone();
        assert_eq!(a.get_or_init(|| 7u32), Some(&7));
        assert_eq!(b.get_or_init(|| 8u32), Some(&7));
        assert_eq!(a, LimiterSlot::default());
    }
}
