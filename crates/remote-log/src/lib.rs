//! Strait's remote access loggers: `envoy.access_loggers.open_telemetry`
//! (OTLP logs over gRPC to a cluster), the gRPC access log service's
//! `envoy.access_loggers.http_grpc` / `tcp_grpc` (one long-lived
//! `StreamAccessLogs` client stream per logger), and the OpenTelemetry
//! tracer's OTLP span export ([`trace`], same gRPC client).
//!
//! The data path (`strait-access-log`) hands each accepted record to
//! [`RemoteLoggers`] through `strait_access_log::RemoteLogs`: on the
//! worker, the record is built as an OTLP `LogRecord` and pushed onto its
//! exporter's bounded lock-free queue; nothing else happens there. Each
//! distinct logger config has one exporter (Envoy's logger cache shares
//! them the same way, though per worker thread where Strait has one per
//! process), whose task runs on the control runtime and sends batches.
//!
//! This crate speaks protobuf (`prost`, `envoy-types`' OpenTelemetry common
//! types) and so sits in the control tier, composed in by `strait-app`.

mod als;
mod export;
pub mod otlp;
mod stream;
pub mod trace;

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use arc_swap::ArcSwap;
use strait_access_log::{Record, RemoteLogs};
use strait_model::access_log::{GrpcLog, LogSink, OtelLog};
use strait_upstream::ClusterRegistry;

pub use export::QUEUE_RECORDS;
use export::{ExportStats, Exporter};
pub use otlp::LocalInfo;
use stream::{StreamExporter, StreamStats};
pub use trace::OtelTracers;

/// Exporters by the address of the `OtelLog` they serve, with a `Weak` to
/// it that keeps the address from being reused while the entry exists.
type ByLog = HashMap<usize, (Weak<OtelLog>, Arc<Exporter>)>;

/// The same for the gRPC access log service loggers' streams.
type ByGrpcLog = HashMap<usize, (Weak<GrpcLog>, Arc<StreamExporter>)>;

/// Every remote logger's exporter of one proxy.
pub struct RemoteLoggers {
    upstreams: Arc<ClusterRegistry>,
    runtime: tokio::runtime::Handle,
    /// The proxy's identity, read when an exporter is made (the bootstrap
    /// node does not change after the first config).
    local: Box<dyn Fn() -> LocalInfo + Send + Sync>,
    recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    /// One lock-free lookup per record.
    by_log: ArcSwap<ByLog>,
    by_grpc_log: ArcSwap<ByGrpcLog>,
    /// Registered once, when the first gRPC access log service logger
    /// logs: every such logger counts into the same series, as Envoy's.
    grpc_stats: std::sync::OnceLock<Arc<StreamStats>>,
}

impl RemoteLoggers {
    /// Exporters run on `runtime` (the control runtime) and reach their
    /// clusters through `upstreams`; stats register with `recorder`.
    pub fn new(
        upstreams: Arc<ClusterRegistry>,
        runtime: tokio::runtime::Handle,
        local: Box<dyn Fn() -> LocalInfo + Send + Sync>,
        recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    ) -> Self {
        RemoteLoggers {
            upstreams,
            runtime,
            local,
            recorder,
            by_log: ArcSwap::default(),
            by_grpc_log: ArcSwap::default(),
            grpc_stats: std::sync::OnceLock::new(),
        }
    }

    fn exporter(&self, log: &Arc<OtelLog>) -> Arc<Exporter> {
        let key = Arc::as_ptr(log) as usize;
        if let Some((_, e)) = self.by_log.load().get(&key) {
            return Arc::clone(e);
        }
        self.register(log, key)
    }

    /// The exporter of a logger seen for the first time: an existing one
    /// when an equal config has one (a reload keeps its exporter), else a
    /// new one with its task.
    fn register(&self, log: &Arc<OtelLog>, key: usize) -> Arc<Exporter> {
        let current = self.by_log.load();
        let shared = current.values().find_map(|(w, e)| {
            w.upgrade()
                .filter(|other| **other == **log)
                .map(|_| Arc::clone(e))
        });
        let made = match shared {
            Some(e) => e,
            None => {
                let stats = metrics::with_local_recorder(&*self.recorder, || {
                    ExportStats::new(&log.channel.stat_prefix)
                });
                let e = Arc::new(Exporter::new(
                    log.channel.clone(),
                    otlp::resource(log, &(self.local)()),
                    stats,
                ));
                self.runtime
                    .spawn(Arc::clone(&e).run(Arc::clone(&self.upstreams)));
                e
            }
        };
        self.by_log.rcu(|m| {
            let mut m = HashMap::clone(m);
            // Loggers of configs gone are let go.
            m.retain(|_, (w, _)| w.strong_count() > 0);
            m.entry(key)
                .or_insert_with(|| (Arc::downgrade(log), Arc::clone(&made)));
            m
        });
        self.by_log
            .load()
            .get(&key)
            .map_or(made, |(_, e)| Arc::clone(e))
    }
}

impl RemoteLoggers {
    fn stream_exporter(&self, log: &Arc<GrpcLog>) -> Arc<StreamExporter> {
        let key = Arc::as_ptr(log) as usize;
        if let Some((_, e)) = self.by_grpc_log.load().get(&key) {
            return Arc::clone(e);
        }
        self.register_stream(log, key)
    }

    /// As [`Self::register`], for a gRPC access log service logger: an
    /// equal config (after a reload) keeps its stream.
    fn register_stream(&self, log: &Arc<GrpcLog>, key: usize) -> Arc<StreamExporter> {
        let current = self.by_grpc_log.load();
        let shared = current.values().find_map(|(w, e)| {
            w.upgrade()
                .filter(|other| **other == **log)
                .map(|_| Arc::clone(e))
        });
        let made = match shared {
            Some(e) => e,
            None => {
                let stats = Arc::clone(self.grpc_stats.get_or_init(|| {
                    Arc::new(metrics::with_local_recorder(
                        &*self.recorder,
                        StreamStats::new,
                    ))
                }));
                let e = Arc::new(StreamExporter::new(
                    log.channel.clone(),
                    (self.local)().node(),
                    stats,
                ));
                self.runtime
                    .spawn(Arc::clone(&e).run(Arc::clone(&self.upstreams)));
                e
            }
        };
        self.by_grpc_log.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|_, (w, _)| w.strong_count() > 0);
            m.entry(key)
                .or_insert_with(|| (Arc::downgrade(log), Arc::clone(&made)));
            m
        });
        self.by_grpc_log
            .load()
            .get(&key)
            .map_or(made, |(_, e)| Arc::clone(e))
    }
}

impl RemoteLogs for RemoteLoggers {
    fn log(&self, sink: &LogSink, r: &Record<'_>) {
        match sink {
            LogSink::OpenTelemetry(log) => self.exporter(log).push(otlp::log_record(log, r)),
            LogSink::GrpcService(log) => self.stream_exporter(log).push(als::entry(log, r)),
            _ => {}
        }
    }
}
