//! The remote access loggers: `envoy.access_loggers.open_telemetry`
//! (`OpenTelemetryAccessLogConfig`) and the gRPC access log service's
//! `envoy.access_loggers.http_grpc` / `tcp_grpc` (`HttpGrpcAccessLogConfig`,
//! `TcpGrpcAccessLogConfig`), translated field by field (checked against
//! what Envoy 1.40 accepts).

use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::core::v3::{
        GrpcService,
        grpc_service::{EnvoyGrpc, TargetSpecifier},
    },
    extensions::access_loggers::{
        grpc::v3::{CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig, TcpGrpcAccessLogConfig},
        open_telemetry::v3::OpenTelemetryAccessLogConfig,
    },
};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use envoy_types::pb::opentelemetry::proto::common::v1::{
    AnyValue, KeyValue, KeyValueList, any_value::Value,
};

use super::{Context, at, duration, ext_authz::headers, format, item};
use crate::model::access_log::{
    AnyValue as ModelValue, GrpcLog, GrpcLogKind, LogSink, OtelFormat, OtelLog, RemoteChannel,
};

/// Envoy's defaults for `buffer_flush_interval` and `buffer_size_bytes`.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const BUFFER_BYTES: u64 = 16_384;

/// An `OpenTelemetryAccessLogConfig`.
pub(super) fn open_telemetry(
    cx: &mut Context,
    c: &OpenTelemetryAccessLogConfig,
    path: &str,
) -> Option<LogSink> {
    let OpenTelemetryAccessLogConfig {
        common_config,
        http_service,
        grpc_service,
        disable_builtin_labels,
        resource_attributes,
        resource_detectors,
        body,
        attributes,
        stat_prefix,
        formatters,
        log_name,
        buffer_flush_interval,
        buffer_size_bytes,
        filter_state_objects_to_log,
        custom_tags,
    } = c;
    // OTLP/HTTP, resource detectors, formatter extensions, filter state and
    // custom tags are not implemented.
    reject_set!(cx, path;
        http_service, resource_detectors, formatters, filter_state_objects_to_log, custom_tags,
    );
    let before = cx.problems.len();
    let cpath = at(path, "common_config");
    let common = common_config
        .as_ref()
        .map(|c| common_parts(cx, c, &cpath))
        .unwrap_or_default();
    // Envoy 1.40 prefers the top-level fields over `common_config`'s
    // (deprecated, but what Istio's `envoyOtelAls` renders).
    let (service, spath) = match (grpc_service, common.grpc_service) {
        (Some(g), _) => (g, at(path, "grpc_service")),
        (None, Some(g)) => (g, at(&cpath, "grpc_service")),
        (None, None) => {
            cx.invalid(at(path, "grpc_service"), "is required");
            return None;
        }
    };
    let log_name = if log_name.is_empty() {
        common.log_name
    } else {
        log_name.as_str()
    };
    let flush_interval = match buffer_flush_interval {
        Some(d) => flush(cx, d, &at(path, "buffer_flush_interval")),
        None => common.flush_interval,
    };
    let buffer_bytes = buffer_size_bytes
        .as_ref()
        .map_or(common.buffer_bytes, |v| u64::from(v.value));
    let target = grpc_target(cx, service, &spath);
    let resource_attributes = resource_attributes.as_ref().map_or_else(Vec::new, |kv| {
        literal_list(cx, kv, &at(path, "resource_attributes"))
    });
    let body = body
        .as_ref()
        .and_then(|b| otel_format(cx, b, &at(path, "body")));
    let attributes = attributes
        .as_ref()
        .map_or_else(Vec::new, |kv| format_list(cx, kv, &at(path, "attributes")));
    if cx.problems.len() != before {
        return None;
    }
    let (cluster, authority, timeout, initial_metadata) = target?;
    Some(LogSink::OpenTelemetry(Arc::new(OtelLog {
        channel: RemoteChannel {
            cluster,
            authority,
            timeout,
            initial_metadata,
            log_name: log_name.to_owned(),
            flush_interval: flush_interval?,
            buffer_bytes,
            stat_prefix: stat_prefix.clone(),
        },
        builtin_labels: !disable_builtin_labels,
        resource_attributes,
        body,
        attributes,
    })))
}

/// What `common_config` contributes (each overridden by its top-level
/// twin).
struct Common<'a> {
    log_name: &'a str,
    grpc_service: Option<&'a GrpcService>,
    flush_interval: Option<Duration>,
    buffer_bytes: u64,
    /// `filter_state_objects_to_log`: read by the gRPC access log service
    /// loggers only.
    filter_state: &'a [String],
}

impl Default for Common<'_> {
    fn default() -> Self {
        Common {
            log_name: "",
            grpc_service: None,
            flush_interval: Some(FLUSH_INTERVAL),
            buffer_bytes: BUFFER_BYTES,
            filter_state: &[],
        }
    }
}

fn flush(cx: &mut Context, d: &ProtoDuration, path: &str) -> Option<Duration> {
    match duration(cx, path, d) {
        Some(d) if d.is_zero() => {
            cx.invalid(path, "must be greater than 0s");
            None
        }
        d => d,
    }
}

/// `CommonGrpcAccessLogConfig`.
fn common_parts<'a>(cx: &mut Context, c: &'a CommonGrpcAccessLogConfig, path: &str) -> Common<'a> {
    let CommonGrpcAccessLogConfig {
        log_name,
        grpc_service,
        transport_api_version,
        buffer_flush_interval,
        buffer_size_bytes,
        // Read by the gRPC access log service loggers only (refused there
        // when set): Envoy 1.40's OpenTelemetry logger adds the top-level
        // list's objects to a record, never this one's (checked against
        // Envoy with a filter state object in both places). Istio's
        // `envoyOtelAls` sets it to its peer metadata keys.
        filter_state_objects_to_log,
        grpc_stream_retry_policy,
        custom_tags,
    } = c;
    reject_set!(cx, path; grpc_stream_retry_policy, custom_tags);
    // Envoy 1.40 refuses V2 and takes AUTO (with a warning) and V3.
    if *transport_api_version == 1 {
        cx.invalid(
            at(path, "transport_api_version"),
            "V2 is not supported (use V3)",
        );
    }
    // Envoy's validation: a `common_config` names its log.
    if log_name.is_empty() {
        cx.invalid(at(path, "log_name"), "must not be empty");
    }
    Common {
        log_name,
        grpc_service: grpc_service.as_ref(),
        flush_interval: match buffer_flush_interval {
            None => Some(FLUSH_INTERVAL),
            Some(d) => flush(cx, d, &at(path, "buffer_flush_interval")),
        },
        buffer_bytes: buffer_size_bytes
            .as_ref()
            .map_or(BUFFER_BYTES, |v| u64::from(v.value)),
        filter_state: filter_state_objects_to_log,
    }
}

/// An `HttpGrpcAccessLogConfig` (`envoy.access_loggers.http_grpc`).
pub(super) fn http_grpc(
    cx: &mut Context,
    c: &HttpGrpcAccessLogConfig,
    path: &str,
) -> Option<LogSink> {
    let HttpGrpcAccessLogConfig {
        common_config,
        additional_request_headers_to_log,
        additional_response_headers_to_log,
        additional_response_trailers_to_log,
    } = c;
    // Envoy 1.40 takes any string (checked with `--mode validate`); one
    // that is no header name simply never matches.
    let names =
        |list: &[String]| -> Vec<String> { list.iter().map(|h| h.to_ascii_lowercase()).collect() };
    let request_headers = names(additional_request_headers_to_log);
    let response_headers = names(additional_response_headers_to_log);
    let response_trailers = names(additional_response_trailers_to_log);
    grpc_log(cx, common_config.as_ref(), path, GrpcLogKind::Http).map(|mut g| {
        g.request_headers = request_headers;
        g.response_headers = response_headers;
        g.response_trailers = response_trailers;
        LogSink::GrpcService(Arc::new(g))
    })
}

/// A `TcpGrpcAccessLogConfig` (`envoy.access_loggers.tcp_grpc`).
pub(super) fn tcp_grpc(
    cx: &mut Context,
    c: &TcpGrpcAccessLogConfig,
    path: &str,
) -> Option<LogSink> {
    let TcpGrpcAccessLogConfig { common_config } = c;
    grpc_log(cx, common_config.as_ref(), path, GrpcLogKind::Tcp)
        .map(|g| LogSink::GrpcService(Arc::new(g)))
}

/// The `common_config` of a gRPC access log service logger: required,
/// with its `grpc_service` and `log_name`.
fn grpc_log(
    cx: &mut Context,
    common: Option<&CommonGrpcAccessLogConfig>,
    path: &str,
    kind: GrpcLogKind,
) -> Option<GrpcLog> {
    let cpath = at(path, "common_config");
    let Some(common) = common else {
        cx.invalid(cpath, "is required");
        return None;
    };
    let before = cx.problems.len();
    let parts = common_parts(cx, common, &cpath);
    // Filter state objects in the entry are not implemented.
    if !parts.filter_state.is_empty() {
        cx.unsupported(
            at(&cpath, "filter_state_objects_to_log"),
            "filter_state_objects_to_log",
        );
    }
    let Some(service) = parts.grpc_service else {
        cx.invalid(at(&cpath, "grpc_service"), "is required");
        return None;
    };
    let target = grpc_target(cx, service, &at(&cpath, "grpc_service"));
    if cx.problems.len() != before {
        return None;
    }
    let (cluster, authority, timeout, initial_metadata) = target?;
    Some(GrpcLog {
        channel: RemoteChannel {
            cluster,
            authority,
            timeout,
            initial_metadata,
            log_name: parts.log_name.to_owned(),
            flush_interval: parts.flush_interval?,
            buffer_bytes: parts.buffer_bytes,
            // Envoy's gRPC access log service loggers have no stat prefix.
            stat_prefix: String::new(),
        },
        kind,
        request_headers: Vec::new(),
        response_headers: Vec::new(),
        response_trailers: Vec::new(),
    })
}

pub(super) type Target = (String, String, Option<Duration>, Vec<(String, String)>);

/// A `GrpcService`: the cluster, authority, deadline and metadata.
pub(super) fn grpc_target(cx: &mut Context, g: &GrpcService, gpath: &str) -> Option<Target> {
    let GrpcService {
        timeout,
        initial_metadata,
        retry_policy,
        target_specifier,
    } = g;
    reject_set!(cx, gpath; retry_policy);
    let timeout = match timeout {
        None => None,
        Some(d) => duration(cx, &at(gpath, "timeout"), d).filter(|d| !d.is_zero()),
    };
    let initial_metadata = headers(cx, initial_metadata, gpath, "initial_metadata");
    match target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
            cluster_name,
            authority,
            retry_policy,
            // A cap on the answer's size; an export answer is tiny.
            max_receive_message_length: _,
            // Strait adds no x-envoy-* headers to the call anyway.
            skip_envoy_headers: _,
        })) => {
            let epath = at(gpath, "envoy_grpc");
            reject_set!(cx, &epath; retry_policy);
            if cluster_name.is_empty() {
                cx.invalid(at(&epath, "cluster_name"), "must not be empty");
                return None;
            }
            cx.require_grpc_cluster(at(&epath, "cluster_name"), cluster_name);
            Some((
                cluster_name.clone(),
                authority.clone(),
                timeout,
                initial_metadata,
            ))
        }
        Some(TargetSpecifier::GoogleGrpc(_)) => {
            cx.unsupported(at(gpath, "google_grpc"), "google_grpc (use envoy_grpc)");
            None
        }
        None => {
            cx.invalid(gpath, "needs envoy_grpc");
            None
        }
    }
}

fn kv_key<'a>(kv: &'a KeyValue, path: &str, cx: &mut Context) -> Option<(&'a str, &'a AnyValue)> {
    let KeyValue {
        key,
        value,
        // Profiling-only string-table references.
        key_strindex,
    } = kv;
    if *key_strindex != 0 {
        cx.unsupported(at(path, "key_strindex"), "key_strindex");
        return None;
    }
    match value {
        Some(v) => Some((key.as_str(), v)),
        None => {
            cx.invalid(at(path, "value"), "is required");
            None
        }
    }
}

/// A `KeyValueList`'s entries, each value translated by `value` (formats
/// for `attributes`, literals for `resource_attributes`).
fn kv_list<T>(
    cx: &mut Context,
    kv: &KeyValueList,
    path: &str,
    value: fn(&mut Context, &AnyValue, &str) -> Option<T>,
) -> Vec<(String, T)> {
    let KeyValueList { values } = kv;
    values
        .iter()
        .enumerate()
        .filter_map(|(i, kv)| {
            let p = item(path, "values", i);
            let (k, v) = kv_key(kv, &p, cx)?;
            Some((k.to_owned(), value(cx, v, &at(&p, "value"))?))
        })
        .collect()
}

/// `attributes` (and a `kvlist_value` inside a format).
fn format_list(cx: &mut Context, kv: &KeyValueList, path: &str) -> Vec<(String, OtelFormat)> {
    kv_list(cx, kv, path, otel_format)
}

/// A formatted `AnyValue`: Envoy accepts strings (formats), key-value
/// lists and arrays only, and refuses the config otherwise.
fn otel_format(cx: &mut Context, v: &AnyValue, path: &str) -> Option<OtelFormat> {
    match &v.value {
        Some(Value::StringValue(s)) => {
            format::parts(cx, s, &at(path, "string_value")).map(OtelFormat::String)
        }
        Some(Value::KvlistValue(kv)) => Some(OtelFormat::KvList(format_list(
            cx,
            kv,
            &at(path, "kvlist_value"),
        ))),
        Some(Value::ArrayValue(a)) => Some(OtelFormat::Array(
            a.values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| otel_format(cx, v, &item(path, "array_value.values", i)))
                .collect(),
        )),
        _ => {
            cx.invalid(
                path,
                "only string values, nested key value lists and array values are supported in \
                 an OpenTelemetry access log format",
            );
            None
        }
    }
}

/// `resource_attributes`: literal values, any kind.
fn literal_list(cx: &mut Context, kv: &KeyValueList, path: &str) -> Vec<(String, ModelValue)> {
    kv_list(cx, kv, path, literal)
}

fn literal(cx: &mut Context, v: &AnyValue, path: &str) -> Option<ModelValue> {
    Some(match &v.value {
        None => ModelValue::String(String::new()),
        Some(Value::StringValue(s)) => ModelValue::String(s.clone()),
        Some(Value::BoolValue(b)) => ModelValue::Bool(*b),
        Some(Value::IntValue(i)) => ModelValue::Int(*i),
        Some(Value::DoubleValue(d)) => ModelValue::Double(*d),
        Some(Value::BytesValue(b)) => ModelValue::Bytes(b.clone()),
        Some(Value::ArrayValue(a)) => ModelValue::Array(
            a.values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| literal(cx, v, &item(path, "array_value.values", i)))
                .collect(),
        ),
        Some(Value::KvlistValue(kv)) => {
            ModelValue::KvList(literal_list(cx, kv, &at(path, "kvlist_value")))
        }
        Some(Value::StringValueStrindex(_)) => {
            cx.unsupported(at(path, "string_value_strindex"), "string_value_strindex");
            return None;
        }
    })
}
