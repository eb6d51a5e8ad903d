//! Rate limits: the route's and virtual host's `rate_limits`
//! (`config.route.v3.RateLimit`), the HTTP local rate limit filter (and its
//! per-route config, the same message), the network local rate limit
//! filter and the global rate limit filter, into `strait_model::ratelimit`.

use std::time::Duration;

use envoy_types::pb::{
    envoy::{
        config::{
            core::v3::{
                GrpcService, RuntimeFeatureFlag,
                grpc_service::{EnvoyGrpc, TargetSpecifier},
            },
            ratelimit::v3::RateLimitServiceConfig,
            route::v3::{
                RateLimit as RoutePolicy,
                rate_limit::{
                    Action,
                    action::{ActionSpecifier, GenericKey, HeaderValueMatch, RequestHeaders},
                },
            },
        },
        extensions::{
            common::ratelimit::v3::{
                LocalRateLimitDescriptor, VhRateLimitsOptions, XRateLimitHeadersRfcVersion,
                rate_limit_descriptor::Entry,
            },
            filters::{
                http::{
                    local_ratelimit::v3::LocalRateLimit as HttpLocal,
                    ratelimit::v3::RateLimit as HttpGlobal,
                },
                network::local_ratelimit::v3::LocalRateLimit as NetworkLocal,
            },
        },
        r#type::v3::{HttpStatus, TokenBucket},
    },
    google::protobuf::Any,
};

use super::{
    Context, at, bool_value, decode_any, duration, item, policy, route::headers, u32_value,
};
use crate::model::{
    extension::Extension,
    policy::Fraction,
    ratelimit::{
        LimiterSlot, LocalDescriptor, LocalRateLimit, NetworkLocalRateLimit, RateLimit,
        RateLimitAction, RateLimitPolicy, RequestType, TokenBucket as ModelBucket, VhRateLimits,
        XRateLimitHeaders, type_url,
    },
};

/// Envoy's shortest fill interval for a local token bucket.
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);
/// Envoy's default timeout of the call to the rate-limit service.
const DEFAULT_RLS_TIMEOUT: Duration = Duration::from_millis(20);
/// `stage` is at most 10 (Envoy's proto validation).
const MAX_STAGE: u32 = 10;

/// `envoy.filters.http.local_ratelimit`'s config; `per_route` for a
/// `typed_per_filter_config` entry, which must have a token bucket.
pub(super) fn http_local(
    cx: &mut Context,
    any: &Any,
    path: &str,
    per_route: bool,
) -> Option<Extension> {
    let c = decode_any::<HttpLocal>(cx, path, any)?;
    let HttpLocal {
        stat_prefix,
        status,
        token_bucket,
        filter_enabled,
        filter_enforced,
        request_headers_to_add_when_not_enforced,
        response_headers_to_add,
        descriptors,
        stage,
        local_rate_limit_per_downstream_connection,
        local_cluster_rate_limit,
        enable_x_ratelimit_headers,
        vh_rate_limits,
        always_consume_default_token_bucket,
        rate_limited_as_resource_exhausted,
        rate_limits,
        // Bounds the buckets of wildcard descriptors, which are refused.
        max_dynamic_descriptors: _,
        enable_retry_after_header,
    } = c;
    // `local_cluster_rate_limit` shares the bucket among the local
    // cluster's hosts (needs `cluster_manager.local_cluster_name`);
    // `rate_limits` is the filter's own descriptor recipe (Strait reads
    // the route's).
    reject_set!(cx, path; local_cluster_rate_limit, rate_limits);
    for (field, on) in [
        // gRPC requests would get RESOURCE_EXHAUSTED instead of
        // UNAVAILABLE: refused until a local reply can carry it.
        (
            "rate_limited_as_resource_exhausted",
            rate_limited_as_resource_exhausted,
        ),
        ("enable_retry_after_header", enable_retry_after_header),
    ] {
        if on {
            cx.unsupported(at(path, field), format!("{field}: true"));
        }
    }
    let before = cx.problems.len();
    if stat_prefix.is_empty() {
        cx.invalid(at(path, "stat_prefix"), "must not be empty");
    }
    let stage = self::stage(cx, stage, &at(path, "stage"));
    let token_bucket = match &token_bucket {
        Some(b) => bucket(cx, b, &at(path, "token_bucket")),
        None if per_route => {
            // Envoy: "local rate limit token bucket must be set for per
            // filter configs".
            cx.invalid(
                at(path, "token_bucket"),
                "is required in a per-route config",
            );
            None
        }
        None => None,
    };
    let fraction = |cx: &mut Context, f: &Option<_>, field: &str| {
        f.as_ref()
            .map(|f| policy::runtime_fraction_default(cx, f, &at(path, field)))
    };
    let filter_enabled = fraction(cx, &filter_enabled, "filter_enabled");
    let filter_enforced = fraction(cx, &filter_enforced, "filter_enforced");
    let when_not_enforced = headers::to_add(
        cx,
        path,
        "request_headers_to_add_when_not_enforced",
        &request_headers_to_add_when_not_enforced,
    );
    let response_add = headers::to_add(
        cx,
        path,
        "response_headers_to_add",
        &response_headers_to_add,
    );
    let descriptors: Vec<LocalDescriptor> = descriptors
        .iter()
        .enumerate()
        .filter_map(|(i, d)| local_descriptor(cx, d, &item(path, "descriptors", i)))
        .collect();
    for (i, d) in descriptors.iter().enumerate() {
        if descriptors[..i].iter().any(|e| e.entries == d.entries) {
            cx.invalid(
                item(path, "descriptors", i),
                "duplicate descriptor in the local rate descriptor",
            );
        }
    }
    let x_ratelimit_headers = x_headers(cx, enable_x_ratelimit_headers, path);
    let vh_rate_limits = match VhRateLimitsOptions::try_from(vh_rate_limits) {
        Ok(VhRateLimitsOptions::Override) => VhRateLimits::Override,
        Ok(VhRateLimitsOptions::Include) => VhRateLimits::Include,
        Ok(VhRateLimitsOptions::Ignore) => VhRateLimits::Ignore,
        Err(_) => {
            cx.invalid(
                at(path, "vh_rate_limits"),
                format!("unknown value {vh_rate_limits}"),
            );
            VhRateLimits::Override
        }
    };
    let status = error_status(cx, status.as_ref(), &at(path, "status"), 429);
    (cx.problems.len() == before).then(|| {
        Extension::new(
            type_url::HTTP_LOCAL,
            LocalRateLimit {
                stat_prefix,
                status,
                // A zero fill interval means no default bucket in Envoy.
                token_bucket: token_bucket.filter(|b| !b.fill_interval.is_zero()),
                filter_enabled,
                filter_enforced,
                request_headers_to_add_when_not_enforced: when_not_enforced,
                response_headers_to_add: response_add,
                descriptors,
                stage,
                per_connection: local_rate_limit_per_downstream_connection,
                x_ratelimit_headers,
                vh_rate_limits,
                always_consume_default_token_bucket: bool_value(
                    &always_consume_default_token_bucket,
                    true,
                ),
                limiter: LimiterSlot::default(),
            },
        )
    })
}

/// `envoy.filters.network.local_ratelimit`'s config.
pub(super) fn network_local(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let NetworkLocal {
        stat_prefix,
        token_bucket,
        runtime_enabled,
        share_key,
    } = decode_any::<NetworkLocal>(cx, path, any)?;
    // One bucket shared by every filter config with the same key (across
    // listeners): not supported; each config has its own.
    reject_set!(cx, path; share_key);
    let before = cx.problems.len();
    if stat_prefix.is_empty() {
        cx.invalid(at(path, "stat_prefix"), "must not be empty");
    }
    let bpath = at(path, "token_bucket");
    let token_bucket = match &token_bucket {
        Some(b) => bucket(cx, b, &bpath),
        None => {
            cx.invalid(bpath, "is required");
            None
        }
    };
    // Strait has no runtime layer: the flag's default is what counts.
    let enabled = match runtime_enabled {
        None => true,
        Some(RuntimeFeatureFlag {
            default_value,
            runtime_key: _,
        }) => bool_value(&default_value, true),
    };
    let token_bucket = token_bucket?;
    if token_bucket.fill_interval.is_zero() {
        cx.invalid(
            at(path, "token_bucket.fill_interval"),
            "must be greater than 0s",
        );
    }
    (cx.problems.len() == before).then(|| {
        Extension::new(
            type_url::NETWORK_LOCAL,
            NetworkLocalRateLimit {
                stat_prefix,
                token_bucket,
                enabled,
            },
        )
    })
}

/// `envoy.filters.http.ratelimit`'s config.
pub(super) fn http_global(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let HttpGlobal {
        domain,
        stage,
        request_type,
        timeout,
        failure_mode_deny,
        rate_limited_as_resource_exhausted,
        rate_limit_service,
        enable_x_ratelimit_headers,
        disable_x_envoy_ratelimited_header,
        rate_limited_status,
        response_headers_to_add,
        status_on_error,
        stat_prefix,
        filter_enabled,
        filter_enforced,
        failure_mode_deny_percent,
        rate_limits,
        metadata_namespace,
        enable_retry_after_header,
    } = decode_any::<HttpGlobal>(cx, path, any)?;
    // `response_headers_to_add` (the filter's own, with formatters),
    // `stat_prefix` (a second stats scope), `failure_mode_deny_percent`
    // (runtime-sampled failure mode), `rate_limits` (the filter's own
    // descriptor recipe), `metadata_namespace` (the service's dynamic
    // metadata, which nothing in Strait reads): not supported.
    reject_set!(cx, path;
        response_headers_to_add, stat_prefix, failure_mode_deny_percent, rate_limits,
        metadata_namespace,
    );
    for (field, on) in [
        (
            "rate_limited_as_resource_exhausted",
            rate_limited_as_resource_exhausted,
        ),
        ("enable_retry_after_header", enable_retry_after_header),
    ] {
        if on {
            cx.unsupported(at(path, field), format!("{field}: true"));
        }
    }
    let before = cx.problems.len();
    if domain.is_empty() {
        cx.invalid(at(path, "domain"), "must not be empty");
    }
    let stage = self::stage(cx, stage, &at(path, "stage"));
    let request_type = match request_type.as_str() {
        "" | "both" => RequestType::Both,
        "internal" => RequestType::Internal,
        "external" => RequestType::External,
        other => {
            cx.invalid(
                at(path, "request_type"),
                format!("'{other}' is not internal, external or both"),
            );
            RequestType::Both
        }
    };
    let timeout = super::timeout(
        cx,
        &at(path, "timeout"),
        &timeout,
        Some(DEFAULT_RLS_TIMEOUT),
    );
    let spath = at(path, "rate_limit_service");
    let (cluster, authority) = match &rate_limit_service {
        Some(s) => service(cx, s, &spath)?,
        None => {
            cx.invalid(spath, "is required");
            return None;
        }
    };
    let fraction = |cx: &mut Context, f: &Option<_>, field: &str| {
        f.as_ref().map_or(Fraction::ALL, |f| {
            policy::runtime_fraction_default(cx, f, &at(path, field))
        })
    };
    let filter_enabled = fraction(cx, &filter_enabled, "filter_enabled");
    let filter_enforced = fraction(cx, &filter_enforced, "filter_enforced");
    let x_ratelimit_headers = x_headers(cx, enable_x_ratelimit_headers, path);
    let rate_limited_status = error_status(
        cx,
        rate_limited_status.as_ref(),
        &at(path, "rate_limited_status"),
        429,
    );
    let status_on_error = match &status_on_error {
        None => 500,
        Some(HttpStatus { code }) => match u16::try_from(*code) {
            Ok(c @ 100..=599) => c,
            _ => {
                cx.invalid(
                    at(path, "status_on_error.code"),
                    format!("{code} is not an HTTP status"),
                );
                500
            }
        },
    };
    (cx.problems.len() == before).then(|| {
        Extension::new(
            type_url::HTTP_GLOBAL,
            RateLimit {
                domain,
                stage,
                request_type,
                timeout,
                failure_mode_deny,
                cluster,
                authority,
                x_ratelimit_headers,
                disable_x_envoy_ratelimited_header,
                rate_limited_status,
                status_on_error,
                filter_enabled,
                filter_enforced,
            },
        )
    })
}

/// The rate-limit service: an `envoy_grpc` cluster, over Envoy's v3 API.
fn service(cx: &mut Context, s: &RateLimitServiceConfig, path: &str) -> Option<(String, String)> {
    let RateLimitServiceConfig {
        grpc_service,
        transport_api_version,
    } = s;
    // Envoy refuses anything but V3 ("V2 ... is deprecated").
    if *transport_api_version != 2 {
        cx.invalid(
            at(path, "transport_api_version"),
            "must be V3 (Envoy refuses the V2 and AUTO rate limit service API)",
        );
    }
    let gpath = at(path, "grpc_service");
    let Some(GrpcService {
        // The filter's own `timeout` bounds the call.
        timeout: _,
        initial_metadata,
        retry_policy,
        target_specifier,
    }) = grpc_service
    else {
        cx.invalid(gpath, "is required");
        return None;
    };
    reject_set!(cx, &gpath; initial_metadata, retry_policy);
    match target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
            cluster_name,
            authority,
            retry_policy,
            // A cap on the answer's size; a RateLimitResponse is small.
            max_receive_message_length: _,
            // Strait adds no x-envoy-* headers to the call anyway.
            skip_envoy_headers: _,
        })) => {
            let epath = at(&gpath, "envoy_grpc");
            reject_set!(cx, &epath; retry_policy);
            if cluster_name.is_empty() {
                cx.invalid(at(&epath, "cluster_name"), "must not be empty");
                return None;
            }
            cx.require_cluster(at(&epath, "cluster_name"), cluster_name);
            Some((cluster_name.clone(), authority.clone()))
        }
        Some(TargetSpecifier::GoogleGrpc(_)) => {
            cx.unsupported(at(&gpath, "google_grpc"), "google_grpc (use envoy_grpc)");
            None
        }
        None => {
            cx.invalid(gpath, "needs envoy_grpc");
            None
        }
    }
}

/// `rate_limits` of a route or virtual host.
pub(super) fn policies(cx: &mut Context, list: &[RoutePolicy], path: &str) -> Vec<RateLimitPolicy> {
    list.iter()
        .enumerate()
        .filter_map(|(i, p)| route_policy(cx, p, &item(path, "rate_limits", i)))
        .collect()
}

fn route_policy(cx: &mut Context, p: &RoutePolicy, path: &str) -> Option<RateLimitPolicy> {
    let RoutePolicy {
        stage,
        disable_key,
        actions,
        limit,
        hits_addend,
        apply_on_stream_done,
        x_ratelimit_option,
    } = p;
    // `limit` (a per-descriptor limit override sent to the service),
    // `hits_addend`, `apply_on_stream_done` (a second call when the
    // stream ends) and `x_ratelimit_option` (per-descriptor header
    // choice): not supported.
    reject_set!(cx, path;
        limit, hits_addend, apply_on_stream_done, x_ratelimit_option,
    );
    let before = cx.problems.len();
    let stage = self::stage(cx, u32_value(stage, 0), &at(path, "stage"));
    if actions.is_empty() {
        cx.invalid(at(path, "actions"), "needs at least one action");
    }
    let actions: Vec<RateLimitAction> = actions
        .iter()
        .enumerate()
        .filter_map(|(i, a)| action(cx, a, &item(path, "actions", i)))
        .collect();
    (cx.problems.len() == before).then(|| RateLimitPolicy {
        stage,
        disable_key: disable_key.clone(),
        actions,
    })
}

fn action(cx: &mut Context, a: &Action, path: &str) -> Option<RateLimitAction> {
    let Action { action_specifier } = a;
    let unsupported = |cx: &mut Context, field: &str| {
        cx.unsupported(at(path, field), format!("rate limit action {field}"));
        None
    };
    match action_specifier {
        Some(ActionSpecifier::SourceCluster(_)) => {
            Some(RateLimitAction::SourceCluster(cx.node_cluster.clone()))
        }
        Some(ActionSpecifier::DestinationCluster(_)) => Some(RateLimitAction::DestinationCluster),
        Some(ActionSpecifier::RequestHeaders(RequestHeaders {
            header_name,
            descriptor_key,
            skip_if_absent,
        })) => {
            let apath = at(path, "request_headers");
            if header_name.is_empty() || descriptor_key.is_empty() {
                cx.invalid(apath, "header_name and descriptor_key must not be empty");
                return None;
            }
            Some(RateLimitAction::RequestHeaders {
                header_name: header_name.to_ascii_lowercase(),
                descriptor_key: descriptor_key.clone(),
                skip_if_absent: *skip_if_absent,
            })
        }
        Some(ActionSpecifier::RemoteAddress(_)) => Some(RateLimitAction::RemoteAddress),
        Some(ActionSpecifier::GenericKey(GenericKey {
            descriptor_value,
            default_value,
            descriptor_key,
        })) => {
            let apath = at(path, "generic_key");
            // Only for a `descriptor_value` with substitution formatters,
            // which Strait does not evaluate.
            reject_set!(cx, &apath; default_value);
            if descriptor_value.is_empty() {
                cx.invalid(at(&apath, "descriptor_value"), "must not be empty");
                return None;
            }
            Some(RateLimitAction::GenericKey {
                descriptor_key: or(descriptor_key, "generic_key"),
                descriptor_value: descriptor_value.clone(),
            })
        }
        Some(ActionSpecifier::HeaderValueMatch(HeaderValueMatch {
            descriptor_value,
            default_value,
            descriptor_key,
            expect_match,
            headers,
        })) => {
            let apath = at(path, "header_value_match");
            if descriptor_value.is_empty() {
                cx.invalid(at(&apath, "descriptor_value"), "must not be empty");
            }
            if headers.is_empty() {
                cx.invalid(at(&apath, "headers"), "needs at least one header matcher");
            }
            let headers = headers
                .iter()
                .enumerate()
                .filter_map(|(i, h)| policy::header_condition(cx, h, &item(&apath, "headers", i)))
                .collect();
            Some(RateLimitAction::HeaderValueMatch {
                descriptor_key: or(descriptor_key, "header_match"),
                descriptor_value: descriptor_value.clone(),
                default_value: default_value.clone(),
                expect_match: bool_value(expect_match, true),
                headers,
            })
        }
        Some(ActionSpecifier::QueryParameters(_)) => unsupported(cx, "query_parameters"),
        Some(ActionSpecifier::DynamicMetadata(_)) => unsupported(cx, "dynamic_metadata"),
        Some(ActionSpecifier::Metadata(_)) => unsupported(cx, "metadata"),
        Some(ActionSpecifier::Extension(_)) => unsupported(cx, "extension"),
        Some(ActionSpecifier::MaskedRemoteAddress(_)) => unsupported(cx, "masked_remote_address"),
        Some(ActionSpecifier::QueryParameterValueMatch(_)) => {
            unsupported(cx, "query_parameter_value_match")
        }
        Some(ActionSpecifier::RemoteAddressMatch(_)) => unsupported(cx, "remote_address_match"),
        None => {
            cx.invalid(path, "needs an action");
            None
        }
    }
}

fn or(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}

fn stage(cx: &mut Context, stage: u32, path: &str) -> u32 {
    if stage > MAX_STAGE {
        cx.invalid(path, format!("{stage} is more than {MAX_STAGE}"));
    }
    stage
}

/// A token bucket as Envoy validates it.
fn bucket(cx: &mut Context, b: &TokenBucket, path: &str) -> Option<ModelBucket> {
    let TokenBucket {
        max_tokens,
        tokens_per_fill,
        fill_interval,
    } = b;
    let before = cx.problems.len();
    if *max_tokens == 0 {
        cx.invalid(at(path, "max_tokens"), "must be greater than 0");
    }
    let tokens_per_fill = u32_value(tokens_per_fill, 1);
    if tokens_per_fill == 0 {
        cx.invalid(at(path, "tokens_per_fill"), "must be greater than 0");
    }
    let fpath = at(path, "fill_interval");
    let fill_interval = match fill_interval {
        Some(d) => duration(cx, &fpath, d)?,
        None => {
            cx.invalid(fpath, "is required");
            return None;
        }
    };
    if !fill_interval.is_zero() && fill_interval < MIN_FILL_INTERVAL {
        cx.invalid(
            fpath,
            "local rate limit token bucket fill timer must be >= 50ms",
        );
    }
    (cx.problems.len() == before).then_some(ModelBucket {
        max_tokens: *max_tokens,
        tokens_per_fill,
        fill_interval,
    })
}

fn local_descriptor(
    cx: &mut Context,
    d: &LocalRateLimitDescriptor,
    path: &str,
) -> Option<LocalDescriptor> {
    let LocalRateLimitDescriptor {
        entries,
        token_bucket,
        shadow_mode,
    } = d;
    // A descriptor that counts but never limits: not supported.
    reject_set!(cx, path; shadow_mode);
    if entries.is_empty() {
        cx.invalid(at(path, "entries"), "needs at least one entry");
        return None;
    }
    // An empty value makes Envoy keep a bucket per distinct request value
    // (dynamic descriptors, in an LRU under a lock): not supported.
    if entries.iter().any(|e| e.value.is_empty()) {
        cx.unsupported(
            at(path, "entries"),
            "a wildcard descriptor entry (empty value)",
        );
        return None;
    }
    let entries = entries
        .iter()
        .map(|Entry { key, value }| (key.clone(), value.clone()))
        .collect();
    let bpath = at(path, "token_bucket");
    let token_bucket = match token_bucket {
        Some(b) => bucket(cx, b, &bpath)?,
        None => {
            cx.invalid(bpath, "is required");
            return None;
        }
    };
    if token_bucket.fill_interval < MIN_FILL_INTERVAL {
        cx.invalid(
            at(path, "token_bucket.fill_interval"),
            "local rate limit descriptor token bucket fill timer must be >= 50ms",
        );
        return None;
    }
    Some(LocalDescriptor {
        entries,
        token_bucket,
    })
}

fn x_headers(cx: &mut Context, value: i32, path: &str) -> XRateLimitHeaders {
    match XRateLimitHeadersRfcVersion::try_from(value) {
        Ok(XRateLimitHeadersRfcVersion::Off) => XRateLimitHeaders::Off,
        Ok(XRateLimitHeadersRfcVersion::DraftVersion03) => XRateLimitHeaders::Draft03,
        Err(_) => {
            cx.invalid(
                at(path, "enable_x_ratelimit_headers"),
                format!("unknown value {value}"),
            );
            XRateLimitHeaders::Off
        }
    }
}

/// A limited request's status: Envoy answers `default` for anything below
/// 400 (and when unset).
fn error_status(cx: &mut Context, s: Option<&HttpStatus>, path: &str, default: u16) -> u16 {
    match s {
        None => default,
        Some(HttpStatus { code }) => match u16::try_from(*code) {
            Ok(c @ 400..=599) => c,
            Ok(100..=399) => default,
            _ => {
                cx.invalid(at(path, "code"), format!("{code} is not an HTTP status"));
                default
            }
        },
    }
}
