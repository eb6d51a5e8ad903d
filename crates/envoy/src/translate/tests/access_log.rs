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
