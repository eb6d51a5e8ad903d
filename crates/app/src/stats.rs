//! Per-listener stat handles. Handles are registered once, when a listener
//! starts, so a request only does atomic increments. They register with the
//! recorder the caller scopes (`metrics::with_local_recorder`): the proxy's.

use std::sync::atomic::AtomicU64;

use metrics::{Counter, Gauge, Histogram};

/// Stats of one HTTP connection manager, named as Envoy names them.
#[derive(Debug)]
pub(crate) struct HttpStats {
    pub(crate) cx_total: Counter,
    pub(crate) cx_active: Gauge,
    pub(crate) rq_total: Counter,
    pub(crate) rq_class: [Counter; 5],
    pub(crate) rq_time: Histogram,
    pub(crate) no_route: Counter,
    /// Faults in progress (the fault filter's `max_active_faults`).
    pub(crate) active_faults: AtomicU64,
    pub(crate) fault_delays: Counter,
    pub(crate) fault_aborts: Counter,
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
    pub(crate) fn new(prefix: &str) -> Self {
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

    pub(crate) fn response(&self, status: u16) {
        if let Some(c) = self.rq_class.get(usize::from(status / 100).wrapping_sub(1)) {
            c.increment(1);
        }
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
