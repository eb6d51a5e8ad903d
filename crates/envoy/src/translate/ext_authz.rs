//! `envoy.filters.http.ext_authz` and its per-route `ExtAuthzPerRoute`.

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::core::v3::{
        GrpcService, HeaderValue, HttpUri, RuntimeFeatureFlag, grpc_service::EnvoyGrpc,
        grpc_service::TargetSpecifier, http_uri::HttpUpstreamType,
    },
    extensions::filters::http::ext_authz::v3::{
        AuthorizationRequest, AuthorizationResponse, BufferSettings, CheckSettings, ExtAuthz,
        ExtAuthzPerRoute, HttpService, ext_authz::Services, ext_authz_per_route::Override,
    },
    extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz,
    r#type::{matcher::v3::ListStringMatcher, v3::HttpStatus},
};

use super::{Context, at, decode_any, item, policy, positive_duration};
use crate::model::{
    self, ext_authz as m,
    policy::{Fraction, ValueMatcher},
};

/// Envoy's default timeout of the authorization call.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

pub(super) fn ext_authz(cx: &mut Context, c: &ExtAuthz, path: &str) -> Option<m::ExtAuthz> {
    #[allow(deprecated)]
    let ExtAuthz {
        transport_api_version,
        failure_mode_allow,
        failure_mode_allow_header_add,
        with_request_body,
        clear_route_cache,
        status_on_error,
        validate_mutations,
        metadata_context_namespaces,
        typed_metadata_context_namespaces,
        route_metadata_context_namespaces,
        route_typed_metadata_context_namespaces,
        filter_enabled,
        filter_enabled_metadata,
        deny_at_disable,
        include_peer_certificate,
        stat_prefix,
        bootstrap_metadata_labels_key,
        allowed_headers,
        disallowed_headers,
        include_tls_session,
        // Whether denials are also counted in the cluster's response-code
        // stats: stats only.
        charge_cluster_response_stats: _,
        encode_raw_headers,
        decoder_header_mutation_rules,
        enable_dynamic_metadata_ingestion,
        filter_metadata,
        // Per-request stats kept in filter state for access logs: no traffic
        // effect.
        emit_filter_state_stats: _,
        max_denied_response_body_bytes,
        enforce_response_header_limits,
        shadow_mode,
        // Tracing only.
        emit_client_span: _,
        services,
    } = c;
    reject_set!(cx, path;
        typed_metadata_context_namespaces, route_metadata_context_namespaces,
        route_typed_metadata_context_namespaces, bootstrap_metadata_labels_key,
        decoder_header_mutation_rules, filter_metadata, max_denied_response_body_bytes,
    );
    for (field, on) in [
        // Strait routes before the filters run; re-routing after the
        // authorization service changed headers is not supported.
        ("clear_route_cache", *clear_route_cache),
        ("validate_mutations", *validate_mutations),
        ("include_tls_session", *include_tls_session),
        // The client certificate's PEM in the check: not kept per
        // connection outside XFCC; the principal is always sent.
        ("include_peer_certificate", *include_peer_certificate),
        (
            "enforce_response_header_limits",
            *enforce_response_header_limits,
        ),
        ("shadow_mode", *shadow_mode),
        // Header values as raw bytes in the check (`header_map`): the
        // request's headers are always valid UTF-8 text here, so only the
        // field they travel in would differ; refused until a service needs it.
        ("encode_raw_headers", *encode_raw_headers),
    ] {
        if on {
            cx.unsupported(at(path, field), format!("{field}: true"));
        }
    }
    cx.reject_unless_bool(
        path,
        "enable_dynamic_metadata_ingestion",
        enable_dynamic_metadata_ingestion,
        true,
    );
    // AUTO (0) and V3 (2); V2 (1) is gone from Envoy.
    if *transport_api_version == 1 {
        cx.unsupported(
            at(path, "transport_api_version"),
            "transport_api_version V2",
        );
    }
    let before = cx.problems.len();
    let (service, timeout) = match services {
        Some(Services::GrpcService(g)) => grpc_service(cx, g, &at(path, "grpc_service"))?,
        Some(Services::HttpService(h)) => http_service(cx, h, &at(path, "http_service"))?,
        None => {
            cx.invalid(at(path, "services"), "needs grpc_service or http_service");
            return None;
        }
    };
    let status_on_error = match status_on_error {
        None => 403,
        Some(HttpStatus { code }) => match u16::try_from(*code) {
            Ok(c @ 200..=599) => c,
            _ => {
                cx.invalid(
                    at(path, "status_on_error.code"),
                    format!("{code} is not an HTTP status"),
                );
                403
            }
        },
    };
    let filter_enabled = filter_enabled.as_ref().map_or(Fraction::ALL, |f| {
        policy::runtime_fraction_default(cx, f, &at(path, "filter_enabled"))
    });
    let filter_enabled_metadata = filter_enabled_metadata
        .as_ref()
        .and_then(|f| policy::metadata_matcher(cx, f, &at(path, "filter_enabled_metadata")));
    let deny_at_disable = match deny_at_disable {
        None => false,
        // Strait has no runtime layer: the key never overrides the default.
        Some(RuntimeFeatureFlag {
            default_value,
            runtime_key: _,
        }) => default_value.is_some_and(|v| v.value),
    };
    let allowed_headers = string_list(cx, allowed_headers.as_ref(), &at(path, "allowed_headers"));
    let disallowed_headers = string_list(
        cx,
        disallowed_headers.as_ref(),
        &at(path, "disallowed_headers"),
    );
    (cx.problems.len() == before).then(|| m::ExtAuthz {
        service,
        timeout,
        failure_mode_allow: *failure_mode_allow,
        failure_mode_allow_header_add: *failure_mode_allow_header_add,
        status_on_error,
        with_request_body: with_request_body.as_ref().map(buffer_settings),
        stat_prefix: stat_prefix.clone(),
        filter_enabled,
        filter_enabled_metadata,
        deny_at_disable,
        metadata_context_namespaces: metadata_context_namespaces.clone(),
        allowed_headers,
        disallowed_headers,
    })
}

/// `envoy.filters.network.ext_authz`'s config.
pub(super) fn network_filter(
    cx: &mut Context,
    any: &envoy_types::pb::google::protobuf::Any,
    path: &str,
) -> Option<model::extension::Extension> {
    let NetworkExtAuthz {
        stat_prefix,
        grpc_service: service,
        failure_mode_allow,
        include_peer_certificate,
        transport_api_version,
        filter_enabled_metadata,
        bootstrap_metadata_labels_key,
        include_tls_session,
        send_tls_alert_on_denial,
        metadata_context_namespaces,
        typed_metadata_context_namespaces,
        shadow_mode,
    } = decode_any::<NetworkExtAuthz>(cx, path, any)?;
    reject_set!(cx, path; bootstrap_metadata_labels_key, typed_metadata_context_namespaces);
    for (field, on) in [
        ("include_peer_certificate", include_peer_certificate),
        ("include_tls_session", include_tls_session),
        // Strait closes a denied TLS connection without an alert.
        ("send_tls_alert_on_denial", send_tls_alert_on_denial),
        ("shadow_mode", shadow_mode),
    ] {
        if on {
            cx.unsupported(at(path, field), format!("{field}: true"));
        }
    }
    if transport_api_version == 1 {
        cx.unsupported(
            at(path, "transport_api_version"),
            "transport_api_version V2",
        );
    }
    let before = cx.problems.len();
    let Some(g) = service.as_ref() else {
        cx.invalid(at(path, "grpc_service"), "is required");
        return None;
    };
    let (service, timeout) = grpc_service(cx, g, &at(path, "grpc_service"))?;
    let m::AuthzService::Grpc {
        cluster,
        authority,
        initial_metadata,
    } = service
    else {
        return None;
    };
    let filter_enabled_metadata = filter_enabled_metadata
        .as_ref()
        .and_then(|f| policy::metadata_matcher(cx, f, &at(path, "filter_enabled_metadata")));
    (cx.problems.len() == before).then(|| {
        model::extension::Extension::new(
            model::filter::type_url::NETWORK_EXT_AUTHZ,
            m::NetworkExtAuthz {
                cluster,
                authority,
                initial_metadata,
                timeout,
                failure_mode_allow,
                stat_prefix,
                filter_enabled_metadata,
                metadata_context_namespaces,
            },
        )
    })
}

fn buffer_settings(b: &BufferSettings) -> m::BufferSettings {
    let BufferSettings {
        max_request_bytes,
        allow_partial_message,
        pack_as_bytes,
    } = b;
    m::BufferSettings {
        max_request_bytes: *max_request_bytes,
        allow_partial_message: *allow_partial_message,
        pack_as_bytes: *pack_as_bytes,
    }
}

fn grpc_service(
    cx: &mut Context,
    g: &GrpcService,
    path: &str,
) -> Option<(m::AuthzService, Duration)> {
    let GrpcService {
        timeout,
        initial_metadata,
        retry_policy,
        target_specifier,
    } = g;
    reject_set!(cx, path; retry_policy);
    let timeout = positive_duration(cx, &at(path, "timeout"), timeout, DEFAULT_TIMEOUT);
    let initial_metadata = headers(cx, initial_metadata, path, "initial_metadata");
    match target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
            cluster_name,
            authority,
            retry_policy,
            // A cap on the answer's size; a CheckResponse is small.
            max_receive_message_length: _,
            // Strait adds no x-envoy-* headers to the call anyway.
            skip_envoy_headers: _,
        })) => {
            let epath = at(path, "envoy_grpc");
            reject_set!(cx, &epath; retry_policy);
            if cluster_name.is_empty() {
                cx.invalid(at(&epath, "cluster_name"), "must not be empty");
                return None;
            }
            // Envoy's gRPC client manager checks the cluster when the filter
            // is made (the HTTP client only per request).
            cx.require_cluster(at(&epath, "cluster_name"), cluster_name);
            Some((
                m::AuthzService::Grpc {
                    cluster: cluster_name.clone(),
                    authority: authority.clone(),
                    initial_metadata,
                },
                timeout,
            ))
        }
        Some(TargetSpecifier::GoogleGrpc(_)) => {
            cx.unsupported(at(path, "google_grpc"), "google_grpc (use envoy_grpc)");
            None
        }
        None => {
            cx.invalid(path, "needs envoy_grpc");
            None
        }
    }
}

fn http_service(
    cx: &mut Context,
    h: &HttpService,
    path: &str,
) -> Option<(m::AuthzService, Duration)> {
    let HttpService {
        server_uri,
        path_prefix,
        path_override,
        authorization_request,
        authorization_response,
        retry_policy,
    } = h;
    reject_set!(cx, path; path_override, retry_policy);
    let Some(HttpUri {
        // Required by Envoy but not used to reach the service: the cluster is.
        uri: _,
        timeout,
        http_upstream_type,
    }) = server_uri
    else {
        cx.invalid(at(path, "server_uri"), "is required");
        return None;
    };
    let upath = at(path, "server_uri");
    let timeout = positive_duration(cx, &at(&upath, "timeout"), timeout, DEFAULT_TIMEOUT);
    let Some(HttpUpstreamType::Cluster(cluster)) = http_upstream_type else {
        cx.invalid(at(&upath, "cluster"), "is required");
        return None;
    };
    let (allowed_request_headers, request_headers_to_add) = match authorization_request {
        None => (Vec::new(), Vec::new()),
        Some(AuthorizationRequest {
            allowed_headers,
            headers_to_add,
        }) => {
            let rpath = at(path, "authorization_request");
            let allowed = string_list(cx, allowed_headers.as_ref(), &at(&rpath, "allowed_headers"));
            let add = headers(cx, headers_to_add, &rpath, "headers_to_add")
                .into_iter()
                .map(|(name, value)| model::HeaderToAdd {
                    name,
                    value,
                    action: model::AppendAction::OverwriteIfExistsOrAdd,
                    keep_empty_value: true,
                })
                .collect();
            (allowed, add)
        }
    };
    let rpath = at(path, "authorization_response");
    let empty = AuthorizationResponse::default();
    let AuthorizationResponse {
        allowed_upstream_headers,
        allowed_upstream_headers_to_append,
        allowed_client_headers,
        allowed_client_headers_on_success,
        dynamic_metadata_from_headers,
    } = authorization_response.as_ref().unwrap_or(&empty);
    let mut list =
        |l: &Option<ListStringMatcher>, f: &str| string_list(cx, l.as_ref(), &at(&rpath, f));
    let service = m::HttpService {
        cluster: cluster.clone(),
        path_prefix: path_prefix.clone(),
        allowed_request_headers,
        request_headers_to_add,
        allowed_upstream_headers: list(allowed_upstream_headers, "allowed_upstream_headers"),
        allowed_upstream_headers_to_append: list(
            allowed_upstream_headers_to_append,
            "allowed_upstream_headers_to_append",
        ),
        allowed_client_headers: list(allowed_client_headers, "allowed_client_headers"),
        allowed_client_headers_on_success: list(
            allowed_client_headers_on_success,
            "allowed_client_headers_on_success",
        ),
        dynamic_metadata_from_headers: list(
            dynamic_metadata_from_headers,
            "dynamic_metadata_from_headers",
        ),
    };
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        cx.invalid(at(path, "path_prefix"), "must start with /");
    }
    Some((m::AuthzService::Http(service), timeout))
}

/// Literal header name/value pairs (`HeaderValue`s), names lower-cased.
pub(super) fn headers(
    cx: &mut Context,
    list: &[HeaderValue],
    path: &str,
    field: &str,
) -> Vec<(String, String)> {
    list.iter()
        .enumerate()
        .filter_map(
            |(
                i,
                HeaderValue {
                    key,
                    value,
                    raw_value,
                },
            )| {
                let p = item(path, field, i);
                let value = if raw_value.is_empty() {
                    value.clone()
                } else {
                    match String::from_utf8(raw_value.clone()) {
                        Ok(v) => v,
                        Err(_) => {
                            cx.unsupported(at(&p, "raw_value"), "raw_value that is not UTF-8");
                            return None;
                        }
                    }
                };
                let name = key.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(&value).is_err()
                {
                    cx.invalid(p, "not a valid header");
                    return None;
                }
                Some((name, value))
            },
        )
        .collect()
}

fn string_list(cx: &mut Context, l: Option<&ListStringMatcher>, path: &str) -> Vec<ValueMatcher> {
    let Some(ListStringMatcher { patterns }) = l else {
        return Vec::new();
    };
    patterns
        .iter()
        .enumerate()
        .filter_map(|(i, p)| policy::string_matcher(cx, p, &item(path, "patterns", i)))
        .collect()
}

pub(super) fn per_route(
    cx: &mut Context,
    c: &ExtAuthzPerRoute,
    path: &str,
) -> Option<m::ExtAuthzPerRoute> {
    let ExtAuthzPerRoute { r#override } = c;
    match r#override {
        Some(Override::Disabled(true)) => Some(m::ExtAuthzPerRoute::Disabled),
        Some(Override::Disabled(false)) => {
            cx.invalid(at(path, "disabled"), "must be true when set");
            None
        }
        Some(Override::CheckSettings(CheckSettings {
            context_extensions,
            disable_request_body_buffering,
            with_request_body,
            // Tracing only.
            emit_client_span: _,
            service_override,
        })) => {
            let spath = at(path, "check_settings");
            reject_set!(cx, &spath; service_override);
            Some(m::ExtAuthzPerRoute::CheckSettings {
                context_extensions: context_extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                disable_request_body_buffering: *disable_request_body_buffering,
                with_request_body: with_request_body.as_ref().map(buffer_settings),
            })
        }
        None => {
            cx.invalid(path, "needs disabled or check_settings");
            None
        }
    }
}
