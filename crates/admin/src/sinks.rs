//! Stats sinks: every `stats_flush_interval`, the counters and gauges of
//! `/stats` (Envoy's dotted names, read the same way) are pushed to the
//! bootstrap's `stats_sinks`: statsd over UDP ([`statsd`]) and Envoy's
//! metrics service over gRPC ([`metrics_service`]).
//!
//! All of it runs on the control runtime, off the data path: a flush renders
//! the recorder once (atomics read, no lock a request takes), statsd sends
//! without waiting, and the metrics service stream takes only the latest
//! flush, dropping one it cannot send yet. The sinks are started once from
//! the first config: like Envoy, which reads `stats_sinks` from the bootstrap
//! only, a reload does not change them.

mod metrics_service;
mod statsd;

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use strait_model::stats::{StatsSink, StatsSinks};
use tokio::sync::watch;

use crate::{AdminContext, stats::Stat};

/// One reading of every counter and gauge, shared by all sinks.
#[derive(Debug)]
pub(crate) struct Flush {
    pub(crate) stats: Vec<Stat>,
    /// When it was read, in milliseconds since the Unix epoch.
    pub(crate) timestamp_ms: i64,
}

/// What can go wrong pushing stats. Every one of them is logged and the
/// sink carries on (the metrics service reconnects after a back-off).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("stats sink cluster '{0}' is not live (yet): still warming, e.g. for its SDS secrets")]
    NoCluster(String),
    #[error("stats sink cluster '{0}': no healthy upstream")]
    NoHost(String),
    #[error("connecting to the metrics service: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("metrics service stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error("connecting to the metrics service cluster: {0}")]
    Upstream(#[from] strait_upstream::UpstreamError),
    #[error("metrics service stream closed by the server")]
    Closed,
    #[error("statsd socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// Runs `sinks` until the runtime stops: a flush every interval, the first
/// one interval after start (as Envoy's flush timer). `node` identifies the
/// proxy to the metrics service. Never returns.
pub async fn run(ctx: AdminContext, sinks: StatsSinks, node: Option<Node>) {
    let (flushes, latest) = watch::channel(None::<Arc<Flush>>);
    let mut statsd = Vec::new();
    for sink in sinks.sinks {
        match sink {
            StatsSink::Statsd(s) => match statsd::Statsd::new(s) {
                Ok(s) => statsd.push(s),
                Err(e) => tracing::error!(error = %e, "statsd sink not started"),
            },
            StatsSink::MetricsService(m) => {
                tokio::spawn(metrics_service::run(
                    Arc::clone(&ctx.registry),
                    m,
                    node.clone(),
                    latest.clone(),
                ));
            }
        }
    }
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + sinks.flush_interval,
        sinks.flush_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let flush = Arc::new(Flush {
            stats: ctx.envoy_stats(),
            timestamp_ms: now_ms(),
        });
        for s in &mut statsd {
            s.flush(&flush);
        }
        flushes.send_replace(Some(flush));
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Counter values as last sent, to send the change since.
#[derive(Debug, Default)]
pub(crate) struct Deltas(HashMap<String, u64>);

impl Deltas {
    /// The change of counter `name` since the previous call (its whole value
    /// the first time). A counter never goes down; if one seems to (it was
    /// registered anew), its whole value is the change.
    pub(crate) fn delta(&mut self, name: &str, value: u64) -> u64 {
        let previous = match self.0.get_mut(name) {
            Some(v) => std::mem::replace(v, value),
            None => {
                self.0.insert(name.to_owned(), value);
                0
            }
        };
        value.checked_sub(previous).unwrap_or(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_changes_since_the_last_call() {
        let mut d = Deltas::default();
        assert_eq!(d.delta("a", 5), 5);
        assert_eq!(d.delta("a", 5), 0);
        assert_eq!(d.delta("a", 12), 7);
        assert_eq!(d.delta("b", 1), 1);
        assert_eq!(d.delta("a", 3), 3, "a counter registered anew");
    }
}
