//! OTLP logs (`opentelemetry.proto.logs.v1`, `...collector.logs.v1`): the
//! few messages `envoy-types` does not ship, declared here with their
//! field numbers from the OpenTelemetry protocol, and a [`Record`] turned
//! into a `LogRecord` as Envoy's OpenTelemetry access logger builds it.
//! Public so tests decode what a collector receives with the same types.

use std::time::UNIX_EPOCH;

use envoy_types::pb::opentelemetry::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use strait_access_log::{Record, render_string};
use strait_model::access_log::{AnyValue as ModelValue, OtelFormat, OtelLog};

/// `ExportLogsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `ExportLogsServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

/// `ExportLogsPartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `ResourceLogs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.resource.v1.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `ScopeLogs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `LogRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(string, tag = "3")]
    pub severity_text: String,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "12")]
    pub event_name: String,
}

/// The gRPC method's path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The proxy's identity as Envoy's `LocalInfo` gives it to the logger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalInfo {
    /// `node.id`.
    pub node_name: String,
    /// `node.cluster`.
    pub cluster_name: String,
    /// `node.locality.zone`.
    pub zone_name: String,
    /// The whole node's protobuf encoding (the gRPC access log service's
    /// identifier carries it).
    pub node_encoded: Vec<u8>,
}

impl LocalInfo {
    /// From the bootstrap's node (its zone read from the node's encoding).
    pub fn from_node(node: Option<&strait_model::Node>) -> Self {
        use prost::Message as _;
        let Some(node) = node else {
            return LocalInfo::default();
        };
        let zone = envoy_types::pb::envoy::config::core::v3::Node::decode(node.encoded.as_slice())
            .ok()
            .and_then(|n| n.locality)
            .map(|l| l.zone)
            .unwrap_or_default();
        LocalInfo {
            node_name: node.id.clone(),
            cluster_name: node.cluster.clone(),
            zone_name: zone,
            node_encoded: node.encoded.clone(),
        }
    }

    /// The bootstrap's node, as Envoy's identifier sends it (`None` when
    /// the bootstrap has none).
    pub fn node(&self) -> Option<envoy_types::pb::envoy::config::core::v3::Node> {
        use prost::Message as _;
        if self.node_encoded.is_empty() && self.node_name.is_empty() {
            return None;
        }
        envoy_types::pb::envoy::config::core::v3::Node::decode(self.node_encoded.as_slice()).ok()
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The resource of every batch: the built-in labels (unless disabled),
/// then `resource_attributes`, a later key replacing an earlier one in
/// place (Envoy 1.40's precedence).
pub fn resource(log: &OtelLog, local: &LocalInfo) -> Resource {
    let mut attributes: Vec<KeyValue> = Vec::new();
    let mut put = |kv: KeyValue| match attributes.iter_mut().find(|a| a.key == kv.key) {
        Some(slot) => *slot = kv,
        None => attributes.push(kv),
    };
    if log.builtin_labels {
        put(string_kv("log_name", &log.channel.log_name));
        put(string_kv("zone_name", &local.zone_name));
        put(string_kv("cluster_name", &local.cluster_name));
        put(string_kv("node_name", &local.node_name));
    }
    for (k, v) in &log.resource_attributes {
        put(KeyValue {
            key: k.clone(),
            value: Some(literal(v)),
            ..KeyValue::default()
        });
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

fn literal(v: &ModelValue) -> AnyValue {
    let value = match v {
        ModelValue::String(s) => Value::StringValue(s.clone()),
        ModelValue::Bool(b) => Value::BoolValue(*b),
        ModelValue::Int(i) => Value::IntValue(*i),
        ModelValue::Double(d) => Value::DoubleValue(*d),
        ModelValue::Bytes(b) => Value::BytesValue(b.clone()),
        ModelValue::Array(l) => Value::ArrayValue(ArrayValue {
            values: l.iter().map(literal).collect(),
        }),
        ModelValue::KvList(kv) => Value::KvlistValue(KeyValueList {
            values: kv
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(literal(v)),
                    ..KeyValue::default()
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn formatted(f: &OtelFormat, r: &Record<'_>) -> AnyValue {
    let value = match f {
        OtelFormat::String(parts) => Value::StringValue(render_string(parts, r)),
        OtelFormat::KvList(kv) => Value::KvlistValue(KeyValueList {
            values: kv
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(formatted(v, r)),
                    ..KeyValue::default()
                })
                .collect(),
        }),
        OtelFormat::Array(l) => Value::ArrayValue(ArrayValue {
            values: l.iter().map(|v| formatted(v, r)).collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

/// `r` as Envoy's OpenTelemetry logger records it: the start time, the
/// formatted body (when configured) and attributes. No trace context:
/// Strait does not trace yet, and Envoy sets none for an untraced request.
pub fn log_record(log: &OtelLog, r: &Record<'_>) -> LogRecord {
    let time_unix_nano = r
        .start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    LogRecord {
        time_unix_nano,
        body: log.body.as_ref().map(|b| formatted(b, r)),
        attributes: log
            .attributes
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: Some(formatted(v, r)),
                ..KeyValue::default()
            })
            .collect(),
        ..LogRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use strait_model::access_log::{FormatCommand, FormatPart, RemoteChannel};

    use super::*;

    fn log(builtin_labels: bool) -> OtelLog {
        OtelLog {
            channel: RemoteChannel {
                cluster: "c".into(),
                authority: String::new(),
                timeout: None,
                initial_metadata: Vec::new(),
                log_name: "ln".into(),
                flush_interval: Duration::from_secs(1),
                buffer_bytes: 1,
                stat_prefix: String::new(),
            },
            builtin_labels,
            resource_attributes: vec![
                ("zone_name".into(), ModelValue::Int(7)),
                ("extra".into(), ModelValue::Bool(true)),
            ],
            body: Some(OtelFormat::String(vec![
                FormatPart::Text("code=".into()),
                FormatPart::Command(FormatCommand::ResponseCode),
                FormatPart::Text(" host=".into()),
                FormatPart::Command(FormatCommand::Address {
                    of: strait_model::access_log::AddressOf::UpstreamRemote,
                    without_port: false,
                }),
            ])),
            attributes: Vec::new(),
        }
    }

    fn keys(r: &Resource) -> Vec<(String, Option<Value>)> {
        r.attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
            .collect()
    }

    #[test]
    fn resource_attributes_override_built_in_labels_in_place() {
        let local = LocalInfo {
            node_name: "n".into(),
            cluster_name: "c".into(),
            zone_name: "z".into(),
            ..LocalInfo::default()
        };
        let s = |v: &str| Some(Value::StringValue(v.into()));
        assert_eq!(
            keys(&resource(&log(true), &local)),
            vec![
                ("log_name".into(), s("ln")),
                ("zone_name".into(), Some(Value::IntValue(7))),
                ("cluster_name".into(), s("c")),
                ("node_name".into(), s("n")),
                ("extra".into(), Some(Value::BoolValue(true))),
            ]
        );
        assert_eq!(
            keys(&resource(&log(false), &local)),
            vec![
                ("zone_name".into(), Some(Value::IntValue(7))),
                ("extra".into(), Some(Value::BoolValue(true))),
            ]
        );
    }

    #[test]
    fn records_carry_the_start_time_and_dashes_for_missing_values() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let mut r = Record::new(start, addr, addr);
        r.status = 404;
        let rec = log_record(&log(true), &r);
        assert_eq!(rec.time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(
            rec.body.and_then(|b| b.value),
            Some(Value::StringValue("code=404 host=-".into()))
        );
        assert!(rec.trace_id.is_empty() && rec.span_id.is_empty());
    }
}
