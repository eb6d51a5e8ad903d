//! Listener and TCP proxy stats, named as Envoy names them. Handles are
//! registered once (per listener, per TCP proxy `stat_prefix`) with the
//! proxy's recorder, so a connection only does atomic increments.

use metrics::{Counter, Gauge};

/// Stats of one TCP proxy, named as Envoy names them.
#[derive(Debug)]
pub struct TcpStats {
    pub cx_total: Counter,
    pub rx_bytes: Counter,
    pub tx_bytes: Counter,
    pub no_route: Counter,
}

impl TcpStats {
    pub fn new(prefix: &str) -> Self {
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
pub struct ListenerStats {
    pub cx_total: Counter,
    pub cx_active: Gauge,
    /// Connections closed at once because the global limit was reached.
    pub global_cx_overflow: Counter,
}

impl ListenerStats {
    pub fn new(address: &str) -> Self {
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
