//! Route configurations: virtual hosts, routes and their actions. Matches,
//! action details and header mutations are in the submodules.

use std::{collections::HashMap, time::Duration};

use envoy_types::pb::envoy::config::{
    core::v3::{DataSource, data_source},
    route::v3::{DirectResponseAction, Route, RouteAction, RouteConfiguration, VirtualHost, route},
};

use super::{Context, at, bool_value, filter, item, policy, u32_value};
use crate::model::{self, filter::FilterOverrideConfig, ratelimit::RouteRateLimits};

mod action;
pub(super) mod headers;
pub(super) mod matcher;

use headers::Lists;
pub(super) use headers::to_add as headers_to_add;

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
        most_specific_header_mutations_wins,
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
        vhds, internal_only_headers, cluster_specifier_plugins, request_mirror_policies,
        vhost_header, ignore_path_parameters_in_path_matching, route_specifiers,
    );
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
    let mut table_overrides = Vec::new();
    filter::per_filter_configs(cx, typed_per_filter_config, path, &mut table_overrides);
    for vh in &mut out {
        policy::inherit_overrides(&table_overrides, &mut vh.routes);
    }
    (cx.problems.len() == before).then(|| model::RouteConfig {
        name: name.clone(),
        virtual_hosts: out,
        ignore_port_in_host_matching: *ignore_port_in_host_matching,
        headers,
        most_specific_header_mutations_wins: *most_specific_header_mutations_wins,
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
        matcher, require_tls, virtual_clusters, include_attempt_count_in_response,
        retry_policy_typed_config, hedge_policy, include_is_timeout_retry_header,
        per_request_buffer_limit_bytes, request_body_buffer_limit, route_specifiers,
    );
    let vhost_defaults = policy::VhostDefaults::new(
        cx,
        path,
        policy::VhostFields {
            retry_policy,
            cors,
            typed_per_filter_config,
            include_request_attempt_count: *include_request_attempt_count,
            request_mirror_policies,
        },
        table.validate_clusters,
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
    let mut out_routes = Vec::with_capacity(routes.len());
    for (i, r) in routes.iter().enumerate() {
        if let Some(r) = self::route(cx, r, &item(path, "routes", i), table) {
            out_routes.push(r);
        }
    }
    vhost_defaults.apply(&mut out_routes);
    let vh_rate_limits = super::ratelimit::policies(cx, rate_limits, path);
    for r in &mut out_routes {
        r.rate_limits.virtual_host.clone_from(&vh_rate_limits);
    }
    Some(model::VirtualHost {
        name: name.clone(),
        domains: out_domains,
        routes: out_routes,
        headers,
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
        per_request_buffer_limit_bytes, request_body_buffer_limit, route_specifiers,
    );
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
    let matcher = match r#match {
        Some(m) => matcher::route_match(cx, m, &at(path, "match")),
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
        Some(route::Action::Redirect(r)) => {
            action::redirect(cx, r, &at(path, "redirect")).map(model::RouteAction::Redirect)
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
    let mut per_filter_config = Vec::new();
    if let Some(route::Action::Route(ra)) = r.action.as_ref()
        && let Some(c) = &ra.cors
        && let Some(c) = filter::route_cors(cx, c, &at(&at(path, "route"), "cors"))
    {
        filter::set_override(
            &mut per_filter_config,
            String::new(),
            FilterOverrideConfig::Config(model::extension::Extension::new(
                model::filter::type_url::CORS_POLICY,
                c,
            )),
        );
    }
    filter::per_filter_configs(cx, typed_per_filter_config, path, &mut per_filter_config);
    // The virtual host's policies are added by `virtual_host`.
    let mut rate_limits = RouteRateLimits::default();
    if let Some(route::Action::Route(ra)) = r.action.as_ref() {
        let rpath = at(path, "route");
        rate_limits.route = super::ratelimit::policies(cx, &ra.rate_limits, &rpath);
        rate_limits.include_vh_rate_limits = bool_value(&ra.include_vh_rate_limits, false);
    }
    Some(model::Route {
        name: name.clone(),
        matcher: matcher?,
        action: action?,
        headers,
        per_filter_config,
        rate_limits,
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
        metadata_match, path_rewrite_policy, path_rewrite, append_x_forwarded_host, flush_timeout,
        early_data_policy, retry_policy_typed_config, priority, upgrade_configs,
        internal_redirect_policy, internal_redirect_action, max_internal_redirects, hedge_policy,
    );
    // `cors` is read by `route`: it is per-filter config, kept on the route.
    // So are the rate limits, which the rate-limit filters read from it.
    let _ = (cors, rate_limits, include_vh_rate_limits);
    let cluster = action::cluster_specifier(cx, cluster_specifier, path, table.validate_clusters);
    let regex_rewrite = regex_rewrite
        .as_ref()
        .and_then(|r| matcher::regex_rewrite(cx, r, &at(path, "regex_rewrite")));
    if regex_rewrite.is_some() && !prefix_rewrite.is_empty() {
        cx.invalid(
            at(path, "regex_rewrite"),
            "only one of prefix_rewrite and regex_rewrite may be set",
        );
    }
    let timeout = super::timeout(
        cx,
        &at(path, "timeout"),
        timeout,
        Some(DEFAULT_ROUTE_TIMEOUT),
    );
    // 0 disables the route's idle timeout, unlike unset (which inherits the
    // connection manager's `stream_idle_timeout`), so both are kept apart.
    let idle_timeout = idle_timeout
        .as_ref()
        .and_then(|d| super::duration(cx, &at(path, "idle_timeout"), d));
    Some(model::ForwardAction {
        cluster: cluster?,
        cluster_not_found_status: action::cluster_not_found_status(
            cx,
            *cluster_not_found_response_code,
            path,
        ),
        timeout,
        idle_timeout,
        prefix_rewrite: (!prefix_rewrite.is_empty()).then(|| prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite: action::host_rewrite(cx, host_rewrite_specifier, path),
        grpc_timeout: action::grpc_timeout(cx, path, max_grpc_timeout, grpc_timeout_offset),
        max_stream_duration: max_stream_duration
            .as_ref()
            .map(|m| action::max_stream_duration(cx, m, &at(path, "max_stream_duration"))),
        retry_policy: retry_policy
            .as_ref()
            .and_then(|p| policy::retry_policy(cx, p, &at(path, "retry_policy"))),
        hash_policy: policy::hash_policies(cx, hash_policy, path),
        request_mirror_policies: policy::mirror_policies(
            cx,
            request_mirror_policies,
            path,
            table.validate_clusters,
        ),
        // Set from the virtual host by `policy::VhostDefaults::apply`.
        include_attempt_count: false,
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
pub(super) fn data_source(cx: &mut Context, ds: &DataSource, path: &str) -> Option<String> {
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
