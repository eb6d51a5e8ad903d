//! One exporter per distinct logger config: a bounded lock-free queue the
//! workers push records onto, and a task on the control runtime that sends
//! them in batches (`LogsService/Export`, one call in flight) every
//! `buffer_flush_interval`, or as soon as `buffer_size_bytes` wait.
//!
//! A worker never waits: a full queue drops the record and counts it
//! (`logs_dropped`). A collector that is down or slow only delays this
//! task; its failed batches count as `logs_dropped`, delivered ones as
//! `logs_written` (Envoy's OpenTelemetry logger counts at the same
//! moments, under the same names).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_queue::ArrayQueue;
use http::{HeaderName, HeaderValue, Request, Uri, Version, header};
use http_body_util::BodyExt;
use metrics::Counter;
use prost::Message;
use strait_codec::Body;
use strait_model::access_log::RemoteChannel;
use strait_upstream::{ClusterRegistry, RoutingPriority};
use tokio::sync::Notify;

use crate::otlp::{
    EXPORT_PATH, ExportLogsServiceRequest, ExportLogsServiceResponse, LogRecord, Resource,
    ResourceLogs, ScopeLogs,
};

/// Records one exporter holds before it drops: at Envoy's default 16 KiB
/// batches of a few hundred bytes per record, many batches' worth.
pub const QUEUE_RECORDS: usize = 8 * 1024;

/// The deadline of a call when `grpc_service.timeout` is unset, so a
/// collector that never answers stalls the exporter (and fills its queue)
/// for a bounded time only.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// `access_logs.open_telemetry_access_log.[<stat_prefix>.]*`.
#[derive(Debug)]
pub(crate) struct ExportStats {
    pub(crate) logs_written: Counter,
    pub(crate) logs_dropped: Counter,
    /// `grpc_entries_flushed`, `grpc_entries_flush_failed`: Envoy counts
    /// them for its streaming gRPC clients only, so for this unary logger
    /// they stay 0, as in Envoy 1.40; registered so dashboards find them.
    _streaming: [Counter; 2],
}

impl ExportStats {
    pub(crate) fn new(stat_prefix: &str) -> Self {
        let base = if stat_prefix.is_empty() {
            "envoy_access_logs_open_telemetry_access_log_".to_owned()
        } else {
            format!(
                "envoy_access_logs_open_telemetry_access_log_{}_",
                sanitize(stat_prefix)
            )
        };
        ExportStats {
            logs_written: metrics::counter!(format!("{base}logs_written")),
            logs_dropped: metrics::counter!(format!("{base}logs_dropped")),
            _streaming: [
                metrics::counter!(format!("{base}grpc_entries_flushed")),
                metrics::counter!(format!("{base}grpc_entries_flush_failed")),
            ],
        }
    }
}

/// Envoy's Prometheus names: anything but `[a-zA-Z0-9_]` becomes `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// One logger config's queue and batching state.
#[derive(Debug)]
pub(crate) struct Exporter {
    queue: ArrayQueue<LogRecord>,
    bytes: AtomicUsize,
    wake: Notify,
    channel: RemoteChannel,
    resource: Resource,
    pub(crate) stats: ExportStats,
}

impl Exporter {
    pub(crate) fn new(channel: RemoteChannel, resource: Resource, stats: ExportStats) -> Self {
        Self::with_capacity(channel, resource, stats, QUEUE_RECORDS)
    }

    fn with_capacity(
        channel: RemoteChannel,
        resource: Resource,
        stats: ExportStats,
        records: usize,
    ) -> Self {
        Exporter {
            queue: ArrayQueue::new(records),
            bytes: AtomicUsize::new(0),
            wake: Notify::new(),
            channel,
            resource,
            stats,
        }
    }

    /// Queues `record` (worker side): never waits.
    pub(crate) fn push(&self, record: LogRecord) {
        let len = record.encoded_len();
        if self.queue.push(record).is_err() {
            self.stats.logs_dropped.increment(1);
            return;
        }
        let waiting = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
        if u64::try_from(waiting).unwrap_or(u64::MAX) >= self.channel.buffer_bytes {
            self.wake.notify_one();
        }
    }

    /// The exporter's task: a batch every flush interval or when enough
    /// bytes wait, sent one at a time.
    pub(crate) async fn run(self: Arc<Self>, upstreams: Arc<ClusterRegistry>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.channel.flush_interval) => {}
                () = self.wake.notified() => {}
            }
            // No logger uses this exporter any more (its config was
            // replaced) and nothing waits: the task ends.
            if Arc::strong_count(&self) == 1 && self.queue.is_empty() {
                return;
            }
            loop {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                let n = batch.len() as u64;
                match self.export(&upstreams, batch).await {
                    Ok(rejected) => {
                        let rejected = rejected.min(n);
                        self.stats.logs_written.increment(n - rejected);
                        self.stats.logs_dropped.increment(rejected);
                    }
                    Err(e) => {
                        tracing::debug!(cluster = %self.channel.cluster, error = %e, "OTLP log export failed");
                        self.stats.logs_dropped.increment(n);
                    }
                }
                // Only what was over the threshold is sent at once; the rest
                // waits for the timer, as Envoy batches.
                if (self.bytes.load(Ordering::Relaxed) as u64) < self.channel.buffer_bytes {
                    break;
                }
            }
        }
    }

    /// Records up to `buffer_size_bytes` (at least one).
    fn take_batch(&self) -> Vec<LogRecord> {
        let mut out = Vec::new();
        let mut size = 0u64;
        while size < self.channel.buffer_bytes.max(1) {
            let Some(r) = self.queue.pop() else { break };
            let len = r.encoded_len();
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            size += len as u64;
            out.push(r);
        }
        out
    }

    /// One `Export` call; the count of rejected records on success.
    async fn export(
        &self,
        upstreams: &ClusterRegistry,
        records: Vec<LogRecord>,
    ) -> Result<u64, String> {
        let msg = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let answer = unary(upstreams, &self.channel, EXPORT_PATH, &msg.encode_to_vec()).await?;
        let resp = ExportLogsServiceResponse::decode(answer).map_err(|e| e.to_string())?;
        Ok(resp
            .partial_success
            .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0)))
    }
}

/// A gRPC unary call to `channel`'s cluster: the answer's message bytes,
/// or why there is none.
pub(crate) async fn unary(
    upstreams: &ClusterRegistry,
    channel: &RemoteChannel,
    path: &str,
    message: &[u8],
) -> Result<Bytes, String> {
    let cluster = upstreams
        .get(&channel.cluster)
        .ok_or_else(|| format!("no cluster {}", channel.cluster))?;
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).map_err(|_| "message too big")?);
    framed.put_slice(message);
    let authority = if channel.authority.is_empty() {
        &channel.cluster
    } else {
        &channel.authority
    };
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = Request::post(uri)
        .version(Version::HTTP_2)
        .body(Body::full(framed.freeze()))
        .map_err(|e| e.to_string())?;
    let deadline = channel.timeout.unwrap_or(DEFAULT_DEADLINE);
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    if channel.timeout.is_some()
        && let Ok(v) = HeaderValue::from_str(&format!("{}m", deadline.as_millis()))
    {
        h.insert("grpc-timeout", v);
    }
    for (k, v) in &channel.initial_metadata {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(k, v);
        }
    }
    let attempt = async {
        let host = cluster.pick().ok_or("no healthy upstream")?;
        let lease = cluster
            .lease_for(host, RoutingPriority::Default, true)
            .await
            .map_err(|e| e.to_string())?;
        let resp = lease.send(req).await.map_err(|e| e.to_string())?;
        let (head, body) = resp.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", head.status));
        }
        let collected = body.collect().await.map_err(|_| "answer cut off")?;
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| head.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("2")
            .to_owned();
        if status != "0" {
            return Err(format!("grpc-status {status}"));
        }
        let body = collected.to_bytes();
        if body.len() < 5 {
            return Ok(Bytes::new());
        }
        Ok(body.slice(5..))
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| "timeout".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(buffer_bytes: u64) -> RemoteChannel {
        RemoteChannel {
            cluster: "otel".into(),
            authority: String::new(),
            timeout: None,
            initial_metadata: Vec::new(),
            log_name: "l".into(),
            flush_interval: Duration::from_secs(1),
            buffer_bytes,
            stat_prefix: "p.q".into(),
        }
    }

    fn record(body: &str) -> LogRecord {
        LogRecord {
            severity_text: body.to_owned(),
            ..LogRecord::default()
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_batches_stop_at_the_buffer_size() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stats = metrics::with_local_recorder(&recorder, || ExportStats::new("p.q"));
        let one = record("0123456789").encoded_len() as u64;
        let e = Exporter::with_capacity(channel(2 * one), Resource::default(), stats, 3);
        for i in 0..4 {
            e.push(record(&format!("012345678{i}")));
        }
        let page = handle.render();
        assert!(
            page.contains("envoy_access_logs_open_telemetry_access_log_p_q_logs_dropped 1"),
            "{page}"
        );
        assert!(
            page.contains("envoy_access_logs_open_telemetry_access_log_p_q_grpc_entries_flushed 0"),
            "{page}"
        );
        // Two records fill the 2-record buffer size; the third waits.
        let first = e.take_batch();
        assert_eq!(
            first
                .iter()
                .map(|r| r.severity_text.as_str())
                .collect::<Vec<_>>(),
            ["0123456780", "0123456781"]
        );
        assert_eq!(e.bytes.load(Ordering::Relaxed) as u64, one);
        assert_eq!(e.take_batch().len(), 1);
        assert!(e.take_batch().is_empty());
    }

    #[test]
    fn stat_names_follow_envoy() {
        assert_eq!(sanitize("my.prefix-1"), "my_prefix_1");
    }
}
