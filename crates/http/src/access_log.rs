//! The connection manager's `access_log`: what one request gathers for its
//! log entry, and the entry written when its stream ends (the response
//! body sent, or the stream reset).
//!
//! Nothing is gathered for a manager without access logs: [`UpstreamFacts`]
//! (always kept, on the request's stack) is the only per-request record,
//! and [`Pending`] is allocated only when there is a log to write. Even
//! then, request and response headers are copied only when a format or
//! filter reads them. The line is rendered on the worker and handed to
//! the writer thread's queue (`strait_access_log::LogFiles`): no lock, no
//! blocking.

use std::{
    borrow::Cow,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderMap, HeaderName, Request, Response, Version};
use strait_access_log::{DynamicMetadata, LogFiles, Record, RequestHead};
use strait_codec::Progress;
use strait_model::access_log::{AccessLogs, Needs};

use crate::conn::ConnCtx;

/// Where a request's upstream attempts went: filled by the router for
/// every forwarded request (a few stores, no allocation unless a
/// connection failed), read by the access log and the connect-failure
/// reply's details.
#[derive(Debug, Default)]
pub(crate) struct UpstreamFacts {
    /// The last attempt's host.
    pub(crate) host: Option<SocketAddr>,
    /// The local address of the last attempt's connection.
    pub(crate) local: Option<SocketAddr>,
    /// The first URI SAN of the last attempt's server certificate.
    pub(crate) peer_uri_san: Option<Arc<str>>,
    /// Attempts made (`%UPSTREAM_REQUEST_ATTEMPT_COUNT%`).
    pub(crate) attempts: u32,
    /// Why the last attempt's connection could not be made, as Envoy words
    /// it (`delayed_connect_error: Connection refused`).
    pub(crate) failure: Option<String>,
    /// The request body on its way upstream (bytes and when it ended).
    pub(crate) request_body: Option<Arc<Progress>>,
    /// Dynamic metadata the filters published, kept only when a log reads
    /// it.
    pub(crate) metadata: Option<DynamicMetadata>,
    /// Whether a log reads dynamic metadata.
    pub(crate) wants_metadata: bool,
}

/// One request's log entry while its response is on its way: written when
/// dropped (the end of the stream).
#[derive(Debug)]
pub(crate) struct Pending {
    logs: AccessLogs,
    files: Arc<LogFiles>,
    start: SystemTime,
    started: Instant,
    protocol: Version,
    request: Option<RequestHead>,
    pub(crate) route_name: Option<String>,
    pub(crate) cluster: Option<String>,
    pub(crate) upstream: UpstreamFacts,
    response_at: Option<Instant>,
    status: u16,
    flags: &'static str,
    details: Option<Cow<'static, str>>,
    response_headers: Option<HeaderMap>,
    trailers: Option<HeaderMap>,
    reads_response: bool,
    bytes_sent: u64,
    ended_at: Option<Instant>,
    local: SocketAddr,
    remote: SocketAddr,
    peer: SocketAddr,
    server_name: Option<Arc<str>>,
    peer_uri_san: Option<String>,
    local_uri_san: Option<Arc<str>>,
    /// The trace decision was forced (`traceable_filter`).
    pub(crate) trace_forced: bool,
}

impl Pending {
    /// An entry for `req` when the manager has `logs`, else `None`. Takes
    /// the request's head as the log reads it: after the connection
    /// manager's changes, before the router's. `client` is the trusted
    /// client address.
    pub(crate) fn start<B>(
        logs: &AccessLogs,
        conn: &ConnCtx,
        req: &Request<B>,
        started: Instant,
        client: std::net::IpAddr,
    ) -> Option<Box<Pending>> {
        if logs.is_empty() {
            return None;
        }
        let request = logs.iter().any(|l| l.needs().request).then(|| RequestHead {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: kept(req.headers(), logs, |n| {
                (n.all_request_headers, &n.request_headers)
            }),
        });
        let remote = if client == conn.peer.ip() {
            conn.peer
        } else {
            // An address from `x-forwarded-for` has no port (Envoy: 0).
            SocketAddr::new(client, 0)
        };
        let peer_cert = conn.peer_cert.as_deref();
        Some(Box::new(Pending {
            logs: Arc::clone(logs),
            files: Arc::clone(&conn.shared.access_logs),
            start: SystemTime::now() - started.elapsed(),
            started,
            protocol: req.version(),
            request,
            route_name: None,
            cluster: None,
            upstream: UpstreamFacts {
                wants_metadata: logs.iter().any(|l| l.needs().metadata),
                ..UpstreamFacts::default()
            },
            response_at: None,
            status: 0,
            flags: "",
            details: None,
            response_headers: None,
            trailers: None,
            reads_response: logs.iter().any(|l| l.needs().response),
            bytes_sent: 0,
            ended_at: None,
            local: conn.local,
            remote,
            peer: conn.peer,
            server_name: conn.server_name.clone(),
            peer_uri_san: peer_cert
                .filter(|c| !c.uri_sans.is_empty())
                .map(|c| c.uri_sans.join(",")),
            local_uri_san: conn.local_uri_san.clone(),
            trace_forced: false,
        }))
    }

    /// The response head as it leaves the connection manager; `reply` is
    /// a local reply's response flag and details (`None` for an upstream's
    /// response).
    pub(crate) fn response<B>(
        &mut self,
        resp: &Response<B>,
        reply: Option<(&'static str, &Cow<'static, str>)>,
    ) {
        self.status = resp.status().as_u16();
        match reply {
            Some((flag, details)) => {
                self.flags = flag;
                self.details = (!details.is_empty()).then(|| details.clone());
            }
            None => {
                // Envoy's details for a response that came from upstream.
                self.details = Some(Cow::Borrowed("via_upstream"));
                self.response_at = Some(Instant::now());
            }
        }
        if self.reads_response {
            self.response_headers = Some(kept(resp.headers(), &self.logs, response_needs));
        }
    }

    /// A response body frame went down.
    pub(crate) fn frame(&mut self, frame: &http_body::Frame<bytes::Bytes>) {
        if let Some(d) = frame.data_ref() {
            self.bytes_sent += d.len() as u64;
        } else if let Some(t) = frame.trailers_ref()
            && self.reads_response
        {
            self.trailers = Some(kept(t, &self.logs, response_needs));
        }
    }

    /// The response body ended (or failed).
    pub(crate) fn ended(&mut self) {
        self.ended_at.get_or_insert_with(Instant::now);
    }
}

/// What of a response's headers and trailers a log reads.
fn response_needs(n: &Needs) -> (bool, &[HeaderName]) {
    (n.all_response_headers, &n.response_headers)
}

/// The headers of `from` that `logs` read (`needs` says which of a log's
/// needs apply): all of them when some log reads every header (a filter,
/// a remote logger), else only those the formats name. Copying a whole
/// map and dropping it again cost more than rendering the line
/// (callgrind, `cargo xtask bench --telemetry`).
fn kept(
    from: &HeaderMap,
    logs: &AccessLogs,
    needs: impl Fn(&Needs) -> (bool, &[HeaderName]),
) -> HeaderMap {
    if logs.iter().any(|l| needs(l.needs()).0) {
        return from.clone();
    }
    let names = logs.iter().map(|l| needs(l.needs()).1.len()).sum();
    let mut out = HeaderMap::with_capacity(names);
    for (i, log) in logs.iter().enumerate() {
        for name in needs(log.needs()).1 {
            // Two logs may name the same header: keep its values once.
            if i > 0 && out.contains_key(name) {
                continue;
            }
            for v in from.get_all(name) {
                out.append(name.clone(), v.clone());
            }
        }
    }
    out
}

fn since(from: Instant, to: Instant) -> Duration {
    to.saturating_duration_since(from)
}

impl Drop for Pending {
    fn drop(&mut self) {
        let end = *self.ended_at.get_or_insert_with(Instant::now);
        let up = &self.upstream;
        let body = up.request_body.as_deref();
        let request_duration = match body {
            // A request without a body was whole when its head arrived.
            None => Some(Duration::ZERO),
            Some(p) => p.ended_at().map(|at| since(self.started, at.into_std())),
        };
        let mut r = Record::new(self.start, self.local, self.remote);
        r.downstream_direct_remote = self.peer;
        r.duration = Some(since(self.started, end));
        r.request_duration = request_duration;
        r.response_duration = self.response_at.map(|at| since(self.started, at));
        r.response_tx_duration = self.response_at.map(|at| since(at, end));
        r.protocol = Some(self.protocol);
        r.request = self.request.as_ref();
        r.response_headers = self.response_headers.as_ref();
        r.response_trailers = self.trailers.as_ref();
        r.status = self.status;
        r.flags = self.flags;
        r.details = self.details.as_deref();
        r.transport_failure = up.failure.as_deref();
        r.bytes_received = body.map_or(0, Progress::bytes);
        r.bytes_sent = self.bytes_sent;
        r.upstream_cluster = self.cluster.as_deref();
        r.upstream_host = up.host;
        r.upstream_local = up.local;
        r.attempts = Some(up.attempts);
        r.server_name = self.server_name.as_deref();
        r.route_name = self.route_name.as_deref();
        r.peer_uri_san = self.peer_uri_san.as_deref();
        r.local_uri_san = self.local_uri_san.as_deref();
        r.metadata = up.metadata.as_ref();
        r.trace_forced = self.trace_forced;
        strait_access_log::write_all(&self.files, &self.logs, &r);
    }
}
