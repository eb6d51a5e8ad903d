//! The HCM's `tracing` and `request_id_extension`: Envoy's trace decision
//! and the Zipkin tracer (see `docs/decisions/0018-tracing.md`). Every
//! field is judged; what Strait does not do is refused by name.

use std::sync::Arc;

use envoy_types::pb::envoy::{
    config::trace::v3::{
        OpenTelemetryConfig, ZipkinConfig,
        tracing::{Http as TracingProvider, http as tracing_http},
        zipkin_config::{CollectorEndpointVersion, TraceContextOption},
    },
    extensions::{
        filters::network::http_connection_manager::v3::{
            RequestIdExtension, http_connection_manager::Tracing,
        },
        request_id::uuid::v3::UuidRequestIdConfig,
    },
    r#type::{
        metadata::v3::{MetadataKey, metadata_key::path_segment, metadata_kind},
        tracing::v3::{CustomTag, custom_tag},
        v3::Percent,
    },
};
use envoy_types::pb::google::protobuf::BoolValue;
use prost::Name;
use strait_model::tracing as model;

use super::{Context, at, item, type_name};

/// Tracers Strait knows of but does not implement: refused by name (a
/// config naming one would expect spans and context headers).
const REFUSED_TRACERS: [&str; 3] = [
    "envoy.config.trace.v3.DatadogConfig",
    "envoy.config.trace.v3.LightstepConfig",
    "envoy.config.trace.v3.SkyWalkingConfig",
];

/// Where the bootstrap's tracer is (`tracing.http`).
pub(super) const BOOTSTRAP_PATH: &str = "tracing.http";

/// A `Percent` in Envoy's ten-thousandths (its runtime `TEN_THOUSAND`).
fn per_10k(p: Option<&Percent>) -> u32 {
    p.map_or(10_000, |p| {
        (p.value.clamp(0.0, 100.0) * 100.0).round() as u32
    })
}

/// The HCM's `tracing` (with its `request_id_extension`, which only steers
/// the decision's bookkeeping).
pub(super) fn tracing(
    cx: &mut Context,
    path: &str,
    t: &Tracing,
    request_id: Option<&RequestIdExtension>,
    request_id_path: &str,
) -> Option<Arc<model::Tracing>> {
    let Tracing {
        client_sampling,
        random_sampling,
        overall_sampling,
        // Envoy's `verbose` adds per-filter log annotations to spans; no
        // span Strait writes carries them, and Zipkin JSON from Envoy 1.40
        // carries none for the router either.
        verbose: _,
        max_path_tag_length,
        custom_tags,
        spawn_upstream_span,
        operation,
        upstream_operation,
        no_context_propagation,
        provider,
    } = t;
    // A separate upstream span, renamed operations and suppressed
    // propagation change what the collector and the upstream see.
    reject_set!(cx, path; operation, upstream_operation);
    if spawn_upstream_span.is_some_and(|b| b.value) {
        cx.unsupported(at(path, "spawn_upstream_span"), "spawn_upstream_span: true");
    }
    if *no_context_propagation {
        cx.unsupported(
            at(path, "no_context_propagation"),
            "no_context_propagation: true",
        );
    }
    let request_id = request_id
        .map(|r| self::request_id(cx, request_id_path, r))
        .unwrap_or_default();
    let node = cx.node.as_ref();
    let mut out = model::Tracing {
        random_sampling: per_10k(random_sampling.as_ref()),
        client_sampling: per_10k(client_sampling.as_ref()),
        overall_sampling: per_10k(overall_sampling.as_ref()),
        custom_tags: Vec::new(),
        max_path_tag_length: max_path_tag_length.as_ref().map_or(256, |v| v.value),
        request_id,
        provider: None,
        node: model::TraceNode {
            id: node.map(|n| n.id.clone()).unwrap_or_default(),
            cluster: node.map(|n| n.cluster.clone()).unwrap_or_default(),
            zone: node
                .and_then(|n| n.locality.as_ref())
                .map(|l| l.zone.clone())
                .unwrap_or_default(),
        },
    };
    for (i, tag) in custom_tags.iter().enumerate() {
        if let Some(t) = custom_tag(cx, &item(path, "custom_tags", i), tag) {
            out.custom_tags.push(t);
        }
    }
    out.provider = match provider {
        Some(p) => self::provider(cx, &at(path, "provider"), p),
        // Envoy falls back to the bootstrap's (deprecated) tracer.
        None => {
            let tracer = cx.bootstrap_tracer.clone();
            if let Some(p) = &tracer {
                cx.require_cluster(at(path, "provider"), p.cluster());
            }
            tracer
        }
    };
    Some(Arc::new(out))
}

/// A tracer (`envoy.config.trace.v3.Tracing.Http`): Zipkin, or refused.
pub(super) fn provider(
    cx: &mut Context,
    ppath: &str,
    p: &TracingProvider,
) -> Option<model::Provider> {
    let TracingProvider {
        // A label; the type URL picks the tracer.
        name: _,
        config_type,
    } = p;
    match config_type {
        Some(tracing_http::ConfigType::TypedConfig(any))
            if type_name(&any.type_url) == ZipkinConfig::full_name() =>
        {
            let tpath = at(ppath, "typed_config");
            let z = super::decode_any::<ZipkinConfig>(cx, &tpath, any)?;
            // Envoy checks the collector cluster when a connection manager
            // makes the tracer: the bootstrap's is checked by its users.
            let checked = ppath != BOOTSTRAP_PATH;
            zipkin(cx, &tpath, &z, checked).map(|z| model::Provider::Zipkin(Arc::new(z)))
        }
        Some(tracing_http::ConfigType::TypedConfig(any))
            if type_name(&any.type_url) == OpenTelemetryConfig::full_name() =>
        {
            let tpath = at(ppath, "typed_config");
            let o = super::decode_any::<OpenTelemetryConfig>(cx, &tpath, any)?;
            opentelemetry(cx, &tpath, &o).map(|o| model::Provider::OpenTelemetry(Arc::new(o)))
        }
        Some(tracing_http::ConfigType::TypedConfig(any))
            if REFUSED_TRACERS.contains(&type_name(&any.type_url)) =>
        {
            cx.unsupported(
                at(ppath, "typed_config.@type"),
                format!(
                    "tracer {} (Strait implements envoy.tracers.zipkin and envoy.tracers.opentelemetry)",
                    any.type_url
                ),
            );
            None
        }
        Some(tracing_http::ConfigType::TypedConfig(any)) => {
            cx.unsupported(
                at(ppath, "typed_config.@type"),
                format!("tracer {}", any.type_url),
            );
            None
        }
        None => {
            cx.invalid(at(ppath, "typed_config"), "is required");
            None
        }
    }
}

fn custom_tag(cx: &mut Context, path: &str, t: &CustomTag) -> Option<model::CustomTag> {
    let CustomTag { tag, r#type } = t;
    if tag.is_empty() {
        cx.invalid(at(path, "tag"), "must not be empty");
    }
    let value = match r#type {
        Some(custom_tag::Type::Literal(custom_tag::Literal { value })) => {
            model::TagValue::Literal(value.clone())
        }
        Some(custom_tag::Type::Environment(custom_tag::Environment {
            name,
            default_value,
        })) => {
            model::TagValue::Literal(std::env::var(name).unwrap_or_else(|_| default_value.clone()))
        }
        Some(custom_tag::Type::RequestHeader(custom_tag::Header {
            name,
            default_value,
        })) => model::TagValue::RequestHeader {
            name: name.to_ascii_lowercase(),
            default: default_value.clone(),
        },
        Some(custom_tag::Type::Metadata(custom_tag::Metadata {
            kind,
            metadata_key,
            default_value,
        })) => {
            let mpath = at(path, "metadata");
            match kind.as_ref().and_then(|k| k.kind.as_ref()) {
                None | Some(metadata_kind::Kind::Request(_)) => {}
                Some(_) => cx.unsupported(at(&mpath, "kind"), "metadata kinds other than request"),
            }
            let Some(MetadataKey {
                key,
                path: segments,
            }) = metadata_key
            else {
                cx.invalid(at(&mpath, "metadata_key"), "is required");
                return None;
            };
            let mut path = Vec::with_capacity(segments.len());
            for s in segments {
                match &s.segment {
                    Some(path_segment::Segment::Key(k)) => path.push(k.clone()),
                    Some(path_segment::Segment::Index(_)) => {
                        cx.unsupported(at(&mpath, "metadata_key.path"), "list index path segments")
                    }
                    None => cx.invalid(at(&mpath, "metadata_key.path"), "empty segment"),
                }
            }
            model::TagValue::Metadata {
                filter: key.clone(),
                path,
                default: default_value.clone(),
            }
        }
        // A substitution-format value: not implemented.
        Some(custom_tag::Type::Value(_)) => {
            cx.unsupported(at(path, "value"), "custom tag value (substitution format)");
            return None;
        }
        None => {
            cx.invalid(at(path, "type"), "is required");
            return None;
        }
    };
    Some(model::CustomTag {
        tag: tag.clone(),
        value,
    })
}

/// `ZipkinConfig`: B3 headers and Zipkin v2 JSON over HTTP.
fn zipkin(
    cx: &mut Context,
    path: &str,
    z: &ZipkinConfig,
    check_cluster: bool,
) -> Option<model::Zipkin> {
    #[allow(deprecated)]
    let ZipkinConfig {
        collector_cluster,
        collector_endpoint,
        trace_id_128bit,
        shared_span_context,
        collector_endpoint_version,
        collector_hostname,
        split_spans_for_request,
        trace_context_option,
        collector_service,
        timestamp_trace_ids,
    } = z;
    // The HttpService form (its own URI, headers and timeout) and
    // timestamped trace ids are not implemented.
    reject_set!(cx, path; collector_service);
    if *timestamp_trace_ids {
        cx.unsupported(at(path, "timestamp_trace_ids"), "timestamp_trace_ids: true");
    }
    // One span per request, shared by downstream and upstream.
    if *split_spans_for_request {
        cx.unsupported(
            at(path, "split_spans_for_request"),
            "split_spans_for_request: true",
        );
    }
    if *trace_context_option != TraceContextOption::UseB3 as i32 {
        cx.unsupported(
            at(path, "trace_context_option"),
            "trace_context_option other than USE_B3",
        );
    }
    match CollectorEndpointVersion::try_from(*collector_endpoint_version) {
        Ok(CollectorEndpointVersion::HttpJson) => {}
        _ => cx.unsupported(
            at(path, "collector_endpoint_version"),
            "collector_endpoint_version other than HTTP_JSON",
        ),
    }
    if collector_cluster.is_empty() {
        cx.invalid(at(path, "collector_cluster"), "is required");
        return None;
    }
    if collector_endpoint.is_empty() {
        cx.invalid(at(path, "collector_endpoint"), "is required");
        return None;
    }
    if check_cluster {
        cx.require_cluster(at(path, "collector_cluster"), collector_cluster);
    }
    Some(model::Zipkin {
        cluster: collector_cluster.clone(),
        endpoint: collector_endpoint.clone(),
        hostname: if collector_hostname.is_empty() {
            collector_cluster.clone()
        } else {
            collector_hostname.clone()
        },
        trace_id_128bit: *trace_id_128bit,
        shared_span_context: shared_span_context.as_ref().is_none_or(|b| b.value),
    })
}

/// Envoy's service name when `service_name` is empty.
const DEFAULT_SERVICE_NAME: &str = "unknown_service:envoy";

/// Envoy's `max_cache_size` default.
const DEFAULT_MAX_CACHE_SIZE: u32 = 1024;

/// Resource detectors Envoy 1.40 knows; none is implemented (each adds
/// resource attributes a collector would group spans by).
const RESOURCE_DETECTORS: [&str; 3] = [
    "envoy.extensions.tracers.opentelemetry.resource_detectors.v3.EnvironmentResourceDetectorConfig",
    "envoy.extensions.tracers.opentelemetry.resource_detectors.v3.DynatraceResourceDetectorConfig",
    "envoy.extensions.tracers.opentelemetry.resource_detectors.v3.StaticConfigResourceDetectorConfig",
];

/// Samplers Envoy 1.40 knows; none is implemented (each replaces the
/// connection manager's decision for the span).
const SAMPLERS: [&str; 5] = [
    "envoy.extensions.tracers.opentelemetry.samplers.v3.AlwaysOnSamplerConfig",
    "envoy.extensions.tracers.opentelemetry.samplers.v3.ParentBasedSamplerConfig",
    "envoy.extensions.tracers.opentelemetry.samplers.v3.TraceIdRatioBasedSamplerConfig",
    "envoy.extensions.tracers.opentelemetry.samplers.v3.CelSamplerConfig",
    "envoy.extensions.tracers.opentelemetry.samplers.v3.DynatraceSamplerConfig",
];

/// `OpenTelemetryConfig`: W3C trace context and OTLP spans over gRPC.
fn opentelemetry(
    cx: &mut Context,
    path: &str,
    o: &OpenTelemetryConfig,
) -> Option<model::OpenTelemetry> {
    let OpenTelemetryConfig {
        grpc_service,
        http_service,
        exporter,
        service_name,
        resource_detectors,
        sampler,
        max_cache_size,
        set_telemetry_sdk_resource_attributes,
        set_service_name_resource_attribute,
        set_instrumentation_scope,
    } = o;
    let before = cx.problems.len();
    // OTLP/HTTP and custom exporters are not implemented: spans would not
    // reach the collector.
    reject_set!(cx, path; http_service, exporter);
    for (i, d) in resource_detectors.iter().enumerate() {
        let dpath = item(path, "resource_detectors", i);
        let url = d
            .typed_config
            .as_ref()
            .map_or("", |a| type_name(&a.type_url));
        if RESOURCE_DETECTORS.contains(&url) {
            cx.unsupported(
                at(&dpath, "typed_config.@type"),
                format!("resource detector {url}"),
            );
        } else {
            cx.unsupported(
                at(&dpath, "typed_config.@type"),
                format!("unknown resource detector {url:?}"),
            );
        }
    }
    if let Some(s) = sampler {
        let url = s
            .typed_config
            .as_ref()
            .map_or("", |a| type_name(&a.type_url));
        let spath = at(&at(path, "sampler"), "typed_config.@type");
        if SAMPLERS.contains(&url) {
            cx.unsupported(spath, format!("sampler {url}"));
        } else {
            cx.unsupported(spath, format!("unknown sampler {url:?}"));
        }
    }
    // Envoy accepts a tracer without an exporter: it propagates context
    // and reports nothing. Not implemented (every tracer here has its
    // collector); refused rather than half done.
    let Some(service) = grpc_service else {
        if http_service.is_none() {
            cx.unsupported(
                at(path, "grpc_service"),
                "an OpenTelemetry tracer without grpc_service (context only, no export)",
            );
        }
        return None;
    };
    let target = super::remote_log::grpc_target(cx, service, &at(path, "grpc_service"));
    if cx.problems.len() != before {
        return None;
    }
    let (cluster, authority, timeout, initial_metadata) = target?;
    let flag = |b: &Option<BoolValue>| b.as_ref().is_none_or(|b| b.value);
    Some(model::OpenTelemetry {
        channel: strait_model::access_log::RemoteChannel {
            cluster,
            authority,
            timeout,
            initial_metadata,
            log_name: String::new(),
            flush_interval: std::time::Duration::from_secs(5),
            buffer_bytes: 0,
            stat_prefix: String::new(),
        },
        service_name: if service_name.is_empty() {
            DEFAULT_SERVICE_NAME.to_owned()
        } else {
            service_name.clone()
        },
        service_name_attribute: flag(set_service_name_resource_attribute),
        sdk_attributes: flag(set_telemetry_sdk_resource_attributes),
        scope: flag(set_instrumentation_scope),
        max_cache_size: max_cache_size
            .as_ref()
            .map_or(DEFAULT_MAX_CACHE_SIZE, |v| v.value)
            .max(1),
    })
}

/// `request_id_extension`: only the UUID extension, which is what Strait
/// generates; its options steer how the trace decision is recorded.
fn request_id(cx: &mut Context, path: &str, ext: &RequestIdExtension) -> model::RequestIdSettings {
    let RequestIdExtension { typed_config } = ext;
    let tpath = at(path, "typed_config");
    match typed_config {
        Some(any) if type_name(&any.type_url) == UuidRequestIdConfig::full_name() => {
            let Some(UuidRequestIdConfig {
                pack_trace_reason,
                use_request_id_for_trace_sampling,
            }) = super::decode_any(cx, &tpath, any)
            else {
                return model::RequestIdSettings::default();
            };
            model::RequestIdSettings {
                pack_trace_reason: pack_trace_reason.is_none_or(|b| b.value),
                use_request_id_for_trace_sampling: use_request_id_for_trace_sampling
                    .is_none_or(|b| b.value),
            }
        }
        Some(any) => {
            cx.unsupported(
                at(&tpath, "@type"),
                format!("request id extension {}", any.type_url),
            );
            model::RequestIdSettings::default()
        }
        None => model::RequestIdSettings::default(),
    }
}

/// `request_id_extension` on a manager without `tracing`: its options
/// only concern tracing; decoding still catches a broken config.
pub(super) fn request_id_alone(cx: &mut Context, path: &str, ext: &RequestIdExtension) {
    let _ = request_id(cx, path, ext);
}
