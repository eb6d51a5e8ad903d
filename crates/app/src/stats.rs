//! The process-wide metrics recorder and per-listener stat handles. Handles
//! are registered once, when a listener starts, so a request only does atomic
//! increments.

use std::sync::OnceLock;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Envoy's default histogram buckets (milliseconds).
const BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Installs the Prometheus recorder once per process and returns its handle.
/// Several in-process proxies (tests) share it.
pub(crate) fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // Invariant: the bucket list is non-empty, the only error case.
            let builder = builder
                .set_buckets(&BUCKETS_MS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program
            // chose its own); our handle then renders only what we record.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
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
