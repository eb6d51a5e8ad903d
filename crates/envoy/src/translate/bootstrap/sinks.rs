//! `stats_sinks`: the statsd sink (UDP) and the metrics service sink (gRPC
//! `StreamMetrics`), the two Istio's bootstraps render. Any other sink is
//! refused with its name.

use std::{num::NonZeroU32, time::Duration};

use envoy_types::pb::envoy::config::{
    core::v3::{Address, ApiVersion, address, socket_address::Protocol},
    metrics::v3::{
        HistogramEmitMode, MetricsServiceConfig, StatsSink, StatsdSink, stats_sink, statsd_sink,
    },
};

use super::super::{Context, at, decode_any, dynamic, ip_socket_address, item, type_name};
use crate::model::stats as model;

const STATSD: &str = "envoy.config.metrics.v3.StatsdSink";
const METRICS_SERVICE: &str = "envoy.config.metrics.v3.MetricsServiceConfig";

/// Envoy's bounds on `stats_flush_interval`: at least 1 ms, under 300 s.
const MIN_FLUSH: Duration = Duration::from_millis(1);
const MAX_FLUSH: Duration = Duration::from_secs(300);

/// Translates `stats_sinks`, flushed every `flush_interval` (already read,
/// `None` if it was bad). `None` without sinks or after a problem.
pub(super) fn stats_sinks(
    cx: &mut Context,
    sinks: &[StatsSink],
    flush_interval: Option<Duration>,
) -> Option<model::StatsSinks> {
    if sinks.is_empty() {
        return None;
    }
    let before = cx.problems.len();
    let flush_interval = flush_interval?;
    if !(MIN_FLUSH..MAX_FLUSH).contains(&flush_interval) {
        cx.invalid(
            "stats_flush_interval",
            format!("{flush_interval:?} must be at least 1ms and less than 300s"),
        );
    }
    let out: Vec<model::StatsSink> = sinks
        .iter()
        .enumerate()
        .filter_map(|(i, s)| sink(cx, &item("", "stats_sinks", i), s))
        .collect();
    (cx.problems.len() == before).then_some(model::StatsSinks {
        flush_interval,
        sinks: out,
    })
}

fn sink(cx: &mut Context, path: &str, s: &StatsSink) -> Option<model::StatsSink> {
    // Envoy picks the sink by its typed_config's type; the name only labels
    // it (and selects it in configs without one, which Strait refuses).
    let StatsSink { name, config_type } = s;
    let Some(stats_sink::ConfigType::TypedConfig(any)) = config_type else {
        cx.invalid(
            at(path, "typed_config"),
            format!("stats sink '{name}' needs a typed_config"),
        );
        return None;
    };
    let tpath = at(path, "typed_config");
    match type_name(&any.type_url) {
        STATSD => {
            let s = decode_any(cx, &tpath, any)?;
            statsd(cx, &tpath, &s).map(model::StatsSink::Statsd)
        }
        METRICS_SERVICE => {
            let m = decode_any(cx, &tpath, any)?;
            metrics_service(cx, &tpath, &m).map(model::StatsSink::MetricsService)
        }
        other => {
            cx.unsupported(tpath, format!("stats sink '{name}' ({other})"));
            None
        }
    }
}

fn statsd(cx: &mut Context, path: &str, s: &StatsdSink) -> Option<model::StatsdSink> {
    let StatsdSink {
        prefix,
        statsd_specifier,
    } = s;
    let address = match statsd_specifier {
        Some(statsd_sink::StatsdSpecifier::Address(a)) => a,
        // Statsd over TCP through a cluster: not implemented (Istio renders
        // only the UDP address).
        Some(statsd_sink::StatsdSpecifier::TcpClusterName(_)) => {
            cx.unsupported(at(path, "tcp_cluster_name"), "tcp_cluster_name");
            return None;
        }
        None => {
            cx.invalid(at(path, "address"), "is required");
            return None;
        }
    };
    let apath = at(path, "address");
    // The sink always speaks UDP: Envoy reads only the IP and port, so a
    // `protocol: UDP` written out (the natural spelling) means the same as
    // the TCP default that the shared address reader expects.
    let mut address = address.clone();
    if let Some(address::Address::SocketAddress(sa)) = &mut address.address
        && sa.protocol == Protocol::Udp as i32
    {
        sa.protocol = Protocol::Tcp as i32;
    }
    let address = ip_socket_address(cx, &apath, &Some::<Address>(address))?;
    if address.port() == 0 {
        cx.invalid(
            at(&at(&apath, "socket_address"), "port_value"),
            "a statsd address needs a port",
        );
        return None;
    }
    let prefix = if prefix.is_empty() {
        model::DEFAULT_STATSD_PREFIX.to_owned()
    } else {
        prefix.clone()
    };
    Some(model::StatsdSink { address, prefix })
}

fn metrics_service(
    cx: &mut Context,
    path: &str,
    m: &MetricsServiceConfig,
) -> Option<model::MetricsServiceSink> {
    let MetricsServiceConfig {
        grpc_service,
        transport_api_version,
        report_counters_as_deltas,
        emit_tags_as_labels,
        histogram_emit_mode,
        batch_size,
    } = m;
    let before = cx.problems.len();
    if *transport_api_version != ApiVersion::V3 as i32 {
        cx.unsupported(
            at(path, "transport_api_version"),
            "only V3 transport (as Envoy, which refuses the others)",
        );
    }
    // Labels would need Envoy's tag-extracted names; Strait sends the full
    // dotted names (Envoy's default).
    reject_set!(cx, path; emit_tags_as_labels);
    // Strait's sinks carry counters and gauges only, no histograms; the
    // default mode is accepted for that reason, a mode asking for a
    // particular histogram form is not.
    if *histogram_emit_mode != HistogramEmitMode::SummaryAndHistogram as i32 {
        cx.unsupported(at(path, "histogram_emit_mode"), "histogram_emit_mode");
    }
    let cluster = match grpc_service {
        Some(g) => dynamic::grpc_service(cx, &at(path, "grpc_service"), g, false),
        None => {
            cx.invalid(at(path, "grpc_service"), "is required");
            None
        }
    };
    if cx.problems.len() != before {
        return None;
    }
    Some(model::MetricsServiceSink {
        cluster: cluster?,
        counters_as_deltas: report_counters_as_deltas.is_some_and(|b| b.value),
        batch_size: NonZeroU32::new(*batch_size),
    })
}
