//! Telemetry settings Strait accepts without acting on them: HCM tracing
//! and the UUID request-id extension (access logs are `access_log`). None can change where a
//! request goes or what the client receives; each is judged field by field
//! so anything else still fails loudly.

use envoy_types::pb::envoy::{
    config::trace::v3::tracing::{Http as TracingProvider, http as tracing_http},
    extensions::{
        filters::network::http_connection_manager::v3::{
            RequestIdExtension, http_connection_manager::Tracing,
        },
        request_id::uuid::v3::UuidRequestIdConfig,
    },
};
use prost::Name;

use super::{Context, at, type_name};

/// Tracers whose spans would go to a collector: accepted, as spans are
/// telemetry. Envoy would also add the tracer's context headers (for
/// example `x-b3-*`) to upstream requests; Strait does not (documented in
/// `docs/CONFIG.md`).
const TRACERS: [&str; 5] = [
    "envoy.config.trace.v3.ZipkinConfig",
    "envoy.config.trace.v3.OpenTelemetryConfig",
    "envoy.config.trace.v3.DatadogConfig",
    "envoy.config.trace.v3.LightstepConfig",
    "envoy.config.trace.v3.SkyWalkingConfig",
];

/// The HCM's `tracing`: sampling percentages, tags and a provider among
/// [`TRACERS`]. Strait produces no spans.
pub(super) fn tracing(cx: &mut Context, path: &str, t: &Tracing) {
    let Tracing {
        // The rest only shape spans, which are not produced.
        client_sampling: _,
        random_sampling: _,
        overall_sampling: _,
        verbose: _,
        max_path_tag_length: _,
        custom_tags: _,
        spawn_upstream_span: _,
        operation: _,
        upstream_operation: _,
        // Turns off the context headers Strait does not add anyway.
        no_context_propagation: _,
        provider,
    } = t;
    if let Some(TracingProvider {
        name: _,
        config_type,
    }) = provider
    {
        let ppath = at(path, "provider");
        match config_type {
            Some(tracing_http::ConfigType::TypedConfig(any))
                if TRACERS.contains(&type_name(&any.type_url)) => {}
            Some(tracing_http::ConfigType::TypedConfig(any)) => cx.unsupported(
                at(&ppath, "typed_config.@type"),
                format!("tracer {}", any.type_url),
            ),
            None => cx.invalid(at(&ppath, "typed_config"), "is required"),
        }
    }
}

/// `request_id_extension`: only the UUID extension, which is what Strait
/// generates anyway. Its two options only steer trace sampling bits.
pub(super) fn request_id(cx: &mut Context, path: &str, ext: &RequestIdExtension) {
    let RequestIdExtension { typed_config } = ext;
    let tpath = at(path, "typed_config");
    match typed_config {
        Some(any) if type_name(&any.type_url) == UuidRequestIdConfig::full_name() => {
            // `pack_trace_reason` and `use_request_id_for_trace_sampling`
            // concern tracing only; decoding still catches a broken config.
            let _: Option<UuidRequestIdConfig> = super::decode_any(cx, &tpath, any);
        }
        Some(any) => cx.unsupported(
            at(&tpath, "@type"),
            format!("request id extension {}", any.type_url),
        ),
        None => {}
    }
}
