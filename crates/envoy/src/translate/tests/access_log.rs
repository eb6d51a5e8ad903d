//! Access logs translate: sinks, formats (Envoy's default, the deprecated
//! shortcuts), filters, on every place `access_log` may appear.

use serde_json::json;

use super::{HCM, TCP, edited, load_ok};
use crate::model::{
    NetworkFilter,
    access_log::{
        AddressOf, CompareOp, Comparison, FormatCommand, FormatKind, FormatPart, JsonFormatValue,
        LogFilter, LogSink, RuntimeSample,
    },
};

fn file(path: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": path,
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"name": "envoy.access_loggers.file", "typed_config": c})
}

#[test]
fn loggers_formats_and_filters_translate() {
    let stdout = json!({"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"json_format": {"code": "%RESPONSE_CODE%", "lit": 2, "up": "%UPSTREAM_HOST%"},
                       "omit_empty_values": true}}});
    let mut filtered = file(
        "/tmp/f.log",
        json!({"format": "%START_TIME(%s)% %RESPONSE_FLAGS_LONG%"}),
    );
    filtered["filter"] = json!({"and_filter": {"filters": [
        {"status_code_filter": {"comparison": {"op": "GE", "value": {"default_value": 500, "runtime_key": "k"}}}},
        {"runtime_filter": {"runtime_key": "r", "percent_sampled": {"numerator": 5, "denominator": "TEN_THOUSAND"}}},
        {"traceable_filter": {}}]}});
    let c = load_ok(&edited(&[
        (
            &format!("{HCM}/access_log"),
            json!([file("/tmp/a.log", json!({})), stdout, filtered]),
        ),
        (
            &format!("{TCP}/access_log"),
            json!([file(
                "/dev/stderr",
                json!({"typed_json_format": {"b": "%BYTES_SENT%"}})
            )]),
        ),
        (
            "/static_resources/listeners/0/access_log",
            json!([file(
                "/tmp/l.log",
                json!({"log_format": {"text_format_source": {"inline_string": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}})
            )]),
        ),
    ]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("http chain");
    };
    let logs = &hcm.access_logs;
    assert_eq!(logs.len(), 3);
    // No format: Envoy's default, ending in a newline.
    assert_eq!(logs[0].sink, LogSink::File("/tmp/a.log".into()));
    let FormatKind::Text(parts) = &logs[0].format.kind else {
        panic!("default is text");
    };
    assert_eq!(parts.first(), Some(&FormatPart::Text("[".into())));
    assert_eq!(
        parts.get(1),
        Some(&FormatPart::Command(FormatCommand::StartTime(None)))
    );
    assert_eq!(parts.last(), Some(&FormatPart::Text("\"\n".into())));
    assert_eq!(logs[1].sink, LogSink::Stdout);
    assert!(logs[1].format.omit_empty_values);
    let FormatKind::Json(fields) = &logs[1].format.kind else {
        panic!("json");
    };
    assert_eq!(
        fields,
        &vec![
            (
                "code".into(),
                JsonFormatValue::Format(vec![FormatPart::Command(FormatCommand::ResponseCode)])
            ),
            ("lit".into(), JsonFormatValue::Literal(json!(2))),
            (
                "up".into(),
                JsonFormatValue::Format(vec![FormatPart::Command(FormatCommand::Address {
                    of: AddressOf::UpstreamRemote,
                    without_port: false
                })])
            ),
        ]
    );
    assert_eq!(
        logs[2].filter,
        Some(LogFilter::And(vec![
            LogFilter::Status(Comparison {
                op: CompareOp::Ge,
                value: 500
            }),
            LogFilter::Runtime(RuntimeSample {
                numerator: 5,
                denominator: 10_000,
                independent_randomness: false
            }),
            LogFilter::NeverTraceable,
        ]))
    );
    let FormatKind::Text(parts) = &logs[2].format.kind else {
        panic!("format is text");
    };
    assert_eq!(
        parts,
        &vec![
            FormatPart::Command(FormatCommand::StartTime(Some("%s".into()))),
            FormatPart::Text(" ".into()),
            FormatPart::Command(FormatCommand::ResponseFlagsLong),
        ]
    );
    let NetworkFilter::Tcp(tcp) = &c.listeners[1].filter_chains[0].terminal else {
        panic!("tcp chain");
    };
    assert_eq!(tcp.access_logs[0].sink, LogSink::Stderr);
    assert!(matches!(
        tcp.access_logs[0].format.kind,
        FormatKind::Json(_)
    ));
    assert_eq!(
        c.listeners[0].access_logs[0].sink,
        LogSink::File("/tmp/l.log".into())
    );
}

/// An OpenTelemetry logger to the `otel` cluster, with `extra` merged into
/// its config and `common` into its `common_config`.
fn otel(extra: serde_json::Value, common: serde_json::Value) -> serde_json::Value {
    let mut cc = json!({
        "log_name": "l",
        "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}, "timeout": "2s"},
    });
    if let (Some(c), Some(e)) = (cc.as_object_mut(), common.as_object()) {
        c.extend(e.clone());
    }
    let mut c = json!({
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
        "common_config": cc,
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"name": "envoy.access_loggers.open_telemetry", "typed_config": c})
}

fn otel_cluster() -> serde_json::Value {
    json!({"name": "otel", "type": "STATIC",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": "otel", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 4317}}}}]}]}})
}

fn otel_errors(log: serde_json::Value) -> String {
    match crate::load(&edited(&[
        (&format!("{HCM}/access_log"), json!([log])),
        ("/static_resources/clusters/1", otel_cluster()),
    ])) {
        Ok(_) => panic!("accepted"),
        Err(e) => super::render(&e),
    }
}

#[test]
fn open_telemetry_logger_translates() {
    use crate::model::access_log::{AnyValue, OtelFormat};
    let log = otel(
        json!({
            "stat_prefix": "p",
            "disable_builtin_labels": true,
            "resource_attributes": {"values": [
                {"key": "n", "value": {"int_value": "3"}},
                {"key": "s", "value": {"string_value": "x"}}]},
            "body": {"string_value": "%RESPONSE_CODE%"},
            "attributes": {"values": [
                {"key": "kv", "value": {"kvlist_value": {"values": [
                    {"key": "a", "value": {"array_value": {"values": [{"string_value": "lit"}]}}}]}}}]},
        }),
        json!({"buffer_flush_interval": "0.25s", "buffer_size_bytes": 100,
               "grpc_service": {"envoy_grpc": {"cluster_name": "otel", "authority": "col"},
                                "initial_metadata": [{"key": "x-k", "value": "v"}]}}),
    );
    let c = load_ok(&edited(&[
        (&format!("{HCM}/access_log"), json!([log])),
        ("/static_resources/clusters/1", otel_cluster()),
    ]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("http chain");
    };
    let LogSink::OpenTelemetry(o) = &hcm.access_logs[0].sink else {
        panic!("otel sink: {:?}", hcm.access_logs[0].sink);
    };
    assert_eq!(o.channel.cluster, "otel");
    assert_eq!(o.channel.authority, "col");
    assert_eq!(o.channel.timeout, None);
    assert_eq!(o.channel.log_name, "l");
    assert_eq!(o.channel.stat_prefix, "p");
    assert_eq!(o.channel.buffer_bytes, 100);
    assert_eq!(
        o.channel.flush_interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(
        o.channel.initial_metadata,
        vec![("x-k".to_owned(), "v".to_owned())]
    );
    assert!(!o.builtin_labels);
    assert_eq!(
        o.resource_attributes,
        vec![
            ("n".to_owned(), AnyValue::Int(3)),
            ("s".to_owned(), AnyValue::String("x".into()))
        ]
    );
    assert_eq!(
        o.body,
        Some(OtelFormat::String(vec![FormatPart::Command(
            FormatCommand::ResponseCode
        )]))
    );
    assert_eq!(
        o.attributes,
        vec![(
            "kv".to_owned(),
            OtelFormat::KvList(vec![(
                "a".to_owned(),
                OtelFormat::Array(vec![OtelFormat::String(vec![FormatPart::Text(
                    "lit".into()
                )])])
            )])
        )]
    );
    // A record's headers are gathered for the formats that read them.
    assert!(!hcm.access_logs[0].reads_request_headers());
}

/// What Istio's `envoyOtelAls` provider renders (`pilot/pkg/model/
/// telemetry_logging.go`): `common_config` with its peer-metadata
/// `filter_state_objects_to_log` (which Envoy 1.40's OpenTelemetry logger
/// does not read), `disable_builtin_labels`, its default text format as
/// the body (with `%UPSTREAM_CLUSTER_RAW%`), string attributes.
#[test]
fn istio_envoy_otel_als_translates() {
    let istio_format = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";
    let log = json!({"name": "envoy.access_loggers.open_telemetry", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
        "common_config": {
            "log_name": "otel_envoy_accesslog",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otel", "authority": "otel-collector.observability.svc.cluster.local"}},
            "transport_api_version": "V3",
            "filter_state_objects_to_log": ["upstream_peer", "downstream_peer", "wasm.upstream_peer",
                "wasm.upstream_peer_id", "wasm.downstream_peer", "wasm.downstream_peer_id"]},
        "disable_builtin_labels": true,
        "body": {"string_value": istio_format},
        "attributes": {"values": [{"key": "pod", "value": {"string_value": "%ENVIRONMENT(POD_NAME)%"}}]},
    }});
    // `%ENVIRONMENT(...)%` is not among Strait's commands: refused by name.
    let e = otel_errors(log.clone());
    assert!(e.contains("ENVIRONMENT"), "{e}");
    let mut log = log;
    log["typed_config"]["attributes"] = json!({"values": [
        {"key": "code", "value": {"string_value": "%RESPONSE_CODE%"}}]});
    let c = load_ok(&edited(&[
        (&format!("{HCM}/access_log"), json!([log])),
        ("/static_resources/clusters/1", otel_cluster()),
    ]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("http chain");
    };
    let LogSink::OpenTelemetry(o) = &hcm.access_logs[0].sink else {
        panic!("otel sink");
    };
    assert!(!o.builtin_labels);
    assert_eq!(o.channel.log_name, "otel_envoy_accesslog");
    assert!(hcm.access_logs[0].reads_request_headers());
}

/// Envoy 1.40's top-level `grpc_service`, `log_name` and buffer settings
/// win over `common_config`'s; `common_config` may be left out.
#[test]
fn open_telemetry_top_level_fields_win() {
    let top = json!({"log_name": "top", "buffer_size_bytes": 7, "buffer_flush_interval": "2s",
        "grpc_service": {"envoy_grpc": {"cluster_name": "otel", "authority": "top"}}});
    for (log, authority) in [
        (
            otel(top.clone(), json!({"transport_api_version": "AUTO"})),
            "top",
        ),
        (
            {
                let mut l = otel(top, json!({}));
                if let Some(c) = l["typed_config"].as_object_mut() {
                    c.remove("common_config");
                }
                l
            },
            "top",
        ),
    ] {
        let c = load_ok(&edited(&[
            (&format!("{HCM}/access_log"), json!([log])),
            ("/static_resources/clusters/1", otel_cluster()),
        ]));
        let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
            panic!("http chain");
        };
        let LogSink::OpenTelemetry(o) = &hcm.access_logs[0].sink else {
            panic!("otel sink");
        };
        assert_eq!(o.channel.log_name, "top");
        assert_eq!(o.channel.authority, authority);
        assert_eq!(o.channel.buffer_bytes, 7);
        assert_eq!(o.channel.flush_interval, std::time::Duration::from_secs(2));
        assert!(o.builtin_labels);
    }
}

#[test]
fn open_telemetry_fields_not_implemented_are_refused_by_name() {
    let ext = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
    for (log, field) in [
        (
            otel(
                json!({"http_service": {"http_uri": {"uri": "http://x/v1/logs", "cluster": "otel", "timeout": "1s"}}}),
                json!({}),
            ),
            "http_service",
        ),
        (
            otel(json!({"filter_state_objects_to_log": ["k"]}), json!({})),
            "typed_config.filter_state_objects_to_log",
        ),
        (
            otel(
                json!({"custom_tags": [{"tag": "t", "literal": {"value": "v"}}]}),
                json!({}),
            ),
            "custom_tags",
        ),
        (
            otel(
                json!({}),
                json!({"grpc_stream_retry_policy": {"num_retries": 1}}),
            ),
            "grpc_stream_retry_policy",
        ),
        (
            otel(
                json!({"resource_detectors": [{"name": "d", "typed_config": {"@type": ext}}]}),
                json!({}),
            ),
            "resource_detectors",
        ),
        (
            otel(
                json!({"formatters": [{"name": "f", "typed_config": {"@type": ext}}]}),
                json!({}),
            ),
            "formatters",
        ),
        (
            otel(
                json!({"grpc_service": {"envoy_grpc": {"cluster_name": "otel", "retry_policy": {"num_retries": 1}}}}),
                json!({}),
            ),
            "typed_config.grpc_service.envoy_grpc.retry_policy",
        ),
        (
            otel(
                json!({}),
                json!({"grpc_service": {"google_grpc": {"target_uri": "x", "stat_prefix": "s"}}}),
            ),
            "google_grpc",
        ),
    ] {
        let e = otel_errors(log);
        assert!(e.contains(field), "{field} not named in: {e}");
        assert!(
            e.contains("unsupported") || e.contains("not supported"),
            "{e}"
        );
    }
    // Envoy refuses these itself: a body that is not a string, list or
    // array; the V2 transport; a `common_config` without a log name.
    let e = otel_errors(otel(json!({"body": {"int_value": "1"}}), json!({})));
    assert!(e.contains("typed_config.body"), "{e}");
    let e = otel_errors(otel(json!({}), json!({"transport_api_version": "V2"})));
    assert!(e.contains("transport_api_version"), "{e}");
    let e = otel_errors(otel(json!({}), json!({"log_name": ""})));
    assert!(e.contains("common_config.log_name"), "{e}");
}

/// A gRPC access log service logger (`http_grpc` or `tcp_grpc`) to the
/// `otel` cluster, `common` merged into its `common_config`, `extra` into
/// its config.
fn als(ty: &str, common: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let mut cc = json!({
        "log_name": "l",
        "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}},
    });
    if let (Some(c), Some(e)) = (cc.as_object_mut(), common.as_object()) {
        c.extend(e.clone());
    }
    let mut c = json!({
        "@type": format!("type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.{ty}"),
        "common_config": cc,
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"name": "als", "typed_config": c})
}

#[test]
fn grpc_access_log_service_loggers_translate() {
    use crate::model::access_log::GrpcLogKind;
    let http = als(
        "HttpGrpcAccessLogConfig",
        json!({"buffer_flush_interval": "0.25s", "buffer_size_bytes": 100,
               "filter_state_objects_to_log": []}),
        json!({"additional_request_headers_to_log": ["X-A"],
               "additional_response_headers_to_log": ["x-b"],
               "additional_response_trailers_to_log": ["grpc-status"]}),
    );
    let c = load_ok(&edited(&[
        (&format!("{HCM}/access_log"), json!([http])),
        (
            &format!("{TCP}/access_log"),
            json!([als("TcpGrpcAccessLogConfig", json!({}), json!({}))]),
        ),
        ("/static_resources/clusters/1", otel_cluster()),
    ]));
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("not an HCM")
    };
    let LogSink::GrpcService(g) = &hcm.access_logs[0].sink else {
        panic!("{:?}", hcm.access_logs[0].sink)
    };
    assert_eq!(g.kind, GrpcLogKind::Http);
    assert_eq!(
        (g.channel.cluster.as_str(), g.channel.log_name.as_str()),
        ("otel", "l")
    );
    assert_eq!(
        (g.channel.flush_interval, g.channel.buffer_bytes),
        (std::time::Duration::from_millis(250), 100)
    );
    assert_eq!(g.request_headers, ["x-a"]);
    assert_eq!(g.response_headers, ["x-b"]);
    assert_eq!(g.response_trailers, ["grpc-status"]);
    let NetworkFilter::Tcp(tcp) = &c.listeners[1].filter_chains[0].terminal else {
        panic!("not a TCP proxy")
    };
    let LogSink::GrpcService(t) = &tcp.access_logs[0].sink else {
        panic!("{:?}", tcp.access_logs[0].sink)
    };
    assert_eq!(t.kind, GrpcLogKind::Tcp);
    // Envoy's defaults.
    assert_eq!(
        (t.channel.flush_interval, t.channel.buffer_bytes),
        (std::time::Duration::from_secs(1), 16_384)
    );
}

#[test]
fn grpc_access_log_service_fields_not_implemented_are_refused_by_name() {
    for ty in ["HttpGrpcAccessLogConfig", "TcpGrpcAccessLogConfig"] {
        for (common, field) in [
            (
                json!({"filter_state_objects_to_log": ["k"]}),
                "common_config.filter_state_objects_to_log",
            ),
            (
                json!({"grpc_stream_retry_policy": {"num_retries": 1}}),
                "common_config.grpc_stream_retry_policy",
            ),
            (
                json!({"custom_tags": [{"tag": "t", "literal": {"value": "v"}}]}),
                "common_config.custom_tags",
            ),
            (
                json!({"grpc_service": {"google_grpc": {"target_uri": "x", "stat_prefix": "s"}}}),
                "grpc_service.google_grpc",
            ),
            (
                json!({"grpc_service": {"envoy_grpc": {"cluster_name": "otel"},
                    "retry_policy": {"num_retries": 1}}}),
                "grpc_service.retry_policy",
            ),
            // Envoy refuses these itself.
            (
                json!({"transport_api_version": "V2"}),
                "common_config.transport_api_version",
            ),
            (json!({"log_name": ""}), "common_config.log_name"),
            (
                json!({"grpc_service": {"envoy_grpc": {"cluster_name": "nope"}}}),
                "cluster_name",
            ),
        ] {
            let e = otel_errors(als(ty, common, json!({})));
            assert!(e.contains(field), "{ty} {field}: {e}");
        }
    }
    let mut no_common = als("TcpGrpcAccessLogConfig", json!({}), json!({}));
    no_common["typed_config"]
        .as_object_mut()
        .map(|c| c.remove("common_config"));
    let e = otel_errors(no_common);
    assert!(e.contains("typed_config.common_config"), "{e}");
}
