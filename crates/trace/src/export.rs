//! Spans on their way to the collector: each Zipkin collector (cluster,
//! endpoint, host, service name) has one exporter, a bounded queue and a
//! task that POSTs batches of Zipkin v2 JSON through the cluster's pool.
//! Like Envoy, a batch goes when `MIN_FLUSH_SPANS` spans are waiting or
//! every `FLUSH_INTERVAL` (Envoy's `tracing.zipkin.min_flush_spans` and
//! `flush_interval_ms` defaults). The request path only `try_send`s: a
//! full queue (a collector that is down or slow) drops the span and
//! counts it (`tracing.zipkin.spans_dropped`).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, UdpSocket},
    sync::{Arc, OnceLock},
    time::Duration,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::BodyExt;
use metrics::Counter;
use strait_codec::Body;
use strait_model::{
    UpstreamProtocol,
    tracing::{OpenTelemetry, Zipkin},
};
use strait_upstream::{ClusterRegistry, RoutingPriority};
use tokio::sync::mpsc;

use crate::span::Span;

/// Envoy's defaults: 5 spans or 5 s, whichever comes first.
const MIN_FLUSH_SPANS: usize = 5;
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Envoy's collector request timeout.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans queued per collector before new ones are dropped.
const QUEUE: usize = 4096;

/// Counters, as Envoy names them under `tracing.zipkin.` (plus the drops
/// of the bounded queue, which Envoy does not have).
#[derive(Clone)]
struct Stats {
    spans_sent: Counter,
    spans_dropped: Counter,
    reports_sent: Counter,
    reports_failed: Counter,
    reports_dropped: Counter,
    reports_skipped_no_cluster: Counter,
    timer_flushed: Counter,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            spans_sent: metrics::counter!("envoy_tracing_zipkin_spans_sent"),
            spans_dropped: metrics::counter!("envoy_tracing_zipkin_spans_dropped"),
            reports_sent: metrics::counter!("envoy_tracing_zipkin_reports_sent"),
            reports_failed: metrics::counter!("envoy_tracing_zipkin_reports_failed"),
            reports_dropped: metrics::counter!("envoy_tracing_zipkin_reports_dropped"),
            reports_skipped_no_cluster: metrics::counter!(
                "envoy_tracing_zipkin_reports_skipped_no_cluster"
            ),
            timer_flushed: metrics::counter!("envoy_tracing_zipkin_timer_flushed"),
        }
    }
}

/// Where a finished span goes: its tracer's exporter, which queues it
/// without waiting.
pub trait SpanSink: Send + Sync {
    fn send(&self, span: Span);
}

/// The OpenTelemetry tracers' exporters: OTLP is protobuf, so they live
/// above the data tier (`strait-remote-log`) and the composition sets
/// them here ([`Exporters::set_otel`]).
pub trait OtelSinks: Send + Sync {
    /// The exporter of `config`, made on first use; lock-free after.
    fn sink(&self, config: &Arc<OpenTelemetry>) -> Arc<dyn SpanSink>;
}

/// One collector's queue.
pub struct Exporter {
    tx: mpsc::Sender<Span>,
    dropped: Counter,
}

impl SpanSink for Exporter {
    /// Queues a finished span; never waits.
    fn send(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.increment(1);
        }
    }
}

type Key = (Arc<Zipkin>, String);

/// The proxy's exporters, made on first use. Lock-free lookup.
pub struct Exporters {
    registry: Arc<ClusterRegistry>,
    recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    map: ArcSwap<HashMap<Key, Arc<Exporter>>>,
    ipv4: Ipv4Addr,
    otel: OnceLock<Arc<dyn OtelSinks>>,
}

impl std::fmt::Debug for Exporters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporters").finish_non_exhaustive()
    }
}

impl Exporters {
    pub fn new(
        registry: Arc<ClusterRegistry>,
        recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    ) -> Exporters {
        Exporters {
            registry,
            recorder,
            map: ArcSwap::default(),
            ipv4: local_ipv4(),
            otel: OnceLock::new(),
        }
    }

    /// Sets where OpenTelemetry spans go (once, by the composition).
    pub fn set_otel(&self, sinks: Arc<dyn OtelSinks>) {
        let _ = self.otel.set(sinks);
    }

    /// The exporter of an OpenTelemetry tracer; `None` when the
    /// composition set none (a proxy built without OTLP export), whose
    /// spans are then not sent.
    pub fn otel(&self, config: &Arc<OpenTelemetry>) -> Option<Arc<dyn SpanSink>> {
        self.otel.get().map(|s| s.sink(config))
    }

    /// The exporter for `z` and the node's `service` name, its task
    /// spawned on the current runtime on first use.
    pub fn get(&self, z: &Arc<Zipkin>, service: &str) -> Arc<Exporter> {
        if let Some(e) = self.map.load().get(&(Arc::clone(z), service.to_owned())) {
            return Arc::clone(e);
        }
        let stats = metrics::with_local_recorder(&*self.recorder, Stats::new);
        let (tx, rx) = mpsc::channel(QUEUE);
        let made = Arc::new(Exporter {
            tx,
            dropped: stats.spans_dropped.clone(),
        });
        let key = (Arc::clone(z), service.to_owned());
        let mut won = false;
        self.map.rcu(|m| {
            let mut m = HashMap::clone(m);
            if !m.contains_key(&key) {
                m.insert(key.clone(), Arc::clone(&made));
                won = true;
            } else {
                won = false;
            }
            m
        });
        if won {
            let task = Task {
                zipkin: Arc::clone(z),
                service: service.to_owned(),
                ipv4: self.ipv4,
                registry: Arc::clone(&self.registry),
                stats,
            };
            tokio::spawn(task.run(rx));
        }
        self.map.load().get(&key).cloned().unwrap_or(made)
    }
}

/// Envoy's local endpoint address: the host's own (non-loopback) address,
/// found once by asking the routing table for the source address toward a
/// documentation address (no packet is sent); loopback
/// when the host has no route.
fn local_ipv4() -> Ipv4Addr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect("198.51.100.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    }
}

struct Task {
    zipkin: Arc<Zipkin>,
    service: String,
    ipv4: Ipv4Addr,
    registry: Arc<ClusterRegistry>,
    stats: Stats,
}

impl Task {
    async fn run(self, mut rx: mpsc::Receiver<Span>) {
        let mut batch = Vec::with_capacity(MIN_FLUSH_SPANS);
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(s) => {
                        batch.push(s);
                        if batch.len() >= MIN_FLUSH_SPANS {
                            self.flush(&mut batch).await;
                        }
                    }
                    None => {
                        self.flush(&mut batch).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.stats.timer_flushed.increment(1);
                        self.flush(&mut batch).await;
                    }
                }
            }
        }
    }

    async fn flush(&self, batch: &mut Vec<Span>) {
        if batch.is_empty() {
            return;
        }
        let spans: Vec<_> = batch
            .drain(..)
            .map(|s| s.to_json(&self.service, self.ipv4))
            .collect();
        let n = spans.len() as u64;
        let body = serde_json::to_vec(&spans).unwrap_or_default();
        match tokio::time::timeout(REPORT_TIMEOUT, self.post(body)).await {
            Ok(Ok(true)) => {
                self.stats.reports_sent.increment(1);
                self.stats.spans_sent.increment(n);
            }
            Ok(Ok(false)) => self.stats.reports_dropped.increment(1),
            Ok(Err(NoCluster)) => self.stats.reports_skipped_no_cluster.increment(1),
            Err(_) => self.stats.reports_failed.increment(1),
        }
    }

    /// One POST; `Ok(false)` when the collector answered with an error or
    /// could not be reached.
    async fn post(&self, body: Vec<u8>) -> Result<bool, NoCluster> {
        let z = &self.zipkin;
        let Some(cluster) = self.registry.get(&z.cluster) else {
            return Err(NoCluster);
        };
        let h2 = cluster.spec().protocol == UpstreamProtocol::Http2;
        let Ok(mut req) = Request::post(z.endpoint.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::full(Bytes::from(body)))
        else {
            return Ok(false);
        };
        if h2 {
            *req.version_mut() = http::Version::HTTP_2;
            let uri = format!("http://{}{}", z.hostname, z.endpoint);
            match uri.parse() {
                Ok(u) => *req.uri_mut() = u,
                Err(_) => return Ok(false),
            }
        } else if let Ok(v) = HeaderValue::from_str(&z.hostname) {
            req.headers_mut().insert(header::HOST, v);
        }
        let Some(host) = cluster.pick() else {
            return Ok(false);
        };
        let Ok(lease) = cluster.lease_for(host, RoutingPriority::Default, h2).await else {
            return Ok(false);
        };
        let Ok(resp) = lease.send(req).await else {
            return Ok(false);
        };
        let ok = resp.status().is_success();
        // Read the answer so the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        Ok(ok)
    }
}

struct NoCluster;
