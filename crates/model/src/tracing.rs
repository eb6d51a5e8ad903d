//! The HTTP connection manager's `tracing` and `request_id_extension`:
//! Envoy's trace decision (recorded in the `x-request-id` version nibble),
//! the span tags, and the tracer the spans go to.

use std::sync::Arc;

/// A connection manager's tracing; `None` on the manager when it has no
/// `tracing` block (no decision, no headers, no spans: zero cost).
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// `random_sampling`, in hundredths of a percent (Envoy's
    /// `TEN_THOUSAND` denominator; default 10000 = 100%).
    pub random_sampling: u32,
    /// `client_sampling` (requests with `x-client-trace-id`), likewise.
    pub client_sampling: u32,
    /// `overall_sampling`, applied after the other two, likewise.
    pub overall_sampling: u32,
    pub custom_tags: Vec<CustomTag>,
    /// `max_path_tag_length` (default 256): `http.url` is cut there.
    pub max_path_tag_length: u32,
    /// The request id extension's settings (Envoy's UUID extension).
    pub request_id: RequestIdSettings,
    /// Where spans go; `None` when neither the manager nor the bootstrap
    /// names a tracer: the decision is still made and recorded in
    /// `x-request-id`, as Envoy does with its null tracer.
    pub provider: Option<Provider>,
    /// The node the spans describe (`node_id`, `zone` tags, the Zipkin
    /// local endpoint's service name).
    pub node: TraceNode,
}

impl Default for Tracing {
    fn default() -> Self {
        Tracing {
            random_sampling: 10_000,
            client_sampling: 10_000,
            overall_sampling: 10_000,
            custom_tags: Vec::new(),
            max_path_tag_length: 256,
            request_id: RequestIdSettings::default(),
            provider: None,
            node: TraceNode::default(),
        }
    }
}

/// The bootstrap node's identity as spans carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceNode {
    pub id: String,
    pub cluster: String,
    pub zone: String,
}

/// `envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestIdSettings {
    /// `pack_trace_reason` (default true): the decision is written into
    /// the id's version nibble.
    pub pack_trace_reason: bool,
    /// `use_request_id_for_trace_sampling` (default true): sampling reads
    /// the id's first 8 hex digits instead of a random number.
    pub use_request_id_for_trace_sampling: bool,
}

impl Default for RequestIdSettings {
    fn default() -> Self {
        RequestIdSettings {
            pack_trace_reason: true,
            use_request_id_for_trace_sampling: true,
        }
    }
}

/// One `custom_tags` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomTag {
    pub tag: String,
    pub value: TagValue,
}

/// Where a custom tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagValue {
    /// A literal, or an `environment` tag read when the config was
    /// translated (Envoy reads it when the config loads too).
    Literal(String),
    /// A request header; `default` when absent (an empty default omits
    /// the tag, as Envoy does).
    RequestHeader { name: String, default: String },
    /// Request dynamic metadata (`filter`, then the key path); `default`
    /// when absent.
    Metadata {
        filter: String,
        path: Vec<String>,
        default: String,
    },
}

/// `envoy.tracers.zipkin` (`ZipkinConfig`): B3 propagation, spans as Zipkin
/// v2 JSON POSTed to `endpoint` on `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Zipkin {
    pub cluster: String,
    pub endpoint: String,
    /// `collector_hostname`: the Host of the POST (default: the cluster).
    pub hostname: String,
    pub trace_id_128bit: bool,
    /// `shared_span_context` (default true): a server span reuses the
    /// incoming span id.
    pub shared_span_context: bool,
}

/// The tracer a connection manager's spans go to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Provider {
    Zipkin(Arc<Zipkin>),
    OpenTelemetry(Arc<OpenTelemetry>),
}

impl Provider {
    /// The collector cluster, which must exist when a manager uses it.
    pub fn cluster(&self) -> &str {
        match self {
            Provider::Zipkin(z) => &z.cluster,
            Provider::OpenTelemetry(o) => &o.channel.cluster,
        }
    }
}

/// `envoy.tracers.opentelemetry` (`OpenTelemetryConfig`): W3C trace
/// context (`traceparent`, `tracestate`), spans exported as OTLP over gRPC
/// (`TraceService/Export`) to `channel`'s cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenTelemetry {
    /// `grpc_service` (`envoy_grpc`): cluster, authority, deadline and
    /// initial metadata. The logger-only fields of the channel stay at
    /// their defaults (spans batch as Envoy's tracer does, by count).
    pub channel: crate::access_log::RemoteChannel,
    /// `service_name` (Envoy's default `unknown_service:envoy`).
    pub service_name: String,
    /// `set_service_name_resource_attribute` (default true).
    pub service_name_attribute: bool,
    /// `set_telemetry_sdk_resource_attributes` (default true):
    /// `telemetry.sdk.{name,version,language}` on the resource.
    pub sdk_attributes: bool,
    /// `set_instrumentation_scope` (default true): the scope's name and
    /// version on the batch.
    pub scope: bool,
    /// `max_cache_size` (default 1024): spans waiting for the collector
    /// before new ones are dropped.
    pub max_cache_size: u32,
}
