//! The metrics service sink (`envoy.stat_sinks.metrics_service`): one
//! client-streaming `MetricsService.StreamMetrics` call that carries a
//! `StreamMetricsMessage` per flush, the node identifier in the first
//! message of each stream, counters and gauges as Prometheus
//! `MetricFamily`s under Envoy's dotted names.
//!
//! The stream goes through the data path's cluster, as Envoy's `envoy_grpc`
//! client goes through its cluster manager: the cluster's balancer picks the
//! host, and its transport socket (TLS with SDS certificates in Istio's
//! bootstrap) and connection stats apply. (The xDS client's channel dials
//! the first endpoint in plaintext or a pipe, which would ignore the metrics
//! cluster's TLS.) A failed stream is reopened after a jittered back-off.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::metrics::v3::{
            StreamMetricsMessage, metrics_service_client::MetricsServiceClient,
            stream_metrics_message::Identifier,
        },
    },
    io::prometheus::client::{Counter, Gauge, Metric, MetricFamily, MetricType},
};
use hyper_util::rt::TokioIo;
use strait_model::stats::MetricsServiceSink;
use strait_upstream::{ClusterRegistry, UpstreamStream};
use tokio::sync::{mpsc, watch};
use tonic::{
    codegen::{Service, http::Uri, tokio_stream::wrappers::ReceiverStream},
    transport::Endpoint,
};

use super::{Deltas, Flush, SinkError};

/// Messages waiting to be written to the stream. A flush that finds the
/// queue full is dropped rather than waited for: the server is behind, and
/// the next flush carries newer values (and, with deltas, the change).
const QUEUE: usize = 8;

/// Keeps a stream to the metrics service open and sends every flush on it,
/// until the flushes stop (the runtime shuts down).
pub(super) async fn run(
    registry: Arc<ClusterRegistry>,
    config: MetricsServiceSink,
    node: Option<Node>,
    mut flushes: watch::Receiver<Option<Arc<Flush>>>,
) {
    // Failed streams in a row (reset once one carries a flush).
    let mut failures = 0u32;
    let mut counters = Deltas::default();
    loop {
        let result = stream(
            &registry,
            &config,
            &node,
            &mut flushes,
            &mut counters,
            &mut failures,
        )
        .await;
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                cluster = %config.cluster,
                error = %e,
                "metrics service stream failed; reconnecting"
            ),
        }
        tokio::time::sleep(strait_net::reconnect_backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

/// One stream, from connect to failure. `Ok` only when the flushes end.
async fn stream(
    registry: &Arc<ClusterRegistry>,
    config: &MetricsServiceSink,
    node: &Option<Node>,
    flushes: &mut watch::Receiver<Option<Arc<Flush>>>,
    counters: &mut Deltas,
    failures: &mut u32,
) -> Result<(), SinkError> {
    // Envoy's `envoy_grpc` sends the cluster name as the authority; a name
    // that is no URI authority (Istio's `outbound|80||host`) gets a neutral
    // one. The connector ignores the URI either way.
    let endpoint = Endpoint::from_shared(format!("http://{}", config.cluster))
        .unwrap_or_else(|_| Endpoint::from_static("http://localhost"));
    let connector = ClusterConnector {
        registry: Arc::clone(registry),
        cluster: Arc::from(config.cluster.as_str()),
    };
    let channel = endpoint.connect_with_connector(connector).await?;
    let mut client = MetricsServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(QUEUE);
    let call = client.stream_metrics(ReceiverStream::new(rx));
    tokio::pin!(call);
    let mut identifier = Some(Identifier { node: node.clone() });
    loop {
        tokio::select! {
            // A stream the server ended takes no more messages: notice that
            // before sending the next flush into it.
            biased;
            res = &mut call => return Err(match res {
                Ok(_) => SinkError::Closed,
                Err(status) => status.into(),
            }),
            changed = flushes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let Some(flush) = flushes.borrow_and_update().clone() else {
                    continue;
                };
                let families = families(&flush, config.counters_as_deltas, counters);
                for msg in messages(families, config.batch_size, &mut identifier) {
                    match tx.try_send(msg) {
                        Ok(()) => *failures = 0,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::debug!(cluster = %config.cluster, "metrics service behind; flush dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return Err(SinkError::Closed),
                    }
                }
            }
        }
    }
}

/// One flush as metric families: counters Envoy would count as used (ever
/// incremented), as running totals or as the change since the previous
/// flush; every gauge.
fn families(flush: &Flush, deltas: bool, counters: &mut Deltas) -> Vec<MetricFamily> {
    let mut out = Vec::with_capacity(flush.stats.len());
    for s in &flush.stats {
        let metric = if s.counter {
            if s.value == 0 {
                continue;
            }
            let value = if deltas {
                counters.delta(&s.name, s.value)
            } else {
                s.value
            };
            Metric {
                counter: Some(Counter {
                    value: Some(value as f64),
                    ..Counter::default()
                }),
                timestamp_ms: Some(flush.timestamp_ms),
                ..Metric::default()
            }
        } else {
            Metric {
                gauge: Some(Gauge {
                    value: Some(s.value as f64),
                }),
                timestamp_ms: Some(flush.timestamp_ms),
                ..Metric::default()
            }
        };
        let kind = if s.counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        out.push(MetricFamily {
            name: Some(s.name.clone()),
            r#type: Some(kind as i32),
            metric: vec![metric],
            ..MetricFamily::default()
        });
    }
    out
}

/// The messages of one flush: one, or one per `batch_size` families. The
/// identifier (still there only before a stream's first message) goes in
/// the first.
fn messages(
    families: Vec<MetricFamily>,
    batch_size: Option<std::num::NonZeroU32>,
    identifier: &mut Option<Identifier>,
) -> Vec<StreamMetricsMessage> {
    let per = batch_size.map_or(usize::MAX, |b| b.get() as usize);
    let mut out = Vec::new();
    let mut families = families.into_iter().peekable();
    while families.peek().is_some() || out.is_empty() {
        out.push(StreamMetricsMessage {
            identifier: identifier.take(),
            envoy_metrics: families.by_ref().take(per).collect(),
        });
    }
    out
}

/// Dials a host of a data-path cluster (its balancer's pick) over its
/// transport socket, for tonic.
#[derive(Clone)]
struct ClusterConnector {
    registry: Arc<ClusterRegistry>,
    cluster: Arc<str>,
}

impl Service<Uri> for ClusterConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = SinkError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, SinkError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (registry, name) = (Arc::clone(&self.registry), Arc::clone(&self.cluster));
        Box::pin(async move {
            let cluster = registry
                .get(&name)
                .ok_or_else(|| SinkError::NoCluster(name.to_string()))?;
            let host = cluster
                .pick()
                .ok_or_else(|| SinkError::NoHost(name.to_string()))?;
            Ok(TokioIo::new(cluster.connect_tcp(&host).await?))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::stats::Stat;

    fn flush(rq: u64) -> Flush {
        Flush {
            stats: vec![
                Stat {
                    name: "cluster.a.upstream_rq_total".into(),
                    value: rq,
                    counter: true,
                },
                Stat {
                    name: "cluster.a.upstream_rq_timeout".into(),
                    value: 0,
                    counter: true,
                },
                Stat {
                    name: "server.live".into(),
                    value: 1,
                    counter: false,
                },
            ],
            timestamp_ms: 42,
        }
    }

    fn values(f: &[MetricFamily]) -> Vec<(String, i32, f64)> {
        f.iter()
            .map(|f| {
                let m = &f.metric[0];
                assert_eq!(m.timestamp_ms, Some(42));
                let v = m
                    .counter
                    .as_ref()
                    .and_then(|c| c.value)
                    .or(m.gauge.as_ref().and_then(|g| g.value));
                (
                    f.name.clone().unwrap_or_default(),
                    f.r#type.unwrap_or(-1),
                    v.unwrap_or(f64::NAN),
                )
            })
            .collect()
    }

    #[test]
    fn counters_totals_or_deltas_and_gauges() {
        let mut d = Deltas::default();
        let total = families(&flush(5), false, &mut d);
        assert_eq!(
            values(&total),
            [
                ("cluster.a.upstream_rq_total".into(), 0, 5.0),
                ("server.live".into(), 1, 1.0)
            ]
        );
        families(&flush(5), true, &mut d);
        let delta = families(&flush(8), true, &mut d);
        assert_eq!(
            values(&delta)[0],
            ("cluster.a.upstream_rq_total".into(), 0, 3.0)
        );
    }

    #[test]
    fn identifier_only_in_the_first_message_and_batches() {
        let mut d = Deltas::default();
        let mut id = Some(Identifier {
            node: Some(Node {
                id: "n".into(),
                ..Node::default()
            }),
        });
        let msgs = messages(
            families(&flush(1), false, &mut d),
            NonZeroU32::new(1),
            &mut id,
        );
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].identifier.is_some() && msgs[1].identifier.is_none());
        assert!(msgs.iter().all(|m| m.envoy_metrics.len() == 1));
        let msgs = messages(families(&flush(1), false, &mut d), None, &mut id);
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].identifier.is_none());
        assert_eq!(msgs[0].envoy_metrics.len(), 2);
    }
}
