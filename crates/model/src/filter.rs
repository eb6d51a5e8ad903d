//! HTTP filters (before the router) and their per-route overrides.

use std::time::Duration;

use super::{
    AppendAction,
    policy::{Fraction, HeaderCondition, ValueMatcher},
};

/// One entry of the connection manager's `http_filters` (the router, always
/// last, is implied and not listed).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFilter {
    /// The entry's `name`: what `typed_per_filter_config` keys refer to.
    pub name: String,
    /// `disabled: true`: off unless a route or virtual host enables it.
    pub disabled: bool,
    pub config: HttpFilterConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HttpFilterConfig {
    /// `envoy.filters.http.fault`.
    Fault(FaultConfig),
    /// `envoy.filters.http.cors`: the policy comes from routes and virtual
    /// hosts; a route without one is untouched.
    Cors,
    /// `envoy.filters.http.header_mutation`.
    HeaderMutation {
        mutations: HeaderMutationConfig,
        /// `most_specific_header_mutations_wins`: per-route levels are
        /// applied least specific first (so the most specific one's writes
        /// stay) instead of Envoy's default, most specific first.
        most_specific_wins: bool,
    },
}

/// `envoy.extensions.filters.http.fault.v3.HTTPFault` (also its per-route
/// form, which replaces the filter's config wholesale as in Envoy).
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    /// `max_active_faults`: no new fault while this many are in progress.
    pub max_active_faults: Option<u32>,
    /// `upstream_cluster`: only requests routed to this cluster.
    pub upstream_cluster: Option<String>,
    /// `headers`: only requests matching all of these.
    pub headers: Vec<HeaderCondition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultDelay {
    pub kind: FaultDelayKind,
    pub percentage: Fraction,
    /// Millionths per unit of `percentage`'s denominator: a header-delay
    /// fault's `x-envoy-fault-delay-request-percentage` is in those units.
    pub percentage_scale: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDelayKind {
    Fixed(Duration),
    /// `header_delay`: milliseconds from `x-envoy-fault-delay-request`.
    Header,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultAbort {
    pub kind: FaultAbortKind,
    pub percentage: Fraction,
    /// Millionths per unit of `percentage`'s denominator: a header-abort
    /// fault's `x-envoy-fault-abort-request-percentage` is in those units.
    pub percentage_scale: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAbortKind {
    /// `http_status`.
    Http(u16),
    /// `grpc_status`: answered as a trailers-only gRPC response.
    Grpc(u32),
    /// `header_abort`: `x-envoy-fault-abort-request` (HTTP status) or
    /// `x-envoy-fault-abort-grpc-request` (gRPC status).
    Header,
}

/// `envoy.extensions.filters.http.cors.v3.CorsPolicy`, or the deprecated
/// `cors` field of a virtual host or route action.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsPolicy {
    pub allow_origins: Vec<ValueMatcher>,
    pub allow_methods: Option<String>,
    pub allow_headers: Option<String>,
    pub expose_headers: Option<String>,
    pub max_age: Option<String>,
    pub allow_credentials: bool,
    pub allow_private_network_access: bool,
    /// `filter_enabled` (default 100%).
    pub enabled: Fraction,
    /// `forward_not_matching_preflights` (default true): a preflight from an
    /// origin that is not allowed goes upstream instead of being answered.
    pub forward_not_matching_preflights: bool,
}

/// `header_mutation.v3.Mutations`, also the per-route form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderMutationConfig {
    pub request: Vec<HeaderOp>,
    pub response: Vec<HeaderOp>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderOp {
    /// `append`: a `HeaderValueOption`. Parsed at load so a request does
    /// not parse (or allocate) names and values.
    Set {
        name: http::HeaderName,
        value: http::HeaderValue,
        action: AppendAction,
    },
    /// `remove`.
    Remove(http::HeaderName),
}

/// One `typed_per_filter_config` entry after merging route configuration,
/// virtual host and route (the most specific wins).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterOverride {
    /// The `http_filters[].name` it applies to; empty for the deprecated
    /// `cors` fields, which apply to whichever CORS filter runs.
    pub name: String,
    pub config: FilterOverrideConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterOverrideConfig {
    /// `config.route.v3.FilterConfig` with `disabled: true`.
    Disabled,
    /// `FilterConfig` without a config and not disabled: turns on a filter
    /// that the connection manager lists as `disabled`.
    Enabled,
    Fault(FaultConfig),
    Cors(CorsPolicy),
    /// `HeaderMutationPerRoute` of every level that sets one (route, virtual
    /// host, route configuration): Envoy evaluates them all. Most specific
    /// first.
    HeaderMutation(Vec<HeaderMutationConfig>),
}

/// Looks up the override for the filter named `name`.
pub fn find_override<'a>(
    overrides: &'a [FilterOverride],
    name: &str,
) -> Option<&'a FilterOverrideConfig> {
    overrides.iter().find(|o| o.name == name).map(|o| &o.config)
}
