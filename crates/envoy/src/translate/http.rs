//! The HTTP connection manager network filter and its HTTP filter list.

use std::{collections::HashSet, time::Duration};

use envoy_types::pb::envoy::{
    config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions},
    extensions::filters::{
        http::router::v3::Router,
        network::http_connection_manager::v3::{
            HttpConnectionManager, HttpFilter,
            http_connection_manager::{
                CodecType, ForwardClientCertDetails, InternalAddressConfig,
                PathWithEscapedSlashesAction, RouteSpecifier, ServerHeaderTransformation,
                SetCurrentClientCertDetails, StripPortMode, UpgradeConfig,
            },
            http_filter,
        },
    },
};
use prost::Name;

use super::{
    Context, access_log, at, bool_value, decode_any, duration, filter,
    inert::{Slot, effective_type_url, inert},
    item, route, telemetry, timeout, type_name, u32_value,
};
use crate::model::{
    self,
    client_cert::{ClientCertDetails, ForwardClientCert},
};

const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_DELAYED_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// Envoy's upper bound for `max_request_headers_kb`.
const MAX_REQUEST_HEADERS_KB: u32 = 8192;
/// The router's name, for configs that name it without a `typed_config`.
const ROUTER_NAME: &str = "envoy.filters.http.router";

pub(super) fn connection_manager(
    cx: &mut Context,
    hcm: &HttpConnectionManager,
    path: &str,
) -> Option<model::HttpConnectionManager> {
    let HttpConnectionManager {
        codec_type,
        stat_prefix,
        http_filters,
        add_user_agent,
        tracing,
        common_http_protocol_options,
        http1_safe_max_connection_duration,
        http_protocol_options,
        http2_protocol_options,
        http3_protocol_options,
        server_name,
        server_header_transformation,
        scheme_header_transformation,
        max_request_headers_kb,
        stream_idle_timeout,
        stream_flush_timeout,
        request_timeout,
        request_headers_timeout,
        drain_timeout,
        drain_timeout_jitter,
        delayed_close_timeout,
        access_log,
        access_log_flush_interval,
        flush_access_log_on_new_request,
        access_log_options,
        use_remote_address,
        xff_num_trusted_hops,
        original_ip_detection_extensions,
        early_header_mutation_extensions,
        internal_address_config,
        skip_xff_append,
        via,
        generate_request_id,
        preserve_external_request_id,
        always_set_request_id_in_response,
        forward_client_cert_details,
        set_current_client_cert_details,
        forward_client_cert_matcher,
        proxy_100_continue,
        represent_ipv4_remote_address_as_ipv4_mapped_ipv6,
        upgrade_configs,
        normalize_path,
        merge_slashes,
        path_with_escaped_slashes_action,
        request_id_extension,
        local_reply_config,
        strip_matching_host_port,
        stream_error_on_invalid_http_message,
        path_normalization_options,
        strip_trailing_host_dot,
        proxy_status_config,
        typed_header_validation_config,
        append_x_forwarded_port,
        append_local_overload,
        add_proxy_protocol_connection_state,
        forward_proto_config,
        route_specifier,
        strip_port_mode,
    } = hcm;
    reject_set!(cx, path;
        http1_safe_max_connection_duration, http3_protocol_options,
        scheme_header_transformation, stream_flush_timeout, drain_timeout_jitter,
        original_ip_detection_extensions, early_header_mutation_extensions,
        via, preserve_external_request_id,
        always_set_request_id_in_response, forward_client_cert_matcher,
        represent_ipv4_remote_address_as_ipv4_mapped_ipv6, merge_slashes,
        path_normalization_options,
        strip_trailing_host_dot, proxy_status_config, typed_header_validation_config,
        append_x_forwarded_port, append_local_overload, forward_proto_config,
    );
    // Periodic and early entries (`access_log_flush_interval`,
    // `flush_access_log_on_new_request`, `access_log_options`) would add
    // lines Strait does not write: refused. Strait logs once per stream.
    reject_set!(cx, path;
        access_log_flush_interval, flush_access_log_on_new_request, access_log_options,
    );
    let tracing_kind = if tracing.is_some() {
        access_log::Tracing::Configured
    } else {
        access_log::Tracing::None
    };
    let access_logs = access_log::access_logs(cx, path, access_log, tracing_kind);
    let rid_path = at(path, "request_id_extension");
    let tracing = match tracing {
        Some(t) => telemetry::tracing(
            cx,
            &at(path, "tracing"),
            t,
            request_id_extension.as_ref(),
            &rid_path,
        ),
        None => {
            if let Some(r) = request_id_extension {
                telemetry::request_id_alone(cx, &rid_path, r);
            }
            None
        }
    };
    cx.reject_unless_bool(path, "add_user_agent", add_user_agent, false);
    cx.reject_unless_bool(
        path,
        "stream_error_on_invalid_http_message",
        stream_error_on_invalid_http_message,
        false,
    );
    cx.reject_unless_bool(
        path,
        "add_proxy_protocol_connection_state",
        add_proxy_protocol_connection_state,
        true,
    );
    // Envoy's default action is KEEP_UNCHANGED, whichever way it is written.
    let keep = [
        PathWithEscapedSlashesAction::ImplementationSpecificDefault as i32,
        PathWithEscapedSlashesAction::KeepUnchanged as i32,
    ];
    if !keep.contains(path_with_escaped_slashes_action) {
        cx.unsupported(
            at(path, "path_with_escaped_slashes_action"),
            "path_with_escaped_slashes_action other than KEEP_UNCHANGED",
        );
    }
    let strip_host_port = match (strip_matching_host_port, strip_port_mode) {
        (true, Some(StripPortMode::StripAnyHostPort(true))) => {
            cx.invalid(
                at(path, "strip_any_host_port"),
                "only one of strip_matching_host_port and strip_any_host_port may be set",
            );
            model::StripHostPort::None
        }
        (true, _) => model::StripHostPort::Matching,
        (false, Some(StripPortMode::StripAnyHostPort(true))) => model::StripHostPort::Any,
        (false, _) => model::StripHostPort::None,
    };
    let headers_timeout = at(path, "request_headers_timeout");
    if timeout(cx, &headers_timeout, request_headers_timeout, None).is_some() {
        cx.unsupported(headers_timeout, "request_headers_timeout");
    }
    reject_unless_duration(
        cx,
        path,
        "drain_timeout",
        drain_timeout,
        DEFAULT_DRAIN_TIMEOUT,
    );
    reject_unless_duration(
        cx,
        path,
        "delayed_close_timeout",
        delayed_close_timeout,
        DEFAULT_DELAYED_CLOSE_TIMEOUT,
    );
    if http_protocol_options
        .as_ref()
        .is_some_and(|o| *o != Http1ProtocolOptions::default())
    {
        cx.unsupported(at(path, "http_protocol_options"), "http_protocol_options");
    }
    if http2_protocol_options
        .as_ref()
        .is_some_and(|o| *o != Http2ProtocolOptions::default())
    {
        cx.unsupported(at(path, "http2_protocol_options"), "http2_protocol_options");
    }

    if stat_prefix.is_empty() {
        cx.invalid(at(path, "stat_prefix"), "must not be empty");
    }
    let codec = match CodecType::try_from(*codec_type) {
        Ok(CodecType::Auto) => model::CodecType::Auto,
        Ok(CodecType::Http1) => model::CodecType::Http1,
        Ok(CodecType::Http2) => model::CodecType::Http2,
        Ok(CodecType::Http3) => {
            cx.unsupported(at(path, "codec_type"), "codec_type HTTP3");
            model::CodecType::Auto
        }
        Err(_) => {
            cx.invalid(
                at(path, "codec_type"),
                format!("unknown codec type {codec_type}"),
            );
            model::CodecType::Auto
        }
    };
    let server_header = match ServerHeaderTransformation::try_from(*server_header_transformation) {
        Ok(ServerHeaderTransformation::Overwrite) => model::ServerHeaderTransformation::Overwrite,
        Ok(ServerHeaderTransformation::AppendIfAbsent) => {
            model::ServerHeaderTransformation::AppendIfAbsent
        }
        Ok(ServerHeaderTransformation::PassThrough) => {
            model::ServerHeaderTransformation::PassThrough
        }
        Err(_) => {
            cx.invalid(
                at(path, "server_header_transformation"),
                format!("unknown value {server_header_transformation}"),
            );
            model::ServerHeaderTransformation::Overwrite
        }
    };
    let max_request_headers_kb = u32_value(max_request_headers_kb, DEFAULT_MAX_REQUEST_HEADERS_KB);
    if !(1..=MAX_REQUEST_HEADERS_KB).contains(&max_request_headers_kb) {
        cx.invalid(
            at(path, "max_request_headers_kb"),
            format!("must be in 1..={MAX_REQUEST_HEADERS_KB}"),
        );
    }
    let idle_timeout = match common_http_protocol_options {
        Some(o) => common_options(cx, &at(path, "common_http_protocol_options"), o),
        None => Some(DEFAULT_IDLE_TIMEOUT),
    };
    let stream_idle_timeout = timeout(
        cx,
        &at(path, "stream_idle_timeout"),
        stream_idle_timeout,
        Some(DEFAULT_STREAM_IDLE_TIMEOUT),
    );
    let request_timeout = timeout(cx, &at(path, "request_timeout"), request_timeout, None);
    let upgrades = upgrades(cx, path, upgrade_configs);
    let (forward_client_cert, client_cert_details) = client_cert(
        cx,
        path,
        *forward_client_cert_details,
        set_current_client_cert_details.as_ref(),
    );
    let http_filters = http_filter_list(cx, path, http_filters);
    let local_reply = local_reply_config.as_ref().and_then(|c| {
        super::local_reply::local_reply_config(
            cx,
            c,
            &at(path, "local_reply_config"),
            match tracing_kind {
                access_log::Tracing::Configured => access_log::Tracing::ConfiguredUnread,
                other => other,
            },
        )
        .map(std::sync::Arc::new)
    });

    let route_config = match route_specifier {
        // An inline table is static: Envoy checks its cluster names by default.
        Some(RouteSpecifier::RouteConfig(rc)) => {
            route::route_config(cx, rc, &at(path, "route_config"), true)
                .map(model::RouteSource::Inline)
        }
        Some(RouteSpecifier::Rds(rds)) => super::dynamic::rds(cx, &at(path, "rds"), rds),
        Some(RouteSpecifier::ScopedRoutes(_)) => {
            cx.unsupported(at(path, "scoped_routes"), "scoped_routes");
            None
        }
        None => {
            cx.invalid(at(path, "route_config"), "is required");
            None
        }
    };
    Some(model::HttpConnectionManager {
        stat_prefix: stat_prefix.clone(),
        codec,
        route_config: route_config?,
        server_name: if server_name.is_empty() {
            "envoy".to_owned()
        } else {
            server_name.clone()
        },
        server_header,
        upgrades,
        stream_idle_timeout,
        request_timeout,
        idle_timeout,
        max_request_headers_kb,
        use_remote_address: bool_value(use_remote_address, false),
        client: model::ClientTrust {
            xff_num_trusted_hops: *xff_num_trusted_hops,
            skip_xff_append: *skip_xff_append,
            internal_addresses: internal_address_config
                .as_ref()
                .map(|c| internal_addresses(cx, &at(path, "internal_address_config"), c)),
        },
        generate_request_id: bool_value(generate_request_id, true),
        // Istio (1.31) sets it on every connection manager.
        proxy_100_continue: *proxy_100_continue,
        http_filters,
        router: model::filter::router(),
        strip_host_port,
        normalize_path: bool_value(normalize_path, false),
        forward_client_cert,
        client_cert_details,
        local_reply,
        access_logs,
        tracing,
    })
}

/// `forward_client_cert_details` and `set_current_client_cert_details`.
/// Envoy reads the details only for the modes that set this hop's element;
/// with other modes they have no effect, so they are accepted and dropped.
fn client_cert(
    cx: &mut Context,
    path: &str,
    mode: i32,
    details: Option<&SetCurrentClientCertDetails>,
) -> (ForwardClientCert, ClientCertDetails) {
    let mode = match ForwardClientCertDetails::try_from(mode) {
        Ok(ForwardClientCertDetails::Sanitize) => ForwardClientCert::Sanitize,
        Ok(ForwardClientCertDetails::ForwardOnly) => ForwardClientCert::ForwardOnly,
        Ok(ForwardClientCertDetails::AppendForward) => ForwardClientCert::AppendForward,
        Ok(ForwardClientCertDetails::SanitizeSet) => ForwardClientCert::SanitizeSet,
        Ok(ForwardClientCertDetails::AlwaysForwardOnly) => ForwardClientCert::AlwaysForwardOnly,
        Err(_) => {
            cx.invalid(
                at(path, "forward_client_cert_details"),
                format!("unknown value {mode}"),
            );
            ForwardClientCert::Sanitize
        }
    };
    let details = match details {
        Some(SetCurrentClientCertDetails {
            subject,
            cert,
            chain,
            dns,
            uri,
            issuer,
            format,
        }) if mode.sets_current() => {
            // Newer Envoy's `Issuer=` element and alternative header
            // formats are not implemented.
            let dpath = at(path, "set_current_client_cert_details");
            reject_set!(cx, &dpath; issuer, format);
            ClientCertDetails {
                subject: bool_value(subject, false),
                cert: *cert,
                chain: *chain,
                dns: *dns,
                uri: *uri,
            }
        }
        _ => ClientCertDetails::default(),
    };
    (mode, details)
}

/// `internal_address_config`.
fn internal_addresses(
    cx: &mut Context,
    path: &str,
    c: &InternalAddressConfig,
) -> model::InternalAddresses {
    let InternalAddressConfig {
        unix_sockets,
        cidr_ranges,
    } = c;
    model::InternalAddresses {
        unix_sockets: *unix_sockets,
        cidr_ranges: super::listener::cidr_ranges(cx, cidr_ranges, &at(path, "cidr_ranges")),
    }
}

/// Refuses a duration that is set to anything but Envoy's default.
fn reject_unless_duration(
    cx: &mut Context,
    path: &str,
    field: &str,
    value: &Option<envoy_types::pb::google::protobuf::Duration>,
    default: Duration,
) {
    let fpath = at(path, field);
    if let Some(d) = value
        && duration(cx, &fpath, d).is_some_and(|d| d != default)
    {
        cx.unsupported(fpath, format!("{field} other than {default:?}"));
    }
}

/// `common_http_protocol_options`: only the connection idle timeout.
fn common_options(cx: &mut Context, path: &str, o: &HttpProtocolOptions) -> Option<Duration> {
    let HttpProtocolOptions {
        idle_timeout,
        max_connection_duration,
        max_connection_duration_jitter,
        max_headers_count,
        max_response_headers_kb,
        max_stream_duration,
        headers_with_underscores_action,
        max_requests_per_connection,
    } = o;
    reject_set!(cx, path;
        max_connection_duration, max_connection_duration_jitter, max_headers_count,
        max_response_headers_kb, max_stream_duration, headers_with_underscores_action,
        max_requests_per_connection,
    );
    timeout(
        cx,
        &at(path, "idle_timeout"),
        idle_timeout,
        Some(DEFAULT_IDLE_TIMEOUT),
    )
}

/// Enabled upgrade types, lower-cased as Envoy compares them.
fn upgrades(cx: &mut Context, path: &str, configs: &[UpgradeConfig]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, u) in configs.iter().enumerate() {
        let upath = item(path, "upgrade_configs", i);
        let UpgradeConfig {
            upgrade_type,
            filters,
            enabled,
        } = u;
        reject_set!(cx, &upath; filters);
        let ty = upgrade_type.to_ascii_lowercase();
        if ty.is_empty() {
            cx.invalid(at(&upath, "upgrade_type"), "must not be empty");
            continue;
        }
        if !seen.insert(ty.clone()) {
            cx.invalid(
                at(&upath, "upgrade_type"),
                format!("duplicate upgrade type '{ty}'"),
            );
            continue;
        }
        // A disabled upgrade is one that routes may turn on; Strait has no
        // per-route upgrade config, so it is simply off.
        if bool_value(enabled, true) {
            out.push(ty);
        }
    }
    out
}

/// The HTTP filters before the router, checking that the router is last;
/// optional filters Strait does not know are skipped as Envoy skips them.
fn http_filter_list(
    cx: &mut Context,
    path: &str,
    filters: &[HttpFilter],
) -> Vec<model::HttpFilter> {
    let mut router = None;
    let mut out = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let fpath = item(path, "http_filters", i);
        let HttpFilter {
            name,
            is_optional,
            disabled,
            config_type,
        } = f;
        let is_router = match config_type {
            Some(http_filter::ConfigType::TypedConfig(any))
                if type_name(&any.type_url) == Router::full_name() =>
            {
                let tpath = at(&fpath, "typed_config");
                if let Some(r) = decode_any::<Router>(cx, &tpath, any) {
                    router_options(cx, &tpath, &r);
                }
                true
            }
            Some(http_filter::ConfigType::TypedConfig(any))
                if type_name(&any.type_url) == super::compressor::TYPE =>
            {
                super::compressor::compressor(cx, &at(&fpath, "typed_config"), any);
                false
            }
            Some(http_filter::ConfigType::TypedConfig(any)) => {
                let tpath = at(&fpath, "typed_config");
                let before = cx.problems.len();
                match filter::http_filter_config(cx, any, &tpath) {
                    Some(config) => out.push(model::HttpFilter {
                        name: name.clone(),
                        disabled: *disabled,
                        config,
                    }),
                    None if cx.problems.len() > before => {}
                    // On the list of extensions safe to accept without effect.
                    None if inert(any, Slot::HttpFilter).is_some() => {}
                    None if !is_optional => cx.unsupported(
                        at(&fpath, "typed_config.@type"),
                        format!("HTTP filter {name} ({})", effective_type_url(any)),
                    ),
                    None => {}
                }
                false
            }
            Some(http_filter::ConfigType::ConfigDiscovery(_)) => {
                if !is_optional {
                    cx.unsupported(at(&fpath, "config_discovery"), "config_discovery (ECDS)");
                }
                false
            }
            // Older configs name the router without a config; Envoy finds the
            // factory by name and uses its defaults.
            None if name == ROUTER_NAME => true,
            // OSM names RBAC without a config: Envoy builds the factory's
            // empty config, which enforces nothing (no `rules`).
            None if name == "envoy.filters.http.rbac" => {
                out.push(model::HttpFilter {
                    name: name.clone(),
                    disabled: *disabled,
                    config: crate::model::extension::Extension::new(
                        crate::model::rbac::type_url::HTTP,
                        crate::model::rbac::HttpRbac::default(),
                    ),
                });
                false
            }
            None => {
                if !is_optional {
                    cx.unsupported(fpath.clone(), format!("HTTP filter {name}"));
                }
                false
            }
        };
        if !is_router {
            continue;
        }
        if *disabled {
            cx.unsupported(at(&fpath, "disabled"), "a disabled router");
        }
        if let Some(first) = router.replace(i) {
            cx.invalid(
                fpath,
                format!(
                    "a second router (the first is {})",
                    item(path, "http_filters", first)
                ),
            );
        } else if i + 1 != filters.len() {
            cx.invalid(fpath, "the router must be the last HTTP filter");
        }
    }
    if router.is_none() {
        cx.invalid(
            at(path, "http_filters"),
            format!("needs {ROUTER_NAME} as the last filter"),
        );
    }
    out
}

/// The router's own options: all must be at their defaults.
fn router_options(cx: &mut Context, path: &str, r: &Router) {
    let Router {
        dynamic_stats,
        start_child_span,
        upstream_log,
        upstream_log_options,
        suppress_envoy_headers,
        strict_check_headers,
        respect_expected_rq_timeout,
        suppress_grpc_request_failure_code_stats,
        upstream_http_filters,
        reject_connect_request_early_data,
    } = r;
    reject_set!(cx, path;
        start_child_span, upstream_log, upstream_log_options, suppress_envoy_headers,
        strict_check_headers, respect_expected_rq_timeout, suppress_grpc_request_failure_code_stats,
        upstream_http_filters,
    );
    cx.reject_unless_bool(path, "dynamic_stats", dynamic_stats, true);
    cx.reject_unless_bool(
        path,
        "reject_connect_request_early_data",
        reject_connect_request_early_data,
        false,
    );
}
