//! A proxy's own stats recorder: every stat handle of the proxy registers
//! with it (`metrics::with_local_recorder` where the handles are made).

use std::{fmt, sync::Arc};

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
