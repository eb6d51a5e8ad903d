//! The HCM's `tracing`: Zipkin and the decision settings translate; what
//! Strait does not implement is refused by name.

use serde_json::{Value, json};

use super::{HCM, HCM_PATH, edited, load_ok, render};
use crate::{
    load,
    model::{
        NetworkFilter,
        tracing::{CustomTag, OpenTelemetry, Provider, TagValue, Zipkin},
    },
};

fn zipkin(extra: Value) -> Value {
    let mut c = json!({
        "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
        "collector_cluster": "backend",
        "collector_endpoint": "/api/v2/spans",
        "collector_endpoint_version": "HTTP_JSON",
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"name": "envoy.tracers.zipkin", "typed_config": c})
}

#[test]
fn zipkin_and_sampling_translate() {
    let c = load_ok(&edited(&[
        (
            &format!("{HCM}/tracing"),
            json!({
                "random_sampling": {"value": 1.5},
                "overall_sampling": {"value": 50},
                "max_path_tag_length": 64,
                "custom_tags": [
                    {"tag": "a", "literal": {"value": "v"}},
                    {"tag": "b", "request_header": {"name": "X-H", "default_value": "d"}},
                ],
                "provider": zipkin(json!({"trace_id_128bit": true, "shared_span_context": false})),
            }),
        ),
        (
            &format!("{HCM}/request_id_extension"),
            json!({"typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
                "pack_trace_reason": false}}),
        ),
    ]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("an HTTP connection manager");
    };
    let t = hcm.tracing.as_deref().expect("tracing");
    assert_eq!(
        (
            t.random_sampling,
            t.client_sampling,
            t.overall_sampling,
            t.max_path_tag_length
        ),
        (150, 10_000, 5_000, 64)
    );
    assert!(!t.request_id.pack_trace_reason && t.request_id.use_request_id_for_trace_sampling);
    assert_eq!(
        t.custom_tags,
        [
            CustomTag {
                tag: "a".into(),
                value: TagValue::Literal("v".into())
            },
            CustomTag {
                tag: "b".into(),
                value: TagValue::RequestHeader {
                    name: "x-h".into(),
                    default: "d".into()
                }
            },
        ]
    );
    assert_eq!(
        t.provider,
        Some(Provider::Zipkin(std::sync::Arc::new(Zipkin {
            cluster: "backend".into(),
            endpoint: "/api/v2/spans".into(),
            hostname: "backend".into(),
            trace_id_128bit: true,
            shared_span_context: false,
        })))
    );
}

#[test]
fn tracing_without_a_provider_decides_only() {
    // Istio's sidecars: a decision (the `x-request-id` nibble) and
    // metadata tags, with no tracer.
    let c = load_ok(&edited(&[(
        &format!("{HCM}/tracing"),
        json!({"client_sampling": {"value": 100}, "custom_tags": [
            {"tag": "m", "metadata": {"kind": {"request": {}},
             "metadata_key": {"key": "envoy.filters.http.rbac", "path": [{"key": "k"}]}}}]}),
    )]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("an HTTP connection manager");
    };
    let t = hcm.tracing.as_deref().expect("tracing");
    assert!(t.provider.is_none());
    assert_eq!(t.custom_tags.len(), 1);
}

/// Each config must be refused with an error at `path` naming `word`.
fn refused(tracing: Value, path: &str, word: &str) {
    let text = edited(&[(&format!("{HCM}/tracing"), tracing)]);
    let errors = load(&text).expect_err("refused");
    let want = format!("{HCM_PATH}.tracing.{path}");
    assert!(
        errors
            .iter()
            .any(|e| e.path() == want && e.to_string().contains(word)),
        "want {want} ({word}): {}",
        render(&errors)
    );
}

#[test]
fn what_strait_does_not_do_is_refused_by_name() {
    for tracer in ["DatadogConfig", "LightstepConfig", "SkyWalkingConfig"] {
        refused(
            json!({"provider": {"name": "t", "typed_config": {
                "@type": format!("type.googleapis.com/envoy.config.trace.v3.{tracer}")}}}),
            "provider.typed_config.@type",
            tracer,
        );
    }
    let z = "provider.typed_config";
    refused(
        json!({"provider": zipkin(json!({"collector_endpoint_version": "HTTP_PROTO"}))}),
        &format!("{z}.collector_endpoint_version"),
        "HTTP_JSON",
    );
    refused(
        json!({"provider": zipkin(json!({"split_spans_for_request": true}))}),
        &format!("{z}.split_spans_for_request"),
        "split_spans_for_request",
    );
    refused(
        json!({"provider": zipkin(json!({"trace_context_option": "USE_B3_WITH_W3C_PROPAGATION"}))}),
        &format!("{z}.trace_context_option"),
        "USE_B3",
    );
    refused(
        json!({"provider": zipkin(json!({"collector_service": {"http_uri": {
            "uri": "http://z/api", "cluster": "backend", "timeout": "1s"}}}))}),
        &format!("{z}.collector_service"),
        "collector_service",
    );
    refused(
        json!({"spawn_upstream_span": true, "provider": zipkin(json!({}))}),
        "spawn_upstream_span",
        "spawn_upstream_span",
    );
    refused(
        json!({"custom_tags": [{"tag": "m", "metadata": {"kind": {"route": {}},
               "metadata_key": {"key": "f", "path": [{"key": "k"}]}}}],
               "provider": zipkin(json!({}))}),
        "custom_tags[0].metadata.kind",
        "metadata kinds",
    );
    refused(
        json!({"provider": zipkin(json!({"collector_cluster": "nowhere"}))}),
        &format!("{z}.collector_cluster"),
        "nowhere",
    );
}

fn otel(extra: Value) -> Value {
    let mut c = json!({
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        "grpc_service": {"envoy_grpc": {"cluster_name": "otel", "authority": "col"}, "timeout": "2s",
                         "initial_metadata": [{"key": "k", "value": "v"}]},
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"name": "envoy.tracers.opentelemetry", "typed_config": c})
}

fn otel_cluster() -> Value {
    json!({"name": "otel", "type": "STATIC",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "otel", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 4317}}}}]}]}})
}

fn with_otel(tracing: Value) -> String {
    edited(&[
        (&format!("{HCM}/tracing"), tracing),
        ("/static_resources/clusters/1", otel_cluster()),
    ])
}

#[test]
fn opentelemetry_translates() {
    let c = load_ok(&with_otel(json!({"provider": otel(json!({
        "service_name": "svc",
        "max_cache_size": 10,
        "set_telemetry_sdk_resource_attributes": false,
    }))})));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("an HTTP connection manager");
    };
    let t = hcm.tracing.as_deref().expect("tracing");
    let Some(Provider::OpenTelemetry(o)) = &t.provider else {
        panic!("an OpenTelemetry tracer: {:?}", t.provider);
    };
    let OpenTelemetry {
        channel,
        service_name,
        service_name_attribute,
        sdk_attributes,
        scope,
        max_cache_size,
    } = &**o;
    assert_eq!(
        (
            channel.cluster.as_str(),
            channel.authority.as_str(),
            channel.timeout
        ),
        ("otel", "col", Some(std::time::Duration::from_secs(2)))
    );
    assert_eq!(channel.initial_metadata, [("k".to_owned(), "v".to_owned())]);
    assert_eq!(
        (
            service_name.as_str(),
            *service_name_attribute,
            *sdk_attributes,
            *scope,
            *max_cache_size
        ),
        ("svc", true, false, true, 10)
    );
    // Envoy's default service name.
    let c = load_ok(&with_otel(json!({"provider": otel(json!({}))})));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("an HTTP connection manager");
    };
    let Some(Provider::OpenTelemetry(o)) = &hcm.tracing.as_deref().expect("tracing").provider
    else {
        panic!("an OpenTelemetry tracer");
    };
    assert_eq!(
        (o.service_name.as_str(), o.max_cache_size),
        ("unknown_service:envoy", 1024)
    );
}

/// Like [`refused`], with the OTLP collector cluster defined.
fn otel_refused(tracing: Value, path: &str, word: &str) {
    let errors = load(&with_otel(tracing)).expect_err("refused");
    let want = format!("{HCM_PATH}.tracing.{path}");
    assert!(
        errors
            .iter()
            .any(|e| e.path() == want && e.to_string().contains(word)),
        "want {want} ({word}): {}",
        render(&errors)
    );
}

#[test]
fn what_the_opentelemetry_tracer_does_not_do_is_refused_by_name() {
    let o = "provider.typed_config";
    otel_refused(
        json!({"provider": otel(json!({"grpc_service": {"google_grpc": {"target_uri": "x:1", "stat_prefix": "s"}}}))}),
        &format!("{o}.grpc_service.google_grpc"),
        "google_grpc",
    );
    otel_refused(
        json!({"provider": otel(json!({"http_service": {"http_uri": {
            "uri": "http://c/v1/traces", "cluster": "otel", "timeout": "1s"}}}))}),
        &format!("{o}.http_service"),
        "http_service",
    );
    otel_refused(
        json!({"provider": otel(json!({"exporter": {"name": "x", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"}}}))}),
        &format!("{o}.exporter"),
        "exporter",
    );
    for (detector, word) in [
        (
            "EnvironmentResourceDetectorConfig",
            "EnvironmentResourceDetectorConfig",
        ),
        (
            "DynatraceResourceDetectorConfig",
            "DynatraceResourceDetectorConfig",
        ),
    ] {
        otel_refused(
            json!({"provider": otel(json!({"resource_detectors": [{"name": "d", "typed_config": {
                "@type": format!("type.googleapis.com/envoy.extensions.tracers.opentelemetry.resource_detectors.v3.{detector}")}}]}))}),
            &format!("{o}.resource_detectors[0].typed_config.@type"),
            word,
        );
    }
    otel_refused(
        json!({"provider": otel(json!({"resource_detectors": [{"name": "d", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"}}]}))}),
        &format!("{o}.resource_detectors[0].typed_config.@type"),
        "unknown resource detector",
    );
    for sampler in ["AlwaysOnSamplerConfig", "TraceIdRatioBasedSamplerConfig"] {
        otel_refused(
            json!({"provider": otel(json!({"sampler": {"name": "s", "typed_config": {
                "@type": format!("type.googleapis.com/envoy.extensions.tracers.opentelemetry.samplers.v3.{sampler}")}}}))}),
            &format!("{o}.sampler.typed_config.@type"),
            sampler,
        );
    }
    otel_refused(
        json!({"provider": otel(json!({"sampler": {"name": "s", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"}}}))}),
        &format!("{o}.sampler.typed_config.@type"),
        "unknown sampler",
    );
    otel_refused(
        json!({"provider": otel(json!({"grpc_service": {"envoy_grpc": {"cluster_name": "nowhere"}}}))}),
        &format!("{o}.grpc_service.envoy_grpc.cluster_name"),
        "nowhere",
    );
    otel_refused(
        json!({"provider": {"name": "o", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "service_name": "s"}}}),
        &format!("{o}.grpc_service"),
        "without grpc_service",
    );
    otel_refused(
        json!({"spawn_upstream_span": true, "provider": otel(json!({}))}),
        "spawn_upstream_span",
        "spawn_upstream_span",
    );
}
