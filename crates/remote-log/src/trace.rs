//! The OpenTelemetry tracer's export (`envoy.tracers.opentelemetry`):
//! OTLP traces (`opentelemetry.proto.trace.v1`, `...collector.trace.v1`,
//! which `envoy-types` does not ship: declared here with their field
//! numbers from the OpenTelemetry protocol), and one exporter per tracer
//! config that sends `TraceService/Export` through the same gRPC client as
//! the OTLP access logger ([`crate::export::unary`]).
//!
//! As Envoy's tracer: a batch goes when `MIN_FLUSH_SPANS` spans wait or
//! every `FLUSH_INTERVAL` (its `tracing.opentelemetry.min_flush_spans` and
//! `flush_interval_ms` defaults); stats `tracing.opentelemetry.spans_sent`,
//! `spans_dropped` and `timer_flushed`. The worker only pushes onto a
//! bounded lock-free queue of `max_cache_size` spans: a full queue (a
//! collector down or slow) drops the span and counts it, never waits.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::{Duration, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use envoy_types::pb::opentelemetry::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use metrics::Counter;
use prost::Message;
use strait_model::tracing::OpenTelemetry;
use strait_trace::{OtelSinks, Span as TraceSpan, SpanSink, span::Kind};
use strait_upstream::ClusterRegistry;
use tokio::sync::Notify;

use crate::{export::unary, otlp::Resource};

/// `ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ExportTraceServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// `ExportTracePartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `ResourceSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `ScopeSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `Span` (without events and links, which Envoy never writes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// `Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`.
pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;
/// `STATUS_CODE_ERROR`.
pub const STATUS_ERROR: i32 = 2;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `..._IS_REMOTE_MASK`.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The gRPC method's path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Envoy's defaults: 5 spans or 5 s, whichever comes first.
const MIN_FLUSH_SPANS: usize = 5;
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Spans in one `Export` call at most (a backlog goes out in several).
const MAX_BATCH: usize = 512;

/// What the resource and scope say the telemetry came from. Envoy writes
/// `envoy` as the SDK and scope name; Strait keeps the name (collectors
/// and dashboards filter on it) and gives its own version and language.
const SDK_NAME: &str = "envoy";
const SDK_LANGUAGE: &str = "rust";
const SDK_VERSION: &str = concat!("strait/", env!("CARGO_PKG_VERSION"));

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The resource of every batch of `o`.
pub fn resource(o: &OpenTelemetry) -> Resource {
    let mut attributes = Vec::new();
    if o.service_name_attribute {
        attributes.push(string_kv("service.name", &o.service_name));
    }
    if o.sdk_attributes {
        attributes.push(string_kv("telemetry.sdk.name", SDK_NAME));
        attributes.push(string_kv("telemetry.sdk.version", SDK_VERSION));
        attributes.push(string_kv("telemetry.sdk.language", SDK_LANGUAGE));
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A finished span as OTLP: Envoy's tags become string attributes, its
/// `error` tag an `ERROR` status.
pub fn span(s: &TraceSpan) -> Span {
    let c = &s.context;
    let mut trace_id = Vec::with_capacity(16);
    trace_id.extend_from_slice(&c.trace.high.to_be_bytes());
    trace_id.extend_from_slice(&c.trace.low.to_be_bytes());
    let start = nanos(s.start);
    let mut flags = u32::from(c.sampled) | HAS_IS_REMOTE;
    if s.remote_parent {
        flags |= IS_REMOTE;
    }
    Span {
        trace_id,
        span_id: c.span.to_be_bytes().to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: c
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags,
        name: s.name.clone(),
        kind: match s.kind {
            Kind::Server => KIND_SERVER,
            Kind::Client => KIND_CLIENT,
        },
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(s.duration_us.saturating_mul(1000)),
        attributes: s.tags.iter().map(|(k, v)| string_kv(k, v)).collect(),
        dropped_attributes_count: 0,
        status: s.is_error().then(|| Status {
            message: String::new(),
            code: STATUS_ERROR,
        }),
    }
}

/// `tracing.opentelemetry.*`.
#[derive(Debug, Clone)]
struct Stats {
    spans_sent: Counter,
    spans_dropped: Counter,
    timer_flushed: Counter,
}

impl Stats {
    fn new() -> Self {
        Stats {
            spans_sent: metrics::counter!("envoy_tracing_opentelemetry_spans_sent"),
            spans_dropped: metrics::counter!("envoy_tracing_opentelemetry_spans_dropped"),
            timer_flushed: metrics::counter!("envoy_tracing_opentelemetry_timer_flushed"),
        }
    }
}

/// One tracer config's queue.
struct Exporter {
    queue: ArrayQueue<TraceSpan>,
    wake: Notify,
    config: Arc<OpenTelemetry>,
    resource: Resource,
    stats: Stats,
}

impl SpanSink for Exporter {
    fn send(&self, span: TraceSpan) {
        if self.queue.push(span).is_err() {
            self.stats.spans_dropped.increment(1);
            return;
        }
        if self.queue.len() >= MIN_FLUSH_SPANS {
            self.wake.notify_one();
        }
    }
}

impl Exporter {
    async fn run(self: Arc<Self>, upstreams: Arc<ClusterRegistry>) {
        loop {
            let timer = tokio::select! {
                () = tokio::time::sleep(FLUSH_INTERVAL) => true,
                () = self.wake.notified() => false,
            };
            // The config is gone and nothing waits: the task ends.
            if Arc::strong_count(&self) == 1 && self.queue.is_empty() {
                return;
            }
            if timer && !self.queue.is_empty() {
                self.stats.timer_flushed.increment(1);
            }
            while !self.queue.is_empty() {
                let batch: Vec<TraceSpan> = std::iter::from_fn(|| self.queue.pop())
                    .take(MAX_BATCH)
                    .collect();
                let n = batch.len() as u64;
                match self.export(&upstreams, &batch).await {
                    Ok(rejected) => {
                        let rejected = rejected.min(n);
                        self.stats.spans_sent.increment(n - rejected);
                        self.stats.spans_dropped.increment(rejected);
                    }
                    Err(e) => {
                        tracing::debug!(cluster = %self.config.channel.cluster, error = %e, "OTLP span export failed");
                        self.stats.spans_dropped.increment(n);
                    }
                }
                if self.queue.len() < MIN_FLUSH_SPANS {
                    break;
                }
            }
        }
    }

    /// One `Export` call; the count of rejected spans on success.
    async fn export(
        &self,
        upstreams: &ClusterRegistry,
        batch: &[TraceSpan],
    ) -> Result<u64, String> {
        let scope = self.config.scope.then(|| InstrumentationScope {
            name: SDK_NAME.to_owned(),
            version: SDK_VERSION.to_owned(),
            ..InstrumentationScope::default()
        });
        let msg = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope,
                    spans: batch.iter().map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let answer = unary(
            upstreams,
            &self.config.channel,
            EXPORT_PATH,
            &msg.encode_to_vec(),
        )
        .await?;
        let resp = ExportTraceServiceResponse::decode(answer).map_err(|e| e.to_string())?;
        Ok(resp
            .partial_success
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)))
    }
}

/// Exporters by the address of the config they serve, with a `Weak` that
/// keeps the address from being reused while the entry exists.
type ByConfig = HashMap<usize, (Weak<OpenTelemetry>, Arc<Exporter>)>;

/// Every OpenTelemetry tracer's exporter of one proxy.
pub struct OtelTracers {
    upstreams: Arc<ClusterRegistry>,
    runtime: tokio::runtime::Handle,
    recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    by_config: ArcSwap<ByConfig>,
}

impl OtelTracers {
    /// Exporters run on `runtime` (the control runtime) and reach their
    /// clusters through `upstreams`; stats register with `recorder`.
    pub fn new(
        upstreams: Arc<ClusterRegistry>,
        runtime: tokio::runtime::Handle,
        recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    ) -> Self {
        OtelTracers {
            upstreams,
            runtime,
            recorder,
            by_config: ArcSwap::default(),
        }
    }

    /// The exporter of a config seen for the first time: an existing one
    /// when an equal config has one (a reload keeps its exporter), else a
    /// new one with its task.
    fn register(&self, config: &Arc<OpenTelemetry>, key: usize) -> Arc<Exporter> {
        let current = self.by_config.load();
        let shared = current.values().find_map(|(w, e)| {
            w.upgrade()
                .filter(|other| **other == **config)
                .map(|_| Arc::clone(e))
        });
        let made = match shared {
            Some(e) => e,
            None => {
                let stats = metrics::with_local_recorder(&*self.recorder, Stats::new);
                let e = Arc::new(Exporter {
                    queue: ArrayQueue::new(config.max_cache_size.max(1) as usize),
                    wake: Notify::new(),
                    config: Arc::clone(config),
                    resource: resource(config),
                    stats,
                });
                self.runtime
                    .spawn(Arc::clone(&e).run(Arc::clone(&self.upstreams)));
                e
            }
        };
        self.by_config.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|_, (w, _)| w.strong_count() > 0);
            m.entry(key)
                .or_insert_with(|| (Arc::downgrade(config), Arc::clone(&made)));
            m
        });
        self.by_config
            .load()
            .get(&key)
            .map_or(made, |(_, e)| Arc::clone(e))
    }
}

impl OtelSinks for OtelTracers {
    fn sink(&self, config: &Arc<OpenTelemetry>) -> Arc<dyn SpanSink> {
        let key = Arc::as_ptr(config) as usize;
        if let Some((_, e)) = self.by_config.load().get(&key) {
            return Arc::clone(e) as Arc<dyn SpanSink>;
        }
        self.register(config, key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use strait_trace::{b3::TraceId, w3c::Extracted};

    use super::*;

    #[test]
    fn a_span_in_otlp() {
        let mut n = 0;
        let mut s = TraceSpan::otel(
            Kind::Client,
            Extracted::Parent {
                trace: TraceId {
                    high: 1,
                    low: 2,
                    wide: true,
                },
                span: 3,
                sampled: true,
            },
            true,
            || {
                n += 1;
                n
            },
        )
        .expect("a span");
        s.name = "egress h".into();
        s.start = UNIX_EPOCH + Duration::from_micros(5);
        s.duration_us = 2;
        s.trace_state = "a=b".into();
        s.tag("error", "true");
        let o = span(&s);
        assert_eq!(o.trace_id, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(o.span_id, 1u64.to_be_bytes());
        assert_eq!(o.parent_span_id, 3u64.to_be_bytes());
        assert_eq!((o.kind, o.flags), (KIND_CLIENT, 0x301));
        assert_eq!((o.start_time_unix_nano, o.end_time_unix_nano), (5000, 7000));
        assert_eq!(o.trace_state, "a=b");
        assert_eq!(o.status.map(|s| s.code), Some(STATUS_ERROR));
        let root = TraceSpan::otel(Kind::Server, Extracted::Absent, true, || 7).expect("root");
        let o = span(&root);
        assert_eq!((o.kind, o.flags, o.status), (KIND_SERVER, 0x101, None));
        assert!(o.parent_span_id.is_empty());
        assert!(root.start <= SystemTime::now());
    }

    #[test]
    fn the_resource_follows_the_switches() {
        let mut o = OpenTelemetry {
            channel: strait_model::access_log::RemoteChannel {
                cluster: "c".into(),
                authority: String::new(),
                timeout: None,
                initial_metadata: Vec::new(),
                log_name: String::new(),
                flush_interval: FLUSH_INTERVAL,
                buffer_bytes: 0,
                stat_prefix: String::new(),
            },
            service_name: "svc".into(),
            service_name_attribute: true,
            sdk_attributes: true,
            scope: true,
            max_cache_size: 1024,
        };
        let keys = |r: Resource| {
            r.attributes
                .into_iter()
                .map(|kv| kv.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(resource(&o)),
            [
                "service.name",
                "telemetry.sdk.name",
                "telemetry.sdk.version",
                "telemetry.sdk.language"
            ]
        );
        o.sdk_attributes = false;
        assert_eq!(keys(resource(&o)), ["service.name"]);
        o.service_name_attribute = false;
        assert!(keys(resource(&o)).is_empty());
    }
}
