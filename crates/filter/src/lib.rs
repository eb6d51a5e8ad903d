//! HTTP filters that run before the router: `envoy.filters.http.fault`,
//! `envoy.filters.http.cors` and `envoy.filters.http.header_mutation`.
//!
//! This crate decides (is this request faulted, is it a preflight, which
//! headers change); `strait-http` runs the filters in its filter chain and
//! owns the request, the clock and the randomness, so everything here is
//! pure, synchronous and allocation-free unless a doc comment says
//! otherwise.
//!
//! Depends only on `strait-model` and `http`; never on I/O crates.

pub mod cors;
pub mod fault;
pub mod mutation;

/// Why a filter could not be built. Kept for the filters that will need
/// compilation; today every config is usable as translated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    #[error("filter {name}: {message}")]
    Invalid { name: String, message: String },
}
