//! Strait's own config model: what the data plane needs, validated, with
//! Envoy's defaults already applied. Pure data: no protobuf, no I/O.
//!
//! Owns the types every data-tier crate compiles from (listeners, filter
//! chains, routes, clusters, TLS contexts, secrets) and the opaque
//! [`extension`] configs that filters registered by type URL carry. The Envoy
//! v3 front end (`strait-envoy`) translates into these types; compilation
//! into matchers lives in higher crates. Must not depend on any other Strait
//! crate, nor on `envoy-types` or `prost`: the crates below the front end
//! compile without them.
//!
//! Every type derives `PartialEq` so a reload can tell an unchanged listener or
//! cluster from a changed one and keep its sockets and live state.

use std::{net::SocketAddr, time::Duration};

pub mod access_log;
pub mod client_cert;
pub mod ext_authz;
pub mod extension;
pub mod filter;
pub mod istio;
pub mod jwt;
pub mod local_reply;
pub mod policy;
pub mod predicate;
pub mod ratelimit;
pub mod rbac;
mod route;
pub mod secret;
pub mod stats;
pub mod tls;
pub mod tracing;

pub use filter::HttpFilter;
pub use route::*;

/// What is wrong with a model value that the model itself can tell: a TLS
/// context naming a secret that is missing or of the wrong kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `path` names the value (e.g. `secret 'default'`).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// A whole static configuration: what one bootstrap file describes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The admin server's address; `None` means no admin server.
    pub admin: Option<Admin>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// Route configurations delivered by RDS, which listeners name through
    /// [`RouteSource::Rds`]. Always empty for a purely static bootstrap.
    pub route_configs: Vec<RouteConfig>,
    /// `dynamic_resources`: where the rest of the config comes from.
    pub dynamic: Option<DynamicResources>,
    /// The bootstrap's `node` (with the command line's overrides), as the
    /// control plane and the stats sinks are told it.
    pub node: Option<Node>,
    /// The global downstream connection limit (the overload manager's
    /// `envoy.resource_monitors.global_downstream_max_connections`, else the
    /// runtime key `overload.global_downstream_max_connections`): open
    /// connections on all listeners that do not `ignore_global_conn_limit`.
    /// `None`: unlimited.
    pub max_downstream_connections: Option<u64>,
    /// Named secrets: `static_resources.secrets`, plus those SDS delivered
    /// (the xDS client adds them). TLS contexts name them; the snapshot
    /// resolves the names when it compiles the contexts.
    pub secrets: secret::Secrets,
    /// `stats_sinks` with the flush interval; `None` without sinks. Read
    /// once at start-up (see `strait_admin::sinks`).
    pub stats_sinks: Option<stats::StatsSinks>,
    /// The bootstrap's `tracing.http` tracer: used by connection managers
    /// whose `tracing` names no provider (listeners from xDS too).
    pub tracer: Option<tracing::Provider>,
}

impl Config {
    /// True when something must run beside the static config: ADS
    /// (`dynamic_resources`) or an SDS source (ADS, gRPC or file) that a TLS
    /// context names.
    pub fn needs_xds(&self) -> bool {
        self.dynamic.is_some()
            || self
                .secret_refs()
                .any(|r| r.source != secret::SecretSource::Static)
    }

    /// Every secret reference of every listener's filter chains and every
    /// cluster.
    pub fn secret_refs(&self) -> impl Iterator<Item = &secret::SdsRef> {
        self.listeners
            .iter()
            .flat_map(Listener::secret_refs)
            .chain(self.clusters.iter().flat_map(Cluster::secret_refs))
    }

    /// The route configuration named `name` among [`Config::route_configs`].
    pub fn route_config(&self, name: &str) -> Option<&RouteConfig> {
        self.route_configs.iter().find(|rc| rc.name == name)
    }
}

/// Bootstrap `dynamic_resources`: an ADS stream carrying LDS and CDS (and the
/// RDS and EDS they lead to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicResources {
    /// The static cluster the ADS gRPC stream goes to
    /// (`ads_config.grpc_services[0].envoy_grpc.cluster_name`).
    pub ads_cluster: String,
    /// `ads_config.api_type`.
    pub api: AdsApi,
    /// `ads_config.set_node_on_first_message_only`.
    pub node_on_first_message_only: bool,
    /// `lds_config`/`cds_config` `initial_fetch_timeout` (default 15 s);
    /// `None` when 0 (wait forever).
    pub initial_fetch_timeout: Option<Duration>,
}

/// The xDS flavour of the ADS stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdsApi {
    /// `GRPC`: state of the world.
    StateOfTheWorld,
    /// `DELTA_GRPC`: incremental (Istio's default since 1.22).
    Delta,
}

/// The node's identity as plain data. `encoded` is the whole
/// `envoy.config.core.v3.Node` as the front end serialised it, which the
/// xDS client and the metrics service send verbatim: the model keeps no
/// protobuf type, and what a control plane reads of the node (metadata,
/// locality, user agent) must reach it unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    /// The protobuf encoding of the whole node.
    pub encoded: Vec<u8>,
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
    /// `filter_chains`, in config order. A connection gets the one whose
    /// `filter_chain_match` is most specific (Envoy's order), else
    /// `default_filter_chain`, else it is closed.
    pub filter_chains: Vec<FilterChain>,
    /// `default_filter_chain`: for connections no chain matches.
    pub default_filter_chain: Option<FilterChain>,
    /// `listener_filters` and their timeout.
    pub listener_filters: ListenerFilters,
    /// `ignore_global_conn_limit`: connections here are neither counted
    /// nor limited by [`Config::max_downstream_connections`].
    pub ignore_global_conn_limit: bool,
    /// `bind_to_port` (default true). A listener that does not bind is
    /// reached only by hand-off from a `use_original_dst` listener.
    pub bind_to_port: bool,
    /// `use_original_dst`: a connection redirected here (iptables
    /// `REDIRECT`) is handed to the listener whose address is its original
    /// destination (`ip:port`, else `0.0.0.0:port` / `[::]:port`); with
    /// none, this listener's own chains serve it. Implies the original
    /// destination filter (Envoy adds it too).
    pub use_original_dst: bool,
    /// `traffic_direction`: only `/drain_listeners?inboundonly` reads it.
    pub direction: TrafficDirection,
    /// `access_log`: written for connections closed before a filter chain
    /// took them (no chain matched: flag `NR`).
    pub access_logs: access_log::AccessLogs,
}

/// A listener's `traffic_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficDirection {
    #[default]
    Unspecified,
    Inbound,
    Outbound,
}

impl Listener {
    /// Every chain, `default_filter_chain` last; indices into this order
    /// name a chain (see the snapshot's filter-chain matching).
    pub fn chains(&self) -> impl Iterator<Item = &FilterChain> {
        self.filter_chains
            .iter()
            .chain(self.default_filter_chain.as_ref())
    }

    /// The RDS route config names this listener's HTTP chains need.
    pub fn rds_names(&self) -> impl Iterator<Item = &str> {
        self.chains().filter_map(|c| match &c.terminal {
            NetworkFilter::Http(hcm) => hcm.route_config.rds_name(),
            NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => None,
        })
    }

    /// The secrets this listener's TLS contexts name.
    pub fn secret_refs(&self) -> impl Iterator<Item = &secret::SdsRef> {
        self.chains()
            .filter_map(|c| c.tls.as_ref())
            .flat_map(|t| t.common.secret_refs())
    }
}

/// The listener filters Strait runs before choosing a filter chain. They
/// read the start of the connection; the bytes are replayed to the chain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListenerFilters {
    /// `envoy.filters.listener.tls_inspector`: SNI, ALPN, and transport
    /// protocol `tls` from the ClientHello.
    pub tls_inspector: bool,
    /// `envoy.filters.listener.http_inspector`: application protocol
    /// `http/1.1`, `http/1.0` or `h2c` for plaintext HTTP.
    pub http_inspector: bool,
    /// `listener_filters_timeout` (default 15 s); `None` disables.
    pub timeout: Option<Duration>,
    /// `continue_on_listener_filters_timeout` (default false: close).
    pub continue_on_timeout: bool,
    /// The TLS inspector's `filter_disabled`: connections it matches skip
    /// the inspector (and so have transport protocol `raw_buffer`).
    pub tls_inspector_disabled: Option<predicate::ListenerFilterPredicate>,
    /// The HTTP inspector's `filter_disabled`.
    pub http_inspector_disabled: Option<predicate::ListenerFilterPredicate>,
    /// `envoy.filters.listener.original_dst`: the connection's destination
    /// (for filter-chain matching and ORIGINAL_DST clusters) is its
    /// original destination before a NAT redirect, not the local address.
    pub original_dst: bool,
    /// Listener filters registered by type URL, in config order, after the
    /// built-in inspectors.
    pub registered: Vec<RegisteredListenerFilter>,
}

/// One `listener_filters` entry of a type registered by an embedding
/// program (or a crate above the front end).
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredListenerFilter {
    /// The entry's `name`, for logs.
    pub name: String,
    pub config: extension::Extension,
    /// `filter_disabled`: connections it matches skip the filter.
    pub disabled: Option<predicate::ListenerFilterPredicate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterChain {
    /// `name`, for logs and stats.
    pub name: String,
    pub matcher: FilterChainMatch,
    /// `transport_socket` `DownstreamTlsContext`; `None` is plaintext.
    pub tls: Option<tls::DownstreamTls>,
    /// `transport_socket_connect_timeout`: bounds the TLS handshake;
    /// `None` (Envoy's default) leaves it unbounded.
    pub handshake_timeout: Option<Duration>,
    /// The non-terminal network filters before the terminal one, in order
    /// (e.g. network RBAC): each sees the connection once, after the
    /// transport socket, and may close it.
    pub read_filters: Vec<ReadFilter>,
    /// The terminal network filter of the chain.
    pub terminal: NetworkFilter,
}

/// A non-terminal network filter (Envoy's read filter before the terminal
/// one): built by the factory registered for its config's type URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadFilter {
    /// The entry's `name`, for logs.
    pub name: String,
    pub config: extension::Extension,
}

impl FilterChain {
    /// A plaintext chain that matches every connection.
    pub fn new(terminal: NetworkFilter) -> FilterChain {
        FilterChain {
            name: String::new(),
            matcher: FilterChainMatch::default(),
            tls: None,
            handshake_timeout: None,
            read_filters: Vec::new(),
            terminal,
        }
    }
}

/// Envoy `FilterChainMatch`. Empty fields match everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterChainMatch {
    pub destination_port: Option<u16>,
    /// `prefix_ranges`: the destination (local) address.
    pub prefix_ranges: Vec<tls::CidrRange>,
    /// Lower-cased; `*.example.com` matches any name below example.com.
    pub server_names: Vec<String>,
    /// `tls` or `raw_buffer`; empty matches both.
    pub transport_protocol: String,
    pub application_protocols: Vec<String>,
    pub source_type: SourceType,
    pub source_prefix_ranges: Vec<tls::CidrRange>,
    pub source_ports: Vec<u16>,
}

/// Envoy `FilterChainMatch.ConnectionSourceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceType {
    #[default]
    Any,
    /// The source is the destination's own IP or loopback.
    SameIpOrLoopback,
    External,
}

// Built once per config; the size of a variant costs nothing per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFilter {
    Http(HttpConnectionManager),
    Tcp(TcpProxy),
    /// A terminal network filter registered by type URL (an embedding
    /// program's, or a protocol proxy of a crate above the front end),
    /// validated by its factory.
    Extension(extension::Extension),
}

/// `envoy.filters.network.http_connection_manager`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec: CodecType,
    /// The route table: inline, or named for RDS.
    pub route_config: RouteSource,
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
    /// Which client address is trusted and whether it is internal.
    pub client: ClientTrust,
    /// `generate_request_id` (default true).
    pub generate_request_id: bool,
    /// `proxy_100_continue` (default false): `Expect: 100-continue` is
    /// forwarded upstream instead of being answered and removed here.
    pub proxy_100_continue: bool,
    /// HTTP filters before the router, in order.
    pub http_filters: Vec<HttpFilter>,
    /// The terminal filter, last in `http_filters` in Envoy's config: the
    /// router ([`filter::router`]), built by whatever is registered for its
    /// type URL like any other filter.
    pub router: extension::Extension,
    /// `strip_matching_host_port` / `strip_any_host_port`: the port removed
    /// from `:authority` before routing (and upstream, except for CONNECT).
    pub strip_host_port: StripHostPort,
    /// `normalize_path` (default false): dot segments are removed from the
    /// path before routing and in the request sent upstream.
    pub normalize_path: bool,
    /// `forward_client_cert_details`.
    pub forward_client_cert: client_cert::ForwardClientCert,
    /// `set_current_client_cert_details`; all false unless
    /// [`client_cert::ForwardClientCert::sets_current`] (Envoy reads it only
    /// then).
    pub client_cert_details: client_cert::ClientCertDetails,
    /// `local_reply_config`; `None` leaves local replies as they are.
    pub local_reply: Option<std::sync::Arc<local_reply::LocalReplyConfig>>,
    /// `access_log`: one entry per request, at the end of its stream.
    pub access_logs: access_log::AccessLogs,
    /// `tracing`: `None` when absent (no trace decision, no headers).
    pub tracing: Option<std::sync::Arc<tracing::Tracing>>,
}

impl HttpConnectionManager {
    /// A connection manager with Envoy's defaults (automatic codec, server
    /// name `envoy`, 5 min stream idle timeout, 1 h connection idle
    /// timeout, 60 KiB of request headers, request ids generated, no HTTP
    /// filters but the router): what a bootstrap giving only `stat_prefix`
    /// and `route_config` translates to. For embedders and tests that build
    /// the model in code.
    pub fn new(stat_prefix: impl Into<String>, route_config: RouteSource) -> Self {
        HttpConnectionManager {
            stat_prefix: stat_prefix.into(),
            codec: CodecType::Auto,
            route_config,
            server_name: "envoy".to_owned(),
            server_header: ServerHeaderTransformation::Overwrite,
            upgrades: Vec::new(),
            stream_idle_timeout: Some(Duration::from_secs(300)),
            request_timeout: None,
            idle_timeout: Some(Duration::from_secs(3600)),
            max_request_headers_kb: 60,
            use_remote_address: false,
            client: ClientTrust::default(),
            generate_request_id: true,
            proxy_100_continue: false,
            http_filters: Vec::new(),
            router: filter::router(),
            strip_host_port: StripHostPort::None,
            normalize_path: false,
            forward_client_cert: client_cert::ForwardClientCert::Sanitize,
            client_cert_details: client_cert::ClientCertDetails::default(),
            local_reply: None,
            access_logs: access_log::AccessLogs::default(),
            tracing: None,
        }
    }
}

/// How a connection manager finds the trusted client address of a request
/// and decides whether the request is internal (Envoy's
/// `x-forwarded-for` rules).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientTrust {
    /// `xff_num_trusted_hops`: proxies in front whose `x-forwarded-for`
    /// entries are trusted.
    pub xff_num_trusted_hops: u32,
    /// `skip_xff_append`: the peer is not appended to `x-forwarded-for`.
    pub skip_xff_append: bool,
    /// `internal_address_config`; `None` when unset.
    pub internal_addresses: Option<InternalAddresses>,
}

/// `internal_address_config`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InternalAddresses {
    /// `unix_sockets`: Strait has no Unix-socket HTTP listeners, so this
    /// never applies.
    pub unix_sockets: bool,
    /// `cidr_ranges`; empty means Envoy's default internal ranges.
    pub cidr_ranges: Vec<tls::CidrRange>,
}

/// Where a connection manager's routes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteSource {
    /// `route_config`: the table is part of the listener.
    Inline(RouteConfig),
    /// `rds`: the [`RouteConfig`] of this name in [`Config::route_configs`],
    /// delivered over ADS.
    Rds(String),
}

impl RouteSource {
    /// The inline table, if the routes are not from RDS.
    pub fn inline(&self) -> Option<&RouteConfig> {
        match self {
            RouteSource::Inline(rc) => Some(rc),
            RouteSource::Rds(_) => None,
        }
    }

    /// The RDS name, if the routes are from RDS.
    pub fn rds_name(&self) -> Option<&str> {
        match self {
            RouteSource::Rds(name) => Some(name),
            RouteSource::Inline(_) => None,
        }
    }
}

/// Which port the connection manager strips from `:authority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StripHostPort {
    /// Keep the authority as received (Envoy's default).
    #[default]
    None,
    /// `strip_matching_host_port`: only a port equal to the listener's.
    Matching,
    /// `strip_any_host_port`: any port.
    Any,
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

/// `envoy.filters.network.tcp_proxy`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpProxy {
    pub stat_prefix: String,
    pub cluster: TcpCluster,
    /// `idle_timeout` (default 1 h); `None` disables.
    pub idle_timeout: Option<Duration>,
    /// `access_log`: one entry per connection, when it closes.
    pub access_logs: access_log::AccessLogs,
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
    /// `common_lb_config` and `load_assignment.policy`: how priorities and
    /// localities share traffic.
    pub lb_common: LbCommon,
    /// `circuit_breakers.thresholds`, by routing priority.
    pub circuit_breakers: CircuitBreakers,
    /// `outlier_detection`; `None` when the cluster has none.
    pub outlier_detection: Option<OutlierDetection>,
    /// `health_checks`: active health checkers, each run against every host.
    pub health_checks: Vec<HealthCheck>,
    /// Connection pool limits from the upstream HTTP protocol options.
    pub pool: PoolOptions,
    /// `transport_socket` `UpstreamTlsContext`; `None` is plaintext.
    pub tls: Option<tls::UpstreamTls>,
    /// The unix socket path when the cluster's one endpoint is a `pipe`
    /// address (Istio's `xds-grpc` and `sds-grpc`). Only the gRPC control
    /// clients (ADS, SDS) dial it; `endpoints` is then empty, so the data
    /// path has no host in it.
    pub pipe: Option<String>,
    /// `transport_socket_matches`, in order: the first whose criteria an
    /// endpoint's metadata satisfies replaces [`Cluster::tls`] for that host.
    pub transport_socket_matches: Vec<TransportSocketMatch>,
    /// `upstream_bind_config.source_address`: upstream connections are
    /// bound to this IP (port chosen by the system) before connecting, as
    /// Istio's inbound clusters use 127.0.0.6.
    pub source_address: Option<std::net::IpAddr>,
    /// `upstream_connection_options.tcp_keepalive`: SO_KEEPALIVE on upstream
    /// connections, each unset value left to the OS.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// `filters`: the cluster's network filters, run on the TCP proxy's
    /// upstream connections (Istio's TCP metadata exchange). Strait's HTTP
    /// pool does not run them: HTTP connections never offer the ALPN that
    /// would start them.
    pub filters: Vec<extension::Extension>,
}

/// Envoy's `TcpKeepalive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    /// `keepalive_probes`.
    pub probes: Option<u32>,
    /// `keepalive_time`: idle time before the first probe.
    pub time: Option<Duration>,
    /// `keepalive_interval`: between probes.
    pub interval: Option<Duration>,
}

/// Metadata as Envoy's `google.protobuf.Struct`, in its JSON form.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// The `filter_metadata` key of endpoint metadata that transport socket
/// matches read.
pub const TRANSPORT_SOCKET_MATCH_KEY: &str = "envoy.transport_socket_match";

/// One entry of `Cluster.transport_socket_matches`.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportSocketMatch {
    /// `name`: labels stats in Envoy; kept for `/config_dump` and errors.
    pub name: String,
    /// `match`: every key must be present in the endpoint's
    /// `filter_metadata["envoy.transport_socket_match"]` with an equal value
    /// (empty matches every endpoint).
    pub criteria: Metadata,
    /// `transport_socket`: `None` is `raw_buffer` (plaintext).
    pub tls: Option<tls::UpstreamTls>,
}

impl TransportSocketMatch {
    /// Envoy's rule: the criteria are a subset of the endpoint's metadata.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        self.criteria
            .iter()
            .all(|(k, v)| metadata.get(k).is_some_and(|m| m == v))
    }
}

impl Cluster {
    /// A STATIC cluster named `name` with no endpoints and Envoy's defaults
    /// for everything else (what a bootstrap listing only the name and an
    /// empty `load_assignment` translates to). For embedders and tests that
    /// build clusters in code.
    pub fn new(name: impl Into<String>) -> Cluster {
        Cluster {
            name: name.into(),
            discovery: Discovery::Static,
            connect_timeout: Duration::from_secs(5),
            lb_policy: LbPolicy::RoundRobin,
            endpoints: Vec::new(),
            protocol: UpstreamProtocol::Http1,
            buffer_limit: 1 << 20,
            lb_common: LbCommon::default(),
            circuit_breakers: CircuitBreakers::default(),
            outlier_detection: None,
            health_checks: Vec::new(),
            pool: PoolOptions::default(),
            tls: None,
            pipe: None,
            transport_socket_matches: Vec::new(),
            source_address: None,
            tcp_keepalive: None,
            filters: Vec::new(),
        }
    }

    /// The secrets this cluster's TLS contexts name: its own transport
    /// socket's and those of its `transport_socket_matches`.
    pub fn secret_refs(&self) -> impl Iterator<Item = &secret::SdsRef> {
        self.tls
            .iter()
            .chain(
                self.transport_socket_matches
                    .iter()
                    .filter_map(|m| m.tls.as_ref()),
            )
            .flat_map(|t| t.common.secret_refs())
    }

    /// Which transport socket an endpoint with `metadata` uses: the index of
    /// the first matching `transport_socket_matches` entry, or `None` for
    /// the cluster's own `transport_socket`.
    pub fn transport_match(&self, metadata: &Metadata) -> Option<usize> {
        self.transport_socket_matches
            .iter()
            .position(|m| m.matches(metadata))
    }
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
    /// `LOGICAL_DNS`: one endpoint whose name is re-resolved every
    /// `refresh_rate`; only the first address (of the family chosen by
    /// `lookup_family`) is used, for new connections.
    LogicalDns {
        refresh_rate: Duration,
        lookup_family: DnsLookupFamily,
    },
    /// `EDS` over ADS: the endpoints arrive as the `ClusterLoadAssignment`
    /// named `service_name` and are filled into [`Cluster::endpoints`] by the
    /// xDS client before the config is published.
    Eds {
        service_name: String,
    },
    /// `ORIGINAL_DST` with `lb_policy: CLUSTER_PROVIDED`: no configured
    /// hosts; each connection goes to the downstream connection's original
    /// destination, or, with `use_http_header`, to the `ip:port` in the
    /// request header `http_header_name`.
    OriginalDst {
        /// `original_dst_lb_config.use_http_header`.
        use_http_header: bool,
        /// `original_dst_lb_config.http_header_name`, lower-cased
        /// (default `x-envoy-original-dst-host`).
        http_header_name: String,
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

/// Envoy `Cluster.LbPolicy` with its `lb_config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LbPolicy {
    /// Weighted round robin.
    RoundRobin,
    /// `choice_count` random hosts (default 2), the least loaded wins;
    /// weighted hosts compare `active ^ active_request_bias / weight`.
    LeastRequest {
        choice_count: u32,
        active_request_bias: f64,
    },
    /// Weighted random.
    Random,
    /// Ketama-style consistent hashing of the request hash onto a ring.
    RingHash {
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    },
    /// Maglev consistent hashing (`table_size` a prime, default 65537).
    Maglev { table_size: u64 },
}

impl LbPolicy {
    /// True for the policies that consume a request hash.
    pub fn is_hash(&self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

/// One endpoint of a `ClusterLoadAssignment`, flattened: the locality fields
/// are repeated on each endpoint. Both static `load_assignment` and EDS
/// produce this shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP literal for STATIC clusters, a DNS name or IP for STRICT_DNS.
    pub host: String,
    pub port: u16,
    /// `load_balancing_weight` (default 1).
    pub weight: u32,
    /// `LocalityLbEndpoints.priority` (0 is the highest).
    pub priority: u32,
    pub locality: Locality,
    /// `LocalityLbEndpoints.load_balancing_weight`; 0 when unset (such a
    /// locality gets no traffic under locality-weighted balancing).
    pub locality_weight: u32,
    /// `LbEndpoint.health_status` as the control plane reported it.
    pub health: EndpointHealth,
    /// `LbEndpoint.metadata.filter_metadata["envoy.transport_socket_match"]`,
    /// read by the cluster's `transport_socket_matches`.
    pub transport_metadata: Metadata,
}

impl Endpoint {
    /// A healthy priority-0 endpoint without locality.
    pub fn new(host: impl Into<String>, port: u16, weight: u32) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            weight,
            priority: 0,
            locality: Locality::default(),
            locality_weight: 0,
            health: EndpointHealth::Unknown,
            transport_metadata: Metadata::new(),
        }
    }
}

/// Envoy `core.v3.Locality`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

/// Envoy `core.v3.HealthStatus` of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointHealth {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
    Draining,
    Timeout,
    /// Strait routes to degraded hosts as to healthy ones (Envoy would prefer
    /// healthy hosts while enough of them remain).
    Degraded,
}

impl EndpointHealth {
    /// Whether the control plane lets this endpoint take traffic.
    pub fn is_usable(self) -> bool {
        matches!(
            self,
            EndpointHealth::Unknown | EndpointHealth::Healthy | EndpointHealth::Degraded
        )
    }
}

/// `common_lb_config` and `ClusterLoadAssignment.policy`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbCommon {
    /// `healthy_panic_threshold` in percent (default 50; 0 disables panic).
    pub healthy_panic_threshold: f64,
    /// `locality_weighted_lb_config` is set.
    pub locality_weighted: bool,
    /// `policy.overprovisioning_factor` in percent (default 140).
    pub overprovisioning_factor: u32,
    /// `slow_start_config` of the round-robin or least-request `lb_config`.
    pub slow_start: Option<SlowStart>,
}

/// Envoy's slow start: a host's weight ramps up over `window` after it
/// joins (or passes active health checks again):
/// `weight * max(min_weight, (elapsed / window) ^ (1 / aggression))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    /// `aggression` (default 1.0: linear).
    pub aggression: f64,
    /// `min_weight_percent` as a fraction (default 0.1).
    pub min_weight: f64,
}

impl SlowStart {
    /// The weight factor of a host that joined `elapsed` ago; 1 after the
    /// window. Envoy counts at least one second in.
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window {
            return 1.0;
        }
        let t = elapsed.max(Duration::from_secs(1)).as_secs_f64() / self.window.as_secs_f64();
        t.min(1.0).powf(1.0 / self.aggression).max(self.min_weight)
    }
}

impl Default for LbCommon {
    fn default() -> Self {
        LbCommon {
            healthy_panic_threshold: 50.0,
            locality_weighted: false,
            overprovisioning_factor: 140,
            slow_start: None,
        }
    }
}

/// `circuit_breakers.thresholds` for the DEFAULT and HIGH routing priorities.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CircuitBreakers {
    pub default: Thresholds,
    pub high: Thresholds,
}

/// One `CircuitBreakers.Thresholds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    /// `retry_budget`: when set, it replaces `max_retries`.
    pub retry_budget: Option<RetryBudget>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
        }
    }
}

/// `Thresholds.RetryBudget`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Percent of active requests that may be retries (default 20).
    pub budget_percent: f64,
    /// Retries always allowed regardless of the budget (default 3).
    pub min_retry_concurrency: u32,
}

/// Envoy `OutlierDetection`. Percentages are 0-100.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub consecutive_local_origin_failure: u32,
    pub split_external_local_origin_errors: bool,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub enforcing_consecutive_5xx: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub enforcing_consecutive_local_origin_failure: u32,
    pub enforcing_success_rate: u32,
    pub success_rate_minimum_hosts: u32,
    pub success_rate_request_volume: u32,
    /// Divided by 1000 to give the standard deviation factor (default 1900).
    pub success_rate_stdev_factor: u32,
    pub failure_percentage_threshold: u32,
    pub enforcing_failure_percentage: u32,
    pub failure_percentage_minimum_hosts: u32,
    pub failure_percentage_request_volume: u32,
}

/// One `core.v3.HealthCheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub timeout: Duration,
    pub interval: Duration,
    /// `interval_jitter`: up to this much is added to each interval.
    pub interval_jitter: Duration,
    /// `unhealthy_interval`/`healthy_edge_interval`-style overrides are
    /// refused; `no_traffic_interval` is ignored (see translation).
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub kind: HealthCheckKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheckKind {
    Http {
        path: String,
        /// `host`; the cluster name when empty (Envoy's default).
        host: Option<String>,
        /// Half-open ranges `[start, end)`; default `[200, 400)`.
        expected_statuses: Vec<(u16, u16)>,
        request_headers: Vec<(String, String)>,
    },
    Tcp {
        /// Bytes written after connecting; nothing when empty.
        send: Vec<u8>,
        /// Each block must appear in the reply, in order; none means a
        /// successful connect is enough.
        receive: Vec<Vec<u8>>,
    },
    /// `grpc.health.v1.Health/Check` over HTTP/2.
    Grpc {
        service_name: String,
        authority: Option<String>,
    },
}

/// Connection pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// `max_requests_per_connection`; `None` is unlimited.
    pub max_requests_per_connection: Option<u32>,
    /// `common_http_protocol_options.idle_timeout` (default 1 h; 0 disables).
    pub idle_timeout: Option<Duration>,
    /// `http2_protocol_options.max_concurrent_streams`: streams per HTTP/2
    /// connection before another is opened; `None` is unlimited (Envoy's
    /// default, 2^31 - 1).
    pub max_concurrent_streams: Option<u32>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_requests_per_connection: None,
            idle_timeout: Some(Duration::from_secs(3600)),
            max_concurrent_streams: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c on plain TCP).
    Http2,
    /// `use_downstream_protocol_config`: HTTP/2 for requests that came
    /// over HTTP/2, else HTTP/1.1.
    Downstream,
}
