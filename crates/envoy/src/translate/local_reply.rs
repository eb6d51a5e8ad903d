//! The connection manager's `local_reply_config`: response mappers (their
//! access-log filter, status, body, body format and headers) and the body
//! format of every local reply.

use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    LocalReplyConfig, ResponseMapper,
};

use super::{
    Context,
    access_log::{Tracing, log_filter},
    at, format, item, route,
};
use crate::model;

/// `tracing`: whether the connection manager configures tracing (which
/// decides what a mapper's `traceable_filter` means).
pub(super) fn local_reply_config(
    cx: &mut Context,
    c: &LocalReplyConfig,
    path: &str,
    tracing: Tracing,
) -> Option<model::local_reply::LocalReplyConfig> {
    let LocalReplyConfig {
        mappers,
        body_format,
    } = c;
    let before = cx.problems.len();
    let mappers: Vec<_> = mappers
        .iter()
        .enumerate()
        .filter_map(|(i, m)| mapper(cx, m, &item(path, "mappers", i), tracing))
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
    tracing: Tracing,
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
    let filter = log_filter(cx, filter, &at(path, "filter"), tracing);
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
