//! The bootstrap's `stats_sinks`: where Strait pushes its stats every
//! `stats_flush_interval`, besides serving them on the admin server.
//!
//! Plain data; the sinks themselves run in the admin crate
//! (`strait_admin::sinks`), which owns stats in Envoy's names.

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

/// Envoy's default `stats_flush_interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Envoy's default statsd `prefix`.
pub const DEFAULT_STATSD_PREFIX: &str = "envoy";

/// Every configured sink and how often they are all flushed.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSinks {
    /// `stats_flush_interval` (Envoy: 5 s by default, at least 1 ms).
    pub flush_interval: Duration,
    /// In the bootstrap's order; never empty.
    pub sinks: Vec<StatsSink>,
}

/// One entry of `stats_sinks`.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsSink {
    /// `envoy.stat_sinks.statsd` over UDP.
    Statsd(StatsdSink),
    /// `envoy.stat_sinks.metrics_service`: `StreamMetrics` over gRPC.
    MetricsService(MetricsServiceSink),
}

/// `envoy.config.metrics.v3.StatsdSink` with an `address`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsdSink {
    /// Where the datagrams go (an IP literal, as Envoy requires).
    pub address: SocketAddr,
    /// Put before every stat name with a `.`; `envoy` when left empty.
    pub prefix: String,
}

/// `envoy.config.metrics.v3.MetricsServiceConfig` with an `envoy_grpc`
/// service.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsServiceSink {
    /// The static cluster the gRPC stream goes to (through the data path's
    /// cluster, as Envoy's `envoy_grpc` client goes through its cluster
    /// manager: its transport socket, balancer and stats).
    pub cluster: String,
    /// `report_counters_as_deltas`: counters as the change since the
    /// previous flush instead of their running total.
    pub counters_as_deltas: bool,
    /// `batch_size`: at most this many metric families per message; `None`
    /// sends each flush as one message.
    pub batch_size: Option<NonZeroU32>,
}
