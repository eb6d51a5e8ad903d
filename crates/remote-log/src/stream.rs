//! One exporter per distinct gRPC access log service logger config: a
//! bounded lock-free queue the workers push entries onto, and a task on
//! the control runtime that keeps one client stream
//! (`AccessLogService/StreamAccessLogs`) open to the logger's cluster and
//! writes a message of entries every `buffer_flush_interval`, or as soon as
//! `buffer_size_bytes` wait. The first message of each stream carries the
//! identifier (the bootstrap node and `log_name`), later ones entries only.
//!
//! A worker never waits: a queued HTTP entry counts `logs_written`
//! (Envoy's "sent to the logger, not dropped, not necessarily flushed";
//! Envoy 1.40's TCP logger does not count its entries there, checked, nor
//! does Strait's), a full queue drops the entry and counts `logs_dropped`.
//! Entries handed to the stream count `grpc_entries_flushed` (the service
//! never acknowledges them). The stream is opened lazily, as Envoy's async
//! gRPC client starts one: messages wait in it while the connection is
//! made, so a collector that is down still counts them flushed, as
//! Envoy's does; the stream then fails and the next flush opens another.
//! Messages a stream that is behind (or already closed) cannot take count
//! `grpc_entries_flush_failed`.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use crossbeam_queue::ArrayQueue;
use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::accesslog::v3::{
        StreamAccessLogsMessage,
        access_log_service_client::AccessLogServiceClient,
        stream_access_logs_message::{
            HttpAccessLogEntries, Identifier, LogEntries, TcpAccessLogEntries,
        },
    },
};
use hyper_util::rt::TokioIo;
use metrics::Counter;
use strait_model::access_log::RemoteChannel;
use strait_upstream::{ClusterRegistry, UpstreamStream};
use tokio::{sync::Notify, task::JoinHandle};
use tonic::{
    codegen::{Service, http::Uri, tokio_stream::wrappers::ReceiverStream},
    metadata::{AsciiMetadataKey, AsciiMetadataValue},
    transport::Endpoint,
};

use crate::als::Entry;

/// Entries one exporter holds before it drops.
const QUEUE_ENTRIES: usize = 8 * 1024;

/// Messages written onto a stream but not yet taken by its connection: a
/// stream this far behind is not keeping up, and a message that finds it
/// full is dropped rather than waited for.
const STREAM_QUEUE: usize = 8;

/// How long opening a stream (connecting to the cluster's host) may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `access_logs.grpc_access_log.*`, as Envoy's gRPC access log service
/// loggers count (no stat prefix in their config).
#[derive(Debug)]
pub(crate) struct StreamStats {
    logs_written: Counter,
    logs_dropped: Counter,
    flushed: Counter,
    flush_failed: Counter,
}

impl StreamStats {
    pub(crate) fn new() -> Self {
        StreamStats {
            logs_written: metrics::counter!("envoy_access_logs_grpc_access_log_logs_written"),
            logs_dropped: metrics::counter!("envoy_access_logs_grpc_access_log_logs_dropped"),
            flushed: metrics::counter!("envoy_access_logs_grpc_access_log_grpc_entries_flushed"),
            flush_failed: metrics::counter!(
                "envoy_access_logs_grpc_access_log_grpc_entries_flush_failed"
            ),
        }
    }
}

/// One logger config's queue and stream state.
#[derive(Debug)]
pub(crate) struct StreamExporter {
    queue: ArrayQueue<Entry>,
    bytes: AtomicUsize,
    wake: Notify,
    channel: RemoteChannel,
    node: Option<Node>,
    stats: Arc<StreamStats>,
}

/// An open stream: where messages are written, and the call (ended when
/// the server or the connection ends the stream).
struct Open {
    tx: tokio::sync::mpsc::Sender<StreamAccessLogsMessage>,
    call: JoinHandle<()>,
    /// The identifier goes in the stream's first message only.
    identified: bool,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.call.abort();
    }
}

impl StreamExporter {
    pub(crate) fn new(channel: RemoteChannel, node: Option<Node>, stats: Arc<StreamStats>) -> Self {
        Self::with_capacity(channel, node, stats, QUEUE_ENTRIES)
    }

    fn with_capacity(
        channel: RemoteChannel,
        node: Option<Node>,
        stats: Arc<StreamStats>,
        entries: usize,
    ) -> Self {
        StreamExporter {
            queue: ArrayQueue::new(entries),
            bytes: AtomicUsize::new(0),
            wake: Notify::new(),
            channel,
            node,
            stats,
        }
    }

    /// Queues `entry` (worker side): never waits.
    pub(crate) fn push(&self, entry: Entry) {
        let len = entry.encoded_len();
        let http = matches!(entry, Entry::Http(_));
        if self.queue.push(entry).is_err() {
            self.stats.logs_dropped.increment(1);
            return;
        }
        if http {
            self.stats.logs_written.increment(1);
        }
        let waiting = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
        if u64::try_from(waiting).unwrap_or(u64::MAX) >= self.channel.buffer_bytes {
            self.wake.notify_one();
        }
    }

    /// The exporter's task.
    pub(crate) async fn run(self: Arc<Self>, upstreams: Arc<ClusterRegistry>) {
        let mut open: Option<Open> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.channel.flush_interval) => {}
                () = self.wake.notified() => {}
            }
            // No logger uses this exporter any more and nothing waits.
            if Arc::strong_count(&self) == 1 && self.queue.is_empty() {
                return;
            }
            loop {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                let n = batch.len() as u64;
                let o = match &mut open {
                    Some(o) if !o.call.is_finished() => o,
                    slot => slot.insert(self.open(&upstreams)),
                };
                let msg = self.message(batch, !o.identified);
                match o.tx.try_send(msg) {
                    Ok(()) => {
                        o.identified = true;
                        self.stats.flushed.increment(n);
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        self.stats.flush_failed.increment(n);
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                        self.stats.flush_failed.increment(n);
                        open = None;
                    }
                }
                if (self.bytes.load(Ordering::Relaxed) as u64) < self.channel.buffer_bytes {
                    break;
                }
            }
        }
    }

    /// Entries up to `buffer_size_bytes` (at least one), of one kind (a
    /// message carries HTTP or TCP entries; a logger makes one kind).
    fn take_batch(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut size = 0u64;
        while size < self.channel.buffer_bytes.max(1) {
            let Some(e) = self.queue.pop() else { break };
            let len = e.encoded_len();
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            size += len as u64;
            out.push(e);
        }
        out
    }

    fn message(&self, batch: Vec<Entry>, identify: bool) -> StreamAccessLogsMessage {
        let mut http = Vec::new();
        let mut tcp = Vec::new();
        for e in batch {
            match e {
                Entry::Http(h) => http.push(*h),
                Entry::Tcp(t) => tcp.push(*t),
            }
        }
        let log_entries = if tcp.is_empty() {
            LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: http })
        } else {
            LogEntries::TcpLogs(TcpAccessLogEntries { log_entry: tcp })
        };
        StreamAccessLogsMessage {
            identifier: identify.then(|| Identifier {
                node: self.node.clone(),
                log_name: self.channel.log_name.clone(),
            }),
            log_entries: Some(log_entries),
        }
    }

    /// Starts a stream to a host of the logger's cluster (connected when
    /// its first message is sent).
    fn open(&self, upstreams: &Arc<ClusterRegistry>) -> Open {
        // Envoy's `envoy_grpc` sends the authority (the cluster name when
        // unset); a name that is no URI authority gets a neutral one. The
        // connector ignores the URI.
        let authority = if self.channel.authority.is_empty() {
            &self.channel.cluster
        } else {
            &self.channel.authority
        };
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))
            .unwrap_or_else(|_| Endpoint::from_static("http://localhost"));
        let connector = ClusterConnector {
            registry: Arc::clone(upstreams),
            cluster: Arc::from(self.channel.cluster.as_str()),
        };
        let transport = endpoint
            .connect_timeout(CONNECT_DEADLINE)
            .connect_with_connector_lazy(connector);
        let mut client = AccessLogServiceClient::new(transport);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        for (k, v) in &self.channel.initial_metadata {
            if let (Ok(k), Ok(v)) = (
                k.parse::<AsciiMetadataKey>(),
                v.parse::<AsciiMetadataValue>(),
            ) {
                request.metadata_mut().append(k, v);
            }
        }
        let cluster = self.channel.cluster.clone();
        let call = tokio::spawn(async move {
            if let Err(e) = client.stream_access_logs(request).await {
                tracing::debug!(%cluster, error = %e, "access log stream ended");
            }
        });
        Open {
            tx,
            call,
            identified: false,
        }
    }
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
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (registry, name) = (Arc::clone(&self.registry), Arc::clone(&self.cluster));
        Box::pin(async move {
            let cluster = registry
                .get(&name)
                .ok_or_else(|| format!("no cluster {name}"))?;
            let host = cluster
                .pick()
                .ok_or_else(|| format!("no healthy host in {name}"))?;
            Ok(TokioIo::new(cluster.connect_tcp(&host).await?))
        })
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::data::accesslog::v3::{ConnectionProperties, TcpAccessLogEntry};

    use super::*;

    fn channel(buffer_bytes: u64) -> RemoteChannel {
        RemoteChannel {
            cluster: "als".into(),
            authority: String::new(),
            timeout: None,
            initial_metadata: Vec::new(),
            log_name: "l".into(),
            flush_interval: Duration::from_secs(1),
            buffer_bytes,
            stat_prefix: String::new(),
        }
    }

    fn tcp(bytes: u64) -> Entry {
        Entry::Tcp(Box::new(TcpAccessLogEntry {
            common_properties: None,
            connection_properties: Some(ConnectionProperties {
                received_bytes: bytes,
                sent_bytes: bytes,
            }),
        }))
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_only_the_first_message_identifies() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stats = Arc::new(metrics::with_local_recorder(&recorder, StreamStats::new));
        let one = tcp(100).encoded_len() as u64;
        let node = Node {
            id: "n".into(),
            ..Node::default()
        };
        let e = StreamExporter::with_capacity(channel(2 * one), Some(node), stats, 3);
        for i in 0..4 {
            e.push(tcp(100 + i));
        }
        let page = handle.render();
        assert!(
            page.contains("envoy_access_logs_grpc_access_log_logs_dropped 1"),
            "{page}"
        );
        // TCP entries are not counted written (as Envoy 1.40's TCP logger).
        assert!(
            page.contains("envoy_access_logs_grpc_access_log_logs_written 0"),
            "{page}"
        );
        let first = e.message(e.take_batch(), true);
        let Some(LogEntries::TcpLogs(t)) = &first.log_entries else {
            panic!("{first:?}")
        };
        assert_eq!(t.log_entry.len(), 2);
        let id = first.identifier.expect("identifier");
        assert_eq!(
            (id.node.map(|n| n.id), id.log_name),
            (Some("n".into()), "l".into())
        );
        let second = e.message(e.take_batch(), false);
        assert!(second.identifier.is_none());
        assert!(e.take_batch().is_empty());
        e.push(Entry::Http(Box::default()));
        let page = handle.render();
        assert!(
            page.contains("envoy_access_logs_grpc_access_log_logs_written 1"),
            "{page}"
        );
        let http = e.message(e.take_batch(), false);
        assert!(matches!(http.log_entries, Some(LogEntries::HttpLogs(_))));
    }
}
