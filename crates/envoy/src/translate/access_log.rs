//! `access_log` entries of a listener, an HTTP connection manager or a
//! TCP proxy, and the `AccessLogFilter`s they (and local reply mappers)
//! select with. The file, stdout and stderr loggers are translated field
//! by field, the OpenTelemetry and gRPC access log service (`http_grpc`,
//! `tcp_grpc`) loggers in `remote_log.rs`; every other logger is refused
//! by its type URL.

use envoy_types::pb::envoy::{
    config::accesslog::v3::{
        AccessLog, AccessLogFilter, AndFilter, ComparisonFilter, DurationFilter, HeaderFilter,
        NotHealthCheckFilter, OrFilter, ResponseFlagFilter, RuntimeFilter, StatusCodeFilter,
        TraceableFilter, access_log, access_log_filter::FilterSpecifier, comparison_filter::Op,
    },
    extensions::access_loggers::{
        file::v3::{FileAccessLog, file_access_log},
        grpc::v3::{HttpGrpcAccessLogConfig, TcpGrpcAccessLogConfig},
        open_telemetry::v3::OpenTelemetryAccessLogConfig,
        stream::v3::{StderrAccessLog, StdoutAccessLog, stderr_access_log, stdout_access_log},
    },
    r#type::v3::{FractionalPercent, fractional_percent::DenominatorType},
};
use envoy_types::pb::google::protobuf::Struct;
use prost::Name;

use super::{
    Context, at, decode_any, format,
    inert::{Slot, effective_type_url, inert},
    item, policy, remote_log, type_name,
};
use crate::model::access_log::{
    AccessLog as Log, AccessLogs, BodyFormat, CompareOp, Comparison, FormatKind, LogFilter,
    LogSink, RuntimeSample,
};

/// Envoy's response flags, as `response_flag_filter.flags` accepts them.
const RESPONSE_FLAGS: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// Envoy's default access-log format (`config_access_log_default_format`).
pub(super) const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
     %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
     %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
     \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \
     \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// Where the access logs are: decides what `traceable_filter` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tracing {
    /// A connection manager with `tracing`: `traceable_filter` reads the
    /// request's trace decision.
    Configured,
    /// A connection manager with `tracing`, for a local reply mapper:
    /// mappers run before Strait hands them the trace decision, so
    /// `traceable_filter` is refused there.
    ConfiguredUnread,
    /// No tracing (TCP proxy, listener, a manager without `tracing`): Envoy
    /// never marks a request traceable, so the filter never matches.
    None,
}

/// `access_log` entries, in config order; `None` when one is refused.
pub(super) fn access_logs(
    cx: &mut Context,
    path: &str,
    logs: &[AccessLog],
    tracing: Tracing,
) -> AccessLogs {
    let mut out = Vec::with_capacity(logs.len());
    for (i, log) in logs.iter().enumerate() {
        let lpath = item(path, "access_log", i);
        let AccessLog {
            // A label; the type URL picks the logger.
            name: _,
            filter,
            config_type,
        } = log;
        let filter = filter
            .as_ref()
            .and_then(|f| log_filter(cx, f, &at(&lpath, "filter"), tracing));
        let Some(access_log::ConfigType::TypedConfig(any)) = config_type else {
            cx.invalid(at(&lpath, "typed_config"), "is required");
            continue;
        };
        let tpath = at(&lpath, "typed_config");
        let name = type_name(&any.type_url);
        let made = if name == FileAccessLog::full_name() {
            decode_any::<FileAccessLog>(cx, &tpath, any).and_then(|f| file(cx, &f, &tpath))
        } else if name == StdoutAccessLog::full_name() {
            decode_any::<StdoutAccessLog>(cx, &tpath, any).and_then(|s| {
                let StdoutAccessLog { access_log_format } = s;
                let f = access_log_format.map(|stdout_access_log::AccessLogFormat::LogFormat(f)| f);
                Some((LogSink::Stdout, log_format(cx, f.as_ref(), &tpath)?))
            })
        } else if name == StderrAccessLog::full_name() {
            decode_any::<StderrAccessLog>(cx, &tpath, any).and_then(|s| {
                let StderrAccessLog { access_log_format } = s;
                let f = access_log_format.map(|stderr_access_log::AccessLogFormat::LogFormat(f)| f);
                Some((LogSink::Stderr, log_format(cx, f.as_ref(), &tpath)?))
            })
        } else if name == OpenTelemetryAccessLogConfig::full_name() {
            // The record's shape is `body` and `attributes`: no line format
            // (an empty one, which reads nothing).
            decode_any::<OpenTelemetryAccessLogConfig>(cx, &tpath, any).and_then(|c| {
                let sink = remote_log::open_telemetry(cx, &c, &tpath)?;
                Some((sink, plain(FormatKind::Text(Vec::new()))))
            })
        } else if name == HttpGrpcAccessLogConfig::full_name() {
            // The entry's shape is fixed: no line format.
            decode_any::<HttpGrpcAccessLogConfig>(cx, &tpath, any).and_then(|c| {
                let sink = remote_log::http_grpc(cx, &c, &tpath)?;
                Some((sink, plain(FormatKind::Text(Vec::new()))))
            })
        } else if name == TcpGrpcAccessLogConfig::full_name() {
            decode_any::<TcpGrpcAccessLogConfig>(cx, &tpath, any).and_then(|c| {
                let sink = remote_log::tcp_grpc(cx, &c, &tpath)?;
                Some((sink, plain(FormatKind::Text(Vec::new()))))
            })
        } else {
            if inert(any, Slot::AccessLog).is_none() {
                cx.unsupported(
                    at(&tpath, "@type"),
                    format!("access logger {}", effective_type_url(any)),
                );
            }
            None
        };
        if let Some((sink, format)) = made {
            out.push(Log::new(sink, filter, format));
        }
    }
    out.into()
}

fn file(cx: &mut Context, f: &FileAccessLog, path: &str) -> Option<(LogSink, BodyFormat)> {
    let FileAccessLog {
        path: file_path,
        access_log_format,
    } = f;
    if file_path.is_empty() {
        cx.invalid(at(path, "path"), "must not be empty");
        return None;
    }
    #[allow(deprecated)]
    let format = match access_log_format {
        None => default_format(cx, path)?,
        Some(file_access_log::AccessLogFormat::LogFormat(f)) => {
            format::substitution_format(cx, f, &at(path, "log_format"))?
        }
        // The deprecated shortcuts: a text format as it is (no newline
        // added), and JSON formats, typed alike in Envoy 1.40.
        Some(file_access_log::AccessLogFormat::Format(s)) => {
            plain(FormatKind::Text(format::parts(cx, s, &at(path, "format"))?))
        }
        Some(file_access_log::AccessLogFormat::JsonFormat(s)) => {
            json(cx, s, &at(path, "json_format"))?
        }
        Some(file_access_log::AccessLogFormat::TypedJsonFormat(s)) => {
            json(cx, s, &at(path, "typed_json_format"))?
        }
    };
    let sink = match file_path.as_str() {
        // Envoy writes these through the file logger too.
        "/dev/stdout" => LogSink::Stdout,
        "/dev/stderr" => LogSink::Stderr,
        p => LogSink::File(p.to_owned()),
    };
    Some((sink, format))
}

fn plain(kind: FormatKind) -> BodyFormat {
    BodyFormat {
        kind,
        content_type: String::new(),
        omit_empty_values: false,
    }
}

fn json(cx: &mut Context, s: &Struct, path: &str) -> Option<BodyFormat> {
    Some(plain(FormatKind::Json(format::json_struct(cx, s, path)?)))
}

fn default_format(cx: &mut Context, path: &str) -> Option<BodyFormat> {
    Some(plain(FormatKind::Text(format::parts(
        cx,
        DEFAULT_FORMAT,
        path,
    )?)))
}

/// `log_format`, or Envoy's default format without one.
fn log_format(
    cx: &mut Context,
    f: Option<&envoy_types::pb::envoy::config::core::v3::SubstitutionFormatString>,
    path: &str,
) -> Option<BodyFormat> {
    match f {
        None => default_format(cx, path),
        // `content_type` only matters for local reply bodies.
        Some(f) => format::substitution_format(cx, f, &at(path, "log_format")),
    }
}

/// An `AccessLogFilter`.
pub(super) fn log_filter(
    cx: &mut Context,
    f: &AccessLogFilter,
    path: &str,
    tracing: Tracing,
) -> Option<LogFilter> {
    let AccessLogFilter { filter_specifier } = f;
    let Some(spec) = filter_specifier else {
        cx.invalid(path, "one filter is required");
        return None;
    };
    match spec {
        FilterSpecifier::StatusCodeFilter(StatusCodeFilter { comparison }) => {
            comparison_of(cx, comparison.as_ref(), &at(path, "status_code_filter"))
                .map(LogFilter::Status)
        }
        FilterSpecifier::DurationFilter(DurationFilter { comparison }) => {
            comparison_of(cx, comparison.as_ref(), &at(path, "duration_filter"))
                .map(LogFilter::Duration)
        }
        FilterSpecifier::NotHealthCheckFilter(NotHealthCheckFilter {}) => {
            Some(LogFilter::NotHealthCheck)
        }
        FilterSpecifier::TraceableFilter(TraceableFilter {}) => match tracing {
            Tracing::None => Some(LogFilter::NeverTraceable),
            Tracing::Configured => Some(LogFilter::Traceable),
            Tracing::ConfiguredUnread => {
                cx.unsupported(
                    at(path, "traceable_filter"),
                    "traceable_filter in a local reply mapper with tracing configured",
                );
                None
            }
        },
        FilterSpecifier::AndFilter(AndFilter { filters }) => {
            list(cx, filters, &at(path, "and_filter"), tracing).map(LogFilter::And)
        }
        FilterSpecifier::OrFilter(OrFilter { filters }) => {
            list(cx, filters, &at(path, "or_filter"), tracing).map(LogFilter::Or)
        }
        FilterSpecifier::HeaderFilter(HeaderFilter { header }) => {
            let p = at(path, "header_filter");
            let Some(h) = header else {
                cx.invalid(at(&p, "header"), "is required");
                return None;
            };
            policy::header_condition(cx, h, &at(&p, "header")).map(LogFilter::Header)
        }
        FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter { flags }) => {
            let p = at(path, "response_flag_filter");
            let before = cx.problems.len();
            for (i, flag) in flags.iter().enumerate() {
                if !RESPONSE_FLAGS.contains(&flag.as_str()) {
                    cx.invalid(
                        item(&p, "flags", i),
                        format!("unknown response flag {flag:?}"),
                    );
                }
            }
            (cx.problems.len() == before).then(|| LogFilter::ResponseFlags(flags.clone()))
        }
        FilterSpecifier::RuntimeFilter(r) => runtime(cx, r, &at(path, "runtime_filter")),
        FilterSpecifier::GrpcStatusFilter(_) => refuse(cx, path, "grpc_status_filter"),
        FilterSpecifier::ExtensionFilter(_) => refuse(cx, path, "extension_filter"),
        FilterSpecifier::MetadataFilter(_) => refuse(cx, path, "metadata_filter"),
        FilterSpecifier::LogTypeFilter(_) => refuse(cx, path, "log_type_filter"),
    }
}

/// `runtime_filter`: no runtime layer Strait accepts sets `runtime_key`
/// (see the bootstrap's `layered_runtime`), so `percent_sampled` (0 % when
/// absent) decides, as it does in Envoy without an override.
fn runtime(cx: &mut Context, r: &RuntimeFilter, path: &str) -> Option<LogFilter> {
    let RuntimeFilter {
        runtime_key,
        percent_sampled,
        use_independent_randomness,
    } = r;
    if runtime_key.is_empty() {
        cx.invalid(at(path, "runtime_key"), "must not be empty");
        return None;
    }
    let (numerator, denominator) = match percent_sampled {
        None => (0, 100),
        Some(FractionalPercent {
            numerator,
            denominator,
        }) => match DenominatorType::try_from(*denominator) {
            Ok(DenominatorType::Hundred) => (*numerator, 100),
            Ok(DenominatorType::TenThousand) => (*numerator, 10_000),
            Ok(DenominatorType::Million) => (*numerator, 1_000_000),
            Err(_) => {
                cx.invalid(
                    at(&at(path, "percent_sampled"), "denominator"),
                    format!("unknown value {denominator}"),
                );
                return None;
            }
        },
    };
    Some(LogFilter::Runtime(RuntimeSample {
        numerator: numerator.min(denominator),
        denominator,
        independent_randomness: *use_independent_randomness,
    }))
}

fn refuse(cx: &mut Context, path: &str, field: &str) -> Option<LogFilter> {
    cx.unsupported(at(path, field), format!("access log filter {field}"));
    None
}

fn list(
    cx: &mut Context,
    filters: &[AccessLogFilter],
    path: &str,
    tracing: Tracing,
) -> Option<Vec<LogFilter>> {
    if filters.len() < 2 {
        cx.invalid(at(path, "filters"), "needs at least 2 filters");
        return None;
    }
    let before = cx.problems.len();
    let out: Vec<_> = filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| log_filter(cx, f, &item(path, "filters", i), tracing))
        .collect();
    (cx.problems.len() == before).then_some(out)
}

fn comparison_of(cx: &mut Context, c: Option<&ComparisonFilter>, path: &str) -> Option<Comparison> {
    let Some(ComparisonFilter { op, value }) = c else {
        cx.invalid(at(path, "comparison"), "is required");
        return None;
    };
    let path = at(path, "comparison");
    let op = match Op::try_from(*op) {
        Ok(Op::Eq) => CompareOp::Eq,
        Ok(Op::Ge) => CompareOp::Ge,
        Ok(Op::Le) => CompareOp::Le,
        Ok(Op::Ne) => CompareOp::Ne,
        Err(_) => {
            cx.invalid(at(&path, "op"), format!("unknown value {op}"));
            return None;
        }
    };
    let Some(v) = value else {
        cx.invalid(at(&path, "value"), "is required");
        return None;
    };
    // `runtime_key` names a runtime override of `default_value`; with no
    // runtime layer setting it, Envoy uses the default, as here.
    Some(Comparison {
        op,
        value: u64::from(v.default_value),
    })
}
