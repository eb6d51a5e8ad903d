//! Strait's remote access loggers: `envoy.access_loggers.open_telemetry`
//! (OTLP logs over gRPC to a cluster), and the OpenTelemetry tracer's OTLP
//! span export ([`trace`], same gRPC client).
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

mod export;
pub mod otlp;
pub mod trace;

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use arc_swap::ArcSwap;
use strait_access_log::{Record, RemoteLogs};
use strait_model::access_log::{LogSink, OtelLog};
use strait_upstream::ClusterRegistry;

pub use export::QUEUE_RECORDS;
use export::{ExportStats, Exporter};
pub use otlp::LocalInfo;
pub use trace::OtelTracers;

/// Exporters by the address of the `OtelLog` they serve, with a `Weak` to
/// it that keeps the address from being reused while the entry exists.
type ByLog = HashMap<usize, (Weak<OtelLog>, Arc<Exporter>)>;

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

impl RemoteLogs for RemoteLoggers {
    fn log(&self, sink: &LogSink, r: &Record<'_>) {
        if let LogSink::OpenTelemetry(log) = sink {
            self.exporter(log).push(otlp::log_record(log, r));
        }
    }
}
