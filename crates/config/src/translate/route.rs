//! Route configurations: virtual hosts, routes, matches and actions.

use std::{collections::HashMap, time::Duration};

use envoy_types::pb::envoy::config::{
    core::v3::{DataSource, data_source},
    route::v3::{
        DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        route, route_action::ClusterSpecifier, route_match::PathSpecifier,
    },
};

use super::{Context, at, bool_value, item, u32_value};
use crate::model;

/// Envoy's default upstream request `timeout`.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's default `max_direct_response_body_size_bytes`.
const DEFAULT_MAX_DIRECT_RESPONSE_BODY: u32 = 4096;

/// What a route needs to know about its table.
struct Table {
    /// `validate_clusters`: route cluster names must name existing clusters.
    validate_clusters: bool,
    max_direct_response_body: u32,
}

/// Translates a route table. `static_table` is whether it is inline in the
/// HCM, where Envoy's `validate_clusters` defaults to true (false for RDS).
pub(super) fn route_config(
    cx: &mut Context,
    rc: &RouteConfiguration,
    path: &str,
    static_table: bool,
) -> Option<model::RouteConfig> {
    let RouteConfiguration {
        name,
        virtual_hosts,
        vhds,
        internal_only_headers,
        response_headers_to_add,
        response_headers_to_remove,
        request_headers_to_add,
        request_headers_to_remove,
        // Orders header mutations, which are all refused.
        most_specific_header_mutations_wins: _,
        validate_clusters,
        max_direct_response_body_size_bytes,
        cluster_specifier_plugins,
        request_mirror_policies,
        ignore_port_in_host_matching,
        vhost_header,
        ignore_path_parameters_in_path_matching,
        typed_per_filter_config,
        // Read only by filters and extensions Strait does not run.
        metadata: _,
        route_specifiers,
    } = rc;
    reject_set!(cx, path;
        vhds, internal_only_headers, response_headers_to_add, response_headers_to_remove,
        request_headers_to_add, request_headers_to_remove, cluster_specifier_plugins,
        request_mirror_policies, ignore_port_in_host_matching, vhost_header,
        ignore_path_parameters_in_path_matching, typed_per_filter_config, route_specifiers,
    );
    let table = Table {
        validate_clusters: bool_value(validate_clusters, static_table),
        max_direct_response_body: u32_value(
            max_direct_response_body_size_bytes,
            DEFAULT_MAX_DIRECT_RESPONSE_BODY,
        ),
    };
    let before = cx.problems.len();
    // Lower-cased domain -> where it was first seen.
    let mut domains: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(virtual_hosts.len());
    for (i, vh) in virtual_hosts.iter().enumerate() {
        if let Some(vh) = virtual_host(
            cx,
            vh,
            &item(path, "virtual_hosts", i),
            &table,
            &mut domains,
        ) {
            out.push(vh);
        }
    }
    (cx.problems.len() == before).then(|| model::RouteConfig {
        name: name.clone(),
        virtual_hosts: out,
    })
}

fn virtual_host(
    cx: &mut Context,
    vh: &VirtualHost,
    path: &str,
    table: &Table,
    seen: &mut HashMap<String, String>,
) -> Option<model::VirtualHost> {
    let VirtualHost {
        name,
        domains,
        routes,
        matcher,
        require_tls,
        virtual_clusters,
        rate_limits,
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        cors,
        typed_per_filter_config,
        include_request_attempt_count,
        include_attempt_count_in_response,
        retry_policy,
        retry_policy_typed_config,
        hedge_policy,
        include_is_timeout_retry_header,
        per_request_buffer_limit_bytes,
        request_body_buffer_limit,
        request_mirror_policies,
        // Read only by filters and extensions Strait does not run.
        metadata: _,
        route_specifiers,
    } = vh;
    reject_set!(cx, path;
        matcher, require_tls, virtual_clusters, rate_limits, request_headers_to_add,
        request_headers_to_remove, response_headers_to_add, response_headers_to_remove, cors,
        typed_per_filter_config, include_request_attempt_count, include_attempt_count_in_response,
        retry_policy, retry_policy_typed_config, hedge_policy, include_is_timeout_retry_header,
        per_request_buffer_limit_bytes, request_body_buffer_limit, request_mirror_policies,
        route_specifiers,
    );
    if name.is_empty() {
        cx.invalid(at(path, "name"), "must not be empty");
    }
    if domains.is_empty() {
        cx.invalid(at(path, "domains"), "needs at least one domain");
    }
    let mut out_domains = Vec::with_capacity(domains.len());
    for (i, d) in domains.iter().enumerate() {
        let dpath = item(path, "domains", i);
        // Host matching is case-insensitive, so is the uniqueness Envoy checks.
        let d = d.to_ascii_lowercase();
        if d.is_empty() {
            cx.invalid(dpath, "must not be empty");
            continue;
        }
        if let Some(first) = seen.get(&d) {
            cx.invalid(dpath, format!("duplicate domain '{d}' (also {first})"));
            continue;
        }
        seen.insert(d.clone(), dpath);
        out_domains.push(d);
    }
    let mut out_routes = Vec::with_capacity(routes.len());
    for (i, r) in routes.iter().enumerate() {
        if let Some(r) = self::route(cx, r, &item(path, "routes", i), table) {
            out_routes.push(r);
        }
    }
    Some(model::VirtualHost {
        name: name.clone(),
        domains: out_domains,
        routes: out_routes,
    })
}

fn route(cx: &mut Context, r: &Route, path: &str, table: &Table) -> Option<model::Route> {
    let Route {
        name,
        r#match,
        // Read only by filters and extensions Strait does not run.
        metadata: _,
        // Both only shape tracing spans; tracing is refused at the HCM, so
        // there are no spans to shape.
        decorator: _,
        tracing: _,
        typed_per_filter_config,
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        per_request_buffer_limit_bytes,
        // Names per-route stats only.
        stat_prefix: _,
        request_body_buffer_limit,
        route_specifiers,
        action,
    } = r;
    reject_set!(cx, path;
        typed_per_filter_config, request_headers_to_add, request_headers_to_remove,
        response_headers_to_add, response_headers_to_remove, per_request_buffer_limit_bytes,
        request_body_buffer_limit, route_specifiers,
    );
    let matcher = match r#match {
        Some(m) => route_match(cx, m, &at(path, "match")),
        None => {
            cx.invalid(at(path, "match"), "is required");
            None
        }
    };
    let action = match action {
        Some(route::Action::Route(ra)) => {
            forward(cx, ra, &at(path, "route"), table).map(model::RouteAction::Forward)
        }
        Some(route::Action::DirectResponse(dr)) => {
            direct_response(cx, dr, &at(path, "direct_response"), table)
        }
        Some(route::Action::Redirect(_)) => {
            cx.unsupported(at(path, "redirect"), "redirect");
            None
        }
        Some(route::Action::FilterAction(_)) => {
            cx.unsupported(at(path, "filter_action"), "filter_action");
            None
        }
        Some(route::Action::NonForwardingAction(_)) => {
            cx.unsupported(at(path, "non_forwarding_action"), "non_forwarding_action");
            None
        }
        None => {
            cx.invalid(path, "needs one of route, redirect, direct_response");
            None
        }
    };
    Some(model::Route {
        name: name.clone(),
        matcher: matcher?,
        action: action?,
    })
}

fn route_match(cx: &mut Context, m: &RouteMatch, path: &str) -> Option<model::RouteMatch> {
    let RouteMatch {
        case_sensitive,
        runtime_fraction,
        headers,
        query_parameters,
        cookies,
        grpc,
        tls_context,
        dynamic_metadata,
        filter_state,
        path_specifier,
    } = m;
    // `grpc: {}` and `tls_context: {}` restrict matching by their presence.
    reject_set!(cx, path;
        runtime_fraction, headers, query_parameters, cookies, grpc, tls_context, dynamic_metadata,
        filter_state,
    );
    let unsupported = |cx: &mut Context, field: &str| {
        cx.unsupported(at(path, field), field);
        None
    };
    let path_match = match path_specifier {
        Some(PathSpecifier::Prefix(p)) => Some(model::PathMatch::Prefix(p.clone())),
        Some(PathSpecifier::Path(p)) => Some(model::PathMatch::Exact(p.clone())),
        Some(PathSpecifier::SafeRegex(_)) => unsupported(cx, "safe_regex"),
        Some(PathSpecifier::ConnectMatcher(_)) => unsupported(cx, "connect_matcher"),
        Some(PathSpecifier::PathSeparatedPrefix(_)) => unsupported(cx, "path_separated_prefix"),
        Some(PathSpecifier::PathMatchPolicy(_)) => unsupported(cx, "path_match_policy"),
        None => {
            cx.invalid(
                path,
                "needs one of prefix, path, safe_regex, path_separated_prefix",
            );
            None
        }
    };
    Some(model::RouteMatch {
        path: path_match?,
        case_sensitive: bool_value(case_sensitive, true),
    })
}

fn forward(
    cx: &mut Context,
    ra: &RouteAction,
    path: &str,
    table: &Table,
) -> Option<model::ForwardAction> {
    let RouteAction {
        cluster_not_found_response_code,
        metadata_match,
        prefix_rewrite,
        regex_rewrite,
        path_rewrite_policy,
        path_rewrite,
        append_x_forwarded_host,
        timeout,
        idle_timeout,
        flush_timeout,
        early_data_policy,
        retry_policy,
        retry_policy_typed_config,
        request_mirror_policies,
        priority,
        rate_limits,
        include_vh_rate_limits,
        hash_policy,
        cors,
        max_grpc_timeout,
        grpc_timeout_offset,
        upgrade_configs,
        internal_redirect_policy,
        internal_redirect_action,
        max_internal_redirects,
        hedge_policy,
        max_stream_duration,
        cluster_specifier,
        host_rewrite_specifier,
    } = ra;
    reject_set!(cx, path;
        cluster_not_found_response_code, metadata_match, regex_rewrite, path_rewrite_policy,
        path_rewrite, append_x_forwarded_host, idle_timeout, flush_timeout, early_data_policy,
        retry_policy, retry_policy_typed_config, request_mirror_policies, priority, rate_limits,
        hash_policy, cors, max_grpc_timeout, grpc_timeout_offset, upgrade_configs,
        internal_redirect_policy, internal_redirect_action, max_internal_redirects, hedge_policy,
        max_stream_duration, host_rewrite_specifier,
    );
    cx.reject_unless_bool(
        path,
        "include_vh_rate_limits",
        include_vh_rate_limits,
        false,
    );
    let cluster = match cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) if name.is_empty() => {
            cx.invalid(at(path, "cluster"), "must not be empty");
            None
        }
        Some(ClusterSpecifier::Cluster(name)) => {
            if table.validate_clusters {
                cx.require_cluster(at(path, "cluster"), name);
            }
            Some(name.clone())
        }
        Some(ClusterSpecifier::ClusterHeader(_)) => {
            cx.unsupported(at(path, "cluster_header"), "cluster_header");
            None
        }
        Some(ClusterSpecifier::WeightedClusters(_)) => {
            cx.unsupported(at(path, "weighted_clusters"), "weighted_clusters");
            None
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
    };
    let timeout = super::timeout(
        cx,
        &at(path, "timeout"),
        timeout,
        Some(DEFAULT_ROUTE_TIMEOUT),
    );
    Some(model::ForwardAction {
        cluster: cluster?,
        timeout,
        prefix_rewrite: (!prefix_rewrite.is_empty()).then(|| prefix_rewrite.clone()),
    })
}

fn direct_response(
    cx: &mut Context,
    dr: &DirectResponseAction,
    path: &str,
    table: &Table,
) -> Option<model::RouteAction> {
    let DirectResponseAction {
        status,
        body,
        body_format,
    } = dr;
    reject_set!(cx, path; body_format);
    let before = cx.problems.len();
    let status = match u16::try_from(*status) {
        Ok(s) if (200..=599).contains(&s) => s,
        _ => {
            cx.invalid(at(path, "status"), format!("{status} is not in 200..=599"));
            0
        }
    };
    let body = match body {
        Some(b) => data_source(cx, b, &at(path, "body")),
        None => None,
    };
    if let Some(b) = &body
        && b.len() > table.max_direct_response_body as usize
    {
        cx.invalid(
            at(path, "body"),
            format!(
                "{} bytes is more than max_direct_response_body_size_bytes ({})",
                b.len(),
                table.max_direct_response_body
            ),
        );
    }
    (cx.problems.len() == before).then_some(model::RouteAction::DirectResponse {
        status,
        // An empty body and no body send the same response.
        body: body.filter(|b| !b.is_empty()),
    })
}

/// An inline body; file and environment sources are refused.
fn data_source(cx: &mut Context, ds: &DataSource, path: &str) -> Option<String> {
    let DataSource {
        watched_directory,
        specifier,
    } = ds;
    reject_set!(cx, path; watched_directory);
    match specifier {
        Some(data_source::Specifier::InlineString(s)) => Some(s.clone()),
        Some(data_source::Specifier::InlineBytes(b)) => match String::from_utf8(b.clone()) {
            Ok(s) => Some(s),
            Err(_) => {
                cx.unsupported(at(path, "inline_bytes"), "inline_bytes that are not UTF-8");
                None
            }
        },
        Some(data_source::Specifier::Filename(_)) => {
            cx.unsupported(at(path, "filename"), "filename");
            None
        }
        Some(data_source::Specifier::EnvironmentVariable(_)) => {
            cx.unsupported(at(path, "environment_variable"), "environment_variable");
            None
        }
        None => None,
    }
}
