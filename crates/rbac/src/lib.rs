//! Role-based access control as Envoy runs it: the engine over the model's
//! RBAC policies (`engine`: pure matching, no I/O, no allocation per
//! evaluation; `compiled`: the same with per-policy path guards, for the
//! filters' own rules), the HTTP RBAC filter (`envoy.filters.http.rbac`, with
//! `RBACPerRoute`) and the network RBAC read filter
//! (`envoy.filters.network.rbac`). The front end translates their configs
//! into `strait_model::rbac` values; [`register`] adds the factories to a
//! proxy's registries.
//!
//! Depends on the model and the data tier (http for the filter trait and
//! dynamic metadata, listener for read filters, tls for peer identities).

pub mod compiled;
pub mod engine;
pub mod http;
pub mod network;
pub mod stats;

pub use compiled::CompiledRules;
pub use engine::{Input, Verdict, evaluate};
pub use http::HttpRbacFactory;
pub use network::NetworkRbacFactory;

/// Registers the RBAC filters in `http` and `network`, unless a factory is
/// already registered for their type URLs (an embedding program's own
/// wins).
pub fn register(
    http: &mut strait_http::HttpFilterRegistry,
    network: &mut strait_listener::NetworkFilterRegistry,
) {
    use strait_model::rbac::type_url;
    if !http.has(type_url::HTTP) {
        http.register(HttpRbacFactory);
    }
    if !network.has_read(type_url::NETWORK) {
        network.register_read(NetworkRbacFactory);
    }
}
