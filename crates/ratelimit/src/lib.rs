//! Rate limits as Envoy 1.40 runs them: the HTTP local rate limit
//! (`envoy.filters.http.local_ratelimit`: token buckets in the proxy,
//! per filter config or per connection, by the route's descriptors), the
//! network local rate limit (`envoy.filters.network.local_ratelimit`: a
//! bucket of connections) and the global rate limit
//! (`envoy.filters.http.ratelimit`: a gRPC rate-limit service asked through
//! one of the proxy's clusters). The front end translates their configs
//! and the routes' `rate_limits` into `strait_model::ratelimit`;
//! [`register`] adds the factories to a proxy's registries.
//!
//! Buckets are lock-free (one atomic word each, refilled lazily from a
//! monotonic clock: [`bucket`]) and shared by every worker; see decision
//! 0015 for what a config change does to them.
//!
//! Depends on the model and the data tier (http for the filter trait,
//! listener for read filters, upstream and codec for the service's
//! cluster, route for header changes); the service's protobuf messages
//! are encoded by hand ([`rls`]), so no protobuf library.

pub mod bucket;
pub mod descriptor;
pub mod global;
pub mod limiter;
pub mod local;
pub mod network;
pub mod rls;
pub mod stats;

pub use global::RateLimitFactory;
pub use local::LocalRateLimitFactory;
pub use network::NetworkLocalRateLimitFactory;

/// Why a call to the rate-limit service failed (each is Envoy's "error"
/// outcome: `failure_mode_deny` decides what the request gets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    #[error("no such cluster")]
    NoCluster,
    #[error("no healthy upstream")]
    NoHealthyHost,
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("grpc-status {0}")]
    Status(u32),
    #[error("malformed answer")]
    Malformed,
    #[error("timeout")]
    Timeout,
}

/// Registers the rate-limit filters in `http` and `network`, unless a
/// factory is already registered for their type URLs (an embedding
/// program's own wins).
pub fn register(
    http: &mut strait_http::HttpFilterRegistry,
    network: &mut strait_listener::NetworkFilterRegistry,
) {
    use strait_model::ratelimit::type_url;
    if !http.has(type_url::HTTP_LOCAL) {
        http.register(LocalRateLimitFactory);
    }
    if !http.has(type_url::HTTP_GLOBAL) {
        http.register(RateLimitFactory);
    }
    if !network.has_read(type_url::NETWORK_LOCAL) {
        network.register_read(NetworkLocalRateLimitFactory);
    }
}
