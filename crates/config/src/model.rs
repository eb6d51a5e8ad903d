//! Strait's own config model: what the data plane needs, validated, with
//! Envoy's defaults already applied. Translation from Envoy protos lives in
//! [`crate::translate`]; compilation into matchers lives in higher crates.
//!
//! Every type derives `PartialEq` so a reload can tell an unchanged listener or
//! cluster from a changed one and keep its sockets and live state.

use std::{net::SocketAddr, time::Duration};

/// A whole static configuration: what one bootstrap file describes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The admin server's address; `None` means no admin server.
    pub admin: Option<Admin>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub address: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Unique among listeners; Envoy generates one when the file has none.
    pub name: String,
    pub address: SocketAddr,
    /// Envoy `per_connection_buffer_limit_bytes` (default 1 MiB): the read
    /// buffer bound per connection, which also bounds buffering of bodies.
    pub buffer_limit: u32,
    /// The single filter chain. Filter-chain matching (several chains) is the
    /// TLS issue's; until then more than one chain is refused.
    pub filter_chain: FilterChain,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterChain {
    /// The terminal network filter of the chain.
    pub terminal: NetworkFilter,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFilter {
    Http(HttpConnectionManager),
    Tcp(TcpProxy),
}

/// `envoy.filters.network.http_connection_manager`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec: CodecType,
    pub route_config: RouteConfig,
    /// `server_name`; Envoy's default `server_header_transformation` is
    /// OVERWRITE, so responses carry `server: <this>` (default "envoy").
    pub server_name: String,
    pub server_header: ServerHeaderTransformation,
    /// `upgrade_configs`: upgrade types (lower-case, e.g. "websocket") that are
    /// proxied. Others are refused as Envoy does (403).
    pub upgrades: Vec<String>,
    /// `stream_idle_timeout` (default 5 min); `None` disables.
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout` (default disabled).
    pub request_timeout: Option<Duration>,
    /// `common_http_protocol_options.idle_timeout` (default 1 h); `None` disables.
    pub idle_timeout: Option<Duration>,
    /// `max_request_headers_kb` (default 60).
    pub max_request_headers_kb: u32,
    /// `use_remote_address`: when true the peer address is appended to
    /// `x-forwarded-for` and `x-forwarded-proto` is set from the connection.
    pub use_remote_address: bool,
    /// `generate_request_id` (default true).
    pub generate_request_id: bool,
    /// HTTP filters before the router, in order. The router is implied last.
    pub http_filters: Vec<HttpFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecType {
    Auto,
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeaderTransformation {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

/// A non-router HTTP filter. Empty for now: the routing issue adds fault, cors
/// and header mutation.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFilter {}

/// `envoy.filters.network.tcp_proxy`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpProxy {
    pub stat_prefix: String,
    pub cluster: TcpCluster,
    /// `idle_timeout` (default 1 h); `None` disables.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TcpCluster {
    Single(String),
    Weighted(Vec<WeightedCluster>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

/// Envoy `RouteConfiguration`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualHost {
    pub name: String,
    /// As written: exact names, `*.suffix`, `prefix.*` or `*`. Lower-cased.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `case_sensitive` (default true).
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    /// Forward to a cluster.
    Forward(ForwardAction),
    /// Answer locally.
    DirectResponse { status: u16, body: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForwardAction {
    pub cluster: String,
    /// `timeout` (default 15 s); `None` (written as 0s) disables.
    pub timeout: Option<Duration>,
    /// `prefix_rewrite`, if any.
    pub prefix_rewrite: Option<String>,
}

/// Envoy `Cluster`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    /// `connect_timeout` (default 5 s).
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    /// Endpoints from `load_assignment`, in order.
    pub endpoints: Vec<Endpoint>,
    /// Upstream protocol, from `typed_extension_protocol_options`
    /// (`envoy.extensions.upstreams.http.v3.HttpProtocolOptions`).
    pub protocol: UpstreamProtocol,
    /// `per_connection_buffer_limit_bytes` (default 1 MiB).
    pub buffer_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    Static,
    /// `STRICT_DNS`: every address the names resolve to is a host.
    StrictDns {
        refresh_rate: Duration,
        /// `dns_lookup_family` (default `AUTO`): which address families the
        /// resolver asks for, and which it prefers.
        lookup_family: DnsLookupFamily,
    },
}

/// Envoy `Cluster.DnsLookupFamily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsLookupFamily {
    /// IPv6 first; IPv4 only when there is no IPv6 answer.
    Auto,
    V4Only,
    V6Only,
    /// IPv4 first; IPv6 only when there is no IPv4 answer.
    V4Preferred,
    /// Both families; every answer is a host.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP literal for STATIC clusters, a DNS name or IP for STRICT_DNS.
    pub host: String,
    pub port: u16,
    /// `load_balancing_weight` (default 1).
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c on plain TCP).
    Http2,
}
