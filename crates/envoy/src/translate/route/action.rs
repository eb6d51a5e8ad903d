//! Parts of a route's action: where it forwards (cluster, `cluster_header`,
//! `weighted_clusters`), host rewrites, gRPC timeouts, and redirects.

use envoy_types::pb::{
    envoy::config::route::v3::{
        RedirectAction, WeightedCluster,
        redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
        route_action::{
            ClusterNotFoundResponseCode, ClusterSpecifier, HostRewriteSpecifier, MaxStreamDuration,
        },
        weighted_cluster::{ClusterWeight, RandomValueSpecifier, cluster_weight},
    },
    google::protobuf::Duration as ProtoDuration,
};

use super::{
    super::{Context, at, duration, item},
    headers::{self, Lists},
    matcher::{header_name, regex_rewrite},
};
use crate::model;

/// `cluster_specifier`. `validate_clusters` checks literal names only: a
/// name read from a header is resolved per request.
pub(in crate::translate) fn cluster_specifier(
    cx: &mut Context,
    spec: &Option<ClusterSpecifier>,
    path: &str,
    validate_clusters: bool,
) -> Option<model::ClusterSpecifier> {
    match spec {
        Some(ClusterSpecifier::Cluster(name)) => {
            cluster_name(cx, name, &at(path, "cluster"), validate_clusters)
                .map(model::ClusterSpecifier::Name)
        }
        Some(ClusterSpecifier::ClusterHeader(h)) => {
            header_name(cx, h, &at(path, "cluster_header"), true)
                .map(model::ClusterSpecifier::Header)
        }
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            weighted(cx, w, &at(path, "weighted_clusters"), validate_clusters)
                .map(model::ClusterSpecifier::Weighted)
        }
        Some(ClusterSpecifier::ClusterSpecifierPlugin(_)) => {
            cx.unsupported(
                at(path, "cluster_specifier_plugin"),
                "cluster_specifier_plugin",
            );
            None
        }
        Some(ClusterSpecifier::InlineClusterSpecifierPlugin(_)) => {
            cx.unsupported(
                at(path, "inline_cluster_specifier_plugin"),
                "inline_cluster_specifier_plugin",
            );
            None
        }
        None => {
            cx.invalid(
                path,
                "needs one of cluster, cluster_header, weighted_clusters",
            );
            None
        }
    }
}

fn cluster_name(cx: &mut Context, name: &str, path: &str, validate: bool) -> Option<String> {
    if name.is_empty() {
        cx.invalid(path, "must not be empty");
        return None;
    }
    if validate {
        cx.require_cluster(path.to_owned(), name);
    }
    Some(name.to_owned())
}

/// `cluster_not_found_response_code` as a status.
pub(in crate::translate) fn cluster_not_found_status(
    cx: &mut Context,
    code: i32,
    path: &str,
) -> u16 {
    match ClusterNotFoundResponseCode::try_from(code) {
        Ok(ClusterNotFoundResponseCode::ServiceUnavailable) => 503,
        Ok(ClusterNotFoundResponseCode::NotFound) => 404,
        Ok(ClusterNotFoundResponseCode::InternalServerError) => 500,
        Err(_) => {
            cx.invalid(
                at(path, "cluster_not_found_response_code"),
                format!("unknown value {code}"),
            );
            503
        }
    }
}

fn weighted(
    cx: &mut Context,
    w: &WeightedCluster,
    path: &str,
    validate_clusters: bool,
) -> Option<model::WeightedClusters> {
    let WeightedCluster {
        clusters,
        total_weight,
        // Names runtime keys overriding the weights; there is no runtime, and
        // Envoy uses the configured weights when the keys are absent.
        runtime_key_prefix: _,
        random_value_specifier,
    } = w;
    let before = cx.problems.len();
    if clusters.is_empty() {
        cx.invalid(at(path, "clusters"), "needs at least one cluster");
    }
    let out: Vec<_> = clusters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| cluster_weight(cx, c, &item(path, "clusters", i), validate_clusters))
        .collect();
    let sum: u64 = out.iter().map(|c| u64::from(c.weight)).sum();
    if cx.problems.len() == before {
        if sum == 0 {
            cx.invalid(at(path, "clusters"), "weights must sum to more than 0");
        } else if sum > u64::from(u32::MAX) {
            cx.invalid(
                at(path, "clusters"),
                format!("weights sum to {sum}, more than {}", u32::MAX),
            );
        }
        // Deprecated, but Envoy still refuses a total that does not add up.
        if let Some(total) = total_weight
            && total.value > 0
            && u64::from(total.value) != sum
        {
            cx.invalid(
                at(path, "total_weight"),
                format!("is {} but the cluster weights sum to {sum}", total.value),
            );
        }
    }
    let random_value_header = match random_value_specifier {
        Some(RandomValueSpecifier::HeaderName(h)) => {
            header_name(cx, h, &at(path, "header_name"), false)
        }
        Some(RandomValueSpecifier::UseHashPolicy(b)) if b.value => {
            cx.unsupported(at(path, "use_hash_policy"), "use_hash_policy");
            None
        }
        Some(RandomValueSpecifier::UseHashPolicy(_)) | None => None,
    };
    (cx.problems.len() == before).then_some(model::WeightedClusters {
        clusters: out,
        random_value_header,
    })
}

fn cluster_weight(
    cx: &mut Context,
    c: &ClusterWeight,
    path: &str,
    validate_clusters: bool,
) -> Option<model::ClusterWeight> {
    let ClusterWeight {
        name,
        cluster_header,
        weight,
        metadata_match,
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        typed_per_filter_config,
        host_rewrite_specifier,
    } = c;
    reject_set!(cx, path; metadata_match, typed_per_filter_config);
    let target = match (name.is_empty(), cluster_header.is_empty()) {
        (false, true) => cluster_name(cx, name, &at(path, "name"), validate_clusters)
            .map(model::ClusterTarget::Name),
        (true, false) => header_name(cx, cluster_header, &at(path, "cluster_header"), true)
            .map(model::ClusterTarget::Header),
        (false, false) => {
            cx.invalid(path, "only one of name and cluster_header may be set");
            None
        }
        (true, true) => {
            cx.invalid(path, "needs one of name, cluster_header");
            None
        }
    };
    let headers = headers::mutations(
        cx,
        path,
        Lists {
            request_add: request_headers_to_add,
            request_remove: request_headers_to_remove,
            response_add: response_headers_to_add,
            response_remove: response_headers_to_remove,
        },
    );
    let host_rewrite_literal = match host_rewrite_specifier {
        Some(cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(h)) if !h.is_empty() => {
            headers::literal(cx, h, &at(path, "host_rewrite_literal"))
        }
        Some(_) | None => None,
    };
    Some(model::ClusterWeight {
        target: target?,
        weight: weight.as_ref().map_or(0, |w| w.value),
        headers,
        host_rewrite_literal,
    })
}

/// `host_rewrite_specifier`.
pub(in crate::translate) fn host_rewrite(
    cx: &mut Context,
    spec: &Option<HostRewriteSpecifier>,
    path: &str,
) -> Option<model::HostRewrite> {
    match spec {
        None => None,
        // Envoy treats an empty literal as no rewrite.
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) if h.is_empty() => None,
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => {
            headers::literal(cx, h, &at(path, "host_rewrite_literal"))
                .map(model::HostRewrite::Literal)
        }
        Some(HostRewriteSpecifier::AutoHostRewrite(b)) => {
            b.value.then_some(model::HostRewrite::Auto)
        }
        Some(HostRewriteSpecifier::HostRewriteHeader(h)) => {
            header_name(cx, h, &at(path, "host_rewrite_header"), false)
                .map(model::HostRewrite::Header)
        }
        Some(HostRewriteSpecifier::HostRewritePathRegex(r)) => {
            regex_rewrite(cx, r, &at(path, "host_rewrite_path_regex"))
                .map(model::HostRewrite::PathRegex)
        }
        Some(HostRewriteSpecifier::HostRewrite(_)) => {
            cx.unsupported(
                at(path, "host_rewrite"),
                "host_rewrite (a format string; use host_rewrite_literal)",
            );
            None
        }
    }
}

/// The deprecated `max_grpc_timeout` and `grpc_timeout_offset`. The offset
/// means nothing without the maximum (Envoy reads `grpc-timeout` only when
/// `max_grpc_timeout` is set), so alone it is ignored.
pub(in crate::translate) fn grpc_timeout(
    cx: &mut Context,
    path: &str,
    max: &Option<ProtoDuration>,
    offset: &Option<ProtoDuration>,
) -> Option<model::GrpcTimeout> {
    let max = max.as_ref()?;
    let max = duration(cx, &at(path, "max_grpc_timeout"), max)?;
    let offset = match offset {
        Some(o) => duration(cx, &at(path, "grpc_timeout_offset"), o).filter(|o| !o.is_zero()),
        None => None,
    };
    Some(model::GrpcTimeout {
        max: (!max.is_zero()).then_some(max),
        offset,
    })
}

pub(in crate::translate) fn max_stream_duration(
    cx: &mut Context,
    m: &MaxStreamDuration,
    path: &str,
) -> model::MaxStreamDuration {
    let MaxStreamDuration {
        max_stream_duration,
        grpc_timeout_header_max,
        grpc_timeout_header_offset,
    } = m;
    let mut field = |name: &str, d: &Option<ProtoDuration>| {
        d.as_ref().and_then(|d| duration(cx, &at(path, name), d))
    };
    model::MaxStreamDuration {
        max_stream_duration: field("max_stream_duration", max_stream_duration),
        grpc_timeout_header_max: field("grpc_timeout_header_max", grpc_timeout_header_max),
        grpc_timeout_header_offset: field("grpc_timeout_header_offset", grpc_timeout_header_offset)
            .filter(|o| !o.is_zero()),
    }
}

pub(in crate::translate) fn redirect(
    cx: &mut Context,
    r: &RedirectAction,
    path: &str,
) -> Option<model::RedirectAction> {
    let RedirectAction {
        host_redirect,
        port_redirect,
        response_code,
        strip_query,
        scheme_rewrite_specifier,
        path_rewrite_specifier,
    } = r;
    let before = cx.problems.len();
    let scheme = match scheme_rewrite_specifier {
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_owned()),
        Some(SchemeRewriteSpecifier::HttpsRedirect(false)) => None,
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) if s.is_empty() => None,
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => {
            let valid = s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !valid {
                cx.invalid(
                    at(path, "scheme_redirect"),
                    format!("'{s}' is not a URI scheme"),
                );
            }
            Some(s.to_ascii_lowercase())
        }
        None => None,
    };
    let host = (!host_redirect.is_empty())
        .then(|| headers::literal(cx, host_redirect, &at(path, "host_redirect")))
        .flatten();
    let port = match u16::try_from(*port_redirect) {
        Ok(0) => None,
        Ok(p) => Some(p),
        Err(_) => {
            cx.invalid(
                at(path, "port_redirect"),
                format!("{port_redirect} is not a port"),
            );
            None
        }
    };
    let path_redirect = match path_rewrite_specifier {
        None => model::PathRedirect::Keep,
        Some(PathRewriteSpecifier::PathRedirect(p)) if p.is_empty() => model::PathRedirect::Keep,
        Some(PathRewriteSpecifier::PathRedirect(p)) => {
            headers::literal(cx, p, &at(path, "path_redirect"))
                .map_or(model::PathRedirect::Keep, model::PathRedirect::Path)
        }
        Some(PathRewriteSpecifier::PrefixRewrite(p)) if p.is_empty() => model::PathRedirect::Keep,
        Some(PathRewriteSpecifier::PrefixRewrite(p)) => model::PathRedirect::Prefix(p.clone()),
        Some(PathRewriteSpecifier::RegexRewrite(r)) => {
            regex_rewrite(cx, r, &at(path, "regex_rewrite"))
                .map_or(model::PathRedirect::Keep, model::PathRedirect::Regex)
        }
        Some(PathRewriteSpecifier::PathRewrite(_)) => {
            cx.unsupported(
                at(path, "path_rewrite"),
                "path_rewrite (a format string; use path_redirect)",
            );
            model::PathRedirect::Keep
        }
    };
    let status = match RedirectResponseCode::try_from(*response_code) {
        Ok(RedirectResponseCode::MovedPermanently) => 301,
        Ok(RedirectResponseCode::Found) => 302,
        Ok(RedirectResponseCode::SeeOther) => 303,
        Ok(RedirectResponseCode::TemporaryRedirect) => 307,
        Ok(RedirectResponseCode::PermanentRedirect) => 308,
        Err(_) => {
            cx.invalid(
                at(path, "response_code"),
                format!("unknown value {response_code}"),
            );
            301
        }
    };
    (cx.problems.len() == before).then_some(model::RedirectAction {
        scheme,
        host,
        port,
        path: path_redirect,
        strip_query: *strip_query,
        status,
    })
}
