//! HTTP filters that run before the router: `envoy.filters.http.fault`,
//! `envoy.filters.http.cors` and `envoy.filters.http.header_mutation`.
//!
//! Filters are the [`HttpFilterConfig`] enum of the config model, not trait
//! objects: the request path walks the connection manager's list and
//! dispatches with a `match`. This crate decides (is this request faulted,
//! is it a preflight, which headers change); the caller owns the request,
//! the clock and the randomness, so everything here is pure, synchronous and
//! allocation-free unless a doc comment says otherwise.
//!
//! Depends only on `strait-envoy` and `http`; never on I/O crates.

pub mod cors;
pub mod fault;
pub mod mutation;

use strait_model::{
    HttpFilter,
    filter::{
        CorsPolicy, FaultConfig, FilterOverride, FilterOverrideConfig, HeaderMutationConfig,
        HttpFilterConfig, find_override,
    },
};

/// Why a filter could not be built. Kept for the filters that will need
/// compilation; today every config is usable as translated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    #[error("filter {name}: {message}")]
    Invalid { name: String, message: String },
}

/// What one filter does for one request, after the route's
/// `typed_per_filter_config` has been applied.
#[derive(Debug, Clone, Copy)]
pub enum Active<'a> {
    Fault(&'a FaultConfig),
    /// The CORS filter with the route's (or virtual host's) policy.
    Cors(&'a CorsPolicy),
    /// The filter's own mutations, then the route's levels (most specific
    /// first), in reverse when `most_specific_wins`.
    HeaderMutation {
        filter: &'a HeaderMutationConfig,
        route: &'a [HeaderMutationConfig],
        most_specific_wins: bool,
    },
}

/// The effective behaviour of `filter` for a request whose route carries
/// `overrides`; `None` when the filter does nothing for it (disabled, or a
/// CORS filter on a route without a policy). Allocation-free.
pub fn active<'a>(filter: &'a HttpFilter, overrides: &'a [FilterOverride]) -> Option<Active<'a>> {
    let over = find_override(overrides, &filter.name);
    match over {
        Some(FilterOverrideConfig::Disabled) => return None,
        None if filter.disabled => return None,
        _ => {}
    }
    match &filter.config {
        HttpFilterConfig::Fault(base) => match over {
            // The per-route fault config replaces the filter's wholesale.
            Some(FilterOverrideConfig::Fault(f)) => Some(Active::Fault(f)),
            _ => Some(Active::Fault(base)),
        },
        HttpFilterConfig::Cors => {
            let policy = match over {
                Some(FilterOverrideConfig::Cors(p)) => Some(p),
                // The deprecated `cors` fields apply to any CORS filter.
                _ => match find_override(overrides, "") {
                    Some(FilterOverrideConfig::Cors(p)) => Some(p),
                    _ => None,
                },
            };
            policy.map(Active::Cors)
        }
        HttpFilterConfig::HeaderMutation {
            mutations,
            most_specific_wins,
        } => Some(Active::HeaderMutation {
            filter: mutations,
            route: match over {
                Some(FilterOverrideConfig::HeaderMutation(levels)) => levels,
                _ => &[],
            },
            most_specific_wins: *most_specific_wins,
        }),
    }
}
