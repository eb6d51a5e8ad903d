//! A cluster's stats: Envoy's per-cluster counters, registered with the
//! proxy's own recorder (never the process-wide one), so proxies sharing a
//! process keep apart.

use std::{fmt, sync::Arc};

use metrics::{Counter, Histogram};

/// The proxy's stats recorder, which every handle of a cluster is registered
/// with (never the process-wide one).
#[derive(Clone)]
pub(crate) struct StatsRecorder(pub(crate) Arc<dyn metrics::Recorder + Send + Sync>);

impl fmt::Debug for StatsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsRecorder")
    }
}

/// Envoy's per-cluster counters, with Envoy's names as Prometheus renders them.
#[derive(Debug)]
pub(crate) struct ClusterStats {
    pub(crate) cx_total: Counter,
    pub(crate) cx_connect_fail: Counter,
    pub(crate) cx_connect_timeout: Counter,
    pub(crate) rq_total: Counter,
    pub(crate) rq_timeout: Counter,
    pub(crate) rq_class: [Counter; 5],
    pub(crate) rq_time: Histogram,
    pub(crate) no_healthy: Counter,
    pub(crate) rq_pending_overflow: Counter,
    pub(crate) cx_overflow: Counter,
    pub(crate) rq_retry_overflow: Counter,
    pub(crate) outlier_detected: Counter,
    pub(crate) outlier_ejected: Counter,
    pub(crate) outlier_overflow: Counter,
    pub(crate) hc_attempt: Counter,
    pub(crate) hc_success: Counter,
    pub(crate) hc_failure: Counter,
    /// Shared with every connection's byte counter; an `Arc` of its own so a
    /// live connection never keeps the whole cluster alive.
    pub(crate) bytes: Arc<ByteStats>,
}

/// `upstream_cx_rx_bytes_total` / `upstream_cx_tx_bytes_total`.
#[derive(Debug)]
pub(crate) struct ByteStats {
    rx: Counter,
    tx: Counter,
}

impl strait_codec::ByteCounter for ByteStats {
    fn received(&self, bytes: u64) {
        self.rx.increment(bytes);
    }
    fn sent(&self, bytes: u64) {
        self.tx.increment(bytes);
    }
}

impl ClusterStats {
    pub(crate) fn new(name: &str, recorder: &StatsRecorder) -> Self {
        metrics::with_local_recorder(&*recorder.0, || Self::register(name))
    }

    fn register(name: &str) -> Self {
        let label = ("envoy_cluster_name", name.to_owned());
        let c = |n: &'static str| metrics::counter!(n, std::slice::from_ref(&label));
        let class = |k: &'static str| {
            metrics::counter!(
                "envoy_cluster_upstream_rq_xx",
                &[label.clone(), ("envoy_response_code_class", k.to_owned())]
            )
        };
        ClusterStats {
            cx_total: c("envoy_cluster_upstream_cx_total"),
            cx_connect_fail: c("envoy_cluster_upstream_cx_connect_fail"),
            cx_connect_timeout: c("envoy_cluster_upstream_cx_connect_timeout"),
            rq_total: c("envoy_cluster_upstream_rq_total"),
            rq_timeout: c("envoy_cluster_upstream_rq_timeout"),
            rq_class: [class("1"), class("2"), class("3"), class("4"), class("5")],
            rq_time: metrics::histogram!(
                "envoy_cluster_upstream_rq_time",
                std::slice::from_ref(&label)
            ),
            no_healthy: c("envoy_cluster_upstream_cx_none_healthy"),
            rq_pending_overflow: c("envoy_cluster_upstream_rq_pending_overflow"),
            cx_overflow: c("envoy_cluster_upstream_cx_overflow"),
            rq_retry_overflow: c("envoy_cluster_upstream_rq_retry_overflow"),
            outlier_detected: c(
                "envoy_cluster_outlier_detection_ejections_detected_consecutive_5xx",
            ),
            outlier_ejected: c("envoy_cluster_outlier_detection_ejections_enforced_total"),
            outlier_overflow: c("envoy_cluster_outlier_detection_ejections_overflow"),
            hc_attempt: c("envoy_cluster_health_check_attempt"),
            hc_success: c("envoy_cluster_health_check_success"),
            hc_failure: c("envoy_cluster_health_check_failure"),
            bytes: Arc::new(ByteStats {
                rx: c("envoy_cluster_upstream_cx_rx_bytes_total"),
                tx: c("envoy_cluster_upstream_cx_tx_bytes_total"),
            }),
        }
    }
}
