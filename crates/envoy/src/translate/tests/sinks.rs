//! `stats_sinks`: statsd and the metrics service become model entries with
//! Envoy's defaults; everything else is refused at its field.

use std::{num::NonZeroU32, time::Duration};

use serde_json::{Value, json};

use super::{edited, load_ok, render};
use crate::{
    load,
    model::stats::{MetricsServiceSink, StatsSink, StatsSinks, StatsdSink},
};

fn statsd(address: Value) -> Value {
    json!({"name": "envoy.stat_sinks.statsd", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
        "address": address}})
}

fn udp(ip: &str, port: u16) -> Value {
    json!({"socket_address": {"address": ip, "port_value": port}})
}

fn metrics_service(cluster: &str, extra: Value) -> Value {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
        "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": cluster}}});
    if let (Some(c), Value::Object(extra)) = (config.as_object_mut(), extra) {
        c.extend(extra);
    }
    json!({"name": "envoy.stat_sinks.metrics_service", "typed_config": config})
}

#[test]
fn statsd_and_metrics_service_become_sinks() {
    let c = load_ok(&edited(&[(
        "/stats_sinks",
        json!([
            statsd(udp("127.0.0.1", 8125)),
            metrics_service("backend", json!({}))
        ]),
    )]));
    assert_eq!(
        c.stats_sinks,
        Some(StatsSinks {
            flush_interval: Duration::from_secs(5),
            sinks: vec![
                StatsSink::Statsd(StatsdSink {
                    address: "127.0.0.1:8125".parse().expect("addr"),
                    prefix: "envoy".into(),
                }),
                StatsSink::MetricsService(MetricsServiceSink {
                    cluster: "backend".into(),
                    counters_as_deltas: false,
                    batch_size: None,
                }),
            ],
        })
    );
}

#[test]
fn sink_options_are_kept() {
    let mut s = statsd(
        json!({"socket_address": {"address": "::1", "port_value": 9125, "protocol": "UDP"}}),
    );
    s["typed_config"]["prefix"] = json!("mesh");
    let c = load_ok(&edited(&[
        ("/stats_flush_interval", json!("0.2s")),
        (
            "/stats_sinks",
            json!([
                s,
                metrics_service(
                    "backend",
                    json!({
                "report_counters_as_deltas": true, "batch_size": 10})
                )
            ]),
        ),
    ]));
    let sinks = c.stats_sinks.expect("sinks");
    assert_eq!(sinks.flush_interval, Duration::from_millis(200));
    assert_eq!(
        sinks.sinks,
        [
            StatsSink::Statsd(StatsdSink {
                address: "[::1]:9125".parse().expect("addr"),
                prefix: "mesh".into(),
            }),
            StatsSink::MetricsService(MetricsServiceSink {
                cluster: "backend".into(),
                counters_as_deltas: true,
                batch_size: NonZeroU32::new(10),
            }),
        ]
    );
}

#[test]
fn no_sinks_no_model_entry() {
    let c = load_ok(&edited(&[("/stats_flush_interval", json!("10s"))]));
    assert_eq!(c.stats_sinks, None);
}

#[test]
fn bad_sinks_name_the_field() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "unknown sink type",
            json!([{"name": "envoy.stat_sinks.hystrix", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.HystrixSink"}}]),
            "stats_sinks[0].typed_config",
            "envoy.stat_sinks.hystrix",
        ),
        (
            "sink without typed_config",
            json!([{"name": "envoy.stat_sinks.statsd"}]),
            "stats_sinks[0].typed_config",
            "needs a typed_config",
        ),
        (
            "statsd without an address",
            json!([{"name": "s", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink"}}]),
            "stats_sinks[0].typed_config.address",
            "required",
        ),
        (
            "statsd over tcp",
            json!([{"name": "s", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
                "tcp_cluster_name": "backend"}}]),
            "stats_sinks[0].typed_config.tcp_cluster_name",
            "tcp_cluster_name",
        ),
        (
            "statsd to a host name",
            json!([statsd(udp("statsd.local", 8125))]),
            "stats_sinks[0].typed_config.address.socket_address.address",
            "not an IP",
        ),
        (
            "statsd without a port",
            json!([statsd(json!({"socket_address": {"address": "127.0.0.1"}}))]),
            "stats_sinks[0].typed_config.address.socket_address.port_value",
            "port",
        ),
        (
            "metrics service to an unknown cluster",
            json!([metrics_service("nowhere", json!({}))]),
            "stats_sinks[0].typed_config.grpc_service.envoy_grpc.cluster_name",
            "unknown cluster 'nowhere'",
        ),
        (
            "metrics service without V3",
            json!([{"name": "m", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": "backend"}}}}]),
            "stats_sinks[0].typed_config.transport_api_version",
            "V3",
        ),
        (
            "metrics service with tags as labels",
            json!([metrics_service(
                "backend",
                json!({"emit_tags_as_labels": true})
            )]),
            "stats_sinks[0].typed_config.emit_tags_as_labels",
            "emit_tags_as_labels",
        ),
        (
            "metrics service with a histogram mode",
            json!([metrics_service(
                "backend",
                json!({"histogram_emit_mode": "HISTOGRAM"})
            )]),
            "stats_sinks[0].typed_config.histogram_emit_mode",
            "histogram_emit_mode",
        ),
        (
            "metrics service over google_grpc",
            json!([{"name": "m", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
                "transport_api_version": "V3",
                "grpc_service": {"google_grpc": {"target_uri": "x", "stat_prefix": "m"}}}}]),
            "stats_sinks[0].typed_config.grpc_service.google_grpc",
            "google_grpc",
        ),
        (
            "metrics service without a service",
            json!([{"name": "m", "typed_config": {
                "@type": "type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig",
                "transport_api_version": "V3"}}]),
            "stats_sinks[0].typed_config.grpc_service",
            "required",
        ),
    ];
    for (what, sinks, path, word) in cases {
        let errors = match load(&edited(&[("/stats_sinks", sinks)])) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.path() == path && e.to_string().contains(word)),
            "{what}: want {path} ({word}), got:\n{}",
            render(&errors)
        );
    }
}

#[test]
fn flush_interval_bounds_and_admin_flush() {
    let sinks = json!([statsd(udp("127.0.0.1", 8125))]);
    for (edit, path, word) in [
        (
            ("/stats_flush_interval", json!("0s")),
            "stats_flush_interval",
            "at least 1ms",
        ),
        (
            ("/stats_flush_interval", json!("300s")),
            "stats_flush_interval",
            "less than 300s",
        ),
        (
            ("/stats_flush_on_admin", json!(true)),
            "stats_flush",
            "stats_flush",
        ),
    ] {
        let errors = load(&edited(&[("/stats_sinks", sinks.clone()), edit])).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|e| e.path() == path && e.to_string().contains(word)),
            "want {path} ({word}), got:\n{}",
            render(&errors)
        );
    }
}
