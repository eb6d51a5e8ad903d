//! Per-host connection pools and the lease a request holds while it uses one.

use std::{
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use strait_codec::{Body, ClientConn, ConnectError, Protocol};
use strait_tls::{ClientTlsStream, DefaultAlpn, MaybeTls};
use tokio::{net::TcpStream, sync::Notify};

use crate::{
    breaker::{BreakerCounts, BreakerGuard, RoutingPriority},
    cluster::Cluster,
    host::{Host, HostCounters},
    outlier::Outcome,
};

/// Idle HTTP/1.1 connections kept per host. Beyond this, a returned
/// connection is closed.
const MAX_IDLE_PER_HOST: usize = 256;

/// Why a request could not be sent or answered upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The connection failed after it was made, before response headers.
    #[error("connection termination: {0}")]
    Reset(#[source] hyper::Error),
    /// A circuit breaker is open (`max_requests`, `max_pending_requests` or
    /// `max_connections`): Envoy answers 503 with flag `UO`.
    #[error("overflow")]
    Overflow,
}

impl UpstreamError {
    /// True when the request never reached the upstream application.
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, UpstreamError::Connect(_))
    }
}

/// Counts one open connection against the cluster's `max_connections` and
/// the host's `cx_active`; released when the connection is dropped.
#[derive(Debug)]
struct CxGuard {
    cluster: Arc<BreakerCounts>,
    host: Arc<HostCounters>,
    /// The pool's epoch when the connection was opened: after a
    /// [`Pool::clear`] (new transport or protocol) it is stale and never
    /// pooled or shared again, even if it was in use during the clear.
    epoch: u64,
}

impl Drop for CxGuard {
    fn drop(&mut self) {
        self.cluster.connections.fetch_sub(1, Ordering::AcqRel);
        self.host.cx_active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pooled HTTP/1.1 connection with what the pool limits need.
#[derive(Debug)]
struct PooledConn {
    conn: ClientConn,
    _cx: CxGuard,
    /// Requests sent on it so far (`max_requests_per_connection`).
    uses: u32,
    /// When it last went idle (`idle_timeout`).
    idle_since: Instant,
}

/// A shared HTTP/2 connection of a host.
#[derive(Debug)]
pub(crate) struct SharedConn {
    conn: ClientConn,
    _cx: CxGuard,
    /// Streams ever started on it (`max_requests_per_connection`).
    uses: AtomicU64,
    /// Streams open on it now (`max_concurrent_streams`).
    active: AtomicU32,
}

/// The idle stack, allocated when the first connection is returned: the
/// 256 slots are kilobytes per host, and most hosts of a large EDS cluster
/// never get a connection (50,000 endpoints made a gigabyte of empty
/// queues). Reading an unallocated one is one atomic load.
#[derive(Debug, Default)]
struct IdleQueue(OnceLock<ArrayQueue<PooledConn>>);

impl IdleQueue {
    fn pop(&self) -> Option<PooledConn> {
        self.0.get()?.pop()
    }

    fn push(&self, c: PooledConn) -> Result<(), PooledConn> {
        self.0
            .get_or_init(|| ArrayQueue::new(MAX_IDLE_PER_HOST))
            .push(c)
    }

    fn len(&self) -> usize {
        self.0.get().map_or(0, ArrayQueue::len)
    }
}

/// A host's connections: a lock-free stack of idle HTTP/1.1 connections, or
/// shared HTTP/2 connections (usually one; another is opened when every one
/// has `max_concurrent_streams` open or has served its requests).
#[derive(Debug)]
pub(crate) struct Pool {
    idle: IdleQueue,
    h2: ArcSwap<Vec<Arc<SharedConn>>>,
    /// Held while an HTTP/2 connection is being made, so a burst of requests
    /// on a cold pool opens one connection and multiplexes onto it (as
    /// Envoy's pool does) instead of opening one each. Only the connect path
    /// takes it; a request that finds the shared connection never does.
    h2_connecting: tokio::sync::Mutex<()>,
    /// HTTP/2 connect attempts that failed: requests that waited on a failed
    /// attempt fail with it rather than each retrying in turn.
    h2_failures: AtomicU64,
    /// Wakes requests pending on `max_connections` when a connection is
    /// returned or closed.
    released: Notify,
    /// Bumped by [`Pool::clear`]; connections of an older epoch are closed
    /// instead of reused.
    epoch: AtomicU64,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Pool {
            idle: IdleQueue::default(),
            h2: ArcSwap::from_pointee(Vec::new()),
            h2_connecting: tokio::sync::Mutex::new(()),
            h2_failures: AtomicU64::new(0),
            released: Notify::new(),
            epoch: AtomicU64::new(0),
        }
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    /// Closes every pooled connection and retires the ones in use: a
    /// connection checked out now (or still connecting) is not pooled when
    /// its request ends.
    pub(crate) fn clear(&self) {
        // Bumped first: a connection returned while the queue drains below
        // is either popped here or recognised as stale when taken.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        while self.idle.pop().is_some() {}
        self.h2.store(Arc::new(Vec::new()));
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Pools an HTTP/1.1 connection unless it is stale.
    fn push_idle(&self, c: PooledConn) {
        if c._cx.epoch == self.epoch() {
            let _ = self.idle.push(c);
        }
    }

    /// Closes idle connections older than `timeout`, and a shared HTTP/2
    /// connection that has closed (GOAWAY or error). Control runtime only.
    pub(crate) fn sweep(&self, timeout: Option<Duration>) {
        let n = self.idle.len();
        let epoch = self.epoch();
        let mut closed = false;
        for _ in 0..n {
            let Some(c) = self.idle.pop() else { break };
            let expired = timeout.is_some_and(|t| c.idle_since.elapsed() >= t);
            if expired || c.conn.is_closed() || c._cx.epoch != epoch {
                closed = true;
                continue;
            }
            let _ = self.idle.push(c);
        }
        if self.h2.load().iter().any(|s| s.conn.is_closed()) {
            let live = self.h2_live(None);
            self.h2.store(Arc::new(live));
            closed = true;
        }
        if closed {
            self.released.notify_waiters();
        }
    }

    /// An idle, ready connection, if the pool has one. Connections that
    /// closed or outstayed `idle_timeout` while idle are dropped here.
    fn take_idle(&self, idle_timeout: Option<Duration>) -> Option<PooledConn> {
        let epoch = self.epoch();
        while let Some(c) = self.idle.pop() {
            let expired = idle_timeout.is_some_and(|t| c.idle_since.elapsed() >= t);
            if c.conn.is_ready() && !expired && c._cx.epoch == epoch {
                return Some(c);
            }
        }
        None
    }

    /// A stream on a shared HTTP/2 connection that is open (not after
    /// GOAWAY), has served fewer than `max_requests` streams and has fewer
    /// than `max_streams` open; `None` when none has room.
    fn take_shared(&self, limits: H2Limits) -> Option<(ClientConn, StreamSlot)> {
        let epoch = self.epoch();
        for s in self.h2.load().iter() {
            if s.conn.is_closed() || s._cx.epoch != epoch {
                continue;
            }
            let open = s.active.fetch_add(1, Ordering::AcqRel);
            if limits.max_streams.is_some_and(|m| open >= m) {
                s.active.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let slot = StreamSlot(Arc::clone(s));
            let used = s.uses.fetch_add(1, Ordering::Relaxed);
            if limits.max_requests.is_some_and(|m| used >= u64::from(m)) {
                continue;
            }
            if let Some(c) = s.conn.share() {
                return Some((c, slot));
            }
        }
        None
    }

    /// The shared connections still usable for new streams.
    fn h2_live(&self, max_requests: Option<u32>) -> Vec<Arc<SharedConn>> {
        let epoch = self.epoch();
        self.h2
            .load()
            .iter()
            .filter(|s| {
                !s.conn.is_closed()
                    && s._cx.epoch == epoch
                    && max_requests.is_none_or(|m| s.uses.load(Ordering::Relaxed) < u64::from(m))
            })
            .cloned()
            .collect()
    }
}

/// Per-connection limits of HTTP/2 pooling.
#[derive(Debug, Clone, Copy)]
struct H2Limits {
    max_requests: Option<u32>,
    max_streams: Option<u32>,
}

/// One open stream on a shared HTTP/2 connection, released when the
/// request's response is done.
#[derive(Debug)]
struct StreamSlot(Arc<SharedConn>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a request holds from lease to the end of its response body: its
/// breaker slot and its place in the host's active-request count.
#[derive(Debug)]
struct InFlight {
    _rq: BreakerGuard,
    host: Arc<HostCounters>,
    /// Its stream on a shared HTTP/2 connection.
    _stream: Option<StreamSlot>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.host.rq_active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection checked out of a host's pool for one request.
#[derive(Debug)]
pub struct Lease {
    conn: ClientConn,
    /// The pool entry to return, for HTTP/1.1.
    pooled: Option<(CxGuard, u32)>,
    in_flight: InFlight,
    host: Arc<Host>,
    cluster: Arc<Cluster>,
    started: Instant,
}

impl Cluster {
    /// Checks out a connection to `host` at the default routing priority,
    /// opening one if none is idle.
    pub async fn lease(self: &Arc<Self>, host: Arc<Host>) -> Result<Lease, UpstreamError> {
        self.lease_with(host, RoutingPriority::Default).await
    }

    /// Checks out a connection to `host` under the circuit breakers of
    /// `priority`. Fails with [`UpstreamError::Overflow`] when a breaker is
    /// open. A request that finds `max_connections` reached waits (as a
    /// pending request, up to `connect_timeout`) for a connection to free.
    pub async fn lease_with(
        self: &Arc<Self>,
        host: Arc<Host>,
        priority: RoutingPriority,
    ) -> Result<Lease, UpstreamError> {
        self.lease_for(host, priority, false).await
    }

    /// Like [`Cluster::lease_with`] for a request that came over HTTP/2
    /// (`downstream_h2`) or not, which decides the protocol of clusters
    /// with `use_downstream_protocol_config`.
    pub async fn lease_for(
        self: &Arc<Self>,
        host: Arc<Host>,
        priority: RoutingPriority,
        downstream_h2: bool,
    ) -> Result<Lease, UpstreamError> {
        let rq = self
            .acquire_request(priority)
            .ok_or(UpstreamError::Overflow)?;
        host.counters.rq_active.fetch_add(1, Ordering::AcqRel);
        host.counters.rq_total.fetch_add(1, Ordering::Relaxed);
        let mut in_flight = InFlight {
            _rq: rq,
            host: Arc::clone(&host.counters),
            _stream: None,
        };
        let protocol = self.protocol(downstream_h2);
        let pool_opts = self.spec.load().pool;
        let (conn, pooled) = match protocol {
            Protocol::Http1 => {
                self.lease_h1(&host, priority, pool_opts.idle_timeout)
                    .await?
            }
            Protocol::Http2 => {
                let limits = H2Limits {
                    max_requests: pool_opts.max_requests_per_connection,
                    max_streams: pool_opts.max_concurrent_streams,
                };
                let (conn, slot) = self.lease_h2(&host, limits).await?;
                in_flight._stream = Some(slot);
                (conn, None)
            }
        };
        Ok(Lease {
            conn,
            pooled,
            in_flight,
            host,
            cluster: Arc::clone(self),
            started: Instant::now(),
        })
    }

    async fn lease_h1(
        &self,
        host: &Arc<Host>,
        priority: RoutingPriority,
        idle_timeout: Option<Duration>,
    ) -> Result<(ClientConn, Option<(CxGuard, u32)>), UpstreamError> {
        if let Some(c) = host.pool.take_idle(idle_timeout) {
            return Ok((c.conn, Some((c._cx, c.uses))));
        }
        if !self.connection_allowed() {
            let _pending = self
                .acquire_pending(priority)
                .ok_or(UpstreamError::Overflow)?;
            let deadline = tokio::time::Instant::now() + self.connect_timeout();
            loop {
                let released = host.pool.released.notified();
                if let Some(c) = host.pool.take_idle(idle_timeout) {
                    return Ok((c.conn, Some((c._cx, c.uses))));
                }
                if self.breakers.connections.load(Ordering::Acquire)
                    < u64::from(self.spec.load().circuit_breakers.default.max_connections)
                {
                    break;
                }
                if tokio::time::timeout_at(deadline, released).await.is_err() {
                    self.stats.rq_pending_overflow.increment(1);
                    return Err(UpstreamError::Overflow);
                }
            }
        }
        let (conn, cx) = self.connect(host, Protocol::Http1).await?;
        Ok((conn, Some((cx, 0))))
    }

    async fn lease_h2(
        &self,
        host: &Arc<Host>,
        limits: H2Limits,
    ) -> Result<(ClientConn, StreamSlot), UpstreamError> {
        if let Some(c) = host.pool.take_shared(limits) {
            return Ok(c);
        }
        let failures = host.pool.h2_failures.load(Ordering::Acquire);
        let _connecting = host.pool.h2_connecting.lock().await;
        if let Some(c) = host.pool.take_shared(limits) {
            return Ok(c);
        }
        if host.pool.h2_failures.load(Ordering::Acquire) != failures {
            return Err(UpstreamError::Connect(ConnectError::Io(
                std::io::Error::other("shared HTTP/2 connection attempt failed"),
            )));
        }
        if !self.connection_allowed() {
            return Err(UpstreamError::Overflow);
        }
        match self.connect(host, Protocol::Http2).await {
            Ok((conn, cx)) => {
                let lease = conn.share();
                let shared = Arc::new(SharedConn {
                    conn,
                    _cx: cx,
                    uses: AtomicU64::new(1),
                    active: AtomicU32::new(1),
                });
                let slot = StreamSlot(Arc::clone(&shared));
                // Connections that are closed or used up leave the list
                // (their open streams keep them alive until they end).
                let mut live = host.pool.h2_live(limits.max_requests);
                live.push(shared);
                host.pool.h2.store(Arc::new(live));
                Ok((lease.ok_or(UpstreamError::Overflow)?, slot))
            }
            Err(e) => {
                host.pool.h2_failures.fetch_add(1, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Opens a new connection to `host`, counted against `max_connections`.
    async fn connect(
        &self,
        host: &Arc<Host>,
        protocol: Protocol,
    ) -> Result<(ClientConn, CxGuard), UpstreamError> {
        let bytes = Arc::clone(&self.stats.bytes);
        // Counted before the attempt so concurrent connects respect the limit.
        self.breakers.connections.fetch_add(1, Ordering::AcqRel);
        host.counters.cx_active.fetch_add(1, Ordering::AcqRel);
        let cx = CxGuard {
            cluster: Arc::clone(&self.breakers),
            host: Arc::clone(&host.counters),
            // Read before the transport (in `open`), so a transport change
            // racing this connect leaves it stale rather than pooled.
            epoch: host.pool.epoch(),
        };
        match self.open(host, protocol, bytes).await {
            Ok(c) => {
                self.stats.cx_total.increment(1);
                host.counters.cx_total.fetch_add(1, Ordering::Relaxed);
                Ok((c, cx))
            }
            Err(e) => {
                self.stats.cx_connect_fail.increment(1);
                host.counters
                    .cx_connect_fail
                    .fetch_add(1, Ordering::Relaxed);
                if matches!(e, ConnectError::Timeout) {
                    self.stats.cx_connect_timeout.increment(1);
                }
                self.report(host, Outcome::LocalFailure);
                drop(cx);
                host.pool.released.notify_waiters();
                Err(e.into())
            }
        }
    }
}

impl Lease {
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Sends `req` and returns the response with a body that gives the
    /// connection back to the pool once it has been read to the end. The
    /// result feeds outlier detection.
    pub async fn send(mut self, req: Request<Body>) -> Result<Response<PooledBody>, UpstreamError> {
        let cluster = Arc::clone(&self.cluster);
        let stats = &cluster.stats;
        stats.rq_total.increment(1);
        let sent = match self.conn.ready().await {
            Ok(()) => self.conn.send(req).await,
            Err(e) => Err(e),
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.host.counters.rq_error.fetch_add(1, Ordering::Relaxed);
                cluster.report(&self.host, Outcome::LocalFailure);
                return Err(UpstreamError::Reset(e));
            }
        };
        let status = resp.status().as_u16();
        if let Some(c) = stats
            .rq_class
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            c.increment(1);
        }
        let counter = if status >= 500 {
            &self.host.counters.rq_error
        } else {
            &self.host.counters.rq_success
        };
        counter.fetch_add(1, Ordering::Relaxed);
        cluster.report(&self.host, Outcome::Status(status));
        stats
            .rq_time
            .record(self.started.elapsed().as_secs_f64() * 1000.0);
        let Lease {
            conn,
            pooled,
            in_flight,
            host,
            ..
        } = self;
        // An upgraded (101) connection belongs to the tunnel now; an HTTP/2
        // connection is shared and never returned.
        let back = match (pooled, &conn) {
            (Some((cx, uses)), ClientConn::Http1(_)) if status != 101 => Some(Returning {
                conn,
                cx,
                uses: uses + 1,
                host,
                max_uses: cluster.spec.load().pool.max_requests_per_connection,
            }),
            _ => None,
        };
        Ok(resp.map(|inner| PooledBody {
            inner,
            back,
            in_flight: Some(in_flight),
        }))
    }

    /// Counts an upstream timeout against the cluster.
    pub fn count_timeout(cluster: &Cluster) {
        cluster.stats.rq_timeout.increment(1);
    }
}

/// An HTTP/1.1 connection on its way back to the pool.
#[derive(Debug)]
struct Returning {
    conn: ClientConn,
    cx: CxGuard,
    uses: u32,
    host: Arc<Host>,
    max_uses: Option<u32>,
}

impl Returning {
    fn give_back(self) {
        let Returning {
            conn,
            cx,
            uses,
            host,
            max_uses,
        } = self;
        if max_uses.is_some_and(|m| uses >= m) {
            // Used up: closing it frees a `max_connections` slot.
            drop((conn, cx));
            host.pool.released.notify_one();
            return;
        }
        let entry = move |conn| PooledConn {
            conn,
            _cx: cx,
            uses,
            idle_since: Instant::now(),
        };
        if conn.is_ready() {
            host.pool.push_idle(entry(conn));
            host.pool.released.notify_one();
        } else {
            // hyper marks the connection ready a moment after the body's
            // last frame; wait for that off the request path.
            tokio::spawn(async move {
                let mut conn = conn;
                if conn.ready().await.is_ok() {
                    host.pool.push_idle(entry(conn));
                }
                host.pool.released.notify_one();
            });
        }
    }
}

/// An upstream response body. When it has been read to the end (or dropped
/// after the end), the HTTP/1.1 connection goes back to its pool; dropped
/// early, the connection is closed so no stale bytes reach the next request.
/// The request counts as active (least request, `max_requests`) until then.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    back: Option<Returning>,
    in_flight: Option<InFlight>,
}

impl PooledBody {
    fn release(&mut self) {
        self.in_flight = None;
        if let Some(r) = self.back.take() {
            r.give_back();
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        } else if let Some(r) = self.back.take() {
            // Closed mid-body: wake anyone waiting for a connection slot.
            let host = Arc::clone(&r.host);
            drop(r);
            host.pool.released.notify_one();
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = res {
            this.release();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A TCP proxy's upstream connection: plaintext, or TLS per the cluster's
/// `UpstreamTlsContext`.
pub type UpstreamStream = MaybeTls<TcpStream, ClientTlsStream<TcpStream>>;

impl Cluster {
    /// TCP connect plus, when the host's transport socket is TLS, the TLS
    /// handshake, all within `connect_timeout` (Envoy counts both as
    /// connecting).
    async fn transport(
        &self,
        host: &Host,
        alpn: DefaultAlpn,
    ) -> Result<UpstreamStream, ConnectError> {
        let timeout = self.connect_timeout();
        let attempt = async {
            // Copied out: the spec guard is not held across the connect.
            let (source, keepalive_opts) = {
                let spec = self.spec.load();
                (spec.source_address, spec.tcp_keepalive)
            };
            let tcp = strait_codec::client::connect_tcp_from(host.addr(), source, timeout).await?;
            if let Some(k) = keepalive_opts {
                keepalive(&tcp, k)?;
            }
            match host.transport() {
                None => Ok(MaybeTls::Plain(tcp)),
                Some(tls) => tls
                    .connect(tcp, host.addr().ip(), alpn)
                    .await
                    .map(|s| MaybeTls::Tls(Box::new(s)))
                    .map_err(ConnectError::Tls),
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    /// A new HTTP connection to `host`: transport, then the HTTP handshake.
    async fn open(
        &self,
        host: &Host,
        protocol: Protocol,
        bytes: Arc<crate::cluster::ByteStats>,
    ) -> Result<ClientConn, ConnectError> {
        let alpn = match protocol {
            Protocol::Http1 => DefaultAlpn::Http1,
            Protocol::Http2 => DefaultAlpn::Http2,
        };
        match self.transport(host, alpn).await? {
            MaybeTls::Plain(tcp) => ClientConn::handshake(tcp, protocol, bytes).await,
            tls @ MaybeTls::Tls(_) => ClientConn::handshake(tls, protocol, bytes).await,
        }
    }

    /// Opens a connection to `host` for the TCP proxy (TLS when the cluster
    /// has it), counted in the cluster's connection stats.
    pub async fn connect_tcp(&self, host: &Host) -> Result<UpstreamStream, UpstreamError> {
        match self.transport(host, DefaultAlpn::None).await {
            Ok(s) => {
                self.stats.cx_total.increment(1);
                Ok(s)
            }
            Err(e) => {
                self.stats.cx_connect_fail.increment(1);
                if matches!(e, ConnectError::Timeout) {
                    self.stats.cx_connect_timeout.increment(1);
                }
                self.report(host, Outcome::LocalFailure);
                Err(UpstreamError::Connect(e))
            }
        }
    }
}

/// Envoy's upstream `tcp_keepalive`: SO_KEEPALIVE, with the values the
/// config sets (the rest left to the OS).
fn keepalive(tcp: &TcpStream, k: strait_model::TcpKeepalive) -> std::io::Result<()> {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(n) = k.probes {
        ka = ka.with_retries(n);
    }
    socket2::SockRef::from(tcp).set_tcp_keepalive(&ka)
}

#[cfg(test)]
mod keepalive_tests {
    use std::time::Duration;

    use super::keepalive;

    #[tokio::test]
    async fn tcp_keepalive_options_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let k = strait_model::TcpKeepalive {
            probes: Some(3),
            time: Some(Duration::from_secs(300)),
            interval: Some(Duration::from_secs(20)),
        };
        keepalive(&tcp, k).expect("set");
        let s = socket2::SockRef::from(&tcp);
        assert!(s.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            s.tcp_keepalive_time().expect("time"),
            Duration::from_secs(300)
        );
        assert_eq!(
            s.tcp_keepalive_interval().expect("interval"),
            Duration::from_secs(20)
        );
        assert_eq!(s.tcp_keepalive_retries().expect("probes"), 3);
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
