//! Where log lines go: one bounded lock-free queue per destination (file
//! path, stdout, stderr), drained by one dedicated writer thread. A worker
//! only pushes a rendered line onto a queue; it never waits on the disk,
//! a lock or the writer. The writer flushes every `flush_interval` (Envoy's
//! `file_flush_interval_msec`, 1 s by default) and as soon as a queue holds
//! more than [`FLUSH_BYTES`]; when it falls behind and a queue is full, the
//! line is dropped and counted (`filesystem.write_dropped`).
//!
//! Files are opened by the writer (append, created when missing) on first
//! use, shared by every logger naming the same path as Envoy shares them,
//! and reopened on [`LogFiles::reopen`] (`SIGUSR1`, `POST /reopen_logs`)
//! so a rotated file is let go. Stats are Envoy's `filesystem.*`.

use std::{
    collections::HashMap,
    fs::File,
    io::Write as _,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use metrics::{Counter, Gauge};
use strait_model::access_log::LogSink;

/// Lines a destination may hold before the writer takes them; past it
/// lines are dropped (a 1 s flush interval at 16k lines is far beyond what
/// a proxy on this hardware logs).
pub const QUEUE_LINES: usize = 16 * 1024;
/// Bytes waiting in one queue that wake the writer before its timer
/// (Envoy's `min_flush_size`, 64 KiB).
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Envoy's default `file_flush_interval_msec`.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Envoy's `filesystem.*` stats, plus Strait's `write_dropped`.
#[derive(Debug)]
struct FileStats {
    write_buffered: Counter,
    write_completed: Counter,
    write_failed: Counter,
    flushed_by_timer: Counter,
    reopen_failed: Counter,
    write_dropped: Counter,
    write_total_buffered: Gauge,
}

impl FileStats {
    fn new() -> Self {
        FileStats {
            write_buffered: metrics::counter!("envoy_filesystem_write_buffered"),
            write_completed: metrics::counter!("envoy_filesystem_write_completed"),
            write_failed: metrics::counter!("envoy_filesystem_write_failed"),
            flushed_by_timer: metrics::counter!("envoy_filesystem_flushed_by_timer"),
            reopen_failed: metrics::counter!("envoy_filesystem_reopen_failed"),
            write_dropped: metrics::counter!("envoy_filesystem_write_dropped"),
            write_total_buffered: metrics::gauge!("envoy_filesystem_write_total_buffered"),
        }
    }
}

/// A local destination: what [`LogFiles`] keys its queues by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dest {
    File(String),
    Stdout,
    Stderr,
}

impl Dest {
    /// `None` for a remote sink (not written here).
    fn of(sink: &LogSink) -> Option<Dest> {
        match sink {
            LogSink::File(p) => Some(Dest::File(p.clone())),
            LogSink::Stdout => Some(Dest::Stdout),
            LogSink::Stderr => Some(Dest::Stderr),
            LogSink::OpenTelemetry(_) | LogSink::GrpcService(_) => None,
        }
    }
}

/// One destination's lines waiting for the writer.
#[derive(Debug)]
struct Queue {
    lines: ArrayQueue<Vec<u8>>,
    bytes: AtomicUsize,
}

#[derive(Debug)]
struct Inner {
    queues: ArcSwap<HashMap<Dest, Arc<Queue>>>,
    stats: FileStats,
    /// Bumped by [`LogFiles::reopen`]; the writer reopens its files when it
    /// sees a new value.
    reopen: AtomicU64,
    stop: AtomicBool,
    /// Milliseconds between timed flushes.
    flush_interval_ms: AtomicU64,
    /// Wakes the writer early; set once it runs.
    writer: OnceLock<std::thread::Thread>,
}

/// Loggers that send records to a service (OpenTelemetry's OTLP, Envoy's
/// gRPC access log service). They speak protobuf over gRPC, which this
/// data-tier crate does not: a control-tier crate implements this and the
/// composition hands it to [`LogFiles::set_remote`].
pub trait RemoteLogs: Send + Sync {
    /// Takes `r` for `sink`. Runs on the worker that logs, so it must never
    /// block or wait: build the record, queue it (dropping and counting it
    /// when the queue is full), return.
    fn log(&self, sink: &LogSink, r: &crate::Record<'_>);
}

/// Every access-log destination of a proxy, and its writer thread.
pub struct LogFiles {
    inner: Arc<Inner>,
    handle: OnceLock<JoinHandle<()>>,
    remote: OnceLock<Arc<dyn RemoteLogs>>,
}

impl std::fmt::Debug for LogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFiles")
            .field("inner", &self.inner)
            .field("remote", &self.remote.get().is_some())
            .finish_non_exhaustive()
    }
}

impl LogFiles {
    /// No destination yet; stat handles register with `recorder`. The
    /// writer thread starts with the first line.
    pub fn new(recorder: &(dyn metrics::Recorder + Send + Sync)) -> Self {
        Self::with_interval(recorder, FLUSH_INTERVAL)
    }

    /// As [`LogFiles::new`], flushing every `flush_interval`.
    pub fn with_interval(
        recorder: &(dyn metrics::Recorder + Send + Sync),
        flush_interval: Duration,
    ) -> Self {
        let stats = metrics::with_local_recorder(recorder, FileStats::new);
        LogFiles {
            inner: Arc::new(Inner {
                queues: ArcSwap::default(),
                stats,
                reopen: AtomicU64::new(0),
                stop: AtomicBool::new(false),
                flush_interval_ms: AtomicU64::new(millis(flush_interval)),
                writer: OnceLock::new(),
            }),
            handle: OnceLock::new(),
            remote: OnceLock::new(),
        }
    }

    /// Where remote sinks' records go; set once by the composition.
    pub fn set_remote(&self, remote: Arc<dyn RemoteLogs>) {
        if self.remote.set(remote).is_err() {
            tracing::warn!("remote access loggers were already set");
        }
    }

    /// Hands `r` to the remote logger of `sink`. Without one (a proxy
    /// composed without remote loggers) the record is dropped: the front
    /// end only accepts remote loggers where the composition sets one.
    pub fn remote(&self, sink: &LogSink, r: &crate::Record<'_>) {
        match self.remote.get() {
            Some(remote) => remote.log(sink, r),
            None => tracing::debug!("no remote access logger; record dropped"),
        }
    }

    /// Queues `line` for `sink`. Never blocks: one lock-free lookup and one
    /// push (a new destination is registered once, copy-on-write). A full
    /// queue drops the line and counts it.
    pub fn write(&self, sink: &LogSink, line: Vec<u8>) {
        let queue = match sink {
            LogSink::File(p) => self.queue_for(|d| matches!(d, Dest::File(f) if f == p), sink),
            LogSink::Stdout => self.queue_for(|d| *d == Dest::Stdout, sink),
            LogSink::Stderr => self.queue_for(|d| *d == Dest::Stderr, sink),
            // Remote sinks go through `remote()`.
            LogSink::OpenTelemetry(_) | LogSink::GrpcService(_) => return,
        };
        let len = line.len();
        if queue.lines.push(line).is_err() {
            self.inner.stats.write_dropped.increment(1);
            self.wake();
            return;
        }
        self.inner.stats.write_buffered.increment(1);
        let before = queue.bytes.fetch_add(len, Ordering::Relaxed);
        // Wake the writer only on the push that crosses the threshold: the
        // writer shares the worker's core, so until it runs every later
        // push would pay for another futex wake (`unpark` keeps its token,
        // so a wake while the writer is busy is not lost).
        if (before < FLUSH_BYTES && before + len >= FLUSH_BYTES) || queue.lines.is_full() {
            self.wake();
        }
    }

    /// Changes the timed flush interval (`--file-flush-interval-msec`).
    pub fn set_flush_interval(&self, interval: Duration) {
        self.inner
            .flush_interval_ms
            .store(millis(interval), Ordering::Relaxed);
        self.wake();
    }

    /// Reopens every file at the next flush (log rotation): `SIGUSR1` and
    /// `POST /reopen_logs`.
    pub fn reopen(&self) {
        self.inner.reopen.fetch_add(1, Ordering::AcqRel);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = self.inner.writer.get() {
            t.unpark();
        }
    }

    /// The queue of `sink`'s destination, found without allocating (the
    /// map holds a handful of destinations), registered on first use.
    fn queue_for(&self, is: impl Fn(&Dest) -> bool, sink: &LogSink) -> Arc<Queue> {
        let found = self
            .inner
            .queues
            .load()
            .iter()
            .find(|(d, _)| is(d))
            .map(|(_, q)| Arc::clone(q));
        match found {
            Some(q) => q,
            None => self.register(sink),
        }
    }

    fn register(&self, sink: &LogSink) -> Arc<Queue> {
        let Some(dest) = Dest::of(sink) else {
            // Unreachable for the callers; a queue nobody drains is harmless.
            return Arc::new(Queue {
                lines: ArrayQueue::new(1),
                bytes: AtomicUsize::new(0),
            });
        };
        let made = Arc::new(Queue {
            lines: ArrayQueue::new(QUEUE_LINES),
            bytes: AtomicUsize::new(0),
        });
        self.inner.queues.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(dest.clone()).or_insert_with(|| Arc::clone(&made));
            m
        });
        self.start_writer();
        self.inner.queues.load().get(&dest).cloned().unwrap_or(made)
    }

    fn start_writer(&self) {
        self.handle.get_or_init(|| {
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("strait-access-log".into())
                .spawn(move || {
                    let _ = inner.writer.set(std::thread::current());
                    Writer::default().run(&inner);
                });
            match spawned {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "access log writer thread did not start");
                    // Lines will be dropped and counted as the queues fill.
                    std::thread::spawn(|| {})
                }
            }
        });
    }
}

impl Drop for LogFiles {
    /// Flushes what is queued and stops the writer.
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The writer thread's own state: open files, and the reopen generation
/// they belong to.
#[derive(Default)]
struct Writer {
    files: HashMap<String, File>,
    generation: u64,
    /// Paths opened before, so a failed open after a reopen counts as
    /// `reopen_failed`.
    opened: std::collections::HashSet<String>,
}

impl Writer {
    fn run(mut self, inner: &Inner) {
        let mut last_timer = Instant::now();
        loop {
            let stopping = inner.stop.load(Ordering::Acquire);
            let generation = inner.reopen.load(Ordering::Acquire);
            if generation != self.generation {
                self.generation = generation;
                // Closing is enough: each file is opened again (by path)
                // at its next write.
                self.files.clear();
            }
            let interval = Duration::from_millis(inner.flush_interval_ms.load(Ordering::Relaxed));
            let by_timer = last_timer.elapsed() >= interval;
            if by_timer {
                last_timer = Instant::now();
            }
            self.flush(inner, by_timer);
            if stopping {
                return;
            }
            let wait = interval.saturating_sub(last_timer.elapsed());
            std::thread::park_timeout(wait.max(Duration::from_millis(1)));
        }
    }

    fn flush(&mut self, inner: &Inner, by_timer: bool) {
        let queues = inner.queues.load();
        let mut total = 0usize;
        for (sink, q) in queues.iter() {
            let mut buf = Vec::new();
            while let Some(line) = q.lines.pop() {
                q.bytes.fetch_sub(line.len(), Ordering::Relaxed);
                buf.extend_from_slice(&line);
            }
            total += q.bytes.load(Ordering::Relaxed);
            if buf.is_empty() {
                continue;
            }
            if by_timer {
                inner.stats.flushed_by_timer.increment(1);
            }
            match self.write(inner, sink, &buf) {
                Ok(()) => inner.stats.write_completed.increment(1),
                Err(e) => {
                    inner.stats.write_failed.increment(1);
                    tracing::warn!(?sink, error = %e, "access log write failed");
                }
            }
        }
        inner.stats.write_total_buffered.set(total as f64);
    }

    fn write(&mut self, inner: &Inner, sink: &Dest, buf: &[u8]) -> std::io::Result<()> {
        match sink {
            Dest::Stdout => std::io::stdout().lock().write_all(buf),
            Dest::Stderr => std::io::stderr().lock().write_all(buf),
            Dest::File(path) => {
                if !self.files.contains_key(path) {
                    let opened = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(path);
                    match opened {
                        Ok(f) => {
                            self.files.insert(path.clone(), f);
                            self.opened.insert(path.clone());
                        }
                        Err(e) => {
                            if self.opened.contains(path) {
                                inner.stats.reopen_failed.increment(1);
                            }
                            return Err(e);
                        }
                    }
                }
                match self.files.get_mut(path) {
                    Some(f) => f.write_all(buf),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn writes_flush_and_reopen() {
        let dir = std::env::temp_dir().join(format!("strait-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.log");
        let rotated = dir.join("a.log.1");
        let _ = std::fs::remove_file(&path);
        let recorder = metrics::NoopRecorder;
        let files = LogFiles::with_interval(&recorder, Duration::from_millis(20));
        let sink = LogSink::File(path.to_string_lossy().into_owned());
        files.write(&sink, b"one\n".to_vec());
        eventually("the first line", || {
            std::fs::read_to_string(&path).is_ok_and(|s| s == "one\n")
        });
        std::fs::rename(&path, &rotated).expect("rotate");
        files.write(&sink, b"two\n".to_vec());
        eventually("the second line in the rotated file", || {
            std::fs::read_to_string(&rotated).is_ok_and(|s| s == "one\ntwo\n")
        });
        files.reopen();
        files.write(&sink, b"three\n".to_vec());
        eventually("a new file after reopen", || {
            std::fs::read_to_string(&path).is_ok_and(|s| s == "three\n")
        });
        files.write(&sink, b"last\n".to_vec());
        drop(files);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "three\nlast\n",
            "dropping flushes"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
