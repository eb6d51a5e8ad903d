//! HTTP filters (before the router) and their per-route overrides.
//!
//! A filter's config is an [`Extension`]: the type URL names the factory
//! that made it and runs it. The built-in filters' configs are the types
//! below, under the type URLs in [`type_url`]; an embedding program's
//! filters carry types of its own the same way.

use std::time::Duration;

use super::{
    AppendAction,
    extension::Extension,
    policy::{Fraction, HeaderCondition, ValueMatcher},
};

/// The type URLs of the built-in HTTP filters' configs.
pub mod type_url {
    /// `envoy.filters.http.fault`: [`super::FaultConfig`], also per route.
    pub const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
    /// `envoy.filters.http.cors`: [`super::CorsFilter`].
    pub const CORS: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
    /// The CORS filter's per-route config: [`super::CorsPolicy`].
    pub const CORS_POLICY: &str =
        "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";
    /// `envoy.filters.http.header_mutation`: [`super::HeaderMutationFilter`].
    pub const HEADER_MUTATION: &str =
        "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
    /// Its per-route config: [`super::HeaderMutationConfig`].
    pub const HEADER_MUTATION_PER_ROUTE: &str = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";
    /// `envoy.filters.http.router`, the terminal filter: [`super::RouterConfig`].
    pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    /// `envoy.filters.http.ext_authz`: [`crate::ext_authz::ExtAuthz`].
    pub const EXT_AUTHZ: &str =
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
    /// Its per-route config: [`crate::ext_authz::ExtAuthzPerRoute`].
    pub const EXT_AUTHZ_PER_ROUTE: &str =
        "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
    /// `envoy.filters.network.ext_authz`, a read filter:
    /// [`crate::ext_authz::NetworkExtAuthz`].
    pub const NETWORK_EXT_AUTHZ: &str =
        "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";
}

/// `envoy.filters.http.router`'s config. Strait accepts only Envoy's
/// defaults for the router's own options, so it carries nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterConfig;

/// The router as a connection manager's terminal filter.
pub fn router() -> Extension {
    Extension::new(type_url::ROUTER, RouterConfig)
}

/// One entry of the connection manager's `http_filters` (the router, always
/// last, is implied and not listed).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFilter {
    /// The entry's `name`: what `typed_per_filter_config` keys refer to.
    pub name: String,
    /// `disabled: true`: off unless a route or virtual host enables it.
    pub disabled: bool,
    /// The filter's config, as its factory validated it.
    pub config: Extension,
}

/// `envoy.filters.http.cors`: the filter has no config; the policy comes
/// from routes and virtual hosts, and a route without one is untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CorsFilter;

/// `envoy.filters.http.header_mutation`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderMutationFilter {
    pub mutations: HeaderMutationConfig,
    /// `most_specific_header_mutations_wins`: per-route levels are applied
    /// least specific first (so the most specific one's writes stay)
    /// instead of Envoy's default, most specific first.
    pub most_specific_wins: bool,
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

/// One `typed_per_filter_config` entry of one level (route, virtual host,
/// route configuration). A route lists the entries of all its levels, most
/// specific first, so a name may occur once per level: a filter that reads
/// only the most specific config takes the first ([`find_override`]), one
/// that evaluates every level (header mutation, as in Envoy) takes them all
/// ([`overrides_named`]).
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
    /// The filter's per-route config, as its factory validated it.
    Config(Extension),
}

impl FilterOverrideConfig {
    /// The per-route config as its factory's type, if this level has one.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        match self {
            FilterOverrideConfig::Config(e) => e.get(),
            FilterOverrideConfig::Disabled | FilterOverrideConfig::Enabled => None,
        }
    }
}

/// Looks up the most specific override for the filter named `name`.
pub fn find_override<'a>(
    overrides: &'a [FilterOverride],
    name: &str,
) -> Option<&'a FilterOverrideConfig> {
    overrides.iter().find(|o| o.name == name).map(|o| &o.config)
}

/// Every level's override for the filter named `name`, most specific first.
pub fn overrides_named<'a>(
    overrides: &'a [FilterOverride],
    name: &'a str,
) -> impl DoubleEndedIterator<Item = &'a FilterOverrideConfig> {
    overrides
        .iter()
        .filter(move |o| o.name == name)
        .map(|o| &o.config)
}
