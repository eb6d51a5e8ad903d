//! The connection manager's stats, named as Envoy names them. Handles are
//! registered once per `stat_prefix`, so a request only does atomic
//! increments.

use std::sync::atomic::AtomicU64;

use metrics::{Counter, Gauge, Histogram};

/// Stats of one HTTP connection manager, named as Envoy names them.
#[derive(Debug)]
pub struct HttpStats {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub rq_total: Counter,
    pub rq_class: [Counter; 5],
    pub rq_time: Histogram,
    pub no_route: Counter,
    /// Faults in progress (the fault filter's `max_active_faults`).
    pub active_faults: AtomicU64,
    pub fault_delays: Counter,
    pub fault_aborts: Counter,
    rx_bytes: Counter,
    tx_bytes: Counter,
}

impl strait_codec::ByteCounter for HttpStats {
    fn received(&self, bytes: u64) {
        self.rx_bytes.increment(bytes);
    }
    fn sent(&self, bytes: u64) {
        self.tx_bytes.increment(bytes);
    }
}

impl HttpStats {
    pub fn new(prefix: &str) -> Self {
        let label = ("envoy_http_conn_manager_prefix", prefix.to_owned());
        let labels = std::slice::from_ref(&label);
        let class = |k: &'static str| {
            metrics::counter!(
                "envoy_http_downstream_rq_xx",
                &[label.clone(), ("envoy_response_code_class", k.to_owned())]
            )
        };
        HttpStats {
            cx_total: metrics::counter!("envoy_http_downstream_cx_total", labels),
            cx_active: metrics::gauge!("envoy_http_downstream_cx_active", labels),
            rq_total: metrics::counter!("envoy_http_downstream_rq_total", labels),
            rq_class: [class("1"), class("2"), class("3"), class("4"), class("5")],
            rq_time: metrics::histogram!("envoy_http_downstream_rq_time", labels),
            no_route: metrics::counter!("envoy_http_rq_no_route", labels),
            active_faults: AtomicU64::new(0),
            fault_delays: metrics::counter!("envoy_http_fault_delays_injected", labels),
            fault_aborts: metrics::counter!("envoy_http_fault_aborts_injected", labels),
            rx_bytes: metrics::counter!("envoy_http_downstream_cx_rx_bytes_total", labels),
            tx_bytes: metrics::counter!("envoy_http_downstream_cx_tx_bytes_total", labels),
        }
    }

    pub fn response(&self, status: u16) {
        if let Some(c) = self.rq_class.get(usize::from(status / 100).wrapping_sub(1)) {
            c.increment(1);
        }
    }
}
