//! A proxy's own stats recorder, and the listener and TCP proxy stat
//! handles. Handles are registered once, when a listener starts, so a
//! request only does atomic increments. They register with the recorder the
//! caller scopes (`metrics::with_local_recorder`): the proxy's.

use std::{fmt, sync::Arc};

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Envoy's default histogram buckets (milliseconds).
const BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// A proxy's stats: the recorder every stat handle of the proxy is
/// registered with, and the handle that renders what it holds for `/stats`,
/// `/stats/prometheus` and the stats sinks. Nothing is installed
/// process-wide: an embedding program's own global recorder neither sees
/// Strait's stats nor hides them.
///
/// An embedding program may give one in [`crate::Options::stats`]: the same
/// one to several proxies to add up their stats, or a recorder that also
/// forwards to its own (a fan-out of a [`PrometheusRecorder`] and its own
/// recorder, with the Prometheus one's handle). `prometheus` must render
/// what `recorder` records, or `/stats` misses what the proxy counts.
///
/// [`PrometheusRecorder`]: metrics_exporter_prometheus::PrometheusRecorder
#[derive(Clone)]
pub struct StatsRecorder {
    pub recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    pub prometheus: PrometheusHandle,
}

impl StatsRecorder {
    /// A new Prometheus recorder with Envoy's default histogram buckets, as
    /// a proxy makes for itself.
    pub fn new() -> StatsRecorder {
        // Invariant: the bucket list is non-empty, the only error case.
        let builder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS_MS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        StatsRecorder {
            prometheus: recorder.handle(),
            recorder: Arc::new(recorder),
        }
    }
}

impl Default for StatsRecorder {
    fn default() -> Self {
        StatsRecorder::new()
    }
}

impl fmt::Debug for StatsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsRecorder").finish_non_exhaustive()
    }
}

/// Stats of one TCP proxy, named as Envoy names them.
#[derive(Debug)]
pub(crate) struct TcpStats {
    pub(crate) cx_total: Counter,
    pub(crate) rx_bytes: Counter,
    pub(crate) tx_bytes: Counter,
    pub(crate) no_route: Counter,
}

impl TcpStats {
    pub(crate) fn new(prefix: &str) -> Self {
        let label = ("envoy_tcp_prefix", prefix.to_owned());
        let labels = std::slice::from_ref(&label);
        TcpStats {
            cx_total: metrics::counter!("envoy_tcp_downstream_cx_total", labels),
            rx_bytes: metrics::counter!("envoy_tcp_downstream_cx_rx_bytes_total", labels),
            tx_bytes: metrics::counter!("envoy_tcp_downstream_cx_tx_bytes_total", labels),
            no_route: metrics::counter!("envoy_tcp_downstream_cx_no_route", labels),
        }
    }
}

/// Listener-level counters.
#[derive(Debug)]
pub(crate) struct ListenerStats {
    pub(crate) cx_total: Counter,
    pub(crate) cx_active: Gauge,
    /// Connections closed at once because the global limit was reached.
    pub(crate) global_cx_overflow: Counter,
}

impl ListenerStats {
    pub(crate) fn new(address: &str) -> Self {
        let label = ("envoy_listener_address", address.to_owned());
        let labels = std::slice::from_ref(&label);
        ListenerStats {
            cx_total: metrics::counter!("envoy_listener_downstream_cx_total", labels),
            cx_active: metrics::gauge!("envoy_listener_downstream_cx_active", labels),
            global_cx_overflow: metrics::counter!(
                "envoy_listener_downstream_global_cx_overflow",
                labels
            ),
        }
    }
}
