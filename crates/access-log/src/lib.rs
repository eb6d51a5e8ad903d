//! Strait's access logs.
//!
//! Owns what an access-log entry becomes once the data path has gathered
//! it: the [`Record`] of one request or connection (borrowed from the
//! path), Envoy's command operators rendered over it ([`render`], also the
//! body of `local_reply_config` formats: one evaluator for both),
//! `AccessLogFilter`s ([`matches`]), and the writers ([`LogFiles`]: one
//! bounded queue per destination, drained by a dedicated thread, so a
//! worker never blocks on a log). [`write`] runs one configured access log
//! over a record.
//!
//! Depends on the model only; `strait-http` (requests) and
//! `strait-listener` (TCP proxy connections, listener rejections) build the
//! records. Never depends on the Envoy front end.

mod files;
mod filter;
mod format;
mod metadata;
mod record;
mod time;

pub use files::{FLUSH_BYTES, FLUSH_INTERVAL, LogFiles, QUEUE_LINES, RemoteLogs};
pub use filter::matches;
pub use format::{render, render_string};
pub use metadata::DynamicMetadata;
pub use record::{RESPONSE_FLAGS, Record, RequestHead, hostname, long_flag};
pub use time::{default_start_time, format_time};

use strait_model::access_log::{AccessLog, LogSink};

/// Writes `log`'s line for `r` if its filter accepts it. Allocates the
/// rendered line only; never blocks.
pub fn write(files: &LogFiles, log: &AccessLog, r: &Record<'_>) {
    if log.filter.as_ref().is_some_and(|f| !matches(f, r)) {
        return;
    }
    if let LogSink::OpenTelemetry(_) | LogSink::GrpcService(_) = &log.sink {
        files.remote(&log.sink, r);
        return;
    }
    let (line, _) = render(&log.format, r);
    files.write(&log.sink, line);
}

/// Writes every log of `logs` for `r`.
pub fn write_all(files: &LogFiles, logs: &[AccessLog], r: &Record<'_>) {
    for log in logs {
        write(files, log, r);
    }
}
