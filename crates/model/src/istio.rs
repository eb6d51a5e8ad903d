//! Istio's telemetry filters as validated data: the stats plugin
//! (`istio.stats`, `stats.PluginConfig`, HTTP and network), the HTTP
//! peer metadata exchange (`io.istio.http.peer_metadata.Config`), the TCP
//! one, and the upstream ALPN override (`istio.alpn`). `strait-istio` runs
//! them.
//!
//! The front end resolves everything a filter needs from outside its own
//! config when it translates: the reporter from the listener's
//! `traffic_direction`, the local workload from the bootstrap's node
//! metadata, and the exchange headers' value (the node metadata encoded
//! as Istio encodes it), so a running filter reads only its config.

use std::{sync::Arc, time::Duration};

/// The type URLs the filters are registered under.
pub mod type_url {
    /// `istio.stats` (HTTP filter and network read filter).
    pub const STATS: &str = "type.googleapis.com/stats.PluginConfig";
    /// `istio.metadata_exchange` over HTTP headers.
    pub const PEER_METADATA: &str = "type.googleapis.com/io.istio.http.peer_metadata.Config";
    /// The TCP metadata exchange (network filter, and cluster filter).
    pub const TCP_METADATA_EXCHANGE: &str =
        "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange";
    /// `istio.alpn`: the upstream ALPN override (HTTP filter).
    pub const ALPN: &str =
        "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig";
}

/// The workload facts Istio's metrics label by, as Istio reads them from
/// a node's metadata (`NAME`, `NAMESPACE`, `WORKLOAD_NAME`, `CLUSTER_ID`,
/// `LABELS`) or from a peer's exchanged metadata. Empty means missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// `NAME`: the pod (instance).
    pub name: String,
    pub namespace: String,
    pub workload_name: String,
    pub cluster_id: String,
    /// `LABELS.app`, `LABELS.version`.
    pub app: String,
    pub version: String,
    /// `LABELS["service.istio.io/canonical-name"]`, `-revision`.
    pub canonical_name: String,
    pub canonical_revision: String,
    /// `OWNER` (`kubernetes://apis/apps/v1/namespaces/<ns>/deployments/<name>`).
    pub owner: String,
    /// Other labels kept: those named in `additional_labels`, for the
    /// exchange; every label of the local node, for `labels['...']`
    /// dimensions.
    pub labels: Vec<(String, String)>,
}

/// Which side of a request the proxy reports as (Istio's `reporter`
/// label): from the listener's `traffic_direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// An outbound listener: the client sidecar, `reporter="source"`.
    Source,
    /// An inbound listener: the server sidecar, `reporter="destination"`.
    Destination,
}

impl Reporter {
    /// The `reporter` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// `stats.PluginConfig`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IstioStats {
    pub reporter: Reporter,
    /// The proxy's own workload (the node's metadata).
    pub local: Arc<Workload>,
    /// `disable_host_header_fallback`: `destination_service` is not taken
    /// from the `Host` header.
    pub disable_host_header_fallback: bool,
    /// `tcp_reporting_duration` (default 5 s in Istio's filter): how often
    /// an open TCP connection's byte counters are brought up to date.
    pub tcp_reporting: Duration,
    /// `metrics`: the overrides, in config order.
    pub overrides: Vec<MetricOverride>,
}

/// One of Istio's standard metrics, by its name in `metrics[].name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IstioMetric {
    RequestsTotal,
    RequestDuration,
    RequestBytes,
    ResponseBytes,
    TcpSentBytes,
    TcpReceivedBytes,
    TcpOpened,
    TcpClosed,
    /// `request_messages_total` / `response_messages_total` (gRPC
    /// streaming): Strait does not produce them; an override naming them
    /// changes nothing.
    GrpcMessages,
}

impl IstioMetric {
    /// The metric for a name as `metrics[].name` spells it.
    pub fn from_config_name(name: &str) -> Option<IstioMetric> {
        Some(match name {
            "requests_total" => IstioMetric::RequestsTotal,
            "request_duration_milliseconds" => IstioMetric::RequestDuration,
            "request_bytes" => IstioMetric::RequestBytes,
            "response_bytes" => IstioMetric::ResponseBytes,
            "tcp_sent_bytes_total" => IstioMetric::TcpSentBytes,
            "tcp_received_bytes_total" => IstioMetric::TcpReceivedBytes,
            "tcp_connections_opened_total" => IstioMetric::TcpOpened,
            "tcp_connections_closed_total" => IstioMetric::TcpClosed,
            "request_messages_total" | "response_messages_total" => IstioMetric::GrpcMessages,
            _ => return None,
        })
    }
}

/// One `metrics` entry: applies to `metric`, or to every metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricOverride {
    pub metric: Option<IstioMetric>,
    /// `drop`: the metric is not produced.
    pub drop: bool,
    /// `tags_to_remove`, standard label names.
    pub tags_to_remove: Vec<String>,
    /// `dimensions`: a label (standard, replaced; or new, added) and its
    /// value, sorted by label as Istio applies them.
    pub dimensions: Vec<(String, Dimension)>,
}

/// A dimension's value: the subset of Istio's CEL expressions Strait
/// evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    /// A string literal, or a value known when the config is translated
    /// (`node.metadata['KEY']`).
    Constant(String),
    /// `request.host`.
    RequestHost,
    /// `request.method`.
    RequestMethod,
    /// `request.path` (with the query).
    RequestPath,
    /// `request.url_path` (without the query).
    RequestUrlPath,
    /// `request.headers['name']` (name lower-cased).
    RequestHeader(String),
    /// `response.code`.
    ResponseCode,
    /// `downstream_peer.<field>` / `upstream_peer.<field>`.
    Peer { downstream: bool, field: PeerField },
}

/// A field of a peer's metadata a dimension may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerField {
    Name,
    Namespace,
    WorkloadName,
    ClusterId,
    /// `labels['key']`.
    Label(String),
}

/// `io.istio.http.peer_metadata.Config` (or the null-VM Wasm
/// `envoy.wasm.metadata_exchange`), validated: where the peer's metadata
/// is read from and where the local one is sent, as the
/// `x-envoy-peer-metadata` and `x-envoy-peer-metadata-id` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMetadata {
    /// `downstream_discovery` holds `istio_headers`: the request's headers
    /// name the downstream peer (and are removed).
    pub downstream_discovery: bool,
    /// `upstream_discovery` holds `istio_headers`: the response's headers
    /// name the upstream peer (and are removed).
    pub upstream_discovery: bool,
    /// `downstream_propagation`: the response carries the local metadata,
    /// when the request carried the peer's.
    pub downstream_propagation: bool,
    /// `upstream_propagation`: the upstream request carries the local
    /// metadata.
    pub upstream_propagation: bool,
    /// `skip_external_clusters` of the upstream propagation: nothing is
    /// sent to `PassthroughCluster`.
    pub skip_external_clusters: bool,
    /// `additional_labels`: peer labels kept besides Istio's own.
    pub additional_labels: Vec<String>,
    /// The `x-envoy-peer-metadata-id` value sent: the node's id.
    pub id: String,
    /// The `x-envoy-peer-metadata` value sent: the local workload as a
    /// `google.protobuf.Struct`, protobuf-encoded, base64.
    pub value: String,
}

/// `envoy.tcp.metadataexchange.config.MetadataExchange`, validated: Istio's
/// TCP metadata exchange, as a listener's network filter (the downstream
/// side) or a cluster's filter (the upstream side of the TCP proxy). It
/// runs on a connection whose TLS handshake negotiated `protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpMetadataExchange {
    /// `protocol`: the ALPN protocol that starts the exchange
    /// (`istio-peer-exchange` as istiod renders it).
    pub protocol: String,
    /// `additional_labels`: peer labels kept besides Istio's own.
    pub additional_labels: Vec<String>,
    /// The node id sent (`x-envoy-peer-metadata-id`).
    pub id: String,
    /// The local workload sent (`x-envoy-peer-metadata`): a
    /// `google.protobuf.Struct`, protobuf-encoded, keys in order.
    pub metadata: Vec<u8>,
}

/// `istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`, validated:
/// Istio's `istio.alpn` HTTP filter. For a request routed to a cluster, the
/// list of the protocol the cluster will use upstream replaces the ALPN its
/// TLS connections offer (istiod renders `istio-http/1.1, istio, http/1.1`
/// and `istio-h2, istio, h2`), so the peer sidecar's listener, which
/// matches filter chains on `istio-http/1.0`, `istio-http/1.1` and
/// `istio-h2`, serves the connection on its HTTP chain. An empty list is no
/// override.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IstioAlpn {
    /// `upstream_protocol: HTTP10`. Kept as configured; Envoy 1.40 never
    /// picks HTTP/1.0 upstream (an HTTP/1.0 request goes out as HTTP/1.1),
    /// so it never applies.
    pub http10: Vec<String>,
    /// `upstream_protocol: HTTP11`: requests sent upstream over HTTP/1.1.
    pub http11: Vec<String>,
    /// `upstream_protocol: HTTP2`: requests sent upstream over HTTP/2.
    pub http2: Vec<String>,
}
