//! Istio's telemetry filters as Strait runs them:
//!
//! - `istio.stats` (`stats.PluginConfig`, or Istio's null-VM Wasm
//!   `envoy.wasm.stats`) as an HTTP filter ([`stats`]): Istio's standard
//!   request metrics with Istio's labels;
//! - `istio.metadata_exchange` over HTTP (`io.istio.http.peer_metadata.Config`,
//!   or the null-VM Wasm `envoy.wasm.metadata_exchange`) ([`exchange`]):
//!   the `x-envoy-peer-metadata` headers that let two sidecars label each
//!   other's requests;
//! - `istio.alpn` ([`alpn`]): the ALPN a request's upstream TLS connection
//!   offers (`istio-http/1.1`, `istio-h2`), so the peer sidecar serves it
//!   on its HTTP filter chain (decision 0020);
//! - the TCP metadata exchange and `istio.stats` as a network filter.
//!
//! The front end translates both configs into `strait_model::istio`
//! (with the node's metadata and the listener's direction resolved);
//! [`register`] adds the factories to a proxy's registries. Depends on the
//! model and the data tier only.

pub mod alpn;
pub mod exchange;
pub mod peer;
pub mod stats;
pub mod tcp_exchange;
pub mod tcp_filter;
pub mod tcp_stats;
pub mod tcp_stream;

pub use alpn::IstioAlpnFactory;
pub use exchange::PeerMetadataFactory;
pub use stats::IstioStatsFactory;
pub use tcp_filter::TcpExchangeFactory;
pub use tcp_stats::IstioTcpStatsFactory;

/// Registers Istio's telemetry filters in `http` and `network`, unless a factory is
/// already registered for their type URLs (an embedding program's own
/// wins).
pub fn register(
    http: &mut strait_http::HttpFilterRegistry,
    network: &mut strait_listener::NetworkFilterRegistry,
) {
    use strait_model::istio::type_url;
    if !network.has_read(type_url::STATS) {
        network.register_read(IstioTcpStatsFactory);
    }
    if !network.has_read(type_url::TCP_METADATA_EXCHANGE) {
        network.register_read(TcpExchangeFactory);
    }
    if !network.has_upstream(type_url::TCP_METADATA_EXCHANGE) {
        network.register_upstream(TcpExchangeFactory);
    }
    if !http.has(type_url::STATS) {
        http.register(IstioStatsFactory);
    }
    if !http.has(type_url::PEER_METADATA) {
        http.register(PeerMetadataFactory);
    }
    if !http.has(type_url::ALPN) {
        http.register(IstioAlpnFactory);
    }
}
