//! The connection manager's `local_reply_config`: response mappers (their
//! access-log filter, status, body, body format and headers) and the body
//! format of every local reply.

use envoy_types::pb::envoy::{
    config::accesslog::v3::{
        AccessLogFilter, AndFilter, ComparisonFilter, DurationFilter, HeaderFilter,
        NotHealthCheckFilter, OrFilter, ResponseFlagFilter, StatusCodeFilter,
        access_log_filter::FilterSpecifier, comparison_filter::Op,
    },
    extensions::filters::network::http_connection_manager::v3::{LocalReplyConfig, ResponseMapper},
};

use super::{Context, at, format, item, policy, route};
use crate::model::{
    self,
    local_reply::{CompareOp, Comparison, ReplyFilter},
};

/// Envoy's response flags, as `response_flag_filter.flags` accepts them.
const RESPONSE_FLAGS: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

pub(super) fn local_reply_config(
    cx: &mut Context,
    c: &LocalReplyConfig,
    path: &str,
) -> Option<model::local_reply::LocalReplyConfig> {
    let LocalReplyConfig {
        mappers,
        body_format,
    } = c;
    let before = cx.problems.len();
    let mappers: Vec<_> = mappers
        .iter()
        .enumerate()
        .filter_map(|(i, m)| mapper(cx, m, &item(path, "mappers", i)))
        .collect();
    let body_format = body_format
        .as_ref()
        .and_then(|f| format::substitution_format(cx, f, &at(path, "body_format")));
    (cx.problems.len() == before).then_some(model::local_reply::LocalReplyConfig {
        mappers,
        body_format,
    })
}

fn mapper(
    cx: &mut Context,
    m: &ResponseMapper,
    path: &str,
) -> Option<model::local_reply::ResponseMapper> {
    let ResponseMapper {
        filter,
        status_code,
        body,
        body_format_override,
        headers_to_add,
    } = m;
    let Some(filter) = filter else {
        cx.invalid(at(path, "filter"), "is required");
        return None;
    };
    let filter = reply_filter(cx, filter, &at(path, "filter"));
    let status = match status_code.as_ref().map(|s| s.value) {
        None => None,
        Some(s @ 200..=599) => Some(s as u16),
        Some(s) => {
            cx.invalid(at(path, "status_code"), format!("{s} is not in [200, 600)"));
            None
        }
    };
    let body = body
        .as_ref()
        .map(|b| route::data_source(cx, b, &at(path, "body")).unwrap_or_default());
    let body_format = body_format_override
        .as_ref()
        .and_then(|f| format::substitution_format(cx, f, &at(path, "body_format_override")));
    let headers = model::HeaderMutations {
        response_add: route::headers_to_add(cx, path, "headers_to_add", headers_to_add),
        ..Default::default()
    };
    Some(model::local_reply::ResponseMapper {
        filter: filter?,
        status,
        body,
        body_format,
        headers,
    })
}

fn reply_filter(cx: &mut Context, f: &AccessLogFilter, path: &str) -> Option<ReplyFilter> {
    let AccessLogFilter { filter_specifier } = f;
    let Some(spec) = filter_specifier else {
        cx.invalid(path, "one filter is required");
        return None;
    };
    match spec {
        FilterSpecifier::StatusCodeFilter(StatusCodeFilter { comparison }) => {
            comparison_of(cx, comparison.as_ref(), &at(path, "status_code_filter"))
                .map(ReplyFilter::Status)
        }
        FilterSpecifier::DurationFilter(DurationFilter { comparison }) => {
            comparison_of(cx, comparison.as_ref(), &at(path, "duration_filter"))
                .map(ReplyFilter::Duration)
        }
        FilterSpecifier::NotHealthCheckFilter(NotHealthCheckFilter {}) => {
            Some(ReplyFilter::NotHealthCheck)
        }
        FilterSpecifier::AndFilter(AndFilter { filters }) => {
            list(cx, filters, &at(path, "and_filter")).map(ReplyFilter::And)
        }
        FilterSpecifier::OrFilter(OrFilter { filters }) => {
            list(cx, filters, &at(path, "or_filter")).map(ReplyFilter::Or)
        }
        FilterSpecifier::HeaderFilter(HeaderFilter { header }) => {
            let p = at(path, "header_filter");
            let Some(h) = header else {
                cx.invalid(at(&p, "header"), "is required");
                return None;
            };
            policy::header_condition(cx, h, &at(&p, "header")).map(ReplyFilter::Header)
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
            (cx.problems.len() == before).then(|| ReplyFilter::ResponseFlags(flags.clone()))
        }
        FilterSpecifier::TraceableFilter(_) => refuse(cx, path, "traceable_filter"),
        FilterSpecifier::RuntimeFilter(_) => refuse(cx, path, "runtime_filter"),
        FilterSpecifier::GrpcStatusFilter(_) => refuse(cx, path, "grpc_status_filter"),
        FilterSpecifier::ExtensionFilter(_) => refuse(cx, path, "extension_filter"),
        FilterSpecifier::MetadataFilter(_) => refuse(cx, path, "metadata_filter"),
        FilterSpecifier::LogTypeFilter(_) => refuse(cx, path, "log_type_filter"),
    }
}

fn refuse(cx: &mut Context, path: &str, field: &str) -> Option<ReplyFilter> {
    cx.unsupported(at(path, field), format!("{field} in a local reply mapper"));
    None
}

fn list(cx: &mut Context, filters: &[AccessLogFilter], path: &str) -> Option<Vec<ReplyFilter>> {
    if filters.len() < 2 {
        cx.invalid(at(path, "filters"), "needs at least 2 filters");
        return None;
    }
    let before = cx.problems.len();
    let out: Vec<_> = filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| reply_filter(cx, f, &item(path, "filters", i)))
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
